"""Epoch statistics: batch-weighted averages of the actor's stats, classification counts,
per-class accuracy and the confusion matrix, reduced over DDP ranks."""
from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.distributed as dist

from lib.challenges import CLASS_NAMES

COUNT_KEYS = ("cls_correct", "cls_labeled")


class EpochMetrics:
    """Accumulates per-batch stats dicts of ``HIPTrackActor``."""

    def __init__(self, num_classes: int) -> None:
        self.sums: dict[str, float] = {}
        self.weight = 0
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)

    def update(self, stats: dict, batch_size: int) -> None:
        self.weight += batch_size
        for key, value in stats.items():
            if key == "cls_confusion":
                self.confusion += value.cpu()
            elif key in COUNT_KEYS:
                self.sums[key] = self.sums.get(key, 0) + value
            elif key != "Accuracy":  # recomputed from the counts: batches differ in labeled frames
                self.sums[key] = self.sums.get(key, 0.0) + value * batch_size

    def _averages(self, sums: dict, weight: float, confusion: torch.Tensor) -> dict:
        out = {k: v / max(weight, 1) for k, v in sums.items() if k not in COUNT_KEYS}
        labeled = sums.get("cls_labeled", 0)
        if labeled:
            out["Accuracy"] = sums["cls_correct"] / labeled
            per_class_total = confusion.sum(1)
            for k, total in enumerate(per_class_total.tolist()):
                if total:
                    name = CLASS_NAMES[k] if k < len(CLASS_NAMES) else str(k)
                    out[f"Accuracy/{name}"] = confusion[k, k].item() / total
            out["confusion"] = confusion
        out["labeled_frames"] = float(labeled)
        return out

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
            return self._averages(sums, packed[-1].item(), confusion.cpu())
        return self._averages(self.sums, self.weight, self.confusion)


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
