"""The focal effect where it acts: how training moved each kind of token's log-prob on held-out pairs.

For every held-out pair (``data/pairs_heldout.jsonl``: problems training never saw) and every
completion token, the shift ``log p_policy - log p_reference``, split into three groups:

- ``chosen``: every token of the chosen completion;
- ``rejected_error``: the rejected tokens on the lines the fix changed (D-), which Target-DPO
  pushes down;
- ``rejected_shared``: the other rejected tokens, which Target-DPO leaves alone and plain DPO
  pushes down with the rest.

The pairs go through training's own path: `FocalDPOTrainer` tokenises them (TRL's chat template
and prompt/completion split), its collator truncates and pads them, and the D- mask is training's
line mask (`iterpref.training.masks`, mode ``line``, whatever mask the variant trained with).
Per-token log-probs come from TRL's fused LM head under the trainer's autocast, as in a training
step.

`summarise` turns the per-pair sums into the report: per group the mean shift (token mean within a
pair, then mean over pairs) with a percentile bootstrap interval over pairs; the focal margin
(shared minus error shift, per pair); the held-out preference accuracy and the DPO reward margin
``beta * (sum chosen log-ratio - sum rejected log-ratio)`` over whole completions.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace

import numpy as np

from iterpref.records import Pair
from iterpref.training.masks import MaskConfig
from iterpref.training.recipe import TrainConfig

GROUPS = ("chosen", "rejected_error", "rejected_shared")
# The mask that says which rejected tokens are D-: training's Target-DPO line mask.
D_MINUS = MaskConfig(mode="line")
BOOTSTRAP = {"resamples": 2000, "seed": 0, "level": 0.95}


def probe_trainer(policy, reference, tokenizer, pairs: list[Pair], cfg: TrainConfig, use_cpu: bool):
    """A `FocalDPOTrainer` on ``pairs`` that is never trained: its dataset holds training's token ids
    and D- masks, its collator truncates and pads as training does, its accelerator casts as
    training does (``cfg.bf16``), and its models are ``policy`` and ``reference`` (loaded models)."""
    from iterpref.training.recipe import dpo_config, pairs_dataset
    from iterpref.training.trainer import FocalDPOTrainer

    plain = replace(cfg, mask=D_MINUS, precompute_ref_log_probs=False, lora=None, deepspeed=None,
                    gradient_checkpointing=False)
    with tempfile.TemporaryDirectory(prefix="iterpref-probe-") as out:
        return FocalDPOTrainer(model=policy, ref_model=reference, args=dpo_config(plain, out, "probe", [], use_cpu),
                               train_dataset=pairs_dataset(pairs), processing_class=tokenizer, mask=D_MINUS)


def group_masks(collate, rows: list[dict]) -> tuple[dict, dict]:
    """``rows`` (prepared dataset rows) collated as training collates them, and each group's mask
    over the batch's next-token positions (``[len(rows), seq_len - 1]``: entry ``j`` is the token
    at ``input_ids[:, j + 1]``); the chosen rows come first in the batch, then the rejected."""
    from iterpref.training.trainer import MASK_COLUMNS

    whole = collate([{k: v for k, v in r.items() if k not in MASK_COLUMNS} for r in rows])  # TRL's completion mask
    focal = collate(rows)["completion_mask"]  # the rejected rows narrowed to D-
    completion, error = whole["completion_mask"][:, 1:].bool(), focal[:, 1:].bool()
    n = len(rows)
    return whole, {"chosen": completion[:n], "rejected_error": error[n:],
                   "rejected_shared": completion[n:] & ~error[n:]}


def pair_sums(policy_dir: str | os.PathLike, reference_dir: str | os.PathLike, pairs: list[Pair], cfg: TrainConfig,
              use_cpu: bool) -> list[dict]:
    """Per pair: the token count and the summed shift ``log p_policy - log p_reference`` of each
    group (``<group>_tokens``, ``<group>_sum``), with ``pair_id`` and ``task_id``.

    ``cfg`` is the variant's training config: its ``max_length`` truncates as in training, its
    ``bf16`` sets the autocast, its ``per_device_batch_size`` the batch. Pairs whose prompt alone
    fills ``max_length`` are dropped, as TRL drops them from training.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not pairs:
        return []
    trainer = probe_trainer(AutoModelForCausalLM.from_pretrained(policy_dir),
                            AutoModelForCausalLM.from_pretrained(reference_dir),
                            AutoTokenizer.from_pretrained(reference_dir), pairs, cfg, use_cpu)
    rows, device = trainer.train_dataset, trainer.accelerator.device
    task = {p.pair_id: p.task_id for p in pairs}
    models = [m.to(device).eval() for m in (trainer.model, trainer.ref_model)]
    out = []
    for start in range(0, len(rows), cfg.per_device_batch_size):
        batch = [rows[i] for i in range(start, min(start + cfg.per_device_batch_size, len(rows)))]
        whole, masks = group_masks(trainer.data_collator, batch)
        ids, attention = whole["input_ids"].to(device), whole["attention_mask"].to(device)
        labels = ids.masked_fill(whole["completion_mask"].to(device) == 0, -100)
        with torch.no_grad(), trainer.accelerator.autocast():
            policy_lp, reference_lp = (m(input_ids=ids, attention_mask=attention, labels=labels, fused_lm_head=True,
                                         use_cache=False).log_probs.float().cpu() for m in models)
        chosen, rejected = (policy_lp - reference_lp).chunk(2)
        for k, row in enumerate(batch):
            sums = {"pair_id": row["pair_id"], "task_id": task[row["pair_id"]]}
            for group, mask in masks.items():
                side = chosen[k] if group == "chosen" else rejected[k]
                sums[f"{group}_tokens"] = int(mask[k].sum())
                sums[f"{group}_sum"] = float(side[mask[k]].sum())
            out.append(sums)
    return out


