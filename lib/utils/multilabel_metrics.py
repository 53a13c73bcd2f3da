"""Multi-label challenge metrics: per-class average precision, mAP and macro-F1 at tuned thresholds.

A frame can show several challenges at once (occlusion during a scale change, say), so in the
multi-label mode every class is a yes/no question scored on its own. Inputs are ``(N, K)`` arrays of
per-class probabilities and 0/1 targets over the N labelled frames.

* Average precision (AP) of a class: the mean, over its positive frames, of the precision among the
  frames ranked at or above it (the step-wise area under the precision-recall curve, as
  ``sklearn.metrics.average_precision_score``); tied scores are ranked together. A class without a
  positive frame has no AP (nan) and is left out of mAP.
* F1 needs a threshold per class. :func:`best_thresholds` picks, on a validation split, the threshold
  that maximises each class's F1; :func:`macro_f1` then scores another split with those thresholds
  (never tune on the split you report). Training logs macro-F1 at the fixed threshold 0.5.

Pure numpy, below training and testing alike: the trainer's epoch metrics
(``lib/train/metrics.py``) and the result analysis (``lib/test/analysis/multilabel.py``) both use it.
"""
from __future__ import annotations

import numpy as np


def _check(probs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets)
    if probs.ndim != 2 or probs.shape != targets.shape:
        raise ValueError(f"probs {probs.shape} and targets {targets.shape} must both be (frames, classes)")
    if not np.isin(targets, (0, 1)).all():
        raise ValueError("targets must be 0 or 1 (threshold soft targets first)")
    return probs, targets.astype(bool)


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """AP of one class: ``sum over thresholds of (recall step) * precision``; nan without positives."""
    scores, positives = np.asarray(scores, dtype=np.float64), np.asarray(positives, dtype=bool)
    total = int(positives.sum())
    if total == 0:
        return float("nan")
    order = np.argsort(-scores, kind="mergesort")
    scores, positives = scores[order], positives[order]
    # one operating point per distinct score: the last index of each run of equal scores
    last = np.r_[np.flatnonzero(np.diff(scores)), scores.size - 1]
    true_pos = np.cumsum(positives)[last]
    precision = true_pos / (last + 1)
    recall_step = np.diff(np.r_[0, true_pos]) / total
    return float(np.sum(recall_step * precision))


def per_class_ap(probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(K,) AP of every class (nan for a class without positives)."""
    probs, targets = _check(probs, targets)
    return np.array([average_precision(probs[:, k], targets[:, k]) for k in range(probs.shape[1])])


def mean_average_precision(probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean AP over the classes that have positive frames (nan if none has)."""
    ap = per_class_ap(probs, targets)
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")


def f1_scores(probs: np.ndarray, targets: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(K,) F1 = 2 TP / (predicted positives + actual positives) of every class, ``prob >= threshold`` being a
    predicted positive; nan for a class with neither (nothing to score)."""
    probs, targets = _check(probs, targets)
    predicted = probs >= np.asarray(thresholds, dtype=np.float64)[None, :]
    true_pos = (predicted & targets).sum(axis=0)
    denominator = predicted.sum(axis=0) + targets.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * true_pos / np.where(denominator > 0, denominator, 1), np.nan)


def macro_f1(probs: np.ndarray, targets: np.ndarray, thresholds: np.ndarray) -> float:
    """Mean F1 over the classes that have positive frames, at the given per-class thresholds."""
    probs, targets = _check(probs, targets)
    scored = targets.any(axis=0)
    if not scored.any():
        return float("nan")
    return float(np.nanmean(f1_scores(probs, targets, thresholds)[scored]))


def best_thresholds(probs: np.ndarray, targets: np.ndarray, default: float = 0.5) -> np.ndarray:
    """(K,) per-class threshold with the highest F1 on these frames (pick them on a validation split).

    Candidates are the distinct scores of the class (a threshold equal to a score makes that frame
    positive); ties in F1 go to the highest threshold. A class without positive frames keeps ``default``.
    """
    probs, targets = _check(probs, targets)
    out = np.full(probs.shape[1], float(default))
    for k in range(probs.shape[1]):
        scores, positives = probs[:, k], targets[:, k]
        total = int(positives.sum())
        if total == 0:
            continue
        order = np.argsort(-scores, kind="mergesort")
        sorted_scores, sorted_pos = scores[order], positives[order]
        last = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
        true_pos = np.cumsum(sorted_pos)[last]
        f1 = 2 * true_pos / ((last + 1) + total)
        out[k] = sorted_scores[last[int(np.argmax(f1))]]  # argmax takes the first (highest-threshold) best
    return out
