"""The offline mutation teacher: operators, determinism and whole trajectories in the sandbox."""

from __future__ import annotations

import ast
import difflib

import pytest

from iterpref.debugging.teachers import DebugSession, MutationTeacher, Teacher
from iterpref.debugging.teachers.operators import OPERATORS, apply_mutations, find_mutations
from iterpref.records import Attempt, Outcome, Problem
from iterpref.sandbox import SandboxConfig, run_unittest

# -----------------------------------------------------------------------------
# Hand-written problems

MERGE = Problem(
    task_id="t/merge",
    instruction="Merge overlapping intervals and return them sorted by start.",
    signature="def merge_intervals(intervals: list[list[int]]) -> list[list[int]]:",
    entry_point="merge_intervals",
    reference='''
def merge_intervals(intervals: list[list[int]]) -> list[list[int]]:
    """Merge overlapping intervals."""
    if not intervals:
        return []
    intervals = sorted(intervals, key=lambda x: x[0])
    merged = [list(intervals[0])]
    for start, end in intervals[1:]:
        if start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged
''',
    tests='''
import unittest
from solution import merge_intervals

class T(unittest.TestCase):
    def test_empty(self):
        self.assertEqual(merge_intervals([]), [])
    def test_basic(self):
        self.assertEqual(merge_intervals([[1, 3], [2, 6], [8, 10], [15, 18]]), [[1, 6], [8, 10], [15, 18]])
    def test_touching(self):
        self.assertEqual(merge_intervals([[1, 4], [4, 5]]), [[1, 5]])
    def test_unsorted_nested(self):
        self.assertEqual(merge_intervals([[5, 6], [1, 10], [2, 3]]), [[1, 10]])
    def test_single(self):
        self.assertEqual(merge_intervals([[0, 0]]), [[0, 0]])
''',
)

WINDOW = Problem(
    task_id="t/window",
    instruction="Return the largest sum of k consecutive numbers; 0 when k is 0 or larger than the list.",
    signature="def max_window_sum(nums: list[int], k: int) -> int:",
    entry_point="max_window_sum",
    reference='''
def max_window_sum(nums: list[int], k: int) -> int:
    if k == 0 or k > len(nums):
        return 0
    window = sum(nums[:k])
    best = window
    for i in range(k, len(nums)):
        window += nums[i] - nums[i - k]
        best = max(best, window)
    return best
''',
    tests='''
import unittest
from solution import max_window_sum

class T(unittest.TestCase):
    def test_basic(self):
        self.assertEqual(max_window_sum([1, 2, 3, 4, 5], 2), 9)
    def test_negative(self):
        self.assertEqual(max_window_sum([-5, -2, -3, -1], 2), -4)
    def test_first_window_best(self):
        self.assertEqual(max_window_sum([9, 8, 1, 1, 1], 2), 17)
    def test_whole(self):
        self.assertEqual(max_window_sum([3, -1, 2], 3), 4)
    def test_edges(self):
        self.assertEqual(max_window_sum([1, 2], 0), 0)
        self.assertEqual(max_window_sum([1, 2], 3), 0)
        self.assertEqual(max_window_sum([7], 1), 7)
''',
)

VOWELS = Problem(
    task_id="t/vowels",
    instruction="Count the vowels in a string, ignoring case; words starting with '#' are skipped.",
    signature="def count_vowels(text: str) -> int:",
    entry_point="count_vowels",
    reference='''
def count_vowels(text: str) -> int:
    count = 0
    for word in text.split():
        if word.startswith("#"):
            continue
        for ch in word.lower():
            if ch in "aeiou":
                count += 1
    return count
''',
    tests='''
import unittest
from solution import count_vowels

class T(unittest.TestCase):
    def test_basic(self):
        self.assertEqual(count_vowels("Hello World"), 3)
    def test_case(self):
        self.assertEqual(count_vowels("AEIOU xyz"), 5)
    def test_skip(self):
        self.assertEqual(count_vowels("#tag apple a#b"), 3)
    def test_empty(self):
        self.assertEqual(count_vowels(""), 0)
''',
)

