"""Run a command (the test suite) and fail when it leaves a process behind.

    python tests/leftovers.py COMMAND [ARGS...]

This process makes itself the child subreaper of everything the command starts
(``PR_SET_CHILD_SUBREAPER``): a process whose parent exits is re-parented here, not to init, even
when it started a session of its own. After the command exits, whatever still descends from this
process was left behind by it: each is listed (pid, age, command line), killed, and the exit status
is 1. Processes outside the command's tree (the machine's own, other users' runs) are never looked
at. Otherwise the exit status is the command's.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time

PR_SET_CHILD_SUBREAPER = 36
GRACE_S = 10.0  # for processes that are already on their way out when the command exits


def children() -> dict[int, int]:
    """Every process on the machine: pid -> parent pid (those that vanish while read are skipped)."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    stat = fh.read()
            except OSError:
                continue
            out[int(entry)] = int(stat[stat.rindex(b")") + 2:].split()[1])
    return out


def descendants(root: int) -> list[int]:
    """The pids below ``root`` in the process tree, zombies not counted."""
    parents = children()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        kids = [p for p, pp in parents.items() if pp == pid]
        found += kids
        todo += kids
    return [p for p in found if state(p) not in ("Z", None)]


def state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    return stat[stat.rindex(b")") + 2:].split()[0].decode()


def describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
        with open(f"/proc/{pid}/stat", "rb") as fh:
            start_ticks = int(fh.read().rsplit(b")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            age = float(fh.read().split()[0]) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return f"{pid} (gone)"
    return f"{pid} (running {age:.0f} s): {cmd[:300]}"


def reap() -> None:
    """Collect re-parented children that have exited."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        print(f"leftovers: prctl(PR_SET_CHILD_SUBREAPER) failed (errno {ctypes.get_errno()})", file=sys.stderr)
        return 2
    proc = subprocess.Popen(argv)
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        code = proc.wait()
    deadline = time.monotonic() + GRACE_S
    left = descendants(os.getpid())
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        reap()
        left = descendants(os.getpid())
    if not left:
        return code
    print(f"\nleftovers: the command left {len(left)} process(es) running after it exited:", file=sys.stderr)
    for pid in left:
        print(f"  {describe(pid)}", file=sys.stderr)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    time.sleep(0.2)
    reap()
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
