"""BigCodeBench (Full: 1140 tasks, Hard: 148) x (Complete, Instruct), scored by bigcodebench 0.2.5's
own evaluator with local execution.

What bigcodebench does for a sample: prefix the task's ``code_prompt`` and ``pass`` (its
"calibrated" default), exec the solution and the task's ``unittest`` class ``TestCases`` in a
forked child under its own rlimits (``--max_as_limit``, ``--max_data_limit``,
``--max_stack_limit``) and a time limit, and report ``pass``, ``fail`` (with each failing test's
traceback, or ``ALL`` and the message when the module itself did not run) or ``timeout``.

Here that evaluator runs unchanged inside the sandbox: a tiny wrapper calls
``bigcodebench.evaluate``'s own CLI entry (``--execution local``; the default execution is a remote
service) and then ``os._exit``, so no thread or manager process left behind keeps it alive. The
data file is copied into the work folder and named by ``BIGCODEBENCH_OVERRIDE_PATH``; bigcodebench's
cache (``XDG_CACHE_HOME``) is a folder inside it.

Limits: the sandbox caps each process's address space (RLIMIT_AS) and an unprivileged process
cannot raise a hard limit, so the evaluator's own per-task limits (30 GiB by default) must not
exceed the sandbox's: both are ``memory_mb`` (8 GiB; the evaluator alone maps about 2 GiB, each
task's child is forked from it and imports pandas/matplotlib). The per-task time limit is
bigcodebench's ``TIMEOUT_LIMIT`` (240 s); its ``BIGCODEBENCH_TIMEOUT_PER_TASK`` variable is
unusable in 0.2.5 (it compares the string with a float and raises), so a shorter limit
(``task_timeout_s``) is applied by the wrapper to that same module constant.

Ground truth: before scoring, bigcodebench runs every canonical solution and caches the timings
per data-file md5 as a pickle. We compute that pickle in a sandbox run that holds no candidate
code, keep it under ``.cache/bigcodebench/`` (keyed by the data md5 and a fingerprint of the
installed packages, so installing a missing library recomputes it) and copy it into each scoring
run's own cache folder, so a candidate's run never writes to the persistent cache. A subset of
tasks (``eval.limit``) is scored on a data file holding only those tasks (bigcodebench asserts
that the samples cover the data file; its ``--selective_evaluate`` would cache a partial ground
truth under the full file's hash).

Error types (a diagnosis, never the verdict): the exception class at the end of the failing
tests' tracebacks (`errors.from_traceback`; an error such as ``KeyError`` before a plain
``AssertionError``), ``Timeout`` for a timeout; when the module itself did not run (a syntax
error, a failing import) bigcodebench keeps only the message, and the program is run once more
(`errors.classify`) to name it.

Forgeable verdicts: bigcodebench runs the solution and its ``TestCases`` in one process, so a
wrong solution can forge a pass as with bigcodebench itself (patch ``unittest``'s asserts, an
always-equal return value, exit 0 early). No cross-process judge can confirm them: the tests
patch modules inside the solution's own process (``@patch('requests.get')``, ``os.path.exists``),
hand it mocks, and inspect the DataFrames, Axes and figures it returns, none of which can cross
a process boundary as data. These verdicts are the official harness's, ``judge_confirmed`` is
False in the result, and a model's BigCodeBench score is only as trustworthy as its code is honest.

Data: the official source is the datasets hub (``bigcode/bigcodebench[-hard]``, split v0.1.4),
which bigcodebench's loader caches as ``BigCodeBench[-Hard]-v0.1.4.jsonl``; offline, point
``eval.data.bigcodebench_<subset>_<split>`` at a local copy in that benchmark's folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import replace
from importlib import metadata
from pathlib import Path

from iterpref.evaluation import errors
from iterpref.evaluation.benchmark import (
    Benchmark,
    SetupError,
    Task,
    Verdict,
    defines,
    json_objects,
    numbered_jsonl,
    run_official,
)
from iterpref.sandbox import PROGRAMS, SandboxConfig

SUBSETS = ("full", "hard")
SPLITS = ("complete", "instruct")
HF_DATASET = "bigcode/bigcodebench"  # + "-hard"
VERSION = "v0.1.4"  # bigcodebench 0.2.5's BIGCODEBENCH_VERSION
FIELDS = ("task_id", "complete_prompt", "instruct_prompt", "canonical_solution", "code_prompt", "test",
          "entry_point")
INSTRUCTION = ("Complete the following Python function so that it does what its docstring says, "
               "using the libraries it imports.")
CACHE = Path(".cache/bigcodebench")  # ground truth per data-file md5, relative to the working directory
PROBE_TIMEOUT_S = 5.0  # reachability probe before the datasets hub download (which has no timeout)
MEMORY_MB = 8192  # address space per process, sandbox and bigcodebench's own per-task limits alike
OFFICIAL_TASK_TIMEOUT_S = 240.0  # bigcodebench.eval.utils.TIMEOUT_LIMIT
WRAPPER_NAME = "bigcodebench_run.py"
# The program run inside the sandbox (a copy of it, in the run's work folder).
WRAPPER = PROGRAMS / WRAPPER_NAME
RESULTS = "samples_eval_results.json"  # what the CLI writes for --samples samples.jsonl


def unreachable(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Why ``url`` cannot be reached within ``timeout_s`` (DNS included), or None when it answers
    (an HTTP error status is an answer)."""
    why: list[str] = []

    def probe() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s).close()
        except urllib.error.HTTPError:
            pass
        except Exception as e:  # URLError, socket.timeout, ssl errors, ...
            why.append(f"{type(e).__name__}: {e}")

    thread = threading.Thread(target=probe, daemon=True)  # name resolution ignores the timeout
    thread.start()
    thread.join(timeout_s + 1.0)
    if thread.is_alive():
        return f"no answer within {timeout_s:g} s"
    return why[0] if why else None


