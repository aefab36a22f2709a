"""The one way the pipeline runs untrusted (generated) code: in a separate, confined process.

Two backends:

* ``bwrap`` (bubblewrap): a fresh mount/pid/net/ipc/uts namespace whose filesystem holds only
  what the code needs (below), private ``/tmp`` and ``/dev/shm``, no network, the private run
  directory bound read-write, rlimits (``prlimit``) and, when we are root, a drop to an
  unprivileged uid (``setpriv``) so that RLIMIT_NPROC applies.
* ``rlimit``: a plain child process with rlimits, a clean environment and its own process
  group. It is NOT isolation (the code can read and write what we can, use the network, and a
  child that starts its own session escapes the kill); it is the fallback when bubblewrap is
  not installed, with a warning.

Either way the child gets a clean environment (no API keys), the whole process tree is killed
on timeout, output is read with a cap, and the run directory is deleted afterwards.

What the code can read under bwrap (`visible_paths`): the sandbox's root is an empty tmpfs,
read-only, holding `SYSTEM_PATHS` (``/usr`` and the ``/bin``, ``/lib``, ... symlinks into it,
``/etc/ld.so.cache``, ``/etc/localtime``), a loopback-only ``/etc/hosts`` of its own, the
interpreter's base prefix and the venv (``sys.base_prefix``, ``sys.prefix``) and
``SandboxConfig.read_only``, all read-only at their own paths, plus the run's folder (and, for
`run_unittest`, the judge's source file). The folders leading to them exist, empty, mode 755, so
the interpreter works after the uid drop even when it lives under a home of mode 700
(``/root/.pyenv``). Nothing else of the host is there: not the project checkout (when the venv
lives inside it, only the venv), its data, models, caches or a ``.env``, not the home folders,
``/etc/passwd``, ``/var``, ``/opt``, ``/sys``, nor other runs' folders. Hence a ``.pth`` path
outside the venv (an editable install, this project's own ``src/`` included) is not importable
inside; nothing run in the sandbox imports ``iterpref``.

`run_unittest`: a verdict the code under test cannot write
-----------------------------------------------------------
The tests and the code run in two processes (``iterpref/sandbox/judge.py``). A launcher started in the
sandbox forks once, before any candidate code is loaded: the child closes every descriptor but
its ends of two pipes, drops to the run's uid (bwrap as root) and imports ``solution.py``
from ``work/``; the parent drops to `JUDGE_UID`, imports ``test_solution.py`` from ``judge/``
(mode 700, the test file itself read-only) with ``solution`` bound to a proxy module, and runs
the tests. Every call the tests make crosses the pipes as tagged JSON (plain data in both
directions, anything else as a handle compared by identity; never pickle, never eval). The
verdict goes to a pipe whose write end only the judge holds; the host reads it while the run
lasts and accepts it only after the sandbox's process has exited and its process group is
killed (under bwrap: its pid namespace is gone, so is every process the code started), only if
it is exactly one well-formed verdict on the pipe's last line, the judge exited with status 0,
and the wall-clock limit was not reached.

Threat model, bwrap as root (the default here): the code under test is hostile. Guaranteed:
it can read only what is listed above and write only its own directory and the run's private
``/tmp``; it cannot reach the network, see our environment (no API keys), outlive the run, or
exceed the CPU, memory, file, process and output limits; and it cannot make a wrong answer count as right: it cannot run
code in the judge, patch the judge's ``unittest``/``builtins``/``sys.modules``/``open``, write,
signal, trace or open the judge's descriptors, files or memory (another uid, non-dumpable),
nor hand the tests an object whose ``__eq__``, ``__hash__`` or ``__repr__`` decides anything.
A solution that dies, exits early (even with status 0), closes or floods its pipe with
malformed answers is ``crashed``, sticky for the rest of the run. Not guaranteed: the code
sees the judge's process in its pid namespace (``/proc/<pid>/cmdline``: paths, no secrets);
runs share the kernel (a kernel exploit escapes any namespace); the answers themselves are
the code's to choose, so a solution that special-cases the test inputs passes, as it would
anywhere; values of types outside the wire format (a ``Fraction``, a ``deque``, the code's own
classes) reach the tests as handles, so tests that compare them with ``==`` fail; tests cannot
pass callables (a ``key=`` function) to the code.

bwrap without root: the same files are visible (in a user namespace). There is no second uid,
so the judge relies on being non-dumpable (``prctl(PR_SET_DUMPABLE, 0)``: no ptrace, no
``/proc/<judge>/fd``) and on the read-only test file; the code can still kill the judge, which
gives no verdict (never a pass).

rlimit (no bubblewrap): NOT isolation. The judge still runs in another process and holds the
verdict pipe alone, so every in-process forgery fails (tested), but the code runs as our own
user: it can read everything we can (the project, its ``.env``, the home folder), rewrite the
tests in ``judge/`` before the judge imports them, edit this package on disk, kill the judge,
and children that start their own session survive the run.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import marshal
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from iterpref.config.fields import spec
import time
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from iterpref.records import Outcome

BACKENDS = ("auto", "bwrap", "rlimit")
# What code under bwrap sees of the host system, read-only: programs, shared libraries and their
# data (/usr, and /bin, /lib, ... or their symlinks into it), the dynamic linker's cache and the
# local time zone. No other file of the host's /etc (no passwd, hosts, ssl), nothing of /home,
# /root, /opt, /var, /srv, /mnt, /sys.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc/ld.so.cache", "/etc/localtime")
# The sandbox's own /etc/hosts: the loopback names, which its network namespace has (and code
# serving or calling "localhost" needs), none of the host's.
ETC_HOSTS = b"127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`)"


@dataclass
class SandboxConfig:
    """Limits and backend for sandboxed runs.

    Parameters:
        timeout_s (`float`, defaults to `5.0`):
            Wall-clock limit of one run, interpreter start-up included. The whole process tree
            is killed when it is reached.
        cpu_s (`int`, defaults to `5`):
            CPU-time limit (RLIMIT_CPU) of each process of the run.
        memory_mb (`int`, defaults to `1024`):
            Address-space limit (RLIMIT_AS) of each process, in MiB.
        max_processes (`int`, defaults to `32`):
            Process limit (RLIMIT_NPROC) of the run's user. Only effective with the ``bwrap``
            backend run as root, which drops to an unprivileged uid (root ignores it).
        max_output_bytes (`int`, defaults to `1000000`):
            Bytes of stdout and of stderr kept; the rest is read and dropped.
        max_file_mb (`int`, defaults to `16`):
            Largest file a process may write (RLIMIT_FSIZE), in MiB.
        traceback_chars (`int`, defaults to `2000`):
            Characters of feedback kept in `Outcome.traceback` (the middle is cut).
        backend (`str`, defaults to `"auto"`):
            ``"bwrap"``, ``"rlimit"``, or ``"auto"``: bwrap when it is usable, else rlimit with
            a warning.
        workers (`int`, defaults to `2`):
            Sandboxes run in parallel by `run_unittest_many`.
        read_only (`list[str]`, defaults to `[]`):
            Further host paths (absolute) the code may read under bwrap, bound read-only at their
            own paths, e.g. a library's data folder outside the venv; missing ones are skipped.
            Everything else outside `visible_paths` and the run's own folder stays hidden.
    """

    timeout_s: float = spec(5.0, gt=0)
    cpu_s: int = spec(5, ge=1)
    memory_mb: int = 1024
    max_processes: int = 32
    max_output_bytes: int = 1_000_000
    max_file_mb: int = 16
    traceback_chars: int = 2000
    backend: str = "auto"
    workers: int = 2
    read_only: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"SandboxConfig.backend must be one of {BACKENDS}, got {self.backend!r}")
        relative = [p for p in self.read_only if not os.path.isabs(p)]
        if relative:
            raise ValueError(f"SandboxConfig.read_only must hold absolute paths, got {relative!r}")
        for name in ("timeout_s", "cpu_s", "memory_mb", "max_processes", "max_file_mb", "workers"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SandboxConfig.{name} must be positive, got {getattr(self, name)!r}")


@dataclass
class ProcessResult:
    """What a sandboxed process did.

    Attributes:
        returncode: exit status; negative (rlimit) or 128+N (bwrap) when killed by signal N.
        stdout: captured standard output (decoded, cut at ``max_output_bytes``).
        stderr: captured standard error (same).
        timed_out: the wall-clock limit was hit and the process tree was killed.
        duration_s: wall time of the run.
        backend: the backend that ran it, ``bwrap`` or ``rlimit``.
    """

    returncode: int
    stdout: str
    stderr: str
    timed_out: bool
    duration_s: float
    backend: str


# --------------------------------------------------------------------------- backend choice

_lock = threading.Lock()
_probe_lock = threading.Lock()  # held during the probe run, which itself takes _lock
_bwrap_state: tuple[bool, str] | None = None
_warned = False


def _warn_once(message: str) -> None:
    global _warned
    with _lock:
        if _warned:
            return
        _warned = True
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def bwrap_usable() -> tuple[bool, str]:
    """Whether the bwrap backend works here (probed once per process) and, if not, why."""
    global _bwrap_state
    with _probe_lock:
        if _bwrap_state is not None:
            return _bwrap_state
        _bwrap_state = _probe_bwrap()
        return _bwrap_state


def _probe_bwrap() -> tuple[bool, str]:
    tools = ["bwrap", "prlimit"] + (["setpriv"] if os.geteuid() == 0 else [])
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        return False, f"{', '.join(missing)} not found"
    # Start the real interpreter the real way: this also checks that the venv is visible
    # after the uid drop (a python that cannot read its prefix silently falls back to /usr).
    probe = "import sys; print(sys.prefix); print(sys.base_prefix)"
    try:
        res = run_python(["-c", probe], config=SandboxConfig(timeout_s=30, backend="bwrap"), _backend="bwrap")
    except OSError as e:
        return False, str(e)
    if res.returncode != 0 or res.stdout.split() != [sys.prefix, sys.base_prefix]:
        return False, f"probe run failed (exit {res.returncode}): {(res.stderr or res.stdout).strip()[-500:]}"
    return True, ""


def resolve_backend(config: SandboxConfig | None = None) -> str:
    """The backend ``config`` will actually use: ``"bwrap"`` or ``"rlimit"``.

    ``auto`` falls back to rlimit, with a warning (once per process), when bubblewrap is
    missing or unusable. Asking for ``bwrap`` explicitly raises `RuntimeError` instead.
    """
    config = config or SandboxConfig()
    if config.backend == "rlimit":
        _warn_once("iterpref.sandbox: the rlimit backend is NOT isolation: generated code can read and "
                   f"write your files and use the network; {INSTALL_HINT} to confine it.")
        return "rlimit"
    ok, why = bwrap_usable()
    if ok:
        return "bwrap"
    if config.backend == "bwrap":
        raise RuntimeError(f"the bwrap sandbox backend is not usable: {why}; {INSTALL_HINT}")
    _warn_once(f"iterpref.sandbox: bubblewrap is not usable ({why}); falling back to the rlimit backend, "
               f"which is NOT isolation (generated code can touch your files and the network). {INSTALL_HINT}.")
    return "rlimit"


# --------------------------------------------------------------------------- unprivileged uids

# When we are root the sandbox drops to one of these uids. Concurrent runs get different uids
# because RLIMIT_NPROC counts per uid: one run's fork bomb must not starve its neighbour. That
# holds across processes too (parallel pytest workers, queued DVC experiments): a uid is leased
# with an exclusive flock on its file under UID_LEASES, which the kernel drops when the lease's
# descriptor closes or its process dies, so a crash never leaks a uid.
# 65520-65534 lie above systemd's dynamic range and below/at "nobody".
SANDBOX_GID = 65534
SANDBOX_UIDS = range(65534, 65519, -1)
UID_LEASES = Path("/tmp/iterpref-sandbox-uids")  # fixed, not $TMPDIR: every process must agree
# The tests of `run_unittest` run as this uid, never one of the code's: the code can neither
# signal, trace nor write the judge. (Judges of concurrent runs share it; they live in
# separate pid namespaces and directories.)
JUDGE_UID = 65519
CHANNEL_BYTES = 4 * 1024 * 1024  # the judge's progress lines and verdict


def _lease_folder() -> Path:
    UID_LEASES.mkdir(mode=0o700, exist_ok=True)
    st = UID_LEASES.lstat()
    if not UID_LEASES.is_dir() or UID_LEASES.is_symlink() or st.st_uid != os.geteuid():
        raise RuntimeError(f"{UID_LEASES}: the sandbox's uid leases must be a directory owned by uid "
                           f"{os.geteuid()}; remove it")
    return UID_LEASES


@contextlib.contextmanager
def _sandbox_uid() -> Iterator[int]:
    """Lease a uid of SANDBOX_UIDS that no other run holds, in this process or any other.

    When all are taken (more than 15 runs at once on this machine), wait for one: sharing a uid
    would share its process limit, and a neighbour's fork bomb would fail this run.
    """
    if os.geteuid() != 0:  # no uid drop without root: nothing to lease
        yield 65534
        return
    folder = _lease_folder()
    while True:
        for uid in SANDBOX_UIDS:
            fd = os.open(folder / f"{uid}.lock", os.O_CREAT | os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # per open file: threads exclude each other too
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                yield uid
            finally:
                os.close(fd)
            return
        time.sleep(0.05)


_workdir_users: dict[str, list] = {}


@contextlib.contextmanager
def _shared_workdir(path: str) -> Iterator[None]:
    """Let sandbox uids (group SANDBOX_GID) write in a caller's directory while runs use it."""
    with _lock:
        entry = _workdir_users.get(path)
        if entry is None:
            st = os.stat(path)
            os.chown(path, -1, SANDBOX_GID)
            os.chmod(path, (st.st_mode & 0o7777) | 0o070)
            entry = _workdir_users[path] = [0, st]
        entry[0] += 1
    try:
        yield
    finally:
        with _lock:
            entry[0] -= 1
            if entry[0] == 0:
                st = entry[1]
                del _workdir_users[path]
                with contextlib.suppress(OSError):
                    os.chown(path, -1, st.st_gid)
                    os.chmod(path, st.st_mode & 0o7777)


