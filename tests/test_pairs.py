"""Tests of iterpref.pairs.build: trajectories to filtered preference pairs, with statistics."""

from __future__ import annotations

import json
import random

import pytest

from iterpref import prompts
from iterpref.pairs.build import PairConfig, build_pairs, is_comment_only, make_pair, same_ast
from iterpref.pairs.diff import split_lines
from iterpref.records import Attempt, Outcome, Pair, Problem, Trajectory, from_dict, to_dict

PASS = Outcome(passed=True, status="passed", tests_run=3)


def fail(error: str = "AssertionError") -> Outcome:
    return Outcome(passed=False, status="failed", tests_run=3, failures=1, error_type=error, traceback="boom")


def problem(task_id: str = "t/0") -> Problem:
    return Problem(
        task_id=task_id,
        instruction="Add one to x.",
        signature="def f(x: int) -> int:",
        entry_point="f",
        reference="def f(x: int) -> int:\n    return x + 1\n",
        tests="import unittest\n",
    )


GOOD = "def f(x: int) -> int:\n    y = x + 1\n    return y\n"


def bad(k: int) -> str:
    """A distinct failing version: the middle line differs."""
    return f"def f(x: int) -> int:\n    y = x + {k + 2}\n    return y\n"


def traj(tid: str, codes_and_outcomes, task_id: str = "t/0", teacher: str = "mutation") -> Trajectory:
    attempts = [Attempt(round=r, code=c, outcome=o) for r, (c, o) in enumerate(codes_and_outcomes)]
    return Trajectory(
        trajectory_id=tid,
        task_id=task_id,
        teacher=teacher,
        seed=0,
        attempts=attempts,
        solved=bool(attempts) and attempts[-1].outcome.passed,
        provenance={"params_hash": "abc123"},
    )


def solved_after(tid: str, n_fail: int, task_id: str = "t/0", errors=None) -> Trajectory:
    errors = errors or ["AssertionError"] * n_fail
    return traj(tid, [(bad(k), fail(errors[k])) for k in range(n_fail)] + [(GOOD, PASS)], task_id=task_id)


PROBLEMS = {f"t/{i}": problem(f"t/{i}") for i in range(10)}


# --------------------------------------------------------------------------- selection

def test_selection_first_last_all():
    t = solved_after("t/0#0", 4)
    first, _ = build_pairs(PROBLEMS, [t], PairConfig(selection="first"))
    last, _ = build_pairs(PROBLEMS, [t], PairConfig(selection="last"))
    every, _ = build_pairs(PROBLEMS, [t], PairConfig(selection="all"))
    assert [p.rejected_round for p in first] == [0]
    assert [p.rejected_round for p in last] == [3]
    assert [p.rejected_round for p in every] == [0, 1, 2, 3]
    assert [p.pair_id for p in every] == ["t/0#0:0", "t/0#0:1", "t/0#0:2", "t/0#0:3"]
    for p in every:
        assert p.chosen_round == 4
        assert p.chosen == prompts.completion(GOOD)
        assert p.rejected == prompts.completion(bad(p.rejected_round))


def test_selection_random_is_seeded_and_stable_under_shuffling():
    trajs = [solved_after(f"t/{i % 10}#{i}", 5, task_id=f"t/{i % 10}") for i in range(40)]
    cfg = PairConfig(selection="random", seed=3)
    pairs, _ = build_pairs(PROBLEMS, trajs, cfg)
    chosen = {p.provenance["trajectory_id"]: p.rejected_round for p in pairs}
    assert len(chosen) == 40
    assert len(set(chosen.values())) > 1  # really random across trajectories

    shuffled = list(trajs)
    random.Random(11).shuffle(shuffled)
    pairs2, _ = build_pairs(PROBLEMS, shuffled, cfg)
    assert {p.provenance["trajectory_id"]: p.rejected_round for p in pairs2} == chosen
    # Output keeps the input order.
    assert [p.provenance["trajectory_id"] for p in pairs2] == [t.trajectory_id for t in shuffled]
    # Alone, a trajectory gets the same choice as in the batch.
    alone, _ = build_pairs(PROBLEMS, [trajs[5]], cfg)
    assert alone[0].rejected_round == chosen[trajs[5].trajectory_id]
    # Another seed changes some choices.
    pairs3, _ = build_pairs(PROBLEMS, trajs, PairConfig(selection="random", seed=4))
    assert {p.provenance["trajectory_id"]: p.rejected_round for p in pairs3} != chosen


