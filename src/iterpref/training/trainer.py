"""Focal DPO on TRL: the rejected completion mask narrowed to the error tokens.

Target-DPO (paper eq. 5-6) sums the rejected log-ratio only over tokens of rejected-only lines.
TRL 1.16's DPOTrainer already turns ``completion_mask == 0`` into label -100 and sums per-token
log-probs, for the policy and for the reference (live or precomputed). So the focal loss is
not a new loss function: it is a narrower ``completion_mask`` on the rejected rows, and TRL's
own sums, losses (sigmoid = DPO, sigmoid+sft = RPO) and metrics do the rest.

- `FocalDPOTrainer._prepare_dataset` adds ``chosen_token_mask`` / ``rejected_token_mask``
  once per example, on TRL's own token ids (see `iterpref.training.masks`).
- `FocalPreferenceCollator` multiplies them into TRL's ``completion_mask`` after TRL's own
  truncation, so policy and reference see the same mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from trl import DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference
from trl.trainer.utils import pad

from iterpref.training.masks import MaskConfig, token_masks

MASK_COLUMNS = ("chosen_token_mask", "rejected_token_mask")


@dataclass
class FocalPreferenceCollator(DataCollatorForPreference):
    """TRL's preference collator, with each completion row narrowed by its token mask."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        out = super().torch_call(examples)
        if MASK_COLUMNS[0] not in examples[0]:
            return out
        rows = [[0] * len(e["prompt_ids"]) + list(e["chosen_token_mask"]) for e in examples]
        rows += [[0] * len(e["prompt_ids"]) + list(e["rejected_token_mask"]) for e in examples]
        if self.max_length is not None:  # the same cut TRL applied to ids and completion_mask
            sl = slice(None, self.max_length) if self.truncation_mode == "keep_start" else slice(-self.max_length, None)
            rows = [r[sl] for r in rows]
        focal = pad([torch.tensor(r, dtype=torch.long) for r in rows], padding_value=0,
                    padding_side="right", pad_to_multiple_of=self.pad_to_multiple_of)
        out["completion_mask"] = out["completion_mask"] * focal
        return out


class FocalDPOTrainer(DPOTrainer):
    """DPOTrainer whose completion masks come from character spans (Target-DPO / Target-RPO).

    Args:
        mask: which tokens enter the log-prob sums (`MaskConfig`); ``mode="none"`` is plain DPO.
        **kwargs: everything `trl.DPOTrainer` takes. The train dataset is conversational
            (``prompt``/``chosen``/``rejected`` message lists) plus ``pair_id``,
            ``chosen_spans`` and ``rejected_spans`` columns.
    """

    def __init__(self, *args, mask: MaskConfig, **kwargs):
        self.mask_config = mask
        dpo_args = kwargs["args"]
        if mask.focal:
            # These TRL options also read completion_mask and would silently change meaning.
            conflicts = {
                "ld_alpha": dpo_args.ld_alpha is not None,
                "use_weighting": dpo_args.use_weighting,
                "loss_type ipo/sigmoid_norm": bool({"ipo", "sigmoid_norm"} & set(dpo_args.loss_type)),
            }
            bad = [k for k, v in conflicts.items() if v]
            if bad:
                raise ValueError(f"focal masks cannot be combined with {bad}: they normalise by the masked length")
        tokenizer = kwargs["processing_class"]
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        kwargs.setdefault("data_collator", FocalPreferenceCollator(
            pad_token_id=tokenizer.pad_token_id,
            max_length=dpo_args.max_length,
            truncation_mode=dpo_args.truncation_mode,
            pad_to_multiple_of=dpo_args.pad_to_multiple_of,
        ))
        super().__init__(*args, **kwargs)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        return dataset.map(
            token_masks,
            fn_kwargs={"tokenizer": self._tokenizer, "cfg": self.mask_config},
            desc=f"Error-token masks for {dataset_name} ({self.mask_config.mode})",
        )

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        for col in MASK_COLUMNS:
            if col not in self._signature_columns:
                self._signature_columns.append(col)
