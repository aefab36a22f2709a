"""From character spans to token masks, on the exact token ids the trainer uses.

The pair stage stores *where the error is* as character spans into the completion strings.
Here, once per example at dataset preparation, those spans become 0/1 masks over TRL's own
``chosen_ids`` / ``rejected_ids``. BPE merges across line breaks (``"):\\n"`` + ``"    return"``)
and across the prompt/completion boundary, so the mask must be computed on TRL's token ids
and their character offsets in the rendered conversation, never on a separate tokenisation of
the code alone.

Rule: a completion token is in the mask when its characters overlap a span. A token that
straddles two lines (a newline merged with the next line's indentation) is in the mask when
either line is an error line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal, get_args

from iterpref.config.fields import spec
from iterpref.pairs import diff
from iterpref.records import Span

MaskMode = Literal["none", "line", "symmetric", "token"]
DiffKind = Literal["lcs", "prefix_suffix"]


@dataclass
class MaskConfig:
    """Which completion tokens enter the DPO log-prob sums.

    Attributes:
        mode: ``none`` = plain DPO (every completion token); ``line`` = Target-DPO (chosen:
            every token; rejected: only tokens of rejected-only lines D-); ``symmetric`` = the
            ablation that also narrows the chosen side to its chosen-only lines D+; ``token`` =
            the token-level ablation: rejected tokens the fix changed inside the D- lines only
            (`iterpref.pairs.diff.token_spans`), chosen: every token.
        diff: how the error lines are found: ``lcs`` (the spans stored in pairs.jsonl, paper
            Algorithm 1) or ``prefix_suffix`` (ablation: everything between the common prefix
            and suffix lines).
        context_lines: Diff-Aug ablation: widen every span by this many lines on each side.
        hybrid_fraction: Hybrid ablation: this fraction of pairs (chosen by a hash of the
            pair id, so stable across runs) uses plain DPO masks instead.
    """

    mode: MaskMode = "line"
    diff: DiffKind = "lcs"
    context_lines: int = spec(0, ge=0)
    hybrid_fraction: float = spec(0.0, ge=0, le=1)

    def __post_init__(self):
        for key, kind in (("mode", MaskMode), ("diff", DiffKind)):
            if getattr(self, key) not in get_args(kind):
                raise ValueError(f"mask.{key}: unknown {getattr(self, key)!r}; expected one of {list(get_args(kind))}")
        if self.mode == "token" and self.context_lines:
            raise ValueError("mask.context_lines widens spans to whole lines; it cannot combine with mode token")

    @property
    def focal(self) -> bool:
        """Whether any mask narrows a completion."""
        return self.mode != "none"


def overlap_mask(token_ranges: list[Span], spans: list[Span]) -> list[int]:
    """1 for every token whose ``[start, end)`` character range overlaps a span, else 0."""
    spans = sorted(spans)
    out = []
    j = 0
    for start, end in token_ranges:
        while j < len(spans) and spans[j][1] <= start:
            j += 1
        hit = j < len(spans) and spans[j][0] < end and end > start
        out.append(int(hit))
    return out


def _in_hybrid_share(pair_id: str, fraction: float) -> bool:
    h = int(hashlib.sha256(pair_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return h < fraction


def focal_spans(example: dict, cfg: MaskConfig) -> tuple[list[Span] | None, list[Span] | None]:
    """The (chosen, rejected) spans to keep for one pair; None means keep every token."""
    if not cfg.focal or _in_hybrid_share(example["pair_id"], cfg.hybrid_fraction):
        return None, None
    # the completions' text (a conversational row holds the assistant message), which the spans index
    chosen, rejected = (side[-1]["content"] if isinstance(side, list) else side
                        for side in (example["chosen"], example["rejected"]))
    if cfg.mode == "token":
        return None, diff.token_spans(rejected, chosen, method=cfg.diff)
    if cfg.diff == "lcs":
        rej_spans = [tuple(s) for s in example["rejected_spans"]]
        cho_spans = [tuple(s) for s in example["chosen_spans"]]
    else:
        rej_spans, cho_spans = diff.changed_spans(rejected, chosen, method=cfg.diff)
    if cfg.context_lines:
        rej_spans = diff.widen_spans(rejected, rej_spans, cfg.context_lines)
        cho_spans = diff.widen_spans(chosen, cho_spans, cfg.context_lines)
    return (cho_spans if cfg.mode == "symmetric" else None), rej_spans


def completion_token_ranges(tokenizer, messages: list[dict], completion_ids: list[int]) -> list[Span]:
    """Character ranges of ``completion_ids`` (TRL's tokens of the last message), relative to
    the start of that message's content.

    Ranges are made contiguous (each token runs to the next token's start), so whitespace that
    a tokenizer's offsets leave out still belongs to some token.
    """
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    n = len(completion_ids)
    if ids[len(ids) - n:] != list(completion_ids):
        raise ValueError(
            "re-tokenising the rendered conversation did not reproduce TRL's completion ids; "
            "the tokenizer's chat template and text tokenisation disagree"
        )
    content = messages[-1]["content"]
    content_start = text.rfind(content)
    if content_start < 0:
        raise ValueError("the chat template changed the completion text; cannot locate its spans")
    first = len(ids) - n
    starts = [offsets[first + i][0] for i in range(n)] + [len(text)]
    ranges = [(starts[i] - content_start, max(starts[i + 1], offsets[first + i][1]) - content_start) for i in range(n)]
    return ranges


def token_masks(example: dict, tokenizer, cfg: MaskConfig) -> dict[str, list[int]]:
    """``chosen_token_mask`` and ``rejected_token_mask`` for one TRL-tokenised example."""
    chosen_spans, rejected_spans = focal_spans(example, cfg)
    out = {}
    for side, spans in (("chosen", chosen_spans), ("rejected", rejected_spans)):
        ids = example[f"{side}_ids"]
        if spans is None:
            out[f"{side}_token_mask"] = [1] * len(ids)
            continue
        ranges = completion_token_ranges(tokenizer, example["prompt"] + example[side], ids)
        out[f"{side}_token_mask"] = overlap_mask(ranges, spans)
    return out
