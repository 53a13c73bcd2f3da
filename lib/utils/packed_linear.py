"""Linear layers whose weights are packed once for oneDNN, for inference on the CPU.

torch's CPU ``nn.Linear`` hands every call to a BLAS matrix product that reads the weight in its plain
layout. oneDNN's linear with the weight reordered once into its own blocked layout does the same
products 10-25 % faster for ViT-B's layers on an AVX-512 CPU (fp32 and bf16), so a tracker frame,
whose time is mostly those products, gets about 10 % faster (docs/benchmarks.md). Outputs equal
``nn.Linear``'s up to float rounding (another summation order). Small layers are left alone: below
about 256 x 256 weights the oneDNN call's fixed cost (~15 us) outweighs the gain.

Inference only: the packed layers have no backward, and :func:`packed_linear_copy` leaves the network
it is given untouched, so training or other trackers can keep using it.
"""
from __future__ import annotations

import copy
import functools

import torch
from torch import nn

MIN_PACKED_WEIGHT = 256 * 256  # in_features * out_features below which a layer keeps torch's linear


@functools.cache
def packed_linear_available() -> bool:
    """Whether this torch build runs oneDNN's linear with a packed weight on this CPU."""
    try:
        weight = torch.ops.mkldnn._reorder_linear_weight(torch.ones(2, 2), None)
        out = torch.ops.mkldnn._linear_pointwise(torch.ones(1, 2), weight, None, "none", [], "")
    except (AttributeError, RuntimeError, NotImplementedError):
        return False
    return bool(torch.equal(out, torch.full((1, 2), 2.0)))


class PackedLinear(nn.Module):
    """``linear``'s product with its weight packed once for oneDNN (CPU, no gradient).

    The weight keeps the dtype it had (fp32, or bf16 in a tracker's bf16 copy); inputs of another
    dtype are cast to it first, as bf16 autocast casts a linear layer's input.
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        weight = linear.weight.detach()
        self.dtype = weight.dtype
        # not in state_dict: the packed layout is this CPU's, not a checkpoint format
        self.register_buffer("packed_weight", torch.ops.mkldnn._reorder_linear_weight(weight, None), persistent=False)
        bias = None if linear.bias is None else linear.bias.detach()
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != self.dtype:
            x = x.to(self.dtype)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, dtype={self.dtype}, packed"


def packed_linear_copy(network: nn.Module, min_weight: int | None = None) -> nn.Module:
    """Inference copy of ``network`` whose ``nn.Linear`` layers with at least ``min_weight`` weights
    (default :data:`MIN_PACKED_WEIGHT`) are :class:`PackedLinear`; ``network`` itself when it has none
    (nothing to gain, no copy made).

    The copy shares no tensors with ``network`` that it could change, and its parameters do not
    require gradients. Build it after the weights are loaded: later changes to ``network`` do not
    reach it.
    """
    min_weight = MIN_PACKED_WEIGHT if min_weight is None else min_weight
    packed = {id(m): PackedLinear(m) for m in network.modules()
              if isinstance(m, nn.Linear) and m.in_features * m.out_features >= min_weight}
    if not packed:
        return network
    inference = copy.deepcopy(network, packed)  # the memo puts each packed layer where its linear was
    inference.requires_grad_(False)
    return inference
