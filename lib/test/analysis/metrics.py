"""Tracking metrics on numpy arrays: the GOT-10k official protocol and the LaSOT / pytracking one.

Boxes are ``(N, 4)`` ``x, y, w, h`` in continuous pixel coordinates (``x2 = x + w``).

GOT-10k (Huang et al., TPAMI 2019; the official ``got10k`` toolkit's ``report()``):

* frame 0 (the initialisation frame) is not scored;
* frames whose target is absent or fully covered are not scored at all;
* both boxes are clipped to the image first: ``x`` to ``[0, W]``, then ``w`` to ``[0, W - x]``
  (same for ``y``, ``h``): a box left of the image is shifted to ``x = 0``, not cropped;
* IoUs of all frames of all sequences are pooled (frame-weighted): ``AO = mean(iou)``,
  ``SR_t = mean(iou > t)``; speed = ``mean(1 / t)`` over every per-frame time ``t > 0``.

LaSOT / OTB (Fan et al., CVPR 2019; pytracking's ``extract_results``):

* frame 0 is scored with the prediction replaced by the ground truth (IoU 1);
* a predicted box of zero width or height is replaced by the previous prediction;
* frames whose target is not visible count as failures (IoU -1, centre error inf);
* per-sequence curves over every frame, averaged over sequences (sequence-weighted):
  success at ``arange(0, 1.05, 0.05)`` (``iou > thr``), AUC = mean of the 21 points;
  precision = ``centre error <= 20`` px; normalised precision = centre error divided by the
  ground-truth ``w, h`` ``<= 0.20``. No clipping to the image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GOT10K_SR_THRESHOLDS = (0.5, 0.75)
SUCCESS_THRESHOLDS = np.arange(0.0, 1.05, 0.05)            # 21 LaSOT overlap thresholds
PRECISION_THRESHOLDS = np.arange(0.0, 51.0, 1.0)           # centre error, pixels
NORM_PRECISION_THRESHOLDS = np.arange(0.0, 51.0, 1.0) / 100.0  # normalised centre error
PRECISION_AT = 20      # index of 20 px in PRECISION_THRESHOLDS
NORM_PRECISION_AT = 20  # index of 0.20 in NORM_PRECISION_THRESHOLDS
_EPS = np.finfo(float).eps


def _as_boxes(boxes: np.ndarray, what: str) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{what} must be (N, 4) x, y, w, h, got shape {boxes.shape}")
    return boxes


def box_iou(pred_xywh: np.ndarray, gt_xywh: np.ndarray) -> np.ndarray:
    """(N,) IoU of paired boxes: intersection / (union + eps), clipped to [0, 1]."""
    a, b = _as_boxes(pred_xywh, "pred_xywh"), _as_boxes(gt_xywh, "gt_xywh")
    if a.shape != b.shape:
        raise ValueError(f"box arrays differ in shape: {a.shape} vs {b.shape}")
    left = np.maximum(a[:, 0], b[:, 0])
    top = np.maximum(a[:, 1], b[:, 1])
    right = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    bottom = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.maximum(right - left, 0.0) * np.maximum(bottom - top, 0.0)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.clip(inter / (union + _EPS), 0.0, 1.0)


def clip_to_image(boxes_xywh: np.ndarray, width: float, height: float) -> np.ndarray:
    """A copy of the boxes bounded as GOT-10k's toolkit does: ``x`` to ``[0, W]``, then ``w`` to
    ``[0, W - x]``; ``y`` / ``h`` likewise with ``H``."""
    boxes = _as_boxes(boxes_xywh, "boxes_xywh").copy()
    boxes[:, 0] = np.clip(boxes[:, 0], 0.0, width)
    boxes[:, 1] = np.clip(boxes[:, 1], 0.0, height)
    boxes[:, 2] = np.clip(boxes[:, 2], 0.0, width - boxes[:, 0])
    boxes[:, 3] = np.clip(boxes[:, 3], 0.0, height - boxes[:, 1])
    return boxes


def got10k_frame_mask(scored: np.ndarray) -> np.ndarray:
    """(N,) bool: frames scored by the GOT-10k protocol: ``scored`` (target visible, e.g.
    ``cover > 0``) and not frame 0."""
    mask = np.asarray(scored, dtype=bool).copy()
    if mask.size:
        mask[0] = False
    return mask


def got10k_sequence_ious(
    pred_xywh: np.ndarray, gt_xywh: np.ndarray, scored: np.ndarray, image_size: tuple[float, float]
) -> np.ndarray:
    """IoUs of the frames of one sequence that GOT-10k scores (see :func:`got10k_frame_mask`),
    both boxes clipped to ``image_size`` ``(W, H)``."""
    width, height = image_size
    ious = box_iou(clip_to_image(pred_xywh, width, height), clip_to_image(gt_xywh, width, height))
    return ious[got10k_frame_mask(scored)]


def mean_fps(times_s: np.ndarray) -> float:
    """GOT-10k speed: mean of ``1 / t`` over every finite time ``t > 0`` (nan when there is none)."""
    times = np.asarray(times_s, dtype=np.float64).ravel()
    times = times[np.isfinite(times) & (times > 0)]
    return float(np.mean(1.0 / times)) if times.size else float("nan")


def got10k_scores(ious: np.ndarray) -> dict[str, float]:
    """``{"ao", "sr50", "sr75", "frames"}`` of pooled IoUs (nan scores for no frames)."""
    ious = np.asarray(ious, dtype=np.float64).ravel()
    if ious.size == 0:
        return {"ao": float("nan"), "sr50": float("nan"), "sr75": float("nan"), "frames": 0}
    low, high = GOT10K_SR_THRESHOLDS
    return {"ao": float(ious.mean()), "sr50": float(np.mean(ious > low)),
            "sr75": float(np.mean(ious > high)), "frames": int(ious.size)}


def fill_empty_predictions(pred_xywh: np.ndarray) -> np.ndarray:
    """A copy where each box of zero (or negative) width or height is the previous usable box
    (frame 0 is kept as it is)."""
    pred = _as_boxes(pred_xywh, "pred_xywh").copy()
    usable = (pred[:, 2] > 0) & (pred[:, 3] > 0)
    if usable.size:
        usable[0] = True
    source = np.maximum.accumulate(np.where(usable, np.arange(len(pred)), 0))
    return pred[source]


def centre_errors(pred_xywh: np.ndarray, gt_xywh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N,) centre distances in pixels and (N,) distances with ``dx, dy`` divided by the ground
    truth's ``w, h`` (inf where the ground truth has no area)."""
    pred, gt = _as_boxes(pred_xywh, "pred_xywh"), _as_boxes(gt_xywh, "gt_xywh")
    delta = (pred[:, :2] + pred[:, 2:] / 2.0) - (gt[:, :2] + gt[:, 2:] / 2.0)
    pixels = np.sqrt((delta ** 2).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        normalised = np.sqrt(((delta / gt[:, 2:]) ** 2).sum(axis=1))
    normalised[~np.isfinite(normalised)] = np.inf
    return pixels, normalised


@dataclass
class SequenceCurves:
    """LaSOT-style curves of one sequence (fractions of its frames)."""
    success: np.ndarray         # (21,) at SUCCESS_THRESHOLDS
    precision: np.ndarray       # (51,) at PRECISION_THRESHOLDS
    norm_precision: np.ndarray  # (51,) at NORM_PRECISION_THRESHOLDS


def lasot_sequence_curves(pred_xywh: np.ndarray, gt_xywh: np.ndarray, visible: np.ndarray) -> SequenceCurves:
    """Success / precision / normalised-precision curves of one sequence by the pytracking
    conventions in the module docstring (frame 0 = ground truth, empty boxes carried forward,
    invisible frames failures, every frame in the denominator)."""
    gt = _as_boxes(gt_xywh, "gt_xywh")
    pred = _as_boxes(pred_xywh, "pred_xywh").copy()
    if pred.shape != gt.shape:
        raise ValueError(f"prediction has {len(pred)} frames, ground truth {len(gt)}")
    visible = np.asarray(visible, dtype=bool)
    pred[0] = gt[0]
    pred = fill_empty_predictions(pred)
    ious = np.where(visible, box_iou(pred, gt), -1.0)
    pixels, normalised = centre_errors(pred, gt)
    pixels = np.where(visible, pixels, np.inf)
    normalised = np.where(visible, normalised, np.inf)
    return SequenceCurves(
        success=(ious[:, None] > SUCCESS_THRESHOLDS[None, :]).mean(axis=0),
        precision=(pixels[:, None] <= PRECISION_THRESHOLDS[None, :]).mean(axis=0),
        norm_precision=(normalised[:, None] <= NORM_PRECISION_THRESHOLDS[None, :]).mean(axis=0),
    )


def average_curves(curves: list[SequenceCurves]) -> SequenceCurves:
    """Mean curves over sequences (each sequence weighs the same)."""
    if not curves:
        raise ValueError("no sequence curves to average")
    return SequenceCurves(
        success=np.mean([c.success for c in curves], axis=0),
        precision=np.mean([c.precision for c in curves], axis=0),
        norm_precision=np.mean([c.norm_precision for c in curves], axis=0),
    )


def lasot_scores(curves: SequenceCurves) -> dict[str, float]:
    """``{"auc", "precision", "norm_precision"}`` as fractions in [0, 1] (x100 for the usual %):
    AUC = mean of the 21 success points, precision at 20 px, normalised precision at 0.20."""
    return {"auc": float(np.mean(curves.success)),
            "precision": float(curves.precision[PRECISION_AT]),
            "norm_precision": float(curves.norm_precision[NORM_PRECISION_AT])}
