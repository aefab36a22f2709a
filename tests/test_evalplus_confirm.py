"""HumanEval+ and MBPP+ verdicts a wrong solution cannot forge, and honest code on which the
cross-process judge and evalplus agree.

Attacks go through the real scoring path (`EvalPlus.score`: evalplus 0.3.1's evaluator in the
sandbox, every pass it reports confirmed by the judge), each a copy of a fixture record under an
id of its own in a data file of the test's own, so one `score` call runs them all.
``unconfirmed`` means evalplus was fooled and the judge caught it.

Honest code: the fixture tasks' canonical solutions, real model samples (SmolLM2-135M-Instruct
and its DPO / Target-DPO students on HumanEval/0, 2, 3, 4 and 12, from the committed run's
``reports/eval/*/humaneval.samples.jsonl``, copied to
``tests/fixtures/evalplus/HumanEval-model-samples.jsonl``) and hand-written right and wrong
variants. Each is scored by evalplus and, separately, run through the judge whatever evalplus
said, and the two verdicts must be equal.
"""

from __future__ import annotations

import json
import multiprocessing
import textwrap
from pathlib import Path

import pytest

from iterpref.evaluation import evalplus_check
from iterpref.evaluation.benchmark import SetupError
from iterpref.evaluation.confirm import NOT_CONFIRMED, UNCONFIRMED, judge_config, special_oracle_file
from iterpref.evaluation.evalplus import EvalPlus, time_limit_s
from iterpref.sandbox import SandboxConfig, bwrap_usable, run_unittest_many

FIXTURES = Path(__file__).parent / "fixtures" / "evalplus"
FILES = {"humaneval": FIXTURES / "HumanEvalPlus-mini.jsonl", "mbpp": FIXTURES / "MbppPlus-mini.jsonl"}
MODEL_SAMPLES = FIXTURES / "HumanEval-model-samples.jsonl"
SANDBOX = SandboxConfig(workers=2)
TIMEOUT_S = 3.0
BWRAP_OK, BWRAP_WHY = bwrap_usable()
# MBPP+ task numbers whose inputs evalplus turns from lists into tuples (as Mbpp/2's): a copy of
# such a task needs one of them, a copy of any other task a number evalplus leaves alone.
MBPP_TUPLE_NUMBERS = [2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616, 630]
MBPP_PLAIN_NUMBERS = list(range(9001, 9100))


def copies(dataset: str, cases: dict[str, tuple[str, str]], path: Path) -> tuple[EvalPlus, list, list[str], list[str]]:
    """An `EvalPlus` over a data file holding, for each case ``name: (task id, code)``, a copy of
    that fixture task under an id of its own; returns it, its tasks, the codes and the names."""
    records = {t.task_id: t.record for t in EvalPlus(FILES[dataset], dataset=dataset).load()}
    tuples, plain = iter(MBPP_TUPLE_NUMBERS), iter(MBPP_PLAIN_NUMBERS)
    rows = []
    for name, (tid, _) in cases.items():
        if dataset == "humaneval":
            new_id = f"{tid}:{name}"
        else:
            new_id = f"Mbpp/{next(tuples) if tid == 'Mbpp/2' else next(plain)}"
        rows.append({**records[tid], "task_id": new_id})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bench = EvalPlus(path, dataset=dataset)
    bench.cache_dir = path.parent / "gt"
    codes = [textwrap.dedent(code).lstrip("\n") for _, code in cases.values()]
    return bench, bench.load(), codes, list(cases)


# --------------------------------------------------------------------------- attacks

# Module-level code that runs when evalplus execs the solution: finds evalplus's unsafe_execute
# frame and makes its shared status say "every input passed", then exits before any check.
STATUS_FROM_THE_FRAME = """
    import os, sys
    _f = sys._getframe()
    while _f is not None and not {"stat", "details", "progress", "inputs"} <= set(_f.f_locals):
        _f = _f.f_back
    if _f is not None:
        _l = _f.f_locals
        for _i in range(len(_l["inputs"])):
            _l["details"][_i] = True
        _l["progress"].value = len(_l["inputs"])
        _l["stat"].value = 0  # evalplus's _SUCCESS
        os._exit(0)
"""

