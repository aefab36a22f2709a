"""Grid sweeps end to end on the smoke experiment, in one temporary copy of the repository:
a two-point grid (two betas) through DVC's queue, then the same grid through the Hydra app `iterpref.sweep` with
submitit's local (parallel) executor. Each grid point trains and evaluates one variant; the
debugging data and the reference evaluation are computed once and restored from DVC's run cache
everywhere else. Every train and evaluate stage writes an offline W&B run, grouped by its DVC
experiment. The Optuna sweep is tests/test_sweeps_optuna.py, a module of its own so that a
second test process runs it beside these."""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

import processes
import pytest
from dvc_repo import CHEAP, SEED_STAGES, ran_stages, restored_stages, sh

from iterpref import params as P
from iterpref import sweep
from iterpref.reporting.runs import RunFiles
from iterpref.tracking import wandb_runs

pytestmark = pytest.mark.slow

# two points: each experiment costs minutes of the suite, and two show what a grid must (each point its
# own experiment and W&B group, the shared stages computed once, a table against the first point)
GRID = ["train.common.beta=0.05,0.1", "train.run=[dpo]"]
CONF = Path(__file__).resolve().parents[1] / "conf"
SWEPT = "swept_keys=[train.common.beta]"  # what the grid varies


def dvc(*args: str) -> list[str]:
    return [sys.executable, "-m", "dvc", *args]


def experiments(root, env) -> dict[str, dict]:
    """name -> data of every experiment in `dvc exp show --json`."""
    shown = json.loads(processes.run(dvc("exp", "show", "--json"), cwd=root, env=env, capture_output=True,
                                      text=True, check=True).stdout)
    return {e["name"]: e["revs"][0]["data"] for b in shown for e in (b.get("experiments") or [])}


def metrics(data: dict) -> dict:
    return data["metrics"]["reports/metrics.json"]["data"]


def queue_done(root, env, names: list[str], timeout_s: float = 3600) -> str:
    """Wait for DVC's queue to finish ``names``; returns the last `dvc queue status`. Every 2 s
    git's experiment refs are read (a git call: each finished experiment leaves one), and `dvc
    queue status` (a DVC process, over a CPU second) is asked only once every name has its ref, or
    once a minute (a failed experiment leaves none)."""
    deadline, asked = time.monotonic() + timeout_s, 0.0
    while time.monotonic() < deadline:
        refs = sh(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], root, env).split()
        finished = {ref.rsplit("/", 1)[-1] for ref in refs} >= set(names)
        if finished or time.monotonic() - asked > 60:
            asked, status = time.monotonic(), sh(dvc("queue", "status"), root, env)
            if not any(s in status for s in ("Queued", "Running")):
                return status
        time.sleep(2)
    raise TimeoutError(f"the queue did not finish {names} in {timeout_s} s")


@pytest.fixture(scope="module")
def queued(seeded_dvc_repo):
    """The grid queued with `dvc exp run --queue` and run by `dvc queue start`; returns
    {exp name: (beta, variant)} and each experiment's log."""
    root, env = seeded_dvc_repo
    out = sh(dvc("exp", "run", "--queue", *[a for o in CHEAP + GRID + [SWEPT] for a in ("-S", o)]), root, env)
    names = [line.split("'")[1] for line in out.splitlines() if line.startswith("Queued experiment")]
    assert len(names) == 2, out
    sh(dvc("queue", "start"), root, env)
    try:
        status = queue_done(root, env, names)
    finally:
        sh(dvc("queue", "stop"), root, env)
    assert status.count("Success") == 2, status
    logs = {n: sh(dvc("queue", "logs", n), root, env) for n in names}
    shown = experiments(root, env)
    grid = {n: (shown[n]["params"]["params.yaml"]["data"]["train"]["common"]["beta"],
                shown[n]["params"]["params.yaml"]["data"]["train"]["run"][0]) for n in names}
    return grid, logs, shown


def test_every_job_of_a_sweep_records_the_grids_varied_keys():
    points = sweep.check_grid(CHEAP + GRID, CONF)
    assert len(points) == 2
    assert sweep.swept_override(CHEAP + GRID, points) == SWEPT
    assert P.compose([*CHEAP, "train.common.beta=0.05", SWEPT])["swept_keys"] == ["train.common.beta"]
    assert sweep.swept_override([*CHEAP, *GRID, "swept_keys=[]"], points) is None  # the user's own say
    assert sweep.swept_override(CHEAP, sweep.check_grid(CHEAP, CONF)) is None  # one point


