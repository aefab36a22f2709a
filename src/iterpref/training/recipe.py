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
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from iterpref.cli import UserError
from iterpref.config.fields import build, spec
from iterpref.records import Pair, read_jsonl
from iterpref.training import launch, logprobs, schedule, workdir
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
        max_steps: stop after this many optimizer steps (-1: run all epochs; 0 is refused).
        per_device_batch_size: pairs per device per micro-batch.
        gradient_accumulation_steps: micro-batches per optimizer step (global batch =
            per_device_batch_size * accumulation * devices; paper 128).
        lr_scheduler: schedule name (paper cosine), transformers' schedule of that name.
        warmup_ratio: fraction of steps for linear warmup (paper 0.03): ``ceil(ratio * steps)``
            steps, the first at ``1 / warmup`` of the peak, never at learning rate 0
            (`iterpref.training.schedule`).
        max_length: cap on prompt+completion tokens (paper 2048).
        max_pairs: train on a random sample (seeded by ``seed``) of this many pairs (null:
            all); for quick runs. A sample, not the first n, so it spans every problem.
        precompute_ref_log_probs: compute reference log-probs once before training instead of a
            second forward each step (the masks are applied in both).
        gradient_checkpointing: trade compute for memory on large models (transformers'
            ``activation_checkpointing``: layer activations are recomputed in the backward pass).
        bf16: bfloat16 mixed precision (``auto``: on when a GPU supports it).
        lora: train LoRA adapters instead of all weights (``r``, ``alpha``, ``dropout``,
            ``target_modules``); the saved model is merged.
        logging_steps: log metrics every n steps.
        seed: data order and init seed.
        deepspeed: path to a DeepSpeed JSON config inside conf/accelerate/ (a dependency of the
            train stage), used under accelerate (the shipped ``train.accelerate=zero3`` carries its
            DeepSpeed settings itself; this is for your own).
        save_steps: write a checkpoint (weights, optimizer, scheduler, RNG, data position) every
            this many optimizer steps into the work folder; a killed run resumes from the newest
            complete one (0: no checkpoints). Only the newest is kept.
        probe_points: record the policy's log-probs of the held-out and training pairs at this many
            evenly spaced optimizer steps, the last included, for the probe's curve along training
            (`iterpref.training.record`; -1: every step; 0: none). Each point costs a forward pass
            over those pairs.
    """

    loss: Literal["dpo", "rpo", "sft"] = "dpo"
    mask: MaskConfig = field(default_factory=MaskConfig)
    beta: float = spec(0.1, gt=0)
    rpo_alpha: float = spec(1.0, ge=0)
    learning_rate: float = spec(1e-5, gt=0)
    epochs: float = spec(1.0, gt=0)
    max_steps: int = spec(-1, ge=-1)
    per_device_batch_size: int = spec(4, ge=1)
    gradient_accumulation_steps: int = spec(1, ge=1)
    lr_scheduler: schedule.Schedule = "cosine"
    warmup_ratio: float = spec(0.03, ge=0, lt=1)
    max_length: int = spec(1024, ge=1)
    max_pairs: int | None = spec(32, ge=1)
    precompute_ref_log_probs: bool = True
    gradient_checkpointing: bool = False
    bf16: Literal["auto"] | bool = "auto"
    lora: dict | None = None
    logging_steps: int = spec(1, ge=1)
    seed: int = 0
    deepspeed: str | None = None
    save_steps: int = spec(0, ge=0)
    probe_points: int = spec(0, ge=-1)

    FILE_FIELDS = ("deepspeed",)  # inside conf/accelerate/ (checked at composition: a train dependency)

    def __post_init__(self):
        if self.max_steps == 0:
            raise ValueError("max_steps = 0 trains nothing; -1 runs every epoch, n >= 1 stops after n steps")


def variant_config(train_params: dict, variant: str) -> TrainConfig:
    """The TrainConfig of one variant: params ``train.common`` with ``train.variants.<variant>``
    (its loss, mask and any other key) over it."""
    if variant not in train_params["variants"]:
        raise UserError(f"params.yaml: train.variants has no {variant!r}; known: {sorted(train_params['variants'])}")
    spec = dict(train_params["variants"][variant])
    mask = build(MaskConfig, spec.pop("mask", {}), f"train.variants.{variant}.mask")
    return build(TrainConfig, {**train_params["common"], **spec, "mask": mask}, f"train.variants.{variant}")


def prompt_tokens(pair: Pair, tokenizer) -> int:
    """How many tokens the pair's chat prompt takes, generation prompt included."""
    text = tokenizer.apply_chat_template([{"role": "user", "content": pair.prompt}], tokenize=False,
                                         add_generation_prompt=True)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def require_completion_tokens(pairs: list[Pair], tokenizer, max_length: int, pairs_path) -> None:
    """Raise UserError when no pair keeps a completion token inside ``max_length`` (TRL cuts
    prompt + completion at ``max_length``: such a run computes a constant loss and changes nothing)."""
    kept = [p for p in pairs if prompt_tokens(p, tokenizer) < max_length]
    if not kept:
        raise UserError(f"{pairs_path}: every one of the {len(pairs)} pairs has a prompt of train.common.max_length="
                        f"{max_length} tokens or more, so truncation leaves no completion token to train on; "
                        f"raise max_length")


