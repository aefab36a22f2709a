"""Sandbox throughput: the judge design of `run_unittest` against the single-process runner it
replaced (or any two versions of the sandbox), on the seed problems' references, isolation on.

The old design is `iterpref/sandbox.py` as of commit e5fbb33 (the last one with the in-process
runner), loaded from git beside the current module; ``--old COMMIT`` loads the sandbox of another
commit instead, ``--new COMMIT`` one in place of the current module (its package, judge.py
included, taken from git). Both run the same ``--runs`` jobs (the 67
references, cycled) through their `run_unittest_many` with the same workers, in interleaved
chunks of ``--chunk`` jobs (old, new, new, old, ...), so that a machine whose load changes
during the run slows both alike; the script prints runs/s of each over all its chunks and the
ratio. Where a cgroup-v1 ``cpuacct`` hierarchy is writable (root), it also prints the CPU time
per run of everything each design started (this process moves into a fresh accounting-only
cgroup for the run): unlike wall time, that hardly depends on what else the machine runs.

Measured 2026-11-26 on the 2-core development machine, always niced (``nice -n 15``) beside other
sessions' tests and benchmarks, so wall-time ratios swing from chunk to chunk; CPU per run is the
steadier number. ``--runs 500``, three runs (load average at start: 8, 5, 3):

    old runs/s   new runs/s   new/old time (median chunk)   CPU per run old / new
       5.34         4.51          1.18x (1.14)               56.3 / 61.6 ms (1.10x)
       6.38         6.70          0.95x (0.97)               55.2 / 57.3 ms (1.04x)
      19.68        17.94          1.10x (1.07)               51.1 / 56.1 ms (1.10x)

Before the judge ran from bytecode compiled once, without ``site`` at start-up and with unittest
imported before its fork, the same script gave 1.41x the time and 1.36x the CPU (``--runs 200``).

Usage: python bench/bench_sandbox.py [--runs 500] [--chunk 50] [--workers 2] [--backend bwrap]
                                     [--old COMMIT] [--new COMMIT]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

from iterpref import sandbox

if not __package__:  # run as a script: the repository root, where the `bench` package is
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import result as bench_result  # noqa: E402
from bench.result import Metric  # noqa: E402

MAKE_BENCH = {"args": ["--runs", "200"]}  # how `make bench` runs it (bench/run_all.py)

OLD_COMMIT = "e5fbb33a554321374685a9a879d5adc09129ab17"
ROOT = Path(__file__).resolve().parents[1]


def git_show(commit: str, path: str) -> str | None:
    """``path`` as of ``commit``; None where that commit has no such file."""
    res = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, capture_output=True, text=True)
    return res.stdout if res.returncode == 0 else None


def sandbox_at(commit: str, folder: Path):
    """The sandbox as of ``commit``, imported from git as module ``iterpref_sandbox_<commit>``:
    the single module ``src/iterpref/sandbox.py`` of old, or the package ``src/iterpref/sandbox/``
    written to ``folder`` (its ``judge.py``, which it runs by path, beside it)."""
    name = f"iterpref_sandbox_{commit[:12]}"
    source = git_show(commit, "src/iterpref/sandbox.py")
    if source is not None:
        spec = importlib.util.spec_from_loader(name, loader=None)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        exec(compile(source, f"{commit[:7]}:sandbox.py", "exec"), module.__dict__)
        return module
    for file in ("__init__.py", "judge.py"):
        text = git_show(commit, f"src/iterpref/sandbox/{file}")
        if text is None:
            raise SystemExit(f"{commit}: neither src/iterpref/sandbox.py nor src/iterpref/sandbox/{file}")
        (folder / file).write_text(text)
    spec = importlib.util.spec_from_file_location(name, folder / "__init__.py", submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


CPUACCT = Path("/sys/fs/cgroup/cpuacct")


@contextlib.contextmanager
def cpu_meter():
    """Yield a function returning the CPU seconds used so far by this process and everything it
    started, from a cpuacct cgroup of its own; None where there is none to create."""
    group = CPUACCT / f"iterpref-bench-{os.getpid()}"
    try:
        group.mkdir()
        (group / "cgroup.procs").write_text(str(os.getpid()))
    except OSError:
        yield None
        return
    try:
        yield lambda: int((group / "cpuacct.usage").read_text()) / 1e9
    finally:
        (CPUACCT / "cgroup.procs").write_text(str(os.getpid()))
        with contextlib.suppress(OSError):
            group.rmdir()


def timed(module, jobs, config) -> float:
    """Seconds `run_unittest_many` of ``module`` takes for ``jobs`` (all must pass)."""
    start = time.perf_counter()
    outcomes = module.run_unittest_many(jobs, config)
    elapsed = time.perf_counter() - start
    failed = [o.status for o in outcomes if not o.passed]
    assert not failed, f"{module.__name__}: {len(failed)} references failed: {failed[:5]}"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--chunk", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--backend", default="bwrap", choices=["bwrap", "rlimit"])
    parser.add_argument("--old", default=OLD_COMMIT, help="commit of the old design (default: %(default).7s)")
    parser.add_argument("--new", help="commit of the new design (default: the current module)")
    bench_result.add_json_option(parser)
    args = parser.parse_args()
    warnings.simplefilter("ignore", RuntimeWarning)  # the rlimit backend's "not isolation" warning

    problems = [json.loads(line) for line in (ROOT / "data/seed/problems.jsonl").read_text().splitlines()]
    jobs = [(problems[i % len(problems)]["reference"], problems[i % len(problems)]["tests"]) for i in range(args.runs)]
    seconds, cpu = {"old": 0.0, "new": 0.0}, {"old": 0.0, "new": 0.0}
    ratios = []
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp, cpu_meter() as used:
        folders = {name: Path(tmp) / name for name in seconds}
        for folder in folders.values():
            folder.mkdir()
        designs = {"old": sandbox_at(args.old, folders["old"]),
                   "new": sandbox_at(args.new, folders["new"]) if args.new else sandbox}
        for i, start in enumerate(range(0, len(jobs), args.chunk)):
            chunk = jobs[start:start + args.chunk]
            took = {}
            for name in (list(designs) if i % 2 == 0 else list(reversed(designs))):
                module = designs[name]
                before = used() if used else 0.0
                took[name] = timed(module, chunk, module.SandboxConfig(backend=args.backend, workers=args.workers))
                seconds[name] += took[name]
                cpu[name] += (used() - before) if used else 0.0
            ratios.append(took["new"] / took["old"])
            print(f"  jobs {start}-{start + len(chunk) - 1}: old {len(chunk) / took['old']:.2f} runs/s, "
                  f"new {len(chunk) / took['new']:.2f} runs/s, new/old time {ratios[-1]:.2f}", flush=True)
    old, new = (len(jobs) / seconds[name] for name in designs)
    print(f"{len(jobs)} runs of seed references each, backend {args.backend}, {args.workers} workers, "
          f"chunks of {args.chunk}:")
    print(f"  old ({args.old[:7]}) {old:.2f} runs/s, new ({(args.new or 'current')[:7]}) {new:.2f} runs/s; new takes "
          f"{old / new:.2f}x the old time (median chunk ratio {statistics.median(ratios):.2f})")
    if used:
        ms = {name: 1e3 * cpu[name] / len(jobs) for name in designs}
        print(f"  CPU per run (everything started): old {ms['old']:.1f} ms, new {ms['new']:.1f} ms, "
              f"new/old {ms['new'] / ms['old']:.2f}")
    metrics = [Metric("new runs/s", round(new, 2), "runs/s"), Metric("old runs/s", round(old, 2), "runs/s"),
               Metric("new / old time", round(old / new, 3), "x", "<= 1.3")]
    if used:
        metrics.append(Metric("new / old CPU per run", round(ms["new"] / ms["old"], 3), "x", "<= 1.3"))
    bench_result.write(args.json, "bench_sandbox", metrics,
                       {"runs": len(jobs), "backend": args.backend, "workers": args.workers, "chunk": args.chunk,
                        "old": args.old, "new": args.new or "current"})


if __name__ == "__main__":
    main()
