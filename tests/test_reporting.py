"""reporting/summary.py and reporting/figures.py: the report stage on small synthetic run folders.

Eval reports follow src/iterpref/evaluation/run.py (plus the stage's variant and peak RSS),
train reports stages/train.py, pairs.json src/iterpref/pairs/build.py and stages/pairs.py, problems.json
src/iterpref/problems/build.py (tests/test_synthesize.py renders a real one), probe reports
src/iterpref/probe (tests/test_probe.py writes real ones).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib.image
import processes
import pytest
import yaml

from iterpref import params as P
from iterpref.reporting import figures
from iterpref.reporting import summary as reporting

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ["humaneval", "mbpp"]
PREFIX = {"humaneval": "HumanEval", "mbpp": "MBPP"}


def eval_report(benchmark: str, variant: str, outcomes: list[bool]) -> dict:
    """An eval report as `iterpref.evaluation.run.evaluate` and stages/evaluate.py write it."""
    passed = sum(outcomes)
    errors = ["AssertionError", "NameError", "SyntaxError"]
    per_task = [{"task_id": f"{PREFIX[benchmark]}/{i}", "passed": ok, "status": "pass" if ok else "fail",
                 "error_type": None if ok else errors[i % 3], "reply": "```python\n```"}
                for i, ok in enumerate(outcomes)]
    kinds: dict[str, int] = {}
    for t in per_task:
        if t["error_type"]:
            kinds[t["error_type"]] = kinds.get(t["error_type"], 0) + 1
    return {"benchmark": benchmark, "model": f"hf:models/trained/{variant}", "tasks": len(outcomes),
            "passed": passed, "pass@1": passed / len(outcomes), "error_types": kinds,
            "timings_s": {"sanity": 0.0, "generation": 12.5, "scoring": 0.75}, "per_task": per_task,
            "variant": variant, "peak_rss_gib": 1.25}


def first(k: int, n: int = 8) -> list[bool]:
    return [True] * k + [False] * (n - k)


# variant: {benchmark: outcomes of 8 tasks}
SCORES = {
    "reference": {"humaneval": first(3), "mbpp": first(5)},
    "dpo": {"humaneval": first(4), "mbpp": first(4)},
    "target_dpo": {"humaneval": first(6)},  # mbpp not evaluated (yet)
}
PAIRS = {"trajectories": 134, "problems": 67, "solved": 134, "solved_first_try": 0,
         "cumulative_pass_rate": {"0": 0.0, "1": 0.4, "2": 0.8, "3": 1.0}, "candidate_pairs": 134,
         "removed": {"comment_only": 0, "identical_ast": 14}, "pairs": 120, "rejected_lines_mean": 1.7,
         "rejected_lines_median": 1.0, "training_pairs": 96, "training_problems": 54, "heldout_pairs": 24,
         "heldout_problems": 13}
HITS = [{"task_id": f"synthesize/{i:04d}-0", "field": "instruction" if i % 2 else "reference",
         "benchmark_task": f"humaneval:HumanEval/{i}", "score": 0.5 + i / 100} for i in range(23)]
PROBLEMS = {"source": "synthesize", "candidates": 40, "kept": 12, "kept_share": 0.3,
            "dropped": {"contaminated": 23, "reference_fails": 3, "stub_passes": 2},
            "per_source": {"synthesize:openai:gpt-4o": {"kept": 12, "tests": 54}},
            "tests": {"total": 54, "mean": 4.5, "min": 2, "max": 9},
            "decontamination": {"benchmarks": {"humaneval": 164, "mbpp": 500}, "ngram": 8, "threshold": 0.5,
                                "removed": 23, "hits": HITS},
            "validation": {"checked": 17, "resumed": 4, "wall_s": 3.1, "problems_per_s": 4.19},
            "source_stats": {"requests": 40, "teacher_cache": {"hits": 10, "misses": 30}},
            "drop_examples": {"contaminated": ["synthesize/0000-0: reference overlaps humaneval:HumanEval/0 at 0.50"],
                              "reference_fails": ["synthesize/0031-0: test_a: AssertionError: 1 | 2\n  != 3"],
                              "stub_passes": []}}
CURVE = [{"step": 1, "loss": 0.69, "rewards/margins": 0.0, "rewards/accuracies": 0.0},
         {"step": 2, "loss": 0.6, "rewards/margins": 0.1, "rewards/accuracies": 0.75}]
TRAIN = {
    "dpo": {"pairs": 64, "steps": 16, "train_loss": 0.69314718, "train_runtime_s": 42.1,
            "rewards/accuracies": 0.5, "rewards/margins": 0.0123456, "peak_rss_gib": 3.5, "curve": CURVE},
    "target_dpo": {"pairs": 64, "steps": 16, "train_loss": 0.5, "train_runtime_s": 40.0,
                   "rewards/accuracies": None, "rewards/margins": None},  # an older report: no RSS, no curve
}


def interval(mean: float, lo: float, hi: float, pairs: int = 24) -> dict:
    return {"mean": mean, "ci": [lo, hi], "pairs": pairs}


GROUPS = ("chosen_prefix", "chosen_fix", "chosen_suffix", "rejected_prefix", "rejected_error", "rejected_suffix")


def along(d_minus: float) -> list[dict]:
    """A probe's ``along_training`` rows: steps 0 and 4, both pair sets, every group 0 at step 0 and
    at step 4 ``d_minus`` on D- (half of it held out) and a tenth of it elsewhere."""
    return [{"step": step, "split": split, "group": g, "mean": m, "lo": m - 0.01, "hi": m + 0.01, "pairs": 16}
            for step in (0, 4) for split, scale in (("training", 1.0), ("heldout", 0.5)) for g in GROUPS
            for m in [0.0 if step == 0 else scale * d_minus * (1.0 if g == "rejected_error" else 0.1)]]


# reports/probe/<variant>.json, the entries the report reads: dpo lowers everything, target_dpo
# lowers D- and leaves the shared tokens
PROBE = {
    "dpo": {"pairs": 24, "beta": 0.1, "along_training": along(-0.3), "chosen": interval(-0.05, -0.08, -0.02),
            "rejected_error": interval(-0.2, -0.3, -0.1, 22), "rejected_shared": interval(-0.18, -0.25, -0.11),
            "focal_margin": interval(0.02, -0.04, 0.08, 22), "accuracy": interval(0.5, 0.29, 0.71),
            "reward_margin": interval(0.01, -0.02, 0.04)},
    "target_dpo": {"pairs": 24, "beta": 0.1, "along_training": along(-0.2), "chosen": interval(0.01, -0.01, 0.03),
                   "rejected_error": interval(-0.12, -0.17, -0.07, 22), "rejected_shared": interval(0.0, -0.02, 0.02),
                   "focal_margin": interval(0.12, 0.07, 0.18, 22), "accuracy": interval(0.75, 0.58, 0.92),
                   "reward_margin": interval(0.05, 0.02, 0.08)},
}
# pairs.jsonl rows: (rejected completion, rejected_spans) -> D- lines 2, 2, 0 and 1 (no final newline)
PAIR_ROWS = [("a\nb\nc\n", [[0, 4]]), ("a\nb\nc\n", [[0, 2], [4, 6]]), ("a\n", []), ("a\nbc", [[2, 4]])]


def write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def make_run(root: Path, scores=SCORES, train=TRAIN, pairs=True, problems=True, probes=PROBE) -> Path:
    """A run folder: reports/eval, reports/train, reports/probe, reports/problems.json,
    reports/pairs.json and data/pairs.jsonl."""
    if problems:
        write(root / "reports/problems.json", PROBLEMS)
    for variant, row in scores.items():
        for bench, outcomes in row.items():
            write(root / f"reports/eval/{variant}/{bench}.json", eval_report(bench, variant, outcomes))
    for variant, t in train.items():
        write(root / f"reports/train/{variant}.json", t)
    for variant, r in probes.items():
        write(root / f"reports/probe/{variant}.json", r)
    if pairs:
        write(root / "reports/pairs.json", PAIRS)
        (root / "data").mkdir()
        (root / "data/pairs.jsonl").write_text("".join(
            json.dumps({"pair_id": str(i), "rejected": rej, "rejected_spans": spans}) + "\n"
            for i, (rej, spans) in enumerate(PAIR_ROWS)))
    return root


def load(root: Path, model: str = "smollm2-135m-instruct", trained=("dpo", "target_dpo"),
         benchmarks=BENCHMARKS) -> reporting.Inputs:
    return reporting.load(root, list(trained), list(benchmarks), "embedded", model)


@pytest.fixture
def run(tmp_path) -> Path:
    return make_run(tmp_path)


def table_rows(md: str) -> list[str]:
    """The Table 1 block: its header, rule and rows."""
    lines = md.splitlines()
    start = lines.index("## Table 1: pass@1 (%)") + 2
    end = lines.index("", start)
    return lines[start:end]


# --------------------------------------------------------------------------- inputs and metrics

def test_collect(run):
    table = reporting.collect(run / "reports/eval", list(SCORES), BENCHMARKS)
    assert list(table) == ["reference", "dpo", "target_dpo"]
    assert list(table["target_dpo"]) == ["humaneval"]
    # order follows the arguments; a variant with no report at all is left out
    t = reporting.collect(run / "reports/eval", ["target_dpo", "sft", "reference"], ["mbpp", "humaneval"])
    assert list(t) == ["target_dpo", "reference"] and list(t["reference"]) == ["mbpp", "humaneval"]
    assert reporting.collect(run / "nowhere", ["dpo"], BENCHMARKS) == {}


def test_scores_are_flat_per_benchmark_with_average(run):
    m = reporting.scores(load(run).table)
    assert m == {
        "reference": {"humaneval": 37.5, "mbpp": 62.5, "average": 50.0},
        "dpo": {"humaneval": 50.0, "mbpp": 50.0, "average": 50.0},
        "target_dpo": {"humaneval": 75.0, "average": 75.0},
    }
    t = {"v": {"humaneval": eval_report("humaneval", "v", [True] + [False] * 163)}}  # 1/164
    assert reporting.scores(t) == {"v": {"humaneval": 0.61, "average": 0.61}}


def test_rejected_line_counts(run):
    assert reporting.rejected_line_counts(run / "data/pairs.jsonl") == [2, 2, 0, 1]
    assert load(run).rejected_lines == [2, 2, 0, 1]


# --------------------------------------------------------------------------- Table 1

def test_table_layout_and_averages(run):
    md = reporting.markdown(load(run))
    assert md.splitlines()[0] == "# IterPref results: experiment `embedded`"
    assert "Student model: `smollm2-135m-instruct`." in md
    assert table_rows(md) == [
        "| variant | HumanEval | MBPP | avg |",
        "|---|---|---|---|",
        "| reference | 37.5 (3/8) | 62.5 (5/8) | 50.0 |",
        "| dpo | 50.0 (4/8) | 50.0 (4/8) | 50.0 |",
        "| target_dpo | 75.0 (6/8) | - | 75.0 |",
    ]
    assert md.endswith("\n")


def test_published_rows_only_for_the_matching_model(run):
    assert "published" not in reporting.markdown(load(run, model="smollm2-135m-instruct"))

    md = reporting.markdown(load(run, model="qwen2.5-coder-0.5b-instruct"))
    assert table_rows(md)[2:4] == ["| reference | 37.5 (3/8) | 62.5 (5/8) | 50.0 |",
                                   "| reference, published (Qwen) | 61.6 | 52.4 | 57.0 |"]
    assert sum("published" in row for row in table_rows(md)) == 1  # Qwen reports the untrained model only
    assert "Qwen2.5-Coder-0.5B-Instruct model card" in md
    assert "MBPP here is the original MBPP test split (500 tasks)" in md

    md = reporting.markdown(load(run, model="qwen2.5-coder-7b"))
    rows = table_rows(md)
    assert "| dpo, published (paper) | 71.3 | 76.2 | 73.8 |" in rows  # (71.3 + 76.2) / 2 = 73.75
    assert rows[rows.index("| target_dpo | 75.0 (6/8) | - | 75.0 |") + 1] == \
        "| target_dpo, published (paper) | 89.0 | 83.1 | 86.0 |"  # (89.0 + 83.1) / 2 = 86.05
    assert "The source also reports rpo, target_rpo (not run here)." in md

    # a column the source has no number for: "-" there, and no average
    md = reporting.markdown(load(run, model="qwen2.5-coder-1.5b-instruct",
                                 benchmarks=["humaneval", "bigcodebench_hard_complete"]))
    assert "| reference, published (Qwen) | 70.7 | - | - |" in table_rows(md)
    assert "MBPP here" not in md


def test_an_environment_error_is_marked_not_scored(run):
    write(run / "reports/eval/target_dpo/mbpp.json",
          {"benchmark": "mbpp", "variant": "target_dpo", "error": "mbpp: data file x.jsonl does not exist",
           "error_kind": "evaluation environment, not the model"})
    inp = load(run)
    assert reporting.scores(inp.table)["target_dpo"] == {"humaneval": 75.0, "average": 75.0}
    md = reporting.markdown(inp)
    assert "| target_dpo | 75.0 (6/8) | ENV ERROR | 75.0 |" in table_rows(md)
    assert "- target_dpo/mbpp: mbpp: data file x.jsonl does not exist" in md
    assert "- skipped: target_dpo vs dpo on MBPP: no scored result for target_dpo" in md


# --------------------------------------------------------------------------- significance

def test_significance_hand_checked(tmp_path):
    # humaneval, 10 tasks: a passes 0-4, b passes 3-9 -> 5 gained, 3 lost;
    # McNemar: 2 * P(X <= 3), X ~ Bin(8, 1/2) = 2 * (1 + 8 + 28 + 56) / 256 = 0.7265625
    # mbpp, 8 tasks: a passes 1, b passes 7 (a superset) -> 6 gained, 0 lost; p = 2 / 2**6 = 0.03125
    a = {"humaneval": [i < 5 for i in range(10)], "mbpp": first(1)}
    b = {"humaneval": [i >= 3 for i in range(10)], "mbpp": first(7)}
    c = {"humaneval": [i < 5 for i in range(10)]}  # the same as a: nothing differs
    inp = load(make_run(tmp_path, {"reference": a, "dpo": b, "target_dpo": c}, {}, pairs=False))
    rows, skipped = reporting.significance(inp.table, BENCHMARKS)
    first_row = rows[0]
    assert (first_row["a"], first_row["b"], first_row["benchmark"]) == ("reference", "dpo", "humaneval")
    assert first_row["gained"] == ["HumanEval/5", "HumanEval/6", "HumanEval/7", "HumanEval/8", "HumanEval/9"]
    assert first_row["lost"] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert first_row["p_value"] == pytest.approx(0.7265625)
    assert [(r["a"], r["b"], r["benchmark"]) for r in rows] == [
        ("reference", "dpo", "humaneval"), ("reference", "dpo", "mbpp"),
        ("reference", "target_dpo", "humaneval"), ("dpo", "target_dpo", "humaneval")]
    assert skipped == ["target_dpo vs reference on MBPP: no scored result for target_dpo",
                       "target_dpo vs dpo on MBPP: no scored result for target_dpo"]

    lines = reporting.markdown(inp).splitlines()
    assert "| B vs A | benchmark | A | B | B - A (points) | tasks differ | gained | lost | McNemar p |" in lines
    assert "| dpo vs reference | HumanEval | 50.0 | 70.0 | +20.0 | 8 | 5 | 3 | 0.727 |" in lines
    assert "| dpo vs reference | MBPP | 12.5 | 87.5 | +75.0 | 6 | 6 | 0 | 0.0312 |" in lines
    assert "| target_dpo vs reference | HumanEval | 50.0 | 50.0 | +0.0 | 0 | 0 | 0 | 1 |" in lines
    assert "| target_dpo vs dpo | HumanEval | 70.0 | 50.0 | -20.0 | 8 | 3 | 5 | 0.727 |" in lines


def test_significance_different_task_sets_are_skipped(run):
    write(run / "reports/eval/dpo/humaneval.json", eval_report("humaneval", "dpo", first(4, 9)))
    rows, skipped = reporting.significance(load(run).table, ["humaneval"])
    assert [(r["a"], r["b"]) for r in rows] == [("reference", "target_dpo")]
    assert len(skipped) == 2 and all("cover different tasks" in s for s in skipped)


# --------------------------------------------------------------------------- data, training, evaluation

def test_data_training_and_timing_sections(run):
    lines = reporting.markdown(load(run)).splitlines()
    assert "- trajectories: 134, solved: 134, solved at round 0 (no pair): 0" in lines
    assert "- cumulative pass rate by round: round 0: 0.0%, round 1: 40.0%, round 2: 80.0%, round 3: 100.0%" in lines
    assert "- pairs kept: 120 of 134 candidates; removed by filter: comment_only 0, identical_ast 14" in lines
    assert "- held out of training: 24 pairs of 13 problems; training: 96 pairs of 54 problems" in lines
    assert "- rejected error lines (D-): mean 1.70, median 1" in lines
    assert "| variant | pairs | steps | loss | reward acc. | margin | time (s) | peak RSS (GiB) |" in lines
    assert "| dpo | 64 | 16 | 0.6931 | 0.50 | 0.0123 | 42.1 | 3.5 |" in lines
    assert "| target_dpo | 64 | 16 | 0.5000 | - | - | 40.0 | - |" in lines
    assert "| variant | benchmark | tasks | generation (s) | scoring (s) | peak RSS (GiB) |" in lines
    assert "| reference | MBPP | 8 | 12.5 | 0.75 | 1.25 |" in lines
    assert sum(line.startswith("| target_dpo | ") and "| 1.25 |" in line for line in lines) == 1


def section(md: str, title: str) -> list[str]:
    """The lines of the ``## title`` section, up to the next one."""
    lines = md.splitlines()
    start = lines.index(f"## {title}") + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[start:end]


