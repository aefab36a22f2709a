"""Every key is checked when conf/ is composed: a wrong type, an out-of-range value, an unknown
choice or an unknown key fails before any stage runs, naming the key, the value, what was
expected and where the value came from; dataclass defaults and conf/ agree."""

from __future__ import annotations

import dataclasses
import shutil
import sys
from pathlib import Path

import processes
import pytest
import yaml
from dvc_repo import make_repo

from iterpref import params as P
from iterpref.config import reference, schema
from iterpref.config.schema import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def compose_error(overrides: list[str], conf_dir: Path | None = None) -> str:
    with pytest.raises(Exception) as e:
        P.compose(overrides, conf_dir=conf_dir)
    return P.config_error(e.value)


@pytest.mark.parametrize("override, line", [
    ("train.common.beta=abc", "train.common.beta = 'abc': expected float"),
    ("train.common.learning_rate=-1e-5", "train.common.learning_rate = -1e-05: expected a value > 0"),
    ("train.common.warmup_ratio=1.5", "train.common.warmup_ratio = 1.5: expected a value < 1"),
    ("eval.sampling.top_p=0", "eval.sampling.top_p = 0: expected a value > 0"),
    ("debug.max_rounds=0", "debug.max_rounds = 0: expected a value >= 1"),
    ("eval.prompt=chatml", "eval.prompt = 'chatml': expected one of ['iterpref', 'evalplus']"),
    ("runtime.device=tpu", "runtime.device = 'tpu': expected one of ['auto', 'cpu', 'cuda']"),
    ("train.variants.dpo.loss=ipo", "train.variants.dpo.loss = 'ipo': expected one of ['dpo', 'rpo', 'sft']"),
    ("train.launcher=slurm", "train.launcher = 'slurm': expected one of ['python', 'accelerate']"),
    ("+train.common.learning_rates=1e-5", "train.common.learning_rates = 1e-05: unknown key; TrainConfig takes"),
    ("+eval.sampling.temprature=0.2", "eval.sampling.temprature = 0.2: unknown key; SamplingConfig takes"),
    ("+debug.rounds=3", "debug.rounds = 3: unknown key; DebugConfig takes"),
    ("train.run=[dpo,tdpo]", "train.run = 'tdpo': expected one of the variants"),
    ("eval.benchmarks=[humaneval,livecodebench]", "eval.benchmarks: unknown benchmark 'livecodebench'"),
    ("problems.seed.path=/tmp/mine.jsonl", "problems.seed.path: '/tmp/mine.jsonl' is outside data/seed/"),
    ("eval.data.humaneval_plus=/data/HumanEvalPlus.jsonl",
     "eval.data.humaneval_plus: '/data/HumanEvalPlus.jsonl' is outside data/benchmarks/humaneval_plus/"),
    ("eval.data.mbpp_plus=data/benchmarks/humaneval_plus/MbppPlus.jsonl",  # another benchmark's folder
     "eval.data.mbpp_plus: 'data/benchmarks/humaneval_plus/MbppPlus.jsonl' is outside data/benchmarks/mbpp_plus/"),
    ("+eval.data.bigcodebench_full=data/benchmarks/x.jsonl", "eval.data.bigcodebench_full"),
    ("swept_keys=[train.common.beta,train.common.betta]",
     "swept_keys[1] = 'train.common.betta': expected a dotted key of the params"),
])
def test_a_bad_value_fails_composition_naming_key_value_and_expectation(override, line):
    msg = compose_error([override])
    assert line in msg, msg


def test_an_override_is_named_as_the_source():
    msg = compose_error(["train.common.beta=abc"])
    assert "from a command-line override" in msg


