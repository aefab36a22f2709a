"""Sandbox throughput: the judge design of `run_unittest` against the single-process runner it
replaced, on the seed problems' references, isolation on.

The old design is `iterpref/sandbox.py` as of commit e5fbb33 (the last one with the in-process
runner), loaded from git beside the current module. Both run the same ``--runs`` jobs (the 67
references, cycled) through their `run_unittest_many` with the same workers, alternating which
goes first, ``--repeat`` times; the script prints runs/s of each and the ratio of medians.

Usage: python bench/bench_sandbox.py [--runs 500] [--repeat 2] [--workers 2] [--backend bwrap]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

from iterpref import sandbox

OLD_COMMIT = "e5fbb33a554321374685a9a879d5adc09129ab17"
ROOT = Path(__file__).resolve().parents[1]


def old_sandbox():
    """The single-process design, imported from git as module ``iterpref_old_sandbox``."""
    source = subprocess.run(["git", "show", f"{OLD_COMMIT}:src/iterpref/sandbox.py"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout
    spec = importlib.util.spec_from_loader("iterpref_old_sandbox", loader=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    exec(compile(source, f"{OLD_COMMIT[:7]}:sandbox.py", "exec"), module.__dict__)
    return module


def throughput(module, jobs, config) -> float:
    start = time.perf_counter()
    outcomes = module.run_unittest_many(jobs, config)
    elapsed = time.perf_counter() - start
    failed = [o.status for o in outcomes if not o.passed]
    assert not failed, f"{module.__name__}: {len(failed)} references failed: {failed[:5]}"
    return len(jobs) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backend", default="bwrap", choices=["bwrap", "rlimit"])
    args = parser.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)  # the rlimit backend's "not isolation" warning

    problems = [json.loads(line) for line in (ROOT / "data/seed/problems.jsonl").read_text().splitlines()]
    jobs = [(problems[i % len(problems)]["reference"], problems[i % len(problems)]["tests"]) for i in range(args.runs)]
    designs = {"old (one process)": old_sandbox(), "new (judge + solution)": sandbox}
    rates = {name: [] for name in designs}
    for rep in range(args.repeat):
        order = list(designs) if rep % 2 == 0 else list(reversed(designs))
        for name in order:
            module = designs[name]
            rates[name].append(throughput(module, jobs, module.SandboxConfig(backend=args.backend, workers=args.workers)))
            print(f"  repeat {rep + 1}, {name}: {rates[name][-1]:.2f} runs/s", flush=True)
    old, new = (statistics.median(r) for r in rates.values())
    print(f"{args.runs} runs of seed references, backend {args.backend}, {args.workers} workers, median of {args.repeat}:")
    print(f"  old {old:.2f} runs/s, new {new:.2f} runs/s, new takes {old / new:.2f}x the old time per run")


if __name__ == "__main__":
    main()
