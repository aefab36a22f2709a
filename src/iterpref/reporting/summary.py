"""The comparison report in the paper's Table 1 layout: variants x benchmarks pass@1 with averages,
published numbers beside ours when the student matches, paired significance, data and training.

`load` reads a run's report folders (reports/problems.json included: what the synthesize stage
kept and dropped; reports/probe: the held-out log-prob shifts), `metrics` is the DVC metrics file,
`markdown` is reports/summary.md; the figures it links are drawn by `iterpref.reporting.figures`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

from iterpref.cli import UserError
from iterpref.config.schema import value_at
from iterpref.pairs.diff import span_line_indices
from iterpref.params import shown
from iterpref.records import json_lines
from iterpref.reporting.compare import compare

BENCH_TITLES = {"humaneval": "HumanEval", "humaneval_plus": "HumanEval+", "mbpp": "MBPP", "mbpp_plus": "MBPP+",
                **{f"bigcodebench_{s}_{p}": f"BCB-{s.capitalize()} {p.capitalize()}"
                   for s in ("full", "hard") for p in ("complete", "instruct")}}


def _row(*values: float) -> dict[str, float]:
    """Published numbers in the paper's column order, which BENCH_TITLES follows."""
    return dict(zip(BENCH_TITLES, values))


# Published pass@1 (%) by student (params model.name) and variant. LiveCodeBench, the paper's last
# column, has no benchmark in this project and is left out.
PUBLISHED: dict[str, dict] = {
    "qwen2.5-coder-7b": {
        "label": "paper",
        "source": "IterPref paper (arXiv 2503.02783) Table 1, Qwen2.5-Coder-7B base; shared/PAPER.md section 7",
        "rows": {"reference": _row(61.6, 53.0, 76.9, 62.9, 45.8, 40.2, 16.2, 14.2),
                 "dpo": _row(71.3, 59.1, 76.2, 48.7, 38.8, 28.5, 12.8, 12.2),
                 "rpo": _row(71.3, 59.8, 70.9, 50.3, 39.8, 29.7, 14.2, 13.5),
                 "target_dpo": _row(89.0, 83.6, 83.1, 69.0, 52.7, 41.0, 25.6, 20.9),
                 "target_rpo": _row(89.6, 84.8, 83.3, 69.6, 53.3, 43.1, 29.7, 20.9)},
    },
    "qwen2.5-coder-0.5b-instruct": {
        "label": "Qwen",
        "source": "Qwen2.5-Coder-0.5B-Instruct model card (Qwen2.5-Coder technical report, arXiv 2409.12186)",
        "rows": {"reference": _row(61.6, 57.3, 52.4, 43.7)},
    },
    "qwen2.5-coder-1.5b-instruct": {
        "label": "Qwen",
        "source": "Qwen2.5-Coder-1.5B-Instruct model card (Qwen2.5-Coder technical report, arXiv 2409.12186)",
        "rows": {"reference": _row(70.7, 66.5, 69.2, 59.4)},
    },
}


MAX_HITS_LISTED = 20  # contaminated problems listed in the summary; reports/problems.json has them all


@dataclass
class Inputs:
    """Everything the report reads from one run; a missing input is ``None``/absent and noted."""

    experiment: str
    model: str
    benchmarks: list[str]
    table: dict[str, dict[str, dict]]  # {variant: {benchmark: eval report}}
    train: dict[str, dict] = field(default_factory=dict)  # {variant: reports/train/<variant>.json}
    problems: dict | None = None  # reports/problems.json
    pairs: dict | None = None  # reports/pairs.json
    rejected_lines: list[int] | None = None  # |D-| in lines per kept pair
    probe: dict[str, dict] = field(default_factory=dict)  # {variant: reports/probe/<variant>.json}
    missing: list[str] = field(default_factory=list)  # one line per input that was not there
    settings: dict[str, dict] = field(default_factory=dict)  # {variant: its training settings}, `train_settings`
    swept: dict[str, object] = field(default_factory=dict)  # {params key: value} of the run's sweep, `swept_values`


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


def rejected_line_counts(pairs_jsonl: str | Path) -> list[int]:
    """The number of rejected-only lines (D-) of each pair in a pairs.jsonl (0: an insert-only fix)."""
    return [len(span_line_indices(pair["rejected"], pair["rejected_spans"])) for _, pair in json_lines(pairs_jsonl)]


