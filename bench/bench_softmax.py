"""Which softmax keeps the decode attention batch-invariant on two threads, and what each costs.

`iterpref.llm.hf.attention.attend` computes its softmax's exponentials, their sum and the division
in float64. This compares it, in one process on the student, with two cheaper ways: float32
throughout (what it did before 05f392e) and float32 exponentials over a float64 sum. For each, in
turn: HumanEval's first N prompts decoded greedily at batch 32 (timed) and at batch 8, and the
replies whose tokens differ between the two; then the time of each against float64's. One warm-up
decode runs first, so that no variant pays the process's first decoding.

    python bench/bench_softmax.py --tasks 32 --max-new-tokens 100
    options: --model models/student --threads 2 --variants float64,sum64,float32
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

import torch

from iterpref.llm.base import SamplingConfig
from iterpref.llm.hf import HFGenerator, attention
from iterpref.llm.hf.prefixes import Prefixes

if not __package__:  # run as a script: the repository root, where the `bench` package is
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import result as bench_result  # noqa: E402
from bench.bench_batch_invariance import run  # noqa: E402
from bench.bench_generation import humaneval_conversations  # noqa: E402
from bench.result import Metric  # noqa: E402

MAKE_BENCH = {"args": ["--tasks", "16", "--max-new-tokens", "64"]}


def float32_exp_attention(sum_dtype: torch.dtype):
    """`attention.attend` with float32 exponentials summed in ``sum_dtype``, the division in float32."""
    def attend(query, key, value, visible, scaling: float):
        weights = attention.scores(query, key, visible, scaling).exp_()
        weights.div_(weights.sum(-1, keepdim=True, dtype=sum_dtype).float())
        return torch.matmul(weights.to(value.dtype), value)
    return attend


VARIANTS = {"float64": attention.attend, "sum64": float32_exp_attention(torch.float64),
            "float32": float32_exp_attention(torch.float32)}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/student")
    ap.add_argument("--tasks", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    bench_result.add_json_option(ap)
    args = ap.parse_args(argv)
    names = args.variants.split(",")
    if unknown := set(names) - set(VARIANTS):
        ap.error(f"--variants: unknown {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, stop_after_code=True, batch_size=32)
    convs = humaneval_conversations(args.tasks)
    gen = HFGenerator(args.model, device="cpu", dtype="bfloat16")
    print(f"{args.tasks} HumanEval tasks, max_new_tokens {args.max_new_tokens}, bf16, {args.threads} threads, "
          f"batch 32 against batch 8", flush=True)
    run(gen, Prefixes, convs[:8], replace(sampling, max_new_tokens=8), args.threads)  # warm-up
    times, metrics = {}, []
    try:
        for name in names:
            attention.attend = VARIANTS[name]
            load = os.getloadavg()[0]
            at32, times[name] = run(gen, Prefixes, convs, sampling, args.threads)
            at8, _ = run(gen, Prefixes, convs, replace(sampling, batch_size=8), args.threads)
            differ = sum(a != b for a, b in zip(at32, at8))
            print(f"{name:>8}: batch 32 {times[name]:6.1f} s (load average {load:.1f}); "
                  f"{differ}/{len(convs)} replies differ at batch 8", flush=True)
            metrics.append(Metric(f"{name}: replies that differ, batch 8 against 32", differ, f"of {len(convs)}", "== 0"))
    finally:
        attention.attend = VARIANTS["float64"]
    for name in names:
        if "float64" in times and name != "float64":
            ratio = times[name] / times["float64"]
            print(f"{name:>8} / float64 time: {ratio:.3f}x")
            metrics.append(Metric(f"{name} / float64 decode time", ratio, "x"))
    bench_result.write(args.json, "bench_softmax", metrics, {
        "model": args.model, "tasks": args.tasks, "max_new_tokens": args.max_new_tokens, "threads": args.threads,
        "variants": args.variants})


if __name__ == "__main__":
    sys.exit(main())
