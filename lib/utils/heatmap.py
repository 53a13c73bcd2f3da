"""Gaussian centre heatmaps for the CENTER head's location loss (CenterNet / CornerNet style).

For a box of size (w, h) in grid cells, the radius is the smallest of CornerNet's three
solutions for keeping IoU >= ``min_overlap`` when a corner is displaced (the widely used variant
HIPTrack and OSTrack inherit), truncated to an integer; the Gaussian has sigma = (2 r + 1) / 6 and
is cut to the (2 r + 1) square around the rounded centre cell, whose value is exactly 1.
"""
from __future__ import annotations

import torch


def gaussian_radius(wh: torch.Tensor, min_overlap: float = 0.7) -> torch.Tensor:
    """Radius (in cells, float) for box sizes ``wh`` (..., 2) in cells."""
    w, h = wh[..., 0], wh[..., 1]
    b1 = h + w
    c1 = w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + torch.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2 = 2 * (h + w)
    c2 = (1 - min_overlap) * w * h
    r2 = (b2 + torch.sqrt(b2 ** 2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (h + w)
    c3 = (min_overlap - 1) * w * h
    r3 = (b3 + torch.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return torch.minimum(r1, torch.minimum(r2, r3))


def gaussian_heatmaps(boxes_xywh: torch.Tensor, grid: int, min_overlap: float = 0.7) -> torch.Tensor:
    """Target heatmaps (B, grid, grid) for normalised x, y, w, h boxes (B, 4) in the search crop."""
    boxes = boxes_xywh.detach().float() * grid
    wh = boxes[:, 2:]
    centre = torch.round(boxes[:, :2] + wh / 2)                     # (B, 2) integer cell of the centre
    radius = gaussian_radius(wh, min_overlap).clamp_min(0).to(torch.int32).float()  # truncated
    sigma = (2 * radius + 1) / 6
    cells = torch.arange(grid, device=boxes.device, dtype=torch.float32)
    dx = cells[None, :] - centre[:, :1]                             # (B, grid)
    dy = cells[None, :] - centre[:, 1:]
    inside = (dy.abs() <= radius[:, None])[:, :, None] & (dx.abs() <= radius[:, None])[:, None, :]
    dist2 = dy[:, :, None] ** 2 + dx[:, None, :] ** 2
    heat = torch.exp(-dist2 / (2 * sigma[:, None, None] ** 2))
    return torch.where(inside, heat, torch.zeros_like(heat))
