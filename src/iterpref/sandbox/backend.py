"""Which backend runs the code (bubblewrap, or plain rlimits with a warning), the unprivileged uids
runs drop to, and the bubblewrap command line: what the confined process sees of the host."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

from iterpref.sandbox.config import SandboxConfig

# What code under bwrap sees of the host system, read-only: programs, shared libraries and their
# data (/usr, and /bin, /lib, ... or their symlinks into it), the dynamic linker's cache and the
# local time zone. No other file of the host's /etc (no passwd, hosts, ssl), nothing of /home,
# /root, /opt, /var, /srv, /mnt, /sys.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc/ld.so.cache", "/etc/localtime")
# The sandbox's own /etc/hosts: the loopback names, which its network namespace has (and code
# serving or calling "localhost" needs), none of the host's.
ETC_HOSTS = b"127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n"
INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`)"
PROBE_TIMEOUT_S = 30.0


# --------------------------------------------------------------------------- backend choice

_lock = threading.Lock()
_probe_lock = threading.Lock()  # held during the probe run
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
    hosts_fd, hosts_w = os.pipe()
    os.write(hosts_w, ETC_HOSTS)
    os.close(hosts_w)
    try:
        with sandbox_uid() as uid:
            argv = bwrap_argv([sys.executable, "-c", probe], "/tmp", [], uid, SandboxConfig(backend="bwrap"), hosts_fd)
            proc = subprocess.Popen(argv, env=clean_env("/tmp"), cwd="/", stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True, pass_fds=(hosts_fd,))
            try:
                out, err = proc.communicate(timeout=PROBE_TIMEOUT_S)
            finally:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    except OSError as e:
        return False, str(e)
    except subprocess.TimeoutExpired:
        return False, f"probe run did not finish within {PROBE_TIMEOUT_S:g} s"
    finally:
        os.close(hosts_fd)
    if proc.returncode != 0 or out.split() != [sys.prefix, sys.base_prefix]:
        return False, f"probe run failed (exit {proc.returncode}): {(err or out).strip()[-500:]}"
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


def _lease_folder() -> Path:
    UID_LEASES.mkdir(mode=0o700, exist_ok=True)
    st = UID_LEASES.lstat()
    if not UID_LEASES.is_dir() or UID_LEASES.is_symlink() or st.st_uid != os.geteuid():
        raise RuntimeError(f"{UID_LEASES}: the sandbox's uid leases must be a directory owned by uid "
                           f"{os.geteuid()}; remove it")
    return UID_LEASES


@contextlib.contextmanager
def sandbox_uid() -> Iterator[int]:
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
def shared_workdir(path: str) -> Iterator[None]:
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


def inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def ancestors(path: str) -> list[str]:
    """``/a/b/c`` -> ``['/a', '/a/b']``."""
    parts = Path(path).parts[1:-1]
    return ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]


def interpreter_paths() -> list[str]:
    """The interpreter's folders as this process names them and as they resolve: the base
    prefix, the venv and the executable's folder (when it lies outside both)."""
    paths = [sys.base_prefix, sys.prefix, os.path.dirname(sys.executable)]
    paths += [os.path.realpath(p) for p in paths]
    return [p for i, p in enumerate(paths) if not any(inside(p, q) for q in paths[:i])]


def visible_paths(config: SandboxConfig | None = None) -> list[str]:
    """The host paths that code run under bwrap can read (read-only), besides its run folder.

    They are `SYSTEM_PATHS` that exist, the interpreter's folders (`interpreter_paths`) and
    ``config.read_only``, each at its own path, less those inside another one."""
    config = config or SandboxConfig()
    paths = [p for p in SYSTEM_PATHS if os.path.lexists(p)] + interpreter_paths() + list(config.read_only)
    return [p for i, p in enumerate(paths) if not any(inside(p, q) for q in paths[:i] if not os.path.islink(q))]


def bwrap_argv(cmd: list[str], cwd: str, binds: list[tuple[str, bool]], uid: int | None,
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
    mounts = [(p, "link" if os.path.islink(p) and any(inside(os.path.realpath(p), d) for d in dirs) else "ro")
              for p in visible]  # (path, how): "link", "ro", "rw" or "data"
    mounts += [(path, "rw" if writable else "ro") for path, writable in binds] + [("/etc/hosts", "data")]
    bound = [p for p, how in mounts if how in ("ro", "rw")]
    made = {"/tmp", "/dev", "/dev/shm", "/proc"}
    for path, how in sorted(mounts, key=lambda m: m[0].count("/")):  # parents first
        for a in ancestors(path):
            if a not in made and not any(inside(a, b) for b in bound):
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


def clean_env(home: str) -> dict[str, str]:
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


