"""records.py: JSONL round trips and the errors a broken file raises (file:line + field path)."""

from __future__ import annotations

import json

import pytest

from iterpref.records import (
    Attempt,
    Outcome,
    Pair,
    Problem,
    RecordError,
    Trajectory,
    append_jsonl,
    from_dict,
    iter_jsonl,
    read_jsonl,
    to_dict,
    write_jsonl,
)

PROBLEM = Problem(
    task_id="t/001",
    instruction="Add two numbers. Unicode too: é ✓",
    signature="def add(a: int, b: int) -> int:",
    entry_point="add",
    reference="def add(a: int, b: int) -> int:\n    return a + b\n",
    tests="import unittest\nfrom solution import add\n",
)
FAILED = Outcome(passed=False, status="failed", tests_run=3, failures=1, errors=0, error_type="AssertionError",
                 traceback="Traceback...\nAssertionError: 1 != 2", duration_s=0.25)
PASSED = Outcome(passed=True, status="passed", tests_run=3, duration_s=0.5)
TRAJ = Trajectory(
    trajectory_id="t/001#0", task_id="t/001", teacher="mutation", seed=123,
    attempts=[Attempt(round=0, code="def add(a, b):\n    return a - b\n", outcome=FAILED, note="injected"),
              Attempt(round=1, code="def add(a, b):\n    return a + b\n", outcome=PASSED)],
    solved=True, provenance={"params_hash": "abc", "nested": {"x": [1, 2]}},
)
PAIR = Pair(
    pair_id="t/001#0:0-1", task_id="t/001", prompt="Add two numbers.",
    chosen="```python\nreturn a + b\n```", rejected="```python\nreturn a - b\n```",
    rejected_spans=[(10, 23)], chosen_spans=[(10, 23), (0, 3)], chosen_round=1, rejected_round=0,
    rejected_error="AssertionError", provenance={"trajectory": "t/001#0"},
)


def traj_dict() -> dict:
    return json.loads(json.dumps(to_dict(TRAJ)))


def write_lines(path, lines) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("cls,record", [(Problem, PROBLEM), (Trajectory, TRAJ), (Pair, PAIR)])
def test_round_trip(tmp_path, cls, record):
    path = tmp_path / "sub" / "records.jsonl"  # parent folder is created
    assert write_jsonl(path, [record, record]) == 2
    back = read_jsonl(path, cls)
    assert back == [record, record]


def test_nested_records_are_built_as_dataclasses(tmp_path):
    path = tmp_path / "t.jsonl"
    write_jsonl(path, [TRAJ])
    (t,) = read_jsonl(path, Trajectory)
    assert isinstance(t.attempts[0], Attempt)
    assert isinstance(t.attempts[0].outcome, Outcome)
    assert t.attempts[1].outcome.passed is True
    assert t.attempts[1].note == ""  # default filled in
    assert t.provenance == {"params_hash": "abc", "nested": {"x": [1, 2]}}


def test_pair_spans_come_back_as_tuples(tmp_path):
    path = tmp_path / "p.jsonl"
    write_jsonl(path, [PAIR])
    raw = json.loads(path.read_text().splitlines()[0])
    assert raw["rejected_spans"] == [[10, 23]]  # JSON has lists
    (p,) = read_jsonl(path, Pair)
    assert p.rejected_spans == [(10, 23)]
    assert all(isinstance(s, tuple) for s in p.rejected_spans + p.chosen_spans)


def test_defaults_and_int_to_float(tmp_path):
    d = to_dict(PROBLEM)
    del d["source"]
    o = {"passed": False, "status": "timeout", "duration_s": 2}
    out = from_dict(Outcome, o)
    assert out.duration_s == 2.0 and isinstance(out.duration_s, float)
    assert out.error_type is None and out.tests_run == 0
    assert from_dict(Problem, d).source == "seed"


def test_unicode_is_written_verbatim(tmp_path):
    path = tmp_path / "p.jsonl"
    write_jsonl(path, [PROBLEM])
    assert "é ✓" in path.read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- errors


def test_invalid_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    write_lines(path, [json.dumps(to_dict(PROBLEM)), '{"task_id": "x", '])
    with pytest.raises(RecordError, match=rf"{path}:2: invalid JSON"):
        read_jsonl(path, Problem)


def test_missing_required_field(tmp_path):
    d = to_dict(PROBLEM)
    del d["entry_point"]
    path = tmp_path / "p.jsonl"
    write_lines(path, [json.dumps(d)])
    with pytest.raises(RecordError) as e:
        read_jsonl(path, Problem)
    assert str(e.value).startswith(f"{path}:1: ")
    assert "Problem.entry_point: missing required field" in str(e.value)


def test_missing_required_nested_field(tmp_path):
    d = traj_dict()
    del d["attempts"][0]["outcome"]["status"]
    path = tmp_path / "t.jsonl"
    write_lines(path, [json.dumps(traj_dict()), json.dumps(d)])
    with pytest.raises(RecordError, match=r":2: Trajectory\.attempts\[0\]\.outcome\.status: missing required field"):
        read_jsonl(path, Trajectory)


def test_wrong_type_in_nested_field_names_the_path(tmp_path):
    d = traj_dict()
    d["attempts"][1]["outcome"]["passed"] = "yes"
    path = tmp_path / "t.jsonl"
    write_lines(path, ["", json.dumps(traj_dict()), json.dumps(d)])
    with pytest.raises(RecordError) as e:
        read_jsonl(path, Trajectory)
    msg = str(e.value)
    assert f"{path}:3:" in msg
    assert "attempts[1].outcome.passed" in msg
    assert "expected bool, got str" in msg