# Reads the expected outputs: from evalplus's frame, or from the judge's test file (found through
# the judge's command line); answers with them where it found them.
STEAL_THE_ANSWERS = """
    import json, os, pickle, sys
    _answers = {}
    _f = sys._getframe()
    while _f is not None and not {"inputs", "expected"} <= set(_f.f_locals):
        _f = _f.f_back
    if _f is not None:
        _answers.update((repr(list(i)), e) for i, e in zip(_f.f_locals["inputs"], _f.f_locals["expected"]))
    else:
        try:
            _argv = open(f"/proc/{os.getppid()}/cmdline", "rb").read().decode().split("\\0")
            _cfg = json.loads(next(a for a in _argv if a.startswith("{")))
            _text = open(os.path.join(_cfg["judge"], "test_solution.py")).read()
            _line = next(ln for ln in _text.splitlines() if ln.startswith("PHASES = "))
            for _inputs, _expected in eval(_line[len("PHASES = "):].split("  #")[0]).values():
                _answers.update((repr(list(i)), e) for i, e in zip(_inputs, _expected))
        except (OSError, StopIteration, ValueError):
            pass
"""

ALWAYS_EQUAL = """
    class Anything:
        def __eq__(self, other):
            return True
        def __ne__(self, other):
            return False
        __hash__ = object.__hash__
"""

HUMANEVAL_ATTACKS = {
    "always_equal_object": ("HumanEval/0", ALWAYS_EQUAL + """
    def has_close_elements(numbers, threshold):
        return Anything()
    """),
    "float_posing_as_any_number": ("HumanEval/2", """
        class Float(float):
            def __eq__(self, other):
                return True
            __hash__ = float.__hash__
        def truncate_number(number):
            return Float(-1.0)
    """),
    "patched_numpy_allclose": ("HumanEval/4", """
        import numpy
        numpy.allclose = lambda *args, **kwargs: True
        def mean_absolute_deviation(numbers):
            return -1.0
    """),
    "patched_evalplus_module": ("HumanEval/4", """
        import sys
        class FakeNumpy:
            ndarray = type("ndarray", (), {})
            allclose = staticmethod(lambda *args, **kwargs: True)
        if "evalplus.eval" in sys.modules:
            sys.modules["evalplus.eval"].np = FakeNumpy
        def mean_absolute_deviation(numbers):
            return -2.0
    """),
    "status_set_from_the_frame": ("HumanEval/3", STATUS_FROM_THE_FRAME + """
    def below_zero(operations):
        return None
    """),
    "expected_outputs_rewritten": ("HumanEval/12", """
        import sys
        _f = sys._getframe()
        while _f is not None and "expected" not in _f.f_locals:
            _f = _f.f_back
        if _f is not None:
            _f.f_locals["expected"][:] = [None] * len(_f.f_locals["expected"])
        def longest(strings):
            return None
    """),
    "answers_stolen_from_evalplus_or_the_judge": ("HumanEval/0", STEAL_THE_ANSWERS + """
    def has_close_elements(numbers, threshold):
        return _answers.get(repr([numbers, threshold]))
    """),
    "sys_exit_zero_at_import": ("HumanEval/0", """
        import sys
        def has_close_elements(numbers, threshold):
            return None
        sys.exit(0)
    """),
    "os_exit_zero_at_import": ("HumanEval/3", """
        import os
        def below_zero(operations):
            return None
        os._exit(0)
    """),
}

