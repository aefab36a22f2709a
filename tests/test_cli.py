"""The command-line tools: console scripts with --help, and a user's mistake answered with one
line on stderr and exit status 2 (a traceback only for bugs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import processes
import pytest

BIN = Path(sys.executable).parent
TOOLS = ["iterpref-eval", "iterpref-rescore", "iterpref-compare", "iterpref-wandb-report", "iterpref-params",
         "iterpref-lock-check", "iterpref-deps"]


def tool(name: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return processes.run([str(BIN / name), *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def one_line_error(proc: subprocess.CompletedProcess, name: str) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    first = proc.stderr.strip().splitlines()[0]
    assert first.startswith(f"{name}: error: "), proc.stderr
    return proc.stderr


@pytest.mark.parametrize("name", TOOLS)
def test_every_console_script_answers_help(name):
    proc = tool(name, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage:" in proc.stdout


def test_eval_help_names_the_other_modes():
    out = tool("iterpref-eval", "--help").stdout
    assert "iterpref-rescore" in out and "iterpref-compare" in out


def test_compare_without_results_is_one_line(tmp_path):
    err = one_line_error(tool("iterpref-compare", "dpo", "target_dpo", "--eval-dir", str(tmp_path)), "iterpref-compare")
    assert "'dpo': no result files in" in err


def test_compare_of_different_task_sets_is_one_line(tmp_path):
    for variant, ids in (("a", ["HumanEval/0", "HumanEval/1"]), ("b", ["HumanEval/0", "HumanEval/2"])):
        (tmp_path / variant).mkdir()
        doc = {"benchmark": "humaneval", "per_task": [{"task_id": t, "passed": True} for t in ids]}
        (tmp_path / variant / "humaneval.json").write_text(json.dumps(doc))
    err = one_line_error(tool("iterpref-compare", "a", "b", "--eval-dir", str(tmp_path)), "iterpref-compare")
    assert "the two results cover different tasks" in err


def test_rescore_names_the_file_and_line_of_a_bad_row(tmp_path):
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"task_id": "HumanEval/0", "completion": "    return 1\n"}) + "\n"
                       + json.dumps({"task_id": "HumanEval/1"}) + "\n")
    err = one_line_error(tool("iterpref-rescore", "humaneval", str(samples)), "iterpref-rescore")
    assert f"{samples}:2: field 'completion'" in err


def test_rescore_of_a_missing_file_is_one_line(tmp_path):
    err = one_line_error(tool("iterpref-rescore", "humaneval", str(tmp_path / "nope.jsonl")), "iterpref-rescore")
    assert "nope.jsonl" in err


def test_params_with_a_bad_override_is_one_line():
    err = one_line_error(tool("iterpref-params", "--check", "train.common.beta=abc"), "iterpref-params")
    assert "train.common.beta = 'abc': expected float" in err


def test_eval_defaults_are_the_evaluate_stages():
    """iterpref-eval decodes like the evaluate stage unless told otherwise: conf/eval/default.yaml."""
    from iterpref import params as P
    from iterpref.evaluation.__main__ import parser

    ecfg = P.compose()["eval"]
    ap = parser()
    assert ap.get_default("max_new_tokens") == ecfg["sampling"]["max_new_tokens"]
    assert ap.get_default("batch_size") == ecfg["sampling"]["batch_size"]
    assert ap.get_default("threads") == P.compose()["runtime"]["threads"]
    assert ap.get_default("prompt") == ecfg["prompt"] and ap.get_default("limit") == ecfg["limit"]


@pytest.mark.parametrize("outside, expected", [(None, "100000"), ("7", "7")])
def test_the_package_sets_openmps_spin_before_torch_loads(outside, expected):
    """Every stage imports iterpref before torch: the package shortens libgomp's spin, which
    libgomp reads when torch loads it; a value set outside wins."""
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    if outside is not None:
        env["GOMP_SPINCOUNT"] = outside
    code = "import sys, os, iterpref; assert 'torch' not in sys.modules; print(os.environ['GOMP_SPINCOUNT'])"
    proc = processes.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == expected, proc.stderr
