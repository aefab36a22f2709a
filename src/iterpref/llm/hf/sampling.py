"""The next token from a step's logits: greedy argmax, or a temperature / top-p sample."""

from __future__ import annotations

import torch

from iterpref.llm.base import SamplingConfig


def probabilities(logits, sampling: SamplingConfig):
    """The temperature / top-p distribution over the vocabulary (last dimension)."""
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs > sampling.top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        probs /= probs.sum(dim=-1, keepdim=True)
    return probs


def next_tokens(logits, sampling: SamplingConfig, generators: list) -> list[int]:
    """Each row's greedy argmax, or its temperature / top-p sample drawn with its own generator."""
    if sampling.temperature <= 0:
        return logits.argmax(dim=-1).tolist()
    probs = probabilities(logits, sampling)
    return [int(torch.multinomial(p, 1, generator=g)) for p, g in zip(probs, generators)]
