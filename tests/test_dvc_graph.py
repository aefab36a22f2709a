"""dvc.yaml's deps are the code's graph: every stage lists its script and every iterpref module
it loads, transitively (and the judge program for the stages that run code in the sandbox)."""

from __future__ import annotations

from pathlib import Path

import yaml

from iterpref.config import graph
from iterpref.evaluation import registry

ROOT = Path(__file__).resolve().parents[1]
SANDBOXED = ("synthesize", "debug", "evaluate_reference", "evaluate")


def rel(paths) -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in paths}


def test_every_stage_lists_its_import_closure():
    gaps = graph.missing()
    assert not gaps, "\n".join(f"stage {stage}: dvc.yaml's deps miss {', '.join(files)}" for stage, files in gaps.items())


def test_missing_names_the_stage_and_the_module(tmp_path):
    """Dropping one module from a stage's deps is caught, naming both."""
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    dvc["stages"]["report"]["deps"].remove("src/iterpref/pairs/diff.py")
    dvc["stages"]["train"]["do"]["deps"].remove("src/iterpref/training")
    broken = tmp_path / "dvc.yaml"
    broken.write_text(yaml.safe_dump(dvc))
    gaps = graph.missing(broken)
    assert gaps["report"] == ["src/iterpref/pairs/diff.py"]
    assert "src/iterpref/training/masks.py" in gaps["train"] and "src/iterpref/training/trainer.py" in gaps["train"]
    assert set(gaps) == {"report", "train"}


def test_closure_follows_imports_transitively_and_the_judge_program():
    pairs = rel(graph.closure(ROOT / "stages/pairs.py"))
    # stages/pairs.py imports iterpref.pairs.build, which imports diff: the train stage's masks do too
    assert {"stages/pairs.py", "src/iterpref/pairs/build.py", "src/iterpref/pairs/diff.py", "src/iterpref/records.py"} <= pairs
    assert "src/iterpref/sandbox/judge.py" not in pairs  # pairs runs no code
    assert "src/iterpref/pairs/diff.py" in rel(graph.closure(ROOT / "stages/train.py"))
    for stage, (script, _) in graph.stage_scripts().items():
        files = rel(graph.closure(script))
        assert ("src/iterpref/sandbox/judge.py" in files) == (stage in SANDBOXED), stage
    # the official evaluators' wrapper programs are run by path: the evaluations depend on them, debug does not
    wrappers = {"src/iterpref/sandbox/evalplus_run.py", "src/iterpref/sandbox/bigcodebench_run.py"}
    assert wrappers <= rel(graph.closure(ROOT / "stages/evaluate.py"))
    assert not wrappers & rel(graph.closure(ROOT / "stages/debug.py"))
    # the problem sources a config names are loaded by name: all of them count
    synth = rel(graph.closure(ROOT / "stages/synthesize.py"))
    assert {f"src/iterpref/problems/{s}.py" for s in ("seed", "codeio", "synthesize", "hf")} <= synth


def test_the_validators_lazy_imports_do_not_widen_every_stage():
    """params.load checks the whole params.yaml, but the check can only stop a stage, never change
    its outputs: the model stage does not depend on the training or evaluation code."""
    model = rel(graph.closure(ROOT / "stages/model.py"))
    assert "src/iterpref/config/schema.py" in model
    assert not any(f.startswith(("src/iterpref/training", "src/iterpref/evaluation")) for f in model), model


def test_imports_of_resolves_relative_and_from_imports(tmp_path):
    mod = tmp_path / "m.py"
    mod.write_text("from iterpref.pairs import diff\nfrom iterpref import records\nfrom iterpref.training import masks\n"
                   "def f():\n    from .sandbox import run_unittest\n    import iterpref.prompts\n")
    found = graph.imports_of(mod, "iterpref")
    assert {"iterpref.pairs.diff", "iterpref.records", "iterpref.training.masks", "iterpref.sandbox",
            "iterpref.prompts"} <= found
    assert graph.imports_of(mod, "iterpref", top_level_only=True) == {"iterpref.pairs.diff", "iterpref.records",
                                                                      "iterpref.training.masks"}


def test_data_folders_a_parameter_points_into_are_deps():
    assert graph.data_gaps() == {}
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert "data/seed" in stages["synthesize"]["deps"]
    assert "data/benchmarks" in stages["synthesize"]["deps"]
    # an evaluation depends on its own benchmark's folder only, which must exist in a clone
    assert "data/benchmarks/${item.benchmark}" in stages["evaluate"]["deps"]
    assert "data/benchmarks/${item}" in stages["evaluate_reference"]["do"]["deps"]
    assert (ROOT / "data/seed").is_dir()
    for name in registry.names():
        assert (ROOT / "data/benchmarks" / name).is_dir(), f"data/benchmarks/{name}/ is missing (an evaluate dep)"


def test_bookkeeping_is_no_stage_param():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        params = [str(p) for p in stage.get("do", stage).get("params", [])]
        assert not any(p == "logging" or p.startswith("logging.") for p in params), name
        if name != "report":  # the summary prints the experiment's name
            assert "experiment_name" not in params, name
        assert "eval" not in params, name  # the whole section would tie every benchmark together


def test_lock_check_keeps_code_and_params_and_skips_what_a_fresh_clone_lacks():
    from iterpref.config import lock

    status = {
        "debug": [{"changed deps": {"src/iterpref/sandbox/judge.py": "modified", "data/problems.jsonl": "deleted"}},
                  {"changed outs": {"data/trajectories.jsonl": "not in cache"}}],
        "train@dpo": [{"changed deps": {"params.yaml": {"train.common.beta": "modified"}, "src/iterpref/training": "modified"}}],
        "pairs": [{"changed deps": {"data/trajectories.jsonl": "modified"}}, {"changed outs": {"data/pairs.jsonl": "deleted"}}],
        "model": [{"changed outs": {"models/student": "not in cache"}}],
    }
    tracked = {"src/iterpref/sandbox/judge.py", "src/iterpref/training/masks.py"}
    assert lock.stale(status, tracked) == {
        "debug": ["src/iterpref/sandbox/judge.py modified"],
        "train@dpo": ["param train.common.beta modified", "src/iterpref/training modified"],
    }


def test_data_gaps_names_a_stage_that_reads_a_section_without_its_folder(tmp_path):
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    dvc["stages"]["synthesize"]["deps"].remove("data/seed")
    path = tmp_path / "dvc.yaml"
    path.write_text(yaml.safe_dump(dvc))
    assert graph.data_gaps(path) == {"synthesize": ["data/seed"]}