def training_sample(pairs: list[Pair], cfg: TrainConfig) -> list[Pair]:
    """The pairs a variant trains on: ``cfg.max_pairs`` of them drawn at random (seeded by
    ``cfg.seed``), or all when there are no more than that."""
    if cfg.max_pairs is not None and cfg.max_pairs < len(pairs):
        return random.Random(cfg.seed).sample(pairs, cfg.max_pairs)
    return pairs


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


def dpo_config(cfg: TrainConfig, output_dir: Path, run_name: str, report_to: list[str], use_cpu: bool, **overrides):
    """Translate a TrainConfig into TRL's DPOConfig (``overrides``: further DPOConfig fields)."""
    import torch
    from trl import DPOConfig

    if cfg.loss not in LOSSES:
        raise ValueError(f"train.loss: unknown {cfg.loss!r}; expected one of {sorted(LOSSES)}")
    loss_type = LOSSES[cfg.loss]
    weights = [1.0, cfg.rpo_alpha] if cfg.loss == "rpo" else None
    gpu_bf16 = not use_cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    bf16 = gpu_bf16 if cfg.bf16 == "auto" else bool(cfg.bf16)
    return DPOConfig(**{
        "output_dir": str(output_dir),
        "run_name": run_name,
        "loss_type": loss_type,
        "loss_weights": weights,
        "beta": cfg.beta,
        "learning_rate": cfg.learning_rate,
        "num_train_epochs": cfg.epochs,
        "max_steps": cfg.max_steps,
        "per_device_train_batch_size": cfg.per_device_batch_size,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "lr_scheduler_type": cfg.lr_scheduler,
        "warmup_steps": cfg.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio of the total steps
        "max_length": cfg.max_length,
        "precompute_ref_log_probs": cfg.precompute_ref_log_probs,
        "activation_checkpointing": cfg.gradient_checkpointing,
        # every parameter gets a gradient in DPO (full or LoRA); True would re-walk the autograd
        # graph after each backward under DDP, for nothing
        "ddp_find_unused_parameters": False,
        "bf16": bf16,
        "use_cpu": use_cpu,
        "logging_steps": cfg.logging_steps,
        "seed": cfg.seed,
        "data_seed": cfg.seed,
        "save_strategy": "steps" if cfg.save_steps else "no",
        "save_steps": cfg.save_steps or 500,
        "save_total_limit": 1,  # the old checkpoint goes only after the new one is complete
        "report_to": report_to,
        "deepspeed": cfg.deepspeed,
        "dataset_num_proc": None,
        **overrides,
    })


