"""bfloat16 linear layers for CPU decoding: weights reordered once for oneDNN, and every row's
output independent of the rows computed beside it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F

# A reply must not depend on its batch, so a row's output must not depend on how many rows the
# call computes. oneDNN's bf16 kernels on an AVX-512 CPU give every row the same output in calls of
# any row count from 2 up (a call of one row takes another path, whose sums round otherwise), so
# a call gets all its rows at once, a single row padded to two. Where a layer's kernel is not so
# (`rows_independent`, probed on random rows as the model is packed: other CPUs, other oneDNN
# versions), its calls get exactly `ROWS` rows (the last block padded with zeros), at which a
# row's output is a function of that row alone, whatever the other rows, its place among them and
# the thread count; a prefill, whose rows only need to agree with other prefills', then has its
# own larger blocks (fewer calls). tests/test_batch_invariance.py checks replies either way.
ROWS = 32
PREFILL_ROWS = 128
PROBE_SPLITS = (2, 3, 5, 8, 13, 64, 128)  # row counts `rows_independent` tries; 128 rows split by none leaves 1
_block_rows: ContextVar[int] = ContextVar("block_rows", default=ROWS)


@contextmanager
def block_rows(rows: int) -> Iterator[None]:
    """`PackedLinear` calls in this block (and thread) compute ``rows`` rows at a time."""
    token = _block_rows.set(rows)
    try:
        yield
    finally:
        _block_rows.reset(token)


class PackedLinear(torch.nn.Module):
    """A bfloat16 `torch.nn.Linear` for CPU decoding, its weight reordered once into oneDNN's
    blocked layout (a plain bf16 weight is reordered inside every call, which a decode step of a
    few rows pays for in full), each row's output independent of how many rows the call has: all
    rows in one call (at least two) when ``free_rows``, else blocks of `ROWS` rows (`PREFILL_ROWS`
    in a prefill: `block_rows`)."""

    def __init__(self, linear: torch.nn.Linear, rows: int = 16, free_rows: bool = False):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), rows)
        self.bias = None if linear.bias is None else linear.bias.detach()
        self.free_rows = free_rows

    def _block(self, rows):
        return torch.ops.mkldnn._linear_pointwise(rows, self.weight, self.bias, "none", [], "")

    def forward(self, x):
        rows = x.reshape(-1, self.in_features)
        n = rows.shape[0]
        size = max(n, 2) if self.free_rows else _block_rows.get()
        if n == size:  # all rows at once, or a full batch's decode step
            return self._block(rows).view(*x.shape[:-1], self.out_features)
        blocks = F.pad(rows, (0, 0, 0, -n % size)).split(size)
        out = self._block(blocks[0]) if len(blocks) == 1 else torch.cat([self._block(b) for b in blocks])
        return out[:n].view(*x.shape[:-1], self.out_features)


def can_pack() -> bool:
    """Whether oneDNN runs bfloat16 kernels on this CPU (torch's own check: an AVX-512 CPU or newer)."""
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def rows_independent(layer: PackedLinear) -> bool:
    """Whether ``layer``'s kernel gives 128 random rows the same outputs in calls of each of
    `PROBE_SPLITS` rows as in blocks of `ROWS`."""
    generator = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(128, layer.in_features, generator=generator)).to(torch.bfloat16)
    reference = torch.cat([layer._block(b) for b in x.split(ROWS)])
    return all(torch.equal(torch.cat([layer._block(b) for b in x.split(m)]), reference) for m in PROBE_SPLITS)


def pack_linears(model) -> int:
    """Replace every `torch.nn.Linear` of a bfloat16 CPU ``model`` by a `PackedLinear` (for
    generation only: the packed weights are no longer parameters), with free row counts where
    `rows_independent` holds for the first layer of its shape; how many were replaced."""
    found = [(parent, name, child) for parent in model.modules()
             for name, child in parent.named_children() if isinstance(child, torch.nn.Linear)]
    free: dict[tuple, bool] = {}
    for parent, name, child in found:
        layer = PackedLinear(child)
        shape = (layer.in_features, layer.out_features, layer.bias is not None)
        if shape not in free:
            free[shape] = rows_independent(layer)
        layer.free_rows = free[shape]
        setattr(parent, name, layer)
    return len(found)