def test_settings_section_names_each_variants_training(run):
    train = P.compose(["train.run=[dpo,target_rpo]", "train.common.beta=0.2", "train.common.learning_rate=5e-6",
                       "train.common.gradient_accumulation_steps=2", "train.common.max_steps=16"])["train"]
    inp = reporting.load(run, ["dpo", "target_rpo"], BENCHMARKS, "embedded", "smollm2-135m-instruct", train)
    lines = section(reporting.markdown(inp), "Settings")
    assert lines[1] == "- student: `smollm2-135m-instruct`"
    assert "- training pairs available: 96 (of 120 kept; 24 held out)" in lines
    # dpo trained (its report: 64 pairs, 16 steps, one process); target_rpo has no train report yet
    assert ("| dpo | dpo | none | 0.2 | 5e-06 | cosine, warmup 0.03 | max_steps 16 | 16 | 8 (4 x 2 x 1) | 1024 | "
            "64 (max_pairs 16) | 0 |") in lines
    assert ("| target_rpo | rpo | line | 0.2, rpo_alpha 1 | 5e-06 | cosine, warmup 0.03 | max_steps 16 | - | "
            "8 (4 x 2 x 1) | 1024 | - (max_pairs 16) | 0 |") in lines
    # without params the section says so and the rest of the summary is unchanged
    assert "- no training settings were given to the report (params.yaml's train)" in section(
        reporting.markdown(load(run)), "Settings")


