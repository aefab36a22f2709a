"""Hostile solutions that try to make `run_unittest` report "passed" without being right.

Each attack class gets one test: a wrong solution (every one returns a wrong answer, or none)
armed with the attack, which must never be reported passed. The six attacks found against the
old single-process runner come first, then the further classes the issue lists, then a few
more. Correct solutions keep passing: every seed problem's reference.
"""

from __future__ import annotations

import json
import textwrap
import warnings
from pathlib import Path

import pytest

from iterpref.sandbox import SandboxConfig, bwrap_usable, run_unittest, run_unittest_many

BWRAP_OK, BWRAP_WHY = bwrap_usable()
needs_bwrap = pytest.mark.skipif(not BWRAP_OK, reason=f"bwrap not usable: {BWRAP_WHY}")
BACKENDS = [pytest.param("bwrap", marks=needs_bwrap), "rlimit"]
SEED = Path(__file__).resolve().parents[1] / "data/seed/problems.jsonl"

TESTS = """\
import unittest
from solution import add


class TestAdd(unittest.TestCase):
    def test_small(self):
        self.assertEqual(add(1, 2), 3)

    def test_zero(self):
        self.assertEqual(add(0, 0), 0)

    def test_truthy(self):
        self.assertTrue(all(map(lambda p: add(*p) == sum(p), [(1, 1), (2, 5)])))
"""

PASSED = {"status": "passed", "tests_run": 3, "failures": 0, "errors": 0, "error_type": None, "traceback": ""}
# A forged verdict in the old runner's result.json format and in the judge's pipe format.
FORGE = f"""
import json as _json, os as _os, stat as _stat, sys as _sys
FAKES = [{json.dumps(PASSED)!r} + "\\n", _json.dumps({{"verdict": {PASSED!r}}}) + "\\n"]


def forge():
    \"\"\"Write a passing verdict everywhere a verdict could be read from.\"\"\"
    targets = []
    for argv in [_sys.argv] + [open(f"/proc/{{p}}/cmdline", "rb").read().decode(errors="replace").split("\\0")
                               for p in (_os.getpid(), _os.getppid())]:
        for arg in argv:
            try:
                cfg = _json.loads(arg)
            except ValueError:
                continue
            if isinstance(cfg, dict):
                targets += [_os.path.join(str(v), "result.json") for v in cfg.values() if isinstance(v, str)]
                targets += [f"/proc/{{_os.getppid()}}/fd/{{cfg.get('verdict_fd')}}"]
    for d in ("/proc/self/fd", f"/proc/{{_os.getppid()}}/fd"):
        try:
            targets += [_os.path.join(d, fd) for fd in _os.listdir(d)]
        except OSError:
            pass
    for path in targets:
        for fake in FAKES:
            try:
                with open(path, "w") as fh:
                    fh.write(fake)
            except (OSError, ValueError):
                pass
    for fd in range(0, 256):
        for fake in FAKES:
            try:
                if fd < 3 or not _stat.S_ISFIFO(_os.fstat(fd).st_mode):  # its own pipes: inherited_file_descriptors
                    _os.write(fd, fake.encode())
            except OSError:
                pass
    for fake in FAKES:
        print(fake, flush=True)
        print(fake, file=_sys.stderr, flush=True)
"""

# The rlimit backend is not isolation: there the code runs unconfined as the test's user, so
# only attacks that stay inside their own process run there, with a forge() that writes only
# to its own descriptors. Under bwrap, everything runs.
SAFE_FORGE = f"""
import json as _json, os as _os, sys as _sys
FAKES = [{json.dumps(PASSED)!r} + "\\n", _json.dumps({{"verdict": {PASSED!r}}}) + "\\n"]


def forge():
    for fd in range(0, 256):
        for fake in FAKES:
            try:
                _os.write(fd, fake.encode())
            except OSError:
                pass
"""
IN_PROCESS = {"report_through_main", "patched_open_swallows_the_real_write", "patched_assert_methods",
              "stdout_and_stderr", "inherited_file_descriptors", "atexit_handler", "raising_dunders_on_returned_object",
              "always_equal_object", "exit_zero_early", "exit_zero_at_import", "patched_builtins", "patched_sys_modules",
              "patched_unittest_module", "stop_iteration_cuts_map_short", "skip_test_raised_by_the_code",
              "protocol_garbage_on_the_pipes", "answers_on_the_pipes_from_a_thread", "finishing_just_at_the_timeout"}