# tests that pass whatever the code does: no mutation can be detected
BLIND = Problem(
    task_id="t/blind",
    instruction=MERGE.instruction,
    signature=MERGE.signature,
    entry_point="merge_intervals",
    reference=MERGE.reference,
    tests='''
import unittest
from solution import merge_intervals

class T(unittest.TestCase):
    def test_nothing(self):
        self.assertTrue(callable(merge_intervals))
''',
)

PROBLEMS = [MERGE, WINDOW, VOWELS]


def canonical(source: str) -> str:
    return ast.unparse(ast.parse(source))


def changed_lines(a: str, b: str) -> int:
    """Lines only in ``a`` plus lines only in ``b``."""
    return sum(1 for ln in difflib.ndiff(a.splitlines(), b.splitlines()) if ln[:2] in ("- ", "+ "))


def run_trajectory(problem: Problem, session) -> list[Attempt]:
    """The debugging loop: write, test, fix until the tests pass (or nothing is left)."""
    code, note = session.write()
    attempts = [Attempt(0, code, run_unittest(code, problem.tests), note)]
    while not attempts[-1].outcome.passed and len(attempts) <= len(session.mutations):
        code, note = session.fix(attempts)
        attempts.append(Attempt(len(attempts), code, run_unittest(code, problem.tests), note))
    return attempts


# -----------------------------------------------------------------------------
# Operators

SNIPPETS = {
    "off_by_one": "def f(xs, n):\n    return [xs[i] for i in range(n)] + xs[1:n]\n",
    "flip_comparison": "def f(a, b, xs):\n    return a < b and a in xs and not b == a\n",
    "wrong_operator": "def f(a, b):\n    t = a * b + a // b\n    t += a % b\n    return t > 0 or a - b\n",
    "wrong_constant": "def f(x):\n    seen = False\n    return x + 2, seen\n",
    "swap_args": "def f(s, a, b):\n    return s.replace(a, b)\n",
    "drop_branch": ("def f(xs):\n    if not xs:\n        return 0\n    if xs[0] > 0:\n        return 1\n"
                    "    elif xs[0] < 0:\n        return -1\n    else:\n        return 0\n"),
    "wrong_builtin": ("def f(xs, s):\n    xs.sort()\n    return (max(xs), any(xs), sum(xs), sorted(xs), "
                      "s.lower().startswith('a'), xs.pop())\n"),
}


def test_operator_registry_is_covered_by_snippets():
    assert set(SNIPPETS) == set(OPERATORS)


@pytest.mark.parametrize("operator", sorted(OPERATORS))
def test_each_operator_makes_valid_different_programs(operator):
    snippet = SNIPPETS[operator]
    mutations = find_mutations(snippet, [operator])
    assert mutations, f"{operator} found nothing in its snippet"
    outputs = set()
    for m in mutations:
        assert m.operator == operator and m.text and m.undo_text
        code = apply_mutations(snippet, [m])
        ast.parse(code)  # syntactically valid
        assert code != canonical(snippet)
        outputs.add(code)
    assert len(outputs) == len(mutations)  # every variant is a different program


def test_operator_examples():
    def texts(source, op):
        return {m.text for m in find_mutations(source, [op])}

    assert "range stop n -> n - 1" in texts(SNIPPETS["off_by_one"], "off_by_one")
    assert "slice lower 1 -> 0" in texts(SNIPPETS["off_by_one"], "off_by_one")
    assert "a < b -> a <= b" in texts(SNIPPETS["flip_comparison"], "flip_comparison")
    assert "a in xs -> a not in xs" in texts(SNIPPETS["flip_comparison"], "flip_comparison")
    assert "False -> True" in texts(SNIPPETS["wrong_constant"], "wrong_constant")
    assert "arguments s.replace(a, b) -> s.replace(b, a)" in texts(SNIPPETS["swap_args"], "swap_args")
    builtins = texts(SNIPPETS["wrong_builtin"], "wrong_builtin")
    assert {"max(xs) -> min(xs)", "sum(xs) -> len(xs)", "xs.sort() -> xs.sort(reverse=True)",
            "xs.pop() -> xs.pop(0)"} <= builtins
    drops = texts(SNIPPETS["drop_branch"], "drop_branch")
    assert any(t.startswith("dropped edge case `if not xs") for t in drops)
    assert any("elif" in t for t in drops) and any("else" in t for t in drops)


