"""Exact and near-duplicate problems: the first of each group is kept, in the source's order."""

from __future__ import annotations

from dataclasses import dataclass

from iterpref.problems.base import Candidate, Dropped
from iterpref.problems.ngrams import NgramIndex, ngrams, tokens


@dataclass
class DedupConfig:
    """How duplicates are found.

    Parameters:
        ngram (`int`):
            Token n-gram size of the near-duplicate comparison.
        threshold (`float`):
            Jaccard similarity of the n-gram sets of instruction plus reference at or above
            which a problem is a near-duplicate of an earlier one. An exact duplicate (the same
            instruction, or the same reference, up to case and whitespace) is always dropped.
    """

    ngram: int = 5
    threshold: float = 0.8

    def __post_init__(self) -> None:
        if self.ngram < 1 or not 0 < self.threshold <= 1:
            raise ValueError(f"problems.dedup: ngram must be >= 1 and threshold in (0, 1], got {self}")


def deduplicate(candidates: list[Candidate], cfg: DedupConfig) -> tuple[list[Candidate], list[Dropped]]:
    """The candidates with duplicates removed, and the drops (``duplicate``, ``near_duplicate``),
    each naming the kept problem it repeats and the similarity."""
    exact: dict[str, str] = {}
    index = NgramIndex("jaccard")
    kept, dropped = [], []
    for c in candidates:
        p = c.problem
        keys = [f"i:{' '.join(tokens(p.instruction))}", f"r:{' '.join(tokens(p.reference))}"]
        first = next((exact[k] for k in keys if k in exact), None)
        if first is not None:
            dropped.append(Dropped(p.task_id, "duplicate", f"same instruction or reference as {first}"))
            continue
        grams = ngrams(p.instruction + "\n" + p.reference, cfg.ngram)
        near, score = index.nearest(grams)
        if score >= cfg.threshold:
            dropped.append(Dropped(p.task_id, "near_duplicate", f"{score:.2f} n-gram Jaccard with {near}"))
            continue
        for k in keys:
            exact[k] = p.task_id
        index.add(p.task_id, grams)
        kept.append(c)
    return kept, dropped