def test_settings_name_the_sweeps_keys_with_this_runs_values(run):
    """A point of a sweep (params.yaml's swept_keys, as iterpref-sweep sets it) says what the sweep
    varies and the values here; a run outside a sweep says nothing about sweeps."""
    def settings(overrides):
        params = P.compose(overrides)
        inp = reporting.load(run, ["dpo", "target_dpo"], BENCHMARKS, "embedded", "smollm2-135m-instruct",
                             params["train"], reporting.swept_values(params))
        return reporting.markdown(inp), section(reporting.markdown(inp), "Settings")

    _, lines = settings(["train.common.beta=0.05", "eval.sampling.max_new_tokens=256",
                         "swept_keys=[train.common.beta,eval.sampling.max_new_tokens,train.variants.target_dpo.mask]"])
    assert lines[2] == ("- swept: `train.common.beta` = 0.05, `eval.sampling.max_new_tokens` = 256, "
                        '`train.variants.target_dpo.mask` = {"mode": "line"} (this run is one point of a sweep over '
                        "these keys, params.yaml's `swept_keys`)")
    md, lines = settings(["train.common.beta=0.05"])
    assert lines[2].startswith("- training pairs available:") and "sweep" not in md.lower()


def test_problems_section(run):
    lines = section(reporting.markdown(load(run)), "Problems")
    expected = [
        "Source `synthesize`: 40 candidates, 12 kept (30.0%), 28 dropped.",
        "| synthesize:openai:gpt-4o | 12 | 54 | 4.50 |",
        "- tests per kept problem: mean 4.5, min 2, max 9; 54 in all",
        "- validated in the sandbox: 17 problems (4 from the resume log), 4.19 problems/s",
        "- teacher requests: 30 sent, 10 answered from the response cache",
        # one row per reason; a cell is one line with its pipes escaped; a reason without examples is blank
        "| reference_fails | 3 | synthesize/0031-0: test_a: AssertionError: 1 \\| 2 != 3 |",
        "| stub_passes | 2 |  |",
        "Decontamination: 8-gram overlap of the instruction or the reference with a benchmark task, at least "
        "0.5 of the smaller text, against HumanEval (164 tasks), MBPP (500 tasks): 23 removed.",
        "3 more removed problems are listed in reports/problems.json."]
    assert [line for line in expected if line not in lines] == []
    listed = [line for line in lines if line.startswith("| synthesize/") and "HumanEval/" in line]
    assert len(listed) == reporting.MAX_HITS_LISTED == 20
    assert listed[0] == "| synthesize/0000-0 | reference | humaneval:HumanEval/0 | 0.50 |"
    assert listed[-1] == "| synthesize/0019-0 | instruction | humaneval:HumanEval/19 | 0.69 |"