def test_round0_solved_and_unsolved_give_no_pair():
    solved0 = traj("t/0#0", [(GOOD, PASS)])
    unsolved = traj("t/1#0", [(bad(0), fail()), (bad(1), fail())], task_id="t/1")
    empty = traj("t/2#0", [], task_id="t/2")
    for sel in ("random", "first", "last", "all"):
        pairs, stats = build_pairs(PROBLEMS, [solved0, unsolved, empty], PairConfig(selection=sel))
        assert pairs == []
        assert stats["candidate_pairs"] == 0
        assert stats["solved"] == 1 and stats["solved_first_try"] == 1 and stats["unsolved"] == 2


# --------------------------------------------------------------------------- pair fields and spans

def test_pair_fields_and_spans_index_into_completions():
    rej_code = "def f(x: int) -> int:\n    y = x - 1\n    return y\n\n\n"  # trailing blank lines
    t = traj("t/0#7", [(rej_code, fail("ValueError")), (GOOD, PASS)])
    (p,), _ = build_pairs(PROBLEMS, [t], PairConfig(selection="first"))
    assert p.prompt == prompts.user_message(PROBLEMS["t/0"].instruction, PROBLEMS["t/0"].signature)
    assert p.task_id == "t/0"
    assert p.pair_id == "t/0#7:0"
    assert p.rejected_error == "ValueError"
    assert (p.chosen_round, p.rejected_round) == (1, 0)
    assert p.provenance == {
        "trajectory_id": "t/0#7",
        "teacher": "mutation",
        "selection": "first",
        "diff": "lcs",
        "seed": 0,
        "params_hash": "abc123",
    }
    assert [p.rejected[s:e] for s, e in p.rejected_spans] == ["    y = x - 1\n"]
    assert [p.chosen[s:e] for s, e in p.chosen_spans] == ["    y = x + 1\n"]
    # The pair survives a JSON round trip through the record schema.
    again = from_dict(Pair, json.loads(json.dumps(to_dict(p))))
    assert again.rejected_spans == p.rejected_spans


def test_spans_of_a_changed_last_line_keep_its_newline():
    """The completion's last code line ends with the newline the closing fence starts with: its
    span covers it, like every other line's (the issue's example: (20, 37), not (20, 36))."""
    t = traj("t/0#1", [("def f(x):\n    return x - 1", fail()), ("def f(x):\n    return x + 1\n\n", PASS)])
    (p,), _ = build_pairs(PROBLEMS, [t], PairConfig(selection="first"))
    assert [tuple(s) for s in p.rejected_spans] == [(20, 37)]
    assert p.rejected[20:37] == "    return x - 1\n" and p.rejected[37:] == "```"
    (s, e), = p.chosen_spans
    assert p.chosen[s:e] == "    return x + 1\n"


def test_spans_cover_exactly_the_changed_lines_on_random_edits():
    rng = random.Random(5)
    base = [f"    v{i} = {i}\n" for i in range(12)]
    trajs = []
    for k in range(60):
        rej = list(base)
        for _ in range(rng.randint(1, 3)):
            rej[rng.randrange(len(rej))] = f"    v{rng.randint(0, 99)} = -{rng.randint(0, 9)}\n"
        if rng.random() < 0.3:
            del rej[rng.randrange(len(rej))]
        code_rej = "def g():\n" + "".join(rej) + "    return 0\n"
        code_cho = "def g():\n" + "".join(base) + "    return 0\n"
        trajs.append(traj(f"t/0#{k}", [(code_rej, fail()), (code_cho, PASS)]))
    cfg = PairConfig(selection="first", drop_identical_ast=False, drop_comment_only=False)
    pairs, _ = build_pairs(PROBLEMS, trajs, cfg)
    for p in pairs:
        code = p.rejected[prompts.code_offset() : len(p.rejected) - len(prompts.FENCE_CLOSE.lstrip("\n"))]
        chosen_lines = set(split_lines(p.chosen))
        for s, e in p.rejected_spans:
            piece = p.rejected[s:e]
            assert piece in code
            assert s == prompts.code_offset() or p.rejected[s - 1] == "\n"
            assert piece.endswith("\n")
        # Every rejected line outside the spans is kept in some order by the chosen side.
        covered = {i for s, e in p.rejected_spans for i in range(s, e)}
        off = prompts.code_offset()
        pos = off
        for line in split_lines(code):
            if pos not in covered:
                assert line in chosen_lines or line.rstrip("\n") + "\n" in chosen_lines
            pos += len(line)


