"""CENTER box head (OSTrack): score, size and offset maps on the search feature grid.

Three conv towers read the fused search feature map (B, C, H, W). The score map marks the
target centre cell; the size map gives (w, h) and the offset map the sub-cell (dx, dy) of the
centre, all normalised to the search crop. Boxes are (cx, cy, w, h) in [0, 1] crop units.
"""
from __future__ import annotations

import torch
from torch import nn

SIGMOID_EPS = 1e-4


def conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    """3x3 conv + BatchNorm + ReLU (checkpoint names ``.0`` conv, ``.1`` BN)."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1), nn.BatchNorm2d(out_ch),
                         nn.ReLU(inplace=True))


def clamped_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """Sigmoid kept away from 0 and 1 so the focal loss never takes log(0)."""
    return torch.sigmoid(x).clamp(SIGMOID_EPS, 1 - SIGMOID_EPS)


class CenterPredictor(nn.Module):
    """Score / offset / size towers: C -> ch -> ch/2 -> ch/4 -> ch/8 -> {1, 2, 2} channels."""

    BRANCHES = ("ctr", "offset", "size")

    def __init__(self, in_channels: int, channels: int, feat_size: int) -> None:
        super().__init__()
        self.feat_sz = feat_size
        widths = [in_channels, channels, channels // 2, channels // 4, channels // 8]
        if widths[-1] < 1:
            raise ValueError(f"MODEL.HEAD.NUM_CHANNELS={channels} must be >= 8")
        outputs = {"ctr": 1, "offset": 2, "size": 2}
        for branch in self.BRANCHES:
            for i in range(4):
                setattr(self, f"conv{i + 1}_{branch}", conv_bn_relu(widths[i], widths[i + 1]))
            setattr(self, f"conv5_{branch}", nn.Conv2d(widths[-1], outputs[branch], kernel_size=1))
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def _tower(self, branch: str, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, 6):
            x = getattr(self, f"conv{i}_{branch}")(x)
        return x

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Feature map (B, C, H, W) -> score_map (B,1,H,W), size_map, offset_map (B,2,H,W), pred_boxes (B,1,4)."""
        score_map = clamped_sigmoid(self._tower("ctr", x))
        offset_map = self._tower("offset", x)
        size_map = clamped_sigmoid(self._tower("size", x))
        boxes = self.boxes_from_maps(score_map, size_map, offset_map)
        return {"pred_boxes": boxes.unsqueeze(1), "score_map": score_map,
                "size_map": size_map, "offset_map": offset_map}

    def boxes_from_maps(self, score_map: torch.Tensor, size_map: torch.Tensor,
                        offset_map: torch.Tensor) -> torch.Tensor:
        """Box at the arg-max of ``score_map``: (B, 4) normalised cx, cy, w, h."""
        idx = torch.max(score_map.flatten(1), dim=1, keepdim=True).indices  # (B, 1)
        idx_y = torch.div(idx, self.feat_sz, rounding_mode="trunc")
        idx_x = idx % self.feat_sz
        gather_idx = idx.unsqueeze(1).expand(-1, 2, 1)
        size = size_map.flatten(2).gather(2, gather_idx).squeeze(-1)
        offset = offset_map.flatten(2).gather(2, gather_idx).squeeze(-1)
        return torch.cat([(idx_x.to(offset.dtype) + offset[:, :1]) / self.feat_sz,
                          (idx_y.to(offset.dtype) + offset[:, 1:]) / self.feat_sz, size], dim=1)
