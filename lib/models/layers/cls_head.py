"""Classification head for the maritime tracking challenge of a search frame.

The search-region tokens of the shared backbone are mean-pooled (tokens removed by candidate
elimination are left out) and classified by a small MLP. Optionally (``fusion``) the hidden
features are projected to the channel count of the map the box head reads, so they can be added
to it as a global residual. The projection starts at zero, so a model fine-tuned from HIPTrack
weights begins with exactly HIPTrack's boxes.
"""
from __future__ import annotations

import torch
from torch import nn


def pool_kept_tokens(search_tokens: torch.Tensor, removed_indexes: list[torch.Tensor]) -> torch.Tensor:
    """Mean over the search tokens that candidate elimination kept, (B, HW, C) -> (B, C).

    Eliminated positions hold exact zeros in the backbone output, so summing everything and
    dividing by the number of kept tokens is the masked mean.
    """
    num_removed = sum(r.shape[1] for r in removed_indexes)
    return search_tokens.sum(dim=1) / (search_tokens.shape[1] - num_removed)


class ChallengeClassificationHead(nn.Module):
    """Pooled backbone features -> Linear + ReLU + Dropout -> Linear -> challenge logits."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, num_classes: int = 10, dropout: float = 0.1,
                 fusion_dim: int | None = None) -> None:
        super().__init__()
        self.projection = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(inplace=True), nn.Dropout(dropout))
        self.classifier = nn.Linear(hidden_dim, num_classes)
        self.fusion = None
        if fusion_dim:
            self.fusion = nn.Linear(hidden_dim, fusion_dim)
            nn.init.zeros_(self.fusion.weight)
            nn.init.zeros_(self.fusion.bias)

    def features(self, search_tokens: torch.Tensor, removed_indexes: list[torch.Tensor]) -> torch.Tensor:
        """Hidden features (B, hidden_dim) of the search tokens (B, HW, C)."""
        return self.projection(pool_kept_tokens(search_tokens, removed_indexes))

    def forward(self, search_tokens: torch.Tensor, removed_indexes: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``cls_logits`` (B, K), ``cls_features`` (B, hidden) and, with fusion, ``fusion_features`` (B, C)."""
        hidden = self.features(search_tokens, removed_indexes)
        out = {"cls_logits": self.classifier(hidden), "cls_features": hidden}
        if self.fusion is not None:
            out["fusion_features"] = self.fusion(hidden)
        return out
