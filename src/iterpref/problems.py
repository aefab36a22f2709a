"""Problem sources: the seed file shipped in data/seed/ (more sources come later)."""

from __future__ import annotations

import os
import re

from iterpref.records import Problem, RecordError, read_jsonl


def load_seed(path: str | os.PathLike, limit: int | None = None) -> list[Problem]:
    """Problems from a seed JSONL file, validated; the first ``limit`` when given.

    Raises:
        RecordError: naming file, line and field for a malformed or inconsistent problem.
    """
    problems = read_jsonl(path, Problem)
    seen: dict[str, int] = {}
    for lineno, p in enumerate(problems, 1):
        where = f"{path}: record {lineno} ({p.task_id})"
        if p.task_id in seen:
            raise RecordError(f"{where}: task_id duplicates record {seen[p.task_id]}")
        seen[p.task_id] = lineno
        if not re.search(rf"\b{re.escape(p.entry_point)}\b", p.signature):
            raise RecordError(f"{where}: entry_point {p.entry_point!r} does not appear in signature")
        if f"import {p.entry_point}" not in p.tests:
            raise RecordError(f"{where}: tests must import the entry point (`from solution import {p.entry_point}`)")
    return problems[:limit] if limit is not None else problems
