"""Running ``python <args>`` in the sandbox: rlimits, the process group killed at the end,
output read with a cap, the run's private folder."""

from __future__ import annotations

import contextlib
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from iterpref.sandbox.backend import (
    ETC_HOSTS,
    JUDGE_UID,
    SANDBOX_GID,
    bwrap_argv,
    clean_env,
    resolve_backend,
    sandbox_uid,
    shared_workdir,
)
from iterpref.sandbox.config import SandboxConfig

# The programs run inside the sandbox by path: judge.py and the official evaluators' wrappers.
PROGRAMS = Path(__file__).parent
CHANNEL_BYTES = 4 * 1024 * 1024  # the judge's progress lines and verdict


@dataclass
class ProcessResult:
    """What a sandboxed process did.

    Attributes:
        returncode: exit status; negative (rlimit) or 128+N (bwrap) when killed by signal N.
        stdout: captured standard output (decoded, cut at ``max_output_bytes``).
        stderr: captured standard error (same).
        timed_out: the wall-clock net (``timeout_s``) was hit and the process tree was killed.
        duration_s: wall time of the run.
        backend: the backend that ran it, ``bwrap`` or ``rlimit``.
    """

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool
    duration_s: float
    backend: str


def _rlimits(config: SandboxConfig) -> list[tuple[int, tuple[int, int]]]:
    mib = 1024 * 1024
    return [
        (resource.RLIMIT_AS, (config.memory_mb * mib,) * 2),
        (resource.RLIMIT_CPU, (config.cpu_s, config.cpu_s + 1)),
        (resource.RLIMIT_FSIZE, (config.max_file_mb * mib,) * 2),
        (resource.RLIMIT_CORE, (0, 0)),
        # No RLIMIT_NPROC: root ignores it, and for another user it counts all of that user's
        # processes and threads (the pipeline's own included), not the run's.
    ]


# --------------------------------------------------------------------------- execution


def _read_capped(proc: subprocess.Popen, caps: dict[int, int], timeout_s: float, kill) -> tuple[list[bytes], bool]:
    """Drain the pipes ``caps`` names (keeping as many bytes of each as it says) until exit or the deadline."""
    deadline = time.monotonic() + timeout_s
    bufs = {fd: bytearray() for fd in caps}
    dropped = dict.fromkeys(bufs, 0)
    timed_out = False
    exited_at = None
    with selectors.DefaultSelector() as sel:
        for fd in bufs:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map():
            now = time.monotonic()
            # WNOWAIT: look without reaping, so the pid (= process group) can't be reused
            # before we kill the group.
            if exited_at is None and os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                exited_at = now
                kill()  # leftover background children would keep the pipes open
            if exited_at is not None and now - exited_at > 2.0:
                break
            if exited_at is None and now >= deadline:
                timed_out = True
                kill()
                exited_at = now
            wait = 0.1 if exited_at is not None else max(0.0, min(0.25, deadline - now))
            for key, _ in sel.select(timeout=wait):
                data = os.read(key.fd, 1 << 16)
                if not data:
                    sel.unregister(key.fd)
                    continue
                buf = bufs[key.fd]
                keep = max(0, caps[key.fd] - len(buf))
                buf += data[:keep]
                dropped[key.fd] += len(data) - min(keep, len(data))
    out = []
    for fd, buf in bufs.items():
        if dropped[fd]:
            buf += f"\n[... {dropped[fd]} more bytes not captured]".encode()
        out.append(bytes(buf))
    return out, timed_out


