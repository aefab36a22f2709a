"""Generate greedy answers for a benchmark and score them with its official evaluator."""

from __future__ import annotations

import time
from dataclasses import asdict

from iterpref import prompts
from iterpref.evaluation.benchmark import registry
from iterpref.llm.base import Generator, SamplingConfig
from iterpref.sandbox import SandboxConfig


def evaluate(generator: Generator, benchmark: str, sampling: SamplingConfig, sandbox: SandboxConfig,
             limit: int | None = None, timeout_s: float = 3.0) -> dict:
    """pass@1 of ``generator`` on ``benchmark`` with per-task outcomes (one greedy sample each)."""
    bench = registry()[benchmark]
    tasks = bench.load(limit=limit)
    start = time.time()
    replies = generator.chat([t.conversation() for t in tasks], sampling, progress=f"generate {benchmark}")
    gen_s = time.time() - start
    codes = [prompts.extract_code(r) for r in replies]
    results = bench.score(tasks, codes, sandbox, timeout_s=timeout_s, workers=sandbox.workers)
    passed = sum(r["passed"] for r in results)
    return {
        "benchmark": benchmark,
        "model": generator.name,
        "tasks": len(tasks),
        "passed": passed,
        "pass@1": passed / len(tasks) if tasks else 0.0,
        "generation_s": round(gen_s, 1),
        "scoring_s": round(time.time() - start - gen_s, 1),
        "sampling": asdict(sampling),
        "per_task": [
            {**r, "reply": reply} for r, reply in zip(results, replies)
        ],
    }
