"""Weights & Biases: offline unless a key is configured, one group per experiment.

Training runs log through TRL's own W&B callback (`wandb_env` sets it up); each evaluation
logs its pass@1 and a per-task table as a run of its own, in the same group, so a sweep's
variants compare side by side in the W&B UI (offline runs: `wandb sync wandb/offline-run-*`).
"""

from __future__ import annotations

import os
from pathlib import Path


def wandb_mode(mode: str) -> str:
    """Resolve ``auto``: online with an API key in the environment or ~/.netrc, else offline."""
    if mode != "auto":
        return mode
    netrc = Path.home() / ".netrc"
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (netrc.exists() and "api.wandb.ai" in netrc.read_text())
    return "online" if has_key else "offline"


def wandb_env(params: dict) -> list[str]:
    """Point W&B at this experiment (the env vars TRL's callback reads); returns ``report_to``."""
    cfg = params["logging"]["wandb"]
    mode = wandb_mode(cfg["mode"])
    if mode == "disabled":
        return []
    os.environ["WANDB_MODE"] = mode
    os.environ["WANDB_PROJECT"] = cfg["project"]
    os.environ.setdefault("WANDB_DIR", str(Path.cwd()))
    os.environ.setdefault("WANDB_SILENT", "true")
    if cfg.get("entity"):
        os.environ["WANDB_ENTITY"] = cfg["entity"]
    os.environ["WANDB_RUN_GROUP"] = cfg.get("group") or params.get("experiment_name", "iterpref")
    return ["wandb"]


def log_eval(params: dict, variant: str, report: dict) -> None:
    """Log one evaluation (pass@1 and per-task outcomes) as a W&B run of job type ``eval``."""
    if not wandb_env(params):
        return
    import wandb

    bench = report["benchmark"]
    run = wandb.init(name=f"{params.get('experiment_name', 'iterpref')}-{variant}-{bench}", job_type="eval",
                     group=os.environ["WANDB_RUN_GROUP"], config={"variant": variant, "benchmark": bench,
                                                                  "generation": report.get("generation")})
    table = wandb.Table(columns=["task_id", "passed", "status", "error_type", "reply"],
                        data=[[t["task_id"], t["passed"], t["status"], t["error_type"], t["reply"]]
                              for t in report["per_task"]])
    run.log({f"{bench}/pass@1": report["pass@1"], f"{bench}/per_task": table,
             **{f"{bench}/errors/{k}": n for k, n in report.get("error_types", {}).items()}})
    run.summary.update({"variant": variant, f"{bench}/pass@1": report["pass@1"]})
    run.finish()
