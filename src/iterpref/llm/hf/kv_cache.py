"""The running batch's keys and values: one preallocated buffer per layer that each decode step
writes in place, rows refilled as replies finish."""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.cache_utils import Cache, DynamicLayer, get_layer_types_and_kwargs

# Free columns after the newest one. Every step attends to them (masked) and to the columns of
# finished rows until `BatchCache._rebuild` copies the live columns, every ROOM steps. On 32
# rows x 500 columns in fp32 (0.7 GB) the copy takes about 0.15 s: with 32 the copies and the
# wasted attention (16 columns on average) each cost about 1% of the decode time.
ROOM = 32


class _Layer(DynamicLayer):
    """One layer's part of a `BatchCache`: a step writes its columns from ``hi`` in place and
    attends to the layer's whole buffer (contiguous, which `attention.decode_attention`'s matmuls need to
    run at full speed; the mask hides padding, rejected drafts and free columns)."""

    def __init__(self, cache: BatchCache, index: int):
        super().__init__()
        self.cache, self.index, self.is_initialized = cache, index, True

    def update(self, key_states, value_states, *args, **kwargs):
        keys, values = self.cache.kv[self.index]
        hi, new = self.cache.hi, key_states.shape[2]  # the step's tokens per row
        keys[:, :, hi:hi + new] = key_states
        values[:, :, hi:hi + new] = value_states
        return keys, values

    def get_seq_length(self) -> int:
        return self.cache.mask.shape[1] - 1  # so that the model's masks span the whole buffer


class BatchCache(Cache):
    """Keys and values of the rows being decoded, written in place.

    ``kv`` is [layers, 2 (keys, values), rows, kv_heads, columns, head_dim]. All rows' newest
    tokens end before column ``hi``; row r's tokens lie in columns [start[r], hi), where the
    mask marks them. The columns before them (padding), drafts the model rejected (holes) and
    the columns from ``hi`` on (free) are masked out and hold finite numbers. When the free
    columns run out, every `ROOM` columns, `_rebuild` copies each row's real columns into the
    spare buffer, packed to its right, which drops padding, holes and finished rows' columns.
    Two buffers, reused: a fresh 0.7 GB tensor (32 rows of SmolLM2 in fp32) costs 0.6 s in
    page faults on this CPU, six times the copy.
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
        self.mask = torch.zeros((rows, 0), dtype=torch.bool, device=model.device)  # real (not padding) columns
        self.start: list[int | None] = [None] * rows  # None: a free row
        self.hi = 0
        super().__init__(layers=[_Layer(self, i) for i in range(len(kinds))])

    def _rebuild(self, rows: list[int | None] | None = None, left: int = 0) -> None:
        """Copy the real columns of ``rows`` (default all; None: a new free row) into the spare
        buffer, with at least ``left`` columns before ``hi`` and `ROOM` free columns after it."""
        rows = list(range(len(self.start))) if rows is None else rows
        live = [r is not None and self.start[r] is not None for r in rows]
        real = self.mask[:, :self.hi].sum(-1).tolist()  # one read from the device, not one a row
        counts = [real[r] if ok else 0 for r, ok in zip(rows, live)]
        span = max(counts, default=0)
        hi = max(left, span)  # the new hi: padding columns on the left where needed
        shape = torch.Size((*self.kv.shape[:2], len(rows), self.kv.shape[3], hi + ROOM, self.kv.shape[5]))
        if self.buffers[1].numel() < shape.numel():  # rarely: grow the spare buffer by a quarter
            self.buffers[1] = self.kv.new_empty(shape.numel() * 5 // 4)
        new = self.buffers[1][:shape.numel()].view(shape)
        new[..., hi:, :] = 0
        mask = self.mask.new_zeros((len(rows), shape[4]))
        for i, (r, n) in enumerate(zip(rows, counts)):
            new[:, :, i, :, :hi - n] = 0
            if n == 0:
                continue
            lo = self.start[r]
            if n == self.hi - lo:  # no holes: one slice
                new[:, :, i, :, hi - n:hi] = self.kv[:, :, r, :, lo:self.hi]
            else:
                real = self.mask[r, lo:self.hi].nonzero().squeeze(1) + lo
                new[:, :, i, :, hi - n:hi] = self.kv[:, :, r].index_select(3, real)
            mask[i, hi - n:hi] = True
        self.buffers.reverse()
        self.kv, self.mask = new, mask
        self.start = [hi - n if ok else None for ok, n in zip(live, counts)]
        self.hi = hi

    def put(self, row: int, prefill: DynamicCache) -> None:
        """Write a prompt's keys and values (a one-row cache) into free ``row``, ending at ``hi``."""
        n = prefill.get_seq_length()
        if n > self.hi:
            self._rebuild(left=n)
        for (keys, values), layer in zip(self.kv, prefill.layers):
            keys[row, :, self.hi - n:self.hi] = layer.keys[0]
            values[row, :, self.hi - n:self.hi] = layer.values[0]
        self.mask[row] = False
        self.mask[row, self.hi - n:self.hi] = True
        self.start[row] = self.hi - n

    def free(self, row: int) -> None:
        self.start[row] = None

    def keep(self, rows: list[int]) -> None:
        """Keep only ``rows`` (in this order): drop free rows once no prompt is left to admit."""
        self._rebuild(rows)

    def grow(self) -> int:
        """Add a free row (a prompt arrived after the batch shrank); its index."""
        self._rebuild(list(range(len(self.start))) + [None])
        return len(self.start) - 1

    def step_inputs(self, width: int):
        """Open columns [hi, hi + width) for ``width`` new tokens per row (the last token and
        its drafts): their attention mask ([rows, 1, width, columns], causal among the new
        tokens) and positions (real tokens before each)."""
        if self.hi + width > self.mask.shape[1]:
            self._rebuild()
        hi = self.hi
        self.mask[:, hi:hi + width] = True
        positions = self.mask[:, :hi].sum(-1, keepdim=True) + torch.arange(width, device=self.mask.device)
        mask = self.mask[:, None, None, :].repeat(1, 1, width, 1)
        for j in range(width - 1):
            mask[:, :, j, hi + j + 1:hi + width] = False
        return mask, positions

    def commit(self, kept: list[int], width: int) -> None:
        """After a step of ``width`` tokens per row: row r keeps its last token and its first
        ``kept[r]`` drafts; the rejected drafts' columns become holes."""
        for row, k in enumerate(kept):
            self.mask[row, self.hi + 1 + k:self.hi + width] = False
        self.hi += width