def test_a_bad_value_in_a_conf_file_names_the_file(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    path = conf / "train/default.yaml"
    path.write_text(path.read_text().replace("  beta: 0.1\n", "  beta: abc\n"))
    msg = compose_error([], conf_dir=conf)
    assert "train.common.beta = 'abc': expected float (from conf/train/default.yaml)" in msg, msg


def test_every_problem_is_reported_at_once():
    msg = compose_error(["train.common.beta=abc", "debug.max_rounds=0", "+debug.rounds=3"])
    assert msg.count("\n  ") == 3, msg


def test_the_composition_carries_the_check():
    assert P.compose()["config_checked"] is True
    assert P.load(ROOT / "params.yaml")["config_checked"] is True


def test_a_hand_edited_params_yaml_stops_the_stage_naming_the_key(tmp_path):
    params = P.compose()
    params["pairs"]["max_rejected_lines"] = "twenty"
    path = tmp_path / "params.yaml"
    path.write_text(P.dump(params))
    with pytest.raises(ConfigError) as e:
        P.load(path)
    assert f"{path}: pairs.max_rejected_lines = 'twenty': expected int or null" in str(e.value)


@pytest.mark.parametrize("overrides", [["experiment=smoke"], ["experiment=qwen_coder"], ["experiment=paper_qwen25_coder_7b"],
                                       ["experiment=paper_starcoder2_15b", "lr_source=repo"], ["teacher=llm_openai"],
                                       ["teacher=llm_vllm"], ["teacher=llm_qwen15b"], ["problems=codeio"], ["problems=hf"],
                                       ["problems=synthesize"], ["eval=paper"], ["logging=disabled"]])
def test_every_shipped_preset_is_valid(overrides):
    assert schema.check(P.compose(overrides)) == []


def test_check_finds_a_missing_section_and_a_wrong_source():
    params = P.compose()
    del params["debug"]
    params["problems"]["source"] = "kaggle"
    keys = {key for key, _, _ in schema.check(params)}
    assert {"debug", "problems.source"} <= keys


# ----------------------------------------------------------------------------- one place for defaults


def dataclass_sections(params: dict) -> list[tuple[type, dict, str]]:
    """(dataclass, the default composition's section for it, its name) for every section of the
    configuration reference whose dataclass the default composition uses (train.common as
    conf/train/default.yaml gives it, before an experiment changes it)."""
    conf_train = yaml.safe_load((ROOT / "conf/train/default.yaml").read_text())
    out = []
    for key, cls, _ in reference.sections():
        section = params
        for part in key.split("."):
            section = section.get(part) if isinstance(section, dict) else None
        names = {f.name for f in dataclasses.fields(cls)}
        if key == "train.common":
            section = conf_train["common"]
        elif key == "train":  # LaunchConfig's keys, beside common, run and variants
            section = {k: v for k, v in section.items() if k in names}
        # a template key (train.variants.<name>.mask) or another choice's dataclass (teacher=llm_*)
        if isinstance(section, dict) and not set(section) - names:
            out.append((cls, section, key))
    return out


def test_the_defaults_check_covers_the_default_composition():
    checked = {where for _, _, where in dataclass_sections(P.compose())}
    assert {"model", "sandbox", "debug", "pairs", "train.common", "train", "eval.sampling", "eval.server", "teacher",
            "problems.validate", "problems.dedup", "problems.decontaminate", "problems.seed", "runtime"} <= checked


def disagreements(sections: list[tuple[type, dict, str]]) -> list[str]:
    """One line per dataclass field whose default differs from the conf/ value for it."""
    out = []
    for cls, section, where in sections:
        for f in dataclasses.fields(cls):
            if f.name not in section:
                continue
            if f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:
                continue
            if dataclasses.is_dataclass(default):
                default = dataclasses.asdict(default)
            if default != section[f.name]:
                out.append(f"{where}.{f.name}: {cls.__name__} says {default!r}, conf/ says {section[f.name]!r}")
    return out


def test_dataclass_defaults_agree_with_conf():
    found = disagreements(dataclass_sections(P.compose()))
    assert not found, "\n".join(found)


@pytest.mark.parametrize("source", sorted(p.stem for p in (ROOT / "conf/problems").glob("*.yaml") if p.stem != "common"))
def test_every_problems_source_file_agrees_with_its_dataclass(source):
    """Each problems=<source> file is the one conf/ statement of its source's settings: whatever it
    sets must be the dataclass's default, as for the default composition."""
    params = P.compose([f"problems={source}"])
    found = disagreements([(cls, section, where) for cls, section, where in dataclass_sections(params)
                           if where.startswith("problems")])
    assert not found, "\n".join(found)


@pytest.mark.parametrize("preset", ["llm_openai", "llm_vllm"])
def test_a_teacher_presets_client_settings_are_its_backends_defaults(preset):
    """OpenAIGenerator's and ServedGenerator's request settings default to ClientConfig's fields and
    SERVED_CLIENT (the evaluation's served backend uses them); the teacher presets state the same."""
    from iterpref.llm.openai_api import ClientConfig
    from iterpref.llm.served import SERVED_CLIENT

    teacher = P.compose([f"teacher={preset}"])["teacher"]
    default = dataclasses.asdict(ClientConfig() if teacher["backend"] == "openai" else SERVED_CLIENT)
    assert {k: teacher[k] for k in default} == default


def test_no_config_docstring_restates_a_value():
    """A default lives in its field (and conf/): a docstring that repeats it would drift."""
    from iterpref.config.sections import SECTIONS

    said = [s.cls.__name__ for s in SECTIONS if dataclasses.is_dataclass(s.cls) and "defaults to" in (s.cls.__doc__ or "")]
    assert not said, said


def test_each_set_of_allowed_values_is_one_literal():
    from typing import get_args

    from iterpref.llm import Backend
    from iterpref.llm.served import ENGINES, Engine

    assert set(ENGINES) == set(get_args(Engine)) and set(get_args(Engine)) < set(get_args(Backend))


def test_the_defaults_check_names_a_disagreement():
    from iterpref.sandbox import SandboxConfig

    section = dict(P.compose()["sandbox"], timeout_s=7.5)
    assert disagreements([(SandboxConfig, section, "sandbox")]) == [
        f"sandbox.timeout_s: SandboxConfig says {SandboxConfig().timeout_s}, conf/ says 7.5"]


# ----------------------------------------------------------------------------- through DVC


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("config") / "repo")


