"""Locating the error lines of a rejected version (paper Algorithm 1) as character spans.

IterPref penalises only the rejected tokens that the fix changed. To find them, both versions
are split into lines and matched by a longest common subsequence (LCS) of lines: the rejected
lines outside the match form D- (what the fix removed or rewrote), the chosen lines outside it
form D+ (what the fix added). Each changed line becomes a half-open character span
``[start, end)`` covering the whole line, its newline included; runs of adjacent changed lines
merge into one span. A fix that only inserts lines leaves D- empty (K-' = 0 in the loss).

Lines are compared by their content without the line terminator, so ``"x\\n"`` and a final
``"x"`` without newline match. ``prefix_suffix_matches`` is the paper's weaker ablation (only
the common head and tail match), ``widen_spans`` the Diff-Aug ablation (context lines) and
``token_spans`` the token-level ablation (only the changed tokens inside the changed lines).
"""

from __future__ import annotations

import bisect
import difflib
import re
from collections.abc import Callable, Iterable, Sequence

from iterpref.records import Span

__all__ = [
    "METHODS",
    "split_lines",
    "line_starts",
    "lcs_matches",
    "prefix_suffix_matches",
    "changed_lines",
    "lines_to_spans",
    "changed_spans",
    "merge_spans",
    "widen_spans",
    "token_spans",
    "shift_spans",
    "span_line_indices",
    "span_lines",
]


def split_lines(text: str) -> list[str]:
    """The lines of ``text`` with their line endings kept (``"".join`` gives ``text`` back)."""
    return text.splitlines(keepends=True)


def line_starts(lines: Sequence[str]) -> list[int]:
    """Character offset of each line's start, plus the total length as a final sentinel."""
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    return starts


def _key(line: str) -> str:
    """A line's content without its terminator (the comparison key of the diff)."""
    parts = line.splitlines()
    return parts[0] if parts else ""


def _common_prefix_suffix(ka: Sequence[str], kb: Sequence[str]) -> tuple[int, int]:
    """Length of the common prefix and of the common suffix (non-overlapping) of two lists."""
    n, m = len(ka), len(kb)
    p = 0
    while p < n and p < m and ka[p] == kb[p]:
        p += 1
    s = 0
    while s < n - p and s < m - p and ka[n - 1 - s] == kb[m - 1 - s]:
        s += 1
    return p, s


