"""An on-disk cache of generator replies: an identical request is never paid twice.

`CachedGenerator` wraps any `Generator`. A request's key is the sha256 of a canonical JSON of
the generator's identity (its name, its server's URL, and whatever else the caller says shapes
a reply), the conversation, and every `SamplingConfig` field, the seed included. Sampled
(temperature > 0) replies are cached too: the per-trajectory seed makes each request distinct,
and a rerun gets back exactly the replies the first run got.

One file per key, ``<dir>/<key[:2]>/<key>.json`` holding the request and its reply, written to
a temporary file and renamed into place. So the debug stage's threads (and other processes)
can share a directory without locks, a kill -9 leaves at most a stray ``.tmp`` file, and an
entry damaged some other way (a power loss, a full disk) reads as a miss and is written again.
Only replies are stored: a call that raises stores nothing, so a failed request is asked again
next time.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from dataclasses import asdict
from pathlib import Path

from iterpref.llm.base import Conversation, Generator, SamplingConfig


class CachedGenerator:
    """Answer from ``cache_dir`` when the same request was answered before, else ask
    ``generator`` and store its replies.

    Args:
        generator: the generator to wrap (put it outside a `BatchingGenerator`, so that hits
            return at once instead of waiting for a batch).
        cache_dir: the cache directory, created on first store.
        identity: settings of the generator that shape its replies beyond its name and
            ``base_url`` (e.g. the dtype, or which model a local folder holds).

    Attributes:
        hits, misses: conversations answered from the cache, and sent to ``generator``
            (whether or not it answered).
    """

    def __init__(self, generator: Generator, cache_dir: str | os.PathLike, identity: dict | None = None):
        self.generator, self.cache_dir = generator, Path(cache_dir)
        self.name = generator.name
        self.identity = {"name": generator.name, "base_url": getattr(generator, "base_url", None),
                         **(identity or {})}
        self.hits = self.misses = 0
        self._count = threading.Lock()

    def request(self, conversation: Conversation, sampling: SamplingConfig) -> dict:
        """What identifies a request: generator identity, messages and sampling."""
        return {"generator": self.identity, "messages": conversation, "sampling": asdict(sampling)}

    def key(self, conversation: Conversation, sampling: SamplingConfig) -> str:
        """The sha256 of the request's canonical JSON."""
        return _digest(self.request(conversation, sampling))

    def chat(self, conversations: list[Conversation], sampling: SamplingConfig,
             progress: str | None = None) -> list[str]:
        """Replies for ``conversations`` (see `iterpref.llm.base.Generator`); only the misses
        reach the wrapped generator, in one call."""
        requests = [self.request(c, sampling) for c in conversations]
        keys = [_digest(r) for r in requests]
        replies = [self._load(k) for k in keys]
        todo = [i for i, r in enumerate(replies) if r is None]
        with self._count:
            self.hits += len(keys) - len(todo)
            self.misses += len(todo)
        if todo:
            fresh = self.generator.chat([conversations[i] for i in todo], sampling, progress)
            for i, reply in zip(todo, fresh):
                self._store(keys[i], requests[i], reply)
                replies[i] = reply
        return replies

    def stats(self) -> dict[str, int]:
        """Hit and miss counts, for a stage's report."""
        return {"hits": self.hits, "misses": self.misses}

    def _path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def _load(self, key: str) -> str | None:
        """The stored reply; None when absent or unreadable (a damaged entry is a miss)."""
        try:
            entry = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):  # ValueError: bad JSON or bad UTF-8
            return None
        reply = entry.get("reply") if isinstance(entry, dict) else None
        return reply if isinstance(reply, str) else None

    def _store(self, key: str, request: dict, reply: str) -> None:
        """Write the entry to a temporary file in its folder, then rename it into place."""
        path = self._path(key)
        # json.dumps and one write: json.dump writes a file in dozens of small chunks
        data = json.dumps({"request": request, "reply": reply}, ensure_ascii=False, default=str).encode()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:12]}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _digest(request: dict) -> str:
    """The sha256 of a request's canonical JSON (sorted keys, no spaces)."""
    blob = json.dumps(request, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()
