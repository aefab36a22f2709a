"""The `seed` source: problems written for this project, shipped in data/seed/problems.jsonl."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from iterpref.problems.base import Candidate, Harvest
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


# Problem files live here: the synthesize stage depends on this folder, so DVC re-runs it when
# a file in it changes.
DATA_DIR = "data/seed"


@dataclass
class Config:
    """The `seed` source.

    Parameters:
        path (`str`):
            A JSON-lines file of `Problem` records, inside data/seed/.
    """

    path: str = "data/seed/problems.jsonl"

    # fields naming a file the synthesize stage reads: kept inside DATA_DIR (checked at composition)
    FILE_FIELDS = ("path",)

    def check_content(self, root: Path) -> None:
        """Parse the file under the project ``root`` (at composition): RecordError names file,
        line and field."""
        load_seed(root / self.path)


def harvest(cfg: Config, limit: int | None = None) -> Harvest:
    """The seed file's problems as candidates (a malformed file raises: it is ours to fix)."""
    return Harvest([Candidate(p, f"{cfg.path}: record {i}") for i, p in enumerate(load_seed(cfg.path, limit), 1)])