@pytest.mark.parametrize("field,value,expect", [
    ("seed", True, "seed: expected int, got bool"),       # bool is not an int here
    ("seed", 1.5, "seed: expected int, got float"),
    ("attempts", {"round": 0}, "attempts: expected a list, got dict"),
    ("provenance", [], "provenance: expected an object, got list"),
    ("solved", None, "solved: expected bool, got NoneType"),
])
def test_wrong_top_level_types(tmp_path, field, value, expect):
    d = traj_dict()
    d[field] = value
    path = tmp_path / "t.jsonl"
    write_lines(path, [json.dumps(d)])
    with pytest.raises(RecordError, match=rf"{path}:1: Trajectory\.{expect}"):
        read_jsonl(path, Trajectory)


def test_optional_field_rejects_wrong_type(tmp_path):
    d = traj_dict()
    d["attempts"][0]["outcome"]["error_type"] = 5
    path = tmp_path / "t.jsonl"
    write_lines(path, [json.dumps(d)])
    # the message names the real type, not the null arm of `str | None`
    with pytest.raises(RecordError, match=r"attempts\[0\]\.outcome\.error_type: expected str, got int"):
        read_jsonl(path, Trajectory)
    d["attempts"][0]["outcome"]["error_type"] = None
    write_lines(path, [json.dumps(d)])
    assert read_jsonl(path, Trajectory)[0].attempts[0].outcome.error_type is None


def test_bad_span_shape(tmp_path):
    d = to_dict(PAIR)
    d["rejected_spans"] = [[1, 2], [3]]
    path = tmp_path / "p.jsonl"
    write_lines(path, [json.dumps(d)])
    with pytest.raises(RecordError, match=r"p\.jsonl:1: Pair\.rejected_spans\[1\]: expected a list of 2 items"):
        read_jsonl(path, Pair)
    d["rejected_spans"] = [[1, "2"]]
    write_lines(path, [json.dumps(d)])
    with pytest.raises(RecordError, match=r"rejected_spans\[0\]\[1\]: expected int, got str"):
        read_jsonl(path, Pair)


def test_unknown_field(tmp_path):
    d = to_dict(PROBLEM)
    d["difficulty"] = "easy"
    path = tmp_path / "p.jsonl"
    write_lines(path, [json.dumps(d)])
    with pytest.raises(RecordError, match=rf"{path}:1: .*unknown field\(s\) \['difficulty'\] for Problem"):
        read_jsonl(path, Problem)


def test_unknown_nested_field(tmp_path):
    d = traj_dict()
    d["attempts"][1]["outcome"]["stdout"] = ""
    path = tmp_path / "t.jsonl"
    write_lines(path, [json.dumps(d)])
    with pytest.raises(RecordError, match=r"attempts\[1\]\.outcome: unknown field\(s\) \['stdout'\] for Outcome"):
        read_jsonl(path, Trajectory)


def test_line_that_is_not_an_object(tmp_path):
    path = tmp_path / "p.jsonl"
    write_lines(path, ["[1, 2]"])
    with pytest.raises(RecordError, match=r"p\.jsonl:1: .*expected an object, got list"):
        read_jsonl(path, Problem)


def test_iter_jsonl_yields_good_lines_before_the_bad_one(tmp_path):
    path = tmp_path / "p.jsonl"
    write_lines(path, [json.dumps(to_dict(PROBLEM)), "not json"])
    it = iter_jsonl(path, Problem)
    assert next(it) == PROBLEM
    with pytest.raises(RecordError, match=":2: invalid JSON"):
        next(it)


# ----------------------------------------------------------------------------- files


def test_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "p.jsonl"
    line = json.dumps(to_dict(PROBLEM))
    path.write_text(f"\n{line}\n   \n\n{line}\n\t\n", encoding="utf-8")
    assert read_jsonl(path, Problem) == [PROBLEM, PROBLEM]


def test_blank_lines_keep_line_numbers_right(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(f"\n\n{json.dumps(to_dict(PROBLEM))}\n\n{{oops\n", encoding="utf-8")
    with pytest.raises(RecordError, match=":5: invalid JSON"):
        read_jsonl(path, Problem)


def test_append_jsonl_appends(tmp_path):
    path = tmp_path / "new" / "log.jsonl"
    append_jsonl(path, TRAJ)
    append_jsonl(path, TRAJ)
    other = Trajectory(**{**TRAJ.__dict__, "trajectory_id": "t/001#1", "solved": False})
    append_jsonl(path, other)
    assert read_jsonl(path, Trajectory) == [TRAJ, TRAJ, other]
    assert len(path.read_text().splitlines()) == 3


def test_write_jsonl_replaces_and_leaves_no_tmp(tmp_path):
    path = tmp_path / "p.jsonl"
    write_jsonl(path, [PROBLEM, PROBLEM, PROBLEM])
    assert write_jsonl(path, (p for p in [PROBLEM])) == 1  # a generator works; file replaced
    assert read_jsonl(path, Problem) == [PROBLEM]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl"]


def test_write_jsonl_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "p.jsonl"
    write_jsonl(path, [PROBLEM])
    before = path.read_text()

    def records():
        yield PROBLEM
        raise RuntimeError("crash halfway")

    with pytest.raises(RuntimeError, match="crash halfway"):
        write_jsonl(path, records())
    assert path.read_text() == before  # the half-written temp file never replaced it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl"]  # and it was removed


def test_write_jsonl_empty(tmp_path):
    path = tmp_path / "empty.jsonl"
    assert write_jsonl(path, []) == 0
    assert path.read_text() == ""
    assert read_jsonl(path, Pair) == []
