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

`pair_sums` measures the trained weights; `step_sums` the policy at the steps the trainer recorded
along training (`iterpref.training.record`), on the same tokens and groups, and `along_training`
lays those out as the curve the report draws.

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
from iterpref.training.logprobs import kept
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


def token_detail(row: dict, tokenizer, side: str, shifts: list[float], masks: dict, truncation_mode: str) -> list[list]:
    """One completion's kept tokens in order as ``[text, shift, group]``."""
    text, ids, names = row[side][-1]["content"], row[f"{side}_ids"], SIDES[side]
    ranges, n = token_ranges(row, tokenizer, side), len(shifts)
    indices = kept(list(range(len(ids))), n, truncation_mode)
    out = []
    for i, shift in zip(indices, shifts):
        start, end = ranges[i]
        piece = text[start:min(end, len(text))] if start < len(text) else tokenizer.decode([ids[i]])
        out.append([piece, round(shift, 5), next(g for g in names if masks[g][i])])
    return out


def pair_sums(policy_dir: str | os.PathLike, reference_dir: str | os.PathLike, pairs: list[Pair], cfg: TrainConfig,
              use_cpu: bool, detail: frozenset[str] = frozenset(),
              reference: dict[str, dict] | None = None, policy: dict[str, dict] | None = None) -> tuple[list[dict], dict]:
    """Per pair: the token count and the summed shift ``log p_policy - log p_reference`` of each
    group (``<group>_tokens``, ``<group>_sum``), with ``pair_id`` and ``task_id``; and, for the
    pairs whose ids are in ``detail``, every completion token's shift (`token_detail`), by pair id
    and side.

    ``cfg`` is the variant's training config: its ``max_length`` truncates as in training, its
    ``bf16`` sets the autocast, its ``per_device_batch_size`` the batch. Pairs whose prompt alone
    fills ``max_length`` are dropped, as TRL drops them from training. ``reference``: the reference
    model's `completion_log_probs` for these pairs under the same settings (the shared file of
    `iterpref.probe.reference`); without it the reference model is run here. ``policy``: the same for
    the policy (the trainer's record of its last step, `iterpref.training.record`); without it the
    model in ``policy_dir`` is run here.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from iterpref.training.logprobs import completion_log_probs

    if not pairs:
        return [], {}
    tokenizer = AutoTokenizer.from_pretrained(reference_dir)
    # given the policy's log-probs, the trainer's policy is loaded, never run: the reference will do
    trainer = probe_trainer(AutoModelForCausalLM.from_pretrained(policy_dir if policy is None else reference_dir),
                            AutoModelForCausalLM.from_pretrained(reference_dir), tokenizer, pairs, cfg, use_cpu)
    if policy is None:
        policy = completion_log_probs(trainer, trainer.model, cfg.per_device_batch_size)
    if reference is None:
        reference = completion_log_probs(trainer, trainer.ref_model, cfg.per_device_batch_size)
    return shift_sums(trainer, tokenizer, pairs, {"final": policy}, reference, detail)["final"]


def step_sums(recorded: dict[int, dict], reference_dir: str | os.PathLike, pairs: list[Pair], cfg: TrainConfig,
              use_cpu: bool, reference: dict[str, dict] | None = None) -> dict[int, list[dict]]:
    """`pair_sums`' rows at each step of training: ``recorded`` holds the policy's log-probs of
    ``pairs`` by optimizer step (`iterpref.training.record`, taken on the same path as the final
    probe's), and step 0 is the reference itself (every shift 0). ``reference`` as for `pair_sums`."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from iterpref.training.logprobs import completion_log_probs

    if not pairs:
        return {}
    tokenizer = AutoTokenizer.from_pretrained(reference_dir)
    # the trainer wants a policy beside the reference; it is loaded, never run
    trainer = probe_trainer(AutoModelForCausalLM.from_pretrained(reference_dir),
                            AutoModelForCausalLM.from_pretrained(reference_dir), tokenizer, pairs, cfg, use_cpu)
    if reference is None:
        reference = completion_log_probs(trainer, trainer.ref_model, cfg.per_device_batch_size)
    policies = {0: reference, **dict(sorted(recorded.items()))}
    return {step: sums for step, (sums, _) in shift_sums(trainer, tokenizer, pairs, policies, reference).items()}


def shift_sums(trainer, tokenizer, pairs: list[Pair], policies: dict, reference: dict[str, dict],
               detail: frozenset[str] = frozenset()) -> dict:
    """`pair_sums`' ``(rows, token detail)`` for each policy's log-probs in ``policies`` (by any key)
    against ``reference``, over the prepared rows of ``trainer`` (a `probe_trainer` on ``pairs``);
    each row's group masks are computed once."""
    task, mode = {p.pair_id: p.task_id for p in pairs}, trainer.args.truncation_mode
    out = {key: ([], {}) for key in policies}
    for row in trainer.train_dataset:
        pid = row["pair_id"]
        masks = position_masks(row, tokenizer)
        kept_masks = {side: {group: torch_bool(kept(masks[group], len(reference[pid][side]), mode)) for group in names}
                      for side, names in SIDES.items()}
        for key, policy in policies.items():
            sums, shifts = {"pair_id": pid, "task_id": task[pid]}, {}
            for side, names in SIDES.items():
                shifts[side] = policy[pid][side] - reference[pid][side]
                for group in names:
                    mask = kept_masks[side][group]
                    sums[f"{group}_tokens"] = int(mask.sum())
                    sums[f"{group}_sum"] = float(shifts[side][mask].sum())
            out[key][0].append(sums)
            if pid in detail:
                out[key][1][pid] = {side: token_detail(row, tokenizer, side, shifts[side].tolist(), masks, mode)
                                    for side in SIDES}
    return out


def torch_bool(mask: list[int]):
    """A 0/1 list as a boolean tensor (an empty list too)."""
    import torch

    return torch.tensor(mask, dtype=torch.bool)


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


def along_training(steps: dict[int, list[dict]], split: str, beta: float) -> list[dict]:
    """The curve of one pair set (``split``) from `step_sums`' rows: per step and token group
    (`GROUPS`), the mean shift with its bootstrap interval and the pairs that have tokens in the group
    (``{"step", "split", "group", "mean", "lo", "hi", "pairs"}``; a group no pair has is left out)."""
    rows = []
    for step, sums in steps.items():
        report = summarise(sums, beta)
        rows += [{"step": step, "split": split, "group": group, "mean": report[group]["mean"],
                  "lo": report[group]["ci"][0], "hi": report[group]["ci"][1], "pairs": report[group]["pairs"]}
                 for group in GROUPS if report[group]]
    return rows
