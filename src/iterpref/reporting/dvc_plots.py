"""The report's plot data for DVC: small CSV files under reports/plots/ that dvc.yaml's ``plots:``
draws with the templates in .dvc/plots/, so ``dvc plots diff main EXP`` sets two experiments side
by side (a line style or a panel per revision, a colour per variant).

    training.csv              variant, step, loss, reward_margin, reward_accuracy, learning_rate
    pass_at_1.csv             variant, benchmark, pass_at_1 (%)
    heldout_shifts.csv        variant, group, shift, lo, hi (95% bootstrap interval)
    probe_along_training.csv  variant, split (held out / in sample), group, step, shift, lo, hi
    cumulative_pass_rate.csv  round, pass_rate (%)

Every file is written, with its header only when the run has nothing for it yet.
"""

from __future__ import annotations

import csv
from pathlib import Path

from iterpref.reporting.summary import BENCH_TITLES, POSITION_COLUMNS, PROBE_COLUMNS, SPLIT_TITLES, Inputs, scores

# reports/train/<variant>.json curve key -> column (the per-step learning rate when training logs it)
CURVE_COLUMNS = {"loss": "loss", "rewards/margins": "reward_margin", "rewards/accuracies": "reward_accuracy",
                 "learning_rate": "learning_rate"}
# the probe's token groups drawn as shifts (the log-prob groups and their difference, not the accuracies)
SHIFT_KEYS = ("chosen", "rejected_error", "rejected_shared", "focal_margin")


def training(inp: Inputs) -> list[dict]:
    return [{"variant": v, "step": h["step"], **{col: h.get(key) for key, col in CURVE_COLUMNS.items()}}
            for v, t in inp.train.items() for h in t.get("curve") or []]


def pass_at_1(inp: Inputs) -> list[dict]:
    return [{"variant": v, "benchmark": BENCH_TITLES.get(b, b), "pass_at_1": row[b]}
            for v, row in scores(inp.table).items() for b in inp.benchmarks if b in row]


def heldout_shifts(inp: Inputs) -> list[dict]:
    titles = dict(PROBE_COLUMNS)
    return [{"variant": v, "group": titles[key], "shift": r[key]["mean"], "lo": r[key]["ci"][0], "hi": r[key]["ci"][1]}
            for v, r in inp.probe.items() for key in SHIFT_KEYS if r.get(key)]


def probe_along_training(inp: Inputs) -> list[dict]:
    titles = dict(POSITION_COLUMNS)
    return [{"variant": v, "split": SPLIT_TITLES[row["split"]], "group": titles[row["group"]], "step": row["step"],
             "shift": row["mean"], "lo": row["lo"], "hi": row["hi"]}
            for v, r in inp.probe.items() for row in r.get("along_training") or []]


def cumulative_pass_rate(inp: Inputs) -> list[dict]:
    rates = (inp.pairs or {}).get("cumulative_pass_rate") or {}
    return [{"round": int(r), "pass_rate": round(100 * x, 2)} for r, x in sorted(rates.items(), key=lambda kv: int(kv[0]))]


FILES = {"training.csv": (training, ["variant", "step", *CURVE_COLUMNS.values()]),
         "pass_at_1.csv": (pass_at_1, ["variant", "benchmark", "pass_at_1"]),
         "heldout_shifts.csv": (heldout_shifts, ["variant", "group", "shift", "lo", "hi"]),
         "probe_along_training.csv": (probe_along_training, ["variant", "split", "group", "step", "shift", "lo", "hi"]),
         "cumulative_pass_rate.csv": (cumulative_pass_rate, ["round", "pass_rate"])}


def write(inp: Inputs, out_dir: str | Path) -> dict[str, int]:
    """Write every file of `FILES` into ``out_dir``; returns {file name: rows written}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name, (rows_of, columns) in FILES.items():
        rows = rows_of(inp)
        with open(out_dir / name, "w", newline="") as fh:
            writer = csv.DictWriter(fh, columns, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        counts[name] = len(rows)
    return counts