def nltk_data_dirs() -> list[str]:
    """The host's nltk corpus folders outside what the sandbox shows anyway (the venv, /usr):
    the entries of ``$NLTK_DATA`` and ``~/nltk_data`` (where ``python -m nltk.downloader``
    puts them), those that exist. BigCodeBench's text tasks load corpora (stopwords, punkt)
    from them; the sandbox binds them read-only and names them in the tasks' ``NLTK_DATA``."""
    dirs = [d for d in os.environ.get("NLTK_DATA", "").split(os.pathsep) if d] + [os.path.expanduser("~/nltk_data")]
    return [d for d in dict.fromkeys(os.path.abspath(d) for d in dirs) if os.path.isdir(d)]


def environment_key(memory_mb: int) -> str:
    """A short fingerprint of what the ground truth depends on besides the data: the interpreter,
    every installed distribution's version and the memory limit."""
    dists = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions() if d.metadata["Name"])
    text = "\n".join([sys.version, f"memory_mb={memory_mb}", *dists])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def failure_type(details: dict[str, str]) -> str | None:
    """The exception class of a failed sample from bigcodebench's per-test tracebacks: the first
    error (in unittest's run order) that is not an assertion, else ``AssertionError``; its own
    per-task timer (``TimeoutException``) is ``Timeout``. None for a module-level failure
    (``ALL``: only the message was kept)."""
    names = [errors.from_traceback(details[k]) for k in sorted(details) if k != "ALL"]
    names = [errors.TIMEOUT if n == "TimeoutException" else n for n in names if n]
    for name in names:
        if name != "AssertionError":
            return name
    return names[0] if names else None


