"""An HTTP endpoint that never answers, for the tests that a client gives up on time."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def silent_server() -> Iterator[str]:
    """The URL of a socket on 127.0.0.1 that accepts connections (the kernel's backlog) and never
    answers; it closes on exit."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(128)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"
