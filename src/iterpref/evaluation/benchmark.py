"""What every benchmark provides, and the registry the evaluate stage looks names up in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from iterpref import prompts


@dataclass
class Task:
    """One benchmark task, in the shape the shared prompt format needs.

    Attributes:
        task_id: the benchmark's own id (``HumanEval/0``).
        instruction: the statement shown before the code header.
        code_header: the code the model completes (signature and docstring).
        entry_point: the function the tests call.
        record: the benchmark's original record, handed back to its official evaluator.
    """

    task_id: str
    instruction: str
    code_header: str
    entry_point: str
    record: dict[str, Any] = field(default_factory=dict)

    def conversation(self) -> list[dict[str, str]]:
        """The chat the student answers: the same user-turn format as the training pairs."""
        return [{"role": "user", "content": prompts.user_message(self.instruction, self.code_header)}]


@dataclass
class Benchmark:
    """A benchmark: how to load its tasks and how its official evaluator scores code."""

    name: str
    load: Callable[..., list[Task]]
    score: Callable[..., list[dict]]


def registry() -> dict[str, Benchmark]:
    """Benchmarks by name."""
    from iterpref.evaluation import humaneval

    return {"humaneval": Benchmark("humaneval", humaneval.load_tasks, humaneval.score)}