def test_prefix_suffix_diff_option():
    rej = "def f(x):\n    a = 1\n    b = 2\n    c = 3\n    return a\n"
    cho = "def f(x):\n    a = 10\n    b = 2\n    c = 30\n    return a\n"
    t = traj("t/0#0", [(rej, fail()), (cho, PASS)])
    (lcs,), _ = build_pairs(PROBLEMS, [t], PairConfig(selection="first", diff="lcs"))
    (ps,), _ = build_pairs(PROBLEMS, [t], PairConfig(selection="first", diff="prefix_suffix"))
    assert [lcs.rejected[s:e] for s, e in lcs.rejected_spans] == ["    a = 1\n", "    c = 3\n"]
    assert [ps.rejected[s:e] for s, e in ps.rejected_spans] == ["    a = 1\n    b = 2\n    c = 3\n"]
    assert ps.provenance["diff"] == "prefix_suffix"


def test_make_pair_matches_build_pairs():
    t = solved_after("t/0#0", 2)
    pairs, _ = build_pairs(PROBLEMS, [t], PairConfig(selection="last"))
    assert make_pair(PROBLEMS["t/0"], t, t.attempts[1], PairConfig(selection="last")) == pairs[0]


# --------------------------------------------------------------------------- filters

def with_rejected(tid: str, rej: str, cho: str = GOOD, task_id: str = "t/0") -> Trajectory:
    return traj(tid, [(rej, fail()), (cho, PASS)], task_id=task_id)


def test_comment_only_filter():
    cho = "def f(x):\n    # add one\n    return x + 1\n"
    rej = "def f(x):\n    # add two\n    return x + 1\n"
    t = with_rejected("t/0#0", rej, cho)
    pairs, stats = build_pairs(PROBLEMS, [t], PairConfig(drop_identical_ast=False))
    assert pairs == [] and stats["removed"]["comment_only"] == 1
    pairs, stats = build_pairs(PROBLEMS, [t], PairConfig(drop_comment_only=False, drop_identical_ast=False))
    assert len(pairs) == 1 and stats["removed"]["comment_only"] == 0


def test_comment_only_does_not_drop_insert_only_or_code_changes():
    insert_only = with_rejected("t/0#0", "def f(x):\n    return x\n", "def f(x):\n    x += 1\n    return x\n")
    code_change = with_rejected("t/1#0", "def f(x):\n    return x  # wrong\n", task_id="t/1")
    pairs, stats = build_pairs(PROBLEMS, [insert_only, code_change], PairConfig())
    assert len(pairs) == 2
    assert stats["removed"]["comment_only"] == 0
    assert pairs[0].rejected_spans == []
    assert stats["insert_only_pairs"] == 1 and stats["insert_only_candidates"] == 1


def test_is_comment_only_helper():
    code = 'x = 1\n# note\n\ns = """\n# inside a string\n"""\n'
    assert is_comment_only(code, [1, 2])
    assert not is_comment_only(code, [4])  # '#' inside a string literal is code
    assert not is_comment_only(code, [0, 1])
    assert not is_comment_only(code, [])
    broken = "def f(:\n    # c\n\n    return (\n"
    assert is_comment_only(broken, [1, 2])  # untokenizable: per-line fallback
    assert not is_comment_only(broken, [0])