def train_settings(train_params: dict, variant: str) -> dict:
    """A variant's training settings as params.yaml gives them: ``train.common`` with
    ``train.variants.<variant>`` over it (its loss, mask and any key it overrides)."""
    return {**train_params["common"], **train_params["variants"].get(variant, {})}


def swept_values(params: dict) -> dict[str, object]:
    """The value of each key params.yaml's ``swept_keys`` names (the keys the sweep this run is a
    point of varies), in that order; empty outside a sweep."""
    return {key: value_at(params, key) for key in params.get("swept_keys") or []}


def load(root: str | Path, trained: list[str], benchmarks: list[str], experiment: str, model: str,
         train_params: dict | None = None, swept: dict[str, object] | None = None) -> Inputs:
    """Read a run's reports under ``root``: variant ``reference`` (the untrained student) and
    ``trained``; what is missing is recorded in ``Inputs.missing``, never raised. ``train_params``
    (params.yaml's ``train``) gives each trained variant's settings, ``swept`` the values of the
    keys the run's sweep varies (`swept_values`)."""
    root = Path(root)
    variants = ["reference", *trained]
    table = collect(root / "reports/eval", variants, benchmarks)
    missing = [f"reports/eval/{v}/{b}.json (not evaluated)" for v in variants for b in benchmarks
               if b not in table.get(v, {})]
    train, probe = {}, {}
    for v in trained:
        path = root / f"reports/train/{v}.json"
        if path.exists():
            train[v] = json.loads(path.read_text())
        else:
            missing.append(f"reports/train/{v}.json (not trained)")
    for v in trained:
        path = root / f"reports/probe/{v}.json"
        if path.exists():
            probe[v] = json.loads(path.read_text())
        else:
            missing.append(f"reports/probe/{v}.json (not probed)")
    problems = pairs = rejected = None
    if (root / "reports/problems.json").exists():
        problems = json.loads((root / "reports/problems.json").read_text())
    else:
        missing.append("reports/problems.json (no problems built)")
    if (root / "reports/pairs.json").exists():
        pairs = json.loads((root / "reports/pairs.json").read_text())
    else:
        missing.append("reports/pairs.json (no pairs built)")
    if (root / "data/pairs.jsonl").exists():
        rejected = rejected_line_counts(root / "data/pairs.jsonl")
    else:
        missing.append("data/pairs.jsonl (no pairs built)")
    settings = {v: train_settings(train_params, v) for v in trained} if train_params else {}
    return Inputs(experiment, model, benchmarks, table, train, problems, pairs, rejected, probe, missing, settings,
                  dict(swept or {}))


# The training numbers `metrics` adds per trained variant: reports/train/<variant>.json key -> name.
TRAIN_METRICS = {"train_loss": "train_loss", "rewards/margins": "reward_margin", "rewards/accuracies": "reward_accuracy"}
# The held-out probe's means `metrics` adds per probed variant: reports/probe/<variant>.json key -> name.
PROBE_METRICS = {"rejected_error": "d_minus_shift", "focal_margin": "focal_margin", "accuracy": "heldout_accuracy",
                 "reward_margin": "heldout_reward_margin"}


def scores(table: dict[str, dict[str, dict]]) -> dict[str, dict[str, float]]:
    """pass@1 (in %) per variant and benchmark, and each variant's average."""
    out = {}
    for v, row in table.items():
        row_scores = {b: round(100 * r["pass@1"], 2) for b, r in row.items() if "error" not in r}
        row_scores["average"] = round(sum(row_scores.values()) / len(row_scores), 2) if row_scores else 0.0
        out[v] = row_scores
    return out


