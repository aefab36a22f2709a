"""What every problem source hands the build: candidates, and the drops it made on the way.

A source (one module each: `seed`, `codeio`, `synthesize`, `hf`) turns its input into
`Candidate` problems cheaply (no sandbox). Work that needs the sandbox per problem (CodeI/O runs
its input generator and reference to write the tests) happens in the source's ``prepare``, which
the build runs in its resumable worker pool after de-duplication and decontamination, so the
expensive step never runs on a problem that would be dropped anyway.
"""

from __future__ import annotations

import ast
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from iterpref.records import Problem
from iterpref.sandbox import SandboxConfig


@dataclass
class Candidate:
    """A problem before validation.

    Attributes:
        problem: the problem; ``tests`` may still be empty when ``prepare`` writes them.
        origin: where it came from, for messages (``codeio.jsonl.gz:17``, a reply's feature).
        payload: what the source's ``prepare`` needs besides the problem (JSON-able).
    """

    problem: Problem
    origin: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class Dropped:
    """A problem left out, and why.

    Attributes:
        task_id: the problem's id (or its origin when it never got one).
        reason: a short name counted in reports/problems.json (``schema``, ``stub_passes``...).
        detail: what exactly was wrong (file, line and field for a schema error).
    """

    task_id: str
    reason: str
    detail: str = ""


class Drop(Exception):
    """Raised by checks and by ``prepare``: the problem is dropped for ``reason``."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass
class Harvest:
    """A source's output.

    Attributes:
        candidates: problems to check, in the source's order.
        dropped: what the source itself left out (unparseable replies, bad rows...).
        prepare: the per-problem sandbox step (None: the candidate's problem is complete).
        stats: source-specific counts for the report (teacher cache hits, ...).
    """

    candidates: list[Candidate]
    dropped: list[Dropped] = field(default_factory=list)
    prepare: Callable[[Candidate, SandboxConfig], Problem] | None = None
    stats: dict[str, Any] = field(default_factory=dict)


def count_reasons(dropped: list[Dropped]) -> dict[str, int]:
    """Drops by reason, sorted by name."""
    return dict(sorted(Counter(d.reason for d in dropped).items()))


def parse(source: str) -> ast.Module:
    """``ast.parse`` without the warnings (invalid escape sequences...) that corpus code raises."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ast.parse(source)


def signature_of(source: str, name: str) -> str | None:
    """The header of the top-level function or class ``name`` in ``source`` (``def f(a, b=1) ->
    int:``, ``class Stack:``), decorators and body left out; None when it is not defined."""
    import ast

    for node in parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            prefix = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
            returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
            return f"{prefix} {name}({ast.unparse(node.args)}){returns}:"
        if isinstance(node, ast.ClassDef) and node.name == name:
            bases = ", ".join(ast.unparse(b) for b in node.bases + node.keywords)
            return f"class {name}({bases}):" if bases else f"class {name}:"
    return None
