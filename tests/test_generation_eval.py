"""Generation (HFGenerator on the tiny model) and reply post-processing (benchmark scoring is
tested in test_benchmarks.py)."""

from __future__ import annotations

import pytest
import torch

from iterpref import prompts
from iterpref.llm.base import SamplingConfig, truncate_at_stop
from iterpref.llm.hf import HFGenerator
from iterpref.prompts import extract_code

CONVS = [
    [{"role": "user", "content": "Write a function that adds two numbers."}],
    [{"role": "user", "content": "hi"}],
    [{"role": "user", "content": "def f(x):\n    return x * 2\n\nExplain this code in detail, please."}],
    [{"role": "user", "content": "Sort a list."}],
    [{"role": "user", "content": "Reverse a string."}],
]



@pytest.fixture(scope="module")
def gen(tiny_model_dir) -> HFGenerator:
    return HFGenerator(tiny_model_dir, device="cpu")


@pytest.fixture(scope="module")
def greedy(gen) -> list[str]:
    return gen.chat(CONVS, SamplingConfig(max_new_tokens=24, batch_size=4))


def n_tokens(gen: HFGenerator, text: str) -> int:
    return len(gen.tokenizer(text, add_special_tokens=False)["input_ids"])


# ----------------------------------------------------------------------------- HFGenerator


def test_generator_setup(gen):
    assert gen.device == "cpu"
    assert gen.name.startswith("hf:")
    assert gen.tokenizer.padding_side == "left"  # batched decoding appends to the right
    assert gen.model.dtype == torch.float32


def test_one_reply_per_conversation_in_order(gen, greedy):
    assert isinstance(greedy, list) and len(greedy) == len(CONVS)
    assert all(isinstance(r, str) and r for r in greedy)
    # conversations are batched longest first internally; replies come back in input order:
    # each reply equals the reply to its conversation alone
    for conv, reply in zip(CONVS, greedy):
        assert gen.chat([conv], SamplingConfig(max_new_tokens=24, batch_size=1)) == [reply]
    rev = gen.chat(CONVS[::-1], SamplingConfig(max_new_tokens=24, batch_size=4))
    assert rev == greedy[::-1]


def test_empty_input(gen):
    assert gen.chat([], SamplingConfig()) == []


def test_batch_size_independence_for_greedy(gen, greedy):
    """Left padding is masked out, so a row's greedy reply does not depend on its batch.

    The tiny model runs in float32, where padded and unpadded rows agree to ~1e-6: exact equality
    holds for this fixed seed. (Were it ever flaky, a near-tie in argmax would be the cause.)
    """
    for bs in (1, 2, 5):
        assert gen.chat(CONVS, SamplingConfig(max_new_tokens=24, batch_size=bs)) == greedy, bs


def test_max_new_tokens(gen, greedy):
    short = gen.chat(CONVS, SamplingConfig(max_new_tokens=6, batch_size=4))
    for s, long in zip(short, greedy):
        assert long.startswith(s) and len(s) < len(long)  # greedy: the short reply is a prefix
        assert n_tokens(gen, s) <= 6
    assert all(n_tokens(gen, r) <= 24 for r in greedy)
    # generate directly: exactly max_new_tokens new ids unless EOS came first
    batch = gen.tokenizer(gen.tokenizer.apply_chat_template(CONVS[0], tokenize=False, add_generation_prompt=True),
                          return_tensors="pt", add_special_tokens=False)
    out = gen.model.generate(**batch, max_new_tokens=6, do_sample=False, pad_token_id=gen.tokenizer.pad_token_id)
    ids = out[0, batch["input_ids"].shape[1]:]
    assert gen.tokenizer.decode(ids, skip_special_tokens=True) == short[0]


