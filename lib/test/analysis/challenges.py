"""Challenge accuracy: per-frame challenge predictions (``tracking/test.py --save_cls``) scored
against the JSONL challenge labels of the test sequences, with the majority-class baseline; the same
after temporal smoothing (factor chosen on a validation split); multi-label AP / mAP / macro-F1.

    labels = challenge_labels(build_dataset("SYNTHETIC_test", paths, cls_ann_dir=labels_dir))
    challenge_accuracy(results_dir, "got10k", labels)["accuracy"]
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lib.challenges import CLASS_NAMES, IGNORE_INDEX
from lib.dataset.base import SequenceDataset
from lib.test.analysis.multilabel import best_thresholds, macro_f1, mean_average_precision, per_class_ap
from lib.test.evaluation.results import read_challenges, sequence_files
from lib.test.tracker.policies import smooth_probabilities

SMOOTHING_CANDIDATES = (0.0, 0.3, 0.5, 0.7, 0.9)  # TEST.CLS_SMOOTHING values tried on the validation split


def challenge_labels(dataset: SequenceDataset) -> dict[str, np.ndarray]:
    """``{sequence name: (N,) class ids}`` of a dataset built with challenge labels."""
    return {info.name: info.cls_label.numpy() for info in map(dataset.sequence_info, range(len(dataset)))}


class ClassShares:
    """Per challenge class: how many labelled frames had a property (a right prediction, a policy acting)."""

    def __init__(self) -> None:
        self.hits = np.zeros(len(CLASS_NAMES), dtype=np.int64)
        self.frames = np.zeros(len(CLASS_NAMES), dtype=np.int64)

    def add(self, labels: np.ndarray, hits: np.ndarray) -> None:
        """Count frames with class ids ``labels`` (M,) (IGNORE_INDEX left out) and booleans ``hits`` (M,)."""
        labelled = labels != IGNORE_INDEX
        np.add.at(self.frames, labels[labelled], 1)
        np.add.at(self.hits, labels[labelled & hits], 1)

    def shares(self) -> dict[str, float]:
        """``{class name: hits / frames}`` of the classes with frames."""
        return {CLASS_NAMES[k]: self.hits[k] / self.frames[k] for k in range(len(CLASS_NAMES)) if self.frames[k]}


def challenge_accuracy(results: Path, result_format: str, labels: dict[str, np.ndarray]) -> dict:
    """Accuracy of the per-frame challenge predictions (``<seq>_cls.txt``) on labeled frames.

    ``labels`` maps sequence name -> (N,) class ids (IGNORE_INDEX = unlabeled). Frame 1 (the
    template) has no prediction and is left out. Also gives the accuracy of always predicting the
    most frequent class of these frames (the majority baseline) and per-class accuracy.
    """
    correct = total = 0
    per_class = ClassShares()
    for seq, seq_labels in labels.items():
        path = sequence_files(results, seq, result_format).challenges
        if not path.is_file():
            raise FileNotFoundError(f"no challenge predictions for {seq}: {path} (test with --save_cls)")
        predicted, _ = read_challenges(path)
        if len(predicted) != len(seq_labels):
            raise ValueError(f"{path}: {len(predicted)} lines for {len(seq_labels)} frames")
        keep = (seq_labels != IGNORE_INDEX) & (predicted >= 0)
        keep[0] = False
        hits = predicted[keep] == seq_labels[keep]
        correct += int(hits.sum())
        total += int(keep.sum())
        per_class.add(seq_labels[keep], hits)
    if total == 0:
        return {"accuracy": float("nan"), "majority": float("nan"), "majority_class": None, "frames": 0,
                "per_class": {}}
    majority = int(per_class.frames.argmax())
    return {
        "accuracy": correct / total,
        "majority": per_class.frames[majority] / total,
        "majority_class": CLASS_NAMES[majority],
        "frames": total,
        "per_class": per_class.shares(),
    }


def challenge_multi_hot(dataset: SequenceDataset) -> dict[str, np.ndarray]:
    """``{sequence name: (N, K) multi-hot targets}`` of a dataset built with challenge labels (rows of
    unlabeled frames are all 0 and their ``cls_label`` is IGNORE_INDEX)."""
    return {info.name: info.cls_multi_hot.numpy() for info in map(dataset.sequence_info, range(len(dataset)))}


def read_predictions(results: Path, result_format: str, names: list[str]) -> dict[str, np.ndarray]:
    """``{sequence: (N, K) class probabilities}`` of ``<seq>_cls.txt`` files (frame 1, the template, is NaN)."""
    out = {}
    for seq in names:
        path = sequence_files(results, seq, result_format).challenges
        if not path.is_file():
            raise FileNotFoundError(f"no challenge predictions for {seq}: {path} (test with --save_cls)")
        out[seq] = read_challenges(path)[1]
    return out


def smoothed_accuracy(probabilities: dict[str, np.ndarray], labels: dict[str, np.ndarray], alpha: float) -> float:
    """Accuracy of the argmax of the probabilities after the tracker's exponential smoothing over frames
    (``TEST.CLS_SMOOTHING`` = ``alpha``; 0 = the raw predictions), on labeled frames after the first."""
    correct = total = 0
    for seq, seq_labels in labels.items():
        probs = smooth_probabilities(probabilities[seq], alpha)
        if len(probs) != len(seq_labels):
            raise ValueError(f"{seq}: {len(probs)} predictions for {len(seq_labels)} frames")
        keep = (seq_labels != IGNORE_INDEX) & ~np.isnan(probs).any(axis=1)
        keep[0] = False
        correct += int((probs[keep].argmax(axis=1) == seq_labels[keep]).sum())
        total += int(keep.sum())
    return correct / total if total else float("nan")


def choose_smoothing(probabilities: dict[str, np.ndarray], labels: dict[str, np.ndarray],
                     candidates: tuple[float, ...] = SMOOTHING_CANDIDATES) -> tuple[float, dict[float, float]]:
    """The smoothing factor with the best accuracy on these (validation) sequences, and every candidate's
    accuracy; ties go to the smaller factor."""
    accuracy = {a: smoothed_accuracy(probabilities, labels, a) for a in candidates}
    best = max(candidates, key=lambda a: (accuracy[a], -a))
    return best, accuracy


def multilabel_scores(probabilities: dict[str, np.ndarray], multi_hot: dict[str, np.ndarray],
                      labels: dict[str, np.ndarray], thresholds: np.ndarray | None = None) -> dict:
    """Per-class AP, mAP and, with per-class ``thresholds`` (picked on another split), macro-F1 of the
    predictions on labeled frames after the first; ``"thresholds"`` are the best ones on THESE frames
    (use them only when these are the validation frames)."""
    probs, targets = _stack_labeled(probabilities, multi_hot, labels)
    ap = per_class_ap(probs, targets)
    out = {"frames": int(len(probs)), "per_class_ap": {CLASS_NAMES[k]: float(v) for k, v in enumerate(ap)
                                                       if np.isfinite(v)},
           "map": mean_average_precision(probs, targets), "thresholds": best_thresholds(probs, targets).tolist()}
    if thresholds is not None:
        out["macro_f1"] = macro_f1(probs, targets, np.asarray(thresholds))
    return out


def _stack_labeled(probabilities: dict[str, np.ndarray], multi_hot: dict[str, np.ndarray],
                   labels: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(frames, K) probabilities and 0/1 targets of every labeled frame after the first."""
    probs, targets = [], []
    for seq, seq_labels in labels.items():
        keep = seq_labels != IGNORE_INDEX
        keep[0] = False
        probs.append(probabilities[seq][keep])
        targets.append((multi_hot[seq][keep] >= 0.5).astype(np.int64))
    return np.concatenate(probs), np.concatenate(targets)
