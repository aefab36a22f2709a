"""The offline mutation teacher: simulated iterative debugging without an LLM.

From a problem's reference solution the teacher injects 1-3 realistic bugs on the AST (an
off-by-one, a flipped comparison, a dropped edge case...), keeps only bugs that really make the
tests fail in the sandbox, and then "debugs" the mutant by reverting one bug per round until
the reference is back. The debugging loop runs the tests after every round, exactly as it does
for an LLM teacher.

The bugs come from `iterpref.debugging.teachers.operators` (the AST operators and how a
mutation is named and applied).
"""

from __future__ import annotations

import difflib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from iterpref.config.fields import spec
from iterpref.debugging.teachers.operators import OPERATORS, Mutation, apply_mutations, find_mutations, parse
from iterpref.records import Attempt, Outcome, Problem
from iterpref.sandbox import SandboxConfig, run_unittest


@dataclass
class MutationTeacherConfig:
    """A ``teacher`` section with ``kind: mutation`` (`MutationTeacher`'s arguments).

    Parameters:
        kind (`str`): ``mutation``.
        materialize (`None`): no model to build (an LLM teacher's key, null here).
        min_mutations (`int`): fewest bugs injected into a reference solution.
        max_mutations (`int`): most bugs injected.
        max_tries (`int`): mutants tried per trajectory before giving up on a problem.
        operators (`list[str]` or `None`): the mutation operators to draw from (None: all of
            `OPERATORS`).
    """

    kind: Literal["mutation"]
    materialize: None = None
    min_mutations: int = spec(1, ge=1)
    max_mutations: int = spec(3, ge=1)
    max_tries: int = spec(30, ge=1)
    operators: list[str] | None = None

    def __post_init__(self) -> None:
        MutationTeacher(min_mutations=self.min_mutations, max_mutations=self.max_mutations, operators=self.operators)


def changed_line(code: str, other: str) -> int:
    """The first 1-based line of ``code`` that differs from ``other`` (1 when none do)."""
    matcher = difflib.SequenceMatcher(None, code.splitlines(), other.splitlines(), autojunk=False)
    for tag, i1, _, _, _ in matcher.get_opcodes():
        if tag != "equal":
            return min(i1 + 1, max(len(code.splitlines()), 1))
    return 1


# -----------------------------------------------------------------------------
# The session and the teacher.


class MutationSession:
    """Replays the repair of a mutant: each `fix` reverts one more mutation.

    ``mutations`` are in repair order; after r attempts the version holds ``mutations[r:]``.
    """

    def __init__(self, reference: str, mutations: Sequence[Mutation]):
        self.reference = reference
        self.mutations = list(mutations)

    def version(self, applied: Sequence[Mutation]) -> str:
        """The reference with ``applied`` mutations, rendered like every other version."""
        return apply_mutations(self.reference, applied)

    def _line(self, mutation: Mutation, applied: list[Mutation]) -> int:
        """The line of ``mutation`` in the version holding ``applied``."""
        rest = [m for m in applied if m != mutation]
        return changed_line(self.version(applied), self.version(rest))

    def write(self) -> tuple[str, str]:
        """The full mutant and a note listing the injected bugs."""
        bugs = "; ".join(f"{m.operator}: {m.text} at line {self._line(m, self.mutations)}"
                         for m in self.mutations)
        return self.version(self.mutations), f"injected {len(self.mutations)} bug(s): {bugs}"

    def fix(self, history: list[Attempt]) -> tuple[str, str]:
        """Revert the next mutation; ``len(history)`` attempts so far decide which."""
        r = max(len(history), 1)
        remaining = self.mutations[r:]
        if r > len(self.mutations):
            return self.version([]), "nothing left to revert"
        previous = self.mutations[r - 1:]
        reverted = previous[0]
        note = f"fixed {reverted.operator}: {reverted.undo_text} at line {self._line(reverted, previous)}"
        if history and history[-1].outcome.error_type:
            note += f" (tests failed with {history[-1].outcome.error_type})"
        return self.version(remaining), note


Runner = Callable[..., Outcome]  # (code, tests, config) -> Outcome, like sandbox.run_unittest


