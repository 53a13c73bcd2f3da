"""Box and location losses of the HIPTrack / OSTrack training objective."""
from __future__ import annotations

import torch


def paired_giou(boxes1_xyxy: torch.Tensor, boxes2_xyxy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """GIoU and IoU of corresponding boxes (N, 4) x1, y1, x2, y2 -> (N,), (N,)."""
    area1 = (boxes1_xyxy[:, 2:] - boxes1_xyxy[:, :2]).clamp(min=0).prod(dim=1)
    area2 = (boxes2_xyxy[:, 2:] - boxes2_xyxy[:, :2]).clamp(min=0).prod(dim=1)
    inter = (torch.minimum(boxes1_xyxy[:, 2:], boxes2_xyxy[:, 2:])
             - torch.maximum(boxes1_xyxy[:, :2], boxes2_xyxy[:, :2])).clamp(min=0).prod(dim=1)
    union = area1 + area2 - inter
    iou = inter / union.clamp(min=1e-7)
    hull = (torch.maximum(boxes1_xyxy[:, 2:], boxes2_xyxy[:, 2:])
            - torch.minimum(boxes1_xyxy[:, :2], boxes2_xyxy[:, :2])).clamp(min=0).prod(dim=1)
    return iou - (hull - union) / hull.clamp(min=1e-7), iou


def center_focal_loss(pred: torch.Tensor, target: torch.Tensor, alpha: float = 2.0, beta: float = 4.0) -> torch.Tensor:
    """CenterNet focal loss of a score map ``pred`` in (0, 1) against a Gaussian ``target`` of the same shape.

    Positives are the cells where the target is exactly 1; the loss is normalised by their count
    (by 1 when there are none, e.g. a centre outside the crop).
    """
    pred = pred.float().clamp(min=1e-12)
    target = target.float()
    positive = target.eq(1).float()
    negative = 1.0 - positive
    pos_loss = torch.log(pred) * (1 - pred) ** alpha * positive
    neg_loss = torch.log((1 - pred).clamp(min=1e-12)) * pred ** alpha * (1 - target) ** beta * negative
    num_pos = positive.sum()
    return -(pos_loss.sum() + neg_loss.sum()) / num_pos.clamp(min=1.0)