def execute(args: list[str], cwd: str, binds: list[tuple[str, bool]], config: SandboxConfig, backend: str,
             uid: int | None = 65534, env: dict[str, str] | None = None,
             channel: tuple[int, int] | None = None) -> tuple[ProcessResult, bytes]:
    """Run ``python <args>`` in ``cwd`` under ``backend``; ``binds`` are (path, writable) for bwrap.

    ``channel`` is a pipe's (read end, write end): the write end is handed to the process alone
    and both are closed here; what came through it, read until the process has exited and its
    process group is killed, is returned beside the result.
    """
    cmd = [sys.executable, *args]
    start = time.monotonic()
    keep = (channel[1],) if channel is not None else ()
    hosts_fd = None
    try:
        if backend == "bwrap":
            hosts_fd, hosts_w = os.pipe()  # what bwrap copies to the sandbox's /etc/hosts
            os.write(hosts_w, ETC_HOSTS)
            os.close(hosts_w)
            proc = subprocess.Popen(bwrap_argv(cmd, cwd, binds, uid, config, hosts_fd),
                                    env={**clean_env("/tmp"), **(env or {})}, cwd="/", stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                    pass_fds=(*keep, hosts_fd))
        else:
            limits = _rlimits(config)

            def set_limits() -> None:
                for which, value in limits:
                    resource.setrlimit(which, value)

            proc = subprocess.Popen(cmd, env={**clean_env(cwd), **(env or {})}, cwd=cwd, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True, preexec_fn=set_limits, pass_fds=keep)
    except BaseException:
        if channel is not None:
            os.close(channel[0])
        raise
    finally:
        if channel is not None:
            os.close(channel[1])
        if hosts_fd is not None:
            os.close(hosts_fd)

    def kill() -> None:
        # bwrap: killing bwrap tears down the whole pid namespace (--die-with-parent).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    caps = {proc.stdout.fileno(): config.max_output_bytes, proc.stderr.fileno(): config.max_output_bytes}
    if channel is not None:
        caps[channel[0]] = CHANNEL_BYTES
    try:
        outputs, timed_out = _read_capped(proc, caps, config.timeout_s, kill)
    finally:
        kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        if channel is not None:
            os.close(channel[0])
    result = ProcessResult(returncode=proc.returncode, stdout=outputs[0].decode("utf-8", "replace"),
                           stderr=outputs[1].decode("utf-8", "replace"), timed_out=timed_out,
                           duration_s=time.monotonic() - start, backend=backend)
    return result, outputs[2] if channel is not None else b""


@contextlib.contextmanager
def run_dir(backend: str, uid: int, judged: bool = False) -> Iterator[Path]:
    """A private temporary directory with ``work/`` (the code's cwd, owned by ``uid`` under bwrap
    as root) and, when ``judged``, ``judge/`` (the tests' cwd, owned by `JUDGE_UID`, mode 700)."""
    base = Path(tempfile.mkdtemp(prefix="iterpref-sbx-"))
    try:
        for sub, owner in (("work", uid), ("judge", JUDGE_UID))[: 2 if judged else 1]:
            (base / sub).mkdir(mode=0o700 if sub == "judge" else 0o777)
            if backend == "bwrap" and os.geteuid() == 0:
                os.chown(base / sub, owner, SANDBOX_GID)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _write_files(root: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        rel = Path(name)
        if rel.is_absolute() or ".." in rel.parts:
            raise ValueError(f"file names must be relative and stay inside the run directory: {name!r}")
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content, encoding="utf-8")


def run_python(args: list[str], files: dict[str, str] | None = None, config: SandboxConfig | None = None,
               workdir: Path | None = None, env: dict[str, str] | None = None) -> ProcessResult:
    """Run this interpreter, ``python <args>``, in the sandbox.

    Args:
        args: interpreter arguments, e.g. ``["-c", "print(1)"]`` or ``["-m", "pkg.tool", "in.jsonl"]``.
        files: ``{relative name: text}`` written into the working directory before the run.
        config: limits and backend (defaults: `SandboxConfig()`).
        workdir: a directory to run in, bound read-write at its own path (e.g. where an
            evaluator writes results next to its input). While runs use it, it is made
            group-writable by the sandbox group and restored afterwards. Without it the run
            gets a private temporary directory, deleted afterwards.
        env: variables added to the child's clean environment (e.g. an evaluator's data-file
            override); never secrets, the code under test can read them.

    Returns:
        A `ProcessResult`; the venv's packages are importable inside.
    """
    config = config or SandboxConfig()
    backend = resolve_backend(config)
    with sandbox_uid() as uid, run_dir(backend, uid) as base:
        cwd = str(Path(workdir).resolve()) if workdir is not None else str(base / "work")
        _write_files(Path(cwd), files or {})
        shared = workdir is not None and backend == "bwrap" and os.geteuid() == 0
        with shared_workdir(cwd) if shared else contextlib.nullcontext():
            return execute(args, cwd, [(cwd, True)], config, backend, uid, env)[0]