def metrics(inp: Inputs) -> dict:
    """The DVC metrics, short enough to read in `dvc exp show` / `dvc metrics diff`: pass@1 (in
    %) per variant and benchmark with their average, a trained variant's final loss, reward
    margin and accuracy, its held-out probe's means (`PROBE_METRICS`), and how many problems and
    pairs the run had (``pairs``: all kept, ``heldout_pairs``: those held out of training). The
    per-task detail stays in reports/eval/, reports/train/, reports/probe/ and the summary, which
    DVC keeps as plain outputs."""
    out: dict = scores(inp.table)
    for v, row in out.items():
        trained = inp.train.get(v) or {}
        row.update({name: round(trained[key], 4) for key, name in TRAIN_METRICS.items()
                    if isinstance(trained.get(key), (int, float))})
    for v, report in inp.probe.items():
        out.setdefault(v, {}).update({name: round(report[key]["mean"], 4) for key, name in PROBE_METRICS.items()
                                      if report.get(key)})
    pairs = inp.pairs or {}
    out["data"] = {"problems": (inp.problems or {}).get("kept"), "pairs": pairs.get("pairs"),
                   "heldout_pairs": pairs.get("heldout_pairs")}
    return out


def significance(table: dict[str, dict[str, dict]], benchmarks: list[str]) -> tuple[list[dict], list[str]]:
    """For every pair of variants (b against a, in table order) and benchmark: the pass@1
    difference, the tasks that flipped and McNemar's exact p (`iterpref.reporting.compare`).

    Returns ``(rows, skipped)``: rows carry ``a``, ``b`` and `compare`'s fields; ``skipped`` says
    which comparisons had no result on one side or different task sets.
    """
    rows, skipped = [], []
    for a, b in combinations(table, 2):
        for bench in benchmarks:
            ra, rb = table[a].get(bench), table[b].get(bench)
            absent = [v for v, r in ((a, ra), (b, rb)) if r is None or "per_task" not in r]
            if absent:
                skipped.append(f"{b} vs {a} on {BENCH_TITLES.get(bench, bench)}: no scored result for "
                               f"{' and '.join(absent)}")
                continue
            try:
                rows.append({"a": a, "b": b, **compare(ra, rb)})
            except UserError as err:  # different task sets
                skipped.append(f"{b} vs {a}: {err}")
    return rows, skipped