def test_problems_section_of_a_clean_seed_run(tmp_path):
    clean = {**PROBLEMS, "source": "seed", "candidates": 67, "kept": 67, "kept_share": 1.0, "dropped": {},
             "per_source": {"seed": {"kept": 67, "tests": 432}}, "source_stats": {}, "drop_examples": {},
             "decontamination": {**PROBLEMS["decontamination"], "removed": 0, "hits": []}}
    write(tmp_path / "reports/problems.json", clean)
    lines = section(reporting.markdown(load(tmp_path)), "Problems")
    assert "Source `seed`: 67 candidates, 67 kept (100.0%), 0 dropped." in lines
    assert not any(line.startswith(("| dropped because", "| removed problem", "- teacher")) for line in lines)
    assert lines[-2].endswith("MBPP (500 tasks): 0 removed.")


# --------------------------------------------------------------------------- held-out pairs

def test_heldout_section_rows_sentences_and_metrics(run):
    inp = load(run)
    lines = section(reporting.markdown(inp), "Held-out pairs")
    assert ("| variant | pairs | chosen | D- (error lines) | rejected, shared | focal margin | accuracy | reward margin |"
            in lines)
    assert ("| target_dpo | 24 | +0.010 [-0.010, +0.030] | -0.120 [-0.170, -0.070] | +0.000 [-0.020, +0.020] | "
            "+0.120 [+0.070, +0.180] | 0.75 [0.58, 0.92] | +0.050 [+0.020, +0.080] |") in lines
    assert ("- target_dpo: D- tokens went down (-0.120, the interval excludes 0); chosen tokens did not move measurably "
            "(the interval [-0.010, +0.030] contains 0); the error tokens moved down relative to the rest of the rejected "
            "code (focal margin > 0, interval excludes 0); it prefers the chosen side on 75% of the held-out pairs.") in lines
    assert ("- dpo: D- tokens went down (-0.200, the interval excludes 0); chosen tokens went down (-0.050, the interval "
            "excludes 0); error and shared tokens moved alike (the focal margin's interval contains 0); it prefers the "
            "chosen side on 50% of the held-out pairs.") in lines
    m = reporting.metrics(inp)
    assert {k: m["target_dpo"][k] for k in reporting.PROBE_METRICS.values()} == {
        "d_minus_shift": -0.12, "focal_margin": 0.12, "heldout_accuracy": 0.75, "heldout_reward_margin": 0.05}
    assert m["data"]["heldout_pairs"] == 24