# --------------------------------------------------------------------------- command lines


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _ancestors(path: str) -> list[str]:
    """``/a/b/c`` -> ``['/a', '/a/b']``."""
    parts = Path(path).parts[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def _interpreter_paths() -> list[str]:
    """The interpreter's folders as this process names them and as they resolve: the base
    prefix, the venv and the executable's folder (when it lies outside both)."""
    paths = [sys.base_prefix, sys.prefix, os.path.dirname(sys.executable)]
    paths += [os.path.realpath(p) for p in paths]
    return [p for i, p in enumerate(paths) if not any(_inside(p, q) for q in paths[:i])]


def visible_paths(config: SandboxConfig | None = None) -> list[str]:
    """The host paths that code run under bwrap can read (read-only), besides its run folder.

    They are `SYSTEM_PATHS` that exist, the interpreter's folders (`_interpreter_paths`) and
    ``config.read_only``, each at its own path, less those inside another one."""
    config = config or SandboxConfig()
    paths = [p for p in SYSTEM_PATHS if os.path.lexists(p)] + _interpreter_paths() + list(config.read_only)
    return [p for i, p in enumerate(paths) if not any(_inside(p, q) for q in paths[:i] if not os.path.islink(q))]


def _bwrap_argv(cmd: list[str], cwd: str, binds: list[tuple[str, bool]], uid: int | None,
                config: SandboxConfig, hosts_fd: int) -> list[str]:
    """The bwrap command line running ``cmd`` with the (host path, writable) ``binds`` in place.

    The sandbox's root is an empty tmpfs, made read-only once everything is in place: on it
    only `visible_paths` (read-only; a symlink into another, such as ``/lib -> usr/lib``, is
    recreated as one), a private ``/tmp`` and ``/dev/shm``, a minimal ``/dev``, the run's own
    ``/proc``, ``binds``, and ``/etc/hosts`` read from ``hosts_fd`` (`ETC_HOSTS`). Folders leading to them
    are created empty, mode 755.

    As root, ``cmd`` runs as ``uid`` (setpriv), or stays root inside the namespaces when ``uid``
    is None (the judge, which starts the solution's process and then drops both uids itself).
    """
    root = os.geteuid() == 0
    argv = ["bwrap", "--dev", "/dev", "--proc", "/proc",
            "--perms", "1777", "--tmpfs", "/tmp", "--perms", "1777", "--tmpfs", "/dev/shm"]
    visible = visible_paths(config)
    dirs = [p for p in visible if not os.path.islink(p)]
    # A symlink whose target is visible anyway stays a symlink (/lib -> usr/lib); others are bound.
    mounts = [(p, "link" if os.path.islink(p) and any(_inside(os.path.realpath(p), d) for d in dirs) else "ro")
              for p in visible]  # (path, how): "link", "ro", "rw" or "data"
    mounts += [(path, "rw" if writable else "ro") for path, writable in binds] + [("/etc/hosts", "data")]
    bound = [p for p, how in mounts if how in ("ro", "rw")]
    made = {"/tmp", "/dev", "/dev/shm", "/proc"}
    for path, how in sorted(mounts, key=lambda m: m[0].count("/")):  # parents first
        for a in _ancestors(path):
            if a not in made and not any(_inside(a, b) for b in bound):
                argv += ["--perms", "0755", "--dir", a]
                made.add(a)
        if how == "link":
            argv += ["--symlink", os.readlink(path), path]
        elif how == "data":
            argv += ["--perms", "0644", "--ro-bind-data", str(hosts_fd), path]
        else:
            argv += ["--bind" if how == "rw" else "--ro-bind-try", path, path]
    argv += ["--remount-ro", "/"]
    if root:
        # No user namespace: inside one, uid 65534 would map back to real root, which
        # RLIMIT_NPROC ignores. We drop the uid with setpriv instead.
        argv += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
    else:
        argv += ["--unshare-all"]
    argv += ["--die-with-parent", "--new-session", "--chdir", cwd, "--"]
    mib = 1024 * 1024
    argv += ["prlimit", f"--as={config.memory_mb * mib}", f"--cpu={config.cpu_s}:{config.cpu_s + 1}",
             f"--fsize={config.max_file_mb * mib}", "--core=0"]
    if root:
        argv += [f"--nproc={config.max_processes}"]
    if root and uid is not None:
        argv += ["--", "setpriv", f"--reuid={uid}", f"--regid={SANDBOX_GID}",
                 "--clear-groups", "--inh-caps=-all", "--bounding-set=-all"]
    return argv + ["--", *cmd]


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


def _clean_env(home: str) -> dict[str, str]:
    """The child's whole environment: nothing of ours (API keys, tokens) is passed on."""
    return {
        "PATH": f"{os.path.dirname(sys.executable)}:/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONIOENCODING": "utf-8",
        # One BLAS/OpenMP thread: each one's stack and buffers count against RLIMIT_AS, and
        # sandboxes already run in parallel.
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


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


def _execute(args: list[str], cwd: str, binds: list[tuple[str, bool]], config: SandboxConfig, backend: str,
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
            proc = subprocess.Popen(_bwrap_argv(cmd, cwd, binds, uid, config, hosts_fd),
                                    env={**_clean_env("/tmp"), **(env or {})}, cwd="/", stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                    pass_fds=(*keep, hosts_fd))
        else:
            limits = _rlimits(config)

            def set_limits() -> None:
                for which, value in limits:
                    resource.setrlimit(which, value)

            proc = subprocess.Popen(cmd, env={**_clean_env(cwd), **(env or {})}, cwd=cwd, stdin=subprocess.DEVNULL,
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
def _run_dir(backend: str, uid: int, judged: bool = False) -> Iterator[Path]:
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
               workdir: Path | None = None, env: dict[str, str] | None = None, *,
               _backend: str | None = None) -> ProcessResult:
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
    backend = _backend or resolve_backend(config)
    with _sandbox_uid() as uid, _run_dir(backend, uid) as base:
        cwd = str(Path(workdir).resolve()) if workdir is not None else str(base / "work")
        _write_files(Path(cwd), files or {})
        shared = workdir is not None and backend == "bwrap" and os.geteuid() == 0
        with _shared_workdir(cwd) if shared else contextlib.nullcontext():
            return _execute(args, cwd, [(cwd, True)], config, backend, uid, env)[0]


# --------------------------------------------------------------------------- unittest runs

JUDGE = Path(__file__).with_name("judge.py")  # the program run_unittest starts in the sandbox
_judge_pyc: tuple[tuple[int, int], bytes] | None = None


def _judge_bytecode() -> bytes:
    """`JUDGE` as a ``.pyc`` file's bytes, compiled once per process (again if the file changes).

    Python never caches a script's bytecode: started as ``judge.py``, every run compiled its
    700 lines anew, about 4 ms of CPU per run. ``python judge.pyc`` runs the compiled code
    directly (the header's date and size are not checked for a script)."""
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

    The judge starts with ``-S`` and sets these itself: ``site`` listing the venv's
    site-packages for ``.pth`` files and running them cost about 4 ms of CPU per run."""
    global _startup
    with _lock:
        if _startup is None:
            probe = "import json, sys; print(json.dumps({'path': sys.path, 'prefix': [sys.prefix, sys.exec_prefix]}))"
            with tempfile.TemporaryDirectory(prefix="iterpref-home-") as home:  # an empty home, as in the sandbox
                out = subprocess.run([sys.executable, "-P", "-c", probe], env=_clean_env(home), cwd=home,
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


def _hang_report(running: str | None, stderr: str, dirs: Sequence[str]) -> str:
    """Which test was running, and the frames faulthandler dumped (to stderr) shortly before the kill."""
    lines = [f"while running {running}" if running else "before any test started (at import?)"]
    frames = []
    for ln in stderr.splitlines():
        ln = ln.strip()
        if ln.startswith("File ") and any(d + "/" in ln for d in dirs):
            for d in dirs:
                ln = ln.replace(d + "/", "")
            frames.append(ln)
    if frames:
        lines.append("Stack shortly before the kill (most recent call first):")
        lines += ["  " + f for f in frames[:12]]
    return "\n".join(lines)


def _outcome(res: ProcessResult, said: bytes, base: Path, config: SandboxConfig) -> Outcome:
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
    hang = _hang_report(running, res.stderr, [str(base / "work"), str(base / "judge")])
    if res.timed_out:
        return Outcome(False, "timeout", error_type="TimeoutError", duration_s=res.duration_s,
                       traceback=trim(f"TimeoutError: the tests did not finish within {config.timeout_s:g} s "
                                      f"(wall clock), {hang}"))
    if sig == "SIGXCPU":
        return Outcome(False, "timeout", error_type="TimeoutError", duration_s=res.duration_s,
                       traceback=trim(f"TimeoutError: CPU time limit of {config.cpu_s} s exceeded, {hang}"))
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
    (another uid under bwrap as root), across pipes; see ``iterpref.sandbox.judge`` and the
    module docstring for what this guarantees.

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
    with _sandbox_uid() as uid, _run_dir(backend, uid, judged=True) as base:
        work, judge = base / "work", base / "judge"
        (work / "solution.py").write_text(code, encoding="utf-8")
        (judge / "test_solution.py").write_text(tests, encoding="utf-8")
        (base / "judge.pyc").write_bytes(_judge_bytecode())
        read, write = os.pipe()
        cfg = {"work": str(work), "judge": str(judge), "verdict_fd": write, "cpu_s": config.cpu_s,
               "hang_at": time.monotonic() + config.timeout_s * 0.85, "gid": SANDBOX_GID,
               "solution_uid": uid if drop else None, "judge_uid": JUDGE_UID if drop else None, **_judge_startup()}
        binds = [(str(work), True), (str(judge), True), (str(judge / "test_solution.py"), False),
                 (str(base / "judge.pyc"), False), (str(JUDGE), False)]  # the source: for tracebacks
        res, said = _execute(["-P", "-S", str(base / "judge.pyc"), json.dumps(cfg)], str(judge), binds, config, backend, None,
                             channel=(read, write))
        return _outcome(res, said, base, config)


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
