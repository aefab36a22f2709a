"""An Optuna sweep end to end on the smoke experiment, in its own temporary copy of the
repository: 2 trials over beta maximising a metric, each a DVC experiment. Both restore the
debugging data and the reference evaluation from DVC's run cache (`seeded_dvc_repo`). Apart from
tests/test_sweeps.py so that the two run in separate test processes."""

from __future__ import annotations

import sys

import processes
import pytest
import yaml
from dvc_repo import CHEAP
from test_sweeps import experiments, metrics

from iterpref import sweep

pytestmark = pytest.mark.slow

# What this module tests is the sweeper, not the benchmarks or W&B (tests/test_sweeps.py and
# tests/test_pipeline.py cover those): one benchmark and no W&B runs make each trial several
# stage start-ups cheaper.
ONE_BENCHMARK_UNLOGGED = ["eval.benchmarks=[humaneval]", "logging=disabled"]


def test_optuna_maximises_a_metric(seeded_dvc_repo):
    """Two Optuna trials over beta, each a DVC experiment whose dpo.average the job returns."""
    root, env = seeded_dvc_repo
    proc = processes.run([sys.executable, "-m", "iterpref.sweep", "--multirun", "hydra/sweeper=maximize",
                           "hydra.sweeper.n_trials=2", "sweep.name=opt", "sweep.metric=dpo.average", *CHEAP,
                           *ONE_BENCHMARK_UNLOGGED, "train.run=[dpo]", "train.common.beta=interval(0.01,0.5)"],
                          cwd=root, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    shown = experiments(root, env)
    trials = {f"opt-{i}": shown[f"opt-{i}"] for i in range(2)}
    betas = {d["params"]["params.yaml"]["data"]["train"]["common"]["beta"] for d in trials.values()}
    assert len(betas) == 2 and all(0.01 <= b <= 0.5 for b in betas)
    values = [sweep.lookup(metrics(d), "dpo.average") for d in trials.values()]
    best = yaml.safe_load((root / "multirun/opt/optimization_results.yaml").read_text())
    assert best["best_value"] == max(values)
