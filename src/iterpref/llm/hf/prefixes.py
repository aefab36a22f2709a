"""The keys and values of recent prompts, kept to start a new prompt's prefill from the longest
prefix it shares with one of them."""

from __future__ import annotations

from collections import OrderedDict

from transformers import DynamicCache

# Keys and values of recent prompts kept for reuse, in tokens: 8192 are 100 MB for the 0.5B in
# bfloat16 (12 KB a token), 235 MB for the 1.5B, 377 MB for SmolLM2-135M in float32.
PREFIX_TOKENS = 8192


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class Prefixes:
    """The prefill caches of the latest prompts (at most `PREFIX_TOKENS` tokens together), to
    start a new prompt's prefill from the longest prefix it shares with one of them."""

    def __init__(self):
        self.caches: OrderedDict[tuple[int, ...], DynamicCache] = OrderedDict()
        self.tokens = 0

    def load(self, prompt: list[int], cache: DynamicCache) -> int:
        """Fill the empty ``cache`` with the keys and values of ``prompt``'s longest stored
        prefix, short of its last token (whose logits the prefill must compute); its length."""
        best, n = None, 0
        for ids in self.caches:
            m = common_prefix(ids, prompt)
            if m > n:
                best, n = ids, m
        n = min(n, len(prompt) - 1)
        if n <= 0:
            return 0
        self.caches.move_to_end(best)
        for i, layer in enumerate(self.caches[best].layers):
            cache.update(layer.keys[:, :, :n], layer.values[:, :, :n], i)
        return n

    def save(self, prompt: list[int], cache: DynamicCache) -> None:
        """Keep a prompt's prefill cache (it is only read from now on); drop the oldest beyond
        the budget."""
        key = tuple(prompt)
        if key in self.caches or len(key) > PREFIX_TOKENS:
            return
        self.caches[key] = cache
        self.tokens += len(key)
        while self.tokens > PREFIX_TOKENS:
            self.tokens -= len(self.caches.popitem(last=False)[0])
