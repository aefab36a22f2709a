"""Weights & Biases: every train, evaluate and probe stage is a run, offline unless a key is configured.

A run is grouped by experiment (the DVC experiment name when DVC runs the stage inside
`dvc exp run`, else ``logging.wandb.group`` or ``experiment_name``) and named by variant
(``dpo``; evaluations ``dpo-humaneval``, probes ``dpo-probe``). Its config holds the resolved
params, the git commit and the DVC experiment name. Training curves come from TRL's own W&B
callback, which logs into the run `stage_run` opened; evaluations log pass@1, error types and a
per-task table; probes the held-out shifts and a per-pair table.

Offline runs land in ``wandb/`` at the repository root, also from DVC's temporary experiment
workspaces (queued and ``--temp`` runs), so ``make sync`` finds them all.
"""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal


@dataclass
class WandbConfig:
    """``logging.wandb``: where runs go. Bookkeeping: no stage lists it as a DVC param, so a
    renamed project or group re-runs nothing.

    Parameters:
        mode (`str`): ``auto`` (online with an API key, else offline), ``online``, ``offline`` or
            ``disabled``.
        project (`str`): the W&B project.
        entity (`str` or `None`): the team or user (None: the key's default).
        group (`str` or `None`): the run group (None: the DVC experiment's name, else
            ``experiment_name``).
    """

    mode: Literal["auto", "online", "offline", "disabled"]
    project: str
    entity: str | None
    group: str | None


@dataclass
class LoggingConfig:
    """The ``logging`` section."""

    wandb: WandbConfig


def wandb_mode(mode: str) -> str:
    """Resolve ``auto``: online with an API key in the environment or ~/.netrc, else offline."""
    if mode != "auto":
        return mode
    netrc = Path.home() / ".netrc"
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (netrc.exists() and "api.wandb.ai" in netrc.read_text())
    return "online" if has_key else "offline"


def dvc_experiment() -> str | None:
    """The DVC experiment this stage runs in (DVC sets ``DVC_EXP_NAME`` for `dvc exp run`)."""
    return os.environ.get("DVC_EXP_NAME") or None


def git_commit() -> str | None:
    """The commit the stage's code comes from: an experiment's baseline commit (DVC runs it on
    a temporary commit of its own), else HEAD; None outside git."""
    if os.environ.get("DVC_EXP_BASELINE_REV"):
        return os.environ["DVC_EXP_BASELINE_REV"]
    proc = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    return (proc.stdout.strip() or None) if proc.returncode == 0 else None


def run_group(params: dict) -> str:
    """The W&B group: ``logging.wandb.group`` if set, else the DVC experiment, else ``experiment_name``."""
    return params["logging"]["wandb"].get("group") or dvc_experiment() or params.get("experiment_name", "iterpref")


def wandb_env(params: dict) -> list[str]:
    """Point W&B at this experiment (the env vars TRL's callback reads); returns ``report_to``."""
    cfg = params["logging"]["wandb"]
    mode = wandb_mode(cfg["mode"])
    if mode == "disabled":
        return []
    os.environ["WANDB_MODE"] = mode
    os.environ["WANDB_PROJECT"] = cfg["project"]
    # DVC points DVC_ROOT at the repository even when the stage runs in a temporary workspace
    os.environ.setdefault("WANDB_DIR", os.environ.get("DVC_ROOT") or str(Path.cwd()))
    os.environ.setdefault("WANDB_SILENT", "true")
    if cfg.get("entity"):
        os.environ["WANDB_ENTITY"] = cfg["entity"]
    os.environ["WANDB_RUN_GROUP"] = run_group(params)
    return ["wandb"]


@contextmanager
def stage_run(params: dict, job_type: str, name: str, **fields) -> Iterator[object | None]:
    """Open the W&B run of one stage (None when W&B is disabled, or on a rank other than 0)
    and finish it on exit.

    ``fields`` (variant, benchmark, ...) join the run's config next to ``params`` (the resolved
    params.yaml), ``git_commit``, ``dvc_experiment`` and ``experiment_name``.
    """
    # under `accelerate launch` every rank runs the stage; only the main one logs
    if not wandb_env(params) or int(os.environ.get("RANK", "0")) != 0:
        yield None
        return
    import wandb

    config = {**fields, "experiment_name": params.get("experiment_name"), "dvc_experiment": dvc_experiment(),
              "git_commit": git_commit(), "params": params}
    run = wandb.init(project=os.environ["WANDB_PROJECT"], group=os.environ["WANDB_RUN_GROUP"], name=name,
                     job_type=job_type, config=config, dir=os.environ["WANDB_DIR"])
    try:
        yield run
    finally:
        run.finish()


def log_train(run, summary: dict) -> None:
    """Add a finished training's summary (pairs, steps, final loss and reward accuracy) to the
    `stage_run` run TRL logged its curves into (nothing when ``run`` is None)."""
    if run is not None:
        run.summary.update({f"final/{k}": v for k, v in summary.items() if v is not None})


def log_eval(params: dict, variant: str, report: dict) -> None:
    """Log one evaluation (pass@1, error types, per-task outcomes) as a run of job type ``eval``."""
    bench = report["benchmark"]
    with stage_run(params, "eval", f"{variant}-{bench}", variant=variant, benchmark=bench,
                   generation=report.get("generation")) as run:
        if run is None:
            return
        import wandb

        table = wandb.Table(columns=["task_id", "passed", "status", "error_type", "reply"],
                            data=[[t["task_id"], t["passed"], t["status"], t["error_type"], t["reply"]]
                                  for t in report["per_task"]])
        run.log({f"{bench}/pass@1": report["pass@1"], f"{bench}/per_task": table,
                 **{f"{bench}/errors/{k}": n for k, n in report.get("error_types", {}).items()}})
        run.summary.update({"variant": variant, f"{bench}/pass@1": report["pass@1"],
                            f"{bench}/passed": report.get("passed"), f"{bench}/tasks": report.get("tasks")})


# The probe report's entries logged to W&B (iterpref.probe.summarise): mean and interval each.
PROBE_KEYS = ("chosen", "rejected_error", "rejected_shared", "chosen_prefix", "chosen_fix", "chosen_suffix",
              "rejected_prefix", "rejected_suffix", "focal_margin", "accuracy", "reward_margin")


def log_probe(params: dict, variant: str, report: dict) -> None:
    """Log one variant's held-out probe (each group's mean shift and interval, focal margin,
    accuracy, reward margin, the per-pair rows and the curve along training when there is one) as a
    run of job type ``probe``, named ``VARIANT-probe``, in the variant's group."""
    with stage_run(params, "probe", f"{variant}-probe", variant=variant) as run:
        if run is None:
            return
        import wandb

        summary = {"variant": variant, "probe/pairs": report["pairs"]}
        for key in PROBE_KEYS:
            if report.get(key):
                lo, hi = report[key]["ci"]
                summary.update({f"probe/{key}": report[key]["mean"], f"probe/{key}_lo": lo, f"probe/{key}_hi": hi})
        rows = report["per_pair"]
        columns = list(rows[0]) if rows else ["pair_id"]
        run.log({"probe/per_pair": wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in rows])})
        if report.get("along_training"):
            columns = ["step", "split", "group", "mean", "lo", "hi", "pairs"]
            run.log({"probe/along_training": wandb.Table(columns=columns,
                                                         data=[[r[c] for c in columns] for r in report["along_training"]])})
        run.summary.update(summary)
