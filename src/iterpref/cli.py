"""What the command-line tools share: a mistake in what the user gave (a missing file, a bad row,
a task set that does not match, an invalid setting) is one line on stderr and exit status 2;
anything else is a bug and keeps its traceback.

Errors of the first kind derive from `UserError` (``RecordError``, ``ConfigError``,
``SetupError``, ...) or are a missing file; a tool's ``main`` decorated with `command` reports them
so. ``ITERPREF_TRACEBACK=1`` shows the traceback anyway.

Inside a DVC stage (DVC sets ``DVC_STAGE``), DVC has already removed the stage's previous outputs
when the command starts; a failure then also says the command that restores them from DVC's
cache (``dvc checkout STAGE``: they are still in dvc.lock and the cache).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path


class UserError(Exception):
    """An error in the user's input or setup, not in iterpref: its message says what to fix."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose mistakes (an unknown option, a bad choice, a missing argument) are
    one line, ``PROG: error: MESSAGE (see PROG --help)``, and exit status 2, like `fail`."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def at_least_one(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is below 1")
    return value


def command(main: Callable[..., object]) -> Callable[..., object]:
    """Decorate a tool's ``main`` (its console script and ``python -m`` entry): a user's mistake
    becomes ``PROG: error: MESSAGE`` on stderr and exit status 2."""

    @functools.wraps(main)
    def wrapped(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except (UserError, FileNotFoundError) as err:
            fail(err)
        except Exception:
            if os.environ.get("DVC_STAGE"):  # a bug: its traceback, then how to get the old outputs back
                print(f"{Path(sys.argv[0]).name}:{restore_hint()}", file=sys.stderr)
            raise

    return wrapped


def fail(err: BaseException) -> None:
    """Print ``err`` as one line for the user and exit with status 2 (or re-raise it under
    ITERPREF_TRACEBACK=1)."""
    if os.environ.get("ITERPREF_TRACEBACK"):
        raise err
    name = Path(sys.argv[0]).name
    message = f"{err.filename}: {err.strerror}" if isinstance(err, FileNotFoundError) and err.filename else str(err)
    print(f"{name}: error: {message}{restore_hint() if os.environ.get('DVC_STAGE') else ''}", file=sys.stderr)
    raise SystemExit(2) from None


def restore_hint() -> str:
    """What to run to get the failed DVC stage's previous outputs back."""
    stage = os.environ["DVC_STAGE"]
    return f" (the previous outputs of stage {stage}, if it ran before: `dvc checkout {stage}` restores them)"
