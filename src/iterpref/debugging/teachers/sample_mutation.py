"""Mutations of a teacher's own passing samples: the writer's code on the chosen side, bugs
whose lines are known exactly on the rejected side.

A `SampleMutationTeacher` wraps a teacher that writes code (an LLM; in the ``qwen_coder`` preset
the student itself) and the offline `MutationTeacher`. For each problem it draws up to
``len(seeds(task_id))`` independent first versions from the writer (a fresh session per seed),
runs each in the sandbox and keeps the first that passes. That version becomes the reference
the mutation teacher injects bugs into and then repairs one per round, so a trajectory ends in
the writer's own passing code (as ``ast.unparse`` renders it: comments dropped, formatting
normalised) and its failing versions differ from it exactly on the mutated lines.

The passing sample is drawn once per problem and shared by all of that problem's trajectories
(each trajectory's seed picks its own bugs); a trajectory of a problem whose sample is being
drawn waits for it. When no sample passes, ``fallback_to_reference`` mutates the problem's own
reference instead; otherwise that problem gets no trajectory. Each trajectory's teacher name
says which code it mutated: ``mutation:sample:<writer>`` or ``mutation:reference``.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace

from iterpref.debugging.teachers.base import Teacher, TeacherError
from iterpref.debugging.teachers.mutation import MutationSession, MutationTeacher
from iterpref.records import Attempt, Problem
from iterpref.sandbox import SandboxConfig, run_unittest


@dataclass
class PassingSample:
    """The writer's first passing version of a problem: its code and its 0-based sample index."""

    code: str
    index: int


class SourcedSession:
    """A mutation session that names the code it mutated (``teacher_name``, in its first note)."""

    def __init__(self, session: MutationSession, teacher_name: str, origin: str):
        self.session, self.teacher_name, self.origin = session, teacher_name, origin

    def write(self) -> tuple[str, str]:
        code, note = self.session.write()
        return code, f"{self.origin}; {note}"

    def fix(self, history: list[Attempt]) -> tuple[str, str]:
        return self.session.fix(history)


class SampleMutationTeacher:
    """Bugs injected into the writer's passing sample of each problem, repaired one per round.

    Args:
        writer: the teacher whose samples are mutated (its sessions' `write` is all it is asked).
        mutation: the teacher that injects and repairs the bugs.
        seeds: ``task_id -> sample seeds``, one writer session per seed, in order.
        sandbox: the sandbox config the samples are tested under.
        fallback_to_reference: mutate the problem's reference when no sample passes.
    """

    def __init__(self, writer: Teacher, mutation: MutationTeacher, seeds: Callable[[str], list[int]],
                 sandbox: SandboxConfig | None, fallback_to_reference: bool = False):
        self.writer, self.mutation, self.seeds, self.sandbox = writer, mutation, seeds, sandbox
        self.fallback_to_reference = fallback_to_reference
        self.name = f"mutation:sample:{writer.name}"
        self._samples: dict[str, PassingSample | None] = {}
        self._task_locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._first_pass: Counter[int] = Counter()

    def passing_sample(self, problem: Problem) -> PassingSample | None:
        """The writer's first passing sample of ``problem`` (drawn once), None when none passes."""
        with self._lock:
            task_lock = self._task_locks.setdefault(problem.task_id, threading.Lock())
        with task_lock:
            if problem.task_id not in self._samples:
                self._samples[problem.task_id] = self._draw(problem)
            return self._samples[problem.task_id]

    def _draw(self, problem: Problem) -> PassingSample | None:
        for index, seed in enumerate(self.seeds(problem.task_id)):
            session = self.writer.open(problem, seed)
            if session is None:
                continue
            self._count("samples")
            try:
                code, _ = session.write()
            except TeacherError as err:
                self._count(f"sample_fault:{err.cause}")
                continue
            if run_unittest(code, problem.tests, self.sandbox).passed:
                self._count("problems_with_passing_sample")
                with self._lock:
                    self._first_pass[index + 1] += 1
                return PassingSample(code, index)
        self._count("problems_without_passing_sample")
        return None

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1

    def open(self, problem: Problem, seed: int) -> SourcedSession | None:
        """A mutation session over the passing sample (or the reference, see the module doc)."""
        sample = self.passing_sample(problem)
        if sample is not None:
            name, origin, reference = self.name, f"mutated sample {sample.index + 1} of {self.writer.name}", sample.code
        elif self.fallback_to_reference:
            name, origin = "mutation:reference", "mutated the problem's reference (no sample passed)"
            reference = problem.reference
        else:
            return None
        session = self.mutation.open(replace(problem, reference=reference), seed)
        if session is None:
            self._count(f"no_catchable_bug:{name}")
            return None
        return SourcedSession(session, name, origin)

    def stats(self) -> dict:
        """Samples drawn, problems with and without a passing sample, and the sample count at
        which each problem first passed (``first_pass_at``)."""
        with self._lock:
            return {**dict(sorted(self._counts.items())),
                    "first_pass_at": {str(k): v for k, v in sorted(self._first_pass.items())}}
