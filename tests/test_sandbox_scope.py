"""What code under bubblewrap can read of the host: the system, the interpreter, the venv and its
own run folder, nothing else (not the project checkout, its data or a .env, the home folder,
another run's folder, /etc/passwd). Tried for real, as root (the uid-dropping sandbox) and as an
ordinary user (bwrap in a user namespace), by `run_python` and by a solution under `run_unittest`."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import processes
import pytest

from iterpref import sandbox
from iterpref.evaluation import bigcodebench
from iterpref.sandbox import SandboxConfig, bwrap_usable, run_python, run_unittest, unittests
from iterpref.sandbox import backend as sandbox_backend

BWRAP_OK, BWRAP_WHY = bwrap_usable()
pytestmark = pytest.mark.skipif(not BWRAP_OK, reason=f"bwrap not usable: {BWRAP_WHY}")
REPO = Path(__file__).resolve().parents[1]
CFG = SandboxConfig(backend="bwrap", timeout_s=30, cpu_s=20, total_cpu_s=20)

# Reports what each path gives the code: "read" (a file's bytes), the names in a folder,
# "missing", "denied" or "error <errno>"; never a file's content. Also its cwd, and the
# listing of each folder from the cwd up to /.
PROBE = r'''
import json, os

def look(path):
    try:
        if os.path.isdir(path):
            return sorted(os.listdir(path))
        with open(path, "rb") as fh:
            fh.read(1)
        return "read"
    except FileNotFoundError:
        return "missing"
    except PermissionError:
        return "denied"
    except OSError as e:
        return f"error {e.errno}"

def probe(paths):
    walk, d = {}, os.getcwd()
    while True:
        walk[d] = look(d)
        if d == "/":
            break
        d = os.path.dirname(d)
    return json.dumps({"cwd": os.getcwd(), "paths": {p: look(p) for p in paths}, "walk": walk})
'''

# Runs as the ordinary user: the same probe through both entry points, as JSON on stdout.
DRIVER = r'''
import json, sys
from iterpref.sandbox import SandboxConfig, run_python, run_unittest
sys.path.insert(0, sys.argv[1])
from test_sandbox_scope import PROBE, solution_and_tests, parse_failure
paths = json.loads(sys.argv[2])
cfg = SandboxConfig(backend="bwrap", timeout_s=30, cpu_s=20, total_cpu_s=20, traceback_chars=100_000)
res = run_python(["-c", PROBE + f"\nprint(probe({paths!r}))"], config=cfg)
out = run_unittest(*solution_and_tests(paths), cfg)
print(json.dumps({"run_python": [res.returncode, res.stdout, res.stderr[-2000:]],
                  "run_unittest": parse_failure(out)}))
'''


def solution_and_tests(paths: list[str]) -> tuple[str, str]:
    """A solution that probes at the tests' request, and tests that fail with its report."""
    tests = "import unittest\nfrom solution import report\nclass T(unittest.TestCase):\n" \
            "    def test_it(self):\n        self.fail('REPORT' + report())\n"
    return PROBE + f"\ndef report():\n    return probe({paths!r})\n", tests


def parse_failure(outcome) -> dict:
    assert outcome.status == "failed" and "REPORT" in outcome.traceback, outcome.traceback
    return json.loads(outcome.traceback.split("AssertionError: REPORT", 1)[1].splitlines()[0])


def known(extra: list[str]) -> list[str]:
    """The paths the code is meant to see: `sandbox.visible_paths`, the sandbox's own mounts, ``extra``."""
    return sandbox.visible_paths(CFG) + ["/etc/hosts", "/dev", "/proc", *extra]


def inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def problems(report: dict, secrets: list[str], extra: list[str]) -> list[str]:
    """Every path of the report (probed or walked) that shows more than ``known(extra)`` implies.

    A path inside a known one may show anything; a folder on the way to known ones may list just
    the next step towards them; anything else must be missing. ``secrets`` must be missing or
    such folders, whatever the rule."""
    seen = known(extra)
    bad = []
    for path, got in {**report["paths"], **report["walk"]}.items():
        if any(inside(path, k) for k in seen):
            if path in secrets:
                bad.append(f"{path}: a secret inside a visible path ({got})")
            continue
        steps = {Path(k).relative_to(path).parts[0] for k in seen if inside(k, path) and k != path}
        if steps:
            if not (isinstance(got, list) and set(got) <= steps):
                bad.append(f"{path}: {got}, expected a listing within {sorted(steps)}")
        elif got != "missing":
            bad.append(f"{path}: {got}, expected missing")
    return bad


