"""Batch the conversations of many threads into one call of an in-process generator.

The debug stage runs trajectories in threads; each one asks the teacher for one reply at a
time. With an API teacher that is what we want (requests in flight at once). With an in-process
model it would mean one forward pass per conversation: the model is busy with a batch of one
while the other trajectories wait. `BatchingGenerator` queues every thread's request and runs
them together: while the model decodes one batch, the next one gathers, so a round of the
teachers' conversations costs about one batched decode instead of one decode per problem.

Requests are grouped by their sampling settings (all but the seed): rows of one batch share
one random generator, seeded by the smallest seed among them, so sampled (temperature > 0)
teacher replies depend on which requests met in a batch; greedy replies do not.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import asdict, replace

from iterpref.llm.base import Conversation, Generator, SamplingConfig


class BatchingGenerator:
    """Wrap ``generator`` so concurrent `chat` calls share batched calls.

    Args:
        generator: the in-process generator (e.g. `HFGenerator`).
        max_batch: most conversations per batched call.
        gather_s: how long a first request waits for company when the model is idle.
    """

    def __init__(self, generator: Generator, max_batch: int = 16, gather_s: float = 0.05):
        self.generator, self.max_batch, self.gather_s = generator, max(1, max_batch), gather_s
        self.name = generator.name
        self._pending: list[tuple[Conversation, SamplingConfig, Future]] = []
        self._cond = threading.Condition()
        self._worker: threading.Thread | None = None
        self.batches: list[int] = []  # sizes of the batched calls made (for stats and tests)

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

    def _take(self) -> list[tuple[Conversation, SamplingConfig, Future]]:
        """The next batch: same sampling settings (seed aside), at most ``max_batch``."""
        with self._cond:
            if not self._pending:
                self._cond.wait(timeout=1.0)
                if not self._pending:
                    return []
            if len(self._pending) < self.max_batch:
                self._cond.wait(timeout=self.gather_s)
            key = _group(self._pending[0][1])
            batch = [p for p in self._pending if _group(p[1]) == key][: self.max_batch]
            taken = {id(p) for p in batch}
            self._pending = [p for p in self._pending if id(p) not in taken]
            return batch

    def _serve(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                with self._cond:
                    if not self._pending:
                        self._worker = None
                        return
                continue
            sampling = replace(batch[0][1], seed=min(s.seed for _, s, _ in batch), batch_size=len(batch))
            self.batches.append(len(batch))
            try:
                replies = self.generator.chat([c for c, _, _ in batch], sampling)
            except BaseException as err:  # every waiting thread gets the failure
                for _, _, fut in batch:
                    fut.set_exception(err)
                continue
            for (_, _, fut), reply in zip(batch, replies):
                fut.set_result(reply)


def _group(sampling: SamplingConfig) -> tuple:
    d = asdict(sampling)
    d.pop("seed")
    d.pop("batch_size")
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(d.items()))
