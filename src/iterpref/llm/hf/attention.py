"""Attention whose result for a token does not depend on the batch, registered with transformers
as ``iterpref_decode`` (bfloat16 on CPU).

A token's attention output must be a function of its query and of the keys and values of the
tokens before it, whatever else the call computes: the rows decoding beside it and how many
columns their cache needs (`kv_cache.BatchCache` keeps every row's tokens from column 0 on, the
columns after them masked), or, in a prefill, how long the prompt is and how much of it came
from a stored prefix. torch's kernels do not give that: a matmul sums in an order that depends
on how many rows it has, its softmax takes another path for a row under 16 columns, and sdpa's
flash kernel splits keys and queries into blocks by the lengths of the call. So queries go
through in blocks of a fixed size (one token of each row in a decode step, `QUERY_BLOCK` in a
prefill), each block's scores and weighted values as two matmuls over all the key columns, the
masked ones weighted exactly zero. The softmax's exponentials, their sum and the division run in
float64: torch computes ``exp`` of most elements of a tensor in vector code and of the last few
(and, split over threads, of the last few of each thread's share) in scalar code, which differ in
the last bit, and which elements those are depends on the tensor's size, so on the batch. In
float64 such a difference, or another order of the sum, is about 2^-52 of the weight, which the
weight's rounding to the values' dtype (8 bits in bfloat16) practically never sees.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

# Prompt tokens per block of a prefill's attention (padded: a block always has this many).
QUERY_BLOCK = 64


def scores(query, key, visible, scaling: float):
    """The scaled scores of ``query`` [b, kv_heads, m, dim] against all columns of ``key``
    [b, kv_heads, columns, dim] in float32, -inf where ``visible`` (broadcast to [b, kv_heads, m,
    columns]) is False, less each row's maximum. The products are rounded to the input dtype as in
    transformers' eager attention."""
    weights = torch.matmul(query, key.transpose(-1, -2)).float().mul_(scaling)
    weights.masked_fill_(~visible, float("-inf"))
    return weights.sub_(weights.amax(-1, keepdim=True))


def attend(query, key, value, visible, scaling: float):
    """Softmax attention of ``query`` over all columns of ``key`` and ``value`` [b, kv_heads,
    columns, dim] where ``visible`` is True (`scores`), the softmax in float64."""
    weights = scores(query, key, visible, scaling).double().exp_()
    weights.div_(weights.sum(-1, keepdim=True))
    return torch.matmul(weights.to(value.dtype), value)


def decode_step_attention(query, key, value, attention_mask, scaling: float):
    """A decode step: each of the ``width`` new tokens of every row on its own (its last token,
    then its prompt-lookup drafts), under the step's mask [rows, 1, width, columns]."""
    rows, heads, width, dim = query.shape
    kv_heads = key.shape[1]
    out = [attend(query[:, :, j].reshape(rows, kv_heads, heads // kv_heads, dim), key, value,
                  attention_mask[:, :, j, None], scaling).view(rows, 1, heads, dim)
           for j in range(width)]
    return out[0] if width == 1 else torch.cat(out, dim=1)  # [rows, width, heads, dim]


def prefill_attention(query, key, value, attention_mask, scaling: float):
    """Prompts' new tokens (the last ``q`` columns of the cache), in blocks of `QUERY_BLOCK`
    tokens (the last one padded), under ``attention_mask`` [b, 1, q, columns] or, where it is
    None, the causal mask."""
    b, heads, q, dim = query.shape
    kv_heads, columns = key.shape[1], key.shape[2]
    groups, pad = heads // kv_heads, -q % QUERY_BLOCK
    if attention_mask is None:
        position = torch.arange(columns - q, columns, device=query.device)
        attention_mask = torch.arange(columns, device=query.device) <= position[:, None]
    visible = attention_mask.expand(b, 1, q, columns)
    visible = torch.cat([visible, visible.new_ones(b, 1, pad, columns)], dim=2)
    query = F.pad(query, (0, 0, 0, pad))
    out = []
    for lo in range(0, q + pad, QUERY_BLOCK):
        block = query[:, :, lo:lo + QUERY_BLOCK].reshape(b, kv_heads, groups * QUERY_BLOCK, dim)
        rows = visible[:, :, lo:lo + QUERY_BLOCK].repeat(1, 1, groups, 1)  # (group, token), as the block
        out.append(attend(block, key, value, rows, scaling).view(b, heads, QUERY_BLOCK, dim))
    return torch.cat(out, dim=2)[:, :, :q].transpose(1, 2)


def batch_invariant_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None,
                              decode_step: bool = False, **kwargs):
    """transformers' attention interface: a decode step of `kv_cache.BatchCache` when the model
    is called with ``decode_step=True`` (its mask given), else a prefill of one prompt."""
    scaling = scaling or query.shape[-1] ** -0.5
    if decode_step:
        return decode_step_attention(query, key, value, attention_mask, scaling), None
    return prefill_attention(query, key, value, attention_mask, scaling), None


AttentionInterface.register("iterpref_decode", batch_invariant_attention)
AttentionMaskInterface.register("iterpref_decode", sdpa_mask)