def _on_disk(pairs: list[Pair], folder: Path):
    """The pairs dataset saved under ``folder`` and loaded back, written once by the local main
    process: a disk-backed dataset lets `datasets` cache every map (TRL's tokenisation, the masks,
    the reference log-probs) in ``folder``, where the other ranks read them instead of recomputing."""
    from accelerate import PartialState
    from datasets import load_from_disk

    with PartialState().local_main_process_first():
        if not (folder / "state.json").is_file():
            tmp = folder.with_name(folder.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            pairs_dataset(pairs).save_to_disk(str(tmp))
            shutil.rmtree(folder, ignore_errors=True)
            tmp.rename(folder)
    return load_from_disk(str(folder))


def _save_final(trainer, tokenizer, model_path: Path, work: Path, out_dir: Path) -> None:
    """The trained model as a plain HF folder. ``trainer.save_model`` gathers sharded weights
    (ZeRO-3, FSDP) and writes on the main process; a LoRA adapter is merged into a fresh copy of
    the base model there."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    if not isinstance(trainer.model, PeftModel):
        trainer.save_model(str(out_dir))
        return
    adapter = work / "adapter"
    trainer.save_model(str(adapter))
    if trainer.accelerator.is_main_process:
        merged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_path), adapter).merge_and_unload()
        merged.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    trainer.accelerator.wait_for_everyone()


def _recorder(trainer, cfg: TrainConfig, args, sets: dict[str, list[Pair]], folder: Path):
    """The callback (`iterpref.training.record.LogProbRecorder`) that records ``trainer``'s policy on
    each non-empty pair set at ``cfg.probe_points`` steps, the sets tokenised and cut as the
    trainer's own data is."""
    from iterpref.training import record

    prepared = {name: trainer._prepare_dataset(pairs_dataset(pairs), trainer.processing_class, args, f"probe {name}")
                for name, pairs in sets.items() if pairs}
    return record.LogProbRecorder(trainer, prepared, cfg.probe_points, folder, cfg.per_device_batch_size)


def train(cfg: TrainConfig, model_path: str | os.PathLike, pairs_path: str | os.PathLike,
          out_dir: str | os.PathLike, run_name: str, cache_root: str | os.PathLike,
          report_to: list[str] | None = None, use_cpu: bool = False,
          heldout_path: str | os.PathLike | None = None, reference_path: str | os.PathLike | None = None) -> dict:
    """Train one variant from ``model_path`` on ``pairs_path``; save the model to ``out_dir``.

    Runs as one process or as every rank of an ``accelerate launch``. The work folder
    ``<cache_root>/<key>/`` (see `iterpref.training.workdir`) holds the prepared data and the
    checkpoints; a run with the same key resumes from its newest complete checkpoint, and the
    folder is removed at the end.

    With ``cfg.probe_points``, the policy's log-probs of the held-out pairs (``heldout_path``) and of
    the training pairs are recorded along training into ``out_dir/along_training.pt``
    (`iterpref.training.record`).

    Returns the run's metrics: ``log_history`` (every logged step), ``resumed_from_step``, the final
    loss and the seconds each recorded step took (also written to ``out_dir/train_metrics.json`` by
    the main process).

    ``reference_path``: the reference's log-probs of the training pairs (the `reference_logprobs`
    stage's file, `iterpref.training.logprobs`); with ``cfg.precompute_ref_log_probs``, when it was
    computed under ``cfg``'s settings and holds every pair, the precompute sums it instead of running
    the reference (``shared_reference`` in the metrics says whether it did).
    """
    from accelerate import PartialState
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from iterpref.training import record
    from iterpref.training.trainer import FocalDPOTrainer

    out_dir, model_path = Path(out_dir), Path(model_path)
    state = PartialState()
    # setup: refuse a run that cannot change the weights before the model is loaded
    pairs = training_sample(read_jsonl(pairs_path, Pair), cfg)
    if not pairs:
        raise UserError(f"{pairs_path}: no pairs to train on; the pairs stage kept none (see reports/pairs.json)")
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    require_completion_tokens(pairs, tokenizer, cfg.max_length, pairs_path)
    probed = {"heldout": read_jsonl(heldout_path, Pair) if heldout_path and cfg.probe_points else [], "training": pairs}
    key = workdir.run_key({"train": asdict(cfg), "world_size": state.num_processes,
                           "distributed": launch.distributed_kind(state), "use_cpu": use_cpu,
                           "probed": {k: [p.pair_id for p in v] for k, v in probed.items()} if cfg.probe_points else None},
                          model_path, pairs_path)
    work = Path(cache_root) / key
    reference = logprobs.load(reference_path, pairs, cfg) if reference_path and cfg.precompute_ref_log_probs else None
    model = AutoModelForCausalLM.from_pretrained(model_path)
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(task_type="CAUSAL_LM", **cfg.lora)
    args = dpo_config(cfg, work / "checkpoints", run_name, report_to or [], use_cpu)
    trainer = FocalDPOTrainer(
        model=model, args=args, train_dataset=_on_disk(pairs, work / "pairs"),
        processing_class=tokenizer, peft_config=peft_config, mask=cfg.mask, reference_log_probs=reference,
    )
    if cfg.probe_points:
        trainer.add_callback(_recorder(trainer, cfg, args, probed, work / "along_training"))
    # train
    resume = workdir.last_checkpoint(work / "checkpoints", state.num_processes)
    if resume and state.is_main_process:
        print(f"resuming from {resume}", flush=True)
    start = time.time()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    # save
    _save_final(trainer, tokenizer, model_path, work, out_dir)
    recorded = record.collect(work / "along_training", out_dir / record.FILE, cfg) if state.is_main_process else {}
    logged = [h for h in trainer.state.log_history if "loss" in h]
    metrics = {
        "variant": run_name,
        "pairs": len(pairs),
        "steps": trainer.state.global_step,
        "resumed_from_step": int(resume.name.split("-")[1]) if resume else 0,
        "shared_reference": reference is not None,
        "processes": state.num_processes,
        "distributed": trainer.accelerator.distributed_type.value,
        "train_loss": result.training_loss,
        "train_runtime_s": round(time.time() - start, 2),
        "log_history": logged,
        "recorded_steps_s": {str(step): s for step, s in recorded.items()},
        "config": asdict(cfg),
    }
    state.wait_for_everyone()
    if state.is_main_process:
        (out_dir / "train_metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
        shutil.rmtree(work)
    return metrics
