"""Tests of iterpref.pairs.diff: the line diff (Algorithm 1) and its character spans."""

from __future__ import annotations

import functools
import random

import pytest

from iterpref.pairs.diff import (
    changed_lines,
    changed_spans,
    lcs_matches,
    lines_to_spans,
    merge_spans,
    prefix_suffix_matches,
    shift_spans,
    span_line_indices,
    span_lines,
    split_lines,
    widen_spans,
)


def texts(text: str, spans) -> list[str]:
    return [text[s:e] for s, e in spans]


def test_split_lines_round_trip():
    text = "a\nb\r\n\nc"
    assert split_lines(text) == ["a\n", "b\r\n", "\n", "c"]
    assert "".join(split_lines(text)) == text
    assert split_lines("") == []


def test_one_changed_line_in_the_middle():
    rej = "def f(x):\n    y = x - 1\n    return y\n"
    cho = "def f(x):\n    y = x + 1\n    return y\n"
    d_minus, d_plus = changed_spans(rej, cho)
    assert texts(rej, d_minus) == ["    y = x - 1\n"]
    assert texts(cho, d_plus) == ["    y = x + 1\n"]
    start = rej.index("    y")
    assert d_minus == [(start, start + len("    y = x - 1\n"))]


def test_insert_only_fix_has_empty_rejected_side():
    rej = "def f(xs):\n    return xs[0]\n"
    cho = "def f(xs):\n    if not xs:\n        return None\n    return xs[0]\n"
    d_minus, d_plus = changed_spans(rej, cho)
    assert d_minus == []
    assert texts(cho, d_plus) == ["    if not xs:\n        return None\n"]


def test_deleted_line():
    rej = "a = 1\nprint('debug')\nb = 2\n"
    cho = "a = 1\nb = 2\n"
    d_minus, d_plus = changed_spans(rej, cho)
    assert texts(rej, d_minus) == ["print('debug')\n"]
    assert d_plus == []


def test_multiple_separated_changes_give_multiple_spans():
    rej = "l0\nBAD1\nl2\nl3\nl4\nBAD5\nl6\n"
    cho = "l0\nGOOD1\nl2\nl3\nl4\nGOOD5\nl6\n"
    d_minus, d_plus = changed_spans(rej, cho)
    assert texts(rej, d_minus) == ["BAD1\n", "BAD5\n"]
    assert texts(cho, d_plus) == ["GOOD1\n", "GOOD5\n"]


def test_adjacent_changed_lines_merge():
    rej = "keep\nx1\nx2\nx3\nend\n"
    cho = "keep\ny1\nend\n"
    d_minus, d_plus = changed_spans(rej, cho)
    assert texts(rej, d_minus) == ["x1\nx2\nx3\n"]
    assert len(d_minus) == 1
    assert texts(cho, d_plus) == ["y1\n"]


def test_last_line_without_trailing_newline():
    rej = "def f():\n    return 1"
    cho = "def f():\n    return 2"
    d_minus, d_plus = changed_spans(rej, cho)
    assert d_minus == [(len("def f():\n"), len(rej))]
    assert texts(rej, d_minus) == ["    return 1"]
    assert texts(cho, d_plus) == ["    return 2"]


def test_missing_final_newline_is_not_a_change():
    # "x" at the end of one text and "x\n" in the middle of the other are the same line.
    rej = "a\nx"
    cho = "a\nx\ny"
    d_minus, d_plus = changed_spans(rej, cho)
    assert d_minus == []
    assert texts(cho, d_plus) == ["y"]


def test_identical_and_empty_texts():
    code = "a\nb\n"
    assert changed_spans(code, code) == ([], [])
    assert changed_spans("", "") == ([], [])
    assert changed_spans("", code) == ([], [(0, len(code))])
    assert changed_spans(code, "") == ([(0, len(code))], [])


def test_lcs_beats_prefix_suffix():
    # A line moved from the top to the bottom: LCS keeps the body matched, while the
    # prefix/suffix diff has no common head or tail and marks everything.
    rej = "import os\na\nb\nc\nd\n"
    cho = "a\nb\nc\nd\nimport os\n"
    lcs_minus, lcs_plus = changed_spans(rej, cho, "lcs")
    ps_minus, ps_plus = changed_spans(rej, cho, "prefix_suffix")
    assert texts(rej, lcs_minus) == ["import os\n"]
    assert texts(cho, lcs_plus) == ["import os\n"]
    assert ps_minus == [(0, len(rej))]
    assert ps_plus == [(0, len(cho))]


def test_prefix_suffix_covers_everything_between():
    rej = "head\nBAD\nmid\nBAD2\ntail\n"
    cho = "head\nGOOD\nmid\nGOOD2\ntail\n"
    ps_minus, ps_plus = changed_spans(rej, cho, "prefix_suffix")
    assert texts(rej, ps_minus) == ["BAD\nmid\nBAD2\n"]
    assert texts(cho, ps_plus) == ["GOOD\nmid\nGOOD2\n"]
    lcs_minus, _ = changed_spans(rej, cho, "lcs")
    assert texts(rej, lcs_minus) == ["BAD\n", "BAD2\n"]


def test_unknown_method_raises():
    with pytest.raises(ValueError, match="unknown diff method"):
        changed_spans("a\n", "b\n", "difflib")


def brute_lcs_len(a: list[str], b: list[str]) -> int:
    @functools.lru_cache(maxsize=None)
    def go(i: int, j: int) -> int:
        if i == len(a) or j == len(b):
            return 0
        if a[i] == b[j]:
            return 1 + go(i + 1, j + 1)
        return max(go(i + 1, j), go(i, j + 1))

    return go(0, 0)


