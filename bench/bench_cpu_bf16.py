"""Training-step cost on this CPU with bfloat16 autocast against fp32: does `train.common.bf16` pay here?

The embedded default trains SmolLM2-135M under CPU bf16 autocast (conf/experiment/embedded.yaml),
which is faster than fp32 where oneDNN has bfloat16 kernels (AVX-512 BF16 or AMX). Elsewhere
torch's bf16 matmuls in the backward pass fall back to a slow generic kernel. This times one
training-shaped forward and backward of the student (``models/student`` by default) on the first
pairs of data/pairs.jsonl, chosen and rejected completions in one batch as DPO runs them, in fp32
and under bf16 autocast, and prints both and their ratio:

    python bench/bench_cpu_bf16.py [--model models/student] [--pairs 4] [--repeat 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from iterpref.llm.hf.packed import can_pack
from iterpref.records import Pair, read_jsonl


def batch(tokenizer, pairs: list[Pair]) -> dict:
    """Chosen then rejected rows (prompt + completion), right-padded, labels on every real token."""
    texts = [p.prompt + "\n" + getattr(p, side) for side in ("chosen", "rejected") for p in pairs]
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    enc["labels"] = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return enc


def step_seconds(model, inputs: dict, bf16: bool) -> float:
    """One forward and backward (gradients cleared after), timed."""
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(**inputs).loss
    loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/student")
    ap.add_argument("--pairs", type=int, default=4, help="pairs per step (the embedded default's batch)")
    ap.add_argument("--repeat", type=int, default=2, help="timed steps per precision, after one untimed")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    inputs = batch(tokenizer, read_jsonl("data/pairs.jsonl", Pair)[: args.pairs])
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).train()
    print(f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}, oneDNN bf16 kernels: {can_pack()}, "
          f"{args.threads} threads, batch {tuple(inputs['input_ids'].shape)}")
    seconds = {}
    for name, bf16 in (("fp32", False), ("bf16 autocast", True)):
        step_seconds(model, inputs, bf16)  # warm-up
        seconds[name] = [step_seconds(model, inputs, bf16) for _ in range(args.repeat)]
        print(f"{name}: " + ", ".join(f"{s:.2f} s" for s in seconds[name]), flush=True)
    ratio = min(seconds["bf16 autocast"]) / min(seconds["fp32"])
    print(f"bf16 autocast / fp32 step time: {ratio:.2f} (best of {args.repeat} each)")


if __name__ == "__main__":
    main()
