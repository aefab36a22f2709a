"""bench/bench_train.py on CPU: the tiny shape, three real TRL training steps per variant."""

from __future__ import annotations

import json

import pytest


@pytest.fixture(scope="module")
def bench():
    from bench import bench_train

    return bench_train


@pytest.fixture(scope="module")
def tiny_tokenizer(bench):
    return bench.load_tokenizer("tiny")[0]


def test_synthetic_pairs_have_spans_on_the_broken_lines(bench, tiny_tokenizer):
    pairs = bench.synthetic_pairs(tiny_tokenizer, 4, prompt_tokens=48, completion_tokens=96, error_lines=2, seed=1)
    assert len({p.pair_id for p in pairs}) == 4
    for p in pairs:
        assert p.chosen != p.rejected
        assert p.rejected_spans and p.chosen_spans
        assert p.chosen.startswith("```python\n") and p.rejected.endswith("\n```")
        broken = "".join(p.rejected[a:b] for a, b in p.rejected_spans)
        assert all(line not in p.chosen.splitlines() for line in broken.splitlines())
        assert 48 <= len(tiny_tokenizer(p.chosen)["input_ids"]) <= 96
    again = bench.synthetic_pairs(tiny_tokenizer, 4, prompt_tokens=48, completion_tokens=96, error_lines=2, seed=1)
    assert [p.rejected for p in again] == [p.rejected for p in pairs]  # fixed seed


def test_bench_tiny_cpu_three_variants(bench, tmp_path):
    report = bench.main(["--device", "cpu", "--shapes", "tiny", "--tokenizer", "tiny", "--warmup", "1",
                         "--steps", "2", "--prompt-tokens", "48", "--completion-tokens", "96", "--out", str(tmp_path)])
    assert report["failed"] == []
    shape = report["shapes"]["tiny"]
    variants = shape["variants"]
    assert set(variants) == {"trl_dpo", "dpo", "target_dpo"}
    for v in variants.values():
        assert v["step_s"] > 0 and v["compute_s"] > 0 and v["tokens_per_s"] > 0
        assert v["timed_steps"] == 2 and v["peak_mem_gib"] > 0
    assert shape["same_batches"]
    # plain DPO sums every rejected token, stock or ours; Target-DPO only those of the broken lines
    assert variants["dpo"]["rejected_tokens_per_pair"] == variants["trl_dpo"]["rejected_tokens_per_pair"]
    assert 0 < variants["target_dpo"]["rejected_tokens_per_pair"] < variants["dpo"]["rejected_tokens_per_pair"]
    assert variants["target_dpo"]["chosen_tokens_per_pair"] == variants["dpo"]["chosen_tokens_per_pair"]
    assert variants["target_dpo"]["mask_s"] > 0 and variants["trl_dpo"]["mask_s"] == 0
    assert shape["ratios"]["target_over_dpo_step"] > 0
    md = (tmp_path / "bench_train.md").read_text()
    for name in ("trl_dpo", "| dpo |", "target_dpo", "target_dpo / dpo step time"):
        assert name in md
    saved = json.loads((tmp_path / "bench_train.json").read_text())
    assert saved["env"]["trl"] and saved["shapes"]["tiny"]["config"]["hidden_size"] == 64
