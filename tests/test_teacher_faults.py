"""The debug stage with an OpenAI-compatible teacher that misbehaves, end to end: the real
stage script in a scratch directory, the real sandbox, and a real server on 127.0.0.1
(`chat_server`) that injects each fault the openai client can meet.

The scripted teacher answers a problem's first request with code that raises
``ValueError('bug-<i>')`` and, once it sees that error, with the reference solution.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import processes
import pytest
from chat_server import hermetic_env, last_user, serving  # noqa: F401 (fixtures)

from iterpref import debugging
from iterpref import params as P
from iterpref.debugging.teachers import make_teacher
from iterpref.llm.openai_api import OpenAIRequestError
from iterpref.problems import load_seed
from iterpref.records import Trajectory, read_jsonl, to_dict, write_jsonl
from iterpref.sandbox import SandboxConfig

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 1.0  # the client's per-request timeout; a hung request sleeps 2.5 s


def fenced(code: str) -> str:
    return f"Here is the solution:\n```python\n{code.rstrip()}\n```\n"


def buggy(problem, i: int) -> str:
    return f"from __future__ import annotations\n\n{problem.signature}\n    raise ValueError('bug-{i}')\n"


class Teacher:
    """The server's replies: by problem (its instruction in the first user turn) and round."""

    def __init__(self, problems, special: dict[int, str] | None = None):
        self.problems, self.special = problems, special or {}

    def __call__(self, body: dict) -> str:
        first = body["messages"][0]["content"]
        i = next(i for i, p in enumerate(self.problems) if p.instruction.strip() in first)
        if i in self.special:
            return self.special[i]
        rounds = sum(m["role"] == "assistant" for m in body["messages"])
        return fenced(buggy(self.problems[i], i) if rounds == 0 else self.problems[i].reference)


def teacher_params(url: str, timeout_s: float = TIMEOUT_S) -> dict:
    """An openai teacher at ``url``, its replies cached in ./.cache/teacher."""
    return {"kind": "llm", "backend": "openai", "model": "scripted", "base_url": url,
            "max_concurrency": 16, "timeout_s": timeout_s, "max_retries": 1, "cache_dir": ".cache/teacher",
            "sampling": {"max_new_tokens": 256, "temperature": 0.7, "top_p": 0.95, "batch_size": 1}}


def stage_dir(tmp_path: Path, problems, url: str, workers: int, timeout_s: float = TIMEOUT_S) -> Path:
    """A scratch project: params.yaml for an openai teacher at ``url``, and the problems."""
    params = P.compose()  # a whole params.yaml: the stage checks every section before it starts
    params["teacher"] = teacher_params(url, timeout_s)
    params["debug"].update(trajectories_per_problem=1, max_rounds=2, seed=0, workers=workers)
    params["sandbox"].update(timeout_s=10.0, cpu_s=10, workers=2)
    (tmp_path / "params.yaml").write_text(P.dump(params))
    write_jsonl(tmp_path / "data/problems.jsonl", problems)
    return tmp_path


