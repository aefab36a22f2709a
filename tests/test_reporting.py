"""reporting.py: the comparison table from eval reports as src/iterpref/evaluation/run.py writes them."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from iterpref import reporting
from iterpref.llm.base import SamplingConfig


def eval_report(benchmark: str, variant: str, outcomes: list[bool]) -> dict:
    """An eval report in the format of `iterpref.evaluation.run.evaluate` plus the stage's variant."""
    passed = sum(outcomes)
    return {
        "benchmark": benchmark,
        "model": f"hf:models/trained/{variant}",
        "tasks": len(outcomes),
        "passed": passed,
        "pass@1": passed / len(outcomes) if outcomes else 0.0,
        "generation_s": 1.5,
        "scoring_s": 0.7,
        "sampling": asdict(SamplingConfig()),
        "per_task": [
            {"task_id": f"HumanEval/{i}", "passed": ok, "result": "passed" if ok else "failed: ", "reply": "```python\n```"}
            for i, ok in enumerate(outcomes)
        ],
        "variant": variant,
    }


# variant: {benchmark: (passed of 8)}
SCORES = {
    "reference": {"humaneval": 3, "mbpp": 5},
    "dpo": {"humaneval": 4, "mbpp": 4},
    "target_dpo": {"humaneval": 6},  # mbpp not evaluated (yet)
}
BENCHMARKS = ["humaneval", "mbpp"]
PAIRS = {"trajectories": 134, "solved": 134, "solved_first_try": 0, "cumulative_pass_rate": [0.0, 0.4, 0.8, 1.0],
         "pairs": 120, "candidate_pairs": 134, "removed": {"identical_ast": 14}, "rejected_lines_mean": 1.7,
         "rejected_lines_median": 1}
TRAIN = {
    "dpo": {"pairs": 64, "steps": 16, "train_loss": 0.69314718, "train_runtime_s": 42.1,
            "rewards/accuracies": 0.5, "rewards/margins": 0.0123456},
    "target_dpo": {"pairs": 64, "steps": 16, "train_loss": 0.5, "train_runtime_s": 40.0,
                   "rewards/accuracies": None, "rewards/margins": None},
}


@pytest.fixture
def eval_dir(tmp_path) -> Path:
    root = tmp_path / "reports" / "eval"
    for variant, row in SCORES.items():
        for bench, k in row.items():
            path = root / variant / f"{bench}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(eval_report(bench, variant, [True] * k + [False] * (8 - k)), indent=2) + "\n")
    return root


@pytest.fixture
def table(eval_dir) -> dict:
    return reporting.collect(eval_dir, list(SCORES), BENCHMARKS)


def test_collect(eval_dir, table):
    assert list(table) == ["reference", "dpo", "target_dpo"]
    assert list(table["reference"]) == ["humaneval", "mbpp"]
    assert list(table["target_dpo"]) == ["humaneval"]
    assert table["dpo"]["mbpp"]["passed"] == 4 and table["dpo"]["mbpp"]["tasks"] == 8
    # order follows the arguments; a variant with no report at all is left out
    t = reporting.collect(eval_dir, ["target_dpo", "sft", "reference"], ["mbpp", "humaneval"])
    assert list(t) == ["target_dpo", "reference"]
    assert list(t["reference"]) == ["mbpp", "humaneval"]
    assert reporting.collect(eval_dir.parent / "nowhere", ["dpo"], BENCHMARKS) == {}


def test_metrics(table):
    m = reporting.metrics(table)
    assert m == {
        "reference": {"humaneval": 37.5, "mbpp": 62.5, "average": 50.0},
        "dpo": {"humaneval": 50.0, "mbpp": 50.0, "average": 50.0},
        "target_dpo": {"humaneval": 75.0, "average": 75.0},
    }
    json.dumps(m)  # the DVC metrics file


def test_metrics_rounding():
    t = {"v": {"humaneval": eval_report("humaneval", "v", [True] + [False] * 163)}}  # 1/164
    assert reporting.metrics(t) == {"v": {"humaneval": 0.61, "average": 0.61}}


