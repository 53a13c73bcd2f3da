"""Label probe: can the challenge labels be learned from the crops the classification head sees?

When HIPTrack-CLS's challenge accuracy stays at the majority class, the cause is either the labels
(noisy, not visible in a search crop, matched to the wrong frames) or the model (too little
training for its features to separate the classes). The probe separates the two: it trains a
small CNN from scratch on exactly the training pipeline's crops (search crop stacked with the
template resized to it) and reports its accuracy on crops of the held-out split against always
answering the training majority class. A probe well above the majority says the labels carry a
learnable signal; a probe at the majority says fix or check the labels first.

The CNN is deliberately not the tracker: convolutions with batch norm pick up blur, pixelation
and contrast from few samples, where a ViT trained from scratch needs far more.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from lib.train.data.loader import set_epoch
from lib.challenges import IGNORE_INDEX

PROBE_WIDTHS = (32, 64, 64, 128)
PROBE_LR = 1e-3
PROBE_WEIGHT_DECAY = 1e-4
PROBE_CLIP_NORM = 1.0


class CropProbe(nn.Module):
    """Four stride-2 conv + BN + ReLU blocks, global average pool, linear: (search, template) -> logits."""

    def __init__(self, num_classes: int, widths: tuple[int, ...] = PROBE_WIDTHS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 6  # search RGB + template RGB
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            channels = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, search: torch.Tensor, template: torch.Tensor) -> torch.Tensor:
        template = F.interpolate(template, size=search.shape[-2:], mode="bilinear", align_corners=False)
        return self.classifier(self.features(torch.cat([search, template], dim=1)))


def batch_logits(model: CropProbe, batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of every search frame of a training-pipeline batch, frame-major (T*B, K) / (T*B,)."""
    template = batch["template_images"][:, 0].to(device)
    frames = batch["search_images"].to(device).unbind(1)
    logits = torch.cat([model(search, template) for search in frames])
    labels = batch["search_cls_label"].transpose(0, 1).reshape(-1).to(device)
    return logits, labels


def add_to_confusion(confusion: np.ndarray, logits: torch.Tensor, labels: torch.Tensor) -> None:
    """Count labeled frames into ``confusion[true, predicted]``."""
    keep = labels != IGNORE_INDEX
    np.add.at(confusion, (labels[keep].cpu().numpy(), logits[keep].argmax(1).cpu().numpy()), 1)


def run_epoch(model: CropProbe, loader: DataLoader, device: torch.device,
              optimiser: torch.optim.Optimizer | None = None) -> np.ndarray:
    """One pass (training when ``optimiser`` is given); the (K, K) confusion matrix of its frames."""
    k = model.classifier.out_features
    confusion = np.zeros((k, k), dtype=np.int64)
    model.train(optimiser is not None)
    for batch in loader:
        with torch.set_grad_enabled(optimiser is not None):
            logits, labels = batch_logits(model, batch, device)
            if optimiser is not None and (labels != IGNORE_INDEX).any():
                loss = F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"label probe: non-finite loss {loss.item()}")
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), PROBE_CLIP_NORM)
                optimiser.step()
        add_to_confusion(confusion, logits.detach(), labels)
    return confusion


@dataclass
class ProbeScore:
    """Held-out accuracy of the probe next to answering the training majority class every time."""
    epoch: int
    train_accuracy: float
    accuracy: float
    majority_class: int
    majority_accuracy: float
    recall: list[float | None]
    labeled: int
    confusion: np.ndarray = field(repr=False)

    @property
    def margin(self) -> float:
        return self.accuracy - self.majority_accuracy

    def as_dict(self) -> dict:
        return {"epoch": self.epoch, "train_accuracy": self.train_accuracy, "accuracy": self.accuracy,
                "majority_class": self.majority_class, "majority_accuracy": self.majority_accuracy,
                "margin": self.margin, "recall": self.recall, "labeled": self.labeled,
                "confusion": self.confusion.tolist()}


def accuracy_of(confusion: np.ndarray) -> float:
    total = confusion.sum()
    return float(np.trace(confusion) / total) if total else 0.0


def score(epoch: int, train_confusion: np.ndarray, held_out: np.ndarray) -> ProbeScore:
    """Scores of one evaluation; the majority class is the most frequent class of the training frames."""
    labeled = int(held_out.sum())
    if not labeled:
        raise ValueError("label probe: the held-out split has no labeled frames (check DATA.VAL.CLS_ANN_DIR)")
    majority = int(train_confusion.sum(1).argmax())
    per_class = held_out.sum(1)
    recall = [float(held_out[c, c] / n) if n else None for c, n in enumerate(per_class)]
    return ProbeScore(epoch, accuracy_of(train_confusion), accuracy_of(held_out), majority,
                      float(per_class[majority] / labeled), recall, labeled, held_out)


def train_probe(train_loader: DataLoader, held_out_loader: DataLoader, num_classes: int, epochs: int,
                device: torch.device, eval_interval: int = 4,
                log: Callable[[ProbeScore], None] | None = None) -> list[ProbeScore]:
    """Train a fresh :class:`CropProbe` for ``epochs``; scores every ``eval_interval`` epochs and at the end.

    The held-out loader is evaluated at the same epoch index every time, so every score sees the
    same crops.
    """
    if epochs < 1 or eval_interval < 1:
        raise ValueError(f"epochs and eval_interval must be >= 1, got {epochs} and {eval_interval}")
    model = CropProbe(num_classes).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=PROBE_LR, weight_decay=PROBE_WEIGHT_DECAY)
    scores = []
    for epoch in range(1, epochs + 1):
        set_epoch(train_loader, epoch)
        train_confusion = run_epoch(model, train_loader, device, optimiser)
        if not train_confusion.sum():
            raise ValueError("label probe: the training split has no labeled frames (check DATA.TRAIN.CLS_ANN_DIR)")
        if epoch % eval_interval == 0 or epoch == epochs:
            set_epoch(held_out_loader, 0)
            scores.append(score(epoch, train_confusion, run_epoch(model, held_out_loader, device)))
            if log is not None:
                log(scores[-1])
    return scores


def format_score(s: ProbeScore, class_names: tuple[str, ...]) -> str:
    """One line: epoch, accuracies, margin and the recall of each class the held-out split has."""
    recall = ", ".join(f"{class_names[c]} {r:.2f}" for c, r in enumerate(s.recall) if r is not None)
    return (f"epoch {s.epoch}: train {s.train_accuracy:.3f}, held-out {s.accuracy:.3f} vs majority "
            f"{s.majority_accuracy:.3f} ({class_names[s.majority_class]}), margin {s.margin:+.3f}; recall: {recall}")


def verdict(best: ProbeScore, min_margin: float = 0.05) -> str:
    """What the best score says about the labels."""
    if best.margin >= min_margin:
        return (f"labels are learnable from the crops: the probe beats the majority class by {best.margin:.3f}; "
                "a head stuck at the majority needs more training or better features, not other labels")
    return (f"the probe does not beat the majority class by {min_margin} (margin {best.margin:+.3f}): check the "
            "labels (tracking/test_cls_annotations.py), their frame matching, or train the probe longer")
