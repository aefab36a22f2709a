"""`make bench`: run every bench/bench_*.py with small CPU-sized arguments and write their
headline numbers, and the machine they were measured on, to bench/results.md.

A script joins by being named ``bench_*.py``. It declares how `make bench` runs it with a
module-level literal (read with ``ast``, the script is not imported):

    MAKE_BENCH = {"args": ["--tasks", "16"], "needs": None}   # needs: None or "cuda"

and writes its headline numbers with ``--json PATH`` (`bench.result`). A script that
needs a GPU is skipped where torch sees none; a script without ``MAKE_BENCH`` runs with its own
defaults and no ``--json``, and its row says so. Each script runs in its own process, one after
the other, its output streamed through; a failure is recorded with the end of that output and
the run goes on. Exit status 1 when a script failed.

    python bench/run_all.py [--out bench/results.md] [--only bench_train,bench_sandbox] [--timeout 3600]
"""

from __future__ import annotations

import argparse
import ast
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

if not __package__:  # run as a script: the repository root, where the `bench` package is
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import result as bench_result  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
NEEDS = (None, "cuda")
TAIL_LINES = 15


@dataclass
class Run:
    """One bench script's run: what was run, how it ended, and its headline numbers.

    Attributes:
        name: the script's name without ``.py``.
        command: the argv (empty when skipped).
        status: ``ok``, ``no headline`` (ran without ``MAKE_BENCH``), ``skipped: ...`` or
            ``failed: ...``.
        wall_s: the script's wall time.
        metrics: its headline numbers.
    """

    name: str
    command: list[str] = field(default_factory=list)
    status: str = "ok"
    wall_s: float | None = None
    metrics: list[bench_result.Metric] = field(default_factory=list)


def declared(script: Path) -> dict | None:
    """The script's ``MAKE_BENCH`` (``args`` and ``needs`` filled in); None if it has none.

    Raises:
        ValueError: naming the file, line and field, when it is not a literal of that shape.
    """
    tree = ast.parse(script.read_text(encoding="utf-8"), filename=str(script))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "MAKE_BENCH" for t in node.targets):
            where = f"{script}:{node.lineno}: MAKE_BENCH"
            try:
                spec = ast.literal_eval(node.value)
            except ValueError as err:
                raise ValueError(f"{where}: must be a literal dict ({err})") from None
            if not isinstance(spec, dict) or set(spec) - {"args", "needs"}:
                raise ValueError(f"{where}: must be a dict with keys args and needs, got {spec!r}")
            args, needs = spec.get("args", []), spec.get("needs")
            if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
                raise ValueError(f"{where}.args: must be a list of strings, got {args!r}")
            if needs not in NEEDS:
                raise ValueError(f"{where}.needs: must be one of {NEEDS}, got {needs!r}")
            return {"args": args, "needs": needs}
    return None


