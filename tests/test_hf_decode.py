"""HFGenerator's decoder (iterpref.llm.hf): continuous batching equals decoding each prompt
alone, with or without prompt-lookup drafts, the tail stop check equals the full one, sampled
drafts keep the model's distribution, bfloat16 runs."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import DynamicCache

from iterpref.llm.base import SamplingConfig, stop_position
from iterpref.llm.hf import HFGenerator, attention, drafts, generator, kv_cache, prefixes
from iterpref.llm.hf.packed import PackedLinear, can_pack, pack_linears
from iterpref.llm.hf.sampling import probabilities


def chaotic(gen: HFGenerator) -> HFGenerator:
    """Re-draw the tiny model's weight matrices larger: its 0.02-std init repeats one token
    forever, which would hide a wrong position or cache column; these replies change every step."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in gen.model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.1)
    return gen


# Where torch sees a GPU (a GPU machine running this file), the decoder's tests run there too.
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module", params=DEVICES)
def gen(request, tiny_model_dir) -> HFGenerator:
    """float32 on either device: the tests compare replies token for token."""
    return chaotic(HFGenerator(tiny_model_dir, device=request.param, dtype="float32"))


def prompt_ids(gen: HFGenerator, n: int) -> list[list[int]]:
    """``n`` chat prompts of different lengths, in no particular order (a long one comes late,
    so the cache must grow to the left too)."""
    tok = gen.tokenizer
    lengths = [3, 9, 1, 14, 6, 0, 30, 2, 11, 5][:n]
    texts = [tok.apply_chat_template([{"role": "user", "content": "def f(x):" + " y" * k}], tokenize=False,
                                     add_generation_prompt=True) for k in lengths]
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def alone(gen: HFGenerator, prompts, max_new_tokens: int) -> list[list[int]]:
    """Reference: transformers' own greedy `generate`, one prompt at a time (no padding)."""
    eos = sorted(gen.eos_ids)
    out = []
    for p in prompts:
        ids = torch.tensor([p], device=gen.device)
        new = gen.model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                                 do_sample=False, eos_token_id=eos, pad_token_id=gen.tokenizer.pad_token_id)
        out.append(new[0, len(p):].tolist())
    return out


@pytest.fixture
def early_eos(gen):
    """Make rows finish at different steps: a token the model emits mid-reply becomes EOS."""
    saved = gen.eos_ids
    probe = gen.decode(prompt_ids(gen, 10), SamplingConfig(max_new_tokens=12, batch_size=10))
    counts: dict[int, int] = {}
    for reply in probe:
        for t in set(reply[2:]):
            counts[t] = counts.get(t, 0) + 1
    gen.eos_ids = set(sorted(counts, key=counts.get)[-2:])  # the two tokens most replies emit
    yield
    gen.eos_ids = saved


@pytest.mark.parametrize("room", [kv_cache.ROOM, 3])
def test_continuous_batching_equals_decoding_alone(gen, early_eos, monkeypatch, room):
    """10 prompts through 3 rows: rows finish at different steps and are refilled at once;
    every reply equals greedy `generate` on its prompt alone. ``room`` 3 makes the cache grow
    (copy, drop dead columns) every 3 steps."""
    monkeypatch.setattr(kv_cache, "ROOM", room)
    prompts = prompt_ids(gen, 10)
    ref = alone(gen, prompts, 40)
    assert sum(len(r) < 40 for r in ref) >= 4, "several rows should end early on the probe EOS"
    assert gen.decode(prompts, SamplingConfig(max_new_tokens=40, batch_size=3)) == ref


@pytest.fixture
def oracle_drafts(monkeypatch):
    """Replace prompt lookup's drafts with the reference continuation, cut at a random length and
    often with one token wrong from a random point on: every path (all accepted, some, none,
    rows without a draft) occurs. Drafts may change only the speed, never a greedy reply."""
    rng = random.Random(0)
    refs: list[tuple[list[int], list[int]]] = []

    def draft(self, k):
        prompt, ref = next((p, r) for p, r in refs if self.ids[:len(p)] == p)
        done = len(self.ids) - len(prompt)
        if k <= 0 or rng.random() < 0.2:  # k 0: the reply's last token is due
            return []
        out = ref[done:done + rng.randint(1, k)] or [7]  # past the reply's end: some token
        if rng.random() < 0.5:
            j = rng.randrange(len(out))
            out = out[:j] + [(out[j] + 1) % 50] + out[j + 1:rng.randint(j + 1, len(out))]
        return out

    monkeypatch.setattr(drafts.Lookup, "draft", draft)
    return refs


