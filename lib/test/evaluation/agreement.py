"""Open-loop agreement of two trackers on the same search crops (e.g. bf16 against fp32).

Closed-loop, two trackers that differ only slightly (precision) drift apart: each crops the next
frame around its own last box, so small differences compound over a sequence. Open-loop, both
trackers search the same crop of every frame: around the ``reference`` tracker's last box, or around
given boxes (the ground truth of the previous frame); the IoU of their two boxes then measures the
difference of one frame. Each tracker keeps its own memory bank (written from its own predictions
on those crops). Crops around the reference's boxes include the frames where the reference has
lost the target, whose flat score maps let a tiny change move the peak anywhere; ground-truth crops
keep the target in view.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from lib.test.analysis.metrics import box_iou
from lib.test.tracker.hiptrack import HIPTrackTracker


def open_loop_ious(reference: HIPTrackTracker, other: HIPTrackTracker, frames: Iterable[np.ndarray],
                   init_box_xywh: Sequence[float], crop_boxes_xywh: np.ndarray | None = None) -> np.ndarray:
    """IoU (N - 1,) of ``other``'s box with ``reference``'s on frames 2..N of a video, both searching the same
    crop: around ``reference``'s previous box, or with ``crop_boxes_xywh`` (N, 4) around box t - 1 on frame t.
    ``frames`` yields the RGB uint8 images (H, W, 3), frame 1 first (the template frame, initialised with
    ``init_box_xywh``)."""
    reference_boxes, other_boxes = [], []
    for index, image in enumerate(frames):
        if index == 0:
            for tracker in (reference, other):
                tracker.initialize(image, {"init_bbox": [float(v) for v in init_box_xywh]})
            continue
        if crop_boxes_xywh is not None:
            reference.prev_box_xywh = [float(v) for v in crop_boxes_xywh[index - 1]]
        other.prev_box_xywh = list(reference.prev_box_xywh)
        reference_boxes.append(reference.track(image)["target_bbox"])
        other_boxes.append(other.track(image)["target_bbox"])
    if not reference_boxes:
        return np.zeros(0)
    return box_iou(np.asarray(other_boxes, dtype=np.float64), np.asarray(reference_boxes, dtype=np.float64))
