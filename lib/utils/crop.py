"""Square crops around a target, shared by training-data processing and the tracker.

A crop has side ``ceil(sqrt(w * h) * factor)`` around the box centre, is zero-padded where it
leaves the image and is resized to ``output_size``; ``resize_factor = output_size / side``.
"""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np
import torch


def sample_target(image: np.ndarray, box_xywh: Sequence[float], factor: float, output_size: int
                  ) -> tuple[np.ndarray, float, np.ndarray]:
    """Crop ``image`` (H, W, 3) around ``box_xywh`` (pixels).

    Returns the resized crop (output_size, output_size, 3), the resize factor and a bool mask
    (output_size, output_size) that is True on padding.
    """
    x, y, w, h = (float(v) for v in box_xywh)
    side = math.ceil(math.sqrt(w * h) * factor)
    if side < 1:
        raise ValueError(f"box {list(box_xywh)} is too small to crop (crop side {side})")
    x1 = round(x + 0.5 * w - side * 0.5)
    y1 = round(y + 0.5 * h - side * 0.5)
    x2, y2 = x1 + side, y1 + side
    # part of the window inside the image; like OSTrack / HIPTrack, the last row and column of the
    # image count as outside (kept so crops match the original tracker's pixel for pixel)
    ix1, iy1 = max(x1, 0), max(y1, 0)
    ix2, iy2 = min(x2, image.shape[1] - 1), min(y2, image.shape[0] - 1)
    padding = np.ones((side, side))
    if ix2 <= ix1 or iy2 <= iy1:  # the window misses the image: all padding
        crop = np.zeros((side, side, image.shape[2]), image.dtype)
    else:
        crop = cv2.copyMakeBorder(image[iy1:iy2, ix1:ix2], iy1 - y1, y2 - iy2, ix1 - x1, x2 - ix2,
                                  cv2.BORDER_CONSTANT)
        padding[iy1 - y1:iy2 - y1, ix1 - x1:ix2 - x1] = 0
    crop = cv2.resize(crop, (output_size, output_size))
    padding = cv2.resize(padding, (output_size, output_size)).astype(bool)
    return crop, output_size / side, padding


def box_to_crop(box_xywh: torch.Tensor, reference_xywh: torch.Tensor, resize_factor: float,
                crop_size: int, normalize: bool = True) -> torch.Tensor:
    """Map ``box_xywh`` from image pixels into a crop centred on ``reference_xywh``.

    The crop centre is pixel ``(crop_size - 1) / 2``; with ``normalize`` the result is divided by
    ``crop_size``. Boxes are (..., 4) x, y, w, h.
    """
    ref_centre = reference_xywh[..., :2] + 0.5 * reference_xywh[..., 2:]
    centre = box_xywh[..., :2] + 0.5 * box_xywh[..., 2:]
    out_centre = (crop_size - 1) / 2 + (centre - ref_centre) * resize_factor
    out_wh = box_xywh[..., 2:] * resize_factor
    out = torch.cat([out_centre - 0.5 * out_wh, out_wh], dim=-1)
    return out / crop_size if normalize else out


def clip_box(box_xywh: Sequence[float], height: int, width: int, margin: float = 0) -> list[float]:
    """Keep a box inside the image with at least ``margin`` pixels of width / height visible."""
    x1, y1, w, h = box_xywh
    x2, y2 = x1 + w, y1 + h
    x1 = min(max(0, x1), width - margin)
    x2 = min(max(margin, x2), width)
    y1 = min(max(0, y1), height - margin)
    y2 = min(max(margin, y2), height)
    return [x1, y1, max(margin, x2 - x1), max(margin, y2 - y1)]
