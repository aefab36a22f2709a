"""Generate greedy answers for a benchmark and score them with its official evaluator.

The result is one JSON document per (variant, benchmark) holding everything a reader needs to
trust or redo the number: pass@1, each task's verdict and error type, the prompt format, the
generation settings, the data file and its hash, the evaluator's versions, the sanity gate and
the timings. The samples go beside it in the official samples format, so the benchmark's own
CLI can re-score them.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, replace

from iterpref import prompts
from iterpref.evaluation import sanity
from iterpref.evaluation.benchmark import Benchmark
from iterpref.llm.base import Generator, SamplingConfig
from iterpref.sandbox import SandboxConfig


def evaluate(generator: Generator, bench: Benchmark, sampling: SamplingConfig, sandbox: SandboxConfig,
             limit: int | None = None, timeout_s: float = 3.0, gate: float = 0.99,
             generation: dict | None = None, prompt_style: str = "iterpref") -> tuple[dict, list[dict]]:
    """pass@1 of ``generator`` on ``bench`` with per-task verdicts (one greedy sample each).

    Args:
        prompt_style: ``iterpref`` (the training format) or ``evalplus`` (EvalPlus's instruct
            prompt, assistant turn pre-filled with an opened fence; the closing fence ends it).
        gate: the share of the benchmark's reference solutions that must pass first (see
            `sanity`); 0 turns the gate off.
        generation: how the generator was set up (backend, dtype, ...), recorded as is.

    Returns:
        ``(report, samples)``: the result document and the official samples-file rows.

    Raises:
        SetupError: the data is missing or bad, or the sanity gate failed.
    """
    tasks = bench.load(limit=limit)
    start = time.time()
    check = sanity.check(bench, tasks, sandbox, timeout_s, sandbox.workers) if gate > 0 else None
    sanity.enforce(bench, check, gate)
    sanity_s = time.time() - start

    conversations = [t.conversation(prompt_style) for t in tasks]
    if prompt_style == "evalplus":  # the reply continues an opened fence: its closing fence ends it
        sampling = replace(sampling, stop=[*sampling.stop, prompts.FENCE_CLOSE])
    start = time.time()
    replies = generator.chat(conversations, sampling, progress=f"generate {bench.name}")
    gen_s = time.time() - start

    start = time.time()
    prefills = [c[-1]["content"] if c[-1]["role"] == "assistant" else "" for c in conversations]
    codes = [prompts.extract_code(p + r) for p, r in zip(prefills, replies)]
    verdicts = bench.score(tasks, codes, sandbox, timeout_s=timeout_s, workers=sandbox.workers)
    score_s = time.time() - start

    passed = sum(v.passed for v in verdicts)
    report = {
        "benchmark": bench.name,
        "title": bench.title,
        "model": generator.name,
        "tasks": len(tasks),
        "passed": passed,
        "pass@1": passed / len(tasks) if tasks else 0.0,
        "error_types": dict(Counter(v.error_type or v.status for v in verdicts if not v.passed).most_common()),
        "prompt": {"style": prompt_style, "example": conversations[0] if conversations else None},
        "generation": {**(generation or {}), "sampling": asdict(sampling)},
        "data": {"file": str(bench.data_file()), "sha256": bench.data_sha256(), "limit": limit},
        "evaluator": bench.versions(),
        "sanity": check,
        "timings_s": {"sanity": round(sanity_s, 1), "generation": round(gen_s, 1), "scoring": round(score_s, 1)},
        "per_task": [{**asdict(v), "reply": r} for v, r in zip(verdicts, replies)],
    }
    samples = [bench.sample(t, c) for t, c in zip(tasks, codes)]
    return report, samples