def test_probe_sentence_follows_the_intervals():
    up = {"pairs": 3, "chosen": interval(0.2, 0.1, 0.3), "rejected_error": interval(0.1, 0.05, 0.2),
          "focal_margin": interval(-0.1, -0.2, -0.05), "accuracy": None}
    assert reporting.probe_sentence("v", up) == (
        "- v: D- tokens went up (+0.100, the interval excludes 0); chosen tokens went up (+0.200, the interval "
        "excludes 0); the rest of the rejected code moved down relative to the error tokens (focal margin < 0, "
        "interval excludes 0).")
    insert_only = {"pairs": 1, "chosen": interval(0.0, 0.0, 0.0, 1), "rejected_error": None, "focal_margin": None,
                   "accuracy": interval(0.0, 0.0, 0.0, 1)}
    assert reporting.probe_sentence("v", insert_only).startswith("- v: no pair has D- tokens; chosen tokens did not")


# --------------------------------------------------------------------------- figures

def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(path)
    assert min(img.shape[:2]) > 100 and img.std() > 0  # drawn, not blank


def test_every_figure_is_written_and_linked(run, tmp_path):
    inp = load(run)
    written, skipped = figures.render(inp, tmp_path / "out" / "figures")  # the folder is created
    names = ["pass_at_1", "cumulative_pass_rate", "rejected_lines", "training_curves", "error_types", "gains_losses",
             "heldout_shifts", "probe_along_training"]
    assert list(written) == names and skipped == {}
    for path in written.values():
        assert_png(path)
    md = reporting.markdown(inp, {n: f"figures/{p.name}" for n, p in written.items()}, skipped)
    for name in names:
        assert md.count(f"](figures/{name}.png)") == 1
    assert "Figure skipped" not in md