def test_stop_strings_cut_the_reply(gen, greedy):
    reply = greedy[0]
    stop = reply[len(reply) // 2:len(reply) // 2 + 3]  # some text from the middle of the reply
    cut = reply.find(stop)
    got = gen.chat(CONVS[:1], SamplingConfig(max_new_tokens=24, stop=[stop]))
    assert got == [reply[:cut]]


def test_sampling_is_seeded(gen):
    s = SamplingConfig(max_new_tokens=12, temperature=1.0, top_p=0.95, seed=7, batch_size=4)
    a = gen.chat(CONVS, s)
    assert gen.chat(CONVS, s) == a
    assert len(a) == len(CONVS)


# ----------------------------------------------------------------------------- post-processing


@pytest.mark.parametrize("text,stop,after_code,expected", [
    ("abc STOP def", ["STOP"], False, "abc "),
    ("abc STOP def END", ["END", "STOP"], False, "abc "),        # the earliest stop wins
    ("abc", ["STOP"], False, "abc"),
    ("STOP", ["STOP"], False, ""),
    ("```python\nx = 1\n```\nNow a test:\n```python\nf()\n```", [], True, "```python\nx = 1\n```"),
    ("```python\nx = 1\n```\nmore", [], False, "```python\nx = 1\n```\nmore"),
    ("```python\nx = 1\n", [], True, "```python\nx = 1\n"),      # no closed block yet: keep all
    ("```python\nx = 1```", [], True, "```python\nx = 1```"),    # a close must start its own line
    ("```python\nx = 1\n```tail", ["x ="], True, "```python\n"),  # a stop string inside the block
    ("Hi\n```\na\n```\nb", ["b"], True, "Hi\n```\na\n```"),
])
def test_truncate_at_stop(text, stop, after_code, expected):
    assert truncate_at_stop(text, stop, stop_after_code=after_code) == expected


@pytest.mark.parametrize("text,expected", [
    ("Here it is:\n```python\ndef f():\n    return 1\n```\nDone.", "def f():\n    return 1"),
    ("```py\nx = 1\n```", "x = 1"),
    ("```Python\nx = 1\n```", "x = 1"),
    ("```python3\nx = 1\n```\n", "x = 1"),
    ("```\nx = 1\n```", "x = 1"),
    ("```python   \nx = 1\n```", "x = 1"),
    # the longest block wins over a short usage example
    ("```python\ndef f():\n    return 1\n```\nExample:\n```python\nf()\n```", "def f():\n    return 1"),
    # unterminated (cut by max_new_tokens): everything after the fence
    ("```python\ndef f():\n    return", "def f():\n    return"),
    # unfenced: the whole text, outer blank lines dropped, indentation kept
    ("\n\n    return x + 1\n\n", "    return x + 1"),
    ("def f():\n    pass", "def f():\n    pass"),
    # the body's indentation inside a fence is kept too
    ("```python\n    return 1\n```", "    return 1"),
])
def test_extract_code(text, expected):
    assert extract_code(text) == expected


def test_completion_round_trips_through_extract_code():
    code = "def f(x):\n    return x\n"
    assert extract_code(prompts.completion(code)) == code.rstrip()
    assert truncate_at_stop(prompts.completion(code) + "\nblah", [], True) == prompts.completion(code)


def test_shrinking_batch_decode_equals_model_generate(tiny_model_dir):
    """`HFGenerator.decode` drops finished rows from the batch and KV cache; greedy output must
    equal transformers' own `generate`, including rows that end early on EOS."""
    from iterpref.llm.base import SamplingConfig
    from iterpref.llm.hf import HFGenerator

    gen = HFGenerator(tiny_model_dir, device="cpu")
    tok = gen.tokenizer
    convs = [[{"role": "user", "content": "def f(x):" + " y" * i}] for i in range(5)]
    texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in convs]
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    # Make some rows finish early: whatever token row 0 greedily emits at step 3 becomes "EOS".
    probe = gen.decode(prompts, SamplingConfig(max_new_tokens=6))
    gen.eos_ids = {probe[0][3]}
    mine = gen.decode(prompts, SamplingConfig(max_new_tokens=12))
    ref = gen.model.generate(**batch, max_new_tokens=12, do_sample=False, eos_token_id=probe[0][3],
                             pad_token_id=tok.pad_token_id)[:, batch["input_ids"].shape[1]:].tolist()
    assert any(len(m) < 12 for m in mine), "some row should have stopped early"
    for m, r in zip(mine, ref):
        assert m == r[: len(m)]
        assert len(m) == 12 or m[-1] == probe[0][3]


def test_a_final_assistant_turn_is_continued(gen):
    """EvalPlus-style prompts pre-fill the answer: the model continues that text, no new turn."""
    prefix = [{"role": "user", "content": "Add two numbers."}, {"role": "assistant", "content": "```python\ndef add("}]
    text = gen.tokenizer.apply_chat_template(prefix, tokenize=False, continue_final_message=True)
    assert text.endswith("```python\ndef add(")
    sampling = SamplingConfig(max_new_tokens=6, batch_size=2)
    (reply,) = gen.chat([prefix], sampling)
    ids = gen.tokenizer(text, add_special_tokens=False)["input_ids"]
    (alone,) = gen.decode([ids], sampling)
    assert reply == gen.tokenizer.decode(alone, skip_special_tokens=True)