def bootstrap(values: list[float], resamples: int = BOOTSTRAP["resamples"], seed: int = BOOTSTRAP["seed"],
              level: float = BOOTSTRAP["level"]) -> dict | None:
    """The mean of ``values`` with a percentile bootstrap interval (resampling the values with
    replacement, seeded): ``{"mean", "ci": [lo, hi], "pairs"}``; None for no values."""
    if not values:
        return None
    x = np.asarray(values, dtype=float)
    means = x[np.random.default_rng(seed).integers(0, len(x), (resamples, len(x)))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": float(x.mean()), "ci": [float(lo), float(hi)], "pairs": len(x)}


def summarise(sums: list[dict], beta: float) -> dict:
    """The probe report of `pair_sums`' rows: each group's mean shift, ``focal_margin`` (shared
    minus error, over the pairs with both), ``accuracy`` (share of pairs whose reward margin is
    positive) and ``reward_margin``, each as `bootstrap` gives it (None without pairs); and
    ``per_pair``, the rows with their per-pair values."""
    per_pair = []
    for s in sums:
        row = dict(s)
        for group in GROUPS:
            row[f"{group}_shift"] = s[f"{group}_sum"] / s[f"{group}_tokens"] if s[f"{group}_tokens"] else None
        error, shared = row["rejected_error_shift"], row["rejected_shared_shift"]
        row["focal_margin"] = shared - error if error is not None and shared is not None else None
        row["reward_margin"] = beta * (s["chosen_sum"] - s["rejected_error_sum"] - s["rejected_shared_sum"])
        per_pair.append(row)

    def over_pairs(key: str, fn=lambda v: v) -> dict | None:
        return bootstrap([fn(r[key]) for r in per_pair if r[key] is not None])

    report = {group: over_pairs(f"{group}_shift") for group in GROUPS}
    report.update({"focal_margin": over_pairs("focal_margin"),
                   "accuracy": over_pairs("reward_margin", lambda m: float(m > 0)),
                   "reward_margin": over_pairs("reward_margin"),
                   "pairs": len(per_pair), "beta": beta, "bootstrap": dict(BOOTSTRAP), "per_pair": per_pair})
    return report
