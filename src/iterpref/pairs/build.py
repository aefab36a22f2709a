"""From debugging trajectories to IterPref preference pairs (paper section 2.1, appendix A).

A solved trajectory v0 (fails) ... vk (passes) gives pairs whose chosen side is the final
passing version vk and whose rejected side is an earlier failing version (by default one picked
at random, seeded per trajectory). The two versions are diffed by lines (`iterpref.pairs.diff`) and
the rejected-only lines D- are stored as character spans into the rejected completion; the
trainer turns them into the token mask of K-'.

The paper's filters run in its order: D- only comments, D- longer than 20 lines, identical
ASTs. The 2048-token length filter needs the tokenizer and belongs to the trainer; the LLM judge
is not applied here. `build_pairs` also returns statistics for ``reports/pairs.json``.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import random
import statistics
import tokenize
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from iterpref import prompts
from iterpref.config.fields import spec
from iterpref.pairs.diff import changed_lines, lines_to_spans, shift_spans, split_lines
from iterpref.records import Attempt, Pair, Problem, Trajectory

__all__ = ["SELECTIONS", "DIFF_METHODS", "FILTERS", "PairConfig", "build_pairs", "make_pair", "split_by_problem"]

SELECTIONS = ("random", "first", "last", "all")
DIFF_METHODS = ("lcs", "prefix_suffix")
# Filter names in the order they run; stats["removed"] uses these keys.
FILTERS = ("comment_only", "too_many_rejected_lines", "identical_ast", "empty_rejected", "max_pairs_per_problem")


@dataclass
class PairConfig:
    """How trajectories become preference pairs.

    Attributes:
        selection: which earlier failing version becomes the rejected side: ``random`` (the
            paper's default, seeded and stable per trajectory), ``first`` (v0), ``last`` (the
            version just before the fix) or ``all`` (one pair per earlier failing version).
        seed: seed of the ``random`` selection and of the per-problem cap's choice.
        diff: line diff locating D-: ``lcs`` (Algorithm 1) or ``prefix_suffix`` (ablation).
        max_rejected_lines: paper filter: drop pairs whose D- has more lines than this
            (20 in the paper); None disables it.
        drop_comment_only: paper filter: drop pairs whose D- is non-empty but holds only
            comments and blank lines.
        drop_identical_ast: paper filter: drop pairs whose chosen and rejected code parse to the
            same AST (only formatting, comments or redundant parentheses differ).
        drop_empty_rejected: drop insert-only fixes (D- empty). The paper keeps them (K-' = 0),
            so this is off by default.
        max_pairs_per_problem: keep at most this many pairs per task after the filters (the
            paper keeps one per problem); the kept ones are a seeded choice, stable under input
            order. None keeps every pair (one per trajectory unless ``selection`` is ``all``).
        heldout_fraction: share of the problems with pairs whose pairs are held out of training
            (``data/pairs_heldout.jsonl``, read by the probe stage); a seeded choice (``seed``) of
            whole problems, so no held-out pair shares a problem with a training pair. At least
            one problem goes each way when there are two or more; 0 holds nothing out.
    """

    selection: str = "random"
    seed: int = 0
    diff: str = "lcs"
    max_rejected_lines: int | None = spec(20, ge=1)
    drop_comment_only: bool = True
    drop_identical_ast: bool = True
    drop_empty_rejected: bool = False
    max_pairs_per_problem: int | None = spec(None, ge=1)
    heldout_fraction: float = spec(0.2, ge=0, lt=1)

    def validate(self) -> None:
        """Raise ValueError for an unknown selection/diff or a negative limit."""
        if self.selection not in SELECTIONS:
            raise ValueError(f"PairConfig.selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.diff not in DIFF_METHODS:
            raise ValueError(f"PairConfig.diff must be one of {DIFF_METHODS}, got {self.diff!r}")
        if self.max_rejected_lines is not None and self.max_rejected_lines < 0:
            raise ValueError(f"PairConfig.max_rejected_lines must be >= 0, got {self.max_rejected_lines}")
        if self.max_pairs_per_problem is not None and self.max_pairs_per_problem < 1:
            raise ValueError(f"PairConfig.max_pairs_per_problem must be >= 1, got {self.max_pairs_per_problem}")
        if not 0 <= self.heldout_fraction < 1:
            raise ValueError(f"PairConfig.heldout_fraction must be in [0, 1), got {self.heldout_fraction}")


# --------------------------------------------------------------------------- selection

def _check_trajectory(traj: Trajectory) -> None:
    if traj.solved and (not traj.attempts or not traj.attempts[-1].outcome.passed):
        raise ValueError(f"trajectory {traj.trajectory_id!r} is marked solved but its last attempt did not pass")


def _failing_before_final(traj: Trajectory) -> list[Attempt]:
    """The failing versions before the final passing one of a solved trajectory."""
    return [a for a in traj.attempts[:-1] if not a.outcome.passed]


def select_rejected(traj: Trajectory, selection: str, seed: int) -> list[Attempt]:
    """The rejected attempt(s) of a solved trajectory under a selection rule ([] if none)."""
    if not traj.solved:
        return []
    _check_trajectory(traj)
    failing = _failing_before_final(traj)
    if not failing:
        return []
    if selection == "first":
        return [failing[0]]
    if selection == "last":
        return [failing[-1]]
    if selection == "all":
        return list(failing)
    if selection == "random":
        return [random.Random(f"{seed}:{traj.trajectory_id}").choice(failing)]
    raise ValueError(f"unknown selection {selection!r}; expected one of {SELECTIONS}")


# --------------------------------------------------------------------------- filters

_NON_CODE_TOKENS = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENDMARKER,
    tokenize.ENCODING,
}


def _code_line_indices(code: str) -> set[int] | None:
    """0-based indices of the lines holding a code token (strings included); None if untokenizable."""
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, SyntaxError):
        return None
    rows: set[int] = set()
    for tok in toks:
        if tok.type not in _NON_CODE_TOKENS:
            rows.update(range(tok.start[0] - 1, tok.end[0]))
    return rows


def is_comment_only(code: str, line_indices: Iterable[int]) -> bool:
    """Whether the given lines of ``code`` are all comments or blank (False for no lines).

    Uses the tokenizer (so ``#`` inside a multi-line string is code); code that does not
    tokenize falls back to a per-line check (blank, or starting with ``#``).
    """
    idx = sorted(set(line_indices))
    if not idx:
        return False
    lines = split_lines(code)
    # The tokenizer's rows match our lines only if the text uses no exotic line separators.
    code_rows = _code_line_indices(code) if io.StringIO(code).readlines() == lines else None
    if code_rows is not None:
        return not any(i in code_rows for i in idx)
    return all(not lines[i].strip() or lines[i].lstrip().startswith("#") for i in idx)


def same_ast(a: str, b: str) -> bool:
    """Whether two sources parse to identical ASTs (positions ignored); False if either fails."""
    try:
        return ast.dump(ast.parse(a)) == ast.dump(ast.parse(b))
    except (SyntaxError, ValueError):
        return False


# --------------------------------------------------------------------------- pairs

@dataclass
class _Candidate:
    pair: Pair
    rejected_lines: int  # |D-| in lines
    comment_only: bool
    identical_ast: bool


def make_pair(problem: Problem, traj: Trajectory, rejected: Attempt, config: PairConfig) -> Pair:
    """One pair: the trajectory's final attempt against ``rejected``, with spans into completions."""
    return _candidate(problem, traj, rejected, config).pair


def _candidate(problem: Problem, traj: Trajectory, rejected: Attempt, config: PairConfig) -> _Candidate:
    final = traj.attempts[-1]
    # Diff exactly the code that lands in the completion: prompts.completion rstrips it and the
    # closing fence starts with a newline, so the last line keeps its newline and its span
    # covers the whole line like every other line's.
    rej_code = rejected.code.rstrip() + "\n"
    cho_code = final.code.rstrip() + "\n"
    d_minus, d_plus = changed_lines(rej_code, cho_code, config.diff)
    off = prompts.code_offset()
    provenance: dict[str, Any] = {
        "trajectory_id": traj.trajectory_id,
        "teacher": traj.teacher,
        "selection": config.selection,
        "diff": config.diff,
        "seed": config.seed,
    }
    if "params_hash" in traj.provenance:
        provenance["params_hash"] = traj.provenance["params_hash"]
    pair = Pair(
        pair_id=f"{traj.trajectory_id}:{rejected.round}",
        task_id=traj.task_id,
        prompt=prompts.user_message(problem.instruction, problem.signature),
        chosen=prompts.completion(final.code),
        rejected=prompts.completion(rejected.code),
        rejected_spans=shift_spans(lines_to_spans(split_lines(rej_code), d_minus), off),
        chosen_spans=shift_spans(lines_to_spans(split_lines(cho_code), d_plus), off),
        chosen_round=final.round,
        rejected_round=rejected.round,
        rejected_error=rejected.outcome.error_type,
        provenance=provenance,
    )
    return _Candidate(
        pair=pair,
        rejected_lines=len(d_minus),
        comment_only=is_comment_only(rej_code, d_minus),
        identical_ast=same_ast(rej_code, cho_code),
    )


def _cap_per_problem(cands: list[_Candidate], cap: int, seed: int) -> list[_Candidate]:
    """Keep at most ``cap`` candidates per task: a seeded choice independent of input order."""
    by_task: dict[str, list[_Candidate]] = {}
    for c in cands:
        by_task.setdefault(c.pair.task_id, []).append(c)
    keep: set[str] = set()
    for task_id, group in by_task.items():
        ids = sorted(c.pair.pair_id for c in group)
        if len(ids) > cap:
            ids = random.Random(f"{seed}:cap:{task_id}").sample(ids, cap)
        keep.update(ids)
    return [c for c in cands if c.pair.pair_id in keep]


def build_pairs(
    problems: Mapping[str, Problem], trajectories: Iterable[Trajectory], config: PairConfig
) -> tuple[list[Pair], dict[str, Any]]:
    """Preference pairs from debugging trajectories, filtered, with statistics.

    Only solved trajectories with at least one failing version before the final passing one
    give pairs. The filters run in the paper's order (comment-only D-, D- over
    ``max_rejected_lines`` lines, identical AST), then the optional insert-only filter and the
    per-problem cap. Pairs come out in input order.

    Returns:
        ``(pairs, stats)``; ``stats`` is JSON-serialisable (see the keys built below).

    Raises:
        ValueError: a trajectory names a task missing from ``problems``, two trajectories share
            an id, a trajectory is marked solved without a passing last attempt, or the config
            is invalid.
    """
    config.validate()
    trajs = list(trajectories)

    seen: set[str] = set()
    for t in trajs:
        if t.trajectory_id in seen:
            raise ValueError(f"duplicate trajectory id {t.trajectory_id!r}")
        seen.add(t.trajectory_id)
        if t.task_id not in problems:
            raise ValueError(f"trajectory {t.trajectory_id!r} references task {t.task_id!r}, which is not among the problems")
        _check_trajectory(t)

    # ---- trajectory statistics
    solved = [t for t in trajs if t.solved]
    solved_round = {t.trajectory_id: t.attempts[-1].round for t in solved}
    max_round = max((a.round for t in trajs for a in t.attempts), default=-1)
    n = len(trajs)
    cumulative = {
        str(r): (sum(1 for v in solved_round.values() if v <= r) / n if n else 0.0) for r in range(max_round + 1)
    }

    # ---- candidates
    cands: list[_Candidate] = []
    for t in trajs:
        for rej in select_rejected(t, config.selection, config.seed):
            cands.append(_candidate(problems[t.task_id], t, rej, config))
    n_candidates = len(cands)
    insert_only_candidates = sum(1 for c in cands if c.rejected_lines == 0)

    # ---- filters, in order
    removed = {name: 0 for name in FILTERS}

    def apply(name: str, enabled: bool, drop) -> None:
        nonlocal cands
        if not enabled:
            return
        kept = [c for c in cands if not drop(c)]
        removed[name] = len(cands) - len(kept)
        cands = kept

    apply("comment_only", config.drop_comment_only, lambda c: c.comment_only)
    apply(
        "too_many_rejected_lines",
        config.max_rejected_lines is not None,
        lambda c: c.rejected_lines > config.max_rejected_lines,
    )
    apply("identical_ast", config.drop_identical_ast, lambda c: c.identical_ast)
    apply("empty_rejected", config.drop_empty_rejected, lambda c: c.rejected_lines == 0)
    if config.max_pairs_per_problem is not None:
        before = len(cands)
        cands = _cap_per_problem(cands, config.max_pairs_per_problem, config.seed)
        removed["max_pairs_per_problem"] = before - len(cands)

    pairs = [c.pair for c in cands]

    # ---- pair statistics
    per_task = Counter(p.task_id for p in pairs)
    d_lines = [c.rejected_lines for c in cands]
    stats: dict[str, Any] = {
        "config": dataclasses.asdict(config),
        "trajectories": n,
        "problems": len({t.task_id for t in trajs}),
        "solved": len(solved),
        "solved_first_try": sum(1 for t in solved if not _failing_before_final(t)),
        "unsolved": n - len(solved),
        "cumulative_pass_rate": cumulative,
        "candidate_pairs": n_candidates,
        "insert_only_candidates": insert_only_candidates,
        "removed": removed,
        "pairs": len(pairs),
        "problems_with_pairs": len(per_task),
        "pairs_per_problem": {str(k): v for k, v in sorted(Counter(per_task.values()).items())},
        "mean_pairs_per_problem": (len(pairs) / len(per_task)) if per_task else 0.0,
        "rejected_lines_mean": statistics.fmean(d_lines) if d_lines else None,
        "rejected_lines_median": float(statistics.median(d_lines)) if d_lines else None,
        "rejected_round_hist": {str(k): v for k, v in sorted(Counter(p.rejected_round for p in pairs).items())},
        "rejected_error_types": dict(
            sorted(Counter(p.rejected_error or "None" for p in pairs).items(), key=lambda kv: (-kv[1], kv[0]))
        ),
        "insert_only_pairs": sum(1 for d in d_lines if d == 0),
    }
    return pairs, stats


def split_by_problem(pairs: list[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """``(training, heldout)``: the pairs of a seeded ``fraction`` of the problems are held out.

    The held-out problems are ``round(fraction * n)`` of the ``n`` problems with pairs, at least
    one and at most ``n - 1`` when ``fraction > 0`` and ``n >= 2``, drawn from the sorted task ids
    with ``seed``: the same pairs give the same split in any order. Both lists keep input order.
    """
    tasks = sorted({p.task_id for p in pairs})
    k = min(max(1, round(fraction * len(tasks))), len(tasks) - 1) if fraction > 0 and len(tasks) >= 2 else 0
    heldout = set(random.Random(f"{seed}:heldout").sample(tasks, k))
    return [p for p in pairs if p.task_id not in heldout], [p for p in pairs if p.task_id in heldout]
