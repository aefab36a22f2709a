"""The limits and backend of sandboxed runs (the ``sandbox`` config section)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Literal, get_args

from iterpref.config.fields import spec

Backend = Literal["auto", "bwrap", "rlimit"]
BACKENDS = get_args(Backend)


@dataclass
class SandboxConfig:
    """Limits and backend for sandboxed runs.

    Parameters:
        timeout_s (`float`):
            Wall-clock net of one run, interpreter start-up included: the whole process tree is
            killed when it is reached. Only code that sleeps or waits should reach it, so it is
            generous (keep it a few times `total_cpu_s`): the time limits a verdict depends on
            are CPU time, which a loaded machine does not shorten.
        cpu_s (`int`):
            CPU time the code under test may use in one test of `run_unittest` (and in its
            import), counted afresh for each test, so a test that loops is stopped in that test
            whatever ran before it: a ``timeout`` naming neither the test nor the line. For
            `run_python`, the CPU-time limit (RLIMIT_CPU) of each process.
        total_cpu_s (`int`):
            CPU-time limit (RLIMIT_CPU) of each process of a `run_unittest` run over all its
            tests, at least `cpu_s`: a run that reaches it is the same ``timeout``.
        memory_mb (`int`):
            Address-space limit (RLIMIT_AS) of each process, in MiB.
        max_processes (`int`):
            Process limit (RLIMIT_NPROC) of the run's user. Only effective with the ``bwrap``
            backend run as root, which drops to an unprivileged uid (root ignores it).
        max_output_bytes (`int`):
            Bytes of stdout and of stderr kept; the rest is read and dropped.
        max_file_mb (`int`):
            Largest file a process may write (RLIMIT_FSIZE), in MiB.
        traceback_chars (`int`):
            Characters of feedback kept in `Outcome.traceback` (the middle is cut).
        backend (`str`):
            ``"bwrap"``, ``"rlimit"``, or ``"auto"``: bwrap when it is usable, else rlimit with
            a warning.
        workers (`int`):
            Sandboxes run in parallel by `run_unittest_many`.
        read_only (`list[str]`):
            Further host paths (absolute) the code may read under bwrap, bound read-only at their
            own paths, e.g. a library's data folder outside the venv; missing ones are skipped.
            Everything else outside `visible_paths` and the run's own folder stays hidden.
    """

    timeout_s: float = spec(30.0, gt=0)
    cpu_s: int = spec(5, ge=1)
    total_cpu_s: int = spec(10, ge=1)
    memory_mb: int = 1024
    max_processes: int = 32
    max_output_bytes: int = 1_000_000
    max_file_mb: int = 16
    traceback_chars: int = 2000
    backend: Backend = "auto"
    workers: int = 2
    read_only: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"SandboxConfig.backend must be one of {BACKENDS}, got {self.backend!r}")
        relative = [p for p in self.read_only if not os.path.isabs(p)]
        if relative:
            raise ValueError(f"SandboxConfig.read_only must hold absolute paths, got {relative!r}")
        for name in ("timeout_s", "cpu_s", "total_cpu_s", "memory_mb", "max_processes", "max_file_mb", "workers"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SandboxConfig.{name} must be positive, got {getattr(self, name)!r}")
        if self.total_cpu_s < self.cpu_s:
            raise ValueError(f"SandboxConfig.total_cpu_s ({self.total_cpu_s}) must be at least cpu_s ({self.cpu_s})")

    def with_cpu_s(self, cpu_s: int, **changes) -> SandboxConfig:
        """These limits with ``cpu_s`` (``total_cpu_s`` raised to it when lower) and ``changes``."""
        return replace(self, cpu_s=cpu_s, total_cpu_s=max(self.total_cpu_s, cpu_s), **changes)