def lcs_matches(a: Sequence[str], b: Sequence[str]) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)`` with ``a[i] == b[j]`` forming a longest common subsequence.

    Lines are compared without their terminators. The common prefix and suffix are matched
    directly (this never loses optimality); the middle is solved by an O(n*m) dynamic program.
    Ties are broken deterministically: an equal pair of lines is matched as early as possible,
    otherwise the ``a`` (rejected) line is skipped before the ``b`` (chosen) line.

    Returns:
        Pairs sorted by both ``i`` and ``j`` (strictly increasing).
    """
    ka = [_key(x) for x in a]
    kb = [_key(x) for x in b]
    n, m = len(ka), len(kb)
    p, s = _common_prefix_suffix(ka, kb)
    matches = [(i, i) for i in range(p)]

    # Intern the middle lines as ints so the inner loop compares small ints.
    ids: dict[str, int] = {}
    ma = [ids.setdefault(x, len(ids)) for x in ka[p : n - s]]
    mb = [ids.setdefault(x, len(ids)) for x in kb[p : m - s]]
    r, c = len(ma), len(mb)
    if r and c:
        # L[i][j] = LCS length of ma[i:] and mb[j:].
        L = [[0] * (c + 1) for _ in range(r + 1)]
        for i in range(r - 1, -1, -1):
            row, below = L[i], L[i + 1]
            x = ma[i]
            for j in range(c - 1, -1, -1):
                if x == mb[j]:
                    row[j] = below[j + 1] + 1
                else:
                    row[j] = below[j] if below[j] >= row[j + 1] else row[j + 1]
        i = j = 0
        while i < r and j < c:
            if ma[i] == mb[j]:
                matches.append((p + i, p + j))
                i += 1
                j += 1
            elif L[i + 1][j] >= L[i][j + 1]:
                i += 1
            else:
                j += 1

    matches.extend((n - s + k, m - s + k) for k in range(s))
    return matches


def prefix_suffix_matches(a: Sequence[str], b: Sequence[str]) -> list[tuple[int, int]]:
    """The prefix/suffix ablation: only the common leading and trailing lines match.

    Everything between the common prefix and the common suffix counts as changed on both sides.
    """
    ka = [_key(x) for x in a]
    kb = [_key(x) for x in b]
    n, m = len(ka), len(kb)
    p, s = _common_prefix_suffix(ka, kb)
    return [(i, i) for i in range(p)] + [(n - s + k, m - s + k) for k in range(s)]


METHODS: dict[str, Callable[[Sequence[str], Sequence[str]], list[tuple[int, int]]]] = {
    "lcs": lcs_matches,
    "prefix_suffix": prefix_suffix_matches,
}


def _matcher(method: str) -> Callable[[Sequence[str], Sequence[str]], list[tuple[int, int]]]:
    try:
        return METHODS[method]
    except KeyError:
        raise ValueError(f"unknown diff method {method!r}; expected one of {sorted(METHODS)}") from None


def changed_lines(rejected: str, chosen: str, method: str = "lcs") -> tuple[list[int], list[int]]:
    """Indices of the rejected-only lines (D-) and of the chosen-only lines (D+).

    Args:
        rejected: the failing version's text.
        chosen: the passing version's text.
        method: ``lcs`` (Algorithm 1) or ``prefix_suffix`` (ablation).
    """
    a, b = split_lines(rejected), split_lines(chosen)
    matches = _matcher(method)(a, b)
    in_a = {i for i, _ in matches}
    in_b = {j for _, j in matches}
    return [i for i in range(len(a)) if i not in in_a], [j for j in range(len(b)) if j not in in_b]


def lines_to_spans(lines: Sequence[str], indices: Iterable[int]) -> list[Span]:
    """Spans of the given whole lines (newlines included); runs of adjacent lines merge."""
    starts = line_starts(lines)
    spans: list[Span] = []
    last = None
    for i in sorted(set(indices)):
        if not 0 <= i < len(lines):
            raise IndexError(f"line index {i} out of range for {len(lines)} lines")
        if last is not None and i == last + 1:
            spans[-1] = (spans[-1][0], starts[i + 1])
        else:
            spans.append((starts[i], starts[i + 1]))
        last = i
    return spans


def changed_spans(rejected: str, chosen: str, method: str = "lcs") -> tuple[list[Span], list[Span]]:
    """Character spans of D- (into ``rejected``) and D+ (into ``chosen``).

    Each changed line's span covers the whole line including its newline (a last line without
    newline ends at the end of the text); adjacent changed lines merge into one span. If the fix
    only inserts lines, the D- list is empty.

    Returns:
        ``(rejected_spans, chosen_spans)``, each sorted and non-overlapping.
    """
    d_minus, d_plus = changed_lines(rejected, chosen, method)
    return (
        lines_to_spans(split_lines(rejected), d_minus),
        lines_to_spans(split_lines(chosen), d_plus),
    )


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Sort spans and merge the overlapping or touching ones; empty spans are dropped."""
    out: list[Span] = []
    for s, e in sorted((int(s), int(e)) for s, e in spans):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def span_line_indices(text: str, spans: Iterable[Span]) -> list[int]:
    """Indices of the lines of ``text`` that the spans touch (sorted, unique)."""
    lines = split_lines(text)
    starts = line_starts(lines)
    found: set[int] = set()
    for s, e in spans:
        if e <= s:
            continue
        if s < 0 or e > len(text):
            raise ValueError(f"span {(s, e)} out of range for a text of {len(text)} characters")
        first = bisect.bisect_right(starts, s) - 1
        last = bisect.bisect_right(starts, e - 1) - 1
        found.update(range(first, last + 1))
    return sorted(found)


