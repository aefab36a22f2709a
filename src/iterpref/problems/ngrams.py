"""Token n-grams and an inverted index that finds the most similar indexed text.

Shared by de-duplication (problems against each other) and decontamination (problems against
benchmark tasks). Text is lower-cased and split into words and single punctuation marks, so
code and prose tokenize alike and whitespace or formatting changes do not hide a copy.
"""

from __future__ import annotations

import re
from collections import Counter

TOKEN = re.compile(r"\w+|[^\w\s]")


def tokens(text: str) -> list[str]:
    """Lower-cased words and punctuation marks of ``text``."""
    return TOKEN.findall(text.lower())


def ngrams(text: str, n: int) -> frozenset[tuple[str, ...]]:
    """The set of ``n``-token windows of ``text`` (one window, the whole text, when shorter)."""
    toks = tokens(text)
    if not toks:
        return frozenset()
    if len(toks) < n:
        return frozenset([tuple(toks)])
    return frozenset(tuple(toks[i:i + n]) for i in range(len(toks) - n + 1))


def overlap(a: frozenset, b: frozenset, measure: str) -> float:
    """``jaccard`` |a∩b|/|a∪b|, or ``min`` |a∩b|/min(|a|,|b|) (how much of the smaller text the
    other contains); 0 when either is empty."""
    if not a or not b:
        return 0.0
    shared = len(a & b)
    return shared / (len(a) + len(b) - shared) if measure == "jaccard" else shared / min(len(a), len(b))


class NgramIndex:
    """Indexed n-gram sets, queried for the entry most similar to a new set.

    Candidates come from the posting lists of the query's n-grams; n-grams shared by more than
    ``max_postings`` entries (boilerplate such as ``# main function``) are skipped when looking
    for candidates, so a query costs about its own size, and the ``top`` candidates sharing the
    most n-grams are then scored exactly. A near-copy shares its rare n-grams too, so it is found.

    Args:
        measure: ``jaccard`` or ``min`` (see `overlap`).
        max_postings: posting lists longer than this are not used to find candidates.
        top: candidates scored exactly per query.
    """

    def __init__(self, measure: str = "jaccard", max_postings: int = 64, top: int = 8):
        if measure not in ("jaccard", "min"):
            raise ValueError(f"unknown overlap measure {measure!r}; expected 'jaccard' or 'min'")
        self.measure, self.max_postings, self.top = measure, max_postings, top
        self.keys: list[str] = []
        self.sets: list[frozenset] = []
        self.postings: dict[tuple[str, ...], list[int]] = {}

    def add(self, key: str, grams: frozenset) -> None:
        """Index ``grams`` under ``key``."""
        idx = len(self.keys)
        self.keys.append(key)
        self.sets.append(grams)
        for g in grams:
            self.postings.setdefault(g, []).append(idx)

    def nearest(self, grams: frozenset) -> tuple[str | None, float]:
        """The indexed key most similar to ``grams`` and its score; ``(None, 0.0)`` when none
        shares an n-gram."""
        counts: Counter[int] = Counter()
        for g in grams:
            post = self.postings.get(g)
            if post and len(post) <= self.max_postings:
                counts.update(post)
        best, score = None, 0.0
        for idx, _ in counts.most_common(self.top):
            s = overlap(grams, self.sets[idx], self.measure)
            if s > score:
                best, score = self.keys[idx], s
        return best, score
