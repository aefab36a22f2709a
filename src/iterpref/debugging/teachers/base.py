"""The teacher interface: who writes the code versions of a debugging trajectory.

A teacher opens one `DebugSession` per (problem, seed). The debugging loop (not the teacher)
runs every version in the sandbox: it asks the session to `write` a first version, tests it,
and while the tests fail it hands the whole history back to `fix` for the next version.

Two teachers implement this protocol: the offline `MutationTeacher` (bugs injected into the
reference solution, repaired one per round) and an LLM teacher (the model writes the code and
gets the sandbox's error feedback when asked to fix it).

A session that cannot write a version raises `TeacherError`; the loop then ends the trajectory
unsolved and records the fault in it (`iterpref.records.TeacherFault`).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from iterpref.cli import UserError
from iterpref.records import Attempt, Problem


class TeacherError(RuntimeError):
    """The teacher could not write a version: its request failed for good, or its reply held
    no code. ``cause`` is a short name for counting (see `iterpref.records.TeacherFault`)."""

    def __init__(self, cause: str, detail: str):
        super().__init__(detail)
        self.cause = cause


class TeacherUnavailable(RuntimeError, UserError):
    """No trajectory of a run got a single version: the teacher is down, not the code wrong."""


@runtime_checkable
class DebugSession(Protocol):
    """One debugging run of one teacher on one problem.

    A session may carry a ``teacher_name`` attribute; the trajectory then records it instead of
    the teacher's ``name`` (a teacher with several sources of code names each trajectory's).
    """

    def write(self) -> tuple[str, str]:
        """The first version: ``(code, note)``; ``note`` says what the teacher did.

        Raises:
            TeacherError: no version could be written.
        """
        ...

    def fix(self, history: list[Attempt]) -> tuple[str, str]:
        """The next version given every attempt so far (the last one failed).

        Each `Attempt` carries the tested code and its `Outcome` (status, error type and the
        trimmed traceback, the feedback a teacher sees). Returns ``(code, note)``.

        Raises:
            TeacherError: no version could be written.
        """
        ...


@runtime_checkable
class Teacher(Protocol):
    """A source of debugging trajectories; ``name`` is recorded in every trajectory."""

    name: str

    def open(self, problem: Problem, seed: int) -> DebugSession | None:
        """Start a session for ``problem``; None when no trajectory can be made for it."""
        ...