def _num(x: float | None, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def _link(name: str, title: str, figures: dict[str, str], skipped: dict[str, str]) -> list[str]:
    if name in figures:
        return ["", f"![{title}]({figures[name]})"]
    return ["", f"Figure skipped ({title}): {skipped.get(name, 'not drawn')}."]


def _results(inp: Inputs) -> list[str]:
    m = scores(inp.table)
    pub = PUBLISHED.get(inp.model)
    head = ["variant"] + [BENCH_TITLES.get(b, b) for b in inp.benchmarks] + ["avg"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for v, row in inp.table.items():
        cells = [f"{m[v][b]:.1f} ({row[b]['passed']}/{row[b]['tasks']})" if b in m[v]
                 else ("ENV ERROR" if b in row else "-") for b in inp.benchmarks]
        lines.append(f"| {v} | " + " | ".join(cells) + f" | {m[v]['average']:.1f} |")
        published = (pub or {}).get("rows", {}).get(v)
        if published:
            values = [published.get(b) for b in inp.benchmarks]
            avg = None if None in values else sum(values) / len(values)
            lines.append(f"| {v}, published ({pub['label']}) | " + " | ".join(_num(x, ".1f") for x in values)
                         + f" | {_num(avg, '.1f')} |")
    if pub:
        lines += ["", f"Published rows ({pub['label']}): {pub['source']}; the average is over the columns shown."]
        not_run = [v for v in pub["rows"] if v not in inp.table]
        if not_run:
            lines[-1] += f" The source also reports {', '.join(not_run)} (not run here)."
        if "mbpp" in inp.benchmarks:
            lines += ["", "MBPP here is the original MBPP test split (500 tasks); the published MBPP numbers are "
                          "EvalPlus's MBPP (378 tasks), so that column compares different task sets."]
    broken = [f"- {v}/{b}: {r['error']}" for v, row in inp.table.items() for b, r in row.items() if "error" in r]
    if broken:
        lines += ["", "Evaluation environment errors (not model results):", "", *broken]
    return lines


def _significance(inp: Inputs) -> list[str]:
    rows, skipped = significance(inp.table, inp.benchmarks)
    lines = ["With one greedy sample per task, a difference of a few tasks is noise. For each pair of "
             "variants: the pass@1 difference, the tasks that flipped (gained: only B passes; lost: only "
             "A passes) and McNemar's exact two-sided p on those flips.", ""]
    if rows:
        lines += ["| B vs A | benchmark | A | B | B - A (points) | tasks differ | gained | lost | McNemar p |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            g, lo = len(r["gained"]), len(r["lost"])
            lines.append(f"| {r['b']} vs {r['a']} | {BENCH_TITLES.get(r['benchmark'], r['benchmark'])} | "
                         f"{100 * r['pass@1_a']:.1f} | {100 * r['pass@1_b']:.1f} | "
                         f"{100 * (r['pass@1_b'] - r['pass@1_a']):+.1f} | {g + lo} | {g} | {lo} | {r['p_value']:.3g} |")
    else:
        lines.append("No pair of variants has scored results on a common benchmark.")
    return lines + [f"- skipped: {s}" for s in skipped]


def _cell(text: str, width: int = 120) -> str:
    """``text`` as a markdown table cell: one line, at most ``width`` characters, pipes escaped."""
    text = " ".join(text.split())
    return (text if len(text) <= width else text[:width - 3] + "...").replace("|", "\\|")


def _problems(p: dict | None) -> list[str]:
    """What the synthesize stage kept and dropped (reports/problems.json, `problems.build.build`)."""
    if not p:
        return ["No reports/problems.json: the synthesize stage has not run."]
    lines = [f"Source `{p['source']}`: {p['candidates']} candidates, {p['kept']} kept ({100 * p['kept_share']:.1f}%), "
             f"{sum(p['dropped'].values())} dropped.", "",
             "| problems from | kept | tests | tests per problem |", "|---|---|---|---|"]
    lines += [f"| {src} | {s['kept']} | {s['tests']} | {s['tests'] / s['kept']:.2f} |" for src, s in p["per_source"].items()]
    t = p["tests"]
    lines += ["", f"- tests per kept problem: mean {t['mean']:g}, min {t['min']}, max {t['max']}; {t['total']} in all"]
    v = p.get("validation")
    if v:
        lines.append(f"- validated in the sandbox: {v['checked']} problems ({v['resumed']} from the resume log), "
                     f"{v['problems_per_s']:g} problems/s")
    cache = p.get("source_stats", {}).get("teacher_cache")
    if cache:
        lines.append(f"- teacher requests: {cache['misses']} sent, {cache['hits']} answered from the response cache")
    if p["dropped"]:
        examples = p.get("drop_examples", {})
        lines += ["", "| dropped because | problems | first example |", "|---|---|---|"]
        lines += [f"| {reason} | {n} | {_cell((examples.get(reason) or [''])[0])} |" for reason, n in p["dropped"].items()]
    d = p["decontamination"]
    against = ", ".join(f"{BENCH_TITLES.get(b, b)} ({n} tasks)" for b, n in d["benchmarks"].items()) or "no benchmark"
    lines += ["", f"Decontamination: {d['ngram']}-gram overlap of the instruction or the reference with a benchmark "
                  f"task, at least {d['threshold']:g} of the smaller text, against {against}: {d['removed']} removed."]
    if d["hits"]:
        lines += ["", "| removed problem | overlapping field | nearest benchmark task | overlap |", "|---|---|---|---|"]
        lines += [f"| {h['task_id']} | {h['field']} | {h['benchmark_task']} | {h['score']:.2f} |"
                  for h in d["hits"][:MAX_HITS_LISTED]]
        if len(d["hits"]) > MAX_HITS_LISTED:
            lines += ["", f"{len(d['hits']) - MAX_HITS_LISTED} more removed problems are listed in reports/problems.json."]
    return lines


def _data(inp: Inputs, figures: dict[str, str], skipped: dict[str, str]) -> list[str]:
    lines = []
    p = inp.pairs
    if p:
        rates = ", ".join(f"round {r}: {100 * x:.1f}%" for r, x in p["cumulative_pass_rate"].items())
        lines += [f"- trajectories: {p['trajectories']}, solved: {p['solved']}, "
                  f"solved at round 0 (no pair): {p['solved_first_try']}",
                  f"- cumulative pass rate by round: {rates}",
                  f"- pairs kept: {p['pairs']} of {p['candidate_pairs']} candidates; removed by filter: "
                  + ", ".join(f"{k} {n}" for k, n in p["removed"].items()),
                  *([f"- held out of training: {p['heldout_pairs']} pairs of {p['heldout_problems']} problems; "
                     f"training: {p['training_pairs']} pairs of {p['training_problems']} problems"]
                    if "heldout_pairs" in p else []),
                  f"- rejected error lines (D-): mean {_num(p['rejected_lines_mean'], '.2f')}, "
                  f"median {_num(p['rejected_lines_median'], 'g')}"]
    return (lines + _link("cumulative_pass_rate", "cumulative pass rate by debugging round", figures, skipped)
            + _link("rejected_lines", "D- size", figures, skipped))


def _training(inp: Inputs, figures: dict[str, str], skipped: dict[str, str]) -> list[str]:
    lines = []
    if inp.train:
        lines += ["| variant | pairs | steps | loss | reward acc. | margin | time (s) | peak RSS (GiB) |",
                  "|---|---|---|---|---|---|---|---|"]
        for v, t in inp.train.items():
            lines.append(f"| {v} | {t['pairs']} | {t['steps']} | {t['train_loss']:.4f} | "
                         f"{_num(t.get('rewards/accuracies'), '.2f')} | {_num(t.get('rewards/margins'), '.4f')} | "
                         f"{t['train_runtime_s']} | {_num(t.get('peak_rss_gib'), 'g')} |")
    return lines + _link("training_curves", "training loss, margin, reward accuracy and learning rate", figures, skipped)


def _evaluation(inp: Inputs, figures: dict[str, str], skipped: dict[str, str]) -> list[str]:
    lines = ["| variant | benchmark | tasks | generation (s) | scoring (s) | peak RSS (GiB) |",
             "|---|---|---|---|---|---|"]
    for v, row in inp.table.items():
        for b, r in row.items():
            if "error" not in r:
                t = r.get("timings_s", {})
                lines.append(f"| {v} | {BENCH_TITLES.get(b, b)} | {r['tasks']} | {_num(t.get('generation'), 'g')} | "
                             f"{_num(t.get('scoring'), 'g')} | {_num(r.get('peak_rss_gib'), 'g')} |")
    return lines + _link("error_types", "error types by variant", figures, skipped)


def _schedule(s: dict) -> str:
    return f"{s['lr_scheduler']}, warmup {s['warmup_ratio']:g}"


def _length(s: dict) -> str:
    """What bounds the run: max_steps when set, else the epochs."""
    return f"max_steps {s['max_steps']}" if s.get("max_steps", -1) > 0 else f"epochs {s['epochs']:g}"


def _mask(s: dict) -> str:
    extra = [f"{k} {v}" for k, v in (s.get("mask") or {}).items() if k != "mode"]
    return (s.get("mask") or {}).get("mode", "-") + (f" ({', '.join(extra)})" if extra else "")


def _settings(inp: Inputs) -> list[str]:
    """The run's training settings, one row per trained variant: what tells two runs of a sweep
    apart; first, when the run is a point of a sweep, the keys it varies and their values here."""
    lines = [f"- student: `{inp.model}`"]
    if inp.swept:
        lines.append("- swept: " + ", ".join(f"`{k}` = {shown(v)}" for k, v in inp.swept.items())
                     + " (this run is one point of a sweep over these keys, params.yaml's `swept_keys`)")
    p = inp.pairs or {}
    if "training_pairs" in p:
        lines.append(f"- training pairs available: {p['training_pairs']} (of {p['pairs']} kept; "
                     f"{p['heldout_pairs']} held out)")
    if not inp.settings:
        return lines + ["- no training settings were given to the report (params.yaml's train)"]
    lines += ["", "| variant | loss | mask | beta | learning rate | schedule | length | steps run | effective batch | "
                  "max length | pairs used | seed |", "|" + "---|" * 12]
    for v, s in inp.settings.items():
        t = inp.train.get(v) or {}
        processes = t.get("processes") or 1
        batch = s["per_device_batch_size"] * s["gradient_accumulation_steps"] * processes
        per = f"{s['per_device_batch_size']} x {s['gradient_accumulation_steps']} x {processes}"
        pairs = f"{t['pairs']}" if "pairs" in t else "-"
        if s.get("max_pairs"):
            pairs += f" (max_pairs {s['max_pairs']})"
        beta = f"{s['beta']:g}" + (f", rpo_alpha {s['rpo_alpha']:g}" if s["loss"] == "rpo" else "")
        lines.append(f"| {v} | {s['loss']} | {_mask(s)} | {beta} | {s['learning_rate']:g} | {_schedule(s)} | "
                     f"{_length(s)} | {t.get('steps', '-')} | {batch} ({per}) | {s['max_length']} | {pairs} | "
                     f"{s['seed']} |")
    lines += ["", "Effective batch = pairs per device x gradient accumulation x processes; the steps run and the "
                  "pairs used come from reports/train/<variant>.json."]
    return lines


# The probe's groups and the summary's names for them, in table order.
PROBE_COLUMNS = (("chosen", "chosen"), ("rejected_error", "D- (error lines)"), ("rejected_shared", "rejected, shared"),
                 ("focal_margin", "focal margin"), ("accuracy", "accuracy"), ("reward_margin", "reward margin"))


def _interval(entry: dict | None, fmt: str = "+.3f") -> str:
    """``mean [lo, hi]``, or ``-`` for a group no pair has."""
    if not entry:
        return "-"
    lo, hi = entry["ci"]
    return f"{entry['mean']:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def _direction(entry: dict | None, what: str, up: str, down: str) -> str:
    """Whether ``entry``'s interval lies above 0, below 0 or contains it, as a clause."""
    if not entry:
        return f"no pair has {what}"
    lo, hi = entry["ci"]
    if lo > 0:
        return f"{what} {up} ({entry['mean']:+.3f}, the interval excludes 0)"
    if hi < 0:
        return f"{what} {down} ({entry['mean']:+.3f}, the interval excludes 0)"
    return f"{what} did not move measurably (the interval [{lo:+.3f}, {hi:+.3f}] contains 0)"


def probe_sentence(variant: str, report: dict) -> str:
    """One sentence on what a variant's probe shows, read off its intervals."""
    margin = report.get("focal_margin")
    if not margin:
        focal = "no pair has both error and shared tokens, so there is no focal margin"
    elif margin["ci"][0] > 0:
        focal = "the error tokens moved down relative to the rest of the rejected code (focal margin > 0, interval excludes 0)"
    elif margin["ci"][1] < 0:
        focal = "the rest of the rejected code moved down relative to the error tokens (focal margin < 0, interval excludes 0)"
    else:
        focal = "error and shared tokens moved alike (the focal margin's interval contains 0)"
    accuracy = report.get("accuracy")
    prefers = (f"; it prefers the chosen side on {100 * accuracy['mean']:.0f}% of the held-out pairs"
               if accuracy else "")
    return (f"- {variant}: " + _direction(report.get("rejected_error"), "D- tokens", "went up", "went down") + "; "
            + _direction(report.get("chosen"), "chosen tokens", "went up", "went down") + "; " + focal + prefers + ".")


def _heldout(inp: Inputs, figures: dict[str, str], skipped: dict[str, str]) -> list[str]:
    if not inp.probe:
        return ["No reports/probe/<variant>.json: no variant has been probed."]
    lines = ["Log-prob shift `log p_policy - log p_reference` per token on pairs of problems held out of training "
             "(token mean within a pair, then mean over pairs), 95% bootstrap interval over pairs in brackets; focal "
             "margin = shared minus D- shift per pair; accuracy and reward margin: the DPO reward "
             "`beta * (sum log-ratio chosen - sum log-ratio rejected)` over whole completions.", "",
             "| variant | pairs | " + " | ".join(title for _, title in PROBE_COLUMNS) + " |",
             "|---|---|" + "---|" * len(PROBE_COLUMNS)]
    for v, r in inp.probe.items():
        cells = [_interval(r.get(key), ".2f" if key == "accuracy" else "+.3f") for key, _ in PROBE_COLUMNS]
        lines.append(f"| {v} | {r['pairs']} | " + " | ".join(cells) + " |")
    lines += ["", *[probe_sentence(v, r) for v, r in inp.probe.items()]]
    return lines + _link("heldout_shifts", "held-out log-prob shifts by token group", figures, skipped)


# The position groups (iterpref.probe.positions) and the summary's names for them, in table order.
POSITION_COLUMNS = (("chosen_prefix", "chosen, prefix"), ("chosen_fix", "D+ (fix lines)"),
                    ("chosen_suffix", "chosen, suffix"), ("rejected_prefix", "rejected, prefix"),
                    ("rejected_error", "D- (error lines)"), ("rejected_suffix", "rejected, suffix"),
                    ("focal_margin", "focal margin"), ("accuracy", "accuracy"))
# The probe's pair sets along training (iterpref.probe.along_training) and their names.
SPLIT_TITLES = {"heldout": "held out", "training": "in sample"}


def _positions(inp: Inputs, figures: dict[str, str], skipped: dict[str, str]) -> list[str]:
    """The probe by position, held out and in sample, per variant, and the link to the per-token picture."""
    probed = {v: r for v, r in inp.probe.items() if "chosen_prefix" in r}
    if not probed:
        return ["No reports/probe/<variant>.json holds the position groups."]
    lines = ["The same shifts by where a token lies: prefix = the shared code before the first changed line (the "
             "same tokens after the same context on both sides), D+ / D- = the lines the fix wrote / replaced, "
             "suffix = the other tokens from the first change on; held out = pairs of problems no training pair "
             "comes from, in sample = the pairs the variant trained on. "
             "Mean shift per token, 95% bootstrap interval over pairs.", "",
             "| variant | pairs from | pairs | " + " | ".join(title for _, title in POSITION_COLUMNS) + " |",
             "|---|---|---|" + "---|" * len(POSITION_COLUMNS)]
    for v, r in probed.items():
        for label, report in (("held out", r), ("in sample", r.get("in_sample"))):
            if report:
                cells = [_interval(report.get(key), ".2f" if key == "accuracy" else "+.3f")
                         for key, _ in POSITION_COLUMNS]
                lines.append(f"| {v} | {label} | {report['pairs']} | " + " | ".join(cells) + " |")
    if "probe_tokens" in figures:
        lines += ["", f"Every token of a few held-out pairs, coloured by its shift, variants side by side: "
                      f"[per-token picture]({figures['probe_tokens']})."]
    else:
        lines += ["", f"Per-token picture skipped: {skipped.get('probe_tokens', 'not drawn')}."]
    return lines


def _along_training(figures: dict[str, str], skipped: dict[str, str]) -> list[str]:
    """What the figure of the probe along training shows, and the figure."""
    return ["Each position group's mean shift at the steps the trainer recorded (`train.common.probe_points`; "
            "step 0 is the untrained model, every shift 0), held out (solid) and in sample (dashed), 95% bootstrap "
            "interval over pairs shaded; the last step is the trained model of the table above.",
            *_link("probe_along_training", "the probe along training", figures, skipped)]


def markdown(inp: Inputs, figures: dict[str, str] | None = None, skipped: dict[str, str] | None = None) -> str:
    """reports/summary.md: Table 1 with published rows, significance, the training settings,
    problems, data, training, held-out pairs, evaluation.

    ``figures`` maps a figure name (see `iterpref.reporting.figures.render`) to its link relative to the
    summary; ``skipped`` maps the names of figures not drawn to the reason.
    """
    figures, skipped = figures or {}, skipped or {}
    lines = [f"# IterPref results: experiment `{inp.experiment}`", "",
             f"Student model: `{inp.model}`. pass@1 (%), greedy decoding, one sample per task, official "
             "evaluators run in the sandbox.", "", "## Table 1: pass@1 (%)", "", *_results(inp),
             *_link("pass_at_1", "pass@1 by benchmark", figures, skipped),
             "", "## Which differences are real", "", *_significance(inp),
             *_link("gains_losses", "per-task gains and losses, target_dpo vs dpo", figures, skipped),
             "", "## Settings", "", *_settings(inp),
             "", "## Problems", "", *_problems(inp.problems),
             "", "## Data", "", *_data(inp, figures, skipped),
             "", "## Training", "", *_training(inp, figures, skipped),
             "", "## Held-out pairs", "", *_heldout(inp, figures, skipped),
             "", "## Where the loss acts, by position", "", *_positions(inp, figures, skipped),
             "", "## Where the loss acts, along training", "", *_along_training(figures, skipped),
             "", "## Evaluation", "", *_evaluation(inp, figures, skipped)]
    if inp.missing:
        lines += ["", "## Missing inputs (skipped)", "", *[f"- {m}" for m in inp.missing]]
    return "\n".join(lines) + "\n"
