"""Comparing experiments in a real DVC repository (experiments made with `dvc exp save`), the
workspace left exactly as it was: `iterpref-compare EXP:VARIANT EXP:VARIANT` (per-task verdicts read
from a git revision or a DVC experiment) and a sweep's table (`iterpref.reporting.sweep_table`)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from dvc_repo import bare_repo, sh

from iterpref import params as P
from iterpref.reporting import compare, sweep_table


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
    env = bare_repo(root)
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


# --------------------------------------------------------------------------- a sweep's table

# beta -> {variant: outcomes of 8 HumanEval tasks}; the baseline is beta-0's dpo (tasks 0-1 pass)
GRID = {"0.1": {"dpo": [True, True] + [False] * 6, "target_dpo": [True] * 7 + [False]},
        "0.2": {"dpo": [False, True, True] + [False] * 5, "target_dpo": [False] + [True] * 7}}


@pytest.fixture(scope="module")
def sweep_repo(tmp_path_factory):
    """Two experiments saved with `dvc exp save` as a sweep's jobs would be named, beta-0 (beta 0.1)
    and beta-1 (0.2), each with its params.yaml (beta),
    metrics (a focal margin per variant) and evaluations (a DVC output)."""
    root = tmp_path_factory.mktemp("sweep") / "repo"
    env = bare_repo(root)
    (root / "reports/eval").mkdir(parents=True)
    sh(dvc("add", "-q", "reports/eval"), root, env)
    sh(["git", "add", "-A"], root, env)
    sh(["git", "commit", "-qm", "main"], root, env)
    for beta, variants in GRID.items():
        (root / "params.yaml").write_text(yaml.safe_dump({
            "experiment_name": f"beta{beta}", "train": {"common": {"beta": float(beta), "learning_rate": 1e-5},
                                                         "run": list(variants)},
            "eval": {"benchmarks": ["humaneval"]}}))
        (root / "reports/metrics.json").write_text(json.dumps(
            {v: {"humaneval": 100 * sum(o) / 8, "focal_margin": 0.01 * (i + 1)} for i, (v, o) in enumerate(variants.items())}))
        for v, outcomes in variants.items():
            write_result(root, v, outcomes)
        sh(dvc("add", "-q", "reports/eval"), root, env)
        sh(dvc("exp", "save", "-n", f"beta-{list(GRID).index(beta)}", "--include-untracked", "params.yaml",
               "--include-untracked", "reports/metrics.json"), root, env)
    return root, env


def test_holm_adjustment_by_hand():
    # sorted: 0.01 x 4, 0.02 x 3, 0.03 x 2 (monotone: stays 0.06), 0.5 x 1
    assert sweep_table.holm([0.03, 0.5, 0.01, 0.02]) == pytest.approx([0.06, 0.5, 0.04, 0.06])
    assert sweep_table.holm([0.9, 0.8]) == [1.0, 1.0] and sweep_table.holm([]) == []


def test_varied_keys_are_the_swept_parameters():
    a = {"train": {"common": {"beta": 0.1, "lr": 1}, "run": ["dpo"]}, "experiment_name": "x", "swept_keys": []}
    b = {"train": {"common": {"beta": 0.2, "lr": 1}, "run": ["target_dpo"]}, "experiment_name": "y", "new": [1],
         "swept_keys": ["train.common.beta"]}
    assert P.varied_keys([a, b]) == ["new", "train.common.beta"]


def test_sweep_table_against_a_baseline(sweep_repo, tmp_path):
    root, env = sweep_repo
    before = snapshot(root, env)
    proc = subprocess.run([sys.executable, "-m", "iterpref.reporting.sweep_table", "--sweep", "beta",
                           "--baseline", "beta-0:dpo", "--out", str(tmp_path / "table")],
                          cwd=root, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert snapshot(root, env) == before
    rows = list(csv.DictReader((tmp_path / "table.csv").open()))
    assert [(r["experiment"], r["variant"], r["train.common.beta"]) for r in rows] == [
        ("beta-0", "dpo", "0.1"), ("beta-0", "target_dpo", "0.1"), ("beta-1", "dpo", "0.2"),
        ("beta-1", "target_dpo", "0.2")]
    # against beta-0's dpo (tasks 0-1): beta-0's target_dpo +5/-0 (p 1/16), beta-1's dpo +1/-1 (p 1), its
    # target_dpo +6/-1 (p 1/8); Holm: 1/16 x 3, 1/8 x 2, 1 x 1
    got = [(r["gained"], r["lost"], r["p"], r["p_holm"], r["focal_margin"]) for r in rows]
    assert got[0] == ("", "", "", "", "0.01")
    assert got[1:] == [("5", "0", "0.0625", "0.1875", "0.02"), ("1", "1", "1.0", "1.0", "0.01"),
                       ("6", "1", "0.125", "0.25", "0.02")]
    md = (tmp_path / "table.md").read_text()
    assert "Holm's correction of it for the 3 comparisons in this table. Swept: `train.common.beta`." in md
    assert "| beta-0 | target_dpo | humaneval | 0.1 | 87.5 (7/8) | 5 (+5/-0) | 0.0625 | 0.188 | +0.0200 |" in md
    assert "| beta-0 | dpo | humaneval | 0.1 | 25.0 (2/8) | baseline | - | - | +0.0100 |" in md


def test_sweep_table_finds_a_sweeps_experiments_and_refuses_a_bad_baseline(sweep_repo, tmp_path):
    root, env = sweep_repo
    assert sweep_table.sweep_experiments(root, "beta") == ["beta-0", "beta-1"]
    assert sweep_table.sweep_experiments(root, "bet") == []
    run = lambda *a: subprocess.run([sys.executable, "-m", "iterpref.reporting.sweep_table", *a],  # noqa: E731
                                    cwd=root, env=env, capture_output=True, text=True)
    for args, message in [(["beta-0", "--baseline", "beta-0"], "--baseline 'beta-0': expected EXP:VARIANT"),
                          (["beta-0", "--baseline", "beta-0:sft"], "--baseline beta-0:sft: no evaluation of 'sft' at beta-0"),
                          (["--sweep", "grid", "--baseline", "beta-0:dpo"], "--sweep grid: no DVC experiment named grid-<n>")]:
        proc = run(*args, "--out", str(tmp_path / "t"))
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def test_the_multirun_callback_tabulates_its_jobs(sweep_repo, tmp_path, capsys):
    """At a multirun's end: the experiments of the jobs with a DVC log, against the first job's first
    variant when ``sweep.baseline`` is null."""
    from hydra import compose, initialize_config_dir

    from iterpref.config.paths import ROOT

    root, _ = sweep_repo
    for job in ("0", "1"):
        (tmp_path / job).mkdir()
        (tmp_path / job / "dvc.log").write_text("")
    (tmp_path / ".submitit").mkdir()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        config = compose("sweep", overrides=["sweep.name=beta", f"hydra.sweep.dir={tmp_path}"], return_hydra_config=True)
    config.hydra.runtime.cwd = str(root)  # what Hydra sets: the directory the sweep started in
    assert config.hydra.callbacks.sweep_table._target_ == "iterpref.reporting.sweep_table.MultirunTable"
    sweep_table.MultirunTable().on_multirun_end(config=config)
    rows = list(csv.DictReader((tmp_path / "table.csv").open()))
    assert [(r["experiment"], r["variant"], r["p"] != "") for r in rows] == [
        ("beta-0", "dpo", False), ("beta-0", "target_dpo", True), ("beta-1", "dpo", True), ("beta-1", "target_dpo", True)]
    assert f"sweep table: {tmp_path / 'table.md'}" in capsys.readouterr().out
