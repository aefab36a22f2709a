"""What the command-line tools share: a mistake in what the user gave (a missing file, a bad row,
a task set that does not match, an invalid setting) is one line on stderr and exit status 2;
anything else is a bug and keeps its traceback.

Errors of the first kind derive from `UserError` (``RecordError``, ``ConfigError``,
``SetupError``, ...) or are a missing file; a tool's ``main`` decorated with `command` reports them
so. ``ITERPREF_TRACEBACK=1`` shows the traceback anyway.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path


class UserError(Exception):
    """An error in the user's input or setup, not in iterpref: its message says what to fix."""


def command(main: Callable[..., object]) -> Callable[..., object]:
    """Decorate a tool's ``main`` (its console script and ``python -m`` entry): a user's mistake
    becomes ``PROG: error: MESSAGE`` on stderr and exit status 2."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except (UserError, FileNotFoundError) as err:
            fail(err)

    return wrapped


def fail(err: BaseException) -> None:
    """Print ``err`` as one line for the user and exit with status 2 (or re-raise it under
    ITERPREF_TRACEBACK=1)."""
    if os.environ.get("ITERPREF_TRACEBACK"):
        raise err
    name = Path(sys.argv[0]).name
    message = f"{err.filename}: {err.strerror}" if isinstance(err, FileNotFoundError) and err.filename else str(err)
    print(f"{name}: error: {message}", file=sys.stderr)
    raise SystemExit(2) from None
