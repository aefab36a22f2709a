"""Which completion tokens lie before, on and after the fix: the probe's six token groups.

The line diff (`iterpref.pairs.diff`, the spans stored in pairs.jsonl) matches the lines before the
first changed line one to one, so that shared prefix is the same text in both completions and ends
at the same character offset in both: the smallest start of any D- or D+ span. Per side:

- ``<side>_prefix``: tokens that start before that offset. Their context is the shared text on
  both sides, so plain DPO's log-ratios cancel there. A token that starts in the prefix and runs
  into the first changed line (BPE merges a newline with the next line's indentation) counts
  here, although training's line mask puts it in D- or D+: its context is still the shared one;
- ``rejected_error`` (D-) / ``chosen_fix`` (D+): the other tokens that touch a rejected-only /
  chosen-only line (the mask rule of `iterpref.training.masks`: a token is in when its characters
  overlap a span);
- ``<side>_suffix``: every other token, from the first changed line to the end of the turn
  (unchanged lines between and after the changes, and the end-of-turn tokens).
"""

from __future__ import annotations

from iterpref.training.masks import completion_token_ranges, overlap_mask

# Per side: (shared prefix, changed lines, shared suffix), in completion order.
SIDES = {"chosen": ("chosen_prefix", "chosen_fix", "chosen_suffix"),
         "rejected": ("rejected_prefix", "rejected_error", "rejected_suffix")}
GROUPS = (*SIDES["chosen"], *SIDES["rejected"])


def first_change(chosen_spans, rejected_spans) -> float:
    """The character offset where the shared prefix of both completions ends (the start of the
    first changed line on either side); infinite when nothing changed."""
    return min((s[0] for s in (*chosen_spans, *rejected_spans)), default=float("inf"))


def side_groups(ranges, spans, boundary: float) -> tuple[list[int], list[int], list[int]]:
    """0/1 masks (prefix, changed, suffix) over tokens with character ``ranges``: prefix = the
    token starts before ``boundary``; changed = any other token that overlaps a span; suffix = the
    rest."""
    prefix = [int(start < boundary) for start, _ in ranges]
    changed = [int(c and not p) for c, p in zip(overlap_mask(ranges, [tuple(s) for s in spans]), prefix)]
    suffix = [int(not c and not p) for c, p in zip(changed, prefix)]
    return prefix, changed, suffix


def token_ranges(row: dict, tokenizer, side: str):
    """Character ranges of a prepared row's ``<side>_ids`` relative to that completion's text."""
    return completion_token_ranges(tokenizer, row["prompt"] + row[side], row[f"{side}_ids"])


def position_masks(row: dict, tokenizer) -> dict[str, list[int]]:
    """Each group's 0/1 mask over a prepared dataset row's completion tokens (``chosen_ids`` for
    the chosen groups, ``rejected_ids`` for the rejected ones), from the row's LCS spans."""
    boundary = first_change(row["chosen_spans"], row["rejected_spans"])
    out = {}
    for side, names in SIDES.items():
        masks = side_groups(token_ranges(row, tokenizer, side), row[f"{side}_spans"], boundary)
        out.update(zip(names, masks))
    return out