@pytest.fixture
def planted(tmp_path):
    """Host secrets readable by anyone (so that only the sandbox can hide them): a .env in the
    project folder (when there is none already), another run's folder with a file in it, a home
    folder with a file in it. Yields the paths to probe."""
    made = []
    env_file = REPO / ".env"
    if not env_file.exists():
        env_file.write_text("OPENAI_API_KEY=sk-planted-by-test_sandbox_scope\n")
        env_file.chmod(0o644)
        made.append(env_file)
    other_run = Path(tempfile.mkdtemp(prefix="iterpref-sbx-"))  # where a concurrent run's folder lives
    (other_run / "work").mkdir()
    (other_run / "work" / "solution.py").write_text("SECRET = 'another run'\n")
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("planted key\n")
    for d in (tmp_path, home, home / ".ssh", other_run, other_run / "work"):
        d.chmod(0o755)
    for f in (home / ".ssh" / "id_ed25519", other_run / "work" / "solution.py"):
        f.chmod(0o644)
    real_home = Path.home()
    paths = [str(REPO), str(REPO / "README.md"), str(REPO / "pyproject.toml"), str(REPO / "data"),
             str(REPO / "data" / "seed" / "problems.jsonl"), str(REPO / "src"), str(REPO / ".git" / "config"),
             str(env_file), str(other_run), str(other_run / "work" / "solution.py"), str(home),
             str(home / ".ssh" / "id_ed25519"), str(real_home), *(str(real_home / n) for n in os.listdir(real_home)),
             "/etc/passwd", "/etc/shadow", "/etc/group", "/etc/hostname", "/etc/resolv.conf", "/root", "/home",
             "/var", "/opt", "/srv", "/mnt", "/sys", "/"]
    secrets = [str(env_file), str(other_run / "work" / "solution.py"), str(home / ".ssh" / "id_ed25519"),
               str(REPO / "README.md"), "/etc/passwd", "/etc/shadow"]
    yield {"paths": list(dict.fromkeys(paths)), "secrets": secrets, "tmp": tmp_path}
    for f in made:
        f.unlink()
    shutil.rmtree(other_run)


def test_run_python_sees_only_the_system_the_interpreter_and_its_folder(planted):
    res = run_python(["-c", PROBE + f"\nprint(probe({planted['paths']!r}))"], config=CFG)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["paths"][str(REPO / "README.md")] == "missing"
    assert report["paths"]["/etc/passwd"] == "missing"
    bad = problems(report, planted["secrets"], [str(Path(report["cwd"]).parent)])
    assert not bad, "\n".join(bad)


def test_a_solution_sees_only_the_system_the_interpreter_and_its_folder(planted):
    out = run_unittest(*solution_and_tests(planted["paths"]), SandboxConfig(**{**vars(CFG), "traceback_chars": 100_000}))
    report = parse_failure(out)
    # its run folder holds work/ (its cwd), judge/ (the tests, not its to read) and judge.pyc;
    # the judge's source is bound at its own path, for tracebacks
    bad = problems(report, planted["secrets"], [str(Path(report["cwd"]).parent), str(unittests.JUDGE)])
    assert not bad, "\n".join(bad)


def _ordinary_user_command() -> tuple[list[str], str | None]:
    """The command prefix that runs as an ordinary user (uid 65534) with this interpreter
    reachable, and why that cannot be done here (None when it can)."""
    if os.geteuid() != 0:
        return [], None  # we are one
    if shutil.which("setpriv") is None:
        return [], "setpriv not found"
    # A user cannot reach an interpreter under a home of mode 700 (/root/.pyenv), nor a checkout
    # under one (`mktemp -d`): cover such a folder with a tmpfs and bind back the interpreter's
    # folders, iterpref's source (an editable install) and these tests, in a mount namespace of their own.
    outer = ["bwrap", "--dev-bind", "/", "/"]
    covered = set()
    needed = [*sandbox_backend.interpreter_paths(), str(Path(sandbox.__file__).resolve().parents[2]), str(Path(__file__).parent)]
    for p in needed:
        for a in sandbox_backend.ancestors(p):
            if not os.stat(a).st_mode & 0o001:
                if a not in covered:
                    outer += ["--perms", "0755", "--tmpfs", a]
                    covered.add(a)
                for b in sandbox_backend.ancestors(p)[sandbox_backend.ancestors(p).index(a) + 1:]:
                    outer += ["--perms", "0755", "--dir", b]  # bwrap would make them 700
                outer += ["--ro-bind", p, p]
                break
    user = [*outer, "--", "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]
    check = processes.run([*user, "bwrap", "--unshare-all", "--ro-bind", "/", "/", "--proc", "/proc", "true"],
                           capture_output=True, text=True)
    if check.returncode != 0:
        return [], f"an unprivileged user cannot start bwrap here (user namespaces?): {check.stderr.strip()}"
    return user, None


def test_as_an_ordinary_user_both_entry_points_see_only_the_same(planted):
    prefix, why = _ordinary_user_command()
    if why:
        pytest.skip(why)
    tmp = planted["tmp"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp / "home"), "TMPDIR": "/tmp"}
    proc = processes.run([*prefix, sys.executable, "-c", DRIVER, str(Path(__file__).parent), json.dumps(planted["paths"])],
                          env=env, cwd="/", capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.splitlines()[-1])
    code, stdout, stderr = got["run_python"]
    assert code == 0, stderr
    for report, extra in ((json.loads(stdout), []), (got["run_unittest"], [str(unittests.JUDGE)])):
        bad = problems(report, planted["secrets"], [str(Path(report["cwd"]).parent), *extra])
        assert not bad, "\n".join(bad)
        assert report["paths"][str(tmp / "home" / ".ssh" / "id_ed25519")] == "missing"


