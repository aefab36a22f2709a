"""Is a problem worth debugging against? Its schema, its tests, and their verdicts in the sandbox.

A problem is kept only when
1. its fields are well-formed: the entry point is a name the signature and the reference define
   and the tests import (``from solution import <entry_point>``), and reference and tests parse
   (``schema``);
2. its tests use no clock, randomness or network (``nondeterministic``, ``network``: read from
   the test module's imports and calls);
3. its reference passes its tests in the sandbox, ``reference_runs`` times in fresh processes (a
   test that fails once is ``flaky``: the clock or the process's random seed leaked in; one
   that runs out of time is ``timeout``; one that needs the network the sandbox does not have is
   ``network``; any other failure is ``reference_fails``);
4. a trivial stub (every call returns None) fails them (``stub_passes``: tests that cannot fail
   are useless for debugging).
"""

from __future__ import annotations

import ast
import keyword
from dataclasses import dataclass

from iterpref.problems.base import Drop, parse
from iterpref.records import Outcome, Problem
from iterpref.sandbox import SandboxConfig, run_unittest

NONDETERMINISTIC_MODULES = {"random", "secrets", "uuid"}
NETWORK_MODULES = {"socket", "ssl", "urllib", "http", "requests", "httpx", "aiohttp", "ftplib", "smtplib"}
CLOCK_CALLS = {"now", "today", "utcnow", "time", "time_ns", "perf_counter", "monotonic"}
NETWORK_ERRORS = {"ConnectionError", "ConnectionRefusedError", "gaierror", "URLError", "socket.gaierror",
                  "ConnectionResetError", "HTTPError"}


@dataclass
class ValidateConfig:
    """How problems are validated in the sandbox (its limits are the ``sandbox`` section's, the
    same the debug stage tests candidates under).

    Parameters:
        reference_runs (`int`):
            Times the reference runs its tests, each in a fresh sandboxed process; it must pass
            every time (tests that depend on the clock or on randomness show up here).
        workers (`int`):
            Problems validated at once (each runs its sandboxed checks one after another).
    """

    reference_runs: int = 2
    workers: int = 2

    def __post_init__(self) -> None:
        if self.reference_runs < 1 or self.workers < 1:
            raise ValueError(f"problems.validate: reference_runs and workers must be >= 1, got {self}")


def stub(problem: Problem) -> str:
    """A trivial solution that defines the entry point and returns None from every call."""
    if _defines(problem.reference, problem.entry_point, ast.ClassDef):
        return (f"class {problem.entry_point}:\n    def __init__(self, *args, **kwargs):\n        pass\n\n"
                f"    def __getattr__(self, name):\n        return lambda *args, **kwargs: None\n")
    return f"def {problem.entry_point}(*args, **kwargs):\n    return None\n"


def _defines(source: str, name: str, kinds=(ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) -> bool:
    return any(isinstance(n, kinds) and n.name == name for n in parse(source).body)


def check_schema(problem: Problem, where: str) -> None:
    """Raise `Drop` (``schema``) naming ``where`` and the field when a field is malformed."""
    def bad(field: str, what: str) -> Drop:
        return Drop("schema", f"{where}: {field}: {what}")

    for name in ("task_id", "instruction", "signature", "entry_point", "reference", "tests"):
        if not getattr(problem, name).strip():
            raise bad(name, "empty")
    ep = problem.entry_point
    if not ep.isidentifier() or keyword.iskeyword(ep):
        raise bad("entry_point", f"{ep!r} is not a Python name")
    for name in ("reference", "tests"):
        try:
            parse(getattr(problem, name))
        except (SyntaxError, ValueError) as e:
            raise bad(name, f"does not parse: {e}") from None
    if not _defines(problem.reference, ep):
        raise bad("reference", f"does not define {ep!r} at top level")
    if ep not in problem.signature:
        raise bad("signature", f"does not name the entry point {ep!r}")
    imports = [n for n in ast.walk(parse(problem.tests))
               if isinstance(n, ast.ImportFrom) and n.module == "solution"]
    if not any(ep in {a.name for a in n.names} for n in imports):
        raise bad("tests", f"must import the entry point (`from solution import {ep}`)")


def check_determinism(tests: str) -> None:
    """Raise `Drop` when the test module reads the clock, randomness or the network."""
    for node in ast.walk(parse(tests)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for name in names:
                root = name.split(".")[0]
                if root in NONDETERMINISTIC_MODULES:
                    raise Drop("nondeterministic", f"the tests import {name}")
                if root in NETWORK_MODULES:
                    raise Drop("network", f"the tests import {name}")
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CLOCK_CALLS
                and isinstance(node.func.value, ast.Name) and node.func.value.id in {"time", "datetime", "date"}):
            raise Drop("nondeterministic", f"the tests read the clock ({node.func.value.id}.{node.func.attr}())")


def _reference_drop(outcome: Outcome, run: int) -> Drop:
    detail = f"{outcome.status} ({outcome.error_type}): {outcome.traceback[-400:]}"
    if outcome.status == "timeout":
        return Drop("timeout", detail)
    if outcome.error_type in NETWORK_ERRORS:
        return Drop("network", detail)
    if run > 0:
        return Drop("flaky", f"passed, then failed on run {run + 1}: {detail}")
    return Drop("reference_fails", detail)


def validate(problem: Problem, cfg: ValidateConfig, sandbox: SandboxConfig, where: str) -> int:
    """Run every check (see the module docstring); returns the number of tests the reference
    passed, or raises `Drop` with the first reason the problem fails."""
    check_schema(problem, where)
    check_determinism(problem.tests)
    tests_run = 0
    for run in range(cfg.reference_runs):
        outcome = run_unittest(problem.reference, problem.tests, sandbox)
        if not outcome.passed:
            raise _reference_drop(outcome, run)
        tests_run = outcome.tests_run
        if run == 0:
            stubbed = run_unittest(stub(problem), problem.tests, sandbox)
            if stubbed.passed:
                raise Drop("stub_passes", f"a stub returning None passes all {stubbed.tests_run} tests")
    return tests_run
