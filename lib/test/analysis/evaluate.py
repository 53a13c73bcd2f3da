"""Score the result files of one tracker run on one dataset: :func:`evaluate_results` (ground truth
given as a dataset object) or :func:`evaluate_tracker` (a test-dataset name such as ``got10k_val``).

Result files are read in the layout of :mod:`lib.test.evaluation.results`; ground truth comes
from a :class:`~lib.dataset.base.SequenceDataset`. The GOT-10k numbers follow the official
toolkit exactly (see :mod:`lib.test.analysis.metrics`), including its handling of repeated runs:
every ``<seq>_NNN.txt`` repetition of a ``got10k``-format folder is scored and pooled. The
LaSOT-style curves of a sequence are the mean over its repetitions.

Which frames GOT-10k scores: with a ``cover.label`` (``SequenceInfo.meta["cover"]``) the frames
with ``cover > 0``, exactly as the toolkit; without one, the frames where ``SequenceInfo.visible``.
Image size for the clipping: ``meta_info.ini``'s ``resolution`` when present, else the size of
the sequence's first frame.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lib.test.analysis import metrics
from lib.test.evaluation.results import (
    read_result_boxes, read_result_times, repetition_box_files, sequence_files, test_dataset,
)
from lib.challenges import CLASS_NAMES
from lib.dataset.base import SequenceDataset, SequenceInfo
from lib.dataset.paths import DatasetPaths
from lib.dataset.registry import build_dataset

logger = logging.getLogger(__name__)

MAX_LISTED = 10  # missing sequence names quoted in an error message
SERVER_HINTS = {  # test datasets whose ground truth is withheld: where their results are scored
    "got10k_test": "zip the <seq>/ folders of the results (e.g. `cd <results dir> && zip -r ../submit.zip .`) "
                   "and upload the zip to the evaluation server http://got-10k.aitestunion.com",
    "trackingnet": "zip the <seq>.txt files and upload them to the TrackingNet evaluation server "
                   "(https://eval.ai/web/challenges/challenge-page/1805)",
}


class MissingResultsError(FileNotFoundError):
    """Some sequences of the dataset have no result file."""


class NoGroundTruthError(ValueError):
    """The test dataset's ground truth is withheld (only the first box is public)."""


@dataclass
class _SequenceScores:
    name: str
    ious: np.ndarray          # pooled GOT-10k IoUs of every repetition
    labels: np.ndarray        # challenge class of each of those IoUs (IGNORE_INDEX, -100, if unlabeled)
    times: np.ndarray         # every per-frame time of the sequence
    curves: metrics.SequenceCurves


def _resolution(meta: dict) -> tuple[int, int] | None:
    match = re.fullmatch(r"\D*(\d+)\D+(\d+)\D*", str(meta.get("resolution", "")))
    return (int(match.group(1)), int(match.group(2))) if match else None


def image_size(dataset: SequenceDataset, seq_id: int, info: SequenceInfo) -> tuple[int, int]:
    """``(W, H)`` of a sequence: ``meta_info.ini``'s ``resolution``, else the first frame's size."""
    size = _resolution(info.meta)
    if size is not None:
        return size
    path = dataset.frame_path(seq_id, 0)
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"cannot read frame {path} (needed for the image size of {info.name})")
    return int(image.shape[1]), int(image.shape[0])


def got10k_scored_frames(info: SequenceInfo) -> np.ndarray:
    """(N,) bool: frames the GOT-10k protocol may score (before dropping frame 0): ``cover > 0``
    with a ``cover.label``, else ``visible``."""
    cover = info.meta.get("cover")
    if cover is not None:
        return np.asarray(cover).astype(np.int64) > 0
    return info.visible.numpy().astype(bool)


def _read_boxes(path: Path, num_frames: int) -> np.ndarray:
    boxes = read_result_boxes(path)
    if len(boxes) != num_frames:
        raise ValueError(f"{path} has {len(boxes)} boxes but the sequence has {num_frames} frames")
    if not np.isfinite(boxes).all():
        line = int(np.flatnonzero(~np.isfinite(boxes).all(axis=1))[0]) + 1
        raise ValueError(f"{path}:{line}: box is NaN or infinite")
    return boxes


def _score_sequence(
    dataset: SequenceDataset, seq_id: int, box_files: list[Path], times_file: Path
) -> _SequenceScores:
    info = dataset.sequence_info(seq_id)
    gt = info.bbox.numpy().astype(np.float64)
    visible = info.visible.numpy().astype(bool)
    scored = got10k_scored_frames(info)
    size = image_size(dataset, seq_id, info)
    labels = info.cls_label.numpy()[metrics.got10k_frame_mask(scored)]
    ious, all_labels, curves = [], [], []
    for path in box_files:
        pred = _read_boxes(path, len(gt))
        ious.append(metrics.got10k_sequence_ious(pred, gt, scored, size))
        all_labels.append(labels)
        curves.append(metrics.lasot_sequence_curves(pred, gt, visible))
    times = read_result_times(times_file).ravel() if times_file.is_file() else np.zeros(0)
    return _SequenceScores(info.name, np.concatenate(ious), np.concatenate(all_labels), times,
                           metrics.average_curves(curves))