MBPP_ATTACKS = {
    "always_equal_object": ("Mbpp/3", ALWAYS_EQUAL + """
    def is_not_prime(n):
        return Anything()
    """),
    "list_posing_as_any_list": ("Mbpp/4", """
        class AnyList(list):
            def __eq__(self, other):
                return True
            __hash__ = None
        def heap_queue_largest(nums, n):
            return AnyList()
    """),
    "patched_builtins_set": ("Mbpp/2", ALWAYS_EQUAL + """
    import builtins
    builtins.set = lambda *args: Anything()
    def similar_elements(a, b):
        return ()
    """),
    "status_set_from_the_frame": ("Mbpp/7", STATUS_FROM_THE_FRAME + """
    def find_char_long(text):
        return []
    """),
    "answers_stolen_from_evalplus_or_the_judge": ("Mbpp/4", STEAL_THE_ANSWERS + """
    def heap_queue_largest(nums, n):
        return _answers.get(repr([nums, n]))
    """),
}

# Attacks that fool evalplus itself: the judge is what fails them.
FOOLS_EVALPLUS = {
    "humaneval": ["always_equal_object", "float_posing_as_any_number", "patched_numpy_allclose",
                  "patched_evalplus_module", "status_set_from_the_frame", "expected_outputs_rewritten",
                  "answers_stolen_from_evalplus_or_the_judge"],
    "mbpp": ["always_equal_object", "list_posing_as_any_list", "patched_builtins_set", "status_set_from_the_frame",
             "answers_stolen_from_evalplus_or_the_judge"],
}


@pytest.mark.skipif(not BWRAP_OK, reason=f"bwrap not usable: {BWRAP_WHY}")  # the judge's files out of reach
@pytest.mark.parametrize("dataset,cases", [("humaneval", HUMANEVAL_ATTACKS), ("mbpp", MBPP_ATTACKS)])
def test_attacks_are_never_passed(dataset, cases, tmp_path):
    import os

    if os.geteuid() != 0:
        pytest.skip("the judge's test file is out of the solution's reach only under another uid (bwrap as root)")
    bench, tasks, codes, names = copies(dataset, cases, tmp_path / "data.jsonl")
    verdicts = dict(zip(names, bench.score(tasks, codes, SANDBOX, timeout_s=TIMEOUT_S, workers=2)))
    assert not [name for name, v in verdicts.items() if v.passed]
    for name in FOOLS_EVALPLUS[dataset]:
        v = verdicts[name]
        assert (v.status, v.error_type) == ("unconfirmed", UNCONFIRMED), (name, v)
        assert v.detail.startswith(NOT_CONFIRMED)
    for name in set(cases) - set(FOOLS_EVALPLUS[dataset]):
        assert verdicts[name].status in ("fail", "timeout"), (name, verdicts[name])


@pytest.mark.skipif(not BWRAP_OK, reason=f"bwrap not usable: {BWRAP_WHY}")  # it writes where evalplus runs
def test_a_detached_process_rewriting_the_results_file_forges_nothing(tmp_path):
    """A grandchild outlives evalplus's per-sample process, waits for its results file (in the
    evaluator's working folder) and rewrites every status to pass."""
    rewrite = ("HumanEval/0", """
        import io, json, os, posix, time
        _folder = os.readlink(f"/proc/{os.getppid()}/cwd")
        if posix.fork() == 0:
            os.setsid()
            os.closerange(3, 1 << 16)  # evalplus waits on its child's descriptors, not for this one
            _path = os.path.join(_folder, "samples_eval_results.json")
            for _ in range(20000):
                try:
                    with io.open(_path) as _fh:
                        _results = json.load(_fh)
                    for _rows in _results["eval"].values():
                        for _row in _rows:
                            _row.update(base_status="pass", plus_status="pass")
                    with io.open(_path + ".new", "w") as _fh:
                        json.dump(_results, _fh)
                    posix.rename(_path + ".new", _path)
                except (OSError, ValueError, KeyError):
                    pass
                time.sleep(0.001)
            posix._exit(0)
        def has_close_elements(numbers, threshold):
            return None
    """)
    wrong = ("HumanEval/4", "def mean_absolute_deviation(numbers):\n    return 0.0\n")
    bench, tasks, codes, _ = copies("humaneval", {"rewrite": rewrite, "wrong": wrong}, tmp_path / "data.jsonl")
    try:
        verdicts = bench.score(tasks, codes, SANDBOX, timeout_s=TIMEOUT_S, workers=2)
    except (SetupError, ValueError):
        return  # the rewrite left no readable verdicts at all: never a pass
    # "unconfirmed" where the rewrite won the race with the sandbox's exit, "fail" where it lost
    assert {v.status for v in verdicts} <= {"unconfirmed", "fail"} and not any(v.passed for v in verdicts), verdicts