def test_too_many_rejected_lines_filter():
    body = "".join(f"    a{i} = {i}\n" for i in range(21))
    rej21 = "def f(x):\n" + body + "    return x\n"
    rej20 = "def f(x):\n" + "".join(f"    a{i} = {i}\n" for i in range(20)) + "    return x\n"
    cho = "def f(x):\n    return x + 1\n"
    big = with_rejected("t/0#0", rej21, cho)  # D- = 21 body lines + the return line = 22
    edge = traj("t/1#0", [(rej20.replace("    return x\n", "    return x + 1\n"), fail()), (cho, PASS)], task_id="t/1")
    pairs, stats = build_pairs(PROBLEMS, [big, edge], PairConfig())
    assert [p.task_id for p in pairs] == ["t/1"]  # exactly 20 D- lines is kept
    assert stats["removed"]["too_many_rejected_lines"] == 1
    assert stats["rejected_lines_mean"] == 20.0
    pairs, stats = build_pairs(PROBLEMS, [big, edge], PairConfig(max_rejected_lines=None))
    assert len(pairs) == 2 and stats["removed"]["too_many_rejected_lines"] == 0
    pairs, _ = build_pairs(PROBLEMS, [big, edge], PairConfig(max_rejected_lines=5))
    assert pairs == []


def test_identical_ast_filter():
    cho = "def f(x):\n    return (x + 1) * 2\n"
    whitespace = "def f( x ):\n    return (x+1)*2\n"
    parens = "def f(x):\n    return ((x + 1)) * 2\n"
    real = "def f(x):\n    return x + 1 * 2\n"
    trajs = [
        with_rejected("t/0#0", whitespace, cho),
        with_rejected("t/1#0", parens, cho, task_id="t/1"),
        with_rejected("t/2#0", real, cho, task_id="t/2"),
    ]
    pairs, stats = build_pairs(PROBLEMS, trajs, PairConfig())
    assert [p.task_id for p in pairs] == ["t/2"]
    assert stats["removed"]["identical_ast"] == 2
    pairs, stats = build_pairs(PROBLEMS, trajs, PairConfig(drop_identical_ast=False))
    assert len(pairs) == 3 and stats["removed"]["identical_ast"] == 0


def test_same_ast_helper():
    assert same_ast("x = (1)\n", "x = 1  # c\n")
    assert not same_ast("x = 1\n", "x = 2\n")
    assert not same_ast("def f(:\n", "def f(:\n")  # unparsable never counts as identical


def test_drop_empty_rejected_option():
    insert_only = with_rejected("t/0#0", "def f(x):\n    return x\n", "def f(x):\n    x += 1\n    return x\n")
    pairs, stats = build_pairs(PROBLEMS, [insert_only], PairConfig(drop_empty_rejected=True))
    assert pairs == [] and stats["removed"]["empty_rejected"] == 1


def test_filters_run_in_order_and_count_once():
    # A comment-only change that also has an identical AST is counted by the first filter only.
    t = with_rejected("t/0#0", "def f(x):\n    # old\n    return x\n", "def f(x):\n    # new\n    return x\n")
    _, stats = build_pairs(PROBLEMS, [t], PairConfig())
    assert stats["removed"]["comment_only"] == 1
    assert stats["removed"]["identical_ast"] == 0
    assert list(stats["removed"]) == [
        "comment_only",
        "too_many_rejected_lines",
        "identical_ast",
        "empty_rejected",
        "max_pairs_per_problem",
    ]


