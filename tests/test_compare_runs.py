"""`iterpref-compare` across experiments: each side's per-task verdicts read from a git revision or a
DVC experiment (`dvc exp save`) of a real DVC repository, the workspace left exactly as it was."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from dvc_repo import sh

from iterpref.reporting import compare


def write_result(root: Path, variant: str, outcomes: list[bool], benchmark: str = "humaneval") -> None:
    path = root / f"reports/eval/{variant}/{benchmark}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmark": benchmark, "per_task": [
        {"task_id": f"HumanEval/{i}", "passed": ok} for i, ok in enumerate(outcomes)]}))


def dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A DVC repository whose reports/eval is a DVC output: the commit ``main`` (target_dpo passes
    tasks 0-1), the experiment ``beta02`` (tasks 1-5) and a workspace of a third state (task 0 only)."""
    root = tmp_path_factory.mktemp("compare") / "repo"
    root.mkdir()
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "DVC_NO_ANALYTICS": "1", "HOME": str(root.parent),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@localhost", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@localhost"}
    sh(["git", "init", "-q", "-b", "main"], root, env)
    sh(dvc("init", "-q"), root, env)
    write_result(root, "target_dpo", [True, True] + [False] * 6)
    write_result(root, "dpo", [True] + [False] * 7)
    sh(dvc("add", "-q", "reports/eval"), root, env)
    sh(["git", "add", "-A"], root, env)
    sh(["git", "commit", "-qm", "main"], root, env)
    write_result(root, "target_dpo", [False] + [True] * 5 + [False] * 2)
    sh(dvc("add", "-q", "reports/eval"), root, env)
    sh(dvc("exp", "save", "-n", "beta02"), root, env)
    write_result(root, "target_dpo", [True] + [False] * 7)
    return root, env


def snapshot(root: Path, env: dict) -> tuple[str, dict]:
    """git's view of the workspace and every file's bytes under reports/."""
    status = sh(["git", "status", "--porcelain", "--untracked-files=all"], root, env)
    return status, {str(p): p.read_bytes() for p in sorted((root / "reports").rglob("*")) if p.is_file()}


def run_compare(root: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "iterpref.reporting.compare", *args], cwd=root, env=env,
                          capture_output=True, text=True)


def test_compare_across_experiments_leaves_the_workspace(repo):
    root, env = repo
    before = snapshot(root, env)
    proc = run_compare(root, env, "main:target_dpo", "beta02:target_dpo")
    assert proc.returncode == 0, proc.stderr
    # main passes tasks 0-1, beta02 tasks 1-5: 4 gained, 1 lost
    assert ("humaneval: main:target_dpo 25.0 -> beta02:target_dpo 62.5 (+37.5 points, 8 tasks); 5 tasks differ: "
            "+4 gained, -1 lost, McNemar exact p = 0.375") in proc.stdout
    assert "gained: HumanEval/2, HumanEval/3, HumanEval/4, HumanEval/5" in proc.stdout
    assert "lost: HumanEval/0" in proc.stdout
    assert snapshot(root, env) == before

    # the experiment against the workspace's own (uncommitted) results, and two variants of one commit
    rows = json.loads(run_compare(root, env, "beta02:target_dpo", "target_dpo", "--json").stdout)
    assert (rows[0]["gained"], len(rows[0]["lost"])) == (["HumanEval/0"], 5)
    rows = json.loads(run_compare(root, env, "main:dpo", "main:target_dpo", "--json").stdout)
    assert (rows[0]["gained"], rows[0]["lost"]) == (["HumanEval/1"], [])
    assert snapshot(root, env) == before


@pytest.mark.parametrize("a, b, message", [
    ("nope:dpo", "beta02:dpo", "'nope' is neither a git revision nor a DVC experiment"),
    ("main:sft", "beta02:dpo", "'main:sft': no result files in reports/eval/sft/ at main"),
    (":dpo", "dpo", "':dpo': expected VARIANT, EXP:VARIANT or a folder of result files"),
])
def test_a_bad_side_is_one_line(repo, a, b, message):
    root, env = repo
    proc = run_compare(root, env, a, b)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"compare.py: error: {message}") and proc.stderr.count("\n") == 1, proc.stderr


def test_a_side_is_a_folder_or_a_variant(tmp_path):
    write_result(tmp_path, "dpo", [True, False])
    assert compare.side(str(tmp_path / "reports/eval/dpo")).benchmarks() == ["humaneval"]
    s = compare.side("dpo", eval_dir=str(tmp_path / "reports/eval"))
    assert s.result("humaneval")["per_task"][0]["passed"] is True
    with pytest.raises(FileNotFoundError, match="no result for benchmark 'mbpp' at workspace"):
        s.result("mbpp")