def widen_spans(text: str, spans: Iterable[Span], context_lines: int) -> list[Span]:
    """The Diff-Aug ablation: extend each span by ``context_lines`` whole lines on each side.

    Spans are first expanded to whole lines, then widened, clipped to the text and merged.
    ``context_lines=0`` only normalises to whole lines.
    """
    if context_lines < 0:
        raise ValueError(f"context_lines must be >= 0, got {context_lines}")
    lines = split_lines(text)
    indices: set[int] = set()
    for i in span_line_indices(text, spans):
        lo = max(0, i - context_lines)
        hi = min(len(lines) - 1, i + context_lines)
        indices.update(range(lo, hi + 1))
    return lines_to_spans(lines, indices)


def shift_spans(spans: Iterable[Span], offset: int) -> list[Span]:
    """Spans moved by ``offset`` characters (e.g. into a completion, by `prompts.code_offset`)."""
    return [(s + offset, e + offset) for s, e in spans]


def span_lines(text: str, spans: Iterable[Span]) -> list[str]:
    """The full text of every line the spans touch (line endings kept), in order."""
    lines = split_lines(text)
    return [lines[i] for i in span_line_indices(text, spans)]


# Lexical tokens for the token-level diff: a word (identifier, number, keyword), a run of
# whitespace, or one other character (operator, bracket, quote).
_LEXEME = re.compile(r"\w+|\s+|[^\w\s]")


def _changed_lexemes(old: str, new: str) -> list[Span]:
    """Spans into ``old`` of the lexical tokens the edit ``old -> new`` replaced or deleted; where
    it only inserts, the nearest non-whitespace token of ``old`` on each side of the insertion."""
    toks = [(m.start(), m.end()) for m in _LEXEME.finditer(old)]
    words = [old[s:e] for s, e in toks]
    matcher = difflib.SequenceMatcher(None, words, [m.group() for m in _LEXEME.finditer(new)], autojunk=False)
    spans: list[Span] = []
    for op, i1, i2, _, _ in matcher.get_opcodes():
        if op in ("replace", "delete"):
            spans.append((toks[i1][0], toks[i2 - 1][1]))
        elif op == "insert":
            before = next((k for k in range(i1 - 1, -1, -1) if not words[k].isspace()), None)
            after = next((k for k in range(i1, len(words)) if not words[k].isspace()), None)
            spans += [toks[k] for k in (before, after) if k is not None]
    return spans


def token_spans(rejected: str, chosen: str, method: str = "lcs") -> list[Span]:
    """The token-level ablation: inside D-, only the tokens the fix changed.

    The line diff (``method``) cuts both texts into changed blocks: the rejected lines between two
    matched lines and the chosen lines they became. A block with no chosen counterpart (deleted
    lines) is kept whole; a block that only gained lines gives nothing (as D-); otherwise the
    block's lexical tokens are diffed (`difflib` on words, whitespace runs and single symbols)
    and only the replaced or deleted ones are kept, or for a pure insertion the tokens on either
    side of it. Every span lies inside a D- line.

    Returns:
        Sorted, merged spans into ``rejected``.
    """
    a, b = split_lines(rejected), split_lines(chosen)
    sa, sb = line_starts(a), line_starts(b)
    spans: list[Span] = []
    prev_i = prev_j = -1
    for i, j in [*_matcher(method)(a, b), (len(a), len(b))]:
        lo, hi = prev_i + 1, i  # rejected lines [lo, hi) against chosen lines [prev_j + 1, j)
        if hi > lo:
            if j > prev_j + 1:
                old, new = rejected[sa[lo]:sa[hi]], chosen[sb[prev_j + 1]:sb[j]]
                spans += shift_spans(_changed_lexemes(old, new), sa[lo])
            else:
                spans.append((sa[lo], sa[hi]))
        prev_i, prev_j = i, j
    return merge_spans(spans)