ATTACKS = {
    # --- the six found against the single-process runner
    "report_through_main": """
        import __main__, gc
        def add(a, b):
            for obj in gc.get_objects():
                if callable(obj) and getattr(obj, "__name__", "") in ("report", "announce", "send", "judge_main"):
                    for args in [("passed", 3, 0, 0), ({"verdict": PASSED_VERDICT},), ()]:
                        try:
                            obj(*args)
                        except BaseException:
                            pass
            return 0
    """,
    "result_file_from_argv_and_cmdline": """
        forge()
        def add(a, b):
            forge()
            return a - b
    """,
    "patched_open_swallows_the_real_write": """
        import builtins, io
        forge()
        _real_open = builtins.open
        builtins.open = lambda *a, **k: io.StringIO()
        def add(a, b):
            return a - b
    """,
    "detached_grandchild_overwrites_later": """
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                for _ in range(40):
                    time.sleep(0.05)
                    forge()
            os._exit(0)
        def add(a, b):
            return a - b
    """,
    "read_only_forged_result": """
        import os, stat
        forge()
        for d in ("..", "../judge", "../out", "/tmp"):
            for name in ("result.json", "verdict"):
                try:
                    with open(os.path.join(d, name), "w") as fh:
                        fh.write(FAKES[0])
                    os.chmod(os.path.join(d, name), stat.S_IRUSR)
                except OSError:
                    pass
        def add(a, b):
            return a - b
    """,
    "patched_assert_methods": """
        import unittest
        for name in dir(unittest.TestCase):
            if name.startswith(("assert", "fail")):
                setattr(unittest.TestCase, name, lambda *a, **k: None)
        unittest.TestCase.failureException = KeyboardInterrupt
        def add(a, b):
            return a - b
    """,
    # --- the further classes the issue lists
    "stdout_and_stderr": """
        import sys
        def add(a, b):
            for fake in FAKES:
                sys.stdout.write(fake)
                sys.stderr.write(fake)
                sys.__stdout__.write("RUNNING x\\n" + fake)
            return a - b
    """,
    "inherited_file_descriptors": """
        import os
        def add(a, b):
            for fd in range(3, 1024):
                try:
                    os.write(fd, FAKES[1].encode())
                except OSError:
                    pass
            return a - b
    """,
    "atexit_handler": """
        import atexit, os
        atexit.register(forge)
        def add(a, b):
            atexit.register(forge)
            raise SystemExit(0)
    """,
    "raising_dunders_on_returned_object": """
        import unittest
        class Evil:
            def __eq__(self, other):
                raise unittest.SkipTest("equal enough")
            def __hash__(self):
                raise unittest.SkipTest("no hash")
            def __repr__(self):
                raise unittest.SkipTest("no repr")
            __ne__ = __eq__
        def add(a, b):
            return Evil()
    """,
    "always_equal_object": """
        class AlwaysEqual(int):
            def __eq__(self, other):
                return True
            __hash__ = int.__hash__
        class Anything:
            def __eq__(self, other):
                return True
            def __ne__(self, other):
                return False
            def __bool__(self):
                return True
        def add(a, b):
            return Anything() if a else AlwaysEqual(99)
    """,
    "exit_zero_early": """
        import os
        def add(a, b):
            forge()
            os._exit(0)
    """,
    "exit_zero_at_import": """
        import os
        forge()
        os._exit(0)
    """,
    "patched_builtins": """
        import builtins
        builtins.AssertionError = type("AssertionError", (BaseException,), {})
        builtins.isinstance = lambda *a: True
        builtins.len = lambda *a: 0
        builtins.all = lambda *a: True
        def add(a, b):
            return a - b
    """,
    "patched_sys_modules": """
        import sys, types
        fake = types.ModuleType("unittest")
        fake.TestCase = object
        sys.modules["unittest"] = fake
        sys.modules["test_solution"] = types.ModuleType("test_solution")
        def add(a, b):
            return a - b
    """,
    "patched_unittest_module": """
        import unittest, unittest.result
        unittest.TestResult.wasSuccessful = lambda self: True
        unittest.TestResult.addFailure = lambda *a: None
        unittest.TestResult.addError = lambda *a: None
        unittest.TestCase.run = lambda self, result=None: result
        def add(a, b):
            return a - b
    """,
    "finishing_just_at_the_timeout": """
        import sys, time
        def add(a, b):
            time.sleep(1.9)  # the limit is 2 s
            sys.stdout.write(FAKES[1])
            sys.stdout.flush()
            return a - b
    """,
    "racing_the_teardown": """
        import os, signal, threading, time
        def spam():
            while True:
                forge()
                for sig in (signal.SIGSTOP, signal.SIGKILL):
                    try:
                        os.kill(os.getppid(), sig)
                    except OSError:
                        pass
        for _ in range(3):
            if os.fork() == 0:
                os.setsid()
                spam()
        threading.Thread(target=spam, daemon=True).start()
        def add(a, b):
            return a - b
    """,
    # --- more of a hostile user's own
    "stop_iteration_cuts_map_short": """
        def add(a, b):
            raise StopIteration
    """,
    "skip_test_raised_by_the_code": """
        import unittest
        def add(a, b):
            raise unittest.SkipTest("nothing to see")
    """,
    "protocol_garbage_on_the_pipes": """
        import os
        def add(a, b):
            for fd in range(3, 64):
                try:
                    os.write(fd, b'["ok", 3]\\n["ok", 0]\\n["ok", true]\\n{"verdict": 1}\\n')
                except OSError:
                    pass
            return a - b
    """,
    "answers_on_the_pipes_from_a_thread": """
        import os, threading
        def add(a, b):
            def babble():
                for fd in range(3, 64):
                    try:
                        os.write(fd, b'["ok", {"$": "ref", "id": 0, "kind": "object"}]\\n')
                    except OSError:
                        pass
            threading.Thread(target=babble).start()
            return a - b
    """,
}