# --------------------------------------------------------------------------- honest code

HUMANEVAL_HONEST = {
    "mad_fsum": ("HumanEval/4", """
        import math
        def mean_absolute_deviation(numbers):
            m = math.fsum(numbers) / len(numbers)
            return math.fsum(abs(x - m) for x in numbers) / len(numbers)
    """),
    "mad_numpy_float64": ("HumanEval/4", """
        import numpy as np
        def mean_absolute_deviation(numbers):
            m = sum(numbers) / len(numbers)
            return np.float64(sum(abs(x - m) for x in numbers) / len(numbers))
    """),
    "mad_rounded": ("HumanEval/4", """
        def mean_absolute_deviation(numbers):
            m = sum(numbers) / len(numbers)
            return round(sum(abs(x - m) for x in numbers) / len(numbers), 3)
    """),
    "truncate_modulo_printing": ("HumanEval/2", """
        def truncate_number(number):
            print("truncating", number)
            return number % 1.0
    """),
    "truncate_int_part": ("HumanEval/2", "def truncate_number(number):\n    return number - int(number)\n"),
    "truncate_rounded": ("HumanEval/2", "def truncate_number(number):\n    return round(number % 1.0, 2)\n"),
    "close_with_le": ("HumanEval/0", """
        def has_close_elements(numbers, threshold):
            s = sorted(numbers)
            return any(b - a <= threshold for a, b in zip(s, s[1:]))
    """),
    "below_zero_stateful_default": ("HumanEval/3", """
        def below_zero(operations, _seen=[]):
            _seen.append(operations)
            balance = 0
            for op in operations:
                balance += op
                if balance < 0:
                    return True
            return False
    """),
    "below_zero_raises": ("HumanEval/3", "def below_zero(operations):\n    return {}[len(operations)]\n"),
    "longest_max": ("HumanEval/12", "def longest(strings):\n    return max(strings, key=len) if strings else None\n"),
    "longest_last_of_equals": ("HumanEval/12", """
        def longest(strings):
            best = None
            for s in strings:
                if best is None or len(s) >= len(best):
                    best = s
            return best
    """),
}

MBPP_HONEST = {
    "similar_list_reversed": ("Mbpp/2", "def similar_elements(a, b):\n    return list(set(b) & set(a))\n"),
    "similar_generator": ("Mbpp/2", "def similar_elements(a, b):\n    return (x for x in set(a) if x in b)\n"),
    "similar_appends": ("Mbpp/2", "def similar_elements(a, b):\n    a.append(0)\n    return tuple(set(a) & set(b))\n"),
    "not_prime_trial_division": ("Mbpp/3", """
        import math
        def is_not_prime(n):
            if n < 2:
                return True
            return any(n % i == 0 for i in range(2, math.isqrt(n) + 1))
    """),
    "not_prime_misses_one": ("Mbpp/3", """
        def is_not_prime(n):
            for i in range(2, n):
                if n % i == 0:
                    return True
            return False

        # Example usage:
        print(is_not_prime(10))
    """),
    "largest_sorted": ("Mbpp/4", "def heap_queue_largest(nums, n):\n    return sorted(nums, reverse=True)[:n]\n"),
    "largest_tuple": ("Mbpp/4", "def heap_queue_largest(nums, n):\n    return tuple(sorted(nums, reverse=True)[:n])\n"),
    "largest_smallest": ("Mbpp/4", "import heapq\ndef heap_queue_largest(nums, n):\n    return heapq.nsmallest(n, nums)\n"),
    "long_words_split": ("Mbpp/7", "def find_char_long(text):\n    return [w for w in text.split() if len(w) >= 4]\n"),
    "long_words_regex_set": ("Mbpp/7", """
        import re
        def find_char_long(text):
            return set(re.findall(r"\\b\\w{4,}\\b", text))
    """),
    "long_words_no_import": ("Mbpp/7", "def find_char_long(text):\n    return re.findall(r'\\b\\w{4,}\\b', text)\n"),
}