def test_pass_at_1_figure_size(run, tmp_path):
    path = tmp_path / "p.png"
    figures.pass_at_1(reporting.scores(load(run).table), BENCHMARKS, path)
    h, w = matplotlib.image.imread(path).shape[:2]
    assert (w, h) == (round((1.5 + 1.8 * 2) * 120), round(3.2 * 120))  # inches at 120 dpi


def test_training_figure_draws_the_learning_rate_per_variant_and_step(tmp_path):
    warmup = [{**h, "learning_rate": 1e-5 * h["step"] / 2} for h in CURVE]
    older = [{"step": 1, "loss": 0.7}, {"step": 2, "loss": 0.65, "learning_rate": 4e-6}]  # step 1 logged no rate
    fig = figures.training_curves({"dpo": warmup, "target_dpo": older}, tmp_path / "curves.png")
    panels = {ax.get_title(): ax for ax in fig.axes}
    assert list(panels) == ["training loss", "reward margin", "reward accuracy", "learning rate"]
    lines = {line.get_label(): (list(line.get_xdata()), list(line.get_ydata())) for line in panels["learning rate"].lines}
    assert lines == {"dpo": ([1, 2], [5e-6, 1e-5]), "target_dpo": ([2], [4e-6])}
    assert_png(tmp_path / "curves.png")