def test_annotations_and_steps_are_left_alone():
    source = "def f(xs: list[int]) -> dict[str, int]:\n    return xs[::-1]\n"
    assert find_mutations(source) == []


def test_all_candidates_of_the_problems_render():
    for problem in PROBLEMS:
        final = canonical(problem.reference)
        mutations = find_mutations(problem.reference)
        assert len(mutations) >= 8
        for m in mutations:
            code = apply_mutations(problem.reference, [m])
            ast.parse(code)
            assert code != final
            assert changed_lines(code, final) <= 8


def test_subset_application_is_pure():
    mutations = find_mutations(MERGE.reference)
    a, b = mutations[0], mutations[-1]
    assert not a.overlaps(b)
    assert apply_mutations(MERGE.reference, [a, b]) == apply_mutations(MERGE.reference, [b, a])
    assert apply_mutations(MERGE.reference, []) == canonical(MERGE.reference)
    assert find_mutations(MERGE.reference) == mutations


def test_overlap_means_nested_nodes():
    by_text = {m.text: m for m in find_mutations(WINDOW.reference)}
    range_start, slice_upper = by_text["range start k -> k - 1"], by_text["slice upper k -> k - 1"]
    assert not range_start.overlaps(slice_upper)  # shared Load()/operator singletons do not count
    outer = by_text["nums[i] - nums[i - k] -> nums[i] + nums[i - k]"]
    assert outer.overlaps(by_text["index i -> i - 1"]) and outer.overlaps(by_text["i - k -> i + k"])


# -----------------------------------------------------------------------------
# The teacher


def test_protocols():
    teacher = MutationTeacher()
    assert isinstance(teacher, Teacher) and teacher.name == "mutation"
    session = teacher.open(VOWELS, seed=0)
    assert isinstance(session, DebugSession)


def test_bad_arguments():
    with pytest.raises(ValueError):
        MutationTeacher(operators=["no_such_operator"])
    with pytest.raises(ValueError):
        MutationTeacher(min_mutations=3, max_mutations=2)


def test_deterministic_for_a_seed():
    first = MutationTeacher().open(MERGE, seed=7)
    second = MutationTeacher().open(MERGE, seed=7)
    assert first.mutations == second.mutations
    assert first.write() == second.write()
    others = {tuple(MutationTeacher().open(MERGE, seed=s).mutations) for s in range(4)}
    assert len(others) > 1


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.task_id)
def test_trajectory_repairs_one_mutation_per_round(problem):
    teacher = MutationTeacher(min_mutations=2, max_mutations=3)
    session = teacher.open(problem, seed=1)
    assert session is not None
    k = len(session.mutations)
    assert 2 <= k <= 3
    assert not any(a.overlaps(b) for i, a in enumerate(session.mutations) for b in session.mutations[i + 1:])

    final = canonical(problem.reference)
    code, note = session.write()
    assert note.startswith(f"injected {k} bug(s)") and " at line " in note
    assert not run_unittest(code, problem.tests).passed  # the mutant really fails
    versions = [code]
    history = [Attempt(0, code, run_unittest(code, problem.tests), note)]
    for r in range(1, k + 1):
        code, note = session.fix(history)
        assert note.startswith("fixed ")
        assert code == apply_mutations(problem.reference, session.mutations[r:])  # one fewer each round
        versions.append(code)
        history.append(Attempt(r, code, run_unittest(code, problem.tests), note))
    assert versions[-1] == final
    assert history[-1].outcome.passed
    for remaining, version in zip(range(k, -1, -1), versions):
        assert changed_lines(version, final) <= 4 * remaining
        if remaining:
            assert version != final
    # asking again after everything is reverted keeps the reference
    assert session.fix(history)[0] == final