def exhaustive_lcs_len(a: list[str], b: list[str]) -> int:
    """Largest common subsequence found by enumerating every subsequence of ``a``."""
    best = 0
    n = len(a)
    for mask in range(1 << n):
        sub = [a[i] for i in range(n) if mask >> i & 1]
        if len(sub) <= best:
            continue
        it = iter(b)
        if all(any(x == y for y in it) for x in sub):
            best = len(sub)
    return best


def check_valid_matching(a, b, matches):
    assert all(a[i] == b[j] for i, j in matches)
    assert all(i1 < i2 and j1 < j2 for (i1, j1), (i2, j2) in zip(matches, matches[1:]))


def test_lcs_is_optimal_on_random_line_lists():
    rng = random.Random(1234)
    alphabet = ["a\n", "b\n", "c\n", "d\n"]
    for case in range(400):
        a = [rng.choice(alphabet[: rng.randint(1, 4)]) for _ in range(rng.randint(0, 9))]
        b = [rng.choice(alphabet[: rng.randint(1, 4)]) for _ in range(rng.randint(0, 9))]
        matches = lcs_matches(a, b)
        check_valid_matching(a, b, matches)
        expected = exhaustive_lcs_len(a, b)
        assert brute_lcs_len(a, b) == expected
        assert len(matches) == expected, (case, a, b, matches)
        ps = prefix_suffix_matches(a, b)
        check_valid_matching(a, b, ps)
        assert len(ps) <= expected


def test_lcs_is_deterministic_and_consistent_with_changed_lines():
    rng = random.Random(7)
    for _ in range(100):
        a = [rng.choice("abcde") + "\n" for _ in range(rng.randint(0, 15))]
        b = [rng.choice("abcde") + "\n" for _ in range(rng.randint(0, 15))]
        assert lcs_matches(a, b) == lcs_matches(list(a), list(b))
        d_minus, d_plus = changed_lines("".join(a), "".join(b))
        m = lcs_matches(a, b)
        assert len(d_minus) == len(a) - len(m)
        assert len(d_plus) == len(b) - len(m)


def test_lcs_handles_a_few_hundred_lines_quickly():
    rng = random.Random(0)
    a = [f"line {rng.randint(0, 50)}\n" for _ in range(400)]
    b = list(a)
    for _ in range(40):
        b[rng.randrange(len(b))] = f"changed {rng.random()}\n"
    matches = lcs_matches(a, b)
    check_valid_matching(a, b, matches)
    assert len(matches) >= 360


def test_spans_round_trip_to_whole_lines():
    rng = random.Random(99)
    for _ in range(200):
        a = [rng.choice(["x = 1", "y = 2", "", "# c", "return z"]) + "\n" for _ in range(rng.randint(0, 10))]
        b = [rng.choice(["x = 1", "y = 3", "", "# c", "return z"]) + "\n" for _ in range(rng.randint(0, 10))]
        rej, cho = "".join(a).rstrip("\n"), "".join(b)
        for method in ("lcs", "prefix_suffix"):
            d_minus_idx, d_plus_idx = changed_lines(rej, cho, method)
            d_minus, d_plus = changed_spans(rej, cho, method)
            for text, spans, idx in ((rej, d_minus, d_minus_idx), (cho, d_plus, d_plus_idx)):
                lines = split_lines(text)
                # Spans are sorted, disjoint, non-adjacent, and start/end on line boundaries.
                assert all(e1 < s2 for (_, e1), (s2, _) in zip(spans, spans[1:]))
                starts = {0, len(text)} | {sum(map(len, lines[:k])) for k in range(len(lines))}
                assert all(s in starts and e in starts and s < e for s, e in spans)
                assert "".join(texts(text, spans)) == "".join(lines[i] for i in idx)
                assert span_line_indices(text, spans) == idx
                assert span_lines(text, spans) == [lines[i] for i in idx]


def test_widen_spans():
    text = "l0\nl1\nl2\nl3\nl4\nl5\nl6"
    lines = split_lines(text)
    spans = lines_to_spans(lines, [3])
    assert texts(text, widen_spans(text, spans, 0)) == ["l3\n"]
    assert texts(text, widen_spans(text, spans, 1)) == ["l2\nl3\nl4\n"]
    assert texts(text, widen_spans(text, spans, 2)) == ["l1\nl2\nl3\nl4\nl5\n"]
    # Clipped at both ends.
    assert widen_spans(text, spans, 10) == [(0, len(text))]
    # Two spans whose contexts overlap merge; distant ones stay apart.
    two = lines_to_spans(lines, [0, 6])
    assert texts(text, widen_spans(text, two, 1)) == ["l0\nl1\n", "l5\nl6"]
    assert widen_spans(text, two, 3) == [(0, len(text))]
    # A span inside a line widens to whole lines.
    assert texts(text, widen_spans(text, [(4, 5)], 0)) == ["l1\n"]
    assert widen_spans(text, [], 2) == []
    with pytest.raises(ValueError):
        widen_spans(text, spans, -1)


def test_shift_and_merge_spans():
    assert shift_spans([(0, 3), (5, 9)], 10) == [(10, 13), (15, 19)]
    assert shift_spans([], 4) == []
    assert merge_spans([(5, 9), (0, 3), (3, 4), (8, 12), (20, 20)]) == [(0, 4), (5, 12)]


def test_lines_to_spans_merges_runs():
    lines = ["a\n", "b\n", "c\n", "d\n", "e"]
    assert lines_to_spans(lines, [4, 0, 1, 3]) == [(0, 4), (6, 9)]
    with pytest.raises(IndexError):
        lines_to_spans(lines, [5])
