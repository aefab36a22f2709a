"""The comparison report: variants x benchmarks pass@1, like the paper's Table 1."""

from __future__ import annotations

import json
from pathlib import Path

BENCH_TITLES = {"humaneval": "HumanEval", "humaneval_plus": "HumanEval+", "mbpp": "MBPP", "mbpp_plus": "MBPP+",
                **{f"bigcodebench_{s}_{p}": f"BCB-{s.capitalize()} {p.capitalize()}"
                   for s in ("full", "hard") for p in ("complete", "instruct")}}


def collect(eval_dir: str | Path, variants: list[str], benchmarks: list[str]) -> dict[str, dict[str, dict]]:
    """{variant: {benchmark: eval report}} for every report that exists, in the given order."""
    eval_dir = Path(eval_dir)
    table: dict[str, dict[str, dict]] = {}
    for v in variants:
        for b in benchmarks:
            path = eval_dir / v / f"{b}.json"
            if path.exists():
                table.setdefault(v, {})[b] = json.loads(path.read_text())
    return table


def metrics(table: dict[str, dict[str, dict]]) -> dict:
    """The DVC metrics: pass@1 (in %) per variant and benchmark, and the average."""
    out = {}
    for v, row in table.items():
        scores = {b: round(100 * r["pass@1"], 2) for b, r in row.items() if "error" not in r}
        scores["average"] = round(sum(scores.values()) / len(scores), 2) if scores else 0.0
        out[v] = scores
    return out


def markdown(table: dict[str, dict[str, dict]], benchmarks: list[str], pairs: dict | None,
             train: dict[str, dict], experiment: str) -> str:
    """reports/summary.md: the comparison table, then where the numbers came from."""
    m = metrics(table)
    head = ["variant"] + [BENCH_TITLES.get(b, b) for b in benchmarks] + ["avg"]
    lines = [f"# IterPref results: experiment `{experiment}`", "",
             "pass@1 (%), greedy decoding, official evaluators run in the sandbox.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v, row in table.items():
        cells = [f"{m[v][b]:.1f} ({row[b]['passed']}/{row[b]['tasks']})" if b in m[v]
                 else ("ENV ERROR" if b in row else "-") for b in benchmarks]
        lines.append(f"| {v} | " + " | ".join(cells) + f" | {m[v]['average']:.1f} |")
    broken = [f"- {v}/{b}: {r['error']}" for v, row in table.items() for b, r in row.items() if "error" in r]
    if broken:
        lines += ["", "## Evaluation environment errors (not model results)", "", *broken]
    if pairs:
        lines += ["", "## Data", "",
                  f"- trajectories: {pairs.get('trajectories')}, solved: {pairs.get('solved')}, "
                  f"solved at round 0 (no pair): {pairs.get('solved_first_try')}",
                  f"- cumulative pass rate by round: {pairs.get('cumulative_pass_rate')}",
                  f"- pairs kept: {pairs.get('pairs')} of {pairs.get('candidate_pairs')} candidates; "
                  f"removed by filter: {pairs.get('removed')}",
                  f"- rejected error lines (D-): mean {pairs.get('rejected_lines_mean')}, "
                  f"median {pairs.get('rejected_lines_median')}"]
    if train:
        lines += ["", "## Training", "", "| variant | pairs | steps | loss | reward acc. | margin | time (s) |",
                  "|---|---|---|---|---|---|---|"]
        for v, t in train.items():
            acc, margin = t.get("rewards/accuracies"), t.get("rewards/margins")
            lines.append(f"| {v} | {t['pairs']} | {t['steps']} | {t['train_loss']:.4f} | "
                         f"{'-' if acc is None else f'{acc:.2f}'} | {'-' if margin is None else f'{margin:.4f}'} | "
                         f"{t['train_runtime_s']} |")
    return "\n".join(lines) + "\n"


def figure(table: dict[str, dict[str, dict]], benchmarks: list[str], path: str | Path) -> None:
    """A grouped bar chart of pass@1 per benchmark and variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = metrics(table)
    variants = list(table)
    width = 0.8 / max(1, len(variants))
    fig, ax = plt.subplots(figsize=(1.5 + 1.8 * len(benchmarks), 3.2))
    for i, v in enumerate(variants):
        xs = [j + i * width for j in range(len(benchmarks))]
        ax.bar(xs, [m[v].get(b, 0.0) for b in benchmarks], width, label=v)
    ax.set_xticks([j + width * (len(variants) - 1) / 2 for j in range(len(benchmarks))])
    ax.set_xticklabels([BENCH_TITLES.get(b, b) for b in benchmarks])
    ax.set_ylabel("pass@1 (%)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
