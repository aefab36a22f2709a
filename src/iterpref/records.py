"""The pipeline's records and their JSONL files.

Every stage reads and writes one of these record types, one JSON object a line. Reading
validates each line against its dataclass and raises `RecordError` naming the file, the line
and the field, so a broken input never turns into a confusing failure three stages later.

Character spans (`Span`, half-open ``[start, end)`` offsets into a completion string) are the
pipeline's currency for "where the error is": pairs.jsonl stores them and only the trainer
turns them into token masks.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import os
import types
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from iterpref.cli import UserError

Span = tuple[int, int]


class RecordError(ValueError, UserError):
    """A record that does not match its schema; the message names file, line and field."""


@dataclass
class Problem:
    """A programming task with a unittest test module.

    Attributes:
        task_id: unique id, e.g. ``seed/017``.
        instruction: the natural-language task statement.
        signature: the function (or class) header the solution must implement, e.g.
            ``def merge_intervals(intervals: list[list[int]]) -> list[list[int]]:``.
        entry_point: the name the tests import from the solution module.
        reference: a complete, passing reference solution (imports included).
        tests: source of a unittest module; it imports the candidate with
            ``from solution import <entry_point>``.
        source: where the problem came from (``seed``, a dataset id, a synthesiser).
    """

    task_id: str
    instruction: str
    signature: str
    entry_point: str
    reference: str
    tests: str
    source: str = "seed"


@dataclass
class Outcome:
    """What happened when candidate code ran against its tests in the sandbox.

    Attributes:
        passed: every test ran and passed.
        status: ``passed``, ``failed`` (assertions), ``error`` (exceptions in tests),
            ``syntax_error``, ``import_error`` (the module failed to load), ``timeout``,
            ``memory`` (the memory limit was hit), ``crashed`` (killed, no result).
        tests_run: number of tests unittest ran.
        failures: tests that failed an assertion.
        errors: tests that raised an exception.
        error_type: the exception class of the first problem (``AssertionError``,
            ``IndexError``, ``TimeoutError``...), None when passed.
        traceback: trimmed traceback / error text, the feedback a teacher sees.
        duration_s: wall time of the whole sandboxed run.
    """

    passed: bool
    status: str
    tests_run: int = 0
    failures: int = 0
    errors: int = 0
    error_type: str | None = None
    traceback: str = ""
    duration_s: float = 0.0


@dataclass
class Attempt:
    """One version of the code in a debugging trajectory and its real test outcome.

    Attributes:
        round: 0 for the first version, r for the r-th repair.
        code: the full solution source that was tested.
        outcome: the sandbox outcome of running the problem's tests on ``code``.
        note: what the teacher did (e.g. the mutation applied or reverted).
    """

    round: int
    code: str
    outcome: Outcome
    note: str = ""


@dataclass
class TeacherFault:
    """A version the teacher could not write: its request failed, or its reply held no code.

    Attributes:
        round: the round whose version is missing (0: the first version).
        cause: what went wrong: ``rate_limit``, ``server_error``, ``http_<status>``,
            ``timeout``, ``connection``, ``malformed_reply`` (the request, after the client's
            retries), ``empty_reply`` or ``no_code`` (the reply).
        detail: the error message (backend, server, retries).
    """

    round: int
    cause: str
    detail: str = ""


@dataclass
class Trajectory:
    """The versions v0 (fails) ... vk (passes, when solved) of one debugging run.

    Attributes:
        trajectory_id: unique id, ``<task_id>#<k>``.
        task_id: the problem's id.
        teacher: the teacher's name (``mutation``, ``openai:gpt-4o``...).
        seed: the random seed the run used.
        attempts: every version in order, with its outcome.
        solved: the last attempt passed.
        provenance: where it came from (params hash, model, ...).
        teacher_fault: what ended the run early when the teacher could not write the next
            version (the trajectory is then unsolved; ``attempts`` may be empty); None when
            the teacher wrote every version.
    """

    trajectory_id: str
    task_id: str
    teacher: str
    seed: int
    attempts: list[Attempt]
    solved: bool
    provenance: dict[str, Any] = field(default_factory=dict)
    teacher_fault: TeacherFault | None = None


@dataclass
class Pair:
    """A preference pair: the final passing version against an earlier failing one.

    ``chosen`` and ``rejected`` are the assistant completions exactly as trained (code inside a
    python fence); spans are half-open character offsets into them.

    Attributes:
        pair_id: unique id.
        task_id: the problem's id.
        prompt: the user message (instruction plus signature), rendered by `iterpref.prompts`.
        chosen: completion holding the final passing code.
        rejected: completion holding the earlier failing code.
        rejected_spans: spans of the rejected-only lines (D-), newline included.
        chosen_spans: spans of the chosen-only lines (D+), for the symmetric ablation.
        chosen_round: the round of the chosen version.
        rejected_round: the round of the rejected version.
        rejected_error: the error type the rejected version raised.
        provenance: trajectory id, teacher, selection rule, params hash.
    """

    pair_id: str
    task_id: str
    prompt: str
    chosen: str
    rejected: str
    rejected_spans: list[Span]
    chosen_spans: list[Span]
    chosen_round: int
    rejected_round: int
    rejected_error: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


T = TypeVar("T")


def _check(value: Any, tp: Any, where: str) -> Any:
    """Validate ``value`` against the annotation ``tp``; build nested dataclasses."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where)
    if origin in (types.UnionType, typing.Union):
        errors = []
        # null last, so the error reported is the real type's (`expected str`, not `expected null`)
        for arm in sorted(typing.get_args(tp), key=lambda a: a is type(None)):
            try:
                return _check(value, arm, where)
            except RecordError as e:
                errors.append(str(e))
        raise RecordError(errors[0])
    if tp is type(None):
        if value is not None:
            raise RecordError(f"{where}: expected null, got {type(value).__name__}")
        return None
    if tp is Any:
        return value
    if origin is list:
        if not isinstance(value, list):
            raise RecordError(f"{where}: expected a list, got {type(value).__name__}")
        (item,) = typing.get_args(tp)
        return [_check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise RecordError(f"{where}: expected a list of {len(args)} items, got {value!r}")
        return tuple(_check(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where}: expected an object, got {type(value).__name__}")
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float) and isinstance(value, bool):
        raise RecordError(f"{where}: expected {tp.__name__}, got bool")
    if not isinstance(value, tp):
        raise RecordError(f"{where}: expected {tp.__name__}, got {type(value).__name__}")
    return value


def _build(cls: type[T], obj: Any, where: str) -> T:
    if not isinstance(obj, dict):
        raise RecordError(f"{where}: expected an object, got {type(obj).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(obj) - names
    if unknown:
        raise RecordError(f"{where}: unknown field(s) {sorted(unknown)} for {cls.__name__}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        path = f"{where}.{f.name}" if where else f.name
        if f.name not in obj:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise RecordError(f"{path}: missing required field")
            continue
        kwargs[f.name] = _check(obj[f.name], hints[f.name], path)
    return cls(**kwargs)


def from_dict(cls: type[T], obj: Any, where: str = "") -> T:
    """Build a record of type ``cls`` from a parsed JSON object, validating every field."""
    return _build(cls, obj, where)


def config_hash(*parts) -> str:
    """A short hash of JSON-able config parts (for resume logs and provenance)."""
    blob = json.dumps([dataclasses.asdict(p) if hasattr(p, "__dataclass_fields__") else p for p in parts],
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def to_dict(record: Any) -> dict[str, Any]:
    """The JSON-ready dict of a record (tuples become lists); a dict is its own."""
    return record if isinstance(record, dict) else dataclasses.asdict(record)


def json_lines(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, parsed JSON)`` from a JSON-lines file (gzip when the name ends in
    .gz); blank lines are skipped.

    Raises:
        RecordError: ``<file>:<line>: invalid JSON ...`` for the first bad line.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise RecordError(f"{path}:{lineno}: invalid JSON: {e.msg} (column {e.colno})") from None


def iter_jsonl(path: str | os.PathLike, cls: type[T]) -> Iterator[T]:
    """Yield validated records of type ``cls`` from a JSONL file; blank lines are skipped.

    Raises:
        RecordError: ``<file>:<line>: <field>: <problem>`` for the first bad line.
    """
    for lineno, obj in json_lines(path):
        try:
            yield _build(cls, obj, "")
        except RecordError as e:
            raise RecordError(f"{Path(path)}:{lineno}: {cls.__name__}.{e}") from None


def read_jsonl(path: str | os.PathLike, cls: type[T]) -> list[T]:
    """All records of a JSONL file, validated (see `iter_jsonl`)."""
    return list(iter_jsonl(path, cls))


def write_jsonl(path: str | os.PathLike, records: Iterable[Any]) -> int:
    """Write records atomically (temp file + rename); returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            for r in records:
                fh.write(json.dumps(to_dict(r), ensure_ascii=False) + "\n")
                n += 1
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # the old file stays as it was, and no half-written temp file
        raise
    return n


def append_jsonl(path: str | os.PathLike, record: Any) -> None:
    """Append one record and flush, so long runs keep what they computed if interrupted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(to_dict(record), ensure_ascii=False) + "\n")
        fh.flush()
