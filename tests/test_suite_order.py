"""The suite's order: tests/conftest.py collects the longest modules first, in LONGEST_FIRST's
order, so that `make test`'s processes (xdist, --no-loadscope-reorder) start them at once."""

from __future__ import annotations

import sys
from pathlib import Path

import processes
from conftest import LONGEST_FIRST

TESTS = Path(__file__).resolve().parent


def test_every_longest_module_is_in_the_suite():
    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)
    assert [n for n in LONGEST_FIRST if not (TESTS / n).is_file()] == []


def test_collection_puts_the_longest_modules_first_in_their_order():
    args = ["tests/test_layers.py", "tests/test_sweeps_optuna.py", "tests/test_params.py", "tests/test_pipeline.py"]
    out = processes.run([sys.executable, "-m", "pytest", "--collect-only", "-q", *args],
                        cwd=TESTS.parent, capture_output=True, text=True, check=True).stdout
    modules = [line.split("::")[0] for line in out.splitlines() if "::" in line]
    order = list(dict.fromkeys(modules))
    assert order == ["tests/test_pipeline.py", "tests/test_sweeps_optuna.py", "tests/test_layers.py",
                     "tests/test_params.py"], order
