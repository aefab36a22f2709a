"""Process-wide settings every stage applies first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from iterpref.config.fields import spec


@dataclass
class RuntimeConfig:
    """The ``runtime`` section: how a stage uses the machine. Both change numerics (thread count
    changes the order of floating-point reductions; the device changes kernels), so they are
    stage params.

    Parameters:
        threads (`int`): torch's intra-op threads.
        device (`str`): ``auto`` (a GPU when there is one), ``cpu`` or ``cuda``.
    """

    threads: int = spec(ge=1)
    device: Literal["auto", "cpu", "cuda"] = spec()


def configure(params: dict) -> None:
    """Apply ``runtime`` from params: the torch thread count (on 2 cores, 2 threads competing
    with another process can be 7x slower than 1, so it is a setting)."""
    import torch

    torch.set_num_threads(int(params["runtime"]["threads"]))


def peak_rss_gib() -> float:
    """This process's peak resident memory so far, in GiB (Linux reports ru_maxrss in KiB);
    the sandboxed children that run generated code are not counted."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