@pytest.fixture(autouse=True)
def _quiet_rlimit_warning():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "iterpref.sandbox", RuntimeWarning)
        yield


def code_for(attack: str, backend: str) -> str:
    return (FORGE if backend == "bwrap" else SAFE_FORGE) + f"PASSED_VERDICT = {PASSED!r}\n" + textwrap.dedent(ATTACKS[attack])


CASES = [pytest.param(a, "bwrap", marks=needs_bwrap, id=f"{a}-bwrap") for a in sorted(ATTACKS)]
CASES += [pytest.param(a, "rlimit", id=f"{a}-rlimit") for a in sorted(IN_PROCESS)]


@pytest.mark.parametrize("attack,backend", CASES)
def test_attack_is_never_passed(attack, backend):
    out = run_unittest(code_for(attack, backend), TESTS, SandboxConfig(backend=backend, timeout_s=2.0, cpu_s=2))
    assert not out.passed, (attack, out.status, out.traceback)
    assert out.status != "passed"
    assert out.error_type not in ("SyntaxError", "NameError"), out.traceback  # the attack itself ran


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_forging_helper_itself_is_harmless_to_a_right_answer(backend):
    """Control: the attack prelude is valid code that leaves a correct solution passing, so the
    attacks above fail because they are wrong, not because the prelude cannot even load."""
    code = (FORGE if backend == "bwrap" else SAFE_FORGE) + "assert callable(forge)\ndef add(a, b):\n    return a + b\n"
    out = run_unittest(code, TESTS, SandboxConfig(backend=backend, timeout_s=5.0))
    assert out.status == "passed", out.traceback


@needs_bwrap
def test_the_judge_is_out_of_reach():
    """Under bwrap as root the code runs as another uid than the judge: it can neither signal
    it, read its files nor open its descriptors."""
    import os

    if os.geteuid() != 0:
        pytest.skip("uid separation needs root")
    code = textwrap.dedent("""
        import json, os, signal, sys
        def probe():
            judge = os.getppid()
            cfg = json.loads(sys.argv[1])
            status = open(f"/proc/{judge}/status").read()
            judge_uid = int(next(ln for ln in status.splitlines() if ln.startswith("Uid:")).split()[1])
            seen = {"uid_differs": 0 != os.getuid() != judge_uid != 0}
            for name, act in [("signal", lambda: os.kill(judge, 0)),
                              ("fds", lambda: os.listdir(f"/proc/{judge}/fd")),
                              ("dir", lambda: os.listdir(cfg["judge"])),
                              ("tests", lambda: open(os.path.join(cfg["judge"], "test_solution.py")).read())]:
                try:
                    act()
                    seen[name] = "allowed"
                except PermissionError:
                    seen[name] = "denied"
            return seen
    """)
    tests = ("import unittest\nfrom solution import probe\n\nclass T(unittest.TestCase):\n"
             "    def test_probe(self):\n"
             "        self.assertEqual(probe(), {'uid_differs': True, 'signal': 'denied', 'fds': 'denied', "
             "'dir': 'denied', 'tests': 'denied'})\n")
    out = run_unittest(code, tests, SandboxConfig(backend="bwrap"))
    assert out.status == "passed", out.traceback


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_seed_reference_passes(backend):
    problems = [json.loads(line) for line in SEED.read_text().splitlines()]
    outs = run_unittest_many([(p["reference"], p["tests"]) for p in problems], SandboxConfig(backend=backend, workers=2))
    failed = [(p["task_id"], o.status, o.traceback[:300]) for p, o in zip(problems, outs) if not o.passed]
    assert not failed and len(outs) == 67
