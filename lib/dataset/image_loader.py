"""Reading frames: jpeg4py (libjpeg-turbo) when it works on this machine, else OpenCV.

The backend is chosen once per process, on first use, by decoding a tiny JPEG, and logged. Every
failure to read a frame raises ``ImageReadError`` naming the file, so callers can skip that
sample and count it.
"""
from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)


class ImageReadError(OSError):
    """A frame that is missing, unreadable or not a decodable image."""


def _read_opencv(path: str) -> np.ndarray:
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageReadError(f"cannot read image {path} (missing, unreadable or corrupt)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _jpeg4py_reader():
    """A jpeg4py reader if the package and libturbojpeg work here, else None."""
    try:
        import jpeg4py
        ok, buf = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
        jpeg4py.JPEG(np.frombuffer(buf.tobytes(), np.uint8)).decode()
    except Exception as e:  # ImportError, or the shared library failing to load
        logger.debug("jpeg4py unavailable: %s", e)
        return None

    def read(path: str) -> np.ndarray:
        if not path.lower().endswith((".jpg", ".jpeg")):
            return _read_opencv(path)
        try:
            return jpeg4py.JPEG(path).decode()
        except Exception as e:  # jpeg4py raises plain exceptions for corrupt data
            raise ImageReadError(f"cannot decode JPEG {path}: {e}") from e

    return read


@lru_cache(maxsize=1)
def _reader():
    reader = _jpeg4py_reader()
    if reader is not None:
        logger.info("image loading: jpeg4py (libjpeg-turbo)")
        return "jpeg4py", reader
    logger.info("image loading: OpenCV (install jpeg4py and libturbojpeg for faster JPEG decoding)")
    return "opencv", _read_opencv


def image_backend() -> str:
    """Name of the backend in use: ``jpeg4py`` or ``opencv``."""
    return _reader()[0]


def read_image(path: str | Path) -> np.ndarray:
    """RGB ``uint8`` array (H, W, 3) of an image file; ``ImageReadError`` on any failure."""
    path = str(path)
    image = _reader()[1](path)
    if image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        raise ImageReadError(f"{path} is not a 3-channel image (shape {image.shape})")
    return image
