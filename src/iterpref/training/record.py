"""The policy's log-probs of the probe's pairs along training: what the probe's curve is drawn from.

At the optimizer steps `record_steps` picks (``train.common.probe_points``), `LogProbRecorder` runs
the policy being trained over the held-out pairs and the training pairs in eval mode
(`iterpref.training.logprobs`, the probe's own path) and writes each step's log-probs into the run's
work folder, where a killed run that resumes from a checkpoint finds the steps it had recorded.
At the end `collect` gathers them into the trained model's folder (`FILE`), with the settings
they were computed under; the probe stage (`iterpref.probe.step_sums`) subtracts the reference's
log-probs and sums them by token group, as it does for the final weights, and takes the last step's
as the final weights' own when the settings are its own (the same numbers: no second pass). Step
0 is not recorded: before the first step the policy is the reference.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from transformers import TrainerCallback

from iterpref.training.logprobs import completion_log_probs, settings

FILE = "along_training.pt"  # in the trained model's folder


def record_steps(points: int, total: int) -> list[int]:
    """The optimizer steps (1-based) to record in a run of ``total`` steps: ``points`` evenly spaced
    ones ending at the last step; -1 or ``points >= total``: every step; 0: none."""
    if points == -1 or points >= total:
        return list(range(1, total + 1))
    return sorted({math.ceil(k * total / points) for k in range(1, points + 1)})


class LogProbRecorder(TrainerCallback):
    """At each of `record_steps`' steps, ``trainer``'s policy's `completion_log_probs` of every set
    of prepared rows (``sets``: {name: a dataset `FocalDPOTrainer._prepare_dataset` returned}),
    written by the main process to ``folder/step-<N>.pt`` with the seconds it took. Every rank runs
    the policy (sharded weights need them all); the model's train mode is restored after."""

    def __init__(self, trainer, sets: dict, points: int, folder: str | os.PathLike, batch_size: int):
        self.trainer, self.sets, self.points, self.batch_size = trainer, sets, points, batch_size
        self.folder = Path(folder)
        self.steps: set[int] = set()

    def on_train_begin(self, args, state, control, **kwargs):
        self.steps = set(record_steps(self.points, state.max_steps))

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step not in self.steps:
            return
        import torch

        start = time.time()
        log_probs = {name: completion_log_probs(self.trainer, self.trainer.model, self.batch_size, rows,
                                                desc=f"step {state.global_step}: {name} log-probs")
                     for name, rows in self.sets.items()}
        if self.trainer.accelerator.is_main_process:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f"step-{state.global_step}.pt.tmp"
            torch.save({"log_probs": log_probs, "seconds": time.time() - start}, tmp)
            tmp.rename(self.folder / f"step-{state.global_step}.pt")


def collect(folder: str | os.PathLike, path: str | os.PathLike, cfg) -> dict[int, float]:
    """Gather the recorder's ``folder`` into one file ``path``: ``{"steps": {step: {set name:
    log-probs}}, "seconds": {step: s}, "settings": the log-prob settings of ``cfg`` (the run's
    `TrainConfig`)}``; returns the seconds per step (nothing recorded: no file)."""
    import torch

    files = {int(p.stem.split("-")[1]): p for p in Path(folder).glob("step-*.pt")} if Path(folder).is_dir() else {}
    if not files:
        return {}
    stored = {step: torch.load(p, weights_only=True) for step, p in sorted(files.items())}
    seconds = {step: round(s["seconds"], 2) for step, s in stored.items()}
    torch.save({"steps": {step: s["log_probs"] for step, s in stored.items()}, "seconds": seconds,
                "settings": settings(cfg)}, path)
    return seconds


def load(path: str | os.PathLike) -> dict | None:
    """`collect`'s file (``steps``, ``seconds``, ``settings``), or None when there is none."""
    import torch

    if not os.path.exists(path):
        return None
    return torch.load(path, weights_only=True)
