"""Does a stage's result depend on machine load? Run it idle and with every core saturated, compare.

    python bench/verdicts_under_load.py debug data/trajectories.jsonl
    python bench/verdicts_under_load.py evaluate_reference@humaneval reports/eval/reference/humaneval.json

Runs ``dvc repro -f -s STAGE`` twice in the current DVC project: once as the machine is, once
with ``--hogs`` busy-looping processes (default: one per core) started beside it, each in a
session of its own and killed as a group afterwards. Then compares OUTPUT of the two runs record
by record (a JSON-lines file's lines, or an evaluation report's ``per_task`` rows: reply, verdict,
error type and detail of each task), ignoring every field whose name ends in ``duration_s`` or is
``seconds`` (timings differ by nature), and prints the records, how many differ, the fields that
differ, and each run's wall time and status counts. Exit status 1 when any record differs.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

HOG = "while True: pass"


def timeless(value):
    """``value`` without its timing fields, nested."""
    if isinstance(value, dict):
        return {k: timeless(v) for k, v in value.items() if not (k.endswith("duration_s") or k == "seconds")}
    if isinstance(value, list):
        return [timeless(v) for v in value]
    return value


def differing_fields(a, b, path: str = "") -> list[str]:
    """The paths (``steps[2].outcome.traceback``) at which two timeless records differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [f for k in sorted(set(a) | set(b)) for f in differing_fields(a.get(k), b.get(k), f"{path}.{k}".lstrip("."))]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [f for i, (x, y) in enumerate(zip(a, b)) for f in differing_fields(x, y, f"{path}[{i}]")]
    return [] if a == b else [path or "(record)"]


def statuses(records: list[dict]) -> collections.Counter:
    """How often each ``status`` value occurs anywhere in the records."""
    found: collections.Counter = collections.Counter()

    def walk(v) -> None:
        if isinstance(v, dict):
            if isinstance(v.get("status"), str):
                found[v["status"]] += 1
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(records)
    return found


def read(path: Path) -> list[dict]:
    """The records of a JSON-lines file, or the ``per_task`` rows of an evaluation report (.json)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)["per_task"]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@contextlib.contextmanager
def hogs(n: int):
    """``n`` busy-looping processes, killed (each a whole session) on leaving."""
    procs = [subprocess.Popen([sys.executable, "-c", HOG], start_new_session=True) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def run(stage: str, output: Path, keep: Path) -> float:
    start = time.monotonic()
    subprocess.run(["dvc", "repro", "-f", "-s", stage], check=True, stdout=subprocess.DEVNULL)
    shutil.copyfile(output, keep)
    return time.monotonic() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("stage")
    ap.add_argument("output", type=Path, help="the stage's JSON-lines output, or its evaluation report, to compare")
    ap.add_argument("--hogs", type=int, default=os.cpu_count(), help="busy processes in the loaded run")
    ap.add_argument("--keep", type=Path, default=Path("bench/results/load"), help="where both outputs are kept")
    args = ap.parse_args()
    args.keep.mkdir(parents=True, exist_ok=True)
    name = args.stage.replace("@", "_")
    idle, loaded = (args.keep / f"{name}.{load}{args.output.suffix}" for load in ("idle", "loaded"))
    with open("/proc/loadavg") as fh:
        before = fh.read().split()[0]
    idle_s = run(args.stage, args.output, idle)
    with hogs(args.hogs):
        loaded_s = run(args.stage, args.output, loaded)
    a, b = read(idle), read(loaded)
    differ = [i for i, (x, y) in enumerate(zip(a, b)) if timeless(x) != timeless(y)]
    fields = collections.Counter(f for i in differ for f in differing_fields(timeless(a[i]), timeless(b[i])))
    print(f"{args.stage}: {len(a)} records idle, {len(b)} loaded ({args.hogs} busy processes); "
          f"1-min load average before the idle run {before}")
    print(f"wall time: idle {idle_s:.0f} s, loaded {loaded_s:.0f} s ({loaded_s / idle_s:.2f}x)")
    print(f"statuses: idle {dict(statuses(a))}, loaded {dict(statuses(b))}")
    print(f"records that differ (timings ignored): {len(differ) + abs(len(a) - len(b))} of {max(len(a), len(b))}")
    for field, n in fields.most_common(20):
        print(f"  {n} x {field}")
    return 1 if differ or len(a) != len(b) else 0


if __name__ == "__main__":
    sys.exit(main())