def machine() -> dict[str, str]:
    """Where the numbers were measured: date, commit, CPU, cores, RAM, GPU, versions, load."""
    def run(*argv: str) -> str:
        try:
            return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    cpu = next((line.split(":", 1)[1].strip() for line in _lines("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor() or platform.machine())
    mem_kib = next((int(line.split()[1]) for line in _lines("/proc/meminfo") if line.startswith("MemTotal:")), 0)
    commit = run("git", "rev-parse", "--short", "HEAD") or "unknown"
    if run("git", "status", "--porcelain", "--untracked-files=no"):
        commit += " (+ uncommitted changes)"
    return {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "commit": commit,
        "CPU": cpu,
        "cores": f"{os.cpu_count()} ({len(os.sched_getaffinity(0))} usable)",
        "RAM": f"{mem_kib / 2**20:.1f} GiB",
        "GPU": run("nvidia-smi", "--query-gpu=name", "--format=csv,noheader").replace("\n", ", ") or "none",
        "python": platform.python_version(),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "trl": _version("trl"),
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def _lines(path: str) -> list[str]:
    try:
        return Path(path).read_text().splitlines()
    except OSError:
        return []


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def cuda_available() -> bool:
    """Whether torch sees a GPU (asked in a child, so this process stays light)."""
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                           capture_output=True, text=True)
    return probe.stdout.strip() == "True"


def run_one(script: Path, spec: dict | None, out_dir: Path, timeout_s: float) -> Run:
    """Run ``script`` as ``MAKE_BENCH`` says, streaming its output; its `Run`."""
    result = Run(script.stem)
    json_path = out_dir / f"{script.stem}.json"
    result.command = [sys.executable, str(script.relative_to(ROOT) if script.is_relative_to(ROOT) else script),
                      *(spec["args"] + ["--json", str(json_path)] if spec else [])]
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    print(f"\n=== {script.stem}: {' '.join(result.command[1:])}", flush=True)
    start = time.perf_counter()
    with subprocess.Popen(result.command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace") as proc:
        timer = threading.Timer(timeout_s, proc.kill)
        timer.start()
        try:
            for line in proc.stdout:
                sys.stdout.write(line)
                tail.append(line.rstrip())
            code = proc.wait()
        finally:
            timer.cancel()
    result.wall_s = time.perf_counter() - start
    if result.wall_s >= timeout_s:
        result.status = f"failed: killed at the {timeout_s:g} s timeout"
    elif code != 0:
        last = next((t for t in reversed(tail) if t.strip()), "(no output)")
        result.status = f"failed (exit {code}): {last}"
    elif spec is None:
        result.status = "no headline (the script declares no MAKE_BENCH)"
    elif not json_path.exists():
        result.status = f"failed: exit 0 but no --json file ({json_path.name})"
    else:
        try:
            _, result.metrics, _ = bench_result.read(json_path)
        except ValueError as err:
            result.status = f"failed: {err}"
    return result


def markdown(env: dict[str, str], runs: list[Run]) -> str:
    """bench/results.md: the machine, the headline numbers, and each script's run."""
    lines = ["# Benchmarks (`make bench`)", "", "Measured on:", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in env.items()]
    lines += ["", "## Headline numbers", "", "| bench | metric | value | goal | met |", "|---|---|---|---|---|"]
    for r in runs:
        for m in r.metrics:
            met = {True: "yes", False: "**no**", None: ""}[m.met()]
            lines.append(f"| {r.name} | {m.name} | {_value(m)} | {m.goal or ''} | {met} |")
    lines += ["", "## Runs", "", "| bench | command | wall s | status |", "|---|---|---|---|"]
    for r in runs:
        command = f"`python {' '.join(r.command[1:])}`" if r.command else ""
        wall = f"{r.wall_s:.1f}" if r.wall_s is not None else ""
        lines.append(f"| {r.name} | {command} | {wall} | {r.status.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def _value(m: bench_result.Metric) -> str:
    number = f"{m.value:.3f}" if m.unit == "x" else f"{m.value:.4g}"
    return f"{number}{m.unit}" if m.unit == "x" else f"{number} {m.unit}".strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bench-dir", default=str(BENCH_DIR), help="where the bench_*.py scripts are")
    ap.add_argument("--out", default=str(BENCH_DIR / "results.md"))
    ap.add_argument("--only", default=None, help="comma list of script names (default: all)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds one script may run")
    args = ap.parse_args(argv)
    scripts = sorted(Path(args.bench_dir).resolve().glob("bench_*.py"))
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {s.stem for s in scripts}
        if unknown:
            ap.error(f"--only: no {sorted(unknown)} in {args.bench_dir}")
        scripts = [s for s in scripts if s.stem in wanted]
    specs = {s: declared(s) for s in scripts}  # a malformed MAKE_BENCH stops the run before anything runs
    env = machine()
    gpu = None
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="make-bench-") as tmp:
        for script in scripts:
            spec = specs[script]
            if spec and spec["needs"] == "cuda":
                gpu = cuda_available() if gpu is None else gpu
                if not gpu:
                    runs.append(Run(script.stem, status="skipped: needs a GPU (torch sees none)"))
                    continue
            runs.append(run_one(script, spec, Path(tmp), args.timeout))
            Path(args.out).write_text(markdown(env, runs))  # kept current: a long run can be read midway
    Path(args.out).write_text(markdown(env, runs))
    failed = [r.name for r in runs if r.status.startswith("failed")]
    print(f"\n{len(runs)} bench script(s), {len(failed)} failed{': ' + ', '.join(failed) if failed else ''} "
          f"-> {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