def test_dvc_exp_run_with_a_wrong_type_fails_before_any_stage(repo):
    root, env = repo
    before = (root / "params.yaml").read_text()
    proc = processes.run([sys.executable, "-m", "dvc", "exp", "run", "-S", "train.common.beta=abc"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "train.common.beta = 'abc': expected float" in out, out
    assert "Running stage" not in out
    assert (root / "params.yaml").read_text() == before  # the workspace is as it was
    assert not (root / "models").exists()


def test_dvc_exp_run_with_a_valid_override_composes_the_check(repo):
    """DVC loads the resolver from hydra_plugins/: a valid override composes (nothing is run:
    --queue only stashes the experiment) and the queued params carry the check."""
    root, env = repo
    proc = processes.run([sys.executable, "-m", "dvc", "exp", "run", "--queue", "-S", "train.common.beta=0.2"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    processes.run([sys.executable, "-m", "dvc", "queue", "remove", "--all"], cwd=root, env=env, capture_output=True)


def test_config_error_lists_its_lines():
    err = ConfigError(["a = 1: expected str", "b: missing"])
    assert str(err) == "invalid configuration:\n  a = 1: expected str\n  b: missing"


def test_one_problem_is_one_line():
    assert str(ConfigError(["a = 1: expected str"])) == "invalid configuration: a = 1: expected str"


def test_checking_a_composition_loads_no_torch():
    """`dvc exp run -S` composes and checks in every run: it must stay a second, not a torch import."""
    code = ("import sys; from iterpref.config import schema; from iterpref import params as P; "
            "schema.check(P.compose()); assert 'torch' not in sys.modules, 'torch'")
    processes.run([sys.executable, "-c", code], check=True)
