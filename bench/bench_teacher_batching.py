"""The debug stage's decoding: many trajectories' turns through one in-process teacher.

N trajectories (the first N HumanEval tasks in the teacher's prompt) run in N threads, as the
debug stage runs them; each asks for a reply, waits ``--sandbox-s`` (standing in for the
sandbox run of that version), sends a fix request and asks again, ``--rounds`` times. Sampled
as the teacher samples (temperature 0.7). The same workload goes through today's
`BatchingGenerator` (turns join the rows already decoding) and through batching.py + hf.py at
git revision ``--vs`` (fixed batches: a batch decodes to its longest reply while the turns that
became ready wait). Reports reply tokens per second of each and their ratio; both sides share
one loaded model and run back to back in one process.

    python bench/bench_teacher_batching.py --model MODEL_DIR --trajectories 16 --rounds 3 --dtype bfloat16
    options: --max-new-tokens 512 --sandbox-s 0.5 --vs cce7d0c --threads 2
"""

import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import torch

from iterpref.evaluation.humaneval import HumanEval
from iterpref.llm.base import SamplingConfig
from iterpref.llm.batching import BatchingGenerator
from iterpref.llm.hf import HFGenerator

if not __package__:  # run as a script: the repository root, where the `bench` package is
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import result as bench_result  # noqa: E402
from bench.bench_generation import load_at  # noqa: E402
from bench.result import Metric  # noqa: E402

MAKE_BENCH = {"args": ["--model", "models/student", "--trajectories", "8", "--rounds", "2", "--max-new-tokens", "128",
                       "--dtype", "bfloat16"]}
FIX = ("The code failed the tests (failed, AssertionError). Fix the code. Reply with the complete corrected "
       "solution in one python code block.")


def old_batching(gen: HFGenerator, rev: str, max_batch: int):
    """A `BatchingGenerator` and `HFGenerator` as they were at ``rev``, on our loaded model."""
    old_hf, old_batching_module = load_at(rev, "hf"), load_at(rev, "batching")
    old = old_hf.HFGenerator.__new__(old_hf.HFGenerator)
    old.__dict__.update(gen.__dict__)
    return old_batching_module.BatchingGenerator(old, max_batch=max_batch)


def run(batching, conversations, sampling: SamplingConfig, rounds: int, sandbox_s: float, tok) -> tuple[float, int]:
    """Wall seconds and reply tokens of every trajectory's ``rounds`` turns, one thread each."""
    def trajectory(k: int) -> int:
        conv, tokens = list(conversations[k]), 0
        for r in range(rounds):
            reply = batching.chat([conv], replace(sampling, seed=1000 * k + r))[0]
            tokens += len(tok(reply, add_special_tokens=False)["input_ids"])
            time.sleep(sandbox_s)
            conv = conv + [{"role": "assistant", "content": reply}, {"role": "user", "content": FIX}]
        return tokens

    start = time.perf_counter()
    with ThreadPoolExecutor(len(conversations)) as pool:
        tokens = sum(pool.map(trajectory, range(len(conversations))))
    return time.perf_counter() - start, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="models/student")
    ap.add_argument("--trajectories", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-new-tokens", type=int, default=512)
    ap.add_argument("--sandbox-s", type=float, default=0.5)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vs", default="cce7d0c", help="git revision of the fixed-batch baseline")
    bench_result.add_json_option(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = HFGenerator(args.model, device="cpu", dtype=args.dtype)
    conversations = [t.conversation("iterpref") for t in HumanEval().load(limit=args.trajectories)]
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, temperature=0.7, top_p=0.95,
                              stop_after_code=True, batch_size=args.trajectories)
    print(f"{args.trajectories} trajectories x {args.rounds} turns, {args.max_new_tokens} new tokens at most, "
          f"sandbox {args.sandbox_s} s, {args.threads} threads, {os.cpu_count()} CPUs", flush=True)
    results = {}
    for label, batching in ((f"fixed batches ({args.vs})", old_batching(gen, args.vs, args.trajectories)),
                            ("turns join running rows", BatchingGenerator(gen, max_batch=args.trajectories))):
        load = os.getloadavg()[0]
        wall, tokens = run(batching, conversations, sampling, args.rounds, args.sandbox_s, gen.tokenizer)
        results[label] = tokens / wall
        print(f"{label:>32}: {wall:7.1f} s  {tokens} reply tokens  {tokens / wall:6.1f} tokens/s  "
              f"(load average {load:.1f} -> {os.getloadavg()[0]:.1f})", flush=True)
    (old, new) = results.values()
    print(f"turns joining running rows: {new / old:.2f}x the reply tokens/s of fixed batches")
    bench_result.write(args.json, "bench_teacher_batching", [
        Metric("teacher decoding, new / fixed batches", new / old, "x"),
        Metric("teacher reply tokens/s", new, "tok/s"),
    ], {"model": args.model, "trajectories": args.trajectories, "rounds": args.rounds,
        "max_new_tokens": args.max_new_tokens, "sandbox_s": args.sandbox_s, "vs": args.vs})


if __name__ == "__main__":
    sys.exit(main())
