"""The GPU run of bench_generation: our decoder against `model.generate` on one GPU, bf16,
64 HumanEval prompts, random weights of the 0.5B's shape (no pretrained weights travel to the
GPU machines this was measured on; ``--model`` needs only the config and tokenizer files).

A random model's replies never end, so two settings, each at batch 16 and 64:
- ``no ends``: greedy, every row decodes max_new_tokens. No row idles on either side, so the
  ratio is the cost of our decode steps and prefills against transformers' (the per-step
  Python work of a scheduler shows here: a GPU step is milliseconds, not a CPU's 130).
- ``ends``: sampled, each step ends a reply with probability 1 / (0.4 max_new_tokens)
  (`end_replies_at_rate`), so replies end at scattered lengths, as real ones do: what
  continuous batching gains.

Usage: python bench/bench_generation_gpu.py [--model DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
if not __package__:  # run as a script: the repository root, where the `bench` package is
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bench_generation  # noqa: E402

from bench import result as bench_result  # noqa: E402

MAKE_BENCH = {"args": [], "needs": "cuda"}  # how `make bench` runs it (bench/run_all.py)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/student", help="a folder with the 0.5B's config.json and tokenizer")
    ap.add_argument("--tasks", type=int, default=64)
    ap.add_argument("--max-new-tokens", type=int, default=512)
    ap.add_argument("--batch-sizes", default="16,64")
    bench_result.add_json_option(ap)
    args = ap.parse_args(argv)
    metrics, details = [], {}
    settings = {"no ends": [], "ends": ["--eos-rate", str(1 / (0.4 * args.max_new_tokens))]}
    for batch in map(int, args.batch_sizes.split(",")):
        for setting, extra in settings.items():
            print(f"\n== batch {batch}, {setting}", flush=True)
            out = os.path.join(tempfile.mkdtemp(), "result.json")
            bench_generation.main(["--model", args.model, "--random-init", "--device", "cuda", "--dtype", "bfloat16",
                                   "--warmup", "--tasks", str(args.tasks), "--batch-size", str(batch),
                                   "--max-new-tokens", str(args.max_new_tokens), "--json", out, *extra])
            _, found, details = bench_result.read(out)
            for m in found:
                m.name = f"batch {batch}, {setting}: {m.name}"
                m.goal = m.goal if setting == "ends" else None  # without ends no scheduler gains
            metrics += found
    shared = {k: v for k, v in details.items() if k not in ("batch_size", "eos_rate")}  # the last run's
    bench_result.write(args.json, "bench_generation_gpu", metrics, {**shared, "batch_sizes": args.batch_sizes})


if __name__ == "__main__":
    sys.exit(main())
