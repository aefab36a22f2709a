"""bfloat16 linear layers with their weights reordered once for oneDNN (CPU decoding)."""

from __future__ import annotations

import torch


class PackedLinear(torch.nn.Module):
    """A bfloat16 `torch.nn.Linear` for CPU decoding, its weight reordered once into oneDNN's
    blocked layout. A plain bf16 weight is reordered inside every call, which a decode step of a
    few rows pays for in full; the outputs are equal bit for bit (the same kernel runs, only the
    reorder moves)."""

    def __init__(self, linear: torch.nn.Linear, rows: int = 16):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), rows)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x):
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")


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
