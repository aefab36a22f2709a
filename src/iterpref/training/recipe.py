"""One recipe for every variant: setup, train, save (torchtune style).

A variant is a loss plus a mask (see conf/train/variants):
    dpo         sigmoid loss, every rejected token                     (baseline)
    rpo         sigmoid + alpha * NLL(chosen), every rejected token    (baseline)
    target_dpo  sigmoid loss, rejected tokens of D- lines only         (the paper, eq. 6)
    target_rpo  target_dpo + alpha * NLL(chosen)                       (the paper, eq. 8)
    sft         NLL(chosen) only
    ablations   symmetric masks, Diff-Aug context lines, prefix/suffix diff, hybrid batches
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from iterpref.records import Pair, read_jsonl
from iterpref.training.masks import MaskConfig

# TRL loss types per variant loss: "sigmoid" is DPO's -logsigmoid(beta * margin), "sft" the mean
# NLL of the chosen completion (RPO adds it with weight rpo_alpha).
LOSSES = {"dpo": ["sigmoid"], "rpo": ["sigmoid", "sft"], "sft": ["sft"]}


@dataclass
class TrainConfig:
    """Hyperparameters shared by all variants (paper section 5 for the 7B settings).

    Attributes:
        loss: ``dpo`` (sigmoid), ``rpo`` (sigmoid + alpha * chosen NLL) or ``sft``.
        mask: which tokens enter the log-prob sums (see `MaskConfig`).
        beta: DPO temperature (paper 0.1).
        rpo_alpha: weight of the chosen NLL term for ``rpo`` (paper 1.0).
        learning_rate: peak learning rate (paper 1e-5 for 7B, repo 5e-6).
        epochs: passes over the pairs (paper 3, repo 2).
        max_steps: stop after this many optimizer steps (-1: run all epochs).
        per_device_batch_size: pairs per device per micro-batch.
        gradient_accumulation_steps: micro-batches per optimizer step (global batch =
            per_device_batch_size * accumulation * devices; paper 128).
        lr_scheduler: schedule name (paper cosine).
        warmup_ratio: fraction of steps for linear warmup (paper 0.03).
        max_length: cap on prompt+completion tokens (paper 2048).
        max_pairs: train on a random sample (seeded by ``seed``) of this many pairs (null:
            all); for quick runs. A sample, not the first n, so it spans every problem.
        precompute_ref_log_probs: compute reference log-probs once before training instead of a
            second forward each step (the masks are applied in both).
        gradient_checkpointing: trade compute for memory on large models.
        bf16: bfloat16 mixed precision (``auto``: on when a GPU supports it).
        lora: train LoRA adapters instead of all weights (``r``, ``alpha``, ``dropout``,
            ``target_modules``); the saved model is merged.
        logging_steps: log metrics every n steps.
        seed: data order and init seed.
        deepspeed: path to a DeepSpeed config (ZeRO-3 for 7B runs), used under accelerate.
    """

    loss: str = "dpo"
    mask: MaskConfig = field(default_factory=MaskConfig)
    beta: float = 0.1
    rpo_alpha: float = 1.0
    learning_rate: float = 5e-6
    epochs: float = 1.0
    max_steps: int = -1
    per_device_batch_size: int = 2
    gradient_accumulation_steps: int = 1
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    max_length: int = 2048
    max_pairs: int | None = None
    precompute_ref_log_probs: bool = True
    gradient_checkpointing: bool = False
    bf16: str | bool = "auto"
    lora: dict | None = None
    logging_steps: int = 1
    seed: int = 0
    deepspeed: str | None = None


def pairs_dataset(pairs: list[Pair]):
    """The conversational preference dataset TRL expects, plus the span columns."""
    from datasets import Dataset

    return Dataset.from_list([
        {
            "pair_id": p.pair_id,
            "prompt": [{"role": "user", "content": p.prompt}],
            "chosen": [{"role": "assistant", "content": p.chosen}],
            "rejected": [{"role": "assistant", "content": p.rejected}],
            "chosen_spans": [list(s) for s in p.chosen_spans],
            "rejected_spans": [list(s) for s in p.rejected_spans],
        }
        for p in pairs
    ])


def dpo_config(cfg: TrainConfig, output_dir: Path, run_name: str, report_to: list[str], use_cpu: bool):
    """Translate a TrainConfig into TRL's DPOConfig."""
    import torch
    from trl import DPOConfig

    if cfg.loss not in LOSSES:
        raise ValueError(f"train.loss: unknown {cfg.loss!r}; expected one of {sorted(LOSSES)}")
    loss_type = LOSSES[cfg.loss]
    weights = [1.0, cfg.rpo_alpha] if cfg.loss == "rpo" else None
    bf16 = (not use_cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported()) if cfg.bf16 == "auto" else bool(cfg.bf16)
    return DPOConfig(
        output_dir=str(output_dir),
        run_name=run_name,
        loss_type=loss_type,
        loss_weights=weights,
        beta=cfg.beta,
        learning_rate=cfg.learning_rate,
        num_train_epochs=cfg.epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio of the total steps
        max_length=cfg.max_length,
        precompute_ref_log_probs=cfg.precompute_ref_log_probs,
        gradient_checkpointing=cfg.gradient_checkpointing,
        bf16=bf16,
        use_cpu=use_cpu,
        logging_steps=cfg.logging_steps,
        seed=cfg.seed,
        data_seed=cfg.seed,
        save_strategy="no",
        report_to=report_to,
        deepspeed=cfg.deepspeed,
        dataset_num_proc=None,
    )


def train(cfg: TrainConfig, model_path: str | os.PathLike, pairs_path: str | os.PathLike,
          out_dir: str | os.PathLike, run_name: str, report_to: list[str] | None = None,
          use_cpu: bool = False) -> dict:
    """Train one variant from ``model_path`` on ``pairs_path``; save the model to ``out_dir``.

    Returns the final training metrics and ``log_history``, every logged step's metrics (also
    written to ``out_dir/train_metrics.json``).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from iterpref.training.trainer import FocalDPOTrainer

    out_dir = Path(out_dir)
    # setup
    pairs = read_jsonl(pairs_path, Pair)
    if cfg.max_pairs is not None and cfg.max_pairs < len(pairs):
        pairs = random.Random(cfg.seed).sample(pairs, cfg.max_pairs)
    if not pairs:
        raise ValueError(f"{pairs_path}: no pairs to train on")
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(task_type="CAUSAL_LM", **cfg.lora)
    args = dpo_config(cfg, out_dir / "checkpoints", run_name, report_to or [], use_cpu)
    trainer = FocalDPOTrainer(
        model=model, args=args, train_dataset=pairs_dataset(pairs),
        processing_class=tokenizer, peft_config=peft_config, mask=cfg.mask,
    )
    # train
    start = time.time()
    result = trainer.train()
    # save
    final = trainer.model
    if peft_config is not None:
        final = final.merge_and_unload()
    final.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    logged = [h for h in trainer.state.log_history if "loss" in h]
    metrics = {
        "variant": run_name,
        "pairs": len(pairs),
        "steps": trainer.state.global_step,
        "train_loss": result.training_loss,
        "train_runtime_s": round(time.time() - start, 2),
        "last": logged[-1] if logged else {},
        "log_history": logged,
        "config": asdict(cfg),
    }
    (out_dir / "train_metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
    return metrics
