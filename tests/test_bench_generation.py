"""bench/bench_generation.py's random-weights mode (what bench_generation_gpu.py runs on a GPU),
on CPU with the tiny model: replies that end at a set rate, and a whole run of both sides."""

from __future__ import annotations

import re

import pytest

from bench import result as bench_result
from iterpref.llm.base import SamplingConfig
from iterpref.llm.hf import HFGenerator


@pytest.fixture(scope="module")
def bench():
    from bench import bench_generation

    return bench_generation


def test_replies_end_at_the_set_rate(bench, tiny_model_dir):
    """EOS has probability 0.25 at every step, the first token included: reply lengths are
    geometric with mean 4 (40 replies: the mean's standard deviation is about 0.55)."""
    gen = HFGenerator(bench.random_model_dir(str(tiny_model_dir)), device="cpu")
    bench.end_replies_at_rate(gen, 0.25)
    prompts = [gen.encode([{"role": "user", "content": f"task {i}"}]) for i in range(40)]
    replies = gen.decode(prompts, SamplingConfig(max_new_tokens=64, temperature=1.0, batch_size=8))
    assert all(r[-1] in gen.eos_ids for r in replies), "no reply should reach the cap"
    assert 2.5 <= sum(map(len, replies)) / len(replies) <= 6.0


def test_a_random_init_run_times_both_sides_and_scores_nothing(bench, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "result.json"
    bench.main(["--model", str(tiny_model_dir), "--random-init", "--eos-rate", "0.1", "--tasks", "4",
                "--batch-size", "2", "--max-new-tokens", "24", "--threads", "1", "--warmup", "--json", str(out)])
    name, metrics, details = bench_result.read(out)
    assert name == "bench_generation" and details["random_init"] and details["eos_rate"] == 0.1
    by_name = {m.name: m for m in metrics}
    speed = by_name["ours float32 / model.generate float32 speed"]
    assert speed.value > 0 and speed.goal == bench.GOAL_VS_GENERATE
    assert not any("pass@1" in m.name for m in metrics), "random weights are not scored"
    printed = capsys.readouterr().out
    assert "sampled, EOS rate 0.1" in printed and "row-steps" in printed
    # the timed run starts with no stored prompts (the warm-up's are gone): only the first
    # prompt's chat-template beginning is reused, never whole prompts
    reused, total = map(int, re.search(r"\((\d+) of (\d+) prompt tokens from stored prefixes\)", printed).groups())
    assert 0 < reused < total - 4


def test_eos_rate_needs_random_weights(bench, tiny_model_dir):
    with pytest.raises(SystemExit):
        bench.main(["--model", str(tiny_model_dir), "--eos-rate", "0.1"])
