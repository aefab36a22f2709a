"""Hydra multirun over the pipeline: every job is one DVC experiment in a temporary workspace.

    python -m iterpref.sweep --multirun experiment=smoke train.common.beta=0.05,0.1 'train.run=[dpo],[target_dpo]'

The app composes conf/sweep.yaml (conf/config.yaml plus a ``sweep`` node and the Hydra
launcher/sweeper settings), so a bad override fails before anything runs. Each job runs
``dvc exp run --temp -n NAME -S OVERRIDE ...`` with its own overrides (all but ``sweep.*``):
jobs may run in parallel (``hydra/launcher=submitit_local``, ``hydra/launcher=slurm``), DVC's
run cache skips every stage whose inputs a job shares with an earlier one, and every job
lands in ``dvc exp show`` as the experiment ``<sweep.name>-<job number>``. The job's output
folder (multirun/<sweep.name>/<job number>/) keeps DVC's log as ``dvc.log``. At the end, the
callback in conf/sweep.yaml writes the sweep's table (multirun/<sweep.name>/table.md and .csv:
every job's variants against ``sweep.baseline``, McNemar with Holm's correction).

With ``sweep.metric`` set (a dotted key of reports/metrics.json, e.g. ``target_dpo.average``)
a job returns that metric of its experiment, read back from ``dvc exp show --json``: what
hydra-optuna-sweeper maximises (``hydra/sweeper=maximize``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

SWEEP_KEY = "sweep"


@dataclass
class SweepConfig:
    """The ``sweep`` node of conf/sweep.yaml (never passed to DVC).

    Attributes:
        name: the sweep's name: its jobs' output folder ``multirun/<name>/`` and its DVC
            experiments ``<name>-<job number>`` (default: the launch time, ``%Y%m%d-%H%M%S``).
        repo: the DVC repository the jobs run in (default: the directory the sweep started in).
        metric: dotted key of reports/metrics.json a job returns, e.g. ``target_dpo.average``
            or ``dpo.humaneval`` (pass@1 in percent); null: jobs return nothing. Required by
            sweepers that optimise (optuna).
        dvc_args: extra arguments for ``dvc exp run``, e.g. ``[--pull]``.
        baseline: ``EXP:VARIANT`` the table written at the multirun's end compares every job's
            variants with (`iterpref.reporting.sweep_table`); null: the first job's first variant.
    """

    name: str
    repo: str
    metric: str | None = None
    dvc_args: list[str] = field(default_factory=list)
    baseline: str | None = None


def dvc_overrides(task_overrides: list[str]) -> list[str]:
    """The job's overrides that configure the pipeline: every one but those of ``sweep.*``."""
    return [o for o in task_overrides if o.lstrip("+~").split("=", 1)[0].split(".", 1)[0] != SWEEP_KEY]


def dvc_command(name: str, overrides: list[str], dvc_args: list[str]) -> list[str]:
    """``dvc exp run --temp`` for one job; it waits for the repository lock other jobs hold."""
    cmd = [sys.executable, "-m", "dvc", "--wait-for-lock", "exp", "run", "--temp", "-n", name, *dvc_args]
    for o in overrides:
        cmd += ["-S", o]
    return cmd


def run_logged(cmd: list[str], cwd: Path, log: Path) -> None:
    """Run ``cmd`` in ``cwd``, its output both printed and written to ``log``; fail with its tail."""
    log.parent.mkdir(parents=True, exist_ok=True)
    tail: list[str] = []
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for line in proc.stdout:
            fh.write(line)
            fh.flush()
            sys.stdout.write(line)
            tail = (tail + [line])[-40:]
        proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {proc.returncode} (log: {log}):\n{''.join(tail)}")


def find_experiment(exp_show: list, name: str) -> dict:
    """The ``data`` of the experiment ``name`` in ``dvc exp show --json`` output."""
    stack = list(exp_show)
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("name") == name and isinstance(node.get("data"), dict):
                return node["data"]
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    raise KeyError(f"dvc exp show: no experiment named {name!r}")


def experiment_metrics(repo: Path, name: str, path: str = "reports/metrics.json") -> dict:
    """The metrics file ``path`` of the experiment ``name``, as ``dvc exp show --json`` reports it."""
    proc = subprocess.run([sys.executable, "-m", "dvc", "--wait-for-lock", "exp", "show", "--json"], cwd=repo,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"dvc exp show failed in {repo}:\n{proc.stderr[-2000:]}")
    metrics = find_experiment(json.loads(proc.stdout), name).get("metrics") or {}
    if path not in metrics or "data" not in metrics[path]:
        raise KeyError(f"experiment {name!r} has no {path} (its metrics files: {sorted(metrics)})")
    return metrics[path]["data"]


def lookup(metrics: dict, key: str) -> float:
    """The value at dotted ``key`` of a nested metrics dict; a missing key names those present."""
    node = metrics
    for i, part in enumerate(key.split(".")):
        if not isinstance(node, dict) or part not in node:
            where = ".".join(key.split(".")[:i]) or "the top level"
            have = sorted(node) if isinstance(node, dict) else []
            raise KeyError(f"sweep.metric={key}: reports/metrics.json has no {part!r} under {where}; keys there: {have}")
        node = node[part]
    return float(node)


def job(cfg) -> float | None:
    """One Hydra job: one ``dvc exp run --temp``; returns ``sweep.metric`` of its experiment."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from iterpref.config.fields import build

    hc = HydraConfig.get()
    sweep = build(SweepConfig, OmegaConf.to_container(cfg[SWEEP_KEY], resolve=True), SWEEP_KEY)
    optimising = "optuna" in str(hc.sweeper.get("_target_", ""))
    if optimising and not sweep.metric:
        raise ValueError("conf/sweep.yaml: sweep.metric is null, but the optuna sweeper needs a metric to "
                         "maximise; pass e.g. sweep.metric=target_dpo.average")
    name = f"{sweep.name}-{hc.job.num}"
    repo = Path(sweep.repo)
    run_logged(dvc_command(name, dvc_overrides(list(hc.overrides.task)), sweep.dvc_args), repo,
               Path(hc.runtime.output_dir) / "dvc.log")
    if not sweep.metric:
        return None
    value = lookup(experiment_metrics(repo, name), sweep.metric)
    print(f"{name}: {sweep.metric} = {value}")
    return value


def main() -> None:
    """Run the Hydra app on conf/sweep.yaml of the repository in the current directory."""
    import hydra

    conf = Path.cwd() / "conf"
    if not (conf / "sweep.yaml").exists():
        raise SystemExit(f"{conf / 'sweep.yaml'} not found: run python -m iterpref.sweep from the repository root")
    hydra.main(config_path=str(conf), config_name="sweep", version_base="1.3")(job)()


if __name__ == "__main__":
    main()
