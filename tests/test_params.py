"""params.py: params.yaml is the composition of conf/, and every section builds its config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import processes
import pytest
import yaml

from iterpref import params as P
from iterpref.debugging import DebugConfig
from iterpref.debugging.teachers import MutationTeacher, make_teacher
from iterpref.llm.base import SamplingConfig
from iterpref.models import ModelConfig
from iterpref.pairs.build import PairConfig
from iterpref.sandbox import SandboxConfig
from iterpref.training.masks import MaskConfig
from iterpref.training.recipe import LOSSES, TrainConfig

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"


@pytest.fixture(scope="module")
def default() -> dict:
    return P.compose()


@pytest.fixture(scope="module")
def smoke() -> dict:
    return P.compose(["experiment=smoke"])


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return processes.run([sys.executable, "-m", "iterpref.params", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


# ----------------------------------------------------------------------------- the invariant


def test_committed_params_yaml_is_the_composition_of_conf(default):
    """Required invariant: `dvc repro` reads params.yaml, `dvc exp run -S` composes conf/."""
    committed = yaml.safe_load(PARAMS.read_text())
    assert committed == default, "params.yaml is stale: run `python -m iterpref.params`"
    # same key order too, as DVC's Hydra integration writes it (keeps diffs of params.yaml quiet)
    assert list(committed) == list(default)
    assert yaml.safe_load(P.dump(default)) == default
    assert P.load(PARAMS) == committed


def test_default_composition(default):
    assert default["experiment_name"] == "embedded"
    assert default["model"]["source"] == "smollm2-gguf"
    assert default["problems"]["limit"] is None
    assert default["eval"]["limit"] is None
    assert set(default) >= {"model", "problems", "teacher", "sandbox", "debug", "pairs", "train", "eval",
                            "logging", "runtime", "experiment_name"}


def test_smoke_experiment(default, smoke):
    assert smoke["experiment_name"] == "smoke"
    assert smoke["model"]["source"] == "tiny-random"
    assert smoke["model"]["name"] == "tiny-random"
    assert smoke["problems"]["limit"] == 8
    assert smoke["eval"]["limit"] == 8
    assert smoke["eval"]["sampling"]["max_new_tokens"] == 64
    assert smoke["train"]["common"]["max_pairs"] == 16
    assert smoke["train"]["common"]["learning_rate"] == pytest.approx(1e-4)
    # the tiny model inherits the rest of the model group from smollm2
    assert smoke["model"]["tiny_hidden_size"] == default["model"]["tiny_hidden_size"]
    assert smoke["runtime"] == {**default["runtime"], "threads": 1}  # a 1M-parameter model: one thread
    # what the experiment does not touch stays as in the default
    for section in ("sandbox", "teacher", "pairs"):
        assert smoke[section] == default[section], section
    assert smoke["train"]["variants"] == default["train"]["variants"]


def test_overrides_compose_on_top(tmp_path):
    cfg = P.compose(["experiment=smoke", "problems.limit=3", "debug.max_rounds=2"])
    assert cfg["problems"]["limit"] == 3
    assert cfg["debug"]["max_rounds"] == 2
    assert cfg["model"]["source"] == "tiny-random"


# ----------------------------------------------------------------------------- build


def test_build_rejects_unknown_keys_naming_them():
    with pytest.raises(ValueError) as e:
        P.build(DebugConfig, {"max_rounds": 3, "max_round": 4, "zzz": 1}, "debug")
    msg = str(e.value)
    assert "debug" in msg and "'max_round'" in msg and "'zzz'" in msg
    assert "DebugConfig" in msg and "max_rounds" in msg  # says what it takes


def test_build_none_and_empty_give_defaults():
    assert P.build(DebugConfig, None, "debug") == DebugConfig()
    assert P.build(MaskConfig, {}, "mask") == MaskConfig()
    assert P.build(DebugConfig, {"max_rounds": 2}, "debug").max_rounds == 2


def test_build_does_not_mutate_the_section():
    section = {"max_rounds": 3}
    P.build(DebugConfig, section, "debug")
    assert section == {"max_rounds": 3}


@pytest.mark.parametrize("which", ["default", "smoke"])
def test_every_section_builds(which, request):
    params = request.getfixturevalue(which)
    P.build(ModelConfig, params["model"], "model")
    sandbox = P.build(SandboxConfig, params["sandbox"], "sandbox")
    P.build(DebugConfig, params["debug"], "debug")
    P.build(PairConfig, params["pairs"], "pairs")
    P.build(SamplingConfig, params["eval"]["sampling"], "eval.sampling")
    assert isinstance(make_teacher(params["teacher"], sandbox), MutationTeacher)


@pytest.mark.parametrize("which", ["default", "smoke"])
def test_every_train_variant_builds_like_stages_train(which, request):
    tcfg = request.getfixturevalue(which)["train"]
    assert set(tcfg["run"]) <= set(tcfg["variants"])
    built = {}
    for variant, spec in tcfg["variants"].items():
        spec = dict(spec)  # exactly as stages/train.py does it
        mask = P.build(MaskConfig, spec.pop("mask", {}), f"train.variants.{variant}.mask")
        cfg = P.build(TrainConfig, {**tcfg["common"], **spec, "mask": mask}, f"train.variants.{variant}")
        assert isinstance(cfg.mask, MaskConfig)
        assert cfg.loss in LOSSES, variant
        assert cfg.beta == tcfg["common"]["beta"]
        built[variant] = cfg
    # stages/train.py pops "mask" from a copy: the composed params are left untouched
    assert all("mask" in v for v in tcfg["variants"].values())
    assert built["dpo"].mask.mode == "none" and built["dpo"].loss == "dpo"
    assert built["target_dpo"].mask.mode == "line" and built["target_dpo"].loss == "dpo"
    assert built["target_rpo"].loss == "rpo" and built["target_rpo"].mask.focal
    assert built["ablation_symmetric"].mask.mode == "symmetric"
    assert built["ablation_diff_aug"].mask.context_lines == 1
    assert built["ablation_prefix_suffix"].mask.diff == "prefix_suffix"
    assert built["ablation_hybrid"].mask.hybrid_fraction == 0.5


def test_a_typo_in_a_variant_mask_is_caught_at_composition():
    """A misspelt key added with `dvc exp run -S +...` fails when conf/ is composed, naming it."""
    with pytest.raises(Exception) as e:
        P.compose(["+train.variants.target_dpo.mask.context_line=1"])
    assert "train.variants.target_dpo.mask.context_line = 1: unknown key; MaskConfig takes" in P.config_error(e.value)


# ----------------------------------------------------------------------------- the CLI


def test_check_passes_on_the_committed_file():
    res = run_cli("--check")
    assert res.returncode == 0, res.stderr


def test_check_fails_on_a_modified_copy(tmp_path):
    params = yaml.safe_load(PARAMS.read_text())
    params["debug"]["max_rounds"] += 1
    out = tmp_path / "params.yaml"
    out.write_text(P.dump(params))
    res = run_cli("--check", "--out", str(out))
    assert res.returncode != 0
    assert "differs from what conf/ composes to" in res.stderr


def test_check_fails_on_a_missing_file(tmp_path):
    res = run_cli("--check", "--out", str(tmp_path / "nope.yaml"))
    assert res.returncode != 0


def test_cli_writes_the_composition_with_overrides(tmp_path, smoke):
    out = tmp_path / "params.yaml"
    res = run_cli("experiment=smoke", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert yaml.safe_load(out.read_text()) == smoke
    assert run_cli("experiment=smoke", "--check", "--out", str(out)).returncode == 0
    assert run_cli("--check", "--out", str(out)).returncode != 0  # smoke is not the default


@pytest.mark.parametrize("overrides", [["experiment=qwen_coder"], ["eval=paper"], ["teacher=llm_qwen15b"],
                                       ["model=qwen25_coder_15b"]])
def test_real_tier_presets_compose_and_build(overrides):
    """The Qwen tier and the paper's benchmarks compose into sections every stage can build."""
    from iterpref.evaluation import registry
    from iterpref.models import ModelConfig

    p = P.compose(overrides)
    P.build(ModelConfig, p["model"], "model")
    if p["teacher"]["materialize"]:
        spec = P.build(ModelConfig, p["teacher"]["materialize"], "teacher.materialize")
        assert spec.source == "gguf-parts" and p["teacher"]["model"] == "models/teacher"
    assert set(p["eval"]["benchmarks"]) <= set(registry.names())
    assert p["eval"]["prompt"] in ("iterpref", "evalplus")
    if overrides == ["experiment=qwen_coder"]:
        assert p["model"]["gguf_parts"]["sha256"].startswith("1d9614")
        assert p["teacher"]["materialize"]["name"] == "qwen2.5-coder-0.5b-instruct"
        assert p["train"]["common"]["lora"]["r"] == 16 and p["eval"]["dtype"] == "bfloat16"