class BigCodeBench(Benchmark):
    """BigCodeBench's function-level tasks against their unittest classes.

    Args:
        subset: ``full`` (1140 tasks) or ``hard`` (148).
        split: ``complete`` (the model completes signature + docstring) or ``instruct`` (the
            model writes the function from a natural-language instruction).
        memory_mb: address-space limit of each process, the sandbox's and bigcodebench's own.
        task_timeout_s: per-task time limit; None keeps bigcodebench's 240 s.
        cache_dir: where ground-truth pickles are kept.
    """

    packages = ("bigcodebench",)
    override_env = "BIGCODEBENCH_OVERRIDE_PATH"

    def __init__(self, data: str | os.PathLike | None = None, setting: str | None = None,
                 subset: str = "full", split: str = "complete", memory_mb: int = MEMORY_MB,
                 task_timeout_s: float | None = None, cache_dir: str | os.PathLike = CACHE):
        if subset not in SUBSETS or split not in SPLITS:
            raise ValueError(f"BigCodeBench: subset must be one of {SUBSETS} and split one of {SPLITS}, "
                             f"got {subset!r}, {split!r}")
        self.subset, self.split = subset, split
        self.name = f"bigcodebench_{subset}_{split}"
        self.title = f"BCB-{subset.capitalize()} {split.capitalize()}"
        self.memory_mb = memory_mb
        self.task_timeout_s = task_timeout_s
        self.cache_dir = Path(cache_dir)
        self.probe_timeout_s = PROBE_TIMEOUT_S
        super().__init__(data, setting or f"eval.data.{self.name}")

    # ---------------------------------------------------------------- data

    def official_file(self) -> Path:
        """Where bigcodebench's loader caches the hub's split (``~/.cache/bigcodebench/...``)."""
        try:
            from bigcodebench.data import utils as bcb_utils
        except ImportError as e:
            raise SetupError(f"{self.name}: bigcodebench is not installed ({e}); install the evaluator "
                             f"(make install), or set {self.setting} to a local file") from None
        return Path(bcb_utils.get_dataset_metadata(VERSION, self.subset)[1])

    def data_file(self) -> Path:
        if self.data is not None:
            return self.data
        path = self.official_file()
        if path.is_file():
            return path
        repo = HF_DATASET + ("" if self.subset == "full" else f"-{self.subset}")
        hub = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
        hint = (f"set {self.setting} to a local copy of {path.name} (the {repo} split {VERSION} as JSON "
                f"lines; fields {', '.join(FIELDS)}, libs, doc_struct)")
        why = None if offline else unreachable(f"{hub}/api/datasets/{repo}", self.probe_timeout_s)
        if why:
            raise SetupError(f"{self.name}: {self.setting} is null, so the data comes from the official "
                             f"source, the datasets hub ({hub}, {repo}), which cannot be reached: {why}. "
                             f"Offline, {hint}")
        try:
            from bigcodebench.data.utils import make_cache
            from datasets import load_dataset

            make_cache("", load_dataset(repo, split=VERSION), str(path))  # what bigcodebench's loader does
        except Exception as e:
            raise SetupError(f"{self.name}: loading {repo} split {VERSION} from {hub} failed "
                             f"({type(e).__name__}: {e}); {hint}") from None
        return path

    def records(self) -> list[dict]:
        """The data file's records, checked: file, line and field named on a bad one."""
        path = self.data_file()
        rows, seen = numbered_jsonl(path), set()
        for n, row in rows:
            for key in FIELDS:
                if not isinstance(row.get(key), str):
                    raise SetupError(f"{path}:{n}: field {key!r} missing or not text "
                                     f"(a BigCodeBench record has {', '.join(FIELDS)})")
            if row["task_id"] in seen:
                raise SetupError(f"{path}:{n}: field 'task_id': {row['task_id']} appears twice")
            seen.add(row["task_id"])
        return [row for _, row in rows]

    def load(self, limit: int | None = None) -> list[Task]:
        tasks = []
        for row in self.records()[:limit]:
            if self.split == "complete":
                instruction, header = INSTRUCTION, row["complete_prompt"]
            else:
                instruction, header = row["instruct_prompt"], ""
            tasks.append(Task(task_id=row["task_id"], instruction=instruction, code_header=header,
                              entry_point=row["entry_point"], record=row,
                              prompt=row["complete_prompt" if self.split == "complete" else "instruct_prompt"]))
        return tasks

    # ---------------------------------------------------------------- samples

    def solution(self, task: Task, code: str) -> str:
        """The program for ``code``: as written, or, on the complete split, after the task's
        ``complete_prompt`` when the model wrote only the body (as bigcodebench's sanitiser joins
        a completion)."""
        if self.split == "complete" and not defines(code, task.entry_point):
            return task.record["complete_prompt"] + "\n" + code
        return code

    def sample(self, task: Task, code: str) -> dict:
        return {"task_id": task.task_id, "solution": self.solution(task, code)}

    def reference(self, task: Task) -> str | None:
        """The canonical solution as a full program (what bigcodebench's ground-truth pass runs)."""
        return task.record["complete_prompt"] + "\n" + task.record["canonical_solution"]

    # ---------------------------------------------------------------- scoring

    def _data_for(self, tasks: list[Task]) -> Path | str:
        """The data file to score ``tasks`` on: the file itself when they are all of it, in
        order, else the lines of just those tasks."""
        if [t.task_id for t in tasks] == [r["task_id"] for r in json_objects(self.data_file())]:
            return self.data_file()
        return "".join(json.dumps(t.record) + "\n" for t in tasks)

    def _task_limit_s(self) -> float:
        return self.task_timeout_s if self.task_timeout_s is not None else OFFICIAL_TASK_TIMEOUT_S

    def _budget_s(self, n_tasks: int, workers: int) -> float:
        """Wall and CPU budget of one run: start-up plus every task at its worst (bigcodebench
        kills a task's child at the limit + 2 s), ``workers`` at a time."""
        return 120.0 + math.ceil(n_tasks / max(1, workers)) * (self._task_limit_s() + 5.0)

    def _sandbox(self, sandbox: SandboxConfig, workers: int) -> SandboxConfig:
        # per running task: a manager process, the task's child and its own manager, with threads
        return replace(sandbox, max_processes=max(sandbox.max_processes, 64 + 32 * workers),
                       read_only=[*sandbox.read_only, *nltk_data_dirs()])

    def _args(self, workers: int) -> list[str]:
        return ["--execution", "local", "--split", self.split, "--subset", self.subset, "--pass_k", "1,5",
                "--parallel", str(max(1, workers)), "--max_as_limit", str(self.memory_mb),
                "--max_data_limit", str(self.memory_mb)]

    def _env(self) -> dict[str, str]:
        env = {"BIGCODEBENCH_OVERRIDE_PATH": "{work}/data.jsonl", "XDG_CACHE_HOME": "{work}/xdg"}
        if self.task_timeout_s is not None:
            env["ITERPREF_BCB_TASK_TIMEOUT"] = repr(float(self.task_timeout_s))
        if nltk_data_dirs():
            env["NLTK_DATA"] = os.pathsep.join(nltk_data_dirs())
        return env

    def groundtruth(self, data: Path | str, sandbox: SandboxConfig, workers: int, n_tasks: int) -> Path | None:
        """The cached ground-truth pickle for ``data``, computed on a miss in a sandbox run that
        executes only the canonical solutions; None when none of them passed (bigcodebench then
        writes none, and recomputes it in the scoring run)."""
        md5 = hashlib.md5(data.read_bytes() if isinstance(data, Path) else data.encode()).hexdigest()
        path = self.cache_dir / f"{md5}-{environment_key(self.memory_mb)}.pkl"
        if path.is_file():
            return path
        start = time.time()

        def parse(out: Path) -> tuple[dict | None, bytes | None]:
            pkl = out.parent / "groundtruth.pkl"
            return json.loads(out.read_text())["times"], (pkl.read_bytes() if pkl.exists() else None)

        budget = 120.0 + math.ceil(n_tasks / max(1, workers)) * (OFFICIAL_TASK_TIMEOUT_S + 5.0)
        times, blob = run_official(
            [WRAPPER_NAME, "groundtruth", *self._args(workers), "--samples", "samples.jsonl", "--check_gt_only"],
            {WRAPPER_NAME: WRAPPER, "data.jsonl": data}, "groundtruth.json", self._sandbox(sandbox, workers),
            budget_s=budget, env=self._env(), memory_mb=self.memory_mb, parse=parse)
        if blob is None:
            return None
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(blob)
        tmp.replace(path)
        failed = sorted(k for k, v in (times or {}).items() if v is None)
        path.with_suffix(".json").write_text(json.dumps(
            {"data_md5": md5, "tasks": len(times or {}), "failed": failed,
             "seconds": round(time.time() - start, 1)}, indent=2) + "\n")
        return path

    def score(self, tasks: list[Task], codes: list[str], sandbox: SandboxConfig,
              timeout_s: float = 3.0, workers: int = 2) -> list[Verdict]:
        """bigcodebench's verdicts. ``timeout_s`` is not used: the per-task limit is
        bigcodebench's own (``task_timeout_s`` to change it)."""
        self.check_count(tasks, codes)
        if not tasks:
            return []
        ids = [t.task_id for t in tasks]
        if len(set(ids)) != len(ids):
            raise ValueError(f"{self.name}: a task appears twice in the tasks to score")
        data = self._data_for(tasks)
        gt = self.groundtruth(data, sandbox, workers, len(tasks))
        samples = "".join(json.dumps(self.sample(t, c)) + "\n" for t, c in zip(tasks, codes))
        files: dict[str, str | Path] = {WRAPPER_NAME: WRAPPER, "data.jsonl": data, "samples.jsonl": samples}
        if gt is not None:
            files["groundtruth.pkl"] = gt
        results = run_official([WRAPPER_NAME, "evaluate", *self._args(workers), "--samples", "samples.jsonl"],
                               files, RESULTS, self._sandbox(sandbox, workers),
                               budget_s=self._budget_s(len(tasks), workers), env=self._env(),
                               memory_mb=self.memory_mb, parse=lambda p: json.loads(p.read_text()))
        rows = {}
        for t in tasks:
            got = results.get("eval", {}).get(t.task_id)
            if not got:
                raise SetupError(f"{self.name}: bigcodebench returned no verdict for {t.task_id}")
            rows[t.task_id] = got[0]

        verdicts, unnamed = [], []
        for i, t in enumerate(tasks):
            row = rows[t.task_id]
            status, details = row["status"], row.get("details") or {}
            if status not in ("pass", "fail", "timeout"):
                raise SetupError(f"{self.name}: bigcodebench returned status {status!r} for {t.task_id}")
            error_type, detail = None, ""
            if status == "timeout":
                error_type = errors.TIMEOUT
                detail = f"no verdict within bigcodebench's per-task limit ({self._task_limit_s():g} s + 2 s)"
            elif status == "fail":
                error_type = failure_type(details)
                if "ALL" in details:
                    detail = str(details["ALL"])
                elif details:
                    detail = str(details[sorted(details)[0]])
                if error_type is None:
                    unnamed.append(i)
            verdicts.append(Verdict(t.task_id, status == "pass", status, error_type, detail[-500:]))
        programs = [rows[tasks[i].task_id]["solution"] + "\n" + tasks[i].record["test"] for i in unnamed]
        for i, name in zip(unnamed, errors.classify(programs, sandbox, 10.0, memory_mb=self.memory_mb)):
            verdicts[i].error_type = name
        return verdicts
