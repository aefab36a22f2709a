"""`run_unittest`: a unittest module run against a solution in the sandbox, the tests in a judge
process, the code in another (``judge.py``), and the judge's verdict read back."""

from __future__ import annotations

import importlib.util
import json
import marshal
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from iterpref.records import Outcome
from iterpref.sandbox.backend import JUDGE_UID, SANDBOX_GID, clean_env, resolve_backend, sandbox_uid
from iterpref.sandbox.config import SandboxConfig
from iterpref.sandbox.process import PROGRAMS, ProcessResult, execute, run_dir

_lock = threading.Lock()

JUDGE = PROGRAMS / "judge.py"  # the program run_unittest starts in the sandbox
_judge_pyc: tuple[tuple[int, int], bytes] | None = None


def _judge_bytecode() -> bytes:
    """`JUDGE` as a ``.pyc`` file's bytes, compiled once per process (again if the file changes).

    Python never caches a script's bytecode: started as ``judge.py``, every run would compile it
    anew. ``python judge.pyc`` runs the compiled code directly (the header's date and size are
    not checked for a script)."""
    global _judge_pyc
    st = JUDGE.stat()
    key = (st.st_mtime_ns, st.st_size)
    with _lock:
        if _judge_pyc is None or _judge_pyc[0] != key:
            code = compile(JUDGE.read_bytes(), str(JUDGE), "exec", dont_inherit=True)
            _judge_pyc = key, importlib.util.MAGIC_NUMBER + bytes(12) + marshal.dumps(code)
        return _judge_pyc[1]


_startup: dict | None = None


def _judge_startup() -> dict:
    """What ``site`` gives this interpreter at start-up (``sys.path``, ``sys.prefix``,
    ``sys.exec_prefix``), asked once per process from a child started the normal way.

    The judge starts with ``-S`` and sets these itself, sparing every run ``site``'s listing of
    the venv's site-packages for ``.pth`` files (docs/sandbox.md#cost)."""
    global _startup
    with _lock:
        if _startup is None:
            probe = "import json, sys; print(json.dumps({'path': sys.path, 'prefix': [sys.prefix, sys.exec_prefix]}))"
            with tempfile.TemporaryDirectory(prefix="iterpref-home-") as home:  # an empty home, as in the sandbox
                out = subprocess.run([sys.executable, "-P", "-c", probe], env=clean_env(home), cwd=home,
                                     capture_output=True, text=True, check=True).stdout
            _startup = json.loads(out)
        return _startup


