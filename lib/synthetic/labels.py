"""Challenge labels of the synthetic sequences: event kinds, the JSONL key order and the oracle label rules.

The vocabulary (class ids, flag keys, the labelling rule) is :mod:`lib.challenges`; here are only what
the generator adds: event kinds in class-id order and the key order of a written record. The three "CV" flags follow the oracle rules of the maritime-label pipeline, computed on the
written ground truth and the decoded JPEG: ``scale_variation`` when sqrt(area / template area)
< 0.7 or > 1.4, ``low_res`` when the shorter box side < 24 px or the area < 900 px², ``low_contrast``
when the grey-level standard deviation in the box is below that of a 10-px ring around it divided by 1.1.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from lib.challenges import CV_FLAGS, FLAG_CLASS, VLM_PRIORITY

# one event kind per flag, index = challenge class id (the planner draws kinds by index)
EVENT_TYPES: tuple[str, ...] = tuple(sorted(FLAG_CLASS, key=FLAG_CLASS.__getitem__))
CV_KEYS: tuple[str, ...] = tuple(key for key, _ in CV_FLAGS)  # key order of a record's cv_response
VLM_KEYS: tuple[str, ...] = (  # key order of a record's vlm_response (the label pipeline's, not the priority)
    "motion_blur", "illu_change", "variance_appear", "partial_visibility", "background_clutter", "occlusion",
)
assert sorted(VLM_KEYS) == sorted(key for key, _ in VLM_PRIORITY)
FLAG_CONF = 1.0  # confidence written for a flagged (rendered, hence certain) challenge

# Oracle rules of the label pipeline (docs: anchors/domain_notes.md, section 1).
SCALE_RATIO_RANGE = (0.7, 1.4)
LOW_RES_SIDE = 24.0
LOW_RES_AREA = 900.0
CONTRAST_RING = 10
CONTRAST_DIVISOR = 1.1


def scale_variation_flag(box_xywh: Sequence[float], template_xywh: Sequence[float]) -> bool:
    """sqrt(area / template area) outside [0.7, 1.4]."""
    area0 = template_xywh[2] * template_xywh[3]
    if area0 <= 0:
        return False
    ratio = math.sqrt(max(box_xywh[2] * box_xywh[3], 0.0) / area0)
    return ratio < SCALE_RATIO_RANGE[0] or ratio > SCALE_RATIO_RANGE[1]


def low_res_flag(box_xywh: Sequence[float]) -> bool:
    """Shorter side < 24 px or area < 900 px²."""
    w, h = box_xywh[2], box_xywh[3]
    return min(w, h) < LOW_RES_SIDE or w * h < LOW_RES_AREA


def rms_contrast(gray: np.ndarray, box_xywh: Sequence[float], ring: int = CONTRAST_RING) -> tuple[float, float]:
    """Grey-level standard deviation inside the box and in a ``ring``-px band around it.

    The box is snapped to whole pixels (floor of the top-left, ceil of the bottom-right corner);
    the ring is the box grown by ``ring`` px on each side, clipped to the image, minus the box.
    """
    hgt, wid = gray.shape[:2]
    x, y, w, h = box_xywh
    x0, y0 = max(0, int(math.floor(x))), max(0, int(math.floor(y)))
    x1, y1 = min(wid, int(math.ceil(x + w))), min(hgt, int(math.ceil(y + h)))
    if x1 <= x0 or y1 <= y0:
        return 0.0, 0.0
    X0, Y0, X1, Y1 = max(0, x0 - ring), max(0, y0 - ring), min(wid, x1 + ring), min(hgt, y1 + ring)
    g = gray.astype(np.float64)
    inner, outer = g[y0:y1, x0:x1], g[Y0:Y1, X0:X1]
    n_in, n_out = inner.size, outer.size
    s_in, q_in = inner.sum(), np.square(inner).sum()
    std_in = math.sqrt(max(q_in / n_in - (s_in / n_in) ** 2, 0.0))
    n_ring = n_out - n_in
    if n_ring <= 0:
        return std_in, 0.0
    s_ring, q_ring = outer.sum() - s_in, np.square(outer).sum() - q_in
    std_ring = math.sqrt(max(q_ring / n_ring - (s_ring / n_ring) ** 2, 0.0))
    return std_in, std_ring


def low_contrast_flag(gray: np.ndarray, box_xywh: Sequence[float]) -> bool:
    """RMS contrast in the box < RMS contrast of the 10-px ring / 1.1."""
    std_in, std_ring = rms_contrast(gray, box_xywh)
    return std_in < std_ring / CONTRAST_DIVISOR