def test_the_loop_stops_at_a_passing_version():
    for seed in range(3):
        session = MutationTeacher().open(WINDOW, seed=seed)
        attempts = run_trajectory(WINDOW, session)
        assert not attempts[0].outcome.passed
        assert attempts[-1].outcome.passed
        assert all(not a.outcome.passed for a in attempts[:-1])
        assert len(attempts) <= len(session.mutations) + 1


def test_min_max_mutations_honoured():
    for seed in range(3):
        assert len(MutationTeacher(min_mutations=1, max_mutations=1).open(VOWELS, seed).mutations) == 1
        assert len(MutationTeacher(min_mutations=2, max_mutations=2).open(MERGE, seed).mutations) == 2
    counts = {len(MutationTeacher().open(WINDOW, seed).mutations) for seed in range(6)}
    assert counts <= {1, 2, 3} and len(counts) > 1


def test_undetectable_mutations_give_none():
    assert MutationTeacher(max_tries=8).open(BLIND, seed=0) is None


def test_failing_reference_gives_none():
    broken = Problem(**{**VOWELS.__dict__, "reference": VOWELS.reference.replace('"aeiou"', '"aei"')})
    assert MutationTeacher().open(broken, seed=0) is None


def test_operator_subset():
    session = MutationTeacher(operators=["flip_comparison"]).open(MERGE, seed=3)
    assert session is not None
    assert {m.operator for m in session.mutations} == {"flip_comparison"}


def test_sandbox_config_and_rejected_statuses():
    config, seen = SandboxConfig(timeout_s=3.0), []

    def runner(code, tests, cfg):  # the reference passes, every mutant "fails" with a syntax error
        seen.append(cfg)
        if code == canonical(VOWELS.reference):
            return Outcome(True, "passed", tests_run=1)
        return Outcome(False, "syntax_error", error_type="SyntaxError")

    teacher = MutationTeacher(sandbox=config, max_tries=5, runner=runner)
    assert teacher.open(VOWELS, seed=0) is None
    assert len(seen) == 6 and all(c is config for c in seen)  # reference + max_tries candidates


class _Cycle:
    """Cyclic garbage with a finalizer: a collection that frees it runs Python code."""

    def __init__(self):
        self.me = self

    def __del__(self):
        sum(range(20))


def _parse_in_threads(parse, seconds: float = 10.0, threads: int = 4) -> list[str]:
    """``parse`` of this repository's largest teacher module in ``threads`` threads, while
    another thread keeps making `_Cycle` garbage (so collections inside a parse run finalizers and
    switch threads), for up to ``seconds``; the SystemErrors raised (it stops at the first)."""
    import sys
    import threading
    import time
    from pathlib import Path

    source = (Path(__file__).resolve().parents[1] / "src/iterpref/debugging/teachers/operators.py").read_text()
    errors, stop = [], threading.Event()

    def work():
        while not stop.is_set():
            try:
                parse(source)
            except SystemError as err:
                errors.append(str(err))
                stop.set()

    def churn():
        while not stop.is_set():
            for _ in range(200):
                _Cycle()
            time.sleep(0)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    workers = [threading.Thread(target=work) for _ in range(threads)] + [threading.Thread(target=churn)]
    try:
        for t in workers:
            t.start()
        stop.wait(seconds)
        stop.set()
        for t in workers:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    return errors


def test_parsing_in_the_debug_stages_threads_is_safe():
    """CPython 3.11's AST builder fails under this load when threads parse at once
    (python/cpython#106905); the teachers' `parse` serialises the parses and never does."""
    from iterpref.debugging.teachers.operators import parse

    bare = _parse_in_threads(ast.parse)
    if not bare:
        pytest.skip("this interpreter's ast.parse showed no race in 10 s: nothing to hold parse against")
    assert "AST constructor recursion depth mismatch" in bare[0]
    assert _parse_in_threads(parse, seconds=3.0) == []
