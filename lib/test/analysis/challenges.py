"""Challenge accuracy: per-frame challenge predictions (``tracking/test.py --save_cls``) scored
against the JSONL challenge labels of the test sequences, with the majority-class baseline.

    labels = challenge_labels(build_dataset("SYNTHETIC_test", paths, cls_ann_dir=labels_dir))
    challenge_accuracy(results_dir, "got10k", labels)["accuracy"]
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lib.challenges import CLASS_NAMES, IGNORE_INDEX
from lib.dataset.base import SequenceDataset
from lib.test.evaluation.results import read_challenges, sequence_files


def challenge_labels(dataset: SequenceDataset) -> dict[str, np.ndarray]:
    """``{sequence name: (N,) class ids}`` of a dataset built with challenge labels."""
    return {info.name: info.cls_label.numpy() for info in map(dataset.sequence_info, range(len(dataset)))}


def challenge_accuracy(results: Path, result_format: str, labels: dict[str, np.ndarray]) -> dict:
    """Accuracy of the per-frame challenge predictions (``<seq>_cls.txt``) on labeled frames.

    ``labels`` maps sequence name -> (N,) class ids (IGNORE_INDEX = unlabeled). Frame 1 (the
    template) has no prediction and is left out. Also gives the accuracy of always predicting the
    most frequent class of these frames (the majority baseline) and per-class accuracy.
    """
    correct = total = 0
    per_class_correct = np.zeros(len(CLASS_NAMES), dtype=np.int64)
    per_class_total = np.zeros(len(CLASS_NAMES), dtype=np.int64)
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
        np.add.at(per_class_total, seq_labels[keep], 1)
        np.add.at(per_class_correct, seq_labels[keep][hits], 1)
    if total == 0:
        return {"accuracy": float("nan"), "majority": float("nan"), "majority_class": None, "frames": 0,
                "per_class": {}}
    majority = int(per_class_total.argmax())
    return {
        "accuracy": correct / total,
        "majority": per_class_total[majority] / total,
        "majority_class": CLASS_NAMES[majority],
        "frames": total,
        "per_class": {CLASS_NAMES[k]: per_class_correct[k] / per_class_total[k]
                      for k in range(len(CLASS_NAMES)) if per_class_total[k]},
    }
