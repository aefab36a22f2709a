"""Programs a test starts, each in a session (and so a process group) of its own, ended whole.

Killing only the program a test started leaves its children running (bigcodebench's CLI left its
pool worker running for minutes after the suite ended): `started` and `run` kill the program's
whole process group when it is done with, also after a normal exit and on a timeout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator


def end_group(proc: subprocess.Popen) -> None:
    """Kill every process of ``proc``'s group (the session `started` gave it) and reap ``proc``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@contextlib.contextmanager
def started(cmd, **kwargs) -> Iterator[subprocess.Popen]:
    """``subprocess.Popen(cmd, **kwargs)`` in a new session; its whole group is killed on leaving."""
    proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
    try:
        yield proc
    finally:
        end_group(proc)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def run(cmd, *, input=None, capture_output: bool = False, timeout: float | None = None, check: bool = False,
        **kwargs) -> subprocess.CompletedProcess:
    """`subprocess.run` in a new session whose whole group is killed when the program exits or
    times out (`subprocess.TimeoutExpired` is raised as by `subprocess.run`)."""
    if capture_output:
        kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    with started(cmd, **kwargs) as proc:
        out, err = proc.communicate(input, timeout=timeout)
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check:
        done.check_returncode()
    return done
