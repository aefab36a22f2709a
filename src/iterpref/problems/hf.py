"""The `hf` source: any datasets-hub dataset with code and tests, through a column mapping.

``columns`` maps the problem's ``instruction``, ``reference`` and ``tests`` to the dataset's
columns; ``tests_format`` says how the tests column reads:

| tests_format | tests column | example |
|---|---|---|
| ``pytest`` | a module of ``test_*`` functions that imports from ``solution`` | KodCode (question / solution / test) |
| ``asserts`` | a list of ``assert`` lines calling the function | MBPP (text / code / test_list) |
| ``unittest`` | a unittest module that imports from ``solution`` | |

Each is turned into the unittest module the sandbox runs. The hub needs the network: with no
``data_files`` the hub is probed first and, offline, the stage stops with an error that says
so and how to use local files instead (``data_files``: JSON lines or parquet in the same format).
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field
from typing import Literal

from iterpref.evaluation.mbpp import function_name
from iterpref.problems.base import Candidate, Drop, Dropped, Harvest, parse, signature_of
from iterpref.records import Problem

FIELDS = ("instruction", "reference", "tests")

PYTEST_ADAPTER = '''

import unittest as _unittest


class TestFromFunctions(_unittest.TestCase):
    """The module's test_* functions as unittest methods."""


for _name, _fn in list(globals().items()):
    if _name.startswith("test") and callable(_fn) and not isinstance(_fn, type):
        setattr(TestFromFunctions, _name, (lambda fn: lambda self: fn())(_fn))
'''


@dataclass
class Config:
    """The `hf` source.

    Parameters:
        dataset (`str`):
            The datasets-hub id (used when ``data_files`` is null).
        name (`str` or `None`):
            The dataset's configuration name, if it has several.
        split (`str`):
            The split to read.
        data_files (`str`, `list[str]` or `None`):
            Local files in the dataset's format (``.jsonl``/``.json`` or ``.parquet``) read
            instead of the hub: the offline way in. Inside data/seed/ (the synthesize stage
            depends on that folder), checked at composition.
        columns (`dict[str, str]`):
            ``{instruction: column, reference: column, tests: column}``.
        tests_format (`str`):
            ``pytest``, ``asserts`` or ``unittest`` (see the module docstring).
        id_column (`str` or `None`):
            A column whose value names the task (``hf/<value>``); None: the row number.
    """

    dataset: str = "KodCode/KodCode-V1"
    name: str | None = None
    split: str = "train"
    data_files: str | list[str] | None = None
    columns: dict[str, str] = field(default_factory=lambda: {"instruction": "question", "reference": "solution",
                                                             "tests": "test"})
    tests_format: Literal["pytest", "asserts", "unittest"] = "pytest"
    id_column: str | None = None

    FILE_FIELDS = ("data_files",)

    def __post_init__(self) -> None:
        missing = [f for f in FIELDS if f not in self.columns]
        if missing:
            raise ValueError(f"problems.hf.columns: no column given for {missing} (keys: {list(FIELDS)})")


def _imported_from_solution(tests: str) -> str | None:
    for node in ast.walk(parse(tests)):
        if isinstance(node, ast.ImportFrom) and node.module == "solution" and node.names[0].name != "*":
            return node.names[0].name
    return None


def unittest_module(tests, tests_format: str) -> tuple[str, str]:
    """``(unittest module, entry point)`` from a tests column value; raises ValueError."""
    if tests_format == "asserts":
        if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
            raise ValueError("expected a non-empty list of assert lines")
        entry = function_name(tests)
        methods = "".join(f"\n    def test_{i}(self):\n        {line.strip()}\n" for i, line in enumerate(tests, 1))
        return f"import unittest\n\nfrom solution import {entry}\n\n\nclass TestAsserts(unittest.TestCase):{methods}", entry
    if not isinstance(tests, str) or not tests.strip():
        raise ValueError("expected the source of a test module")
    entry = _imported_from_solution(tests)
    if entry is None:
        raise ValueError("the tests do not import a name from `solution`")
    return (tests.rstrip("\n") + "\n" + PYTEST_ADAPTER if tests_format == "pytest" else tests), entry


def _rows(cfg: Config):
    """``(where, row)`` for each row of the local files or the hub split."""
    from datasets import load_dataset

    if cfg.data_files:
        files = [cfg.data_files] if isinstance(cfg.data_files, str) else list(cfg.data_files)
        kind = "parquet" if all(f.endswith(".parquet") for f in files) else "json"
        data = load_dataset(kind, data_files=files, split="train")
        label = files[0] if len(files) == 1 else f"{files[0]} (+{len(files) - 1} files)"
        return ((f"{label}:{i + 1}", row) for i, row in enumerate(data))
    hub = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    from iterpref.evaluation.bigcodebench import unreachable

    why = "HF_HUB_OFFLINE is set" if offline else unreachable(f"{hub}/api/datasets/{cfg.dataset}")
    if why:
        raise RuntimeError(f"problems.hf: dataset {cfg.dataset!r} comes from the datasets hub ({hub}), which cannot "
                           f"be reached: {why}. The hf source is online only; offline, set problems.hf.data_files "
                           f"to local .jsonl or .parquet files with the columns {sorted(cfg.columns.values())}")
    data = load_dataset(cfg.dataset, cfg.name, split=cfg.split)
    return ((f"{cfg.dataset}[{cfg.split}] row {i}", row) for i, row in enumerate(data))


def _candidate(cfg: Config, where: str, row: dict, task_id: str) -> Candidate:
    values = {}
    for f in FIELDS:
        col = cfg.columns[f]
        if col not in row:
            raise Drop("schema", f"{where}: column {col!r} ({f}) missing; the row has {sorted(row)}")
        values[f] = row[col]
    for f in ("instruction", "reference"):
        if not isinstance(values[f], str) or not values[f].strip():
            raise Drop("schema", f"{where}: column {cfg.columns[f]!r} ({f}) is not text")
    try:
        tests, entry = unittest_module(values["tests"], cfg.tests_format)
        signature = signature_of(values["reference"], entry) or ""
    except (ValueError, SyntaxError) as e:
        raise Drop("schema", f"{where}: column {cfg.columns['tests']!r} (tests, {cfg.tests_format}) "
                             f"or {cfg.columns['reference']!r}: {e}") from None
    problem = Problem(task_id=task_id, instruction=values["instruction"].strip(), signature=signature,
                      entry_point=entry, reference=values["reference"].rstrip() + "\n", tests=tests,
                      source=f"hf:{cfg.dataset if not cfg.data_files else 'local'}")
    return Candidate(problem, where)


def harvest(cfg: Config, limit: int | None = None) -> Harvest:
    """Candidates from the first ``limit`` rows (all when None)."""
    candidates, dropped = [], []
    for i, (where, row) in enumerate(_rows(cfg)):
        if limit is not None and i >= limit:
            break
        task_id = f"hf/{row.get(cfg.id_column, i) if cfg.id_column else i}"
        try:
            candidates.append(_candidate(cfg, where, row, task_id))
        except Drop as d:
            dropped.append(Dropped(task_id, d.reason, d.detail))
    return Harvest(candidates, dropped, stats={"dataset": cfg.dataset if not cfg.data_files else cfg.data_files})