class MutationTeacher:
    """Offline teacher: injects bugs that the tests catch, then repairs them one per round.

    Args:
        sandbox: the sandbox config for the checks ``open`` runs (None: the sandbox default).
        min_mutations, max_mutations: how many bugs a session injects (each one alone must fail
            the tests; the count is drawn uniformly per session).
        max_tries: the most candidate bugs tested per ``open``.
        operators: operator names to use (keys of `OPERATORS`); None uses all.
        reject_statuses: failures that do not count as a usable bug (too broken).
        runner: ``(code, tests, config) -> Outcome``; defaults to ``iterpref.sandbox.run_unittest``.
    """

    name = "mutation"

    def __init__(self, sandbox: SandboxConfig | None = None, min_mutations: int = 1, max_mutations: int = 3,
                 max_tries: int = 30, operators: Sequence[str] | None = None, *,
                 reject_statuses: Sequence[str] = ("syntax_error", "import_error", "crashed"),
                 runner: Runner | None = None):
        if not 1 <= min_mutations <= max_mutations:
            raise ValueError(f"need 1 <= min_mutations <= max_mutations, got {min_mutations}, {max_mutations}")
        unknown = set(operators or ()) - set(OPERATORS)
        if unknown:
            raise ValueError(f"unknown mutation operator(s) {sorted(unknown)}; known: {list(OPERATORS)}")
        self.sandbox = sandbox
        self.min_mutations, self.max_mutations = min_mutations, max_mutations
        self.max_tries = max_tries
        self.operators = list(operators) if operators else list(OPERATORS)
        self.reject_statuses = set(reject_statuses)
        self.runner = runner or run_unittest
        self._reference_ok: dict[tuple[str, str], bool] = {}

    def _run(self, code: str, problem: Problem) -> Outcome:
        return self.runner(code, problem.tests, self.sandbox)

    def _fails(self, problem: Problem, mutations: Sequence[Mutation]) -> bool:
        """The tests fail, in a usable way, on the reference with ``mutations`` applied."""
        try:
            code = apply_mutations(problem.reference, mutations)
            parse(code)
        except (SyntaxError, ValueError, RecursionError):  # a version ast.unparse cannot render
            return False
        outcome = self._run(code, problem)
        return not outcome.passed and outcome.status not in self.reject_statuses

    def _reference_passes(self, problem: Problem) -> bool:
        """The final version (the rendered reference) passes; cached per (reference, tests)."""
        key = (problem.reference, problem.tests)
        if key not in self._reference_ok:
            try:
                self._reference_ok[key] = self._run(apply_mutations(problem.reference, []), problem).passed
            except (SyntaxError, ValueError, RecursionError):
                self._reference_ok[key] = False
        return self._reference_ok[key]

    def open(self, problem: Problem, seed: int) -> MutationSession | None:
        """A session with k bugs the tests catch, k drawn in [min, max]; None if none found.

        Candidates are drawn with ``random.Random(seed)``: one at a time (an operator uniformly,
        then one of its sites), never overlapping a chosen one and preferably on a new line, each
        tested alone in the sandbox (a mutant that passes is an equivalent mutant and is
        skipped). The full mutant is tested last. The reference itself must pass.
        """
        try:
            candidates = find_mutations(problem.reference, self.operators)
        except SyntaxError:
            return None
        if not candidates or not self._reference_passes(problem):  # else every mutant "fails"
            return None

        rng = random.Random(seed)
        k = rng.randint(self.min_mutations, self.max_mutations)
        chosen: list[Mutation] = []
        untested = list(candidates)
        for _ in range(self.max_tries):
            if len(chosen) == k:
                break
            pool = [m for m in untested if not any(m.overlaps(c) for c in chosen)]
            if not pool:
                break
            used_lines = set().union(*(c.lines for c in chosen))
            pool = [m for m in pool if not m.lines & used_lines] or pool
            # operator first, then site: bug kinds stay varied however many int literals there are
            operator = rng.choice([op for op in self.operators if any(m.operator == op for m in pool)])
            candidate = rng.choice([m for m in pool if m.operator == operator])
            untested.remove(candidate)
            if self._fails(problem, [candidate]):
                chosen.append(candidate)

        # bugs can mask each other: drop the latest until the full mutant fails
        while len(chosen) >= self.min_mutations:
            if len(chosen) == 1 or self._fails(problem, chosen):
                break
            chosen.pop()
        if len(chosen) < self.min_mutations:
            return None
        rng.shuffle(chosen)  # repair order
        return MutationSession(problem.reference, chosen)
