"""HumanEval+ and MBPP+ scored by evalplus 0.3.1's own evaluator.

What evalplus does for a sample: exec the solution, call ``entry_point`` on every ``base_input``
(the original tests' inputs) and then every ``plus_input``, and compare each output with the
canonical solution's (its "ground truth", exactness or ``atol``, plus a few special oracles),
each call under a time limit of ``max(min_time_limit, gt_time_limit_factor * canonical time)``.
A task passes HumanEval+/MBPP+ when both the base and the plus run say ``pass``.

Here that evaluator runs unchanged inside the sandbox: a tiny wrapper calls
``evalplus.evaluate.evaluate(...)`` with its defaults and then ``os._exit(0)`` (the CLI waits
about 20 s at exit on a non-daemon "stucking_checker" thread). The data file is copied into the
work folder and named by ``HUMANEVAL_OVERRIDE_PATH``/``MBPP_OVERRIDE_PATH``; evalplus's cache
(``XDG_CACHE_HOME``) is a folder inside it.

Ground truth: evalplus computes the canonical outputs and timings once per data file (md5) and
caches them as a pickle. We compute that pickle in a sandbox run that holds no candidate code,
keep it under ``.cache/evalplus/`` and copy it into each scoring run's own cache folder, so a
candidate's run never writes to the persistent cache.

Error types (a diagnosis, never the verdict): evalplus keeps only pass/fail per input, so a
failing solution is run once more (`errors.classify`) on the input it failed on, as evalplus
deserialises it; the exception it raises is the type, ``AssertionError`` when it raises nothing
(a wrong output), ``Timeout`` when evalplus's own run timed out.

Confirmed passes: evalplus runs the solution and its output comparison in one process, so a
wrong solution can make it report a pass (an output whose ``__eq__`` is always true, a patched
``numpy.allclose`` or ``builtins.set``, its status values set from the caller's frame before
``os._exit``). Every pass it reports is run once more through the cross-process judge
(`confirm.OutputsProgram`): the solution on the same base and plus inputs in a process of its
own, each output compared judge-side with the same ground truth by evalplus's rules
(`evalplus_check`). Final passed = evalplus passed AND judge passed; a pass the judge does not
confirm is ``unconfirmed``. The judge has no per-input time limit: only its run's wall clock,
twice evalplus's limits for both phases plus a second.

Data: the official source is evalplus's release file (HumanEvalPlus v0.1.10, MbppPlus v0.2.0) in
evalplus's cache folder, downloaded by evalplus's own loader when absent; offline, point
``eval.data.humaneval_plus`` / ``eval.data.mbpp_plus`` at local copies.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import pickle
import socket
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import Any

from iterpref.evaluation import confirm, errors
from iterpref.evaluation.benchmark import Benchmark, SetupError, Task, Verdict, defines, numbered_jsonl, run_official
from iterpref.evaluation.humaneval import INSTRUCTION
from iterpref.evaluation.mbpp import EXAMPLE
from iterpref.sandbox import PROGRAMS, SandboxConfig

# dataset: (name, title, release name, pinned release = evalplus 0.3.1's default, override variable)
DATASETS = {
    "humaneval": ("humaneval_plus", "HumanEval+", "HumanEvalPlus", "v0.1.10", "HUMANEVAL_OVERRIDE_PATH"),
    "mbpp": ("mbpp_plus", "MBPP+", "MbppPlus", "v0.2.0", "MBPP_OVERRIDE_PATH"),
}
FIELDS = {"task_id": str, "prompt": str, "entry_point": str, "canonical_solution": str, "contract": str,
          "base_input": list, "plus_input": list, "atol": (int, float)}
CACHE = Path(".cache/evalplus")  # ground truth per data-file md5, relative to the working directory
PROBE_TIMEOUT_S = 5.0  # reachability probe before evalplus's own (timeout-less) download
DOWNLOAD_TIMEOUT_S = 60.0
EVALPLUS_MEMORY_MB = 4096  # evalplus lowers each solution's RLIMIT_AS to min(4 GiB, RAM) itself
GROUNDTRUTH_FILE_MB = 256  # the pickle of every expected output (no candidate code in that run)
RESULTS_FILE_MB = 64  # evalplus's results JSON holds each solution and its failing input
PER_PHASE_WORST_S = 62.0  # evalplus kills a base or plus run after min(60, sum of limits) + 2 s
WRAPPER_NAME = "evalplus_run.py"
# The program run inside the sandbox (a copy of it, in the run's work folder).
WRAPPER = PROGRAMS / WRAPPER_NAME
PHASES = ("base", "plus")


def time_limit_s(expected: dict) -> float:
    """evalplus's wall-clock limit for one sample's base and plus runs together, from the
    canonical solution's time per input (``expected["base_time"]``, ...): per phase the sum of
    ``max(min_time_limit, factor * time)``, at most 60 s, plus a second."""
    from evalplus.config import DEFAULT_GT_TIME_LIMIT_FACTOR, DEFAULT_MIN_TIME_LIMIT

    return sum(min(60.0, sum(max(DEFAULT_MIN_TIME_LIMIT, DEFAULT_GT_TIME_LIMIT_FACTOR * t)
                             for t in expected[f"{phase}_time"])) + 1.0 for phase in PHASES)


def official_cache_dir() -> Path:
    """evalplus's own cache folder on this machine (its ``CACHE_DIR``: appdirs' user cache)."""
    from appdirs import user_cache_dir

    return Path(user_cache_dir("evalplus"))


def split_mbpp_prompt(prompt: str) -> tuple[str, str]:
    """MBPP+'s prompt, a docstring holding the statement and then one assert, as
    ``(statement, assert)``; ValueError when it is not that."""
    text = prompt.strip()
    if len(text) < 6 or not (text.startswith('"""') and text.endswith('"""')):
        raise ValueError("not a docstring")
    lines = text[3:-3].strip("\n").splitlines()
    first = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("assert")), None)
    if first is None:
        raise ValueError("no assert in the docstring")
    statement = "\n".join(lines[:first]).strip()
    if not statement:
        raise ValueError("no statement before the assert")
    return statement, "\n".join(ln.strip() for ln in lines[first:]).strip()


class EvalPlus(Benchmark):
    """HumanEval+ (``dataset="humaneval"``) or MBPP+ (``dataset="mbpp"``) behind evalplus 0.3.1.

    Args:
        data: a local data file in evalplus's release format; None: evalplus's release file.
        setting: the config key that holds ``data``, named in errors.
        dataset: ``humaneval`` or ``mbpp``.
    """

    packages = ("evalplus",)
    judge_confirmed = True

    def __init__(self, data: str | os.PathLike | None = None, setting: str = "eval.data",
                 dataset: str = "humaneval"):
        if dataset not in DATASETS:
            raise ValueError(f"EvalPlus: dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
        self.dataset = dataset
        self.name, self.title, self.release, self.version, self.override_env = DATASETS[dataset]
        self.cache_dir = CACHE
        self._ids: tuple[Path, float, list[str]] | None = None
        super().__init__(data, setting)

    # ---------------------------------------------------------------- data

    def release_file(self) -> Path:
        """Where evalplus keeps (and its loader downloads) the pinned release file."""
        return official_cache_dir() / f"{self.release}-{self.version}.jsonl"

    def release_url(self) -> str:
        """evalplus's download address of the pinned release file (its ``get_dataset_metadata``)."""
        return (f"https://github.com/evalplus/{self.release.lower()}_release/releases/download/"
                f"{self.version}/{self.release}.jsonl.gz")

    def data_file(self) -> Path:
        if self.data is not None:
            return self.data
        path = self.release_file()
        if path.is_file():
            return path
        url = self.release_url()
        hint = (f"set {self.setting} to a local {self.release}-{self.version}.jsonl (evalplus's release "
                f"file, from {url}, unzipped), or put it at {path}")
        try:  # evalplus's loader has no timeout: offline it would hang, so look first
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=PROBE_TIMEOUT_S).close()
        except (OSError, ValueError) as e:
            raise SetupError(f"{self.name}: {path} is absent and {url} cannot be reached ({e}); {hint}") from None
        from evalplus.data import humaneval as he_data
        from evalplus.data import mbpp as mbpp_data
        from evalplus.data.utils import get_dataset_metadata, make_cache

        pinned = he_data.HUMANEVAL_PLUS_VERSION if self.dataset == "humaneval" else mbpp_data.MBPP_PLUS_VERSION
        if pinned != self.version:
            raise SetupError(f"{self.name}: the installed evalplus uses {self.release} {pinned}, this code "
                             f"pins {self.version}; install evalplus==0.3.1 or {hint}")
        url, cache_path = get_dataset_metadata(self.release, self.version, mini=False)
        if Path(cache_path) != path:
            raise SetupError(f"{self.name}: evalplus caches its data at {cache_path}, expected {path}")
        old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        try:
            make_cache(url, cache_path)
        except (OSError, urllib.error.URLError) as e:
            raise SetupError(f"{self.name}: downloading {url} failed ({e}); {hint}") from None
        finally:
            socket.setdefaulttimeout(old)
        return path

    def load(self, limit: int | None = None) -> list[Task]:
        path = self.data_file()
        tasks, seen = [], set()
        shape = ", ".join(FIELDS) + (", assertion" if self.dataset == "mbpp" else "")
        for n, row in numbered_jsonl(path):
            for key, kind in FIELDS.items():
                value = row.get(key)
                if not isinstance(value, kind) or isinstance(value, bool):
                    what = {str: "text", list: "a list"}.get(kind, "a number")
                    raise SetupError(f"{path}:{n}: field {key!r} missing or not {what} "
                                     f"(a {self.title} record has {shape})")
            task_id = row["task_id"]
            if task_id in seen:
                raise SetupError(f"{path}:{n}: field 'task_id': {task_id} appears twice")
            seen.add(task_id)
            if self.dataset == "mbpp":
                try:
                    statement, example = split_mbpp_prompt(row["prompt"])
                except ValueError as e:
                    raise SetupError(f"{path}:{n}: field 'prompt' of {task_id}: {e} (MBPP+ prompts are a "
                                     f"docstring holding the statement and one assert)") from None
                tasks.append(Task(task_id, f"{statement}\n{EXAMPLE}\n{example}", "", row["entry_point"], row,
                                  prompt=row["prompt"]))
            else:
                tasks.append(Task(task_id, INSTRUCTION, row["prompt"], row["entry_point"], row))
        self._ids = (path, path.stat().st_mtime, [t.task_id for t in tasks])
        return tasks[:limit]

    def file_task_ids(self) -> list[str]:
        """Every task id of the data file, in file order (evalplus wants a sample for each)."""
        path = self.data_file()
        if self._ids is None or self._ids[0] != path or self._ids[1] != path.stat().st_mtime:
            self.load()
        return self._ids[2]

    # ---------------------------------------------------------------- samples

    def solution(self, task: Task, code: str) -> str:
        """The program evalplus runs for ``code``. HumanEval+: the prompt, then the model's whole
        function (the prompt's docstring-only def is redefined) or the body it wrote (as
        `HumanEval.completion`). MBPP+: the code as it is (the prompt is only a docstring)."""
        if self.dataset == "mbpp":
            return code
        if defines(code, task.entry_point):
            return task.record["prompt"] + "\n" + code + "\n"
        return task.record["prompt"] + code

    def sample(self, task: Task, code: str) -> dict:
        return {"task_id": task.task_id, "solution": self.solution(task, code)}

    def reference(self, task: Task) -> str | None:
        return task.record["prompt"] + task.record["canonical_solution"]

    # ---------------------------------------------------------------- scoring

    def _data_for(self, tasks: list[Task]) -> tuple[str, Path | str]:
        """The data file for a run over ``tasks``: the file itself when they are all of it, in
        order, else a file of just their records (evalplus asserts every task has a sample)."""
        ids = [t.task_id for t in tasks]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{self.name}: a task appears twice among the tasks to score")
        path = self.data_file()
        if ids == self.file_task_ids():
            return ("data.jsonl.gz" if path.suffix == ".gz" else "data.jsonl"), path
        return "data.jsonl", "".join(json.dumps(t.record) + "\n" for t in tasks)

    def _env(self, data_name: str) -> dict[str, str]:
        return {self.override_env: "{work}/" + data_name, "XDG_CACHE_HOME": "{work}/cache",
                "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}

    def expected_outputs(self, tasks: list[Task], sandbox: SandboxConfig) -> dict[str, dict]:
        """evalplus's ground truth for ``tasks``: ``{task_id: {"base": outputs, "base_time": seconds
        per input, "plus": ..., "plus_time": ...}}``, the canonical solution's (for MBPP+'s
        ``MBPP_OUTPUT_NOT_NONE_TASKS``: whether its output is not None)."""
        data_name, data = self._data_for(tasks)
        return pickle.loads(self.groundtruth(data_name, data, sandbox, len(tasks)).read_bytes())

    def groundtruth(self, data_name: str, data: Path | str, sandbox: SandboxConfig, n_tasks: int) -> Path:
        """The cached ground-truth pickle for this data, computed (without any candidate code)
        on a miss."""
        raw = data.read_bytes() if isinstance(data, Path) else data.encode("utf-8")
        digest = hashlib.md5(raw).hexdigest()  # evalplus's own key for it
        cached = Path(self.cache_dir) / f"{self.dataset}-{digest}.pkl"
        if cached.is_file():
            return cached
        blob = run_official([WRAPPER_NAME, "groundtruth", self.dataset, "1"],
                            {WRAPPER_NAME: WRAPPER, data_name: data}, f"cache/evalplus/{digest}.pkl",
                            replace(sandbox, max_file_mb=max(sandbox.max_file_mb, GROUNDTRUTH_FILE_MB)),
                            budget_s=300 + 5 * n_tasks, env=self._env(data_name), memory_mb=EVALPLUS_MEMORY_MB,
                            parse=lambda p: p.read_bytes())
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f"{cached.name}.{os.getpid()}.tmp")
        tmp.write_bytes(blob)
        os.replace(tmp, cached)
        return cached

    def score(self, tasks: list[Task], codes: list[str], sandbox: SandboxConfig,
              timeout_s: float = 3.0, workers: int = 2) -> list[Verdict]:
        """evalplus's verdicts with its own per-input time limits; ``timeout_s`` only bounds the
        re-run that finds a failure's error type."""
        self.check_count(tasks, codes)
        if not tasks:
            return []
        data_name, data = self._data_for(tasks)
        truth = self.groundtruth(data_name, data, sandbox, len(tasks))
        samples = "".join(json.dumps(self.sample(t, c)) + "\n" for t, c in zip(tasks, codes))
        workers = max(1, workers)
        results = run_official(
            [WRAPPER_NAME, "evaluate", self.dataset, str(workers)],
            {WRAPPER_NAME: WRAPPER, data_name: data, "samples.jsonl": samples, "groundtruth.pkl": truth},
            "samples_eval_results.json", replace(sandbox, max_file_mb=max(sandbox.max_file_mb, RESULTS_FILE_MB)),
            budget_s=120 + len(tasks) * 2 * PER_PHASE_WORST_S / workers, env=self._env(data_name),
            memory_mb=EVALPLUS_MEMORY_MB, parse=lambda p: json.loads(p.read_text(encoding="utf-8")))
        rows = results.get("eval", {}) if isinstance(results, dict) else {}
        missing = [t.task_id for t in tasks if not rows.get(t.task_id)]
        if missing:
            raise SetupError(f"{self.name}: evalplus returned no verdict for {missing[:5]}")

        verdicts, failed = [], []
        for i, t in enumerate(tasks):
            r = rows[t.task_id][0]
            base, plus = r.get("base_status"), r.get("plus_status")
            passed = base == plus == "pass"
            phase = "base" if base != "pass" else "plus"
            status = "pass" if passed else ("timeout" if r.get(f"{phase}_status") == "timeout" else "fail")
            fail_tests = r.get(f"{phase}_fail_tests") or []
            detail = f"base: {base}, plus: {plus}"
            if not passed and fail_tests:
                detail += f"; {phase} input it failed on: {json.dumps(fail_tests[0])[:300]}"
            verdicts.append(Verdict(t.task_id, passed, status, errors.TIMEOUT if status == "timeout" else None,
                                    detail[:500]))
            if status == "fail":
                failed.append((i, phase, fail_tests[0] if fail_tests else None))
        expected = pickle.loads(truth.read_bytes())
        passed = [t for t, v in zip(tasks, verdicts) if v.passed]
        confirm.confirm_passes(verdicts, lambda i: self.judged(tasks[i], codes[i], expected[tasks[i].task_id]),
                               sandbox, max((time_limit_s(expected[t.task_id]) for t in passed), default=0.0),
                               workers, label=f"confirm {self.name}")
        programs = [self.program(tasks[i], codes[i], phase, failing) for i, phase, failing in failed]
        types = errors.classify(programs, sandbox, timeout_s, memory_mb=EVALPLUS_MEMORY_MB)
        for (i, _, _), name in zip(failed, types):
            verdicts[i].error_type = name
        return verdicts

    # ---------------------------------------------------------------- error types

    def inputs(self, task: Task, phase: str, failing: Any = None) -> list:
        """The ``phase`` inputs as evalplus passes them (``entry_point(*input)``; MBPP+'s
        deserialised as its loader does), or, given the input evalplus reported ``failing`` and
        found among the record's, just that one (the error-type re-run)."""
        chosen = task.record[f"{phase}_input"]
        if failing is not None:
            for inp in chosen:
                if inp == failing:
                    chosen = [inp]
                    break
        if self.dataset == "mbpp":
            from evalplus.data.mbpp import mbpp_deserialize_inputs

            chosen = mbpp_deserialize_inputs(task.task_id, chosen)
        return list(chosen)

    def judged(self, task: Task, code: str, expected: dict) -> confirm.OutputsProgram:
        """The program the judge confirms a pass with: ``code`` as evalplus runs it, on the base
        and plus inputs, against ``expected`` (the task's entry of `expected_outputs`)."""
        return confirm.OutputsProgram(self.solution(task, code), task.entry_point, self.dataset, task.record["atol"],
                                      {phase: (self.inputs(task, phase), expected[phase]) for phase in PHASES})

    def program(self, task: Task, code: str, phase: str, failing: Any = None) -> str:
        """A program that runs the solution as evalplus does (exec into a fresh namespace, then
        ``entry_point(*input)``) and raises what it raises, or AssertionError when it raises
        nothing (evalplus then failed it on a wrong output)."""
        payload = base64.b64encode(pickle.dumps(self.inputs(task, phase, failing), protocol=4)).decode()
        entry = task.entry_point
        return (
            "import base64, copy, pickle\n"
            f"_inputs = pickle.loads(base64.b64decode({payload!r}))\n"
            "_ns = {}\n"
            f"exec(compile({self.solution(task, code)!r}, '<solution>', 'exec'), _ns)\n"
            f"if {entry!r} not in _ns:\n"
            f"    raise NameError({f'name {entry!r} is not defined'!r})\n"
            f"_fn = _ns[{entry!r}]\n"
            "for _args in _inputs:\n"
            "    _fn(*copy.deepcopy(_args))\n"
            "raise AssertionError('the solution raised nothing: a wrong output')\n"
        )
