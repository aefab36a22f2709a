"""The sanity gate: before a model is scored, the benchmark's own reference solutions must pass.

A benchmark whose reference solutions fail here says the environment is broken (a missing
library, a too-tight memory or time limit, a data file that does not match its tests), and every
model number from it would be wrong in a way that looks like the model's fault. The check is
cached per data file hash and task list under ``.cache/sanity/``, so it runs once per data file,
not once per variant.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from iterpref.evaluation.benchmark import Benchmark, SetupError, Task
from iterpref.sandbox import SandboxConfig

CACHE = Path(".cache/sanity")


def check(bench: Benchmark, tasks: list[Task], sandbox: SandboxConfig, timeout_s: float, workers: int,
          cache_dir: str | Path = CACHE) -> dict | None:
    """Score the reference solutions of ``tasks``; None when the data carries none.

    Returns ``{data_sha256, tasks, passed, pass_rate, failed (task ids), seconds, cached}``.
    """
    refs = [(t, bench.reference(t)) for t in tasks]
    refs = [(t, code) for t, code in refs if code]
    if not refs:
        return None
    data_hash = bench.data_sha256()
    ids = hashlib.sha256("\n".join(t.task_id for t, _ in refs).encode()).hexdigest()[:12]
    path = Path(cache_dir) / f"{bench.name}-{data_hash[:16]}-{ids}.json"
    if path.exists():
        return {**json.loads(path.read_text()), "cached": True}
    start = time.time()
    verdicts = bench.score([t for t, _ in refs], [c for _, c in refs], sandbox, timeout_s=timeout_s, workers=workers)
    passed = sum(v.passed for v in verdicts)
    summary = {"data_sha256": data_hash, "tasks": len(refs), "passed": passed, "pass_rate": passed / len(refs),
               "failed": [f"{v.task_id}: {v.error_type or v.status}" for v in verdicts if not v.passed],
               "seconds": round(time.time() - start, 1)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return {**summary, "cached": False}


def enforce(bench: Benchmark, summary: dict | None, threshold: float) -> None:
    """Raise `SetupError` when fewer than ``threshold`` of the reference solutions pass."""
    if summary is None or summary["pass_rate"] >= threshold:
        return
    raise SetupError(
        f"{bench.name}: only {summary['passed']}/{summary['tasks']} of the benchmark's own reference solutions "
        f"pass here ({100 * summary['pass_rate']:.1f}% < {100 * threshold:.0f}%). This is the evaluation "
        f"environment, not the model: check the evaluator's libraries, the sandbox's memory and time limits "
        f"and the data file. First failures: {summary['failed'][:10]}. After fixing, delete {CACHE}/{bench.name}-*.")
