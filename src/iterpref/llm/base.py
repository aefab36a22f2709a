"""One generation interface for the teacher, the evaluator and the synthesiser.

A backend turns chat conversations into assistant replies. Backends live one per file
(evalplus style): `hf` (transformers in-process), `openai_api` (any OpenAI-compatible server:
GPT-4o, DeepSeek, vLLM, SGLang, llama.cpp). `make_generator` picks one from a config.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

from iterpref.config.fields import spec

Message = dict[str, str]
Conversation = list[Message]


@dataclass
class SamplingConfig:
    """How to decode.

    Attributes:
        max_new_tokens: cap on generated tokens per reply.
        temperature: 0 means greedy decoding (the paper's evaluation setting).
        top_p: nucleus sampling mass when temperature > 0.
        stop: strings that end a reply early (the stop string itself is kept out of the reply).
        stop_after_code: end a reply once it holds a closed python code block; small models
            otherwise keep writing explanations and usage examples after the code.
        batch_size: conversations decoded together (hf) or requests in flight (openai_api).
        seed: sampling seed when temperature > 0.
    """

    max_new_tokens: int = spec(320, ge=1)
    temperature: float = spec(0.0, ge=0)
    top_p: float = spec(1.0, gt=0, le=1)
    stop: list[str] = field(default_factory=list)
    stop_after_code: bool = True
    batch_size: int = spec(32, ge=1)
    seed: int = 0


class Generator(Protocol):
    """Anything that answers chat conversations."""

    name: str

    def chat(self, conversations: list[Conversation], sampling: SamplingConfig,
             progress: str | None = None) -> list[str]:
        """One assistant reply per conversation, in order; ``progress`` labels a progress bar."""
        ...


CLOSED_CODE_BLOCK = re.compile(r"```[^\n`]*\n[\s\S]*?\n```")


def stop_position(text: str, stop: list[str], stop_after_code: bool = False) -> int | None:
    """Where a reply ends: the first stop string, or the end of its first closed code block;
    None while neither has appeared."""
    cuts = [i for i in (text.find(s) for s in stop) if i != -1]
    if stop_after_code and (m := CLOSED_CODE_BLOCK.search(text)):
        cuts.append(m.end())
    return min(cuts, default=None)


def truncate_at_stop(text: str, stop: list[str], stop_after_code: bool = False) -> str:
    """Cut ``text`` at the first stop string, or after its first closed code block."""
    cut = stop_position(text, stop, stop_after_code)
    return text if cut is None else text[:cut]
