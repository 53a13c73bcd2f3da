"""Small drawing primitives shared by the sprite, water and sequence renderers."""
from __future__ import annotations

import math

import cv2
import numpy as np


def hsv_bgr(h: float, s: float, v: float) -> np.ndarray:
    """OpenCV hue (0-180), saturation and value in [0, 1] -> float32 BGR in [0, 255]."""
    hsv = np.array([[[int(round(h)) % 180, int(round(255 * s)), int(round(255 * v))]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def smoothstep(x: np.ndarray) -> np.ndarray:
    """Cubic ease 3x² - 2x³ of ``x`` clipped to [0, 1]: 0 below 0, 1 above 1, flat at both ends."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def line_kernel(length: int, angle: float) -> np.ndarray:
    """Normalised (k, k) kernel of a line of ``length`` px at ``angle`` radians."""
    k = length if length % 2 else length + 1
    canvas = np.zeros((k * 4, k * 4), np.uint8)
    c, r = (k * 4 - 1) / 2, (length - 1) * 2
    p0 = (int(round((c - r * math.cos(angle)) * 16)), int(round((c - r * math.sin(angle)) * 16)))
    p1 = (int(round((c + r * math.cos(angle)) * 16)), int(round((c + r * math.sin(angle)) * 16)))
    cv2.line(canvas, p0, p1, 255, 4, cv2.LINE_AA, 4)
    kern = cv2.resize(canvas.astype(np.float32), (k, k), interpolation=cv2.INTER_AREA)
    return kern / kern.sum()

