"""Actor: runs HIPTrack(-CLS) on a batch and returns the loss and statistics.

Per search frame, against that frame's ground truth (as the original HIPTrack actor):
``GIOU_WEIGHT * GIoU loss + L1_WEIGHT * L1 + 1 * focal location loss`` on the Gaussian centre
map; the tracking loss is the SUM over the search frames. The classification loss (when the
model has the head) is computed once over all labeled search frames of the batch and added with
weight ``TRAIN.CLS_WEIGHT``. Unlabeled frames (-100) are ignored; a batch without labels adds
exactly 0.

``MODEL.CLS_HEAD.MODE: single`` trains on ``search_cls_label`` (B, N) class ids; ``multi`` trains
binary cross-entropy on ``search_cls_multi_hot`` (B, N, K) (0 / 1 flags or soft targets) and hands
the epoch metrics the sigmoid scores and positives (target > 0) of the labeled frames for mAP and
macro-F1. ``Accuracy`` counts a frame as correct when its top-1 class is one of its targets (in
the single-label mode: is its label).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lib.challenges import IGNORE_INDEX
from lib.models.hiptrack.vit_ce import template_ce_mask
from lib.utils.box_ops import box_cxcywh_to_xyxy, box_xywh_to_xyxy
from lib.utils.cls_loss import build_cls_loss, classification_accuracy, confusion_matrix, top1_in_targets
from lib.utils.heatmap import gaussian_heatmaps
from lib.utils.losses import center_focal_loss, paired_giou


def ce_keep_rate(epoch: int, start_epoch: int, warm_epochs: int, base_keep: float) -> float:
    """Scheduled CE keep ratio: 1 before ``start_epoch``, then a cosine down to ``base_keep``."""
    if epoch < start_epoch:
        return 1.0
    if epoch >= start_epoch + warm_epochs:
        return base_keep
    progress = (epoch - start_epoch) / warm_epochs
    return base_keep + (1 - base_keep) * (math.cos(progress * math.pi) + 1) / 2


class HIPTrackActor:
    """Computes the multi-task training objective for a batch (batch-first tensors)."""

    def __init__(self, net: torch.nn.Module, cfg) -> None:
        self.net = net
        self.cfg = cfg
        self.has_cls = bool(cfg.MODEL.CLS_HEAD.ENABLED)
        self.multi_label = cfg.MODEL.CLS_HEAD.MODE == "multi"
        self.cls_loss = build_cls_loss(cfg) if self.has_cls else None

    def keep_rate(self, epoch: int) -> float | None:
        """CE keep ratio for ``epoch`` (None when the backbone has no CE blocks)."""
        ratios = self.cfg.MODEL.BACKBONE.CE_KEEP_RATIO
        if not ratios:
            return None
        return ce_keep_rate(epoch, self.cfg.TRAIN.CE_START_EPOCH, self.cfg.TRAIN.CE_WARM_EPOCH, ratios[0])

    def forward(self, batch: dict, epoch: int) -> list[dict]:
        """The network's per-frame outputs for ``batch``; with the head (``MODEL.CLS_HEAD.ENABLED``) they
        include ``cls_logits``, in training and in validation alike."""
        template = batch["template_images"][:, 0]
        search = list(batch["search_images"].unbind(1))
        grid = template.shape[-1] // self.cfg.MODEL.BACKBONE.STRIDE
        mask = template_ce_mask(self.cfg, grid, template.shape[0], template.device)
        return self.net(template, search, batch["template_anno"][:, 0], mask, self.keep_rate(epoch),
                        with_challenges=self.has_cls)

    def __call__(self, batch: dict, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        outputs = self.forward(batch, epoch)
        return self.compute_losses(outputs, batch)

    def compute_losses(self, outputs: list[dict], batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        train = self.cfg.TRAIN
        grid = outputs[0]["score_map"].shape[-1]
        giou_sum = l1_sum = loc_sum = 0.0
        ious = []
        for t, out in enumerate(outputs):
            gt = batch["search_anno"][:, t]                                  # (B, 4) normalised xywh
            pred = box_cxcywh_to_xyxy(out["pred_boxes"].float()).view(-1, 4)
            target = box_xywh_to_xyxy(gt.float()).clamp(0.0, 1.0)
            giou, iou = paired_giou(pred, target)
            giou_sum = giou_sum + (1 - giou).mean()
            l1_sum = l1_sum + F.l1_loss(pred, target)
            loc_sum = loc_sum + center_focal_loss(out["score_map"][:, 0], gaussian_heatmaps(gt, grid))
            ious.append(iou.detach())
        loss = train.GIOU_WEIGHT * giou_sum + train.L1_WEIGHT * l1_sum + loc_sum
        stats = {"Loss/giou": giou_sum.item(), "Loss/l1": l1_sum.item(), "Loss/location": loc_sum.item(),
                 "IoU": torch.cat(ious).mean().item()}
        if self.has_cls:
            logits = torch.cat([out["cls_logits"] for out in outputs])        # frame-major (T*B, K)
            labels = batch["search_cls_label"].transpose(0, 1).reshape(-1).to(logits.device)
            if self.multi_label:
                cls_loss, cls_stats = self._multi_label_loss(logits, labels, batch)
            else:
                cls_loss, cls_stats = self._single_label_loss(logits, labels)
            loss = loss + train.CLS_WEIGHT * cls_loss
            stats.update(cls_stats)
            if stats["cls_labeled"]:  # a batch without labels says nothing about accuracy
                stats["Accuracy"] = stats["cls_correct"] / stats["cls_labeled"]
        stats["Loss/total"] = loss.item()
        return loss, stats

    def _single_label_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """Loss and stats of logits (M, K) against class ids (M,) (``-100`` = unlabeled)."""
        cls_loss = self.cls_loss(logits, labels)
        correct, labeled = classification_accuracy(logits.detach(), labels)
        return cls_loss, {"Loss/classification": cls_loss.item(), "cls_correct": correct, "cls_labeled": labeled,
                          "cls_confusion": confusion_matrix(logits.detach(), labels, logits.shape[1])}

    def _multi_label_loss(self, logits: torch.Tensor, labels: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict]:
        """Loss and stats of logits (M, K) against the frames' multi-hot / soft targets (M, K); frames whose
        label (M,) is ``-100`` are unlabeled. ``cls_scores`` (sigmoids) and ``cls_positives`` (target > 0)
        of the labeled frames, (L, K) on the CPU, feed the epoch's mAP and macro-F1."""
        targets = batch["search_cls_multi_hot"].transpose(0, 1).reshape(logits.shape).to(logits.device)
        cls_loss = self.cls_loss(logits, targets, labels)
        correct, labeled = top1_in_targets(logits.detach(), targets, labels)
        keep = labels != IGNORE_INDEX
        return cls_loss, {"Loss/classification": cls_loss.item(), "cls_correct": correct, "cls_labeled": labeled,
                          "cls_scores": torch.sigmoid(logits.detach()[keep].float()).cpu(),
                          "cls_positives": (targets[keep] > 0).cpu()}
