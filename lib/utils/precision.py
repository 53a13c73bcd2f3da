"""Reduced-precision inference: which CPUs run bf16 fast, and a network copy with its weights cast once.

Under ``torch.autocast`` every convolution, linear layer and matrix product casts its fp32 weight
to bf16 on each call: for ViT-B that is ~120 M weights re-cast per tracked frame. A network whose
layers of those kinds already hold bf16 weights skips those casts and gives the same outputs under
autocast (the cast is the same rounding, done once); every other parameter and buffer (layer norm,
batch norm, position embeddings) stays fp32, so each op runs in the precision autocast picks for it.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

# layer types whose forward is an op on autocast's lower-precision list (conv*, linear, ...)
AUTOCAST_LAYERS: tuple[type[nn.Module], ...] = (nn.Linear, nn.modules.conv._ConvNd)


def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN has native bf16 kernels on this CPU (AVX512-BF16 or AMX); without them bf16
    convolutions and matrix products fall back to slow kernels and run slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def autocast_weight_copy(network: nn.Module, dtype: torch.dtype = torch.bfloat16) -> nn.Module:
    """Inference copy of ``network`` whose :data:`AUTOCAST_LAYERS` weights and biases are ``dtype``.

    Run it under ``torch.autocast(dtype=dtype)``: the outputs equal the fp32 network's under that
    autocast, without casting the weights on every call. ``network`` itself is left untouched (fp32
    callers may share it); the copy's parameters do not require gradients.
    """
    memo: dict[int, object] = {}
    for module in network.modules():
        if isinstance(module, AUTOCAST_LAYERS):
            for param in module.parameters(recurse=False):
                if param.is_floating_point():  # cast straight into the copy: no transient fp32 duplicate
                    memo[id(param)] = nn.Parameter(param.detach().to(dtype), requires_grad=False)
    inference = copy.deepcopy(network, memo)
    inference.requires_grad_(False)
    return inference