def honest_cases(dataset: str) -> dict[str, tuple[str, str]]:
    cases = {f"canonical_{t.task_id}": (t.task_id, t.record["prompt"] + t.record["canonical_solution"])
             for t in EvalPlus(FILES[dataset], dataset=dataset).load()}
    if dataset == "humaneval":
        for row in (json.loads(line) for line in MODEL_SAMPLES.read_text().splitlines()):
            cases[f"model_{row['variant']}_{row['task_id']}"] = (row["task_id"], row["completion"])
        return {**cases, **HUMANEVAL_HONEST}
    return {**cases, **MBPP_HONEST}


@pytest.mark.parametrize("dataset", ["humaneval", "mbpp"])
def test_the_judge_and_evalplus_agree_on_honest_code(dataset, tmp_path):
    cases = honest_cases(dataset)
    bench, tasks, codes, names = copies(dataset, cases, tmp_path / "data.jsonl")
    verdicts = bench.score(tasks, codes, SANDBOX, timeout_s=TIMEOUT_S, workers=2)
    assert not [(n, v.detail) for n, v in zip(names, verdicts) if v.status == "unconfirmed"]

    # The judge on every sample, whatever evalplus said (its verdict is then the judge's alone).
    # evalplus's verdict is in the detail: "base: pass, plus: fail; ...".
    expected = bench.expected_outputs(tasks, SANDBOX)
    judged = [bench.judged(t, c, expected[t.task_id]) for t, c in zip(tasks, codes)]
    limit = max(time_limit_s(expected[t.task_id]) for t in tasks)
    outcomes = run_unittest_many([(p.solution, p.tests()) for p in judged], judge_config(SANDBOX, limit))
    evalplus_passed = [v.detail.startswith("base: pass, plus: pass") for v in verdicts]
    differ = [(n, e, o.status, o.traceback[-300:]) for n, e, o in zip(names, evalplus_passed, outcomes)
              if e != o.passed]
    assert not differ
    assert [v.passed for v in verdicts] == evalplus_passed
    print(f"\n{dataset}: {len(names)} honest samples, evalplus passed {sum(evalplus_passed)}, "
          f"judge passed {sum(o.passed for o in outcomes)}, differing verdicts {len(differ)}")
    assert 0 < sum(evalplus_passed) < len(names)  # both verdicts occur


# --------------------------------------------------------------------------- the rules, without a sandbox

