"""The focal effect where it acts: how training moved each kind of token's log-prob, by position.

For every pair and every completion token, the shift ``log p_policy - log p_reference``, in six
groups by where the token lies relative to the fix (`iterpref.probe.positions`):

- chosen side: ``chosen_prefix`` (the shared code before the first changed line), ``chosen_fix``
  (D+, the lines the fix wrote), ``chosen_suffix`` (everything after the first change that the
  fix did not write);
- rejected side: ``rejected_prefix``, ``rejected_error`` (D-, the lines the fix changed, which
  Target-DPO pushes down), ``rejected_suffix``;

and two unions kept from the first probe: ``chosen`` (every chosen token) and
``rejected_shared`` (every rejected token outside D-, prefix and suffix).

The pairs go through training's own path: `FocalDPOTrainer` tokenises them (TRL's chat template
and prompt/completion split) and its collator truncates and pads them; the groups are masks over
TRL's own token ids, with training's mask rule. Per-token log-probs come from TRL's fused LM head
under the trainer's autocast, as in a training step.

`summarise` turns the per-pair sums into the report: per group the mean shift (token mean within a
pair, then mean over pairs) with a percentile bootstrap interval over pairs; the focal margin
(shared minus error shift, per pair); the preference accuracy and the DPO reward margin
``beta * (sum chosen log-ratio - sum rejected log-ratio)`` over whole completions.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace

import numpy as np

from iterpref.probe.positions import GROUPS, SIDES, position_masks, token_ranges
from iterpref.records import Pair
from iterpref.training.masks import MaskConfig
from iterpref.training.recipe import TrainConfig

# The unions the first probe reported, built from the position groups.
UNIONS = {"chosen": SIDES["chosen"], "rejected_shared": ("rejected_prefix", "rejected_suffix")}
SHIFTS = (*GROUPS, *UNIONS)
BOOTSTRAP = {"resamples": 2000, "seed": 0, "level": 0.95}


def probe_trainer(policy, reference, tokenizer, pairs: list[Pair], cfg: TrainConfig, use_cpu: bool):
    """A `FocalDPOTrainer` on ``pairs`` that is never trained: its dataset holds training's token ids,
    its collator truncates and pads as training does, its accelerator casts as training does
    (``cfg.bf16``), and its models are ``policy`` and ``reference`` (loaded models)."""
    from iterpref.training.recipe import dpo_config, pairs_dataset
    from iterpref.training.trainer import FocalDPOTrainer

    plain = replace(cfg, mask=MaskConfig(mode="none"), precompute_ref_log_probs=False, lora=None, deepspeed=None,
                    gradient_checkpointing=False)
    with tempfile.TemporaryDirectory(prefix="iterpref-probe-") as out:
        return FocalDPOTrainer(model=policy, ref_model=reference, args=dpo_config(plain, out, "probe", [], use_cpu),
                               train_dataset=pairs_dataset(pairs), processing_class=tokenizer, mask=plain.mask)


def group_masks(collate, rows: list[dict], per_row: list[dict[str, list[int]]]) -> tuple[dict, dict]:
    """``rows`` (prepared dataset rows) collated as training collates them, and each group's mask
    over the batch's next-token positions (``[len(rows), seq_len - 1]``: entry ``j`` is the token
    at ``input_ids[:, j + 1]``); the chosen rows come first in the batch, then the rejected.
    ``per_row``: each row's `position_masks`; the collator truncates them as it truncates the ids."""
    from iterpref.training.trainer import MASK_COLUMNS

    bare = [{k: v for k, v in r.items() if k not in MASK_COLUMNS} for r in rows]
    whole = collate(bare)  # TRL's completion mask
    n, out = len(rows), {}
    for chosen, rejected in zip(SIDES["chosen"], SIDES["rejected"]):
        narrowed = collate([{**r, MASK_COLUMNS[0]: m[chosen], MASK_COLUMNS[1]: m[rejected]}
                            for r, m in zip(bare, per_row)])["completion_mask"][:, 1:].bool()
        out[chosen], out[rejected] = narrowed[:n], narrowed[n:]
    return whole, out


def token_detail(row: dict, tokenizer, side: str, shifts, masks: dict, position) -> list[list]:
    """One completion's tokens in order as ``[text, shift, group]`` (``shifts``: the side's per-
    position shifts; ``position``: which positions hold its completion tokens, after truncation)."""
    text = row[side][-1]["content"]
    ids = row[f"{side}_ids"]
    names = SIDES[side]
    out = []
    for i, ((start, end), shift) in enumerate(zip(token_ranges(row, tokenizer, side), shifts[position].tolist())):
        piece = text[start:min(end, len(text))] if start < len(text) else tokenizer.decode([ids[i]])
        group = next(g for g in names if masks[g][i])
        out.append([piece, round(shift, 5), group])
    return out


