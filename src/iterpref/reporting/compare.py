"""Which tasks a variant gained and lost against another, per benchmark, within one run or across
experiments.

With one greedy sample per task, a pass@1 difference of a few tasks can be noise: the paired
count of tasks that flipped, and McNemar's exact test on those flips, say how much. A side is a
variant of the workspace's run, ``EXP:VARIANT`` (a DVC experiment name or a git revision: its
per-task verdicts are read from git and DVC's cache, the workspace is left as it is) or a folder
of result files.

    python -m iterpref.reporting.compare dpo target_dpo                 # reports/eval/{dpo,target_dpo}/*.json
    python -m iterpref.reporting.compare reference target_dpo --benchmarks humaneval --show 20
    python -m iterpref.reporting.compare beta01:target_dpo beta02:target_dpo       # two experiments
    python -m iterpref.reporting.compare main:target_dpo target_dpo      # the last commit against the workspace
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from math import comb
from pathlib import Path

from iterpref.cli import ArgumentParser, UserError, command
from iterpref.reporting.runs import RunFiles

EVAL_DIR = "reports/eval"


def mcnemar_exact(gained: int, lost: int) -> float:
    """Two-sided exact McNemar p-value: the flips are Binomial(gained + lost, 1/2) under no difference."""
    n = gained + lost
    if n == 0:
        return 1.0
    tail = sum(comb(n, k) for k in range(min(gained, lost) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def compare(a: dict, b: dict) -> dict:
    """Per-task comparison of two result documents of the same benchmark (``b`` against ``a``)."""
    pa = {t["task_id"]: t["passed"] for t in a["per_task"]}
    pb = {t["task_id"]: t["passed"] for t in b["per_task"]}
    if set(pa) != set(pb):
        only = sorted(set(pa) ^ set(pb))[:5]
        raise UserError(f"{a['benchmark']}: the two results cover different tasks (e.g. {only})")
    gained = sorted(t for t in pa if pb[t] and not pa[t])
    lost = sorted(t for t in pa if pa[t] and not pb[t])
    n = len(pa)
    return {"benchmark": a["benchmark"], "tasks": n, "pass@1_a": sum(pa.values()) / n, "pass@1_b": sum(pb.values()) / n,
            "both": sum(pa[t] and pb[t] for t in pa), "gained": gained, "lost": lost,
            "p_value": mcnemar_exact(len(gained), len(lost))}


@dataclass
class Side:
    """One side of a comparison: a folder of ``<benchmark>.json`` result files in a run's files."""

    label: str
    files: RunFiles
    folder: str

    def benchmarks(self) -> list[str]:
        return self.files.stems(self.folder)

    def result(self, benchmark: str) -> dict:
        path = f"{self.folder}/{benchmark}.json"
        if not self.files.exists(path):
            raise FileNotFoundError(2, f"no result for benchmark {benchmark!r} at {self.files.label}; "
                                       "run its evaluate stage first", path)
        return self.files.read_json(path)


def side(spec: str, repo: str | Path = ".", eval_dir: str = EVAL_DIR) -> Side:
    """``VARIANT`` (the workspace's ``eval_dir``/VARIANT), ``EXP:VARIANT`` (a DVC experiment or
    git revision of ``repo``) or a folder holding result files."""
    if Path(spec).is_dir():
        return Side(spec, RunFiles(spec), ".")
    rev, sep, variant = spec.rpartition(":")
    if sep and not (rev and variant):
        raise UserError(f"{spec!r}: expected VARIANT, EXP:VARIANT or a folder of result files")
    files = RunFiles(repo, rev or None)
    folder = f"{EVAL_DIR if rev else eval_dir}/{variant}"
    if not files.stems(folder):
        raise UserError(f"{spec!r}: no result files in {folder}/ at {files.label}")
    return Side(spec, files, folder)


def compare_sides(a: Side, b: Side, benchmarks: list[str] | None = None) -> list[dict]:
    """`compare` for every benchmark both sides hold (or ``benchmarks``), those with per-task verdicts."""
    names = benchmarks or [n for n in a.benchmarks() if n in set(b.benchmarks())]
    out = []
    for name in names:
        ra, rb = a.result(name), b.result(name)
        if "per_task" in ra and "per_task" in rb:
            out.append(compare(ra, rb))
    return out


@command
def main(argv: list[str] | None = None) -> None:
    ap = ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="the baseline: VARIANT, EXP:VARIANT (DVC experiment or git revision) or a folder")
    ap.add_argument("b", help="the side compared against it, given the same way")
    ap.add_argument("--eval-dir", default=EVAL_DIR, help="where a bare VARIANT's results are in the workspace")
    ap.add_argument("--repo", default=".", help="the repository EXP:VARIANT is read from")
    ap.add_argument("--benchmarks", nargs="*", help="default: every benchmark both have")
    ap.add_argument("--show", type=int, default=10, help="task ids listed per side")
    ap.add_argument("--json", action="store_true", help="print the comparison as JSON")
    args = ap.parse_args(argv)
    rows = compare_sides(side(args.a, args.repo, args.eval_dir), side(args.b, args.repo, args.eval_dir),
                         args.benchmarks)
    if not rows:
        raise UserError(f"no benchmark has per-task results for both {args.a} and {args.b}")
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    for r in rows:
        delta = 100 * (r["pass@1_b"] - r["pass@1_a"])
        print(f"{r['benchmark']}: {args.a} {100 * r['pass@1_a']:.1f} -> {args.b} {100 * r['pass@1_b']:.1f} "
              f"({delta:+.1f} points, {r['tasks']} tasks); {len(r['gained']) + len(r['lost'])} tasks differ: "
              f"+{len(r['gained'])} gained, -{len(r['lost'])} lost, McNemar exact p = {r['p_value']:.3g}")
        for label, ids in (("gained", r["gained"]), ("lost", r["lost"])):
            if ids:
                more = f" ... (+{len(ids) - args.show})" if len(ids) > args.show else ""
                print(f"  {label}: {', '.join(ids[:args.show])}{more}")


if __name__ == "__main__":
    main()
