"""The probes under bench/ that back README findings, run on small real inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from iterpref.records import Attempt, Outcome, Problem, Trajectory, write_jsonl

ROOT = Path(__file__).resolve().parents[1]
TESTS = """\
import unittest
from solution import double

class T(unittest.TestCase):
    def test_it(self):
        self.assertEqual(double(2), 4)
"""


def test_sanitise_probe_rescues_only_versions_broken_by_stray_code(tmp_path):
    problem = Problem("p/0", "Double a number.", "def double(x):", "double", "def double(x):\n    return 2 * x\n", TESTS)
    failed = Outcome(passed=False, status="import_error", error_type="AssertionError")
    stray_assert = "def double(x):\n    return 2 * x\n\nassert double(2) == 5\n"  # the function is right
    wrong = "def double(x):\n    return x + 1\n\nassert double(1) == 2\nprint(double(3))\n"  # it is not
    trajectories = [Trajectory("p/0#0", "p/0", "llm:x", 0, [Attempt(0, stray_assert, failed)], solved=False),
                    Trajectory("p/0#1", "p/0", "llm:x", 1, [Attempt(0, wrong, failed)], solved=False)]
    write_jsonl(tmp_path / "problems.jsonl", [problem])
    write_jsonl(tmp_path / "trajectories.jsonl", trajectories)
    out = subprocess.run([sys.executable, str(ROOT / "bench/sanitise_probe.py"), str(tmp_path / "trajectories.jsonl"),
                          "--problems", str(tmp_path / "problems.jsonl")], capture_output=True, text=True, check=True)
    report = json.loads(out.stdout)
    assert report["failing_versions"] == 2 and report["changed_by_sanitising"] == 2
    assert report["passing_once_sanitised"] == 1 and report["unsolved_problems_rescued"] == 1
    assert report["before_to_after"] == {"import_error -> passed": 1, "import_error -> failed": 1}
