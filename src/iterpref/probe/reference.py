"""The reference model's log-probs of a set of pairs, computed once and shared by training and every
variant's probe.

The reference (models/student) is the same for every variant, and so are its log-probs of a pair's
completion tokens, given the settings that change them (`iterpref.training.logprobs.settings`: the
cut at ``max_length``, the autocast, the batch). The `reference_logprobs` stage writes them per pair
set (data/reference_logprobs/{heldout,training}.pt, `iterpref.training.logprobs.save`); training's
precompute sums them under its variant's masks and each `probe@VARIANT` runs only its policy. A
file whose settings differ from the variant's, or that lacks one of its pairs, is not used
(`iterpref.training.logprobs.load` returns None) and the reference runs where it is needed.
"""

from __future__ import annotations

import os

from iterpref.probe import probe_trainer
from iterpref.records import Pair
from iterpref.training.logprobs import completion_log_probs
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
