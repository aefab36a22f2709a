"""BigCodeBench through bigcodebench 0.2.5's own evaluator in the real sandbox: verdicts equal to
its CLI's on the same samples, error types, references, the registry's four names, the ground-truth
cache, and the data errors (missing file, unreachable hub, bad record)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import processes
import pytest
from silent_server import silent_server

from iterpref.evaluation import errors, registry
from iterpref.evaluation.benchmark import SetupError
from iterpref.records import write_jsonl
from iterpref.sandbox import SandboxConfig

pytestmark = pytest.mark.skipif(importlib.util.find_spec("bigcodebench") is None,
                                reason="bigcodebench is not installed (make install)")

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "bigcodebench"
FULL = FIXTURES / "BigCodeBench-mini.jsonl"  # real tasks 4, 7, 86, 116, 33
HARD = FIXTURES / "BigCodeBench-Hard-mini.jsonl"  # real Hard tasks 19, 120, 100
SANDBOX = SandboxConfig(workers=2)
DATA = {f"bigcodebench_{subset}_{split}": str(FULL if subset == "full" else HARD)
        for subset in ("full", "hard") for split in ("complete", "instruct")}

# Wrong answers, each as a copy of a fixture task under its own id: (task, answer, error type).
CASES = {
    "BigCodeBench/4#KeyError": ("BigCodeBench/4", """\
from collections import Counter
import itertools
def task_func(d):
    counts = {}
    for values in d.values():
        for v in values:
            counts[v] += 1
    return counts
""", "KeyError"),
    "BigCodeBench/4#wrong-output": ("BigCodeBench/4", """\
from collections import Counter
def task_func(d):
    return dict(Counter(d.keys()))
""", "AssertionError"),
    "BigCodeBench/7#FileNotFoundError": ("BigCodeBench/7", """\
import csv
import os
def task_func(csv_file_path):
    with open(os.path.join(os.path.dirname(csv_file_path), 'sales.csv')) as f:
        return next(csv.reader(f))[0]
""", "FileNotFoundError"),
    "BigCodeBench/86#AttributeError": ("BigCodeBench/86", """\
import numpy as np
import pandas as pd
def task_func(students=["Alice", "Bob", "Charlie", "David", "Eve"], seed=42):
    np.random.seed(seed)
    df = pd.DataFrame({"Student": students, "Score": np.random.randint(0, 100, len(students))})
    df = df.sort_by("Score")
    return df, df.plot(x="Student", y="Score", kind="bar")
""", "AttributeError"),
    "BigCodeBench/86#SyntaxError": ("BigCodeBench/86", """\
