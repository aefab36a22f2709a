"""kill -9 in the middle of a real `dvc exp run` of the smoke experiment's debug stage, then a
re-run: no finished trajectory is repeated, none is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from dvc_repo import ran_stages, sh

pytestmark = pytest.mark.slow
RUN = ["dvc", "exp", "run", "-S", "experiment=smoke", "debug"]  # the debug stage and what it needs


def complete_lines(log: Path) -> list[str]:
    """The resume log's records that ended with a newline (a kill may cut the last one)."""
    try:
        text = log.read_text()
    except OSError:
        return []
    return text.splitlines()[: text.count("\n")]


def stage_pids(root: Path) -> list[int]:
    """Processes running the debug stage script in ``root``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"stages/debug.py" in (proc / "cmdline").read_bytes() \
                    and os.readlink(proc / "cwd") == str(root):
                pids.append(int(proc.name))
        except OSError:
            pass
    return pids


def test_debug_stage_survives_kill_9(dvc_repo):
    root, env = dvc_repo
    jobs = 16  # smoke: 8 problems x 2 trajectories
    dvc = subprocess.Popen(RUN, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    killed_at, deadline = None, time.time() + 600
    while dvc.poll() is None and time.time() < deadline:
        logs = list((root / ".cache/debug").glob("*.jsonl"))
        if logs and jobs // 4 <= len(complete_lines(logs[0])) <= jobs - 4:  # well inside the stage
            pids = stage_pids(root)
            if pids:
                os.killpg(os.getpgid(pids[0]), signal.SIGKILL)  # the stage with dvc around it, no clean-up
                killed_at = logs[0]
                break
        time.sleep(0.02)
    dvc.wait(timeout=60)
    assert killed_at is not None, "the debug stage finished before it could be killed"
    time.sleep(0.5)  # the sandbox's bwrap children die with their parent
    assert not stage_pids(root)
    before = complete_lines(killed_at)
    assert jobs // 4 <= len(before) < jobs

    log = sh(RUN, root, env)
    assert "debug" in ran_stages(log)
    report = json.loads((root / "reports/debug.json").read_text())
    final = [json.loads(line) for line in (root / "data/trajectories.jsonl").read_text().splitlines()]
    ids = [t["trajectory_id"] for t in final]
    # Nothing repeated: the re-run took every logged trajectory from the log and ran only the rest.
    assert report["resumed"] == len(before) and report["jobs"] == jobs
    logged = {json.loads(line)["trajectory_id"]: json.loads(line) for line in before}
    assert all(t == logged[t["trajectory_id"]] for t in final if t["trajectory_id"] in logged)
    # Nothing lost: every job has its trajectory, once.
    assert len(ids) == len(set(ids)) == report["trajectories"] == jobs - report["no_session"]
    assert set(logged) <= set(ids)
    assert not killed_at.exists()  # a finished stage deletes its resume log
