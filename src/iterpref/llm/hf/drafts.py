"""Prompt lookup decoding: each row's draft tokens, and which of them a step's logits accept."""

from __future__ import annotations

import torch

from iterpref.llm.base import SamplingConfig
from iterpref.llm.hf.sampling import next_tokens, probabilities

# Prompt lookup: at most this many draft tokens a step, drafted from the row's own prompt and
# reply by an n-gram of this length. A step that checks drafts costs more than a plain one (every
# row computes the step's full width), so with all rows busy it need not pay (bench_generation
# measures it).
MAX_DRAFT = 16
LOOKUP_NGRAM = 3


class Lookup:
    """Prompt lookup decoding's drafts for one row: the tokens that followed the latest earlier
    occurrence of the row's last `LOOKUP_NGRAM` tokens in its prompt and reply so far (code
    replies copy much of their prompt: the signature, the docstring, the code under repair)."""

    def __init__(self, ids: list[int]):
        self.ids: list[int] = []
        self.seen: dict[tuple[int, ...], int] = {}  # n-gram -> end of its latest occurrence before the last
        self.extend(ids)

    def extend(self, tokens: list[int]) -> None:
        for token in tokens:
            if len(self.ids) >= LOOKUP_NGRAM:
                self.seen[tuple(self.ids[-LOOKUP_NGRAM:])] = len(self.ids)
            self.ids.append(token)

    def draft(self, k: int) -> list[int]:
        end = self.seen.get(tuple(self.ids[-LOOKUP_NGRAM:]))
        return [] if end is None or k <= 0 else self.ids[end:end + k]


def accept(logits, drafts: list[list[int]], sampling: SamplingConfig, generators: list) -> list[list[int]]:
    """Each row's new tokens from a step's logits ([rows, width, vocab]): the drafts the model
    agrees with, then its own next token. Greedy: drafts equal to the argmax. Sampling: the
    speculative-sampling rule for a draft that is one token for sure (accept it with its
    probability, else sample from the rest), so the replies follow the model's distribution;
    each row draws with its own generator."""
    if not any(drafts):
        return [[t] for t in next_tokens(logits[:, 0], sampling, generators)]
    if sampling.temperature <= 0:
        best = logits.argmax(-1).tolist()
        out = []
        for draft, pred in zip(drafts, best):
            m = 0
            while m < len(draft) and draft[m] == pred[m]:
                m += 1
            out.append(draft[:m] + [pred[m]])
        return out
    out = []
    for draft, row, generator in zip(drafts, logits, generators):
        probs = probabilities(row[:len(draft) + 1], sampling)
        tokens = []
        for j, t in enumerate(draft):
            if torch.rand((), generator=generator, device=probs.device) < probs[j, t]:
                tokens.append(t)
                continue
            rest = probs[j].clone()
            rest[t] = 0
            if rest.sum() <= 0:  # t was all the mass (rounding made the draw miss it)
                tokens.append(t)
                continue
            tokens.append(int(torch.multinomial(rest, 1, generator=generator)))
            break
        else:
            tokens.append(int(torch.multinomial(probs[len(draft)], 1, generator=generator)))
        out.append(tokens)
    return out
