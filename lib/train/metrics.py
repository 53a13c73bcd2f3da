"""Epoch statistics: batch-weighted averages of the actor's stats, classification counts,
per-class accuracy and the confusion matrix (single-label mode) or mAP, macro-F1 and per-class AP
(multi-label mode), reduced over DDP ranks."""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.distributed as dist

from lib.challenges import CLASS_NAMES
from lib.utils.multilabel_metrics import macro_f1, per_class_ap

COUNT_KEYS = ("cls_correct", "cls_labeled")
F1_THRESHOLD = 0.5  # training's macro-F1 threshold on every class's sigmoid (tuned thresholds: the analysis)


def _class_name(class_id: int) -> str:
    return CLASS_NAMES[class_id] if class_id < len(CLASS_NAMES) else str(class_id)


def multi_label_scores(scores: np.ndarray, positives: np.ndarray) -> dict[str, float]:
    """``mAP``, ``MacroF1`` (threshold :data:`F1_THRESHOLD`) and ``AP/<class>`` of the (L, K) sigmoid
    scores and 0 / 1 positives of an epoch's labeled frames; classes without a positive frame are left out."""
    ap = per_class_ap(scores, positives)
    if not np.isfinite(ap).any():  # no positive frame at all: nothing to rank
        return {"mAP": float("nan"), "MacroF1": float("nan")}
    out = {"mAP": float(np.nanmean(ap)),
           "MacroF1": macro_f1(scores, positives, np.full(scores.shape[1], F1_THRESHOLD))}
    out.update({f"AP/{_class_name(k)}": float(value) for k, value in enumerate(ap) if np.isfinite(value)})
    return out


def _gather_rows(rows: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Every rank's (M_r, C) float rows, concatenated in rank order (all_gather needs one shape: pad)."""
    world_size = dist.get_world_size()
    local = rows.to(device)
    size = torch.tensor([local.shape[0]], device=device)
    sizes = [torch.zeros_like(size) for _ in range(world_size)]
    dist.all_gather(sizes, size)
    padded = torch.zeros((max(int(s) for s in sizes), local.shape[1]), dtype=local.dtype, device=device)
    padded[:local.shape[0]] = local
    gathered = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[:int(s)] for g, s in zip(gathered, sizes)]).cpu()


class EpochMetrics:
    """Accumulates per-batch stats dicts of ``HIPTrackActor``.

    ``multi_label`` (``MODEL.CLS_HEAD.MODE: multi``): the epoch has ``mAP``, ``MacroF1`` and
    ``AP/<class>`` from the batches' ``cls_scores`` / ``cls_positives`` instead of the confusion
    matrix and ``Accuracy/<class>``; AP ranks the whole epoch, so the scores are kept until :meth:`reduce`.
    """

    def __init__(self, num_classes: int, multi_label: bool = False) -> None:
        self.sums: dict[str, float] = {}
        self.weight = 0
        self.num_classes = num_classes
        self.multi_label = multi_label
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
        self.scores: list[torch.Tensor] = []     # (L, K) float32 sigmoids per batch
        self.positives: list[torch.Tensor] = []  # (L, K) bool per batch

    def update(self, stats: dict, batch_size: int) -> None:
        self.weight += batch_size
        for key, value in stats.items():
            if key == "cls_confusion":
                self.confusion += value.cpu()
            elif key == "cls_scores":
                self.scores.append(value.detach().float().cpu())
            elif key == "cls_positives":
                self.positives.append(value.cpu().bool())
            elif key in COUNT_KEYS:
                self.sums[key] = self.sums.get(key, 0) + value
            elif key != "Accuracy":  # recomputed from the counts: batches differ in labeled frames
                self.sums[key] = self.sums.get(key, 0.0) + value * batch_size

    def _averages(self, sums: dict, weight: float, confusion: torch.Tensor,
                  scored: torch.Tensor | None = None) -> dict:
        """Epoch numbers from the sums; ``scored`` (L, 2K): the multi-label scores beside their positives."""
        out = {k: v / max(weight, 1) for k, v in sums.items() if k not in COUNT_KEYS}
        labeled = sums.get("cls_labeled", 0)
        if labeled:
            out["Accuracy"] = sums["cls_correct"] / labeled
            if self.multi_label:
                if scored is not None and len(scored):
                    k = self.num_classes
                    out.update(multi_label_scores(scored[:, :k].double().numpy(), scored[:, k:].numpy()))
            else:
                per_class_total = confusion.sum(1)
                for k, total in enumerate(per_class_total.tolist()):
                    if total:
                        out[f"Accuracy/{_class_name(k)}"] = confusion[k, k].item() / total
                out["confusion"] = confusion
        out["labeled_frames"] = float(labeled)
        return out

    def _scored_rows(self) -> torch.Tensor:
        """(L, 2K) float32: this rank's multi-label scores and, beside them, their 0 / 1 positives."""
        if not self.scores:
            return torch.zeros(0, 2 * self.num_classes)
        return torch.cat([torch.cat(self.scores), torch.cat(self.positives).float()], dim=1)

    def summary(self) -> str:
        """Running averages for log lines."""
        avg = self._averages(self.sums, self.weight, self.confusion)
        keys = [k for k in ("Loss/total", "Loss/giou", "Loss/l1", "Loss/location", "Loss/classification", "IoU",
                            "Accuracy") if k in avg]
        return ", ".join(f"{k} {avg[k]:.4f}" for k in keys)

    def reduce(self, distributed: bool, device: torch.device) -> dict:
        """Epoch averages over all ranks."""
        keys = sorted(self.sums)
        if distributed:
            # ranks see the same keys: the actor emits every loss every step (Accuracy excepted)
            packed = torch.tensor([self.sums[k] for k in keys] + [self.weight], dtype=torch.float64, device=device)
            dist.all_reduce(packed)
            confusion = self.confusion.to(device)
            dist.all_reduce(confusion)
            sums = dict(zip(keys, packed[:-1].tolist()))
            scored = _gather_rows(self._scored_rows(), device) if self.multi_label else None
            return self._averages(sums, packed[-1].item(), confusion.cpu(), scored)
        return self._averages(self.sums, self.weight, self.confusion,
                              self._scored_rows() if self.multi_label else None)


def render_confusion_matrix(confusion: torch.Tensor, cell: int = 44) -> np.ndarray:
    """RGB image (H, W, 3) of a confusion matrix: rows true, columns predicted, row-normalised shading."""
    k = confusion.shape[0]
    counts = confusion.numpy()
    rows = counts.sum(1, keepdims=True).clip(min=1)
    margin = 30
    img = np.full((margin + k * cell, margin + k * cell, 3), 255, np.uint8)
    for i in range(k):
        for j in range(k):
            shade = int(255 * (1 - counts[i, j] / rows[i, 0]))
            y, x = margin + i * cell, margin + j * cell
            img[y:y + cell, x:x + cell] = (shade, shade, 255) if i != j else (shade, 255, shade)
            cv2.putText(img, str(counts[i, j]), (x + 3, y + cell // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                        (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, str(i), (8, margin + i * cell + cell // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        cv2.putText(img, str(i), (margin + i * cell + cell // 2 - 4, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
    return img