def test_markdown_table(table):
    md = reporting.markdown(table, BENCHMARKS, None, {}, "smoke")
    lines = md.splitlines()
    assert lines[0] == "# IterPref results: experiment `smoke`"
    header = lines.index("| variant | HumanEval | MBPP | avg |")
    assert lines[header + 1] == "|---|---|---|---|"
    assert lines[header + 2:header + 5] == [
        "| reference | 37.5 (3/8) | 62.5 (5/8) | 50.0 |",
        "| dpo | 50.0 (4/8) | 50.0 (4/8) | 50.0 |",
        "| target_dpo | 75.0 (6/8) | - | 75.0 |",
    ]
    assert "## Data" not in md and "## Training" not in md
    assert md.endswith("\n")


def test_markdown_single_benchmark(table):
    md = reporting.markdown({"reference": {"humaneval": table["reference"]["humaneval"]}}, ["humaneval"],
                            None, {}, "embedded")
    assert "| variant | HumanEval | avg |" in md
    assert "| reference | 37.5 (3/8) | 37.5 |" in md.splitlines()


def test_markdown_data_and_training_sections(table):
    md = reporting.markdown(table, BENCHMARKS, PAIRS, TRAIN, "embedded")
    lines = md.splitlines()
    assert "## Data" in lines and "## Training" in lines
    assert "- trajectories: 134, solved: 134, solved at round 0 (no pair): 0" in lines
    assert "- cumulative pass rate by round: [0.0, 0.4, 0.8, 1.0]" in lines
    assert "- pairs kept: 120 of 134 candidates; removed by filter: {'identical_ast': 14}" in lines
    assert "- rejected error lines (D-): mean 1.7, median 1" in lines
    assert "| variant | pairs | steps | loss | reward acc. | margin | time (s) |" in lines
    assert "| dpo | 64 | 16 | 0.6931 | 0.50 | 0.0123 | 42.1 |" in lines
    assert "| target_dpo | 64 | 16 | 0.5000 | - | - | 40.0 |" in lines


def test_figure_writes_a_png(table, tmp_path):
    import matplotlib.image

    path = tmp_path / "figures" / "pass_at_1.png"  # the folder is created
    reporting.figure(table, BENCHMARKS, path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    img = matplotlib.image.imread(path)
    h, w = img.shape[:2]
    assert w > h > 100  # a wide bar chart: 1.5 + 1.8 * 2 inches by 3.2 inches at 120 dpi
    assert (w, h) == (round((1.5 + 1.8 * 2) * 120), round(3.2 * 120))
    assert img.std() > 0  # not blank


def test_figure_one_variant_one_benchmark(table, tmp_path):
    path = tmp_path / "one.png"
    reporting.figure({"reference": {"humaneval": table["reference"]["humaneval"]}}, ["humaneval"], path)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_report_stage_inputs_round_trip(eval_dir, table, tmp_path):
    """What stages/report.py writes from the same inputs: metrics JSON and summary agree."""
    m = reporting.metrics(table)
    md = reporting.markdown(table, BENCHMARKS, PAIRS, TRAIN, "embedded")
    for variant, scores in m.items():
        row = next(line for line in md.splitlines() if line.startswith(f"| {variant} |"))
        assert row.endswith(f"| {scores['average']:.1f} |")
        for bench, v in scores.items():
            if bench != "average":
                assert f"{v:.1f} ({table[variant][bench]['passed']}/8)" in row


def test_an_environment_error_is_marked_not_scored(eval_dir):
    broken = {"benchmark": "mbpp", "variant": "target_dpo", "error": "mbpp: data file x.jsonl does not exist",
              "error_kind": "evaluation environment, not the model"}
    (eval_dir / "target_dpo" / "mbpp.json").write_text(json.dumps(broken))
    table = reporting.collect(eval_dir, list(SCORES), BENCHMARKS)
    assert reporting.metrics(table)["target_dpo"] == {"humaneval": 75.0, "average": 75.0}
    md = reporting.markdown(table, BENCHMARKS, None, {}, "embedded")
    assert "| target_dpo | 75.0 (6/8) | ENV ERROR | 75.0 |" in md
    assert "- target_dpo/mbpp: mbpp: data file x.jsonl does not exist" in md
