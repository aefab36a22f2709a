"""Whether a greedy reply depends on how it was decoded, and what batch invariance costs.

The first N HumanEval tasks as the evaluate stage asks them (the `iterpref` prompt, greedy, at
most 320 new tokens, stop after a closed code block), decoded by our `HFGenerator` at the
reference setting (batch 32, --threads 2, no stored prompt prefixes) and again at each other
setting; for each, the replies whose tokens differ from the reference's. The same for a baseline
decoder, hf.py at a git revision (a17ec41: before batch invariance), on its own copy of the
model. Time: ours and the baseline at the reference setting, alternately (ours, baseline,
baseline, ours, ... for ``--rounds``), in this process on the same prompts; the ratio of their
summed generation times (the machine's load average is printed: compare ratios).

    python bench/bench_batch_invariance.py --tasks 48                      # b8, b1, t1, half, warm
    python bench/bench_batch_invariance.py --tasks 48 --settings b8,t1 --baseline-settings b8
    options: --model models/student --dtype bfloat16 --max-new-tokens 320 --vs a17ec41 --rounds 2
             --threads 2 (the reference's; on a loaded machine 1 wastes less waiting)

Settings: ``b<n>`` batch n; ``t<n>`` n threads; ``half``: only the second half of the tasks
(what ``--limit`` or another benchmark before them changes: the batch's company and the stored
prefixes); ``warm``: again, with the prefixes the reference run stored.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from iterpref.llm.base import SamplingConfig
from iterpref.llm.hf import HFGenerator
from iterpref.llm.hf.attention import batch_invariant_attention
from iterpref.llm.hf.prefixes import Prefixes

if not __package__:  # run as a script: the repository root, where the `bench` package is
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import result as bench_result  # noqa: E402
from bench.bench_generation import humaneval_conversations  # noqa: E402
from bench.result import Metric  # noqa: E402

MAKE_BENCH = {"args": ["--tasks", "16", "--max-new-tokens", "192", "--settings", "b8,t1,half,warm",
                       "--baseline-settings", "b8", "--rounds", "1"]}
GOAL_TIME = "<= 1.25"  # issue 31: batch invariance at no more than 1.25x the generation time


def baseline_generator(rev: str, model: str, dtype: str):
    """`HFGenerator` as src/iterpref/llm/hf.py was at ``rev`` (one file), on its own copy of
    the model, its attention registered under another name so that each decoder keeps its own."""
    source = subprocess.run(["git", "show", f"{rev}:src/iterpref/llm/hf.py"], check=True,
                            capture_output=True, text=True).stdout
    path = os.path.join(tempfile.mkdtemp(), "hf_at_rev.py")
    Path(path).write_text(source)
    spec = importlib.util.spec_from_file_location("hf_at_rev", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # registers its attention as iterpref_decode: ours goes back
    AttentionInterface.register("iterpref_decode_at_rev", module._decode_attention)
    AttentionMaskInterface.register("iterpref_decode_at_rev", sdpa_mask)
    AttentionInterface.register("iterpref_decode", batch_invariant_attention)
    gen = module.HFGenerator(model, device="cpu", dtype=dtype)
    if gen.model.config._attn_implementation == "iterpref_decode":
        gen.model.set_attn_implementation("iterpref_decode_at_rev")
    return gen, module._Prefixes


def run(gen, new_prefixes, convs, sampling, threads: int, cold: bool = True) -> tuple[list[list[int]], float]:
    """Each conversation's reply tokens (in `chat`'s order: longest prompt first) and the wall time."""
    torch.set_num_threads(threads)
    if cold:
        gen.prefixes = new_prefixes()
    order = sorted(range(len(convs)), key=lambda i: -len(str(convs[i])))
    prompts = [gen.encode(convs[i]) for i in order]
    start = time.perf_counter()
    out = gen.decode(prompts, sampling)
    wall = time.perf_counter() - start
    replies = [[]] * len(convs)
    for i, ids in zip(order, out):
        replies[i] = ids
    return replies, wall


def differing(gen, new_prefixes, convs, sampling, reference, setting: str, threads: int) -> tuple[int, int]:
    """Replies at ``setting`` whose tokens differ from ``reference``'s, and how many were compared."""
    kind, value = setting[0], setting[1:]
    if setting == "half":
        half = len(convs) // 2
        replies, _ = run(gen, new_prefixes, convs[half:], sampling, threads)
        return sum(a != b for a, b in zip(replies, reference[half:])), len(replies)
    if setting == "warm":
        replies, _ = run(gen, new_prefixes, convs, sampling, threads, cold=False)
    elif kind == "b":
        replies, _ = run(gen, new_prefixes, convs, replace(sampling, batch_size=int(value)), threads)
    elif kind == "t":
        replies, _ = run(gen, new_prefixes, convs, sampling, int(value))
    else:
        raise SystemExit(f"unknown setting {setting!r}: b<n>, t<n>, half or warm")
    return sum(a != b for a, b in zip(replies, reference)), len(replies)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/student")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--tasks", type=int, default=48)
    ap.add_argument("--max-new-tokens", type=int, default=320)
    ap.add_argument("--vs", default="a17ec41", help="the baseline: hf.py at this git revision")
    ap.add_argument("--rounds", type=int, default=2, help="timed runs of each side at the reference setting")
    ap.add_argument("--threads", type=int, default=2, help="torch threads at the reference setting")
    ap.add_argument("--settings", default="b8,b1,t1,half,warm", help="ours, against the reference")
    ap.add_argument("--baseline-settings", default="b8", help="the baseline's, against its reference")
    bench_result.add_json_option(ap)
    args = ap.parse_args(argv)
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, stop_after_code=True, batch_size=32)
    convs = humaneval_conversations(args.tasks)
    ours = (HFGenerator(args.model, device="cpu", dtype=args.dtype), Prefixes)
    theirs = baseline_generator(args.vs, args.model, args.dtype)
    print(f"{args.tasks} HumanEval tasks, max_new_tokens {args.max_new_tokens}, {args.dtype} on "
          f"{os.cpu_count()} CPUs; reference: batch 32, {args.threads} threads; baseline hf.py@{args.vs}", flush=True)
    times = {"ours": 0.0, "baseline": 0.0}
    reference = {}
    for k in range(args.rounds):
        for name in ("ours", "baseline") if k % 2 == 0 else ("baseline", "ours"):
            gen, new_prefixes = ours if name == "ours" else theirs
            load = os.getloadavg()[0]
            replies, wall = run(gen, new_prefixes, convs, sampling, args.threads)
            reference.setdefault(name, replies)
            times[name] += wall
            print(f"{name:>8} round {k + 1}: {wall:6.1f} s (load average {load:.1f} -> {os.getloadavg()[0]:.1f}); "
                  f"replies differ from its first round: {sum(a != b for a, b in zip(replies, reference[name]))}",
                  flush=True)
    ratio = times["ours"] / times["baseline"]
    print(f"generation time, ours / baseline: {ratio:.3f}x ({times['ours']:.1f} s / {times['baseline']:.1f} s)")
    ours_vs_theirs = sum(a != b for a, b in zip(reference["ours"], reference["baseline"]))
    print(f"replies that differ between ours and the baseline at the reference setting: {ours_vs_theirs}/{len(convs)}")
    metrics = [Metric("ours / baseline generation time", ratio, "x", GOAL_TIME)]
    for name, settings in (("ours", args.settings), ("baseline", args.baseline_settings)):
        gen, new_prefixes = ours if name == "ours" else theirs
        for setting in filter(None, settings.split(",")):
            start = time.perf_counter()
            n, of = differing(gen, new_prefixes, convs, sampling, reference[name], setting, args.threads)
            print(f"{name:>8} {setting:>5}: {n}/{of} replies differ from the reference "
                  f"({time.perf_counter() - start:.1f} s)", flush=True)
            metrics.append(Metric(f"{name}: replies that differ at {setting}", n, f"of {of}",
                                  "== 0" if name == "ours" else None))
    bench_result.write(args.json, "bench_batch_invariance", metrics, {
        "model": args.model, "dtype": args.dtype, "tasks": args.tasks, "max_new_tokens": args.max_new_tokens,
        "vs": args.vs, "rounds": args.rounds, "threads": args.threads, "settings": args.settings,
        "baseline_settings": args.baseline_settings})


if __name__ == "__main__":
    sys.exit(main())