def test_max_pairs_per_problem():
    trajs = [solved_after(f"t/0#{k}", 3) for k in range(5)] + [solved_after("t/1#0", 3, task_id="t/1")]
    cfg = PairConfig(selection="all", max_pairs_per_problem=1, seed=2)
    pairs, stats = build_pairs(PROBLEMS, trajs, cfg)
    assert sorted(p.task_id for p in pairs) == ["t/0", "t/1"]
    assert stats["candidate_pairs"] == 18
    assert stats["removed"]["max_pairs_per_problem"] == 18 - 2
    assert stats["pairs_per_problem"] == {"1": 2}
    shuffled = list(reversed(trajs))
    pairs2, _ = build_pairs(PROBLEMS, shuffled, cfg)
    assert {p.pair_id for p in pairs2} == {p.pair_id for p in pairs}
    pairs3, stats3 = build_pairs(PROBLEMS, trajs, PairConfig(selection="all", max_pairs_per_problem=2))
    assert stats3["pairs_per_problem"] == {"2": 2}
    assert len(pairs3) == 4


# --------------------------------------------------------------------------- errors and stats

def test_missing_problem_names_the_trajectory():
    t = solved_after("ghost#3", 1, task_id="ghost")
    with pytest.raises(ValueError, match="ghost#3"):
        build_pairs(PROBLEMS, [t], PairConfig())


def test_invalid_inputs():
    with pytest.raises(ValueError, match="selection"):
        build_pairs(PROBLEMS, [], PairConfig(selection="best"))
    with pytest.raises(ValueError, match="diff"):
        build_pairs(PROBLEMS, [], PairConfig(diff="ndiff"))
    t = solved_after("t/0#0", 1)
    with pytest.raises(ValueError, match="duplicate"):
        build_pairs(PROBLEMS, [t, t], PairConfig())
    inconsistent = traj("t/0#9", [(bad(0), fail())])
    inconsistent.solved = True
    with pytest.raises(ValueError, match="t/0#9"):
        build_pairs(PROBLEMS, [inconsistent], PairConfig())


def test_stats_on_a_small_example():
    trajs = [
        traj("t/0#0", [(GOOD, PASS)], task_id="t/0"),  # solved at round 0
        solved_after("t/1#0", 1, task_id="t/1", errors=["IndexError"]),  # solved at round 1
        solved_after("t/2#0", 2, task_id="t/2", errors=["KeyError", "IndexError"]),  # round 2
        solved_after("t/2#1", 2, task_id="t/2", errors=["KeyError", "NameError"]),  # round 2
        traj("t/3#0", [(bad(k), fail("TypeError")) for k in range(4)], task_id="t/3"),  # unsolved, rounds 0-3
    ]
    pairs, stats = build_pairs(PROBLEMS, trajs, PairConfig(selection="first"))
    json.dumps(stats)  # JSON-serialisable
    assert stats["trajectories"] == 5
    assert stats["problems"] == 4
    assert stats["solved"] == 4
    assert stats["solved_first_try"] == 1
    assert stats["unsolved"] == 1
    assert stats["cumulative_pass_rate"] == {"0": 0.2, "1": 0.4, "2": 0.8, "3": 0.8}
    assert stats["candidate_pairs"] == 3
    assert stats["pairs"] == 3
    assert stats["removed"] == {name: 0 for name in stats["removed"]}
    assert stats["problems_with_pairs"] == 2
    assert stats["pairs_per_problem"] == {"1": 1, "2": 1}
    assert stats["mean_pairs_per_problem"] == 1.5
    assert stats["rejected_lines_mean"] == 1.0
    assert stats["rejected_lines_median"] == 1.0
    assert stats["rejected_round_hist"] == {"0": 3}
    assert stats["rejected_error_types"] == {"KeyError": 2, "IndexError": 1}
    assert stats["insert_only_pairs"] == 0
    assert [p.pair_id for p in pairs] == ["t/1#0:0", "t/2#0:0", "t/2#1:0"]

    _, stats_last = build_pairs(PROBLEMS, trajs, PairConfig(selection="last"))
    assert stats_last["rejected_round_hist"] == {"0": 1, "1": 2}
    assert stats_last["rejected_error_types"] == {"IndexError": 2, "NameError": 1}


def test_empty_input_stats():
    pairs, stats = build_pairs(PROBLEMS, [], PairConfig())
    assert pairs == []
    json.dumps(stats)
    assert stats["trajectories"] == 0 and stats["cumulative_pass_rate"] == {}
    assert stats["rejected_lines_mean"] is None and stats["rejected_lines_median"] is None