@pytest.mark.parametrize("room", [kv_cache.ROOM, 9])
def test_prompt_lookup_drafts_leave_greedy_replies_unchanged(gen, early_eos, oracle_drafts, monkeypatch, room):
    """10 prompts through 3 rows, up to 8 drafts a step: accepted drafts, rejected ones (holes in
    the cache) and cache rebuilds that pack the holes away (``room`` 9: nearly every step)."""
    monkeypatch.setattr(kv_cache, "ROOM", room)
    monkeypatch.setattr(gen, "prompt_lookup", 8)
    prompts = prompt_ids(gen, 10)
    ref = alone(gen, prompts, 40)
    oracle_drafts += list(zip(prompts, ref))
    steps = []
    real_accept = generator.accept
    monkeypatch.setattr(generator, "accept", lambda logits, drafts, *a: steps.append(drafts) or real_accept(logits, drafts, *a))
    assert gen.decode(prompts, SamplingConfig(max_new_tokens=40, batch_size=3)) == ref
    assert sum(map(any, steps)) > len(steps) // 2, "most steps should carry drafts"
    assert len(steps) < sum(map(len, ref)) / 3 * 0.9, "accepted drafts should save steps"


def test_lookup_drafts_what_followed_the_last_ngram():
    look = drafts.Lookup([5, 1, 2, 3, 9, 8, 1, 2])
    assert look.draft(4) == []  # (1, 2) is not a 3-gram; nothing seen
    look.extend([3])
    assert look.draft(4) == [9, 8, 1, 2] and look.draft(2) == [9, 8] and look.draft(0) == []
    look.extend([9, 8, 1, 2, 3])  # the latest earlier occurrence wins
    assert look.draft(9) == [9, 8, 1, 2, 3]


def test_sampled_drafts_keep_the_model_distribution():
    """Speculative sampling with a one-token draft: the first new token is distributed as the
    model's (temperature, top-p) distribution, whichever token was drafted."""
    torch.manual_seed(0)
    logits = torch.randn(1, 2, 6) * 2
    sampling = SamplingConfig(temperature=0.7, top_p=0.9)
    want = probabilities(logits[0, 0], sampling)
    rng = torch.Generator().manual_seed(1)
    for draft in (int(want.argmax()), int(want.argmin()), 3):
        n = 6000
        counts = torch.zeros(6)
        for _ in range(n):
            counts[drafts.accept(logits, [[draft]], sampling, [rng])[0][0]] += 1
        torch.testing.assert_close(counts / n, want, atol=0.025, rtol=0)


def test_stream_yields_each_prompt_once_as_it_finishes(gen, early_eos):
    prompts = prompt_ids(gen, 7)
    done = list(gen.stream(prompts, SamplingConfig(max_new_tokens=30, batch_size=2)))
    assert sorted(i for i, _ in done) == list(range(7))
    first = gen.decode(prompts, SamplingConfig(max_new_tokens=1, batch_size=2))  # never enter the batch
    assert first == alone(gen, prompts, 1)
    assert gen.decode([], SamplingConfig()) == []


def test_prefill_starts_from_a_shared_prefix(gen, early_eos, monkeypatch):
    """A prompt that repeats an earlier one, extends it (a debugging conversation's next turn) or
    shares its chat-template beginning is prefilled from the stored keys and values of that
    prefix, and its greedy reply is still the one it gets alone."""
    monkeypatch.setattr(gen, "prefixes", prefixes.Prefixes())
    first, other = prompt_ids(gen, 2)
    reply = alone(gen, [first], 8)[0]
    prompts = [first, first, first + reply + other[-6:], other]
    reused = []
    load = gen.prefixes.load
    monkeypatch.setattr(gen.prefixes, "load", lambda prompt, cache: reused.append(load(prompt, cache)) or reused[-1])
    assert gen.decode(prompts, SamplingConfig(max_new_tokens=30, batch_size=1)) == alone(gen, prompts, 30)
    shared = prefixes.common_prefix(first, other)
    assert 0 < shared < len(other) - 1
    assert reused == [0, len(first) - 1, len(first), shared]


