"""The decode step's attention for bfloat16 on CPU, registered with transformers as
``iterpref_decode``."""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from iterpref.llm.hf.drafts import MAX_DRAFT


def decode_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
    """Attention of the few new tokens of a decode step (one, or a prompt-lookup draft) as two
    matmuls and a float32 softmax, for bfloat16 on CPU, where torch's flash-attention kernel
    (sdpa) is slower for a few query tokens. Prompts (prefill: no mask, many tokens) go to sdpa.
    The scores are rounded to bfloat16 as in transformers' eager attention."""
    if attention_mask is None or query.shape[2] > MAX_DRAFT + 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    rows, heads, new, dim = query.shape
    groups = heads // key.shape[1]
    query = query.reshape(rows, key.shape[1], groups * new, dim)  # query heads by key head
    scores = torch.matmul(query, key.transpose(-1, -2)).float() * (scaling or dim ** -0.5)
    mask = attention_mask.repeat(1, 1, groups, 1)  # [rows, 1, groups * new, columns], True = attend
    scores = scores.masked_fill(~mask, float("-inf"))
    out = torch.matmul(scores.softmax(-1).to(value.dtype), value)
    return out.view(rows, heads, new, dim).transpose(1, 2), None


AttentionInterface.register("iterpref_decode", decode_attention)
AttentionMaskInterface.register("iterpref_decode", sdpa_mask)
