"""Which tasks a variant gained and lost against another, per benchmark.

With one greedy sample per task, a pass@1 difference of a few tasks can be noise: the paired
count of tasks that flipped, and McNemar's exact test on those flips, say how much.

    python -m iterpref.reporting.compare dpo target_dpo                 # reports/eval/{dpo,target_dpo}/*.json
    python -m iterpref.reporting.compare reference target_dpo --benchmarks humaneval --show 20
"""

from __future__ import annotations

import json
from math import comb
from pathlib import Path

from iterpref.cli import ArgumentParser, UserError, command


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


def compare_dirs(dir_a: Path, dir_b: Path, benchmarks: list[str] | None = None) -> list[dict]:
    """`compare` for every benchmark both result folders hold."""
    names = benchmarks or sorted(p.stem for p in dir_a.glob("*.json") if (dir_b / p.name).exists())
    out = []
    for name in names:
        fa, fb = dir_a / f"{name}.json", dir_b / f"{name}.json"
        for f in (fa, fb):
            if not f.exists():
                raise FileNotFoundError(f"{f}: no result for benchmark {name!r}; run its evaluate stage first")
        ra, rb = json.loads(fa.read_text()), json.loads(fb.read_text())
        if "per_task" in ra and "per_task" in rb:
            out.append(compare(ra, rb))
    return out


@command
def main(argv: list[str] | None = None) -> None:
    ap = ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("a", help="the baseline variant (a folder under --eval-dir, or a path)")
    ap.add_argument("b", help="the variant compared against it")
    ap.add_argument("--eval-dir", default="reports/eval")
    ap.add_argument("--benchmarks", nargs="*", help="default: every benchmark both have")
    ap.add_argument("--show", type=int, default=10, help="task ids listed per side")
    ap.add_argument("--json", action="store_true", help="print the comparison as JSON")
    args = ap.parse_args(argv)
    resolve = lambda v: Path(v) if Path(v).is_dir() else Path(args.eval_dir) / v  # noqa: E731
    rows = compare_dirs(resolve(args.a), resolve(args.b), args.benchmarks)
    if not rows:
        raise UserError(f"no benchmark has results for both {args.a} and {args.b} (under {args.eval_dir})")
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