def test_stored_prefixes_stay_within_their_budget(monkeypatch):
    monkeypatch.setattr(prefixes, "PREFIX_TOKENS", 10)
    store = prefixes.Prefixes()
    for prompt in ([1, 2, 3, 4], [1, 2, 5, 6], [1, 2, 3, 4], [7, 8, 9]):  # a repeat is stored once
        store.save(prompt, DynamicCache())
    assert list(store.caches) == [(1, 2, 5, 6), (7, 8, 9)] and store.tokens == 7  # the oldest went
    store.save(list(range(11)), DynamicCache())  # over the budget alone: not stored
    assert store.tokens == 7


def test_sampling_runs_and_is_seeded(gen):
    prompts = prompt_ids(gen, 4)
    s = SamplingConfig(max_new_tokens=10, temperature=1.0, top_p=0.9, batch_size=2, seed=3)
    a, b = gen.decode(prompts, s), gen.decode(prompts, s)
    assert a == b and all(len(r) == 10 or r[-1] in gen.eos_ids for r in a)


# ----------------------------------------------------------------------------- stop check

TRICKY = [
    "Here is the code:\n```python\ndef f(x):\n    return x  # é…\n```\nAnd more text.",
    "Use `f` like ``this``:\n``` py\nprint('漢字🙂')\n```",
    "```\n```",  # opening line, then the closing fence right away: no match ("\n```" needs a body line)
    "```\nx\n```",
    "no fence here, just ` and `` and ```inline``` text\n```python\n\n```",
    "ééé🙂🙂 stop here STOP\n\ndef g(): pass",
]
STOPS = [[], ["STOP"], ["\ndef", "🙂"], ["é"], ["x\n```"], [""], ["``"]]


def check_tail_equals_full(gen: HFGenerator, ids: list[int], stop: list[str], after_code: bool) -> None:
    """Step through ``ids`` as the decoder does: `_finished` must say True exactly at the first
    prefix whose whole text `stop_position` stops (or EOS / max_new_tokens)."""
    sampling = SamplingConfig(max_new_tokens=len(ids) + 1, stop=stop, stop_after_code=after_code)
    for k in range(1, len(ids) + 1):
        text = gen.tokenizer.decode(ids[:k], skip_special_tokens=True)
        full = ids[k - 1] in gen.eos_ids or stop_position(text, stop, after_code) is not None
        assert gen._finished(ids[:k], sampling) == full, (k, text, stop, after_code)
        if full:
            return


@pytest.mark.parametrize("after_code", [True, False])
def test_tail_stop_check_equals_full_check(gen, after_code):
    tok = gen.tokenizer
    for text in TRICKY:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        for stop in STOPS:
            check_tail_equals_full(gen, ids, stop, after_code)
    # random replies over the tokens of those strings and single bytes of multi-byte characters
    pool = sorted({t for text in TRICKY for t in tok(text, add_special_tokens=False)["input_ids"]})
    pool += [t for t in range(len(tok)) if tok.decode([t]) in ("\ufffd", "`", "``", "```", "\n")]
    rng = random.Random(0)
    for _ in range(150):
        ids = [rng.choice(pool) for _ in range(rng.randint(1, 40))]
        check_tail_equals_full(gen, ids, rng.choice(STOPS), after_code)


def test_tail_stop_check_with_smollm2_tokenizer(smollm2_tokenizer):
    """The real student's byte-level BPE: multi-byte characters split over tokens."""
    fake = HFGenerator.__new__(HFGenerator)
    fake.tokenizer, fake.eos_ids = smollm2_tokenizer, {smollm2_tokenizer.eos_token_id}
    for text in TRICKY:
        ids = smollm2_tokenizer(text, add_special_tokens=False)["input_ids"]
        for stop in STOPS:
            for after_code in (True, False):
                check_tail_equals_full(fake, ids, stop, after_code)