def test_missing_inputs_are_skipped_with_a_line(tmp_path):
    # dpo never trained (no curve anywhere), target_dpo's mbpp errored, no pairs built
    root = make_run(tmp_path, train={"target_dpo": TRAIN["target_dpo"]}, pairs=False, problems=False,
                    probes={"target_dpo": PROBE["target_dpo"]})
    write(root / "reports/eval/target_dpo/mbpp.json", {"benchmark": "mbpp", "error": "no data"})
    inp = load(root, trained=("dpo", "target_dpo", "rpo"))
    assert inp.missing == ["reports/eval/rpo/humaneval.json (not evaluated)",
                           "reports/eval/rpo/mbpp.json (not evaluated)",
                           "reports/train/dpo.json (not trained)", "reports/train/rpo.json (not trained)",
                           "reports/probe/dpo.json (not probed)", "reports/probe/rpo.json (not probed)",
                           "reports/problems.json (no problems built)", "reports/pairs.json (no pairs built)",
                           "data/pairs.jsonl (no pairs built)"]
    written, skipped = figures.render(inp, tmp_path / "figures")
    assert set(skipped) == {"cumulative_pass_rate", "rejected_lines", "training_curves"}
    assert set(written) == {"pass_at_1", "error_types", "gains_losses", "heldout_shifts",  # gains on HumanEval alone
                            "probe_along_training"}
    md = reporting.markdown(inp, {n: f"figures/{p.name}" for n, p in written.items()}, skipped)
    assert ("Figure skipped (training loss, margin, reward accuracy and learning rate): "
            "no reports/train/<variant>.json holds a per-step curve.") in md
    assert "Figure skipped (D- size): data/pairs.jsonl is missing or holds no pairs." in md
    lines = md.splitlines()
    assert lines[lines.index("## Missing inputs (skipped)") + 2:] == [f"- {m}" for m in inp.missing]
    assert "## Data" in lines and not any(line.startswith("- trajectories") for line in lines)
    assert lines[lines.index("## Problems") + 2] == "No reports/problems.json: the synthesize stage has not run."

    # without target_dpo results there is nothing to compare per task; nothing at all still renders
    written, skipped = figures.render(load(root, trained=("dpo",)), tmp_path / "f2")
    assert skipped["gains_losses"] == "needs scored results of both dpo and target_dpo on the same tasks"
    empty = load(tmp_path / "nothing")
    written, skipped = figures.render(empty, tmp_path / "f3")
    assert written == {} and len(skipped) == 8
    assert skipped["probe_along_training"] == ("no reports/probe/<variant>.json holds a curve along training "
                                               "(train.common.probe_points: 0)")
    assert "No pair of variants has scored results" in reporting.markdown(empty, {}, skipped)
    assert "No reports/probe/<variant>.json: no variant has been probed." in reporting.markdown(empty, {}, skipped)


