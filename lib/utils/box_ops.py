"""Box format conversions and target masks.

Formats: ``xywh`` = (x1, y1, w, h), ``cxcywh`` = (centre x, centre y, w, h), ``xyxy`` =
(x1, y1, x2, y2). Functions work on the last dimension of tensors.
"""
from __future__ import annotations

import torch


def box_cxcywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    cx, cy, w, h = boxes.unbind(-1)
    return torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], dim=-1)


def box_xyxy_to_cxcywh(boxes: torch.Tensor) -> torch.Tensor:
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], dim=-1)


def box_xywh_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    x, y, w, h = boxes.unbind(-1)
    return torch.stack([x, y, x + w, y + h], dim=-1)


def box_xyxy_to_xywh(boxes: torch.Tensor) -> torch.Tensor:
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([x1, y1, x2 - x1, y2 - y1], dim=-1)


def normalized_cxcywh_to_pixel_xyxy(boxes_cxcywh: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 4) normalised cx, cy, w, h -> integer pixel x1, y1, x2, y2 (truncated toward zero)."""
    return (box_cxcywh_to_xyxy(boxes_cxcywh) * size).int()


def normalized_xywh_to_pixel_xyxy(boxes_xywh: torch.Tensor, size: int) -> torch.Tensor:
    """(B, 4) normalised x, y, w, h -> integer pixel x1, y1, x2, y2; x2 = int(x) + int(w)."""
    xywh = (boxes_xywh * size).int()
    return torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)


def box_masks(boxes_xyxy: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Binary masks (B, H, W) that are 1 inside integer pixel boxes (B, 4), clipped to the image."""
    x1, y1, x2, y2 = boxes_xyxy.to(torch.long).unbind(-1)
    ys = torch.arange(height, device=boxes_xyxy.device)
    xs = torch.arange(width, device=boxes_xyxy.device)
    inside_y = (ys[None] >= y1[:, None]) & (ys[None] < y2[:, None])
    inside_x = (xs[None] >= x1[:, None]) & (xs[None] < x2[:, None])
    return (inside_y[:, :, None] & inside_x[:, None, :]).float()


def kept_patch_masks(removed_indexes: list[torch.Tensor], batch: int, grid: int, patch: int,
                     device: torch.device) -> torch.Tensor:
    """Masks (B, grid*patch, grid*patch) that are 0 on patches removed by candidate elimination."""
    keep = torch.ones(batch, grid * grid, device=device)
    for removed in removed_indexes:
        keep.scatter_(1, removed.to(device=device, dtype=torch.long), 0.0)
    keep = keep.view(batch, grid, grid)
    return keep.repeat_interleave(patch, dim=1).repeat_interleave(patch, dim=2)
