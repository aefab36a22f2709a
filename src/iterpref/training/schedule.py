"""The learning-rate schedule: transformers' named schedules, with a warmup whose first step is
not at learning rate 0.

transformers ramps a warmup of W steps as ``step / W``, so its step 0 runs at learning rate 0:
with ``warmup_ratio`` 0.03, a run of up to 33 steps spends its first step doing nothing (a 1-step
run changes no weight). Here warmup step ``s`` runs at ``(s + 1) / W`` of the peak (the ramp reaches
the peak one step earlier); after the warmup the schedule is transformers' own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import torch

Schedule = Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup"]


def warmup_steps(warmup_ratio: float, total_steps: int) -> int:
    """The warmup length transformers gives a ratio: ``ceil(ratio * total)``."""
    return math.ceil(warmup_ratio * total_steps)


def factor(schedule: Schedule, warmup: int, total_steps: int) -> Callable[[int], float]:
    """The multiplier of the peak learning rate at each optimizer step (0-based)."""
    import torch
    from transformers import get_scheduler

    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    base = get_scheduler(schedule, probe, num_warmup_steps=warmup, num_training_steps=total_steps).lr_lambdas[0]
    return lambda step: base(step + 1) if step < warmup else base(step)


def learning_rates(peak: float, schedule: Schedule, warmup_ratio: float, total_steps: int) -> list[float]:
    """The learning rate of every optimizer step of a run of ``total_steps`` steps."""
    f = factor(schedule, warmup_steps(warmup_ratio, total_steps), total_steps)
    return [peak * f(step) for step in range(total_steps)]


def scheduler(optimizer: torch.optim.Optimizer, schedule: Schedule, warmup: int,
              total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The scheduler the trainer steps once per optimizer step."""
    import torch

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor(schedule, warmup, total_steps))


def total_steps(n_pairs: int, per_device_batch_size: int, gradient_accumulation_steps: int, processes: int,
                epochs: float, max_steps: int) -> int:
    """How many optimizer steps transformers' Trainer runs on ``n_pairs`` pairs."""
    if max_steps > 0:
        return max_steps
    batches = math.ceil(n_pairs / (per_device_batch_size * processes))
    return math.ceil(epochs * max(batches // gradient_accumulation_steps, 1))