def run_stage(cwd: Path) -> dict:
    """Run stages/debug.py in ``cwd``; its report."""
    done = processes.run([sys.executable, str(ROOT / "stages/debug.py")], cwd=cwd, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((cwd / "reports/debug.json").read_text())
    assert json.loads(done.stdout.strip().splitlines()[-1]) == report
    return report


def comparable(trajs: list[Trajectory]) -> list[dict]:
    """Trajectories as dicts without wall times."""
    out = [to_dict(t) for t in trajs]
    for t in out:
        for a in t["attempts"]:
            a["outcome"]["duration_s"] = 0.0
    return out


@pytest.fixture(scope="module")
def problems():
    return load_seed(ROOT / "data/seed/problems.jsonl", limit=9)


def test_every_fault_is_recorded_and_the_stage_finishes(problems, tmp_path):
    on_first = {  # problem -> its first request's fault actions, attempt by attempt
        0: [(429, {"retry-after": "0.6"})],  # rate limited once, with Retry-After in seconds
        1: [500],  # one server error, then an answer
        2: [500] * 9,  # down for good
        3: ["hang"] * 9,  # past the client's timeout, every time
        4: ["drop"] * 9,  # the connection dropped, every time
        5: ["malformed"] * 9,  # a body that is not JSON
    }
    special = {6: "", 7: "I am sorry, I cannot help with that."}  # an empty reply; a reply with no code
    with serving(Teacher(problems, special)) as server:
        server.hang_s = 2.5
        server.faults = {problems[i].instruction.strip(): actions for i, actions in on_first.items()}
        server.faults["bug-8"] = [500] * 9  # problem 8: its fix request fails for good
        cwd = stage_dir(tmp_path, problems, server.url, workers=9)
        report = run_stage(cwd)
        first_requests = len(server.requests)

        trajs = read_jsonl(cwd / "data/trajectories.jsonl", Trajectory)
        summary = [(t.task_id, t.teacher_fault, [a.outcome.status for a in t.attempts]) for t in trajs]
        assert report["trajectories"] == 9 and report["solved"] == 2 and report["sandbox_runs"] == 5, summary
        assert report["teacher_faults"] == {"connection": 1, "empty_reply": 1, "malformed_reply": 1, "no_code": 1,
                                            "server_error": 2, "timeout": 1}, summary
        faults = {int(t.task_id.split("/")[1]) - 1: t.teacher_fault for t in trajs}
        assert {i: (f.round, f.cause) for i, f in faults.items() if f} == {
            2: (0, "server_error"), 3: (0, "timeout"), 4: (0, "connection"), 5: (0, "malformed_reply"),
            6: (0, "empty_reply"), 7: (0, "no_code"), 8: (1, "server_error")}
        assert "gave up after 1 retries" in faults[2].detail and "InternalServerError" in faults[2].detail
        assert "APITimeoutError" in faults[3].detail and "not JSON" in faults[5].detail
        for i, t in enumerate(trajs):
            assert t.solved == (i in (0, 1))
            # a failed request never becomes a version: only problem 8 wrote one before its fault
            assert [a.code for a in t.attempts] == (
                [buggy(problems[i], i).rstrip(), problems[i].reference.rstrip()] if i in (0, 1)
                else [buggy(problems[i], i).rstrip()] if i == 8 else [])

        # the openai client's retries, as the server saw them
        attempts = {i: server.attempts[last_user(server.requests_for(problems[i].instruction.strip())[0].body)]
                    for i in range(8)}
        assert attempts == {0: 2, 1: 2, 2: 2, 3: 2, 4: 2, 5: 1, 6: 1, 7: 1}  # max_retries=1; not JSON: no retry
        limited = server.requests_for(problems[0].instruction.strip())
        assert limited[1].at - limited[0].at >= 0.6  # Retry-After honoured
        assert [r.headers["x-stainless-retry-count"] for r in limited] == ["0", "1"]
        assert len(server.requests_for("bug-8")) == 2
        # every conversation's turns, failed ones included, reached the cache as misses
        assert report["teacher_cache"] == {"hits": 0, "misses": 12}

        # a rerun resends exactly the failed requests; every answered one comes from the cache
        again = run_stage(cwd)
        assert again["teacher_cache"] == {"hits": 7, "misses": 5}
        resent = {last_user(r.body) for r in server.requests[first_requests:]}
        assert resent == {last_user(r.body) for i in (2, 3, 4, 5)
                          for r in server.requests_for(problems[i].instruction.strip())} | \
                         {last_user(r.body) for r in server.requests_for("bug-8")}
        assert {k: again[k] for k in ("solved", "teacher_faults")} == {k: report[k] for k in ("solved", "teacher_faults")}
        assert comparable(read_jsonl(cwd / "data/trajectories.jsonl", Trajectory)) == comparable(trajs)


def test_a_killed_stage_resumes_without_paying_twice(problems, tmp_path):
    """kill -9 while one trajectory waits on its second request: the restart reuses the finished
    trajectories (resume log) and the first reply (cache), and sends only that request again."""
    arrived, release = threading.Event(), threading.Event()
    teacher = Teacher(problems[:3])

    def respond(body):
        if "bug-2" in last_user(body):  # problem 2's fix request: hold it until the stage is killed
            arrived.set()
            release.wait(timeout=30)
        return teacher(body)

    with serving(respond) as server:
        cwd = stage_dir(tmp_path, problems[:3], server.url, workers=3, timeout_s=60)  # held, not timed out
        stage = subprocess.Popen([sys.executable, str(ROOT / "stages/debug.py")], cwd=cwd,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            assert arrived.wait(timeout=60)
            logs = lambda: list((cwd / ".cache/debug").glob("*.jsonl"))  # noqa: E731
            deadline = time.monotonic() + 60
            while not (logs() and len(logs()[0].read_text().splitlines()) == 2) and time.monotonic() < deadline:
                time.sleep(0.05)  # problems 0 and 1 finish and reach the resume log
            os.kill(stage.pid, signal.SIGKILL)
            stage.wait(timeout=10)
        finally:
            if stage.poll() is None:
                os.kill(stage.pid, signal.SIGKILL)
            release.set()
        assert not (cwd / "data/trajectories.jsonl").exists()
        before = len(server.requests)
        assert before == 6  # 2 turns x 3 problems, the last one unanswered

        report = run_stage(cwd)
        assert report["resumed"] == 2 and report["solved"] == 3
        assert report["teacher_cache"] == {"hits": 1, "misses": 1}
        assert [last_user(r.body) for r in server.requests[before:]] == [last_user(server.requests_for("bug-2")[0].body)]


@pytest.mark.parametrize("status, message", [(401, "check the key in OPENAI_API_KEY"), (404, "NotFoundError")])
def test_a_configuration_error_stops_the_run(problems, tmp_path, status, message):
    """A wrong key or model name would fail every request alike: the run stops, not records it."""
    with serving(Teacher(problems[:2])) as server:
        server.faults = {problems[1].instruction.strip(): [status]}
        teacher = make_teacher({**teacher_params(server.url), "cache_dir": None}, SandboxConfig())
        cfg = debugging.DebugConfig(trajectories_per_problem=1, max_rounds=2, workers=1)
        with pytest.raises(OpenAIRequestError, match=message):
            debugging.run(problems[:2], teacher, cfg, SandboxConfig(timeout_s=10), resume_log=tmp_path / "log.jsonl")
    assert [t.trajectory_id for t in read_jsonl(tmp_path / "log.jsonl", Trajectory)] == ["seed/001#0"]


def test_a_teacher_that_never_answers_fails_the_stage_in_one_line(problems, tmp_path):
    """Every first request fails for good: the stage writes nothing, says so in one line and keeps
    no resume log (a rerun asks the teacher again instead of replaying the faults)."""
    with serving(Teacher(problems[:3])) as server:
        server.faults = {problems[i].instruction.strip(): [500] * 9 for i in range(3)}
        cwd = stage_dir(tmp_path, problems[:3], server.url, workers=3)
        done = processes.run([sys.executable, str(ROOT / "stages/debug.py")], cwd=cwd, capture_output=True,
                             text=True, timeout=120, env={**os.environ, "DVC_STAGE": "debug"})
    assert done.returncode == 2, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("debug.py: error: the teacher wrote no version in any of the 3 trajectories "
                           "(faults: {'server_error': 3}"), done.stderr
    assert "`dvc checkout debug` restores them" in last and "Traceback" not in done.stderr
    assert not (cwd / "data/trajectories.jsonl").exists() and not list((cwd / ".cache/debug").glob("*.jsonl"))