import numpy as np
def task_func(students, seed=42):
    return (np.random.seed(seed)
""", "SyntaxError"),
    "BigCodeBench/33#NameError": ("BigCodeBench/33", """\
import numpy as np
from functools import reduce
def task_func(list_of_pairs):
    product = reduce(np.multiply, [pair[1] for pair in list_of_pairs])
    return np.array([prodcut])
""", "NameError"),
    "BigCodeBench/7#body-only": ("BigCodeBench/7", None, None),  # the canonical body, no def
}

HANG = """\
import time
def task_func(seed=42):
    while True:
        time.sleep(0.05)
"""


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def cli_verdicts(data: Path, samples: list[dict], folder: Path, subset: str = "full", split: str = "complete"):
    """``python -m bigcodebench.evaluate --execution local`` on ``samples``: ({task: status}, seconds)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "samples.jsonl"
    write_jsonl(path, samples)
    env = {**os.environ, "BIGCODEBENCH_OVERRIDE_PATH": str(data), "XDG_CACHE_HOME": str(folder / "xdg")}
    start = time.time()
    proc = processes.run([sys.executable, "-m", "bigcodebench.evaluate", "--execution", "local", "--split", split,
                           "--subset", subset, "--samples", str(path), "--pass_k", "1,5", "--parallel", "2"],
                          env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((folder / "samples_eval_results.json").read_text())["eval"]
    return {task: rows[0]["status"] for task, rows in results.items()}, time.time() - start


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """The fixture's five tasks answered by their references plus each wrong answer of CASES on
    a copy of its task, scored by us and by the CLI on the same data file and samples."""
    tmp = tmp_path_factory.mktemp("bcb_full")
    records = {r["task_id"]: r for r in read(FULL)}
    data = tmp / "BigCodeBench-cases.jsonl"
    write_jsonl(data, [*records.values(), *({**records[src], "task_id": tid} for tid, (src, _, _) in CASES.items())])
    bench = registry.get("bigcodebench_full_complete", {"bigcodebench_full_complete": str(data)})
    bench.cache_dir = tmp / "cache"
    tasks = bench.load()
    codes = []
    for t in tasks:
        if t.task_id in records:
            codes.append(bench.reference(t))
        else:
            src, code, _ = CASES[t.task_id]
            codes.append(records[src]["canonical_solution"] if code is None else code)
    start = time.time()
    ours = bench.score(tasks, codes, SANDBOX)
    ours_s = time.time() - start
    cli, cli_s = cli_verdicts(data, [bench.sample(t, c) for t, c in zip(tasks, codes)], tmp / "cli")
    print(f"\n{len(tasks)} tasks: ours {ours_s:.1f} s (ground truth computed), CLI {cli_s:.1f} s")
    return {"bench": bench, "tasks": tasks, "ours": ours, "cli": cli}


@pytest.fixture(scope="module")
def hard_refs(tmp_path_factory):
    """The Hard fixture on the instruct split, references scored (ground truth computed and cached)."""
    bench = registry.get("bigcodebench_hard_instruct", DATA)
    bench.cache_dir = tmp_path_factory.mktemp("bcb_hard_cache")
    tasks = bench.load()
    start = time.time()
    verdicts = bench.score(tasks, [bench.reference(t) for t in tasks], SANDBOX)
    print(f"\nHard references: {time.time() - start:.1f} s (ground truth computed)")
    return bench, tasks, verdicts


# ----------------------------------------------------------------------------- verdicts


def test_verdicts_equal_the_cli(full_run):
    ours = {v.task_id: v.status for v in full_run["ours"]}
    assert [v.task_id for v in full_run["ours"]] == [t.task_id for t in full_run["tasks"]]
    assert ours == full_run["cli"]
    assert {v.task_id: v.passed for v in full_run["ours"]} == {k: s == "pass" for k, s in ours.items()}


def test_failures_carry_their_error_type(full_run):
    got = {v.task_id: (v.status, v.error_type) for v in full_run["ours"]}
    for task_id, (_, _, error_type) in CASES.items():
        assert got[task_id] == ("fail" if error_type else "pass", error_type), task_id
    named = {v.task_id: v for v in full_run["ours"]}
    assert "prodcut" in named["BigCodeBench/33#NameError"].detail  # bigcodebench's own traceback
    assert "never closed" in named["BigCodeBench/86#SyntaxError"].detail


def test_references_pass(full_run, hard_refs):
    refs = [v for v in full_run["ours"] if "#" not in v.task_id]
    assert len(refs) == 5 and all(v.passed and v.status == "pass" and v.error_type is None for v in refs)
    assert all(v.passed for v in hard_refs[2]), hard_refs[2]


def test_timeout_and_ground_truth_cache_hit(hard_refs, monkeypatch):
    """A hanging answer is a timeout (a short per-task limit here; bigcodebench's own is 240 s);
    the second scoring of the same data reuses the cached ground truth and never rewrites it."""
    from iterpref.evaluation import bigcodebench as module

    bench, tasks, _ = hard_refs
    (cached,) = bench.cache_dir.glob("*.pkl")
    before = cached.read_bytes(), cached.stat().st_mtime_ns
    modes = []
    real = module.run_official
    monkeypatch.setattr(module, "run_official", lambda args, *a, **k: modes.append(args[1]) or real(args, *a, **k))
    monkeypatch.setattr(bench, "task_timeout_s", 8.0)
    codes = [bench.reference(tasks[0]), bench.reference(tasks[1]), HANG]
    start = time.time()
    verdicts = bench.score(tasks, codes, SANDBOX)
    print(f"\nHard with a timeout: {time.time() - start:.1f} s (ground truth cached)")
    assert [(v.status, v.error_type) for v in verdicts] == [("pass", None), ("pass", None), ("timeout", errors.TIMEOUT)]
    assert modes == ["evaluate"]  # no ground-truth run
    assert (cached.read_bytes(), cached.stat().st_mtime_ns) == before


def test_failure_type_prefers_errors_and_names_bigcodebench_timer():
    from iterpref.evaluation.bigcodebench import failure_type

    tb = "Traceback (most recent call last):\n  File \"__test__.py\", line 3, in f\n{}\n"
    assert failure_type({"test_a": tb.format("AssertionError: 1 != 2"), "test_b": tb.format("KeyError: 'x'")}) == "KeyError"
    assert failure_type({"test_a": tb.format("AssertionError: 1 != 2")}) == "AssertionError"
    assert failure_type({"test_a": tb.format("bigcodebench.eval.utils.TimeoutException: Timed out!")}) == "Timeout"
    assert failure_type({"ALL": "name 'x' is not defined"}) is None


@pytest.mark.slow
def test_timeout_verdict_equals_the_cli_at_the_official_limit(tmp_path):
    """bigcodebench's own 240 s limit, ours and the CLI's side by side (about 4 minutes)."""
    data = tmp_path / "one.jsonl"
    write_jsonl(data, [r for r in read(HARD) if r["task_id"] == "BigCodeBench/100"])
    bench = registry.get("bigcodebench_hard_complete", {"bigcodebench_hard_complete": str(data)})
    bench.cache_dir = tmp_path / "cache"
    (task,) = bench.load()
    cli_folder = tmp_path / "cli"
    cli_folder.mkdir()
    write_jsonl(cli_folder / "samples.jsonl", [bench.sample(task, HANG)])
    env = {**os.environ, "BIGCODEBENCH_OVERRIDE_PATH": str(data), "XDG_CACHE_HOME": str(cli_folder / "xdg")}
    # in a session of its own, ended whole: killing only the CLI left its pool worker running
    with processes.started([sys.executable, "-m", "bigcodebench.evaluate", "--execution", "local", "--split",
                            "complete", "--subset", "hard", "--samples", str(cli_folder / "samples.jsonl"),
                            "--pass_k", "1,5", "--parallel", "2"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as cli:
        (ours,) = bench.score([task], [HANG], SANDBOX)
        assert cli.wait(timeout=600) == 0
    theirs = json.loads((cli_folder / "samples_eval_results.json").read_text())["eval"][task.task_id][0]["status"]
    assert (ours.status, ours.error_type) == (theirs, errors.TIMEOUT) == ("timeout", "Timeout")


# ----------------------------------------------------------------------------- tasks and samples


def test_registry_builds_all_four(monkeypatch):
    for subset, n in (("full", 5), ("hard", 3)):
        for split in ("complete", "instruct"):
            bench = registry.get(f"bigcodebench_{subset}_{split}", DATA)
            assert (bench.name, bench.subset, bench.split) == (f"bigcodebench_{subset}_{split}", subset, split)
            assert bench.title == f"BCB-{subset.capitalize()} {split.capitalize()}"
            assert bench.setting == f"eval.data.bigcodebench_{subset}_{split}"
            assert bench.override_env == "BIGCODEBENCH_OVERRIDE_PATH" and bench.packages == ("bigcodebench",)
            assert bench.versions()["bigcodebench"] == "0.2.5"
            tasks = bench.load()
            assert len(tasks) == n and len(bench.load(limit=2)) == 2
            assert all(t.task_id.startswith("BigCodeBench/") and t.entry_point == "task_func" for t in tasks)
            (msg,) = tasks[0].conversation()
            if split == "complete":
                assert tasks[0].code_header == tasks[0].record["complete_prompt"]
                assert "```python" in msg["content"] and '"""' in msg["content"]
            else:
                assert tasks[0].code_header == "" and tasks[0].instruction == tasks[0].record["instruct_prompt"]
                assert "```python" not in msg["content"]


def test_samples_are_the_official_rows():
    complete = registry.get("bigcodebench_full_complete", DATA)
    instruct = registry.get("bigcodebench_full_instruct", DATA)
    t = complete.load()[0]
    body = t.record["canonical_solution"]
    full = t.record["code_prompt"] + body
    assert complete.sample(t, body) == {"task_id": t.task_id, "solution": t.record["complete_prompt"] + "\n" + body}
    assert complete.sample(t, full) == {"task_id": t.task_id, "solution": full}
    assert instruct.sample(t, full) == {"task_id": t.task_id, "solution": full}
    assert complete.reference(t) == t.record["complete_prompt"] + "\n" + body


# ----------------------------------------------------------------------------- data errors


def test_missing_data_file_names_the_setting(tmp_path):
    with pytest.raises(SetupError, match=r"nope\.jsonl does not exist \(set by eval\.data\.bigcodebench_hard_instruct\)"):
        registry.get("bigcodebench_hard_instruct", {"bigcodebench_hard_instruct": str(tmp_path / "nope.jsonl")})


def test_unreachable_hub_fails_fast_naming_the_setting(tmp_path, monkeypatch):
    """No local file and no network: a SetupError within seconds, even from a hub that accepts
    the connection and never answers."""
    import bigcodebench.data.utils

    monkeypatch.setattr(bigcodebench.data.utils, "CACHE_DIR", str(tmp_path / "official"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with silent_server() as silent:
        for endpoint in (silent, "http://127.0.0.1:9"):
            monkeypatch.setenv("HF_ENDPOINT", endpoint)
            bench = registry.get("bigcodebench_hard_complete")
            bench.probe_timeout_s = 1.0
            start = time.time()
            with pytest.raises(SetupError, match=r"eval\.data\.bigcodebench_hard_complete is null.*cannot be reached") as e:
                bench.load()
            assert time.time() - start < 5
            assert "BigCodeBench-Hard-v0.1.4.jsonl" in str(e.value)


def test_official_cache_file_is_used_without_the_network(tmp_path, monkeypatch):
    import bigcodebench.data.utils

    monkeypatch.setattr(bigcodebench.data.utils, "CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    (tmp_path / "BigCodeBench-v0.1.4.jsonl").write_bytes(FULL.read_bytes())
    bench = registry.get("bigcodebench_full_instruct")
    assert bench.data_file() == tmp_path / "BigCodeBench-v0.1.4.jsonl" and len(bench.load()) == 5


def test_bad_record_names_file_line_and_field(tmp_path):
    rows = read(FULL)[:3]
    del rows[1]["test"]
    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, rows)
    with pytest.raises(SetupError, match=rf"{bad}:2: field 'test' missing or not text"):
        registry.get("bigcodebench_full_complete", {"bigcodebench_full_complete": str(bad)}).load()
    rows[1]["test"], rows[2]["entry_point"] = "", 3
    write_jsonl(bad, rows)
    with pytest.raises(SetupError, match=rf"{bad}:3: field 'entry_point'"):
        registry.get("bigcodebench_full_complete", {"bigcodebench_full_complete": str(bad)}).load()
    bad.write_text(FULL.read_text().splitlines()[0] + "\n{not json\n")
    with pytest.raises(SetupError, match=rf"{bad}:2: invalid JSON"):
        registry.get("bigcodebench_full_complete", {"bigcodebench_full_complete": str(bad)}).load()