def _find_result_files(
    results_dir: Path, dataset: SequenceDataset, result_format: str, skip_missing: bool
) -> dict[int, list[Path]]:
    found, missing = {}, []
    for seq_id in range(len(dataset)):
        name = dataset.sequence_name(seq_id)
        files = repetition_box_files(results_dir, name, result_format)
        if files:
            found[seq_id] = files
        else:
            missing.append(name)
    if missing:
        shown = ", ".join(missing[:MAX_LISTED]) + (", ..." if len(missing) > MAX_LISTED else "")
        where = sequence_files(results_dir, "<seq>", result_format).boxes
        message = (f"{len(missing)} of the {len(dataset)} sequences of {dataset.name} have no result file "
                   f"({where}): {shown}")
        if not skip_missing or not found:
            raise MissingResultsError(message + ("" if found else "; no sequence has results") +
                                      (" (pass --skip_missing / skip_missing=True to score the others)"
                                       if found else ""))
        logger.warning("%s; scoring the other %d", message, len(found))
    return found


def _per_challenge(ious: np.ndarray, labels: np.ndarray) -> dict[str, dict]:
    table = {}
    for class_id, class_name in enumerate(CLASS_NAMES):
        selected = ious[labels == class_id]
        if selected.size:
            scores = metrics.got10k_scores(selected)
            table[class_name] = {"ao": scores["ao"], "sr50": scores["sr50"], "sr75": scores["sr75"],
                                 "frames": scores["frames"]}
    return table


def evaluate_results(
    results_dir: str | Path, dataset: SequenceDataset, result_format: str, *, skip_missing: bool = False
) -> dict:
    """Score the result files under ``results_dir`` against ``dataset``'s ground truth.

    Args:
        results_dir: a folder of :func:`lib.test.evaluation.results.results_dir` layout.
        dataset: ground truth; build it with ``cls_ann_dir`` to get the per-challenge table.
        result_format: ``"got10k"`` or ``"otb"`` (``TEST_DATASETS[name].result_format``).
        skip_missing: score only the sequences that have results (a warning counts the others)
            instead of raising :class:`MissingResultsError`.

    Returns:
        ``"ao", "sr50", "sr75"`` (GOT-10k protocol, pooled frames), ``"fps"`` (nan without time
        files), ``"frames"`` (GOT-10k-scored frames), ``"sequences"`` (scored sequences),
        ``"auc", "precision", "norm_precision"`` (LaSOT protocol), all scores fractions in [0, 1];
        ``"success_curve": {"thresholds": [21], "success": [21]}`` (the LaSOT success plot);
        ``"per_challenge": {class name: {"ao", "sr50", "frames"}}`` for the classes with scored
        labelled frames (empty without labels); ``"per_sequence": {name: {"ao", "sr50", "sr75", "auc",
        "frames", "per_challenge"}}``, the same scores of each sequence (what a paired bootstrap over
        sequences resamples).

    Raises:
        MissingResultsError, ValueError (malformed file, wrong length: the message names the file),
        and ValueError when no frame can be scored (ground truth withheld, e.g. GOT-10k test).
    """
    results_dir = Path(results_dir)
    files = _find_result_files(results_dir, dataset, result_format, skip_missing)
    scores = [_score_sequence(dataset, seq_id, paths,
                              sequence_files(results_dir, dataset.sequence_name(seq_id), result_format).times)
              for seq_id, paths in files.items()]
    ious = np.concatenate([s.ious for s in scores])
    if ious.size == 0:
        raise ValueError(f"{dataset.name}: no frame after the first has a visible ground-truth box, so nothing "
                         f"can be scored (ground truth withheld? GOT-10k test results are scored by the "
                         f"evaluation server)")
    no_times = [s.name for s in scores if s.times.size == 0]
    if no_times:
        logger.warning("%d sequences have no time file (e.g. %s): fps is over the others", len(no_times),
                       no_times[0])
    curves = metrics.average_curves([s.curves for s in scores])
    result = {**metrics.got10k_scores(ious),
              "fps": metrics.mean_fps(np.concatenate([s.times for s in scores])),
              "sequences": len(scores),
              **metrics.lasot_scores(curves),
              "success_curve": {"thresholds": metrics.SUCCESS_THRESHOLDS.tolist(),
                                "success": curves.success.tolist()},
              "per_challenge": _per_challenge(ious, np.concatenate([s.labels for s in scores])),
              "per_sequence": {}}
    for s in scores:
        got = metrics.got10k_scores(s.ious)
        result["per_sequence"][s.name] = {"ao": got["ao"], "sr50": got["sr50"], "sr75": got["sr75"],
                                          "auc": metrics.lasot_scores(s.curves)["auc"], "frames": got["frames"],
                                          "per_challenge": _per_challenge(s.ious, s.labels)}
    return result


def evaluate_tracker(
    results_dir: str | Path,
    dataset: str,
    *,
    paths: DatasetPaths | None = None,
    cls_ann_dir: str | Path | None = None,
    skip_missing: bool = False,
) -> dict:
    """:func:`evaluate_results` of a ``tracking/test.py`` results folder on a test dataset given
    by name (a key of :data:`lib.test.evaluation.results.TEST_DATASETS`, e.g. ``got10k_val``).

    ``paths`` locates the dataset (default: ``DatasetPaths.from_env()``, i.e. environment
    variables and ``./data``); ``cls_ann_dir`` adds the per-challenge rows.

    Raises:
        NoGroundTruthError: for ``got10k_test`` / ``trackingnet`` (the message says which
            evaluation server scores them), and everything :func:`evaluate_results` raises.
    """
    spec = test_dataset(dataset)
    if not spec.has_ground_truth:
        hint = SERVER_HINTS.get(dataset, "submit the results to its evaluation server")
        raise NoGroundTruthError(f"{dataset} has no public ground truth beyond the first frame, so it cannot be "
                                 f"scored locally; {hint}")
    ground_truth = build_dataset(spec.registry_name, paths or DatasetPaths.from_env(), cls_ann_dir=cls_ann_dir)
    return evaluate_results(results_dir, ground_truth, spec.result_format, skip_missing=skip_missing)