HONEST = r'''
import json, os, socket, subprocess, numpy
from helper import VALUE
os.makedirs("out", exist_ok=True)
with open("out/result.txt", "w") as fh:
    fh.write(str(numpy.arange(VALUE).sum()))
with open("/tmp/scratch.txt", "w") as fh:
    fh.write("scratch")
server = socket.socket()
server.bind(("localhost", 0))
server.listen()
socket.create_connection(server.getsockname()).close()
print(json.dumps({"result": open("out/result.txt").read(), "scratch": open("/tmp/scratch.txt").read(),
                  "data": open("data/input.txt").read(), "shell": subprocess.check_output(["sh", "-c", "echo ok"], text=True)}))
'''


def test_honest_code_still_runs():
    res = run_python(["main.py"], files={"main.py": HONEST, "helper.py": "VALUE = 5\n", "data/input.txt": "42"},
                     config=CFG)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"result": "10", "scratch": "scratch", "data": "42", "shell": "ok\n"}


def test_a_solution_writes_tmp_and_reads_back():
    code = "import numpy\ndef f(n):\n    open('/tmp/t.txt', 'w').write(str(numpy.arange(n).sum()))\n" \
           "    return int(open('/tmp/t.txt').read())\n"
    tests = "import unittest\nfrom solution import f\nclass T(unittest.TestCase):\n" \
            "    def test_it(self):\n        self.assertEqual(f(5), 10)\n"
    out = run_unittest(code, tests, CFG)
    assert out.status == "passed", out.traceback


def test_read_only_adds_exactly_its_paths(tmp_path):
    shown, hidden = tmp_path / "shown", tmp_path / "hidden"
    for d in (shown, hidden):
        d.mkdir()
        (d / "f.txt").write_text(d.name)
    tmp_path.chmod(0o755)
    code = PROBE + f"\nprint(probe({[str(shown / 'f.txt'), str(hidden / 'f.txt')]!r}))\n" \
                   f"open({str(shown / 'g.txt')!r}, 'w')"
    res = run_python(["-c", code], config=SandboxConfig(**{**vars(CFG), "read_only": [str(shown), "/no/such/path"]}))
    assert json.loads(res.stdout.splitlines()[0])["paths"] == {str(shown / "f.txt"): "read", str(hidden / "f.txt"): "missing"}
    assert "Read-only file system" in res.stderr and not (shown / "g.txt").exists()


def test_read_only_takes_absolute_paths_only():
    with pytest.raises(ValueError, match="absolute"):
        SandboxConfig(read_only=["data/corpora"])


def test_bigcodebench_tasks_read_the_nltk_corpora(tmp_path, monkeypatch):
    corpora = tmp_path / "nltk_data"
    (corpora / "corpora" / "stopwords").mkdir(parents=True)
    (corpora / "corpora" / "stopwords" / "english").write_text("the\na\n")
    tmp_path.chmod(0o755)
    monkeypatch.setenv("NLTK_DATA", str(corpora))
    bench = bigcodebench.BigCodeBench()
    config, env = bench._sandbox(CFG, 2), bench._env()
    assert config.read_only == [str(corpora)] and env["NLTK_DATA"] == str(corpora)
    code = "import os\nprint(open(os.path.join(os.environ['NLTK_DATA'], 'corpora/stopwords/english')).read().split())"
    assert run_python(["-c", code], config=config, env={"NLTK_DATA": env["NLTK_DATA"]}).stdout.strip() == "['the', 'a']"
    assert "FileNotFoundError" in run_python(["-c", code], config=CFG, env={"NLTK_DATA": env["NLTK_DATA"]}).stderr
