"""The token-level ablation: only the rejected tokens the fix changed, inside the D- lines."""

from __future__ import annotations

import random

import pytest
from test_training import ALL, BY_ID, build_trainer, load_tiny, row_by_id, token_pieces

from iterpref.pairs import diff
from iterpref.training.masks import MaskConfig


def pieces(text: str, spans) -> list[str]:
    return [text[s:e] for s, e in spans]


def test_replaced_operator_is_the_only_token():
    rej = "def f(x):\n    y = x - 1\n    return y\n"
    cho = "def f(x):\n    y = x + 1\n    return y\n"
    assert pieces(rej, diff.token_spans(rej, cho)) == ["-"]
    (line,) = diff.changed_spans(rej, cho)[0]
    assert line[0] <= diff.token_spans(rej, cho)[0][0] < line[1]


def test_replaced_name_and_two_lines():
    rej = "def total(xs):\n    s = 1\n    for x in xs:\n        s -= x\n    return s\n"
    cho = "def total(xs):\n    s = 0\n    for x in xs:\n        s += x\n    return s\n"
    assert pieces(rej, diff.token_spans(rej, cho)) == ["1", "-"]
    rej2, cho2 = "    return count_items(xs)\n", "    return len(xs)\n"
    assert pieces(rej2, diff.token_spans(rej2, cho2)) == ["count_items"]


def test_deleted_line_is_kept_whole_and_insert_only_gives_nothing():
    rej, cho = "a = 1\nbad = 2\nb = 3\n", "a = 1\nb = 3\n"
    assert pieces(rej, diff.token_spans(rej, cho)) == ["bad = 2\n"]
    assert diff.token_spans("a\nb\n", "a\nnew\nb\n") == []


def test_insertion_inside_a_line_marks_its_neighbours():
    rej, cho = "    y = foo(x, 1\n", "    y = foo(x, 1)\n"
    assert pieces(rej, diff.token_spans(rej, cho)) == ["1"]
    rej, cho = "    if a b:\n", "    if a and b:\n"
    assert pieces(rej, diff.token_spans(rej, cho)) == ["a", "b"]


def test_changed_indentation_is_a_changed_token():
    rej, cho = "def f():\n  return 1\n", "def f():\n    return 1\n"
    assert pieces(rej, diff.token_spans(rej, cho)) == ["  "]


@pytest.mark.parametrize("method", ["lcs", "prefix_suffix"])
def test_token_spans_lie_inside_d_minus_lines_on_random_edits(method):
    rng = random.Random(0)
    words = ["x", "y", "+", "-", "(", ")", "1", "return", " ", "foo", "=="]
    for _ in range(300):
        lines = ["".join(rng.choice(words) for _ in range(rng.randint(1, 6))) + "\n" for _ in range(rng.randint(1, 8))]
        edited = [ln if rng.random() < 0.6 else "".join(rng.choice(words) for _ in range(rng.randint(0, 6))) + "\n"
                  for ln in lines]
        rej, cho = "".join(lines), "".join(edited)
        line_spans, _ = diff.changed_spans(rej, cho, method)
        toks = diff.token_spans(rej, cho, method)
        assert toks == diff.merge_spans(toks)
        for s, e in toks:
            assert any(ls <= s and e <= le for ls, le in line_spans), (rej, cho, (s, e))
        if rej == cho:
            assert toks == []


def test_mask_config_rejects_token_mode_with_context_lines():
    with pytest.raises(ValueError, match="context_lines"):
        MaskConfig(mode="token", context_lines=1)


def test_token_masks_on_trl_ids_are_inside_the_line_masks(tiny_model_dir, tmp_path):
    """On TRL's own token ids: the token mask is a subset of the line mask, strictly smaller where
    a line changed only in part, and the chosen side is whole."""
    model, tok = load_tiny(tiny_model_dir)
    line = build_trainer(model, tok, ALL, tmp_path / "line", mode="line").train_dataset
    token = build_trainer(*load_tiny(tiny_model_dir), ALL, tmp_path / "token", mode="token").train_dataset
    for p in ALL:
        lrow, trow = row_by_id(line, p.pair_id), row_by_id(token, p.pair_id)
        assert lrow["rejected_ids"] == trow["rejected_ids"]
        lm, tm = lrow["rejected_token_mask"], trow["rejected_token_mask"]
        assert all(t <= m for t, m in zip(tm, lm))
        assert trow["chosen_token_mask"] == [1] * len(trow["chosen_ids"])
    p = BY_ID["one_line"]  # "out.append(x - 1)" -> "out.append(x + 1)"
    row = row_by_id(token, "one_line")
    masked = [piece for piece, m in zip(token_pieces(tok, [{"role": "user", "content": p.prompt},
                                                          {"role": "assistant", "content": p.rejected}],
                                                     row["rejected_ids"])[0], row["rejected_token_mask"]) if m]
    assert "-" in "".join(masked) and "append" not in "".join(masked)
    assert 0 < sum(row["rejected_token_mask"]) < sum(row_by_id(line, "one_line")["rejected_token_mask"])


@pytest.mark.parametrize("mode", ["line", "token"])
def test_prefix_suffix_diff_on_trl_ids(tiny_model_dir, tmp_path, mode):
    """The masks that re-diff the completions (``diff: prefix_suffix``, ``mode: token``) read the
    assistant message's text out of TRL's conversational rows."""
    from iterpref.training.recipe import TrainConfig, dpo_config, pairs_dataset
    from iterpref.training.trainer import FocalDPOTrainer

    model, tok = load_tiny(tiny_model_dir)
    mask = MaskConfig(mode=mode, diff="prefix_suffix")
    args = dpo_config(TrainConfig(mask=mask, bf16=False), tmp_path, "test", [], use_cpu=True)
    ds = FocalDPOTrainer(model=model, args=args, train_dataset=pairs_dataset(ALL), processing_class=tok,
                         mask=mask).train_dataset
    row = row_by_id(ds, "two_lines")  # two separate changed lines: prefix/suffix marks everything between
    lcs = row_by_id(build_trainer(*load_tiny(tiny_model_dir), ALL, tmp_path / "lcs", mode=mode).train_dataset, "two_lines")
    assert all(a <= b for a, b in zip(lcs["rejected_token_mask"], row["rejected_token_mask"]))
    if mode == "line":
        assert sum(row["rejected_token_mask"]) > sum(lcs["rejected_token_mask"])
