"""Training-data processing: raw frames and boxes of one clip -> network inputs.

Re-implements the behaviour of the OSTrack / HIPTrack ``STARKProcessing`` (``mode='sequence'``):
per frame a jittered box (training only), a square crop of side ``ceil(sqrt(w * h) * FACTOR)``
around it resized to ``SIZE`` (:func:`lib.utils.crop.sample_target`), the ground-truth box mapped
into the crop as normalised ``x, y, w, h``, augmentation and ImageNet normalisation.

Augmentation (training only): grayscale (p=0.05) and horizontal flip (p=0.5) are decided once
per sample and applied to every frame (the historical memory links the frames of a clip, so they
must agree); brightness is jittered per frame (x U(0.8, 1.2), clipped to [0, 255]). Validation
crops around the exact ground-truth box with no augmentation.

All randomness comes from the ``numpy.random.Generator`` passed in, so a sample is a function of
its inputs and that generator's state.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from lib.challenges import IGNORE_INDEX, NUM_CLASSES
from lib.utils.crop import box_to_crop, sample_target

__all__ = ["CropSettings", "TrackingProcessing"]

class CropSettings:
    """Geometry and jitter of one crop kind (template or search), read from ``DATA.<KIND>``."""

    def __init__(self, size: int, factor: float, center_jitter: float, scale_jitter: float) -> None:
        self.size = int(size)
        self.factor = float(factor)
        self.center_jitter = float(center_jitter)
        self.scale_jitter = float(scale_jitter)

    @classmethod
    def from_cfg(cls, node) -> CropSettings:
        """Settings of a ``DATA.TEMPLATE`` / ``DATA.SEARCH`` config node."""
        return cls(node.SIZE, node.FACTOR, node.CENTER_JITTER, node.SCALE_JITTER)


class TrackingProcessing:
    """Turns a clip (template frames + search frames with pixel boxes) into network inputs.

    Call with the raw frames and returns a dict of tensors (see :meth:`__call__`), or ``None``
    when the sample must be rejected: a crop side below 1 px, a crop window that misses the
    image, or a target with less than ``MIN_BOX_FRACTION_IN_CROP`` of its area (or less than
    1 px of width / height) inside its crop. The caller then draws another sample.
    """

    GRAYSCALE_PROB = 0.05     # probability that a whole sample is converted to grayscale
    FLIP_PROB = 0.5           # probability that a whole sample is flipped horizontally
    BRIGHTNESS_JITTER = 0.2   # per-frame brightness factor drawn from U(1 - j, 1 + j)
    MIN_BOX_FRACTION_IN_CROP = 0.25  # reject if less of the target box area lies inside the crop

    def __init__(self, cfg, training: bool) -> None:
        self.training = bool(training)
        self.template = CropSettings.from_cfg(cfg.DATA.TEMPLATE)
        self.search = CropSettings.from_cfg(cfg.DATA.SEARCH)
        # Normalisation folded into one multiply-add on uint8 values: (x / 255 - mean) / std.
        std = np.asarray(cfg.DATA.STD, np.float32)
        self._scale = (1.0 / (255.0 * std)).astype(np.float32)
        self._shift = (-np.asarray(cfg.DATA.MEAN, np.float32) / std).astype(np.float32)

    def __call__(
        self,
        template_frames: Sequence[np.ndarray],
        template_boxes_xywh: torch.Tensor,
        search_frames: Sequence[np.ndarray],
        search_boxes_xywh: torch.Tensor,
        rng: np.random.Generator,
        search_visible: torch.Tensor | None = None,
        search_cls_label: torch.Tensor | None = None,
        search_cls_multi_hot: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor] | None:
        """Process one clip; ``None`` if it must be rejected.

        Args:
            template_frames / search_frames: RGB uint8 images (H, W, 3), T and N of them.
            template_boxes_xywh / search_boxes_xywh: (T, 4) / (N, 4) target boxes in pixels.
            rng: the only source of randomness.
            search_visible: (N,) bool, default all True.
            search_cls_label: (N,) long challenge class, default ``IGNORE_INDEX``.
            search_cls_multi_hot: (N, K) float, default zeros.

        Returns:
            ``template_images`` (T, 3, Sz, Sz) float32, ``template_anno`` (T, 4) normalised
            xywh, ``template_padding`` (T, Sz, Sz) bool, ``search_images`` (N, 3, Sx, Sx),
            ``search_anno`` (N, 4), ``search_padding`` (N, Sx, Sx) bool (True on padding),
            ``search_visible`` (N,) bool, ``search_cls_label`` (N,) long and
            ``search_cls_multi_hot`` (N, K) float32.
        """
        num_t, num_s = len(template_frames), len(search_frames)
        template_boxes = torch.as_tensor(template_boxes_xywh, dtype=torch.float64).reshape(num_t, 4)
        search_boxes = torch.as_tensor(search_boxes_xywh, dtype=torch.float64).reshape(num_s, 4)

        # Joint decisions first, so the random stream has a fixed layout.
        grayscale = flip = False
        if self.training:
            grayscale = bool(rng.random() < self.GRAYSCALE_PROB)
            flip = bool(rng.random() < self.FLIP_PROB)

        template = self._process_frames(template_frames, template_boxes, self.template, rng, grayscale, flip)
        if template is None:
            return None
        search = self._process_frames(search_frames, search_boxes, self.search, rng, grayscale, flip)
        if search is None:
            return None

        if search_visible is None:
            search_visible = torch.ones(num_s, dtype=torch.bool)
        if search_cls_label is None:
            search_cls_label = torch.full((num_s,), IGNORE_INDEX, dtype=torch.long)
        if search_cls_multi_hot is None:
            search_cls_multi_hot = torch.zeros(num_s, NUM_CLASSES)
        return {
            "template_images": template[0],
            "template_anno": template[1],
            "template_padding": template[2],
            "search_images": search[0],
            "search_anno": search[1],
            "search_padding": search[2],
            "search_visible": torch.as_tensor(search_visible, dtype=torch.bool).reshape(num_s),
            "search_cls_label": torch.as_tensor(search_cls_label, dtype=torch.long).reshape(num_s),
            "search_cls_multi_hot": torch.as_tensor(search_cls_multi_hot, dtype=torch.float32).reshape(num_s, -1),
        }

    # -- one crop kind ---------------------------------------------------------------------
    def _process_frames(
        self,
        frames: Sequence[np.ndarray],
        boxes: torch.Tensor,
        crop: CropSettings,
        rng: np.random.Generator,
        grayscale: bool,
        flip: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """Images (K, 3, S, S), normalised boxes (K, 4) and padding masks (K, S, S), or None."""
        size = crop.size
        images = np.empty((len(frames), 3, size, size), np.float32)
        annos = torch.empty(len(frames), 4, dtype=torch.float32)
        paddings = np.empty((len(frames), size, size), bool)
        for k, (frame, box) in enumerate(zip(frames, boxes)):
            reference = self._jittered_box(box, crop, rng) if self.training else box
            height, width = frame.shape[:2]
            if not _crop_overlaps_image(reference, crop.factor, height, width):
                return None
            side = math.ceil(math.sqrt(float(reference[2] * reference[3])) * crop.factor)
            anno_px = box_to_crop(box, reference, size / side, size, normalize=False)
            if not _box_inside_crop(anno_px, size, self.MIN_BOX_FRACTION_IN_CROP):
                return None
            patch, _, padding = sample_target(frame, reference.tolist(), crop.factor, size)
            anno = anno_px / size
            if flip:
                patch, padding = cv2.flip(patch, 1), padding[:, ::-1]
                anno = torch.stack([1 - anno[0] - anno[2], anno[1], anno[2], anno[3]])
            brightness = 1.0
            if self.training:
                brightness = rng.uniform(1 - self.BRIGHTNESS_JITTER, 1 + self.BRIGHTNESS_JITTER)
            self._normalise(patch, brightness, grayscale, out=images[k])
            annos[k] = anno
            paddings[k] = padding
        return torch.from_numpy(images), annos, torch.from_numpy(paddings)

    def _normalise(self, patch: np.ndarray, brightness: float, grayscale: bool, out: np.ndarray) -> None:
        """(S, S, 3) uint8 -> ``out`` (3, S, S) float32: grayscale, brightness, clip to [0, 255],
        /255, mean / std, through one 256-entry look-up table per channel."""
        values = np.clip(np.arange(256, dtype=np.float32) * np.float32(brightness), 0, 255)
        tables = values[None, :] * self._scale[:, None] + self._shift[:, None]  # (3, 256)
        if grayscale:
            channels = [cv2.cvtColor(patch, cv2.COLOR_RGB2GRAY)] * 3
        else:
            channels = cv2.split(patch)
        for c in range(3):
            out[c] = cv2.LUT(channels[c], tables[c].reshape(1, 256))

    @staticmethod
    def _jittered_box(box: torch.Tensor, crop: CropSettings, rng: np.random.Generator) -> torch.Tensor:
        """Box with size x exp(N(0,1) * scale_jitter) and centre moved by
        (U(0,1) - 0.5) * sqrt(w * h of the jittered size) * center_jitter, per axis."""
        size = box[2:4] * torch.from_numpy(np.exp(rng.standard_normal(2) * crop.scale_jitter))
        max_offset = math.sqrt(max(float(size[0] * size[1]), 0.0)) * crop.center_jitter
        centre = box[0:2] + 0.5 * box[2:4] + max_offset * torch.from_numpy(rng.random(2) - 0.5)
        return torch.cat([centre - 0.5 * size, size])


def _crop_overlaps_image(box: torch.Tensor, factor: float, height: int, width: int) -> bool:
    """True if the crop ``sample_target`` takes around ``box`` has side >= 1 and covers image pixels.

    Mirrors the window arithmetic of :func:`lib.utils.crop.sample_target`; a window that misses
    the image entirely would be all padding (the original rejects such samples too).
    """
    x, y, w, h = (float(v) for v in box)
    if not (w > 0 and h > 0 and math.isfinite(w * h)):
        return False
    side = math.ceil(math.sqrt(w * h) * factor)
    if side < 1:
        return False
    x1 = round(x + 0.5 * w - side * 0.5)
    y1 = round(y + 0.5 * h - side * 0.5)
    return x1 + side > 0 and y1 + side > 0 and x1 < width - 1 and y1 < height - 1


def _box_inside_crop(box_px: torch.Tensor, size: int, min_fraction: float) -> bool:
    """True if at least ``min_fraction`` of the box area, and >= 1 px of width and height,
    lie inside the crop ``[0, size]^2`` (``box_px`` in crop pixels)."""
    x1, y1, w, h = (float(v) for v in box_px)
    if not (w > 0 and h > 0):
        return False
    inside_w = min(x1 + w, size) - max(x1, 0.0)
    inside_h = min(y1 + h, size) - max(y1, 0.0)
    if inside_w < 1 or inside_h < 1:
        return False
    return inside_w * inside_h >= min_fraction * w * h
