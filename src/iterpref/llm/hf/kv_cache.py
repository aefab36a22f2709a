"""The running batch's keys and values: one preallocated buffer per layer that each decode step
writes in place, rows refilled as replies finish."""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache, DynamicLayer, get_layer_types_and_kwargs

# Free columns after the longest row. Every step attends to all columns (masked after each row's
# tokens); when the longest row reaches the end, `BatchCache._resize` copies the rows into a
# buffer this many columns longer than it. On 32 rows x 500 columns in fp32 (0.7 GB) the copy
# takes about 0.15 s: with 32 the copies and the wasted attention (16 columns on average) each
# cost about 1% of the decode time.
ROOM = 32


class _Layer(DynamicLayer):
    """One layer's part of a `BatchCache`: a step writes each row's new tokens after that row's
    tokens, in place, and attends to the layer's whole buffer (the mask hides the columns after
    each row's tokens)."""

    def __init__(self, cache: BatchCache, index: int):
        super().__init__()
        self.cache, self.index, self.is_initialized = cache, index, True

    def update(self, key_states, value_states, *args, **kwargs):
        keys, values = self.cache.kv[self.index]
        rows, columns = self.cache.rows, self.cache.columns  # [rows, 1], [rows, width]
        keys[rows, :, columns] = key_states.transpose(1, 2)  # indexed: [rows, width, kv_heads, head_dim]
        values[rows, :, columns] = value_states.transpose(1, 2)
        return keys, values

    def get_seq_length(self) -> int:
        return self.cache.kv.shape[4] - 1  # so that the model's masks span the whole buffer


class BatchCache(Cache):
    """Keys and values of the rows being decoded, written in place.

    ``kv`` is [layers, 2 (keys, values), rows, kv_heads, columns, head_dim]. Row r's tokens lie
    in columns [0, lengths[r]), in order, wherever the row is and whatever the other rows hold:
    a token's attention then sums over the same columns in the same places in any batch
    (`attention`). The columns after them are masked and hold finite numbers (drafts the model
    rejected are overwritten by the next step). Two buffers, reused: a fresh 0.7 GB tensor (32
    rows of SmolLM2 in fp32) costs 0.6 s in page faults on this CPU, six times the copy.
    """

    def __init__(self, model, rows: int):
        config = model.config.get_text_config(decoder=True)
        kinds, _ = get_layer_types_and_kwargs(config)
        if any(k != "full_attention" for k in kinds):
            raise NotImplementedError(f"HFGenerator decodes full-attention models only, not {set(kinds)}")
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.kv = torch.zeros((len(kinds), 2, rows, config.num_key_value_heads, 0, head_dim),
                              dtype=model.dtype, device=model.device)
        self.buffers = [self.kv.new_empty(0), self.kv.new_empty(0)]  # flat storage: kv's, spare
        self.lengths: list[int | None] = [None] * rows  # None: a free row
        self.rows = torch.arange(rows, device=model.device)[:, None]
        self.columns = torch.zeros((rows, 0), dtype=torch.long, device=model.device)  # the step's, per row
        super().__init__(layers=[_Layer(self, i) for i in range(len(kinds))])

    def _resize(self, rows: list[int | None], columns: int) -> None:
        """Copy the tokens of ``rows`` (None: a new free row) into the spare buffer, ``columns``
        wide, zeros after them."""
        shape = torch.Size((*self.kv.shape[:2], len(rows), *self.kv.shape[3:4], columns, self.kv.shape[5]))
        if self.buffers[1].numel() < shape.numel():  # rarely: grow the spare buffer by a quarter
            self.buffers[1] = self.kv.new_empty(shape.numel() * 5 // 4)
        new = self.buffers[1][:shape.numel()].view(shape)
        lengths = [None if r is None else self.lengths[r] for r in rows]
        for i, (r, n) in enumerate(zip(rows, lengths)):
            n = n or 0
            if n:
                new[:, :, i, :, :n] = self.kv[:, :, r, :, :n]
            new[:, :, i, :, n:] = 0
        self.buffers.reverse()
        self.kv, self.lengths = new, lengths

    def _fit(self, columns: int) -> None:
        """At least ``columns`` columns: else `ROOM` more than that."""
        if columns > self.kv.shape[4]:
            self._resize(list(range(len(self.lengths))), columns + ROOM)

    def put(self, row: int, prefill: DynamicCache) -> None:
        """Write a prompt's keys and values (a one-row cache) into free ``row``."""
        n = prefill.get_seq_length()
        self._fit(n + 1)
        for (keys, values), layer in zip(self.kv, prefill.layers):
            keys[row, :, :n] = layer.keys[0]
            values[row, :, :n] = layer.values[0]
        self.lengths[row] = n

    def free(self, row: int) -> None:
        self.lengths[row] = None

    def keep(self, rows: list[int]) -> None:
        """Keep only ``rows`` (in this order): drop free rows once no prompt is left to admit."""
        self._resize(rows, max(self.lengths[r] for r in rows) + ROOM)

    def grow(self) -> int:
        """Add a free row (a prompt arrived after the batch shrank); its index."""
        self._resize(list(range(len(self.lengths))) + [None], self.kv.shape[4])
        return len(self.lengths) - 1

    def step_inputs(self, width: int):
        """Open ``width`` columns after each row's tokens for its new tokens (the last token and
        its drafts): their attention mask ([rows, 1, width, columns], causal among the new
        tokens) and positions (the row's tokens before each). A free row computes garbage in
        its columns from 0."""
        lengths = torch.tensor([n or 0 for n in self.lengths], device=self.kv.device)
        self._fit(int(lengths.max()) + width)
        positions = lengths[:, None] + torch.arange(width, device=self.kv.device)
        self.rows = torch.arange(len(self.lengths), device=self.kv.device)[:, None]
        self.columns = positions
        mask = torch.arange(self.kv.shape[4], device=self.kv.device) <= positions[:, :, None]
        return mask[:, None], positions

    def commit(self, kept: list[int]) -> None:
        """After a step: row r keeps its last token and its first ``kept[r]`` drafts."""
        self.lengths = [None if n is None else n + k + 1 for n, k in zip(self.lengths, kept)]