# --------------------------------------------------------------------------- the stage

def test_report_stage_writes_summary_metrics_and_figures(run):
    params = P.compose(["model=qwen25_coder_05b", "train.run=[dpo,target_dpo]", f"eval.benchmarks=[{','.join(BENCHMARKS)}]"])
    (run / "params.yaml").write_text(P.dump(params))
    processes.run([sys.executable, str(ROOT / "stages/report.py")], cwd=run, check=True, capture_output=True)
    metrics = json.loads((run / "reports/metrics.json").read_text())
    assert {k: metrics["dpo"][k] for k in ("humaneval", "mbpp", "average")} == {"humaneval": 50.0, "mbpp": 50.0,
                                                                                "average": 50.0}
    assert set(metrics) == {"reference", "dpo", "target_dpo", "data"}
    md = (run / "reports/summary.md").read_text()
    assert "| reference, published (Qwen) | 61.6 | 52.4 | 57.0 |" in md
    assert "Source `synthesize`: 40 candidates, 12 kept (30.0%), 28 dropped." in md
    for png in sorted((run / "reports/figures").iterdir()):
        assert f"](figures/{png.name})" in md
        assert_png(png)
    assert len(list((run / "reports/figures").iterdir())) == 8
    assert metrics["target_dpo"]["focal_margin"] == 0.12 and metrics["dpo"]["d_minus_shift"] == -0.2
    assert metrics["data"] == {"problems": 12, "pairs": 120, "heldout_pairs": 24}
    assert "| dpo | dpo | none | 0.1 | 1e-05 | cosine, warmup 0.03 | epochs 1 | 16 | 4 (4 x 1 x 1) |" in md
