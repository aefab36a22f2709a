"""The one way the pipeline runs untrusted (generated) code: in a separate, confined process.

What it guarantees, what the code can read, and the threat model: docs/sandbox.md. The modules:
`config` (the limits), `backend` (bubblewrap or rlimits, the uids, the bwrap command line),
`process` (`run_python`: rlimits, capped output, the process group killed at the end) and
`unittests` (`run_unittest`: tests and code in two processes, ``judge.py``, and the verdict).
"""

from iterpref.sandbox.backend import bwrap_usable, resolve_backend, visible_paths
from iterpref.sandbox.config import BACKENDS, SandboxConfig
from iterpref.sandbox.process import PROGRAMS, ProcessResult, run_python
from iterpref.sandbox.unittests import STATUSES, run_unittest, run_unittest_many

__all__ = ["BACKENDS", "PROGRAMS", "STATUSES", "ProcessResult", "SandboxConfig", "bwrap_usable", "resolve_backend",
           "run_python", "run_unittest", "run_unittest_many", "visible_paths"]