# ----------------------------------------------------------------------------- dtype


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("new", [1, 4])
def test_decode_step_attention_equals_sdpa(dtype, tol, new):
    """A decode step's attention (one or several new tokens per row, grouped query heads, the
    columns after each row's tokens masked) against transformers' sdpa attention."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(0)
    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal = 3, True
    q, k, v = (torch.randn(*shape).to(dtype) for shape in ((4, 6, new, 16), (4, 2, 12, 16), (4, 2, 12, 16)))
    lengths = torch.tensor([[3], [0], [7], [11 - new]])  # tokens before the step's, per row
    mask = torch.arange(12)[None, None, None] <= (lengths + torch.arange(new))[:, None, :, None]
    ours, _ = attention.batch_invariant_attention(module, q, k, v, mask, scaling=0.3, decode_step=True)
    ref, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=0.3)
    assert ours.shape == ref.shape == (4, new, 6, 16)
    torch.testing.assert_close(ours.float(), ref.float(), atol=tol, rtol=tol)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("new, columns", [(1, 1), (40, 40), (5, 70), (70, 75)])
def test_prefill_attention_equals_sdpa(dtype, tol, new, columns):
    """A prefill's attention: ``new`` prompt tokens after ``columns - new`` from a stored prefix,
    causal, in blocks of `attention.QUERY_BLOCK` queries."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(0)
    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal = 3, True
    q, k, v = (torch.randn(*shape).to(dtype) for shape in ((1, 6, new, 16), (1, 2, columns, 16), (1, 2, columns, 16)))
    causal = torch.ones(new, columns, dtype=torch.bool).tril(columns - new)
    ours, _ = attention.batch_invariant_attention(module, q, k, v, None, scaling=0.3)
    ref, _ = sdpa_attention_forward(module, q, k, v, causal[None, None], scaling=0.3)
    assert ours.shape == ref.shape == (1, new, 6, 16)
    torch.testing.assert_close(ours.float(), ref.float(), atol=tol, rtol=tol)


@pytest.mark.parametrize("device", DEVICES)
def test_bfloat16_decodes(tiny_model_dir, device):
    gen = chaotic(HFGenerator(tiny_model_dir, device=device, dtype="bfloat16"))
    assert gen.model.dtype == torch.bfloat16
    # CPU: our attention for decode steps and packed weights; GPU: sdpa's kernels are the fast ones
    assert gen.model.config._attn_implementation == ("iterpref_decode" if device == "cpu" else "sdpa")
    packed = any(isinstance(m, PackedLinear) for m in gen.model.modules())
    assert packed == (device == "cpu" and can_pack())
    prompts = prompt_ids(gen, 5)
    batched = gen.decode(prompts, SamplingConfig(max_new_tokens=16, batch_size=2))
    assert all(len(r) == 16 or r[-1] in gen.eos_ids for r in batched)
    cache = kv_cache.BatchCache(gen.model, 2)
    assert cache.kv[0][0].dtype == torch.bfloat16
    replies = gen.chat([[{"role": "user", "content": "hi"}], [{"role": "user", "content": "Sort a list."}]],
                       SamplingConfig(max_new_tokens=8, batch_size=2))
    assert len(replies) == 2 and all(isinstance(r, str) for r in replies)


@pytest.mark.skipif(not can_pack(), reason="this CPU has no oneDNN bfloat16 kernels")
def test_packed_weights_change_no_reply(tiny_model_dir):
    """bf16 on CPU: every linear layer's weight reordered once for oneDNN (and computed in blocks
    of rows) gives the same greedy replies token for token at the tiny model's widths, where the
    row count changes none of oneDNN's sums."""
    plain = chaotic(HFGenerator(tiny_model_dir, device="cpu", dtype="bfloat16", pack_weights=False))
    packed = chaotic(HFGenerator(tiny_model_dir, device="cpu", dtype="bfloat16", pack_weights=False))
    layers = packed.model.config.num_hidden_layers
    assert pack_linears(packed.model) == 7 * layers + 1  # q, k, v, o, gate, up, down; the output layer
    assert not any(isinstance(m, torch.nn.Linear) for m in packed.model.modules())
    prompts = prompt_ids(plain, 8)
    sampling = SamplingConfig(max_new_tokens=24, batch_size=3)
    assert packed.decode(prompts, sampling) == plain.decode(prompts, sampling)
    with torch.inference_mode():
        ids = torch.tensor([prompts[0]])
        assert torch.equal(packed.model(input_ids=ids).logits, plain.model(input_ids=ids).logits)
