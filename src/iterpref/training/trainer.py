"""Focal DPO on TRL: the rejected completion mask narrowed to the error tokens.

Target-DPO (paper eq. 5-6) sums the rejected log-ratio only over tokens of rejected-only lines.
TRL 1.16's DPOTrainer already turns ``completion_mask == 0`` into label -100 and sums per-token
log-probs, for the policy and for the reference (live or precomputed). So the focal loss is
not a new loss function: it is a narrower ``completion_mask`` on the rejected rows, and TRL's
own sums, losses (sigmoid = DPO, sigmoid+sft = RPO) and metrics do the rest.

- `FocalDPOTrainer._prepare_dataset` adds ``chosen_token_mask`` / ``rejected_token_mask``
  once per example, on TRL's own token ids (see `iterpref.training.masks`); under several
  processes the main one computes them and the others read its cache.
- `FocalPreferenceCollator` multiplies them into TRL's ``completion_mask`` after TRL's own
  truncation, so policy and reference see the same mask.
- Given the reference's per-token log-probs of the pairs (``reference_log_probs``, the shared file
  of `iterpref.training.logprobs`), the precompute sums them under those masks (`reference_sums`)
  instead of running the reference over the pairs again.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import torch
from datasets.fingerprint import Hasher
from trl import DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference
from trl.trainer.utils import global_then_local_main_first, pad

from iterpref.training import schedule
from iterpref.training.launch import fsdp_on_cpu
from iterpref.training.masks import MaskConfig, token_masks

MASK_COLUMNS = ("chosen_token_mask", "rejected_token_mask")


def content_fingerprint(dataset) -> str:
    """A hash of a dataset's rows (its Arrow buffers and index mapping, read memory-mapped), the
    same in every process that holds the same rows."""
    h = hashlib.blake2b(digest_size=16)
    tables = [dataset.data] + ([dataset._indices] if dataset._indices is not None else [])
    for table in tables:
        h.update(str(table.schema).encode())
        for column in table.columns:
            for chunk in column.chunks:
                for buf in chunk.buffers():
                    if buf is not None:
                        h.update(memoryview(buf))
    return h.hexdigest()


def retie(state_dict: dict, model) -> dict:
    """``state_dict`` with each tied weight (``lm_head.weight`` of a model whose embeddings are
    tied) the same tensor as its source again. A state dict gathered from FSDP shards holds equal
    copies, which ``save_pretrained`` cannot tell from untied weights and would write twice."""
    for target, source in getattr(model, "all_tied_weights_keys", {}).items():
        if target in state_dict and source in state_dict and torch.equal(state_dict[target], state_dict[source]):
            state_dict[target] = state_dict[source]
    return state_dict


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


def reference_sums(rows, reference_log_probs: dict[str, dict], collator, batch_size: int):
    """Per row of ``rows`` (a prepared dataset), the sums TRL's precompute would take of the
    reference's log-probs of the chosen and of the rejected completion: ``reference_log_probs``'
    per-token values (every kept completion token, `iterpref.training.logprobs.completion_log_probs`)
    laid out in the batch TRL's precompute collates (``batch_size`` rows in order, ``collator``'s
    padding and cut), zero outside the narrowed ``completion_mask``, summed along the row as TRL
    sums them. Returns two float32 tensors (chosen, rejected)."""
    chosen, rejected = [], []
    for start in range(0, len(rows), batch_size):
        batch = [rows[i] for i in range(start, min(start + batch_size, len(rows)))]
        narrowed = collator(batch)["completion_mask"][:, 1:]
        whole = collator([{k: v for k, v in r.items() if k not in MASK_COLUMNS} for r in batch])["completion_mask"][:, 1:]
        per_token = torch.zeros(whole.shape, dtype=torch.float32)
        n = len(batch)
        for k, row in enumerate(batch):
            for i, side in ((k, "chosen"), (n + k, "rejected")):
                per_token[i][whole[i].bool()] = reference_log_probs[row["pair_id"]][side]
        sums = (per_token * narrowed).sum(dim=1)
        chosen.append(sums[:n])
        rejected.append(sums[n:])
    return torch.cat(chosen), torch.cat(rejected)


class FocalDPOTrainer(DPOTrainer):
    """DPOTrainer whose completion masks come from character spans (Target-DPO / Target-RPO).

    Args:
        mask: which tokens enter the log-prob sums (`MaskConfig`); ``mode="none"`` is plain DPO.
        reference_log_probs: the reference's per-token log-probs of every training pair
            (`iterpref.training.logprobs.load`), computed under this run's settings; with
            ``precompute_ref_log_probs`` the precompute sums them (`reference_sums`) instead of
            running the reference (None: TRL's own precompute).
        **kwargs: everything `trl.DPOTrainer` takes. The train dataset is conversational
            (``prompt``/``chosen``/``rejected`` message lists) plus ``pair_id``,
            ``chosen_spans`` and ``rejected_spans`` columns.
    """

    def __init__(self, *args, mask: MaskConfig, reference_log_probs: dict[str, dict] | None = None, **kwargs):
        self.mask_config = mask
        self.reference_log_probs = reference_log_probs
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

    def create_accelerator_and_postprocess(self) -> None:
        super().create_accelerator_and_postprocess()
        if fsdp_on_cpu(self.accelerator):
            self.is_fsdp_enabled = True

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """transformers' named schedule whose warmup starts above 0 (`iterpref.training.schedule`)."""
        if self.lr_scheduler is None:
            self.lr_scheduler = schedule.scheduler(optimizer or self.optimizer, self.args.lr_scheduler_type,
                                                   self.args.get_warmup_steps(num_training_steps), num_training_steps)
            self._created_lr_scheduler = True
        return self.lr_scheduler

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        if state_dict is not None:
            state_dict = retie(state_dict, self.accelerator.unwrap_model(self.model))
        super()._save(output_dir, state_dict)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        # As TRL's own maps: the main process computes and caches (a disk-backed dataset), the
        # other ranks then read its cache file. The fingerprint is the content's: TRL's last
        # filter hashes its DPOConfig, which differs between ranks, so `_fingerprint` does too.
        with global_then_local_main_first():
            return dataset.map(
                token_masks,
                fn_kwargs={"tokenizer": self._tokenizer, "cfg": self.mask_config},
                new_fingerprint=Hasher.hash((content_fingerprint(dataset), asdict(self.mask_config))),
                desc=f"Error-token masks for {dataset_name} ({self.mask_config.mode})",
            )

    def _precompute_ref_logps(self, dataset, name: str, batch_size: int):
        if name != "train" or self.reference_log_probs is None:
            return super()._precompute_ref_logps(dataset, name, batch_size)
        chosen, rejected = reference_sums(dataset, self.reference_log_probs, self.data_collator, batch_size)
        return dataset.add_column("ref_chosen_logps", chosen.tolist()).add_column("ref_rejected_logps", rejected.tolist())

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        for col in MASK_COLUMNS:
            if col not in self._signature_columns:
                self._signature_columns.append(col)
