"""The end-of-suite check (tests/leftovers.py) and the helpers that end a program's whole group."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from processes import run, started

LEFTOVERS = Path(__file__).with_name("leftovers.py")

# A program that starts a child in a session of its own and exits at once: the child is left.
ORPHAN = """
import subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", sys.argv[1]], start_new_session=True)
"""


def alive(marker: str) -> list[str]:
    """The pids of processes whose command line holds ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
                state = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
            except OSError:
                continue
            if marker.encode() in cmd and state != b"Z":
                found.append(entry)
    return found


def test_a_process_left_behind_is_named_killed_and_fails_the_run():
    marker = f"left-{uuid.uuid4().hex}"
    done = run([sys.executable, str(LEFTOVERS), sys.executable, "-c", ORPHAN, marker],
               capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "left 1 process(es) running" in done.stderr and marker in done.stderr
    assert not alive(marker)


def test_a_clean_command_passes_with_its_own_exit_status():
    ok = run([sys.executable, str(LEFTOVERS), sys.executable, "-c", "import sys; sys.exit(3)"],
             capture_output=True, text=True, timeout=60)
    assert (ok.returncode, ok.stderr) == (3, "")


def test_run_and_started_end_the_whole_group():
    marker = f"group-{uuid.uuid4().hex}"
    child = f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}])"
    run([sys.executable, "-c", child], timeout=60)
    with started([sys.executable, "-c", child + "; import time; time.sleep(60)"]) as proc:
        time.sleep(0.5)
        assert proc.poll() is None
    deadline = time.monotonic() + 5
    while alive(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(marker)
    with pytest.raises(subprocess.TimeoutExpired):
        run([sys.executable, "-c", f"import time; time.sleep(60)  # {marker}"], timeout=0.5)
    assert not alive(marker)
