"""Reading frames: jpeg4py (libjpeg-turbo) when it works on this machine, else OpenCV.

The backend is chosen once per process, on first use, by decoding a tiny JPEG, and logged. Every
failure to read a frame raises ``ImageReadError`` naming the file, so callers can skip that
sample and count it.

A JPEG truncated part-way (an interrupted copy or download) still decodes, as a grey-filled image
with a decoder message that names no file. So the file's bytes are read first and a JPEG whose last
scan is not followed by the end-of-image marker is an ``ImageReadError`` too (:func:`jpeg_is_complete`);
the bytes are then decoded from memory, so the file is read once.
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


_SOI, _SOS, _EOI = b"\xff\xd8", b"\xff\xda", b"\xff\xd9"  # JPEG start of image, start of scan, end of image


def jpeg_is_complete(data: bytes) -> bool:
    """Whether JPEG bytes end their last scan with the end-of-image marker ``FF D9``.

    Inside a scan's compressed data a ``FF`` byte is only ever followed by ``00`` or a restart
    marker, so the last ``FF DA`` (start of scan) is the last scan's header and a complete file
    has ``FF D9`` after it; data after the marker (camera trailers) does not matter. An embedded
    EXIF thumbnail ends before the main image's scans, so its ``FF D9`` does not count.
    """
    return data.rfind(_EOI) > data.rfind(_SOS)


def _read_bytes(path: str) -> bytes:
    """The bytes of an image file; ``ImageReadError`` when it is missing, unreadable, empty or a
    truncated JPEG (checked for files that start like a JPEG, whatever their suffix)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ImageReadError(f"cannot read image {path} ({e.strerror or e})") from e
    if not data:
        raise ImageReadError(f"cannot read image {path} (empty file)")
    if data.startswith(_SOI) and not jpeg_is_complete(data):
        raise ImageReadError(f"truncated JPEG {path} (no end-of-image marker after its last scan: "
                             f"an incomplete copy or download)")
    return data


def _decode_opencv(data: bytes, path: str) -> np.ndarray:
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None:
        raise ImageReadError(f"cannot read image {path} (missing, unreadable or corrupt)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _read_opencv(path: str) -> np.ndarray:
    return _decode_opencv(_read_bytes(path), path)


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
        data = _read_bytes(path)
        if not data.startswith(_SOI):  # PNG, or another format behind a .jpg name
            return _decode_opencv(data, path)
        try:
            return jpeg4py.JPEG(np.frombuffer(data, np.uint8)).decode()
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
