"""Per-token log-probs of preference pairs' completions, computed as a training step computes them.

The probe (`iterpref.probe`) runs it on the trained policy and on the reference; the trainer's
recorder (`iterpref.training.record`) on the policy at chosen steps of training. Both read the rows
of a `FocalDPOTrainer` dataset (TRL's token ids), collate them with its collator (training's cut and
padding) and run the model through TRL's fused LM head under its accelerator's autocast, so the
same weights give the same numbers on either path, given the same `settings`.

The reference model's log-probs of a set of pairs are computed once (stage `reference_logprobs`)
and kept in a file (`save`, `load`) that training's precompute (`FocalDPOTrainer`) and every
variant's probe read instead of running the reference again.
"""

from __future__ import annotations

import os

from tqdm import tqdm

from iterpref.records import Pair

# The TrainConfig fields that change a model's log-probs of a pair's kept tokens: the cut, the
# autocast and the batch (padding).
SETTINGS = ("max_length", "bf16", "per_device_batch_size")


def settings(cfg) -> dict:
    """The values of `SETTINGS` in ``cfg`` (a `TrainConfig`)."""
    return {k: getattr(cfg, k) for k in SETTINGS}


def kept(mask: list[int], length: int, truncation_mode: str) -> list[int]:
    """The entries of a completion's token ``mask`` for the ``length`` tokens the collator kept
    (``keep_start`` cuts a sequence's end, ``keep_end`` its start)."""
    return mask[:length] if truncation_mode == "keep_start" else mask[len(mask) - length:]


def completion_log_probs(trainer, model, batch_size: int, rows=None, desc: str = "probe: log-probs") -> dict[str, dict]:
    """``model``'s log-prob of every completion token the collator keeps, per prepared row (``rows``,
    by default ``trainer.train_dataset``): ``{pair_id: {"chosen": tensor, "rejected": tensor}}``
    (fp32, in completion order), ``batch_size`` rows a batch, in eval mode (the model's mode is
    restored after)."""
    import torch

    from iterpref.training.trainer import MASK_COLUMNS

    rows = trainer.train_dataset if rows is None else rows
    device, training = trainer.accelerator.device, model.training
    model = model.to(device).eval()
    out = {}
    for start in tqdm(range(0, len(rows), batch_size), desc=desc, unit="batch"):
        batch = [rows[i] for i in range(start, min(start + batch_size, len(rows)))]
        whole = trainer.data_collator([{k: v for k, v in r.items() if k not in MASK_COLUMNS} for r in batch])
        ids, attention = whole["input_ids"].to(device), whole["attention_mask"].to(device)
        labels = ids.masked_fill(whole["completion_mask"].to(device) == 0, -100)
        with torch.no_grad(), trainer.accelerator.autocast():
            lp = model(input_ids=ids, attention_mask=attention, labels=labels, fused_lm_head=True,
                       use_cache=False).log_probs.float().cpu()
        completion = whole["completion_mask"][:, 1:].bool()
        n = len(batch)
        for k, row in enumerate(batch):
            out[row["pair_id"]] = {"chosen": lp[k][completion[k]], "rejected": lp[n + k][completion[n + k]]}
    model.train(training)
    return out


def save(path: str | os.PathLike, log_probs: dict[str, dict], cfg) -> None:
    """Write ``log_probs`` (`completion_log_probs`') with the settings of ``cfg`` (a `TrainConfig`)
    they were computed under."""
    import torch

    torch.save({"settings": settings(cfg), "log_probs": log_probs}, path)


def load(path: str | os.PathLike, pairs: list[Pair], cfg) -> dict[str, dict] | None:
    """The log-probs in ``path`` when the file exists, was computed under ``cfg``'s settings and
    holds every pair of ``pairs``; else None."""
    import torch

    if not os.path.exists(path):
        return None
    stored = torch.load(path, weights_only=True)
    if stored["settings"] != settings(cfg) or any(p.pair_id not in stored["log_probs"] for p in pairs):
        return None
    return stored["log_probs"]
