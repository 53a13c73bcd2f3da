"""Classification head for the maritime tracking challenge of a search frame.

The search-region tokens of the shared backbone are mean-pooled (tokens removed by candidate
elimination are left out) and classified by a small MLP. Optionally (``fusion``) the hidden
features condition the map ``F`` (B, C, H, W) the box head reads, through one linear projection
``p`` of them (``cls_head.fusion``):

* ``ADD``: ``F + p`` (a global residual, ``p`` has C channels);
* ``FILM``: ``(1 + tanh(gamma)) * F + beta`` with ``gamma, beta`` the two halves of ``p`` (2C channels;
  feature-wise linear modulation, Perez et al., AAAI 2018), the scale bounded to (0, 2);
* ``GATE``: ``2 sigmoid(p) * F``, a learned gate per channel in (0, 2).

The projection starts at zero, so each mode starts as the identity: a model fine-tuned from HIPTrack
weights begins with exactly HIPTrack's boxes. Optionally (``stem_dim``) the global average of a
convolutional feature map of the search crop is concatenated to the pooled tokens; a LayerNorm
then puts the two on one scale.
"""
from __future__ import annotations

import torch
from torch import nn

from lib.challenges import NUM_CLASSES


def pool_kept_tokens(search_tokens: torch.Tensor, removed_indexes: list[torch.Tensor]) -> torch.Tensor:
    """Mean over the search tokens that candidate elimination kept, (B, HW, C) -> (B, C).

    Eliminated positions hold exact zeros in the backbone output, so summing everything and
    dividing by the number of kept tokens is the masked mean.
    """
    num_removed = sum(r.shape[1] for r in removed_indexes)
    return search_tokens.sum(dim=1) / (search_tokens.shape[1] - num_removed)


FUSION_OUT_CHANNELS = {"ADD": 1, "FILM": 2, "GATE": 1}  # projection width in multiples of the map's channels
LABEL_MODES = ("single", "multi")  # one challenge per frame (softmax) or every challenge present (sigmoids)


class ChallengeClassificationHead(nn.Module):
    """Pooled backbone features -> Linear + ReLU + Dropout -> Linear -> challenge logits."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, num_classes: int = NUM_CLASSES, dropout: float = 0.1,
                 fusion_dim: int | None = None, stem_dim: int = 0, fusion_mode: str = "ADD",
                 label_mode: str = "single") -> None:
        super().__init__()
        if label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be one of {', '.join(LABEL_MODES)}, got {label_mode!r}")
        self.label_mode = label_mode
        if fusion_dim and stem_dim:
            raise ValueError("fusion and stem features exclude each other: the stem input needs the predicted box")
        if fusion_mode not in FUSION_OUT_CHANNELS:
            raise ValueError(f"fusion_mode must be one of {', '.join(FUSION_OUT_CHANNELS)}, got {fusion_mode!r}")
        self.fusion_mode = fusion_mode
        self.stem_dim = stem_dim
        self.input_norm = nn.LayerNorm(in_dim + stem_dim) if stem_dim else None
        self.projection = nn.Sequential(nn.Linear(in_dim + stem_dim, hidden_dim), nn.ReLU(inplace=True),
                                        nn.Dropout(dropout))
        self.classifier = nn.Linear(hidden_dim, num_classes)
        self.fusion = None
        if fusion_dim:
            self.fusion = nn.Linear(hidden_dim, FUSION_OUT_CHANNELS[fusion_mode] * fusion_dim)
            nn.init.zeros_(self.fusion.weight)
            nn.init.zeros_(self.fusion.bias)

    @property
    def reads_stem(self) -> bool:
        """Whether the head also reads a stem feature map (``stem_dim`` > 0) besides the tokens."""
        return self.stem_dim > 0

    def features(self, search_tokens: torch.Tensor, removed_indexes: list[torch.Tensor],
                 stem_map: torch.Tensor | None = None) -> torch.Tensor:
        """Hidden features (B, hidden_dim) of the search tokens (B, HW, C) and, with ``stem_dim``, of the
        stem feature map (B, stem_dim, H, W)."""
        pooled = pool_kept_tokens(search_tokens, removed_indexes)
        if self.reads_stem:
            if stem_map is None or stem_map.shape[1] != self.stem_dim:
                raise ValueError(f"this head needs a ({self.stem_dim}-channel) stem map, got "
                                 f"{None if stem_map is None else tuple(stem_map.shape)}")
            pooled = self.input_norm(torch.cat([pooled, stem_map.mean(dim=(2, 3))], dim=1))
        return self.projection(pooled)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities (B, K) of logits (B, K): a softmax in the single-label mode, independent sigmoids
        in the multi-label mode (computed in float32)."""
        logits = logits.float()
        return torch.softmax(logits, dim=-1) if self.label_mode == "single" else torch.sigmoid(logits)

    def condition(self, box_input: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """The box head's input map (B, C, H, W) conditioned on hidden features (B, hidden_dim) by the fusion mode."""
        p = self.fusion(hidden)[:, :, None, None]
        if self.fusion_mode == "ADD":
            return box_input + p
        if self.fusion_mode == "FILM":
            gamma, beta = p.chunk(2, dim=1)
            return (1 + torch.tanh(gamma)) * box_input + beta
        return 2 * torch.sigmoid(p) * box_input

    def forward(self, search_tokens: torch.Tensor, removed_indexes: list[torch.Tensor],
                stem_map: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``cls_logits`` (B, K), ``cls_features`` (B, hidden) and, with fusion, ``fusion_features`` (B, C or 2C),
        the projection :meth:`condition` applies."""
        hidden = self.features(search_tokens, removed_indexes, stem_map)
        out = {"cls_logits": self.classifier(hidden), "cls_features": hidden}
        if self.fusion is not None:
            out["fusion_features"] = self.fusion(hidden)
        return out
