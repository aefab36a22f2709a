"""The report's figures as PNG files, drawn offline on matplotlib's Agg canvas (no pyplot, no
display, no global backend state).

`render` draws every figure its inputs allow and says why it skipped the others; each other
function draws one figure from plain data.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from iterpref.cli import UserError
from iterpref.reporting.compare import compare
from iterpref.reporting.summary import BENCH_TITLES, POSITION_COLUMNS, SPLIT_TITLES, Inputs, scores

# The paper's figure 6: cumulative pass rate (%) of CodeFlow's debugging by round (shared/PAPER.md section 4).
PAPER_CUMULATIVE = [36.7, 54.7, 61.5, 64.6, 66.3, 67.5]
# The pair the per-task figure compares: the paper's focal loss against plain DPO.
GAINS_PAIR = ("dpo", "target_dpo")
CURVE_KEYS = (("loss", "training loss"), ("rewards/margins", "reward margin"),
              ("rewards/accuracies", "reward accuracy"), ("learning_rate", "learning rate"))
TOP_ERROR_TYPES = 8
# The probe entries the held-out figure draws (iterpref.probe.summarise) and their labels.
SHIFT_GROUPS = (("chosen", "chosen"), ("rejected_error", "D- (error)"), ("rejected_shared", "rejected, shared"),
                ("focal_margin", "focal margin\n(shared - D-)"))
# The along-training figure's panels: the six position groups (chosen side, then rejected), and the
# line style of each pair set (iterpref.probe.along_training).
POSITION_GROUPS = POSITION_COLUMNS[:6]
SPLITS = {"heldout": "o-", "training": "s--"}


def _figure(width: float, height: float) -> Figure:
    """A figure (inches) on an Agg canvas."""
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | Path, **layout) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(**layout)
    fig.savefig(path, dpi=120)


def _title(bench: str) -> str:
    return BENCH_TITLES.get(bench, bench)


def pass_at_1(scores: dict[str, dict[str, float]], benchmarks: list[str], path: str | Path) -> None:
    """Grouped bars of pass@1 (%) per benchmark, one bar per variant (``scores`` as `reporting.scores` gives them)."""
    variants = list(scores)
    width = 0.8 / max(1, len(variants))
    fig = _figure(1.5 + 1.8 * len(benchmarks), 3.2)
    ax = fig.subplots()
    for i, v in enumerate(variants):
        ax.bar([j + i * width for j in range(len(benchmarks))], [scores[v].get(b, 0.0) for b in benchmarks],
               width, label=v)
    ax.set_xticks([j + width * (len(variants) - 1) / 2 for j in range(len(benchmarks))])
    ax.set_xticklabels([_title(b) for b in benchmarks])
    ax.set_ylabel("pass@1 (%)")
    ax.legend(fontsize=8)
    _save(fig, path)


def cumulative_pass_rate(rates: dict[str, float], path: str | Path) -> None:
    """Cumulative pass rate (%) by debugging round, ours against the paper's figure 6."""
    fig = _figure(5, 3.2)
    ax = fig.subplots()
    rounds = sorted(rates, key=int)
    ax.plot([int(r) for r in rounds], [100 * rates[r] for r in rounds], "o-", label="this run")
    ax.plot(range(len(PAPER_CUMULATIVE)), PAPER_CUMULATIVE, "s--", color="grey", label="paper (CodeFlow)")
    ax.set_xlabel("debugging round")
    ax.set_ylabel("solved so far (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    _save(fig, path)


def rejected_lines(counts: list[int], path: str | Path) -> None:
    """Histogram of D- sizes: pairs by their number of rejected-only lines (0: insert-only fix)."""
    fig = _figure(5, 3.2)
    ax = fig.subplots()
    top = max(counts)
    ax.bar(range(top + 1), [counts.count(k) for k in range(top + 1)])
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("rejected-only lines (D-) per pair")
    ax.set_ylabel("pairs")
    _save(fig, path)


def training_curves(curves: dict[str, list[dict]], path: str | Path) -> Figure:
    """Training loss, reward margin, reward accuracy and the learning rate by step, one panel
    each, one line per variant (a step without the key is left out); returns the figure."""
    fig = _figure(4 * len(CURVE_KEYS), 3.2)
    axes = fig.subplots(1, len(CURVE_KEYS), squeeze=False)
    for ax, (key, label) in zip(axes[0], CURVE_KEYS):
        for v, curve in curves.items():
            points = [(h["step"], h[key]) for h in curve if key in h]
            if points:
                ax.plot(*zip(*points), ".-", label=v)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("step")
        ax.set_title(label)
        if key == "learning_rate":  # ~1e-5: a shared exponent, not 0.00001 on every tick
            ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    axes[0, 0].legend(fontsize=8)
    _save(fig, path)
    return fig


def error_types(table: dict[str, dict[str, dict]], benchmarks: list[str], path: str | Path) -> None:
    """Failing tasks by error type: a stacked bar per variant, one panel per benchmark; the most
    frequent types have their own colour, the rest are "other"."""
    totals: dict[str, int] = {}
    for row in table.values():
        for b in benchmarks:
            for kind, n in row.get(b, {}).get("error_types", {}).items():
                totals[kind] = totals.get(kind, 0) + n
    ranked = sorted(totals, key=lambda k: (-totals[k], k))
    kinds = ranked[:TOP_ERROR_TYPES] + (["other"] if len(ranked) > TOP_ERROR_TYPES else [])
    colours = dict(zip(kinds, colormaps["tab10"].colors))
    fig = _figure(1.5 + 2.5 * len(benchmarks), 3.6)
    axes = fig.subplots(1, len(benchmarks), squeeze=False)
    for ax, b in zip(axes[0], benchmarks):
        variants = [v for v in table if "error_types" in table[v].get(b, {})]
        bottom = [0] * len(variants)
        for kind in kinds:
            counts = [sum(n for k, n in table[v][b]["error_types"].items()
                          if k == kind or (kind == "other" and k not in kinds)) for v in variants]
            ax.bar(variants, counts, bottom=bottom, color=colours[kind], label=kind)
            bottom = [x + y for x, y in zip(bottom, counts)]
        ax.set_title(_title(b))
        ax.tick_params(axis="x", labelrotation=30)
    axes[0, 0].set_ylabel("failing tasks")
    fig.legend(handles=[Patch(color=colours[k], label=k) for k in kinds], loc="center right", fontsize=7)
    _save(fig, path, rect=(0, 0, 0.8, 1))


def gains_losses(comparisons: dict[str, tuple[dict, dict]], labels: tuple[str, str], path: str | Path) -> None:
    """Per-task outcome strips, one per benchmark: ``{benchmark: (report a, compare(a, b))}``;
    each task is gained (only b passes), lost (only a passes), passed by both or by neither."""
    outcomes = ["neither", "both", "lost", "gained"]
    cmap = ListedColormap(["#f2f2f2", "#9e9e9e", "#d62728", "#2ca02c"])
    height = 0.6 + 1.0 * len(comparisons)
    fig = _figure(10, height)
    axes = fig.subplots(len(comparisons), 1, squeeze=False)
    for ax, (bench, (a, c)) in zip(axes[:, 0], comparisons.items()):
        gained, lost = set(c["gained"]), set(c["lost"])
        row = [3 if t["task_id"] in gained else 2 if t["task_id"] in lost else int(t["passed"]) for t in a["per_task"]]
        ax.imshow([row], cmap=cmap, vmin=0, vmax=3, aspect="auto", interpolation="nearest")
        ax.set_yticks([])
        ax.set_title(f"{_title(bench)}: {labels[1]} vs {labels[0]}, +{len(gained)} gained, -{len(lost)} lost, "
                     f"McNemar p = {c['p_value']:.3g}", fontsize=9)
    axes[-1, 0].set_xlabel("task (benchmark order)")
    fig.legend(handles=[Patch(color=cmap(i), label=o) for i, o in enumerate(outcomes)], loc="lower center",
               ncol=4, fontsize=7)
    _save(fig, path, rect=(0, 0.3 / height, 1, 1))


def heldout_shifts(probes: dict[str, dict], path: str | Path) -> None:
    """Mean log-prob shift per token group on the held-out pairs, one marker per variant with its
    bootstrap interval as an error bar (``probes``: {variant: reports/probe/<variant>.json})."""
    fig = _figure(1.5 + 1.6 * len(SHIFT_GROUPS), 3.4)
    ax = fig.subplots()
    width = 0.6 / max(1, len(probes))
    for i, (v, report) in enumerate(probes.items()):
        xs, means, errors = [], [], [[], []]
        for j, (key, _) in enumerate(SHIFT_GROUPS):
            entry = report.get(key)
            if entry:
                lo, hi = entry["ci"]
                xs.append(j - 0.3 + width * (i + 0.5))
                means.append(entry["mean"])
                errors[0].append(entry["mean"] - lo)
                errors[1].append(hi - entry["mean"])
        ax.errorbar(xs, means, yerr=errors, fmt="o", capsize=3, label=f"{v} ({report['pairs']} pairs)")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(range(len(SHIFT_GROUPS)))
    ax.set_xticklabels([label for _, label in SHIFT_GROUPS], fontsize=8)
    ax.set_ylabel("log p(policy) - log p(reference)\nper token, mean over pairs")
    ax.legend(fontsize=8)
    _save(fig, path)


def probe_along_training(curves: dict[str, list[dict]], path: str | Path) -> None:
    """The probe along training: a panel per token group (`POSITION_GROUPS`, chosen side above,
    rejected below), the mean shift against the optimizer step, a colour per variant, held out solid
    and in sample dashed, the 95% bootstrap interval shaded (``curves``: {variant: the
    ``along_training`` rows of reports/probe/<variant>.json})."""
    fig = _figure(12, 6.4)
    axes = fig.subplots(2, 3, sharex=True, squeeze=False)
    colours = dict(zip(curves, colormaps["tab10"].colors))
    for ax, (group, label) in zip(axes.flat, POSITION_GROUPS):
        for v, rows in curves.items():
            for split, style in SPLITS.items():
                points = sorted((r["step"], r["mean"], r["lo"], r["hi"]) for r in rows
                                if r["group"] == group and r["split"] == split)
                if points:
                    steps, means, los, his = zip(*points)
                    ax.plot(steps, means, style, color=colours[v], label=f"{v}, {SPLIT_TITLES[split]}")
                    ax.fill_between(steps, los, his, color=colours[v], alpha=0.12, linewidth=0)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(label, fontsize=9)
    for ax in axes[1]:
        ax.set_xlabel("optimizer step")
    for ax in axes[:, 0]:
        ax.set_ylabel("log-prob shift per token")
    axes[0, 0].legend(fontsize=7)
    _save(fig, path)


def render(inp: Inputs, out_dir: str | Path) -> tuple[dict[str, Path], dict[str, str]]:
    """Draw every figure the inputs allow into ``out_dir``.

    Returns ``(written, skipped)``: ``{name: png path}`` and ``{name: why it was not drawn}``.
    """
    out_dir = Path(out_dir)
    scored = {v: {b: r for b, r in row.items() if "per_task" in r} for v, row in inp.table.items()}
    scored = {v: row for v, row in scored.items() if row}
    benches = [bench for bench in inp.benchmarks if any(bench in row for row in scored.values())]
    a, b = GAINS_PAIR
    comparisons = {}
    for bench in inp.benchmarks:
        if bench in scored.get(a, {}) and bench in scored.get(b, {}):
            try:
                comparisons[bench] = (scored[a][bench], compare(scored[a][bench], scored[b][bench]))
            except UserError:  # different task sets: the summary's significance section says so
                pass
    curves = {v: t["curve"] for v, t in inp.train.items() if t.get("curve")}
    rates = (inp.pairs or {}).get("cumulative_pass_rate")
    probes = {v: r for v, r in inp.probe.items() if r.get("pairs")}
    steps = {v: r["along_training"] for v, r in inp.probe.items() if r.get("along_training")}
    # name: (why it cannot be drawn, or None; how to draw it)
    jobs = {
        "pass_at_1": (None if scored else "no scored evaluation results",
                      lambda p: pass_at_1(scores(scored), benches, p)),
        "cumulative_pass_rate": (None if rates else "reports/pairs.json is missing or has no cumulative pass rate",
                                 lambda p: cumulative_pass_rate(rates, p)),
        "rejected_lines": (None if inp.rejected_lines else "data/pairs.jsonl is missing or holds no pairs",
                           lambda p: rejected_lines(inp.rejected_lines, p)),
        "training_curves": (None if curves else "no reports/train/<variant>.json holds a per-step curve",
                            lambda p: training_curves(curves, p)),
        "error_types": (None if scored else "no scored evaluation results",
                        lambda p: error_types(scored, benches, p)),
        "gains_losses": (None if comparisons else f"needs scored results of both {a} and {b} on the same tasks",
                         lambda p: gains_losses(comparisons, GAINS_PAIR, p)),
        "heldout_shifts": (None if probes else "no reports/probe/<variant>.json holds a probed pair",
                           lambda p: heldout_shifts(probes, p)),
        "probe_along_training": (None if steps else "no reports/probe/<variant>.json holds a curve along training "
                                                    "(train.common.probe_points: 0)",
                                 lambda p: probe_along_training(steps, p)),
    }
    written, skipped = {}, {}
    for name, (reason, draw) in jobs.items():
        if reason:
            skipped[name] = reason
        else:
            written[name] = out_dir / f"{name}.png"
            draw(written[name])
    return written, skipped