def pair_sums(policy_dir: str | os.PathLike, reference_dir: str | os.PathLike, pairs: list[Pair], cfg: TrainConfig,
              use_cpu: bool, detail: frozenset[str] = frozenset()) -> tuple[list[dict], dict]:
    """Per pair: the token count and the summed shift ``log p_policy - log p_reference`` of each
    group (``<group>_tokens``, ``<group>_sum``), with ``pair_id`` and ``task_id``; and, for the
    pairs whose ids are in ``detail``, every completion token's shift (`token_detail`), by pair id
    and side.

    ``cfg`` is the variant's training config: its ``max_length`` truncates as in training, its
    ``bf16`` sets the autocast, its ``per_device_batch_size`` the batch. Pairs whose prompt alone
    fills ``max_length`` are dropped, as TRL drops them from training.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not pairs:
        return [], {}
    tokenizer = AutoTokenizer.from_pretrained(reference_dir)
    trainer = probe_trainer(AutoModelForCausalLM.from_pretrained(policy_dir),
                            AutoModelForCausalLM.from_pretrained(reference_dir), tokenizer, pairs, cfg, use_cpu)
    rows, device = trainer.train_dataset, trainer.accelerator.device
    task = {p.pair_id: p.task_id for p in pairs}
    models = [m.to(device).eval() for m in (trainer.model, trainer.ref_model)]
    out, tokens = [], {}
    for start in range(0, len(rows), cfg.per_device_batch_size):
        batch = [rows[i] for i in range(start, min(start + cfg.per_device_batch_size, len(rows)))]
        per_row = [position_masks(r, tokenizer) for r in batch]
        whole, masks = group_masks(trainer.data_collator, batch, per_row)
        ids, attention = whole["input_ids"].to(device), whole["attention_mask"].to(device)
        labels = ids.masked_fill(whole["completion_mask"].to(device) == 0, -100)
        with torch.no_grad(), trainer.accelerator.autocast():
            policy_lp, reference_lp = (m(input_ids=ids, attention_mask=attention, labels=labels, fused_lm_head=True,
                                         use_cache=False).log_probs.float().cpu() for m in models)
        shift = dict(zip(SIDES, (policy_lp - reference_lp).chunk(2)))
        completion = dict(zip(SIDES, whole["completion_mask"][:, 1:].bool().chunk(2)))
        for k, row in enumerate(batch):
            sums = {"pair_id": row["pair_id"], "task_id": task[row["pair_id"]]}
            for side, names in SIDES.items():
                for group in names:
                    sums[f"{group}_tokens"] = int(masks[group][k].sum())
                    sums[f"{group}_sum"] = float(shift[side][k][masks[group][k]].sum())
            out.append(sums)
            if row["pair_id"] in detail:
                tokens[row["pair_id"]] = {side: token_detail(row, tokenizer, side, shift[side][k], per_row[k],
                                                             completion[side][k]) for side in SIDES}
    return out, tokens


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
    """The probe report of `pair_sums`' rows: each group's and union's (`SHIFTS`) mean shift,
    ``focal_margin`` (shared minus error, over the pairs with both), ``accuracy`` (share of pairs
    whose reward margin is positive) and ``reward_margin``, each as `bootstrap` gives it (None
    without pairs); and ``per_pair``, the rows with their unions and per-pair values."""
    per_pair = []
    for s in sums:
        row = dict(s)
        for union, parts in UNIONS.items():
            row[f"{union}_tokens"] = sum(s[f"{g}_tokens"] for g in parts)
            row[f"{union}_sum"] = sum(s[f"{g}_sum"] for g in parts)
        for group in SHIFTS:
            row[f"{group}_shift"] = row[f"{group}_sum"] / row[f"{group}_tokens"] if row[f"{group}_tokens"] else None
        error, shared = row["rejected_error_shift"], row["rejected_shared_shift"]
        row["focal_margin"] = shared - error if error is not None and shared is not None else None
        row["reward_margin"] = beta * (row["chosen_sum"] - row["rejected_error_sum"] - row["rejected_shared_sum"])
        per_pair.append(row)

    def over_pairs(key: str, fn=lambda v: v) -> dict | None:
        return bootstrap([fn(r[key]) for r in per_pair if r[key] is not None])

    report = {group: over_pairs(f"{group}_shift") for group in SHIFTS}
    report.update({"focal_margin": over_pairs("focal_margin"),
                   "accuracy": over_pairs("reward_margin", lambda m: float(m > 0)),
                   "reward_margin": over_pairs("reward_margin"),
                   "pairs": len(per_pair), "beta": beta, "bootstrap": dict(BOOTSTRAP), "per_pair": per_pair})
    return report
