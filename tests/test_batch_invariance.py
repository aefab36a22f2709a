"""Batch-invariant greedy decoding in bfloat16 on CPU (iterpref.llm.hf): a prompt's reply is the
same token for token whatever the batch size, the prompts beside it, the stored prefixes, the
prompt-lookup drafts and the thread count; and the two mechanisms it rests on, linear layers
and attention whose result for a row does not depend on the other rows."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from iterpref.llm.base import SamplingConfig
from iterpref.llm.hf import HFGenerator
from iterpref.llm.hf.attention import batch_invariant_attention
from iterpref.llm.hf.packed import PackedLinear, can_pack, rows_independent
from iterpref.llm.hf.prefixes import Prefixes

pytestmark = pytest.mark.skipif(not can_pack(), reason="this CPU has no oneDNN bfloat16 kernels")

# SmolLM2-135M's widths: the shapes at which oneDNN's row count changes a row's sums
HIDDEN, INTERMEDIATE, HEADS, KV_HEADS = 576, 1536, 9, 3


@pytest.fixture(scope="module")
def student_shaped_dir(tiny_model_dir, tmp_path_factory):
    """Two layers of SmolLM2's widths with large random weights (replies change every step),
    the tiny model's tokenizer."""
    config = AutoConfig.from_pretrained(tiny_model_dir)
    config.update(dict(hidden_size=HIDDEN, intermediate_size=INTERMEDIATE, num_attention_heads=HEADS,
                       num_key_value_heads=KV_HEADS, head_dim=HIDDEN // HEADS, num_hidden_layers=2))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.08)
    folder = tmp_path_factory.mktemp("student_shaped")
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("inputs, outputs", [(HIDDEN, HIDDEN // HEADS * KV_HEADS), (HIDDEN, INTERMEDIATE),
                                             (INTERMEDIATE, HIDDEN), (HIDDEN, 8192)])
@pytest.mark.parametrize("rows", ["blocks", "probed"])
def test_a_linear_row_does_not_depend_on_the_rows_beside_it(inputs, outputs, rows):
    """In blocks of ROWS, and in one call of any row count where the probe says the kernel allows it
    (on this CPU, every shape here: the test fails if the probe passes a kernel that does not)."""
    torch.manual_seed(0)
    linear = PackedLinear(torch.nn.Linear(inputs, outputs, bias=False).to(torch.bfloat16))
    linear.free_rows = rows == "probed" and rows_independent(linear)
    x = torch.randn(70, inputs).to(torch.bfloat16)
    with torch.inference_mode():
        alone = torch.cat([linear(x[i:i + 1]) for i in range(len(x))])
        for rows in (3, 8, 33, 70):
            assert torch.equal(linear(x[:rows]), alone[:rows]), rows
            assert torch.equal(linear(x[:rows].flip(0)), alone[:rows].flip(0)), rows


def test_decode_attention_of_a_row_does_not_depend_on_the_batch():
    """Row 0's tokens in a buffer of 40 columns beside one short row, and in one of 300 columns
    beside long rows: the same output, bit for bit."""
    torch.manual_seed(0)
    module = torch.nn.Module()
    q, k, v = (torch.randn(1, h, n, 64).to(torch.bfloat16) for h, n in ((HEADS, 1), (KV_HEADS, 37), (KV_HEADS, 37)))

    def step(columns: int, others: list[int]):
        rows = 1 + len(others)
        query = torch.cat([q, torch.randn(rows - 1, HEADS, 1, 64).to(torch.bfloat16)])
        keys, values = (torch.randn(rows, KV_HEADS, columns, 64).to(torch.bfloat16) for _ in range(2))
        keys[0, :, :37], values[0, :, :37] = k[0], v[0]
        lengths = torch.tensor([36, *others])  # tokens before the step's, whose own column is the next
        mask = (torch.arange(columns) <= lengths[:, None])[:, None, None]
        out, _ = batch_invariant_attention(module, query, keys, values, mask, decode_step=True)
        return out[0]

    with torch.inference_mode():
        assert torch.equal(step(40, [3]), step(300, [250, 299, 120]))


def test_replies_do_not_depend_on_the_batch(student_shaped_dir):
    """The same prompts at batch 1, 3 and 8, with and without stored prefixes, with prompt-lookup
    drafts, with one and two threads: every reply the same, token for token."""
    gen = HFGenerator(student_shaped_dir, device="cpu", dtype="bfloat16")
    tok = gen.tokenizer
    texts = ["def add(a, b):", "Sort a list of numbers.", "x" * 40, "class Stack:\n    def push(self, item):",
             "Write a function that reverses a string.", "import os", "def f(n):\n    return n * " + "2 + " * 20,
             "Return the largest prime below n."]
    prompts = [gen.encode([{"role": "user", "content": t}]) for t in texts]
    prompts.append(prompts[1] + tok("A follow-up turn.", add_special_tokens=False)["input_ids"])  # a stored prefix's use
    sampling = SamplingConfig(max_new_tokens=40, batch_size=8)
    gen.prefixes = Prefixes()
    reference = gen.decode(prompts, sampling)
    assert len({tuple(r) for r in reference}) == len(prompts) and min(map(len, reference)) > 5
    runs = {}
    for batch in (1, 3, 8):
        gen.prefixes = Prefixes()
        runs[f"batch {batch}"] = gen.decode(prompts, SamplingConfig(max_new_tokens=40, batch_size=batch))
    runs["stored prefixes"] = gen.decode(prompts[::-1], sampling)[::-1]
    gen.prompt_lookup = 8
    runs["drafts"] = gen.decode(prompts, SamplingConfig(max_new_tokens=40, batch_size=3))
    gen.prompt_lookup = 0
    linears = [m for m in gen.model.modules() if isinstance(m, PackedLinear)]
    free = [m.free_rows for m in linears]  # the probe's verdicts (on this development CPU: all free)
    for m in linears:
        m.free_rows = False  # what a kernel the probe rejects gets: fixed blocks of rows
    gen.prefixes = Prefixes()
    runs["fixed blocks, batch 3"] = gen.decode(prompts, SamplingConfig(max_new_tokens=40, batch_size=3))
    for m, f in zip(linears, free):
        m.free_rows = f
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        gen.prefixes = Prefixes()
        runs["two threads"] = gen.decode(prompts, sampling)
    finally:
        torch.set_num_threads(threads)
    for name, replies in runs.items():
        assert replies == reference, name
