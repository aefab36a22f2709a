"""What every benchmark provides: its tasks, its official sample format and its official verdicts.

One module per benchmark (evalplus style), each a `Benchmark` subclass; `registry` maps the
names the config uses to them. A benchmark never imports the registry, so the two cannot import
each other in a circle.

The official evaluators execute model code, so each one runs inside the sandbox: its data file
and the samples go into a work folder bound read-write, the evaluator runs there as its own CLI
(or its own functions) and only its results file comes back (`run_official`).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from iterpref import prompts
from iterpref.cli import UserError
from iterpref.records import RecordError, json_lines
from iterpref.sandbox import SandboxConfig, run_python


@dataclass
class Task:
    """One benchmark task, in the shape the shared prompt format needs.

    Attributes:
        task_id: the benchmark's own id (``HumanEval/0``).
        instruction: the statement shown before the code header.
        code_header: the code the model completes (signature and docstring); empty when the
            benchmark gives none (MBPP: the statement and an example assert say it all).
        entry_point: the function the tests call.
        record: the benchmark's original record, handed back to its official evaluator.
        prompt: the benchmark's own prompt text, as its reference harness shows it (HumanEval:
            signature and docstring; MBPP: a docstring with the statement and one assert);
            empty means the code header, else the instruction.
    """

    task_id: str
    instruction: str
    code_header: str
    entry_point: str
    record: dict[str, Any] = field(default_factory=dict)
    prompt: str = ""

    def conversation(self, style: str = "iterpref") -> list[dict[str, str]]:
        """The chat the model answers.

        ``iterpref``: the same user-turn format as the training pairs (what a trained student
        knows). ``evalplus``: EvalPlus's instruct prompt with the assistant turn pre-filled (what
        model cards report for instruct models); the reply continues that last turn.
        """
        if style == "evalplus":
            return prompts.evalplus_conversation(self.prompt or self.code_header or self.instruction)
        if style != "iterpref":
            raise ValueError(f"eval.prompt: unknown style {style!r}; expected one of {prompts.STYLES}")
        return [{"role": "user", "content": prompts.user_message(self.instruction, self.code_header)}]


@dataclass
class Verdict:
    """The official evaluator's verdict on one task's sample.

    Attributes:
        task_id: the task.
        passed: the evaluator's pass/fail, nothing of ours in between.
        status: ``pass``, ``fail`` (a test failed or the code raised), ``timeout``, or
            ``unconfirmed`` (the evaluator passed it, the cross-process judge did not: a fail).
        error_type: for a failure, the exception class the code died of (``AssertionError``
            for a wrong answer, ``NameError``, ``KeyError``, ...), or ``Timeout``; None when
            passed or when it cannot be told.
        detail: the evaluator's own message for this task, trimmed.
    """

    task_id: str
    passed: bool
    status: str
    error_type: str | None = None
    detail: str = ""


class SetupError(RuntimeError, UserError):
    """The evaluation environment is at fault, not the model: missing or bad data, an
    evaluator that cannot run, reference solutions that fail."""


class Benchmark(ABC):
    """A benchmark behind its official evaluator.

    Subclasses set ``name`` (the config's name), ``title`` (the report's column),
    ``packages`` (the evaluator's distributions, whose versions go into every result) and
    ``override_env`` (the variable the official loader reads a local data file from, if any)
    and ``judge_confirmed`` (whether `score` confirms each official pass with the cross-process
    judge, `confirm`; where not, a candidate can forge its pass as with the official tool).

    Args:
        data: a local data file in the benchmark's official format; None means the official
            source (a shipped file, or a download by the official loader).
        setting: the config key that holds ``data``, named in errors.
    """

    name: str = ""
    title: str = ""
    packages: tuple[str, ...] = ()
    override_env: str | None = None
    judge_confirmed: bool = False

    def __init__(self, data: str | os.PathLike | None = None, setting: str = "eval.data"):
        self.setting = setting
        self.data = Path(data) if data else None
        if self.data is not None and not self.data.is_file():
            raise SetupError(f"{self.name}: data file {self.data} does not exist (set by {setting}); "
                            f"point {setting} at a file in the benchmark's format, or set it to null "
                            f"for the official source")

    # ---------------------------------------------------------------- what each benchmark says

    @abstractmethod
    def data_file(self) -> Path:
        """The file the tasks come from (its sha256 goes into every result and keys the sanity cache)."""

    @abstractmethod
    def load(self, limit: int | None = None) -> list[Task]:
        """The tasks in file order (the first ``limit`` when given)."""

    @abstractmethod
    def sample(self, task: Task, code: str) -> dict:
        """One row of the official samples file for ``code`` (what the official CLI re-scores)."""

    @abstractmethod
    def score(self, tasks: list[Task], codes: list[str], sandbox: SandboxConfig,
              timeout_s: float = 3.0, workers: int = 2) -> list[Verdict]:
        """The official evaluator's verdicts on one sample per task, in task order."""

    def reference(self, task: Task) -> str | None:
        """The data's own reference solution as an answer the model could give; None when the
        data carries none (then the benchmark has no sanity gate)."""
        return None


    # ---------------------------------------------------------------- shared

    def data_sha256(self) -> str:
        """sha256 of `data_file`."""
        return file_sha256(self.data_file())

    def versions(self) -> dict[str, str]:
        """Installed versions of the evaluator's packages."""
        out = {}
        for dist in self.packages:
            try:
                out[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                out[dist] = "not installed"
        return out

    def check_count(self, tasks: list[Task], codes: list[str]) -> None:
        if len(codes) != len(tasks):
            raise ValueError(f"{self.name}: {len(codes)} samples for {len(tasks)} tasks; need one per task")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def numbered_jsonl(path: str | os.PathLike) -> list[tuple[int, dict]]:
    """``(line number, record)`` of each JSON object in a JSON-lines file (gzip when the name
    ends in .gz); a bad line or an unreadable file is a SetupError naming the file and line."""
    rows = []
    try:
        for n, row in json_lines(path):
            if not isinstance(row, dict):
                raise SetupError(f"{path}:{n}: a record must be a JSON object")
            rows.append((n, row))
    except RecordError as e:
        raise SetupError(str(e)) from None
    except (OSError, EOFError, UnicodeDecodeError) as e:
        raise SetupError(f"{path}: cannot be read ({e})") from None
    return rows


def json_objects(path: str | os.PathLike) -> list[dict]:
    """The JSON objects of a JSON-lines file (see `numbered_jsonl`)."""
    return [row for _, row in numbered_jsonl(path)]


def defines(code: str, name: str) -> bool:
    """Whether ``code`` has a ``def name(`` line: the model wrote the whole function, not a body."""
    return re.search(rf"^\s*def\s+{re.escape(name)}\s*\(", code, re.MULTILINE) is not None


def run_official(args: list[str], files: dict[str, str | os.PathLike], results: str, sandbox: SandboxConfig,
                 budget_s: float, env: dict[str, str] | None = None, memory_mb: int | None = None,
                 parse: Callable[[Path], Any] = json_objects) -> Any:
    """Run an official evaluator (``python <args>``) inside the sandbox and parse its results file.

    Args:
        args: the interpreter arguments (``["-m", "evalplus.evaluate", ...]``).
        files: ``{name in the work folder: text, or a local path to copy}``.
        results: the results file the evaluator writes, relative to the work folder.
        sandbox: the configured limits; the wall and CPU budget of this one run is ``budget_s``
            (one sandbox holds the evaluator and all of its per-task processes).
        env: variables for the evaluator (its data override, its cache folder under the work folder).
        memory_mb: address-space limit per process, when the evaluator needs more than the
            sandbox's default (BigCodeBench's tasks import pandas, torch, ...).
        parse: reads the results file.
    """
    budget = sandbox.with_cpu_s(int(budget_s), timeout_s=budget_s, memory_mb=max(sandbox.memory_mb, memory_mb or 0))
    with tempfile.TemporaryDirectory(prefix="iterpref-eval-") as tmp:
        work = Path(tmp)
        for name, content in files.items():
            if isinstance(content, Path):
                shutil.copyfile(content, work / name)
            else:
                (work / name).write_text(content, encoding="utf-8")
        env = {k: v.replace("{work}", str(work)) for k, v in (env or {}).items()}
        result = run_python(args, config=budget, workdir=work, env=env)
        out = work / results
        if not out.exists():
            raise SetupError(
                f"the official evaluator `{' '.join(args)}` wrote no {results} (exit {result.returncode}, "
                f"timed out: {result.timed_out}); its output ends:\n{(result.stdout + result.stderr)[-3000:]}")
        return parse(out)