def test_dvc_queue_grid(dvc_repo, queued):
    root, env = dvc_repo
    grid, logs, shown = queued
    assert sorted(grid.values()) == [(0.05, "dpo"), (0.1, "dpo")]
    for name, (beta, _) in grid.items():  # each summary names the swept key with its value there
        summary = RunFiles(root, name).read_text("reports/summary.md")
        assert f"- swept: `train.common.beta` = {beta} (this run is one point of a sweep" in summary, summary
    # the stages the points share ran in neither: both restored them from the run cache (the suite
    # computed them once, in dvc_repo.seed_cache, with the same deps and params)
    for log in logs.values():
        assert restored_stages(log) == set(SEED_STAGES), log[-3000:]
    for name, (beta, variant) in grid.items():
        assert ran_stages(logs[name]) >= {f"train@{variant}", f"probe@{variant}", f"evaluate@{variant}-humaneval",
                                          f"evaluate@{variant}-mbpp", "report"}
        m = metrics(shown[name])
        assert set(m) == {"reference", variant, "data"}
        assert set(m[variant]) == {"humaneval", "mbpp", "average", "train_loss", "reward_margin", "reward_accuracy",
                                   "d_minus_shift", "focal_margin", "heldout_accuracy", "heldout_reward_margin"}

    # `dvc metrics diff` between two experiments: pass@1 per benchmark
    by_point = {v: k for k, v in grid.items()}
    diff = json.loads(sh(dvc("metrics", "diff", "--all", "--json", by_point[(0.05, "dpo")], by_point[(0.1, "dpo")]),
                         root, env))
    assert {"dpo.humaneval", "dpo.mbpp", "reference.humaneval", "reference.mbpp"} <= set(diff["reports/metrics.json"])
    # the comparison stays short: reports/metrics.json is the only metrics file, the details are plain outputs
    assert set(diff) == {"reports/metrics.json"} and "dpo.train_loss" in diff["reports/metrics.json"]

    # iterpref-compare across two experiments: their verdicts from DVC's cache, the workspace untouched
    status = sh(["git", "status", "--porcelain"], root, env)
    a, b = by_point[(0.05, "dpo")], by_point[(0.1, "dpo")]
    rows = json.loads(processes.run([sys.executable, "-m", "iterpref.reporting.compare", f"{a}:dpo", f"{b}:dpo",
                                      "--json"], cwd=root, env=env, capture_output=True, text=True, check=True).stdout)
    assert [r["benchmark"] for r in rows] == ["humaneval", "mbpp"]
    for r in rows:
        assert 100 * r["pass@1_a"] == pytest.approx(metrics(shown[a])["dpo"][r["benchmark"]], abs=0.01)
        assert 100 * r["pass@1_b"] == pytest.approx(metrics(shown[b])["dpo"][r["benchmark"]], abs=0.01)
    assert sh(["git", "status", "--porcelain"], root, env) == status
    assert not (root / "reports/eval/dpo").exists()  # nothing was applied to the workspace

    # W&B: one group per experiment, a train run named by its variant with the swept config
    head = sh(["git", "rev-parse", "HEAD"], root, env).strip()
    runs = wandb_runs.offline_runs(root / "wandb", wait_s=30)
    assert {r.group for r in runs} == set(grid)
    for name, (beta, variant) in grid.items():
        group = {r.name: r for r in runs if r.group == name}
        assert {variant, f"{variant}-humaneval", f"{variant}-mbpp"} <= set(group), group
        train = group[variant]
        assert train.job_type == "train" and train.config["dvc_experiment"] == name
        assert train.config["git_commit"] == head
        assert train.config["params"]["train"]["common"]["beta"] == beta
        assert any("train/loss" in h for h in train.history), train.history
        for bench in ("humaneval", "mbpp"):
            assert group[f"{variant}-{bench}"].summary[f"{bench}/pass@1"] * 100 == pytest.approx(
                metrics(shown[name])[variant][bench], abs=0.01)


def test_hydra_multirun_with_submitit_local(dvc_repo, queued):
    """The same grid as Hydra jobs run in parallel by submitit: two more experiments, every
    train and evaluate stage restored from the run cache, the same metrics."""
    root, env = dvc_repo
    grid, _, shown_before = queued
    proc = processes.run([sys.executable, "-m", "iterpref.sweep", "--multirun", "hydra/launcher=submitit_local",
                           "sweep.name=grid", *CHEAP, *GRID], cwd=root, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    shown = experiments(root, env)
    for job in range(2):
        name = f"grid-{job}"
        log = (root / "multirun/grid" / str(job) / "dvc.log").read_text()
        assert ran_stages(log) == {"report"}, log[-3000:]
        params = shown[name]["params"]["params.yaml"]["data"]
        point = (params["train"]["common"]["beta"], params["train"]["run"][0])
        assert params["swept_keys"] == ["train.common.beta"]  # iterpref-sweep passed it to every job
        [same] = [n for n, p in grid.items() if p == point]
        assert metrics(shown[name]) == metrics(shown_before[same])

    # the multirun's end wrote the sweep's table: grid-1's variant against grid-0's, Holm over 2 tests
    rows = list(csv.DictReader((root / "multirun/grid/table.csv").open()))
    assert {(r["experiment"], r["benchmark"]) for r in rows} == {(f"grid-{j}", b) for j in range(2)
                                                                 for b in ("humaneval", "mbpp")}
    assert {r["train.common.beta"] for r in rows} == {"0.05", "0.1"}
    tested = [r for r in rows if r["p"]]
    assert len(tested) == 2 and all(float(r["p_holm"]) >= float(r["p"]) for r in tested)
    for r in rows:
        m = metrics(shown[r["experiment"]])[r["variant"]]
        assert float(r["pass@1"]) == pytest.approx(m[r["benchmark"]], abs=0.01)
        assert float(r["focal_margin"]) == m["focal_margin"]
    assert "Holm's correction of it for the 2 comparisons" in (root / "multirun/grid/table.md").read_text()

