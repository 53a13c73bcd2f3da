"""Transformer block with candidate elimination (CE), as used by OSTrack and HIPTrack.

Candidate elimination (Ye et al., OSTrack, ECCV 2022) drops the search tokens that the
template attends to least, so later blocks run on fewer tokens. Only the attention rows of the
template queries are needed for that decision, so the block computes its output with fused
attention (``scaled_dot_product_attention``) and, in CE blocks only, recomputes the small
``(template rows x all keys)`` slice of the attention map explicitly.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention with fused kernels and optional template-row attention maps."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, num_rows: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend over ``x`` (B, N, C).

        Returns the block output (B, N, C) and, when ``num_rows > 0``, the softmax attention of
        the first ``num_rows`` queries over all N keys, (B, heads, num_rows, N).
        """
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        out = self.proj(out.transpose(1, 2).reshape(B, N, C))
        rows = None
        if num_rows:
            # fp32 even under autocast: the ranking of search tokens must not depend on precision
            with torch.autocast(device_type=x.device.type, enabled=False):
                logits = (q[:, :, :num_rows].float() @ k.float().transpose(-2, -1)) * self.scale
                rows = logits.softmax(dim=-1)
        return out, rows


def template_to_search_attention(rows: torch.Tensor, num_template: int,
                                 template_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean attention from (selected) template queries to each search token, (B, L_s).

    ``rows`` is (B, heads, L_t, L_t + L_s); ``template_mask`` (B, L_t) bool picks the template
    queries that vote (all of them when None). Averages over queries first, then heads.
    """
    to_search = rows[..., num_template:]
    if template_mask is None:
        return to_search.mean(dim=2).mean(dim=1)
    weights = template_mask.to(rows.dtype)
    weights = weights / weights.sum(dim=1, keepdim=True)
    return torch.einsum("bhts,bt->bhs", to_search, weights).mean(dim=1)


def eliminate_candidates(tokens: torch.Tensor, search_scores: torch.Tensor, num_template: int,
                         keep_ratio: float, global_index: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Keep the ``ceil(keep_ratio * L_s)`` best-scored search tokens.

    Args:
        tokens: (B, L_t + L_s, C) template tokens first.
        search_scores: (B, L_s) attention received by each current search token.
        global_index: (B, L_s) position of each current search token in the full search grid.

    Returns:
        tokens (B, L_t + L_keep, C), kept global indices (B, L_keep) and removed global
        indices (B, L_s - L_keep), or None when nothing is removed.
    """
    num_search = search_scores.shape[1]
    num_keep = math.ceil(keep_ratio * num_search)
    if num_keep == num_search:
        return tokens, global_index, None
    order = torch.sort(search_scores, dim=1, descending=True).indices
    keep, drop = order[:, :num_keep], order[:, num_keep:]
    search_tokens = tokens[:, num_template:]
    kept = search_tokens.gather(1, keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
    return (torch.cat([tokens[:, :num_template], kept], dim=1),
            global_index.gather(1, keep), global_index.gather(1, drop))


class CEBlock(nn.Module):
    """Pre-norm ViT block; with ``keep_ratio < 1`` it also eliminates search candidates."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0, keep_ratio: float = 1.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU)
        self.keep_ratio = keep_ratio

    def effective_keep_ratio(self, keep_rate: float | None) -> float:
        """The block's own ratio, overridden by a scheduled ``keep_rate`` (1 disables CE)."""
        if self.keep_ratio >= 1 or (keep_rate is not None and keep_rate >= 1):
            return 1.0
        return self.keep_ratio if keep_rate is None else keep_rate

    def forward(self, x: torch.Tensor, num_template: int, global_index: torch.Tensor,
                template_mask: torch.Tensor | None = None, keep_rate: float | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Returns tokens, global indices of the kept search tokens, removed indices (or None)."""
        ratio = self.effective_keep_ratio(keep_rate)
        out, rows = self.attn(self.norm1(x), num_rows=num_template if ratio < 1 else 0)
        x = x + self.drop_path(out)
        removed = None
        if rows is not None:
            scores = template_to_search_attention(rows, num_template, template_mask)
            x, global_index, removed = eliminate_candidates(x, scores, num_template, ratio, global_index)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, global_index, removed
