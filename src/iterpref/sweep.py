"""Hydra multirun over the pipeline: every job is one DVC experiment in a temporary workspace.

    python -m iterpref.sweep --multirun experiment=smoke train.common.beta=0.05,0.1 'train.run=[dpo],[target_dpo]'

Before Hydra starts, every point of the grid (a sweeper's ``interval``: both its ends) is composed
and checked like ``dvc exp run -S`` would (`check_grid`), so a bad value at any point fails in one
line before the first job runs. Each job runs
``dvc exp run --temp -n NAME -S OVERRIDE ...`` with its own overrides (all but ``sweep.*``):
jobs may run in parallel (``hydra/launcher=submitit_local``, ``hydra/launcher=slurm``), DVC's
run cache skips every stage whose inputs a job shares with an earlier one, and every job
lands in ``dvc exp show`` as the experiment ``<sweep.name>-<job number>``. Every job also gets
``swept_keys=[...]``: the params keys whose values differ between the grid's points
(`swept_override`), which its summary's Settings section names with their values. The job's output
folder (multirun/<sweep.name>/<job number>/) keeps DVC's log as ``dvc.log``. At the end, the
callback in conf/sweep.yaml writes the sweep's table (multirun/<sweep.name>/table.md and .csv:
every job's variants against ``sweep.baseline``, McNemar with Holm's correction).

With ``sweep.metric`` set (a dotted key of reports/metrics.json, e.g. ``target_dpo.average``)
a job returns that metric of its experiment, read back from ``dvc exp show --json``: what
hydra-optuna-sweeper maximises (``hydra/sweeper=maximize``).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from iterpref.cli import UserError, command

SWEEP_KEY = "sweep"
SWEPT_KEYS = "swept_keys"  # the params key every job's varied keys go in (conf/config.yaml)


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


def override_key(override: str) -> str:
    """The dotted key an override sets: ``+train.common.beta=0.1`` -> ``train.common.beta``."""
    return override.lstrip("+~").split("=", 1)[0]


def dvc_overrides(task_overrides: list[str]) -> list[str]:
    """The job's overrides that configure the pipeline: every one but those of ``sweep.*``."""
    return [o for o in task_overrides if override_key(o).split(".", 1)[0] != SWEEP_KEY]


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


def grid_points(overrides: list[str]) -> list[list[str]]:
    """Every point of a multirun's grid as plain pipeline overrides: comma lists, ``range`` and
    ``choice`` expanded, an ``interval`` by its two ends; ``sweep.*`` and Hydra's own left out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    axes = []
    for o in OverridesParser.create().parse_overrides(overrides):
        key = o.get_key_element()
        if key.lstrip("+~").split(".", 1)[0].split("/", 1)[0] in (SWEEP_KEY, "hydra"):
            continue
        if not o.is_sweep_override():
            axes.append([o.input_line])
        elif o.is_interval_sweep():
            axes.append([f"{key}={o.value().start}", f"{key}={o.value().end}"])
        else:
            axes.append([f"{key}={v}" for v in o.sweep_string_iterator()])
    return [list(point) for point in itertools.product(*axes)]


def check_grid(overrides: list[str], conf_dir: Path) -> list[dict]:
    """Compose and check every grid point against ``conf_dir``; raise UserError naming the first
    bad one. Returns each point's params."""
    from iterpref import params as P

    try:
        points = grid_points(overrides)
    except Exception as err:  # Hydra's OverrideParseException: a malformed override
        raise UserError(f"cannot parse the overrides {overrides}: {err}") from None
    composed = []
    for i, point in enumerate(points, 1):
        try:
            composed.append(P.compose(point, conf_dir))
        except Exception as err:  # Hydra's and OmegaConf's wrappers around a ConfigError or a bad override
            raise UserError(f"grid point {i} of {len(points)} ({' '.join(point)}): {P.config_error(err)}; "
                            f"no job was started") from None
    return composed


def swept_override(overrides: list[str], points: list[dict]) -> str | None:
    """The override that records the grid's varied params keys (`iterpref.params.varied_keys` of
    its ``points``) in every job's ``swept_keys``, so each experiment's summary names them; None
    when nothing varies or the overrides set ``swept_keys`` themselves."""
    from iterpref import params as P

    keys = P.varied_keys(points)
    if not keys or any(override_key(o) == SWEPT_KEYS for o in overrides):
        return None
    return f"{SWEPT_KEYS}=[{','.join(keys)}]"


@command
def main() -> None:
    """Run the Hydra app on conf/sweep.yaml of the repository in the current directory, after
    checking every point of its grid."""
    import hydra

    conf = Path.cwd() / "conf"
    if not (conf / "sweep.yaml").exists():
        raise UserError(f"{conf / 'sweep.yaml'} not found: run iterpref-sweep from the repository root")
    overrides = [a for a in sys.argv[1:] if not a.startswith("-")]
    points = check_grid(overrides, conf)
    print(f"iterpref-sweep: {len(points)} grid point(s) checked", flush=True)
    swept = swept_override(overrides, points)
    if swept:  # one more override of every job, passed on to its `dvc exp run -S`
        sys.argv.append(swept)
        print(f"iterpref-sweep: every job records {swept}", flush=True)
    hydra.main(config_path=str(conf), config_name="sweep", version_base="1.3")(job)()


if __name__ == "__main__":
    main()
