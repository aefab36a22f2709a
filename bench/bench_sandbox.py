"""Sandbox cost: per-run latency of the bwrap and rlimit backends, and run_unittest_many throughput.

Usage: python bench/bench_sandbox.py [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

from iterpref.sandbox import SandboxConfig, bwrap_usable, run_python, run_unittest, run_unittest_many

CODE = "def add(a, b):\n    return a + b\n"
TESTS = """\
import unittest
from solution import add

class TestAdd(unittest.TestCase):
    def test_add(self):
        self.assertEqual(add(1, 2), 3)
"""


def latency(fn, runs: int) -> list[float]:
    fn()  # warm-up (and the one-off bwrap probe)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)  # the rlimit backend's "not isolation" warning

    backends = ["rlimit"] + (["bwrap"] if bwrap_usable()[0] else [])
    if "bwrap" not in backends:
        print(f"bwrap not usable ({bwrap_usable()[1]}): timing rlimit only")
    medians = {}
    print(f"per-run latency, {args.runs} sequential runs (median / mean / max, ms)")
    for backend in backends:
        config = SandboxConfig(backend=backend)
        for name, fn in [
            ("python -c pass", lambda: run_python(["-c", "pass"], config=config)),
            ("run_unittest", lambda: run_unittest(CODE, TESTS, config)),
        ]:
            t = latency(fn, args.runs)
            medians[backend, name] = statistics.median(t)
            print(f"  {backend:6} {name:15} {1e3 * statistics.median(t):7.1f} {1e3 * statistics.mean(t):7.1f} "
                  f"{1e3 * max(t):7.1f}")
    if "bwrap" in backends:
        for name in ("python -c pass", "run_unittest"):
            print(f"  bwrap / rlimit ({name}): {medians['bwrap', name] / medians['rlimit', name]:.2f}x")

    backend = backends[-1]
    jobs = [(CODE, TESTS)] * args.runs
    print(f"run_unittest_many throughput, {len(jobs)} trivial jobs, backend {backend}")
    rates = {}
    for workers in (1, 2):
        config = SandboxConfig(backend=backend, workers=workers)
        start = time.perf_counter()
        outcomes = run_unittest_many(jobs, config)
        elapsed = time.perf_counter() - start
        assert all(o.passed for o in outcomes), [o.status for o in outcomes]
        rates[workers] = len(jobs) / elapsed
        print(f"  workers={workers}: {elapsed:.2f} s, {rates[workers]:.1f} jobs/s")
    print(f"  speed-up workers 2 vs 1: {rates[2] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
