"""Process-wide settings every stage applies first: torch threads and W&B mode."""

from __future__ import annotations

import os
from pathlib import Path


def configure(params: dict) -> None:
    """Apply ``runtime`` (torch threads) from params."""
    import torch

    torch.set_num_threads(int(params["runtime"]["threads"]))


def wandb_mode(mode: str) -> str:
    """Resolve ``auto``: online with an API key in the environment or ~/.netrc, else offline."""
    if mode != "auto":
        return mode
    netrc = Path.home() / ".netrc"
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (netrc.exists() and "api.wandb.ai" in netrc.read_text())
    return "online" if has_key else "offline"


def wandb_env(params: dict, group: str | None = None) -> list[str]:
    """Point W&B at this experiment (env vars the TRL/transformers callback reads); returns
    the ``report_to`` list for the trainer."""
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
    os.environ["WANDB_RUN_GROUP"] = cfg.get("group") or group or params.get("experiment_name", "iterpref")
    return ["wandb"]
