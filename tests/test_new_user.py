"""A new user's mistakes, tried as they would try them on a fresh clone: each is refused within
seconds, in one line naming what to fix, and leaves the workspace as it was (`git status` and
`dvc status` unchanged, no experiment, no job). A stage that still fails on its input says the
command that restores its previous outputs, and that command restores them byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import processes
import pytest
from dvc_repo import sh

BIN = Path(sys.executable).parent
SEED = "data/seed/problems.jsonl"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def repo(dvc_repo):
    """The fixture repository with DVC's Hydra composition on and a seed file whose 3rd record
    lacks its tests (committed, so it is part of the "before")."""
    root, env = dvc_repo
    sh([sys.executable, "-m", "dvc", "config", "hydra.enabled", "true"], root, env)
    lines = (root / SEED).read_text().splitlines()
    bad = json.loads(lines[2])
    del bad["tests"]
    (root / "data/seed/bad.jsonl").write_text("\n".join([*lines[:2], json.dumps(bad)]) + "\n")
    sh(["git", "add", "-A"], root, env)
    sh(["git", "commit", "-qm", "a malformed seed file"], root, env)
    return root, env, state(root, env), dvc_view(root, env)


def state(root: Path, env: dict) -> tuple[str, str, dict]:
    """What a mistake must not change, read without starting DVC (19 mistakes, each checked): git
    status, git's refs (DVC keeps every experiment and every queued job as one) and the digest of
    every file git does not show (the DVC cache, the stages' outputs; not DVC's own .dvc/tmp or
    bytecode). `test_dvc_sees_what_it_saw_before_the_mistakes` asks DVC itself once."""
    run = lambda *cmd: processes.run(cmd, cwd=root, env=env, capture_output=True, text=True).stdout  # noqa: E731
    files = {str(f.relative_to(root)): digest(f) for f in sorted(root.rglob("*"))
             if f.is_file() and f.relative_to(root).parts[0] != ".git"
             and f.relative_to(root).parts[:2] != (".dvc", "tmp") and "__pycache__" not in f.parts}
    return run("git", "status", "--porcelain"), run("git", "for-each-ref"), files


def dvc_view(root: Path, env: dict) -> tuple[str, str]:
    """`dvc status` and `dvc exp list --all-commits` (each must succeed)."""
    return (sh([sys.executable, "-m", "dvc", "status"], root, env),
            sh([sys.executable, "-m", "dvc", "exp", "list", "--all-commits"], root, env))


def refused(repo: tuple, cmd: list[str], timeout: float = 60) -> str:
    """Run ``cmd`` in the fixture repository; it must fail, print exactly one error line and leave
    the repository's state as the fixture made it. Returns that line."""
    root, env, before, _ = repo
    proc = processes.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith("ERROR:") or ": error: " in ln]
    assert len(errors) == 1, proc.stdout + proc.stderr
    assert state(root, env) == before
    return errors[0]


MISTAKES = {
    "a path that walks out of data/seed/": (["problems.seed.path=data/seed/../../README.md"], "is outside data/seed/"),
    "a problems file that does not exist": (["problems.seed.path=data/seed/nope.jsonl"], "is not a file"),
    "a malformed problems file": (["problems.seed.path=data/seed/bad.jsonl"], "data/seed/bad.jsonl"),
    "an absolute path for hf's data files": (["problems=hf", "problems.hf.data_files=/etc/hostname"],
                                            "is outside data/seed/"),
    "an API teacher with no concurrency": (["teacher=llm_openai", "teacher.max_concurrency=null"],
                                           "max_concurrency must be set"),
    "a training of zero steps": (["train.common.max_steps=0"], "max_steps = 0 trains nothing"),
    "a number that is not one": (["train.common.beta=abc"], "train.common.beta = 'abc': expected float"),
    "a variant that does not exist": (["train.run=[dpo,nope]"], "one of the variants"),
    "a benchmark file outside its folder": (["eval.data.humaneval_plus=data/seed/problems.jsonl"],
                                            "is outside data/benchmarks/humaneval_plus/"),
    "a DeepSpeed config DVC would not track": (["train.common.deepspeed=/etc/hostname"], "is outside conf/accelerate/"),
}


