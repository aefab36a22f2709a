"""Process-wide settings every stage applies first."""

from __future__ import annotations


def configure(params: dict) -> None:
    """Apply ``runtime`` from params: the torch thread count (on 2 cores, 2 threads competing
    with another process can be 7x slower than 1, so it is a setting)."""
    import torch

    torch.set_num_threads(int(params["runtime"]["threads"]))