def _trim(text: str, limit: int) -> str:
    """Cut the middle of ``text`` so it fits in ``limit`` characters (both ends carry meaning)."""
    text = text.strip()
    if len(text) <= limit:
        return text
    half = max(0, (limit - 20) // 2)
    return f"{text[:half]}\n... [cut] ...\n{text[len(text) - half:]}"


def _signal_name(returncode: int, backend: str) -> str | None:
    signum = -returncode if returncode < 0 else returncode - 128 if backend == "bwrap" and returncode > 128 else 0
    if not signum:
        return None
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


STATUSES = ("passed", "failed", "error", "syntax_error", "import_error", "timeout", "memory", "crashed")


def _verdict(said: bytes) -> tuple[dict | None, str | None]:
    """The judge's verdict (exactly one, on its last line, well formed) and the last test it announced."""
    lines = said.decode("utf-8", "replace").splitlines()
    running, verdicts = None, []
    for i, line in enumerate(lines):
        try:
            message = json.loads(line)
        except ValueError:
            return None, running
        if isinstance(message, dict) and isinstance(message.get("running"), str):
            running = message["running"]
        elif isinstance(message, dict) and isinstance(message.get("verdict"), dict):
            verdicts.append((i, message["verdict"]))
    if len(verdicts) != 1 or verdicts[0][0] != len(lines) - 1:
        return None, running
    v = verdicts[0][1]
    ints = all(type(v.get(k)) is int for k in ("tests_run", "failures", "errors"))
    if v.get("status") not in STATUSES or not ints or not isinstance(v.get("traceback"), str) \
            or not isinstance(v.get("error_type"), (str, type(None))):
        return None, running
    return v, running


def _where(running: str | None) -> str:
    """Which test was running when the run was stopped (never the line: that depends on when)."""
    return f"while running {running}" if running else "before any test started (at import)"


def _outcome(res: ProcessResult, said: bytes, config: SandboxConfig) -> Outcome:
    """The outcome of a `run_unittest` run: the judge's verdict, accepted only when the judge
    exited cleanly in time, after the whole sandbox is gone; otherwise what went wrong."""
    trim = lambda s: _trim(s, config.traceback_chars)  # noqa: E731
    verdict, running = _verdict(said)
    if verdict is not None and not res.timed_out and res.returncode == 0:
        return Outcome(passed=verdict["status"] == "passed", status=verdict["status"],
                       tests_run=verdict["tests_run"], failures=verdict["failures"], errors=verdict["errors"],
                       error_type=verdict["error_type"], traceback=trim(verdict["traceback"]),
                       duration_s=res.duration_s)
    sig = _signal_name(res.returncode, res.backend)
    if res.timed_out:
        return Outcome(False, "timeout", error_type="TimeoutError", duration_s=res.duration_s,
                       traceback=trim(f"TimeoutError: the tests did not finish within the wall-clock net of "
                                      f"{config.timeout_s:g} s without using up a CPU time limit ({config.cpu_s} s "
                                      f"per test, {config.total_cpu_s} s in all): the code sleeps or waits, "
                                      f"{_where(running)}"))
    if sig == "SIGXCPU":  # the judge's own limit, over the whole run: no test to blame
        return Outcome(False, "timeout", error_type="TimeoutError", duration_s=res.duration_s,
                       traceback=trim(f"TimeoutError: the tests used up the run's total CPU time limit of "
                                      f"{config.total_cpu_s} s"))
    if "MemoryError" in res.stderr or "Cannot allocate memory" in res.stderr:
        return Outcome(False, "memory", error_type="MemoryError", duration_s=res.duration_s,
                       traceback=trim(f"MemoryError: memory limit of {config.memory_mb} MiB hit\n{res.stderr[-1500:]}"))
    how = f"was killed by {sig}" if sig else f"exited with code {res.returncode}"
    return Outcome(False, "crashed", error_type=sig or "Crash", duration_s=res.duration_s,
                   traceback=trim(f"The judge process {how} without a verdict.\n"
                                  f"stderr (tail):\n{res.stderr[-1500:] or '(empty)'}"))


def run_unittest(code: str, tests: str, config: SandboxConfig | None = None) -> Outcome:
    """Run the unittest module ``tests`` against ``code`` (as ``solution.py``) in the sandbox.

    The tests run in a judge process and call the code, which runs in a process of its own
    (another uid under bwrap as root), across pipes; see ``iterpref.sandbox.judge`` and
    docs/sandbox.md for what this guarantees. The code may use ``config.cpu_s`` of CPU time in
    each test (and in its import), each process ``config.total_cpu_s`` over the run: the limits a
    verdict depends on; ``config.timeout_s`` of wall clock is only a net for code that sleeps or
    waits.

    Args:
        code: the candidate solution source.
        tests: a unittest module's source that does ``from solution import <name>``.
        config: limits and backend (defaults: `SandboxConfig()`).

    Returns:
        An `Outcome` whose ``status`` is one of passed, failed (assertions only), error (a test
        raised), syntax_error, import_error (the solution raised at import or lacks the name),
        timeout, memory, crashed (the code's process died or broke the protocol, or the judge
        gave no verdict); ``traceback`` is the trimmed feedback (judge and unittest frames
        removed, the code's frames after the test's). A run with no tests is not passed.
    """
    config = config or SandboxConfig()
    backend = resolve_backend(config)
    drop = backend == "bwrap" and os.geteuid() == 0
    with sandbox_uid() as uid, run_dir(backend, uid, judged=True) as base:
        work, judge = base / "work", base / "judge"
        (work / "solution.py").write_text(code, encoding="utf-8")
        (judge / "test_solution.py").write_text(tests, encoding="utf-8")
        (base / "judge.pyc").write_bytes(_judge_bytecode())
        read, write = os.pipe()
        cfg = {"work": str(work), "judge": str(judge), "verdict_fd": write, "cpu_s": config.cpu_s,
               "total_cpu_s": config.total_cpu_s, "gid": SANDBOX_GID,
               "solution_uid": uid if drop else None, "judge_uid": JUDGE_UID if drop else None, **_judge_startup()}
        binds = [(str(work), True), (str(judge), True), (str(judge / "test_solution.py"), False),
                 (str(base / "judge.pyc"), False), (str(JUDGE), False)]  # the source: for tracebacks
        limits = replace(config, cpu_s=config.total_cpu_s)  # each process's RLIMIT_CPU; judge.py counts per test
        res, said = execute(["-P", "-S", str(base / "judge.pyc"), json.dumps(cfg)], str(judge), binds, limits, backend,
                            None, channel=(read, write))
        return _outcome(res, said, config)


def run_unittest_many(jobs: Sequence[tuple[str, str]], config: SandboxConfig | None = None,
                      progress: str | None = None) -> list[Outcome]:
    """`run_unittest` over ``(code, tests)`` jobs, ``config.workers`` at a time, in input order.

    Args:
        jobs: ``(code, tests)`` pairs.
        config: limits, backend and number of workers.
        progress: label of a tqdm progress bar; no bar when None.
    """
    config = config or SandboxConfig()
    resolve_backend(config)  # probe and warn once, before the threads start
    bar = None
    if progress is not None:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc=progress)

    def one(job: tuple[str, str]) -> Outcome:
        outcome = run_unittest(job[0], job[1], config)
        if bar is not None:
            bar.update(1)
        return outcome

    try:
        with ThreadPoolExecutor(max_workers=config.workers) as pool:
            return list(pool.map(one, jobs))
    finally:
        if bar is not None:
            bar.close()