@pytest.mark.parametrize("what", list(MISTAKES))
def test_dvc_exp_run_refuses_at_composition(repo, what):
    overrides, message = MISTAKES[what]
    cmd = [sys.executable, "-m", "dvc", "exp", "run"]
    for o in overrides:
        cmd += ["-S", o]
    line = refused(repo, cmd)
    assert message in line, line
    if what == "a malformed problems file":
        assert "data/seed/bad.jsonl:3: Problem.tests: missing required field" in line, line


CLI_MISTAKES = {
    "a model folder that does not exist": (["iterpref-eval", "/nonexistent", "humaneval", "--out", "X"],
                                           "/nonexistent: no such model folder"),
    "a limit below 1": (["iterpref-eval", "src", "humaneval", "--out", "X", "--limit", "-3"], "-3 is below 1"),
    "a limit of 0": (["iterpref-eval", "src", "humaneval", "--out", "X", "--limit", "0"], "0 is below 1"),
    "a benchmark data file that is not there": (
        ["iterpref-eval", "src", "humaneval_plus", "--out", "X", "--data", "humaneval_plus=nope.jsonl"],
        "nope.jsonl: no such file"),
    "an unknown benchmark": (["iterpref-eval", "src", "humaneva", "--out", "X"], "invalid choice: 'humaneva'"),
    "a sweep with one bad grid point": (["iterpref-sweep", "--multirun", "experiment=smoke", "train.common.beta=0.1,abc"],
                                        "grid point 2 of 2"),
    "a sweep over an interval that leaves the range": (
        ["iterpref-sweep", "--multirun", "hydra/sweeper=maximize", "sweep.metric=target_dpo.average",
         "train.common.beta=interval(0,0.5)"], "train.common.beta = 0.0: expected a value > 0"),
    "comparing variants with no results": (["iterpref-compare", "dpo", "target_dpo"], "'dpo': no result files in"),
    "params for an unknown key": (["iterpref-params", "train.common.betta=0.2", "--check"], "betta"),
}


@pytest.mark.parametrize("what", list(CLI_MISTAKES))
def test_a_console_script_refuses_in_one_line(repo, what):
    root = repo[0]
    cmd, message = CLI_MISTAKES[what]
    line = refused(repo, [str(BIN / cmd[0]), *cmd[1:]])
    assert line.startswith(f"{cmd[0]}: error: ") and message in line, line
    assert not (root / "X").exists() and not (root / "multirun").exists()


def test_dvc_sees_what_it_saw_before_the_mistakes(repo):
    """After every refusal above (the module's tests run in order), DVC's own view is unchanged:
    its status and its experiments (`state`, checked after each, reads them from git and the files)."""
    root, env, before, dvc_before = repo
    assert state(root, env) == before and dvc_view(root, env) == dvc_before
    assert "changed" in dvc_before[0]  # the fixture's stages never ran: DVC lists them


def test_a_stage_that_fails_on_its_input_says_how_to_restore_and_that_restores(repo):
    """`dvc repro` composes nothing: a seed file broken after a run reaches the synthesize stage,
    which DVC has already cleared. Its one line names the record and `dvc checkout synthesize`,
    which brings the previous outputs back byte for byte."""
    root, env, _, _ = repo
    sh([str(BIN / "iterpref-params"), "experiment=smoke", "--out", "params.yaml"], root, env)
    sh([sys.executable, "-m", "dvc", "repro", "synthesize"], root, env)
    outs = ["data/problems.jsonl", "reports/problems.json"]
    before = {o: digest(root / o) for o in outs}
    seed = (root / SEED).read_text()
    (root / SEED).write_text(seed.replace('"entry_point": "run_length_encode"', '"entry_point": 7', 1))
    proc = processes.run([sys.executable, "-m", "dvc", "repro", "synthesize"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    line = next(ln for ln in proc.stderr.splitlines() if ": error: " in ln)
    assert line.startswith("synthesize.py: error: ") and f"{SEED}:1: Problem.entry_point" in line, proc.stderr
    assert "`dvc checkout synthesize` restores them" in line and "Traceback" not in proc.stderr
    assert not (root / "data/problems.jsonl").exists()  # DVC removed it before the stage ran
    sh([sys.executable, "-m", "dvc", "checkout", "synthesize"], root, env)
    assert {o: digest(root / o) for o in outs} == before
    (root / SEED).write_text(seed)
    sh(["git", "checkout", "params.yaml"], root, env)