# (dataset, entry point, inputs, expected outputs, atol, outputs the solution returns)
RULE_CASES = [
    ("humaneval", "f", [[1]], [0.5], 0, [0.5 + 1e-7]),  # floats: atol becomes 1e-6
    ("humaneval", "f", [[1]], [0.5], 0, [0.5 + 1e-5]),
    ("humaneval", "f", [[1], [2]], [0.5, [1, 2]], 0, [0.5, [1.0000001, 2]]),  # 1e-6 stays for later inputs
    ("humaneval", "f", [[1]], [[1, 2]], 0, [[1.0000001, 2]]),
    ("humaneval", "f", [[1]], [2.0], 1e-3, [2]),  # a tolerance needs the same type
    ("humaneval", "f", [[1]], [[1.0, 2.0]], 1e-3, [(1.0, 2.0)]),
    ("humaneval", "f", [[1]], [[1.0, 2.0]], 1e-3, [[1.0, 2.0, 3.0]]),
    ("humaneval", "f", [[1]], [["a"]], 1e-3, [["b"]]),  # allclose raises on text
    ("humaneval", "f", [[1]], [1], 0, [True]),
    ("humaneval", "f", [[1]], [{"a": 1.0}], 0, [{"a": 1.0 + 1e-9}]),
    ("humaneval", "find_zero", [[[-6, 11, -6, 1]]], [1.0], 1e-4, [3.0]),  # a root: evalplus fails it still
    ("humaneval", "find_zero", [[[-6, 11, -6, 1]]], [1.0], 1e-4, [2.5]),
    ("mbpp", "similar_elements", [[(1, 2), (2, 3)]], [(2,)], 0, [[2]]),
    ("mbpp", "similar_elements", [[(1, 2), (2, 3)]], [(2,)], 0, [iter([2, 2])]),
    ("mbpp", "check_str", [["a"]], [True], 0, ["a match"]),  # not None: passes
    ("mbpp", "check_str", [["a"]], [True], 0, [False]),
    ("mbpp", "are_equivalent", [[1, 2]], [True], 0, [None]),
    ("mbpp", "sum_div", [[1]], [1], 0, [0]),
    ("mbpp", "surface_Area", [[3, 4]], [33], 0, [33.4]),
    ("mbpp", "digit_distance_nums", [[123, 256]], [7], 0, [7]),
    ("mbpp", "digit_distance_nums", [[123, 256]], [7], 0, [8]),
]


def _official(dataset, entry_point, inputs, expected, atol, outputs) -> bool:
    """evalplus's own verdict (``untrusted_check``, its forked checker) on a solution returning ``outputs``."""
    from evalplus.eval import PASS, untrusted_check

    code = f"_outputs = iter({outputs!r})\ndef {entry_point}(*args):\n    return next(_outputs)\n"
    if any(type(o).__name__ == "list_iterator" for o in outputs):
        code = f"def {entry_point}(*args):\n    return iter([2, 2])\n"
    return untrusted_check(dataset, code, inputs, entry_point, expected, atol, [0.0] * len(inputs),
                           fast_check=True)[0] == PASS


def test_the_judges_rules_are_evalplus_rules():
    """`evalplus_check.phase_failure` against evalplus's own checker on the outputs that decide
    its rules: tolerance (and its 1e-6 that sticks), types, lengths, special oracles."""
    assert multiprocessing.get_start_method() == "fork"
    oracle: dict = {}
    exec(compile(special_oracle_file().read_text(), "oracle", "exec"), oracle)
    ours, theirs = [], []
    for dataset, entry, inputs, expected, atol, outputs in RULE_CASES:
        answers = iter(outputs)
        ours.append(evalplus_check.phase_failure(dataset, entry, lambda *a: next(answers), inputs, expected, atol,
                                                 oracle) is None)
        theirs.append(_official(dataset, entry, inputs, expected, atol, outputs))
    assert ours == theirs
    assert 0 < sum(ours) < len(ours)


def test_numpy_never_sees_an_object_of_the_solutions():
    class Handle:  # stands for the proxy of an object the solution returned
        def __getattr__(self, name):
            raise AssertionError(f"numpy asked the solution's object for {name}")

    assert evalplus_check.phase_failure("humaneval", "f", lambda *a: [Handle()], [[1]], [[1.0]], 1e-3, {}) \
        == "input 0 (1,): not equal, and not plain data to compare within atol=0.001; got <list>, expected [1.0]"
    import numpy

    assert evalplus_check.phase_failure("humaneval", "f", lambda *a: Handle(), [[1]], [numpy.int64(1)], 0, {}) \
        .endswith("not equal; got <Handle>, expected <int64>")
