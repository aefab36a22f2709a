"""The reference model's log-probs of a set of pairs, computed once and shared by every variant's probe.

The reference (models/student) is the same for every variant, and so are its log-probs of a pair's
completion tokens, given the settings that change them (`iterpref.training.logprobs.settings`: the
cut at ``max_length``, the
autocast, the batch). The `reference_logprobs` stage writes them per pair set
(data/reference_logprobs/{heldout,training}.pt); each `probe@VARIANT` reads them and runs only its
policy. A file whose settings differ from the variant's, or that lacks one of its pairs, is not
used (`load` returns None) and the probe runs the reference itself.
"""

from __future__ import annotations

import os

from iterpref.probe import probe_trainer
from iterpref.records import Pair
from iterpref.training.logprobs import completion_log_probs, settings
from iterpref.training.recipe import TrainConfig


def compute(reference_dir: str | os.PathLike, pairs: list[Pair], cfg: TrainConfig, use_cpu: bool) -> dict[str, dict]:
    """The reference's `completion_log_probs` of ``pairs`` (training's tokenisation, cut and
    autocast, as `iterpref.probe.pair_sums` computes them)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not pairs:
        return {}
    # the trainer wants a policy beside the reference; it is loaded, never run
    trainer = probe_trainer(AutoModelForCausalLM.from_pretrained(reference_dir),
                            AutoModelForCausalLM.from_pretrained(reference_dir),
                            AutoTokenizer.from_pretrained(reference_dir), pairs, cfg, use_cpu)
    return completion_log_probs(trainer, trainer.ref_model, cfg.per_device_batch_size)


def save(path: str | os.PathLike, log_probs: dict[str, dict], cfg: TrainConfig) -> None:
    """Write ``log_probs`` (`compute`'s) with the settings they were computed under."""
    import torch

    torch.save({"settings": settings(cfg), "log_probs": log_probs}, path)


def load(path: str | os.PathLike, pairs: list[Pair], cfg: TrainConfig) -> dict[str, dict] | None:
    """The log-probs in ``path`` when the file exists, was computed under ``cfg``'s settings and
    holds every pair of ``pairs``; else None."""
    import torch

    if not os.path.exists(path):
        return None
    stored = torch.load(path, weights_only=True)
    if stored["settings"] != settings(cfg) or any(p.pair_id not in stored["log_probs"] for p in pairs):
        return None
    return stored["log_probs"]
