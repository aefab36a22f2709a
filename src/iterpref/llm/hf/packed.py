"""bfloat16 linear layers for CPU decoding: weights reordered once for oneDNN, and every row's
output independent of the rows computed beside it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F

# oneDNN's bf16 kernels sum a row's products in an order that depends on how many rows the call
# has (another kernel, or the reduction split over threads), so a reply would depend on its
# batch. Every call gets exactly this many rows (the last block padded with zeros): at a fixed
# row count a row's output is a function of that row alone, whatever the other rows, its place
# among them and the thread count (tests/test_batch_invariance.py checks it on the model's
# shapes). A decode step has a row per reply (32: the default batch); a prompt's prefill, whose
# rows only need to agree with other prefills', has its own larger blocks (fewer calls).
ROWS = 32
PREFILL_ROWS = 128
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
    few rows pays for in full), computed in blocks of `ROWS` rows (`PREFILL_ROWS` in a prefill:
    `block_rows`) so that each row's output does not depend on how many rows the call has."""

    def __init__(self, linear: torch.nn.Linear, rows: int = 16):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), rows)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def _block(self, rows):
        return torch.ops.mkldnn._linear_pointwise(rows, self.weight, self.bias, "none", [], "")

    def forward(self, x):
        rows, size = x.reshape(-1, self.in_features), _block_rows.get()
        n = rows.shape[0]
        if n == size:  # a full batch's decode step
            return self._block(rows).view(*x.shape[:-1], self.out_features)
        blocks = F.pad(rows, (0, 0, 0, -n % size)).split(size)
        out = self._block(blocks[0]) if len(blocks) == 1 else torch.cat([self._block(b) for b in blocks])
        return out[:n].view(*x.shape[:-1], self.out_features)


def can_pack() -> bool:
    """Whether oneDNN runs bfloat16 kernels on this CPU (torch's own check: an AVX-512 CPU or newer)."""
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def pack_linears(model) -> int:
    """Replace every `torch.nn.Linear` of a bfloat16 CPU ``model`` by a `PackedLinear` (for
    generation only: the packed weights are no longer parameters); how many were replaced."""
    found = [(parent, name, child) for parent in model.modules()
             for name, child in parent.named_children() if isinstance(child, torch.nn.Linear)]
    for parent, name, child in found:
        setattr(parent, name, PackedLinear(child))
    return len(found)
