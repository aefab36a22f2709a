"""Decode the requests of many threads together in one in-process generator, as they come.

The debug stage runs trajectories in threads; each one asks the teacher for one reply at a
time. With an API teacher that is what we want (requests in flight at once). With an in-process
model it would mean one forward pass per conversation: the model is busy with a batch of one
while the other trajectories wait. `BatchingGenerator` queues every thread's request and feeds
them to the model's continuous-batching decoder (`HFGenerator.serve`): a request that arrives
while others are decoding joins them at the next step, in the row of a reply that finished, so
the decoder keeps up to ``max_batch`` rows busy. (Handing the model fixed batches instead, each
waiting for its longest reply, left most rows idle: a reply cut at 512 tokens held the next
batch back while the trajectories of the finished replies were ready with their next turn.)

Requests are grouped by their sampling settings (all but the seed); one group decodes at a
time. Each request samples with its own seed, so a sampled (temperature > 0) reply does not
depend on which requests decoded beside it (bit for bit in bfloat16 on CPU, where the decoder
is batch-invariant; elsewhere up to the rounding their company changes), and a rerun asks for
the same replies.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import asdict, replace

from iterpref.llm.base import Conversation, SamplingConfig


class BatchingGenerator:
    """Wrap ``generator`` (an `HFGenerator`: ``encode``, ``serve``, ``reply``) so concurrent
    `chat` calls decode together.

    Args:
        generator: the in-process generator.
        max_batch: most conversations decoding at once.
        gather_s: how long an idle model waits for a request before its run ends.

    Attributes:
        runs: for each decoding run, the most requests it decoded at once (for stats and tests).
    """

    def __init__(self, generator, max_batch: int = 16, gather_s: float = 0.05):
        self.generator, self.max_batch, self.gather_s = generator, max(1, max_batch), gather_s
        self.name = generator.name
        self._pending: list[tuple[Conversation, SamplingConfig, Future]] = []
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self.runs: list[int] = []

    def chat(self, conversations: list[Conversation], sampling: SamplingConfig,
             progress: str | None = None) -> list[str]:
        """Replies for ``conversations``, decoded together with other threads' requests."""
        futures = [Future() for _ in conversations]
        with self._cond:
            self._pending += [(c, sampling, f) for c, f in zip(conversations, futures)]
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._serve, name="batching-generator", daemon=True)
                self._worker.start()
            self._cond.notify()
        return [f.result() for f in futures]

    def _serve(self) -> None:
        """Decoding runs, one per sampling group, until no request is left."""
        while True:
            with self._cond:
                if not self._pending:
                    self._cond.wait(timeout=1.0)
                    if not self._pending:
                        self._worker = None
                        return
                first = self._pending[0][1]
            self._run(_group(first), replace(first, batch_size=self.max_batch))

    def _run(self, group: tuple, sampling: SamplingConfig) -> None:
        """One decoding run: it takes the group's requests as they come and ends when the model
        is idle and none arrives within ``gather_s``."""
        decoding: set[Future] = set()
        self.runs.append(0)

        def take(idle: bool):
            with self._cond:
                if idle and not any(_group(s) == group for _, s, _ in self._pending):
                    self._cond.wait(timeout=self.gather_s)
                k = next((k for k, (_, s, _) in enumerate(self._pending) if _group(s) == group), None)
                if k is None:
                    return None
                conversation, s, future = self._pending.pop(k)
                decoding.add(future)
                self.runs[-1] = max(self.runs[-1], len(decoding))
            return future, self.generator.encode(conversation), s.seed  # tokenised outside the lock

        try:
            for future, ids in self.generator.serve(take, sampling):
                decoding.discard(future)
                future.set_result(self.generator.reply(ids, sampling))
        except BaseException as err:  # every request in the run gets the failure
            for future in decoding:
                future.set_exception(err)


def _group(sampling: SamplingConfig) -> tuple:
    d = asdict(sampling)
    d.pop("seed")
    d.pop("batch_size")
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(d.items()))
