"""Synthetic maritime tracking sequences: the project's embedded default dataset.

A deterministic generator of small MVTD / GOT-10k style video sequences with per-frame
maritime-challenge labels, so that training, tracking and evaluation can run end to end on a
CPU without downloading anything. Each sequence shows one target vessel (ship, boat, sailboat or
USV) in a distinctive colour, drawn as hull + superstructure polygons with shading and texture,
moving smoothly (constant velocity, slow curvature, bounces before it would leave the frame) over
animated water. The first frame is always a normal frame (it is the template).

Each sequence gets one to three scripted challenge events on disjoint frame ranges (see
:data:`EVENT_TYPES`; their order is the class order of the challenge head). Every event really
happens in the pixels, and the labels are computed from what was rendered:

* ``occlusion``: another (neutral-coloured) vessel crosses in front of the target; flagged on
  frames where it covers part of the target; ``cover.label`` drops, fully covered frames are absent.
* ``illu_change``: a global darkening, glare or colour-cast ramp.
* ``scale_variation``: the target approaches (or recedes) and its size changes beyond the rule.
* ``motion_blur``: the target speeds up and the frame is blurred along its motion.
* ``variance_appear``: the target turns (foreshortening, roll) and its shading changes.
* ``partial_visibility``: the target crosses the image border (``cut_by_image`` 1, box clipped).
* ``low_res``: the target shrinks below the low-resolution rule and the frame is pixelated.
* ``background_clutter``: distractor boats / buoys of the target's colour surround it.
* ``low_contrast``: the target's colours blend into the surrounding water.

The six "VLM" flags are 1 exactly on the frames where their effect is rendered. The three "CV"
flags follow the oracle rules of the maritime-label pipeline, computed on the written ground truth
and the decoded JPEG: ``scale_variation`` when sqrt(area / template area) < 0.7 or > 1.4,
``low_res`` when the shorter box side < 24 px or the area < 900 px², ``low_contrast`` when the
grey-level standard deviation in the box is below that of a 10-px ring around it divided by 1.1.
CV flags can therefore also fire during a VLM event that changes the box (e.g. a clipped box);
the label priority (first VLM flag wins) still gives that event's class.

Box convention: ``x, y, w, h`` in pixels (continuous coordinates, pixel ``i`` spans ``[i, i+1)``)
of the visible part of the target, clipped to the image; a frame where nothing of the target is
visible keeps the last visible box and has ``absence`` 1. ``cover.label`` bins the visible
fraction as GOT-10k does: 0 = none, 1 = (0, 15%], 2 = (15, 30%], ... 7 = (90, 100%), 8 = all.

Usage::

    generate_dataset("data/synthetic_maritime", sequences=40, frames=60, seed=0)
    # force the events of some sequences (0-based frames, end exclusive), e.g. in tests:
    generate_dataset(out, sequences=4, frames=30, events={"2-Boat": [Event("occlusion", 8, 20)]})
    seq = render_sequence(SequencePlan("1-Ship", "ship", (Event("low_res", 5, 15),), seed=1), 24)

The same arguments give byte-identical files with the same NumPy / OpenCV build (their float
kernels may round differently on other CPUs or versions).
"""
from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lib.synthetic.labels import (
    CHALLENGE_NAMES,
    CV_KEYS,
    EVENT_TYPES,
    FLAG_CONF,
    VLM_KEYS,
    low_contrast_flag,
    low_res_flag,
    primary_class,
    scale_variation_flag,
)
from lib.synthetic.plan import Event, SequencePlan, check_dataset_counts, check_plan, plan_dataset

logger = logging.getLogger(__name__)

MIN_SIZE = (128, 96)
MAX_SIZE = (4096, 4096)
JPEG_PARAMS = [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_OPTIMIZE, 0, cv2.IMWRITE_JPEG_PROGRESSIVE, 0]
if hasattr(cv2, "IMWRITE_JPEG_SAMPLING_FACTOR"):  # OpenCV >= 4.5.5; 4:2:0 is also the older default
    JPEG_PARAMS += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420]
GENERATED = ("train", "test", "cls_annotations", "README.txt")  # everything generate_dataset writes

_MARGIN = 4.0        # px kept between the target and the image border outside partial-visibility events
_HORIZON_GAP = 14.0  # px kept between the target's top and the horizon (keeps the sky out of the contrast ring)
_SUPERSAMPLE = 4     # sprites are drawn at this multiple of their base display size


# ----------------------------------------------------------------------------------------------
# Drawing helpers
# ----------------------------------------------------------------------------------------------

def _hsv_bgr(h: float, s: float, v: float) -> np.ndarray:
    """OpenCV hue (0-180), saturation and value in [0, 1] -> float32 BGR in [0, 255]."""
    hsv = np.array([[[int(round(h)) % 180, int(round(255 * s)), int(round(255 * v))]]], np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _rect(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 16) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], 1)


class _Hull:
    """A side-view hull quad (y up from the waterline); bands across it follow its slanted ends."""

    def __init__(self, bx0: float, bx1: float, tx0: float, ty0: float, tx1: float, ty1: float) -> None:
        self.bx0, self.bx1, self.tx0, self.ty0, self.tx1, self.ty1 = bx0, bx1, tx0, ty0, tx1, ty1

    def polygon(self) -> np.ndarray:
        return np.array([[self.bx0, 0.0], [self.bx1, 0.0], [self.tx1, self.ty1], [self.tx0, self.ty0]])

    def band(self, y0: float, y1: float) -> np.ndarray:
        xl = lambda y: self.bx0 + (self.tx0 - self.bx0) * y / self.ty0  # noqa: E731
        xr = lambda y: self.bx1 + (self.tx1 - self.bx1) * y / self.ty1  # noqa: E731
        return np.array([[xl(y0), y0], [xr(y0), y0], [xr(y1), y1], [xl(y1), y1]])


def _windows(x0: float, x1: float, y0: float, y1: float, n: int) -> list[tuple[str, np.ndarray]]:
    step = (x1 - x0) / n
    return [("window", _rect(x0 + step * (i + 0.2), y0, x0 + step * (i + 0.8), y1)) for i in range(n)]


def _vessel_parts(rng: np.random.Generator, kind: str) -> list[tuple[str, np.ndarray]]:
    """Side-view polygons ``(role, (n, 2) x/y)`` of a vessel of length ~1, bow to the right, y up."""
    u = rng.uniform
    if kind == "ship":
        hd, rake = u(0.11, 0.15), u(0.05, 0.09)
        hull = _Hull(0.03, 1 - rake, 0.0, hd, 1.0, hd + 0.025)
        sx0, sw, sh = u(0.04, 0.08), u(0.16, 0.24), u(0.12, 0.18)
        parts = [("hull", hull.polygon()), ("boot", hull.band(0, 0.025)), ("stripe", hull.band(hd * 0.55, hd * 0.72)),
                 ("super", _rect(sx0, hd * 0.95, sx0 + sw, hd + sh)),
                 ("super", _rect(sx0 + 0.02, hd + sh, sx0 + sw * 0.78, hd + sh + 0.06))]
        parts += _windows(sx0 + 0.03, sx0 + sw * 0.75, hd + sh + 0.02, hd + sh + 0.045, 5)
        parts += _windows(sx0 + 0.01, sx0 + sw - 0.01, hd + sh * 0.45, hd + sh * 0.65, 6)
        fx = sx0 + sw * 0.35
        parts += [("funnel", np.array([[fx, hd + sh + 0.06], [fx + 0.055, hd + sh + 0.06],
                                      [fx + 0.05, hd + sh + 0.13], [fx + 0.008, hd + sh + 0.13]])),
                  ("window", _rect(fx + 0.007, hd + sh + 0.115, fx + 0.05, hd + sh + 0.13))]
        if u() < 0.6:  # container ship
            x, tiers = sx0 + sw + 0.03, int(rng.integers(1, 3))
            while x < 0.88:
                bw = u(0.055, 0.075)
                for tier in range(tiers):
                    parts.append((f"cargo{int(rng.integers(0, 3))}",
                                  _rect(x, hd + tier * 0.05, min(x + bw, 0.9) - 0.005, hd + (tier + 1) * 0.05 - 0.004)))
                x += bw
        else:  # ferry: long deckhouse
            parts.append(("super", _rect(sx0 + sw - 0.01, hd, 0.84, hd + 0.09)))
            parts += _windows(sx0 + sw, 0.83, hd + 0.04, hd + 0.065, 10)
        parts.append(("mast", _rect(0.875, hd + 0.02, 0.89, hd + 0.17)))
        return parts
    if kind == "boat":
        hd = u(0.17, 0.23)
        hull = _Hull(0.06, 0.84, 0.0, hd, 1.0, hd + 0.05)
        cx0, cw, ch = u(0.22, 0.3), u(0.3, 0.38), u(0.15, 0.21)
        cx1 = cx0 + cw
        parts = [("hull", hull.polygon()), ("boot", hull.band(0, 0.03)), ("stripe", hull.band(hd * 0.6, hd * 0.76)),
                 ("super", np.array([[cx0, hd], [cx1 + 0.07, hd], [cx1, hd + ch], [cx0 + 0.02, hd + ch]])),
                 ("window", np.array([[cx1 - 0.02, hd + ch * 0.45], [cx1 + 0.045, hd + ch * 0.45],
                                      [cx1 + 0.005, hd + ch * 0.85], [cx1 - 0.02, hd + ch * 0.85]]))]
        parts += _windows(cx0 + 0.03, cx1 - 0.04, hd + ch * 0.45, hd + ch * 0.8, 3)
        parts += [("stripe", _rect(cx0, hd + ch, cx1 - 0.01, hd + ch + 0.03)),
                  ("mast", _rect(cx0 + 0.06, hd + ch + 0.03, cx0 + 0.075, hd + ch + 0.14))]
        return parts
    if kind == "sailboat":
        hd, mh = u(0.07, 0.11), u(0.85, 1.05)
        hull = _Hull(0.1, 0.86, 0.0, hd, 1.0, hd + 0.02)
        parts = [("hull", hull.polygon()), ("boot", hull.band(0, 0.02)), ("stripe", hull.band(hd * 0.5, hd * 0.72)),
                 ("super", _rect(0.28, hd, 0.6, hd + 0.06))]
        parts += _windows(0.3, 0.58, hd + 0.02, hd + 0.04, 4)
        parts += [("mast", _rect(0.445, hd, 0.462, hd + mh)),
                  ("sail", np.array([[0.47, hd + 0.08], [0.47, hd + mh - 0.02], [0.88, hd + 0.08]])),
                  ("sail2", np.array([[0.435, hd + 0.06], [0.435, hd + mh * 0.85], [0.08, hd + 0.06]])),
                  ("stripe", np.array([[0.47, hd + 0.3], [0.47, hd + 0.36], [0.68, hd + 0.24], [0.74, hd + 0.2]]))]
        return parts
    if kind == "usv":
        hd = u(0.09, 0.13)
        hull = _Hull(0.04, 0.9, 0.0, hd, 1.0, hd * 0.85)
        return [("hull", hull.polygon()), ("boot", hull.band(0, 0.02)), ("stripe", hull.band(hd * 0.45, hd * 0.65)),
                ("super", _rect(0.3, hd * 0.9, 0.72, hd + 0.07)), *_windows(0.34, 0.68, hd + 0.02, hd + 0.05, 4),
                ("mast", _rect(0.49, hd + 0.07, 0.51, hd + 0.22)), ("mast", _rect(0.6, hd + 0.07, 0.607, hd + 0.18)),
                ("dome", _ellipse(0.5, hd + 0.25, 0.04, 0.035))]
    if kind == "buoy":
        return [("hull", np.array([[0.1, 0.0], [0.9, 0.0], [0.75, 0.9], [0.25, 0.9]])),
                ("stripe", np.array([[0.17, 0.35], [0.83, 0.35], [0.79, 0.5], [0.21, 0.5]])),
                ("mast", _rect(0.44, 0.9, 0.56, 1.2)), ("hull", _ellipse(0.5, 1.25, 0.12, 0.1))]
    raise ValueError(f"unknown vessel kind {kind!r}")


_TARGET_HUES = (0, 8, 15, 22, 28, 45, 60, 150, 160, 170)  # OpenCV hues away from the blues of water


def _target_palette(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A saturated, distinctive hull colour with light superstructure and dark details."""
    hue = float(rng.choice(_TARGET_HUES)) + rng.uniform(-3, 3)
    sat, val = rng.uniform(0.75, 1.0), rng.uniform(0.72, 0.95)
    hull = _hsv_bgr(hue, sat, val)
    accent = [_hsv_bgr(0, 0, 0.95), _hsv_bgr(0, 0, 0.12), _hsv_bgr(hue + 12, sat * 0.6, min(1.0, val + 0.1))][
        int(rng.integers(0, 3))]
    return {
        "hull": hull, "stripe": accent,
        "super": _hsv_bgr(rng.uniform(15, 30), rng.uniform(0.0, 0.12), rng.uniform(0.86, 0.97)),
        "window": _hsv_bgr(110, 0.4, rng.uniform(0.12, 0.22)), "boot": _hsv_bgr(0, rng.uniform(0, 0.6), 0.2),
        "funnel": accent if rng.uniform() < 0.5 else hull, "mast": _hsv_bgr(0, 0, 0.3),
        "cargo0": hull, "cargo1": _hsv_bgr(hue + 10, sat * 0.8, val * 0.8), "cargo2": _hsv_bgr(0, 0, 0.75),
        "sail": _hsv_bgr(20, 0.06, 0.95), "sail2": hull, "dome": _hsv_bgr(0, 0, 0.93),
    }


def _neutral_palette(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Unsaturated colours of occluding vessels: grey, navy, black or white hulls."""
    hull = [_hsv_bgr(0, 0, rng.uniform(0.25, 0.5)), _hsv_bgr(115, 0.5, rng.uniform(0.2, 0.3)),
            _hsv_bgr(0, 0, rng.uniform(0.08, 0.14)), _hsv_bgr(0, 0, rng.uniform(0.82, 0.92))][int(rng.integers(0, 4))]
    grey = _hsv_bgr(0, 0, rng.uniform(0.55, 0.7))
    return {"hull": hull, "stripe": _hsv_bgr(0, 0, 0.9), "super": grey, "window": _hsv_bgr(0, 0, 0.1),
            "boot": _hsv_bgr(0, 0, 0.15), "funnel": _hsv_bgr(0, 0, 0.2), "mast": _hsv_bgr(0, 0, 0.3),
            "cargo0": grey, "cargo1": _hsv_bgr(0, 0, 0.4), "cargo2": _hsv_bgr(0, 0, 0.8),
            "sail": _hsv_bgr(0, 0, 0.92), "sail2": _hsv_bgr(0, 0, 0.85), "dome": _hsv_bgr(0, 0, 0.9)}


def _similar_palette(rng: np.random.Generator, palette: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The target palette with the hull hue, saturation and value jittered slightly (distractors)."""
    h, s, v = cv2.cvtColor(palette["hull"].astype(np.uint8)[None, None], cv2.COLOR_BGR2HSV)[0, 0].astype(float)
    hull = _hsv_bgr(h + rng.uniform(-5, 5), min(1.0, s / 255 * rng.uniform(0.85, 1.1)),
                    min(1.0, v / 255 * rng.uniform(0.85, 1.1)))
    out = dict(palette)
    out.update(hull=hull, cargo0=hull, sail2=hull)
    return out


@dataclass
class _Placed:
    """A sprite warped into a frame-aligned region (possibly reaching outside the image)."""
    x0: int
    y0: int
    premult: np.ndarray  # (h, w, 4) float32: BGR * alpha, alpha
    box: np.ndarray      # (4,) x1, y1, x2, y2 of the polygons, image continuous coordinates


class _Sprite:
    """A textured vessel drawn once at ``_SUPERSAMPLE`` x its base size, with a small pyramid."""

    def __init__(self, rng: np.random.Generator, parts: list[tuple[str, np.ndarray]], palette: dict[str, np.ndarray],
                 base_length: float) -> None:
        pts = np.concatenate([p for _, p in parts])
        xmin, ymin = pts.min(0)
        xmax, ymax = pts.max(0)
        self.unit_size = (float(xmax - xmin), float(ymax - ymin))  # (length, height) in vessel units
        scale = _SUPERSAMPLE * base_length / self.unit_size[0]     # level-0 px per vessel unit
        pad = 6
        to_px = lambda p: np.stack([pad + (p[:, 0] - xmin) * scale, pad + (ymax - p[:, 1]) * scale], 1)  # noqa: E731
        width = int(math.ceil((xmax - xmin) * scale)) + 2 * pad + 1
        height = int(math.ceil((ymax - ymin) * scale)) + 2 * pad + 1
        colour = np.zeros((height, width, 3), np.uint8)
        alpha = np.zeros((height, width), np.uint8)
        hull_mask = np.zeros((height, width), np.uint8)
        px_parts = []
        for role, poly in parts:
            q = to_px(poly)
            px_parts.append(q)
            ipts = [np.round(q * 16).astype(np.int32)]
            cv2.fillPoly(colour, ipts, tuple(float(c) for c in palette[role]), cv2.LINE_8, 4)
            cv2.fillPoly(alpha, ipts, 255, cv2.LINE_8, 4)
            if role == "hull":
                cv2.fillPoly(hull_mask, ipts, 255, cv2.LINE_8, 4)
        self.vertices = np.concatenate(px_parts)  # level-0 px, pixel-centre coordinates
        lo, hi = self.vertices.min(0), self.vertices.max(0)
        self.centre = (lo + hi) / 2
        # texture: lighter towards the top, blurred grain, darker hull plating seams
        col = colour.astype(np.float32)
        grad = 1.08 - 0.18 * np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
        noise = rng.standard_normal((height, width)).astype(np.float32)
        grain = cv2.GaussianBlur(noise, (0, 0), 1.5 * _SUPERSAMPLE / 4)
        col *= grad * (1 + 0.12 * grain[..., None] / max(float(grain.std()), 1e-6) * 0.5)
        seam_step = max(3, int(round(0.07 * scale)))
        seams = (np.arange(width) % seam_step < max(1, seam_step // 8)).astype(np.float32)
        col *= 1 - 0.12 * (seams[None, :, None] * (hull_mask[..., None] > 0))
        a = alpha.astype(np.float32)[..., None] / 255
        level = np.concatenate([np.clip(col, 0, 255) * a, a], 2)
        self.levels = [level]
        for _ in range(4):  # level j has 2**-j of level 0's resolution
            level = cv2.pyrDown(level)
            self.levels.append(level)
        self.px_per_display = _SUPERSAMPLE  # level-0 px per display px at scale 1

    def base_box_size(self) -> tuple[float, float]:
        """Display (w, h) of the polygons at scale 1, no roll."""
        lo, hi = self.vertices.min(0), self.vertices.max(0)
        return float(hi[0] - lo[0]) / self.px_per_display, float(hi[1] - lo[1]) / self.px_per_display

    def matrix(self, sx: float, sy: float, roll: float, flip: int) -> np.ndarray:
        """(2, 2) level-0 px -> display px: rotation(roll) @ diag(flip * sx, sy) / supersample."""
        c, s = math.cos(roll), math.sin(roll)
        return np.array([[c, -s], [s, c]]) @ np.diag([flip * sx, sy]) / self.px_per_display

    def extents(self, mats: np.ndarray) -> np.ndarray:
        """(T, 4) box corners relative to the placement centre for (T, 2, 2) matrices."""
        rel = np.einsum("tij,nj->tni", mats, self.vertices - self.centre)
        return np.concatenate([rel.min(1), rel.max(1)], 1)

    def place(self, centre: np.ndarray, mat: np.ndarray) -> _Placed:
        """Warp the sprite so that its polygon-box centre lands at ``centre`` (continuous coordinates)."""
        rel = (self.vertices - self.centre) @ mat.T
        box = np.concatenate([rel.min(0), rel.max(0)]) + np.tile(centre, 2)
        x0, y0 = int(math.floor(box[0])) - 2, int(math.floor(box[1])) - 2
        x1, y1 = int(math.ceil(box[2])) + 2, int(math.ceil(box[3])) + 2
        s = math.sqrt(abs(np.linalg.det(mat)))  # display px per level-0 px
        j = 0
        while j + 1 < len(self.levels) and s * 2 ** (j + 1) <= 1.0:
            j += 1
        mj = mat * 2 ** j
        # frame pixel centres q = mat @ (v - centre) + centre - 0.5 for a level-0 pixel-centre v = 2**j * v_j
        offset = centre - 0.5 - mat @ self.centre - np.array([x0, y0])
        warp = np.concatenate([mj, offset[:, None]], 1).astype(np.float64)
        out = cv2.warpAffine(self.levels[j], warp, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
        return _Placed(x0, y0, out, box)


def _clip_region(p: _Placed, width: int, height: int) -> tuple[slice, slice, slice, slice] | None:
    """(frame rows, frame cols, sprite rows, sprite cols) of the part of ``p`` inside the image."""
    h, w = p.premult.shape[:2]
    fx0, fy0 = max(0, p.x0), max(0, p.y0)
    fx1, fy1 = min(width, p.x0 + w), min(height, p.y0 + h)
    if fx1 <= fx0 or fy1 <= fy0:
        return None
    return (slice(fy0, fy1), slice(fx0, fx1), slice(fy0 - p.y0, fy1 - p.y0), slice(fx0 - p.x0, fx1 - p.x0))


def _composite(frame: np.ndarray, p: _Placed) -> tuple | None:
    region = _clip_region(p, frame.shape[1], frame.shape[0])
    if region is None:
        return None
    fr, fc, sr, sc = region
    src = p.premult[sr, sc]
    frame[fr, fc] = frame[fr, fc] * (1 - src[..., 3:]) + src[..., :3]
    return region


def _calm_patch(frame: np.ndarray, box: np.ndarray, colour: np.ndarray, strength: float, feather: float = 5.0) -> None:
    """Damp all texture in ``box`` (x1, y1, x2, y2) towards a slightly hazy ``colour``, in place.

    Inside the box the deviation from the colour shrinks by ``strength``; the effect fades out
    over ``feather`` px outside it (a patch of haze / calm water around a low-contrast target).
    """
    hgt, wid = frame.shape[:2]
    x0, y0 = max(0, int(math.floor(box[0] - feather))), max(0, int(math.floor(box[1] - feather)))
    x1, y1 = min(wid, int(math.ceil(box[2] + feather))), min(hgt, int(math.ceil(box[3] + feather)))
    if x1 <= x0 or y1 <= y0:
        return
    xc, yc = np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5
    dx = np.maximum(np.maximum(box[0] - xc, xc - box[2]), 0)
    dy = np.maximum(np.maximum(box[1] - yc, yc - box[3]), 0)
    dist = np.sqrt(dy[:, None] ** 2 + dx[None, :] ** 2)
    mask = (strength * _smoothstep(1 - dist / feather)).astype(np.float32)[..., None]
    haze = colour + 0.12 * (225 - colour)
    region = frame[y0:y1, x0:x1]
    frame[y0:y1, x0:x1] = region * (1 - mask) + haze * mask


def _line_kernel(length: int, angle: float) -> np.ndarray:
    """Normalised (k, k) kernel of a line of ``length`` px at ``angle`` radians."""
    k = length if length % 2 else length + 1
    canvas = np.zeros((k * 4, k * 4), np.uint8)
    c, r = (k * 4 - 1) / 2, (length - 1) * 2
    p0 = (int(round((c - r * math.cos(angle)) * 16)), int(round((c - r * math.sin(angle)) * 16)))
    p1 = (int(round((c + r * math.cos(angle)) * 16)), int(round((c + r * math.sin(angle)) * 16)))
    cv2.line(canvas, p0, p1, 255, 4, cv2.LINE_AA, 4)
    kern = cv2.resize(canvas.astype(np.float32), (k, k), interpolation=cv2.INTER_AREA)
    return kern / kern.sum()


# ----------------------------------------------------------------------------------------------
# Scene
# ----------------------------------------------------------------------------------------------

class _Water:
    """Animated water (sums of sinusoids in perspective + drifting low-frequency noise) and optional sky."""

    def __init__(self, rng: np.random.Generator, width: int, height: int, frames: int) -> None:
        self.width, self.height = width, height
        self.horizon = int(round(rng.uniform(0.12, 0.3) * height)) if rng.uniform() < 0.7 else 0
        hue = rng.uniform(92, 112)
        self.base = _hsv_bgr(hue, rng.uniform(0.35, 0.75), rng.uniform(0.35, 0.6))
        self.wave_gain = rng.uniform(0.09, 0.14)
        self.noise_gain = rng.uniform(0.04, 0.08)
        self.glint = rng.uniform(0.06, 0.12)
        rows = np.arange(self.horizon, height, dtype=np.float32)
        if self.horizon:
            depth = (rows - self.horizon + 1) / (height - self.horizon)
            persp = 0.25 + 0.75 * depth
            self.haze = (0.6 * (1 - depth) ** 3)[:, None, None].astype(np.float32)
            self.haze_colour = _hsv_bgr(hue, 0.12, rng.uniform(0.75, 0.9))
        else:
            persp = np.ones_like(rows)
            self.haze = None
        xs = np.arange(width, dtype=np.float32) - width / 2
        self.xp = (xs[None, :] / persp[:, None]).astype(np.float32)
        self.zp = np.cumsum(1 / persp)[:, None].astype(np.float32) * 1.0
        self.amp = (0.5 + 0.5 * persp / persp.max())[:, None].astype(np.float32)
        n = 8
        lam = np.sort(rng.uniform(5, 26, n))[::-1] * max(width, height) / 320
        theta = np.pi / 2 + rng.uniform(-0.7, 0.7, n)
        k = 2 * np.pi / lam
        self.kx, self.ky = (k * np.cos(theta)).astype(np.float32), (k * np.sin(theta)).astype(np.float32)
        self.w = (rng.uniform(0.12, 0.3, n) * rng.choice([-1, 1], n)).astype(np.float32)
        self.phi = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
        a = lam ** 0.5
        self.a = (a / np.sqrt(np.square(a).sum() / 2)).astype(np.float32)  # unit standard deviation of the sum
        self.drift = rng.uniform(0.2, 0.6)
        cell = 40 * max(width, height) / 320
        ext = width + int(math.ceil(self.drift * frames)) + 2
        grid = rng.standard_normal((int(height / cell) + 3, int(ext / cell) + 3)).astype(np.float32)
        self.noise = cv2.resize(grid, (ext, height - self.horizon), interpolation=cv2.INTER_CUBIC)
        if self.horizon:
            top = _hsv_bgr(rng.uniform(100, 115), rng.uniform(0.25, 0.6), rng.uniform(0.72, 0.9))
            bottom = self.haze_colour
            tt = np.linspace(0, 1, self.horizon, dtype=np.float32)[:, None, None]
            clouds = cv2.resize(rng.standard_normal((4, 8)).astype(np.float32), (width, self.horizon),
                                interpolation=cv2.INTER_CUBIC)[..., None]
            sky = top * (1 - tt) + bottom * tt + 12 * clouds
            self.sky = np.broadcast_to(sky, (self.horizon, width, 3)).astype(np.float32)
        else:
            self.sky = None

    def render(self, t: int) -> np.ndarray:
        """(H, W, 3) float32 BGR background of frame ``t``."""
        wave = np.zeros_like(self.xp)
        for i in range(len(self.a)):
            phase = self.zp * self.ky[i] + float(self.w[i] * t + self.phi[i])  # (rows, 1)
            wave += self.a[i] * np.cos(self.xp * self.kx[i] + phase)
        off = self.drift * t
        i0, f = int(off), off - int(off)
        noise = (1 - f) * self.noise[:, i0:i0 + self.width] + f * self.noise[:, i0 + 1:i0 + 1 + self.width]
        shade = 1 + self.amp * (self.wave_gain * wave + self.noise_gain * noise)
        water = self.base * shade[..., None]
        glint = np.square(np.maximum(wave - 1.5, 0))[..., None] * self.glint
        water += (255 - self.base) * glint
        if self.haze is not None:
            water = water * (1 - self.haze) + self.haze_colour * self.haze
        frame = np.empty((self.height, self.width, 3), np.float32)
        frame[self.horizon:] = water
        if self.sky is not None:
            frame[:self.horizon] = self.sky
        return frame


# ----------------------------------------------------------------------------------------------
# Rendering one sequence
# ----------------------------------------------------------------------------------------------

@dataclass
class SyntheticSequence:
    """A rendered sequence: JPEG frames and every per-frame annotation."""
    plan: SequencePlan
    size: tuple[int, int]                 # (W, H)
    jpegs: list[bytes]
    boxes_xywh: np.ndarray                # (N, 4) float64, rounded to 1e-4 as written
    absence: np.ndarray                   # (N,) int 0/1
    cover: np.ndarray                     # (N,) int 0..8
    cut_by_image: np.ndarray              # (N,) int 0/1
    flags: dict[str, np.ndarray]          # every key of EVENT_TYPES -> (N,) int 0/1
    target_bgr: tuple[float, float, float]  # hull colour of the target (before any event)
    meta: dict[str, str]                  # meta_info.ini entries

    def __len__(self) -> int:
        return len(self.jpegs)

    def image(self, index: int) -> np.ndarray:
        """Decoded BGR uint8 (H, W, 3) frame ``index`` (0-based)."""
        return cv2.imdecode(np.frombuffer(self.jpegs[index], np.uint8), cv2.IMREAD_COLOR)

    def labels(self) -> np.ndarray:
        """(N,) primary challenge class per frame (see :func:`primary_class`)."""
        return np.array([primary_class({k: int(v[i]) for k, v in self.flags.items()}) for i in range(len(self))])

    def records(self) -> list[dict]:
        """JSONL records in the schema of the maritime label pipeline."""
        out = []
        for i in range(len(self)):
            x, y, w, h = (float(v) for v in self.boxes_xywh[i])
            out.append({
                "sequence_name": self.plan.name,
                "frame_id": i + 1,
                "frame_file": f"{i + 1:08d}.jpg",
                "cv_response": {k: int(self.flags[k][i]) for k in CV_KEYS},
                "vlm_response": {k: {"flag": int(self.flags[k][i]), "conf": FLAG_CONF if self.flags[k][i] else 0.0}
                                 for k in VLM_KEYS},
                "ground_truth_bbox": [x, y, round(x + w, 4), round(y + h, 4)],
            })
        return out


def _bump(frames: int, event: Event) -> np.ndarray:
    """Half-sine over the event's frames, > 0 on every one of them, 0 elsewhere."""
    t = np.arange(frames)
    out = np.zeros(frames)
    inside = (t >= event.start) & (t < event.end)
    out[inside] = np.sin(np.pi * (t[inside] - event.start + 1) / (event.end - event.start + 1))
    return out


def _trapezoid(frames: int, event: Event, ramp: int) -> np.ndarray:
    """1 inside the event, with smooth ``ramp``-frame transitions inside it, 0 outside."""
    t = np.arange(frames, dtype=np.float64)
    up = _smoothstep((t - event.start + 1) / (ramp + 1))
    down = _smoothstep((event.end - t) / (ramp + 1))
    out = np.minimum(up, down)
    out[(t < event.start) | (t >= event.end)] = 0
    return out


def _fold(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Reflect ``x`` into [lo, hi] (a bouncing path)."""
    if hi <= lo:
        return np.full_like(x, (lo + hi) / 2)
    period = hi - lo
    r = np.mod(x - lo, 2 * period)
    return lo + np.where(r <= period, r, 2 * period - r)


def _start_cost(starts: np.ndarray, disp: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Number of bounces of the folded path for each candidate start."""
    if hi <= lo:
        return np.zeros(len(starts))
    cells = np.floor((starts[:, None] + disp[None, :] - lo) / (hi - lo))
    return np.abs(np.diff(cells, axis=1)).sum(1)


def _spread_push(push: np.ndarray, radius: int = 3) -> np.ndarray:
    """A smooth curve >= ``push`` (>= 0): running max over +-radius, then a running mean over +-radius."""
    if not push.any():
        return push
    padded = np.pad(push, radius, mode="edge")
    win = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1)
    mx = win.max(1)
    padded = np.pad(mx, radius, mode="edge")
    return np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1).mean(1)


def _base_scale_range(w1: float, h1: float, low_res_event: bool, rng: np.random.Generator,
                      width: int, height: int) -> tuple[float, float]:
    """(base scale, low-res scale) in display px per vessel-size unit, respecting the label rules.

    ``w1, h1``: box of the vessel at scale 1. A normal frame must not be low-res (shorter side
    >= 26 px, area >= 1000 px²); in a low-res event the target shrinks by a factor >= 0.72 (so the
    scale rule does not fire as well) to a low-res box.
    """
    short, long_, area = min(w1, h1), max(w1, h1), w1 * h1
    kmin = max(26.0 / short, math.sqrt(1000.0 / area))
    if low_res_event:
        for lr in (rng.uniform(0.74, 0.8), 0.72):
            lo = max(25.5 / short, math.sqrt(960.0 / area))
            hi = max(22.5 / (lr * short), math.sqrt(820.0 / area) / lr)
            if hi >= lo:
                return rng.uniform(lo, hi), lr
        return kmin, 0.72
    kmax = min(max(30.0, 0.15 * height) / short, 0.32 * width / long_)
    return rng.uniform(kmin, max(kmin, kmax)), 1.0


def render_sequence(plan: SequencePlan, frames: int, size: tuple[int, int] = (320, 240)) -> SyntheticSequence:
    """Render ``plan`` as ``frames`` JPEG frames of ``size`` = (W, H) with all annotations.

    Deterministic: the same plan, frame count and size give byte-identical frames.
    """
    width, height = _check_size(size)
    check_plan(plan, frames)
    return _SequenceRenderer(plan, frames, width, height).run()


class _SequenceRenderer:
    """One sequence: scene and target sprite, per-frame pose and path, event props, then the frames.

    Every random draw comes from one generator seeded by the plan, in a fixed order.
    """

    def __init__(self, plan: SequencePlan, frames: int, width: int, height: int) -> None:
        self.plan, self.frames, self.width, self.height = plan, frames, width, height
        self.rng = rng = np.random.default_rng(plan.seed)
        self.ev = {e.kind: e for e in plan.events}
        self.water = _Water(rng, width, height, frames)
        self.palette = _target_palette(rng)
        parts = _vessel_parts(rng, plan.object_class)
        pts = np.concatenate([p for _, p in parts])
        unit_w, unit_h = pts.max(0) - pts.min(0)
        k, self.lr_scale = _base_scale_range(float(unit_w), float(unit_h), "low_res" in self.ev, rng, width, height)
        self.sprite = _Sprite(rng, parts, self.palette, base_length=k * unit_w)
        self.bw, self.bh = self.sprite.base_box_size()
        self.t = np.arange(frames)
        self.flip = 1 if rng.uniform() < 0.5 else -1
        self.top = self.water.horizon + _HORIZON_GAP if self.water.horizon else _MARGIN
        self.unit = width / 320  # speeds and gaps are tuned for 320 px wide frames

    def _in(self, kind: str, i: int) -> bool:
        e = self.ev.get(kind)
        return e is not None and e.start <= i < e.end

    # ---- per-frame size and pose -----------------------------------------------------------------
    def _pose(self) -> None:
        rng, ev, frames, t = self.rng, self.ev, self.frames, self.t
        self.scale = np.ones(frames)
        foreshort = np.ones(frames)
        roll = np.radians(1.2) * np.sin(2 * np.pi * t / rng.uniform(25, 45) + rng.uniform(0, 2 * np.pi))
        self.shade = np.zeros(frames)
        bw, bh = self.bw, self.bh
        if "scale_variation" in ev:  # approach (or recede when that keeps the target above low-res)
            e = ev["scale_variation"]
            fit = min((self.width - 2 * _MARGIN - 2) / (bw * 1.03),
                      (self.height - self.top - _MARGIN - 2) / (bh * 1.03))
            recede_ok = low_res_flag((0, 0, bw * 0.62, bh * 0.62)) is False and bw * bh * 0.62 ** 2 >= 1000
            if recede_ok and (fit < 1.5 or rng.uniform() < 0.5):
                target_scale = rng.uniform(0.55, 0.62)
            else:
                target_scale = min(rng.uniform(1.55, 1.85), fit)
                if target_scale < 1.5:
                    logger.warning("%s: %dx%d frames are too small for a scale-variation event",
                                   self.plan.name, self.width, self.height)
            self.scale += (target_scale - 1) * _trapezoid(frames, e, max(1, min(3, (e.end - e.start) // 4)))
        if "low_res" in ev:
            e = ev["low_res"]
            self.scale += (self.lr_scale - 1) * _trapezoid(frames, e, 1 if e.end - e.start < 8 else 2)
        if "variance_appear" in ev:  # turn towards the camera and back, with roll and shading
            b = _bump(frames, ev["variance_appear"])
            psi = np.radians(rng.uniform(62, 85)) * b
            foreshort = np.abs(np.cos(psi)) + 0.22 * np.sin(psi)
            roll = roll + np.radians(rng.uniform(7, 13)) * rng.choice([-1, 1]) * b
            self.shade = b
        self.mats = np.stack([self.sprite.matrix(self.scale[i] * foreshort[i], self.scale[i], roll[i], self.flip)
                              for i in range(frames)])
        self.ext = self.sprite.extents(self.mats)  # (T, 4) box corners relative to the centre

    # ---- motion path ---------------------------------------------------------------------------------
    def _path(self) -> None:
        """Constant speed, slow curvature, bounces inside the image; partial visibility pushes it out."""
        rng, ev, frames, t, ext, unit = self.rng, self.ev, self.frames, self.t, self.ext, self.unit
        width, height, top = self.width, self.height, self.top
        self.v0 = v0 = rng.uniform(0.5, 1.3) * unit
        heading = np.radians(rng.uniform(-20, 20)) + (0 if self.flip > 0 else np.pi)
        heading = heading + rng.uniform(-0.005, 0.005) * t
        speed = np.full(frames, v0)
        if "motion_blur" in ev:
            e = ev["motion_blur"]
            fast = _smoothstep((t - e.start + 3) / 3) * _smoothstep((e.end + 2 - t) / 3)
            speed = speed + (rng.uniform(5.0, 7.0) * unit - v0) * fast
        vel = np.stack([np.cos(heading), 0.45 * np.sin(heading)], 1) * speed[:, None]
        disp = np.concatenate([np.zeros((1, 2)), np.cumsum(vel[:-1], 0)])
        normal = self.scale <= 1.0 + 1e-9 if "scale_variation" in ev else np.ones(frames, bool)
        lo_x, hi_x = _MARGIN - ext[normal, 0].min(), width - _MARGIN - ext[normal, 2].max()
        lo_y, hi_y = top - ext[normal, 1].min(), height - _MARGIN - ext[normal, 3].max()
        pv = ev.get("partial_visibility")
        sides = ["left", "right", "bottom"] + ([] if self.water.horizon else ["top"])
        side = sides[int(rng.integers(0, len(sides)))] if pv else ""
        centre = np.zeros((frames, 2))
        for axis, (lo, hi) in enumerate(((lo_x, hi_x), (lo_y, hi_y))):
            # start where the folded path bounces least (and, for partial visibility, ends up near its border)
            starts = np.linspace(lo, hi, 33) if hi > lo else np.array([(lo + hi) / 2])
            cost = _start_cost(starts, disp[:, axis], lo, hi)
            if pv and ((axis == 0 and side in ("left", "right")) or (axis == 1 and side in ("top", "bottom"))):
                mid = (pv.start + pv.end - 1) // 2
                want = lo if side in ("left", "top") else hi
                cost = cost + 4 * np.abs(_fold(starts + disp[mid, axis], lo, hi) - want) / max(hi - lo, 1.0)
            best = np.flatnonzero(cost <= cost.min() + 1e-9)
            centre[:, axis] = _fold(starts[int(rng.choice(best))] + disp[:, axis], lo, hi)
        centre[:, 1] += 0.4 * unit * np.sin(2 * np.pi * t / rng.uniform(18, 30))  # bobbing
        pv_weight = np.zeros(frames)
        if pv:
            out_frac = rng.uniform(0.3, 0.55)
            pv_weight = _smoothstep((t - (pv.start - 2.5)) / 4) * _smoothstep(((pv.end + 1.5) - t) / 4)
            pv_weight[0] = 0.0  # the template frame stays where the free path puts it
            axis = 0 if side in ("left", "right") else 1
            extent = ext[:, axis + 2] - ext[:, axis]
            if side in ("left", "top"):
                want = -out_frac * extent - ext[:, axis]
            else:
                want = (width if axis == 0 else height) + out_frac * extent - ext[:, axis + 2]
            centre[:, axis] += pv_weight * (want - centre[:, axis])
        # keep every other frame inside the image (and below the horizon) with smooth corrections
        free = pv_weight <= 1e-9
        bounds = ((_MARGIN, width - _MARGIN), (top, height - _MARGIN))
        for axis in range(2):
            lo_b, hi_b = bounds[axis]
            need_up = np.where(free, np.maximum(lo_b - (centre[:, axis] + ext[:, axis]), 0), 0)
            need_down = np.where(free, np.maximum((centre[:, axis] + ext[:, axis + 2]) - hi_b, 0), 0)
            centre[:, axis] += (_spread_push(need_up) - _spread_push(need_down)) * (1 - pv_weight)
            c = centre[free, axis]
            c = np.maximum(c, lo_b - ext[free, axis] + 0.01)
            c = np.minimum(c, hi_b - ext[free, axis + 2] - 0.01)
            centre[free, axis] = c
        self.centre = centre

    # ---- event props -----------------------------------------------------------------------------------
    def _occluder(self) -> tuple[_Sprite, np.ndarray, np.ndarray] | None:
        """A neutral vessel, lower (closer) than the target, crossing it during the occlusion event."""
        e = self.ev.get("occlusion")
        if e is None:
            return None
        rng, bw, bh = self.rng, self.bw, self.bh
        parts = _vessel_parts(rng, str(rng.choice(["ship", "boat", "ship"])))
        pts = np.concatenate([p for _, p in parts])
        o_w, o_h = pts.max(0) - pts.min(0)
        o_hgt = rng.uniform(1.0, 1.5) * bh
        sprite = _Sprite(rng, parts, _neutral_palette(rng), base_length=o_hgt * o_w / o_h)
        direction = 1 if rng.uniform() < 0.5 else -1
        mat = sprite.matrix(1, 1, 0, direction)
        o_ext = sprite.extents(mat[None])[0]
        o_bw = o_ext[2] - o_ext[0]
        mid = (e.start + e.end - 1) / 2
        # overlap for about the event's length, and out of the template region at frame 0
        crossing = max(1.5 * self.unit, (o_bw + bw) / (e.end - e.start + 1),
                       ((o_bw + bw) / 2 + math.sqrt(bw * bh)) / max(mid, 1.0))
        drop = rng.uniform(0.05, 0.25) * bh
        centre = np.stack([self.centre[:, 0] + direction * crossing * (self.t - mid),
                           self.centre[:, 1] + self.ext[:, 3] + drop - o_ext[3]], 1)
        return sprite, mat, centre

    def _distractors(self) -> list[tuple[_Sprite, np.ndarray, np.ndarray]]:
        """3-5 buoys / small boats in the target's colours around it, clear of its 10-px contrast ring."""
        e = self.ev.get("background_clutter")
        if e is None:
            return []
        rng, unit, width, height = self.rng, self.unit, self.width, self.height
        inside = slice(e.start, e.end)
        tw = float((self.ext[inside, 2] - self.ext[inside, 0]).max())
        th = float((self.ext[inside, 3] - self.ext[inside, 1]).max())
        mean_c = self.centre[inside].mean(0)
        n = int(rng.integers(3, 6))
        candidates = rng.uniform(0, 2 * np.pi) + 2 * np.pi * np.arange(12) / 12
        y_min = self.water.horizon + 2 if self.water.horizon else 2
        offsets: list[np.ndarray] = []
        distractors = []
        for _ in range(n):
            kind = str(rng.choice(["buoy", "boat", "buoy", "usv"]))
            parts = _vessel_parts(rng, kind)
            pts = np.concatenate([p for _, p in parts])
            d_w, d_h = pts.max(0) - pts.min(0)
            d_hgt = rng.uniform(0.45, 0.75) * th if kind == "buoy" else rng.uniform(0.5, 0.8) * tw * d_h / d_w
            sprite = _Sprite(rng, parts, _similar_palette(rng, self.palette), base_length=d_hgt * d_w / d_h)
            mat = sprite.matrix(1, 1, 0, 1 if rng.uniform() < 0.5 else -1)
            dw, dh = sprite.base_box_size()
            gap = rng.uniform(17, 32) * max(1.0, unit)
            options = []
            for angle in candidates + rng.uniform(-0.2, 0.2):  # prefer in-image spots apart from the others
                ca, sa = math.cos(angle), math.sin(angle)
                r = min((tw / 2 + dw / 2 + gap) / max(abs(ca), 1e-3), (th / 2 + dh / 2 + gap) / max(abs(sa), 1e-3))
                off = np.array([r * ca, r * sa])
                cx, cy = mean_c + off
                in_image = dw / 2 + 2 <= cx <= width - dw / 2 - 2 and y_min + dh / 2 <= cy <= height - dh / 2 - 2
                apart = all(np.abs(off - o).max() > max(dw, dh) for o in offsets)
                options.append((not in_image, not apart, float(rng.uniform()), off))
            offset = min(options, key=lambda o: o[:3])[3]
            offsets.append(offset)
            drift = rng.uniform(-0.12, 0.12, 2) * unit
            distractors.append((sprite, mat, self.centre + offset + drift[None] * (self.t - e.start)[:, None]))
        return distractors

    def _effects(self) -> None:
        rng, ev, width, height = self.rng, self.ev, self.width, self.height
        self.illum = None
        if "illu_change" in ev:
            b = np.sqrt(_bump(self.frames, ev["illu_change"]))
            mode = ["dark", "glare", "warm"][int(rng.integers(0, 3))]
            gx, gy = rng.uniform(0.2, 0.8) * width, rng.uniform(0.3, 0.9) * height
            yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
            glare = np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * (0.45 * max(width, height)) ** 2))[..., None]
            self.illum = (mode, b, glare)
        self.blur_len = np.zeros(self.frames, int)
        if "motion_blur" in ev:  # kernel length from the target's actual speed
            e = ev["motion_blur"]
            step = np.linalg.norm(np.diff(self.centre, axis=0, prepend=self.centre[:1]), axis=1)
            gain = rng.uniform(2.2, 2.8)
            inside = (self.t >= e.start) & (self.t < e.end)
            self.blur_len[inside] = np.clip(np.round(gain * step[inside]), 7, 31).astype(int)
        self.lc_strength, self.lc_calm = rng.uniform(0.72, 0.8), rng.uniform(0.55, 0.7)
        self.pixel_block = 2 if max(width, height) <= 480 else 3
        self.appear_tint = np.array([rng.uniform(0.9, 1.1), 1.0, rng.uniform(0.85, 1.05)], np.float32)

    # ---- frames ------------------------------------------------------------------------------------------
    def _draw_target(self, frame: np.ndarray, i: int) -> tuple[_Placed, tuple | None, float, bool]:
        """Composite the target (with appearance / low-contrast changes); returns it, its region,
        its alpha mass and whether its appearance changed."""
        tgt = self.sprite.place(self.centre[i], self.mats[i])
        changed = bool(self.shade[i] > 0)
        if changed:
            tgt.premult[..., :3] *= (1 - 0.4 * self.shade[i]) * (1 + (self.appear_tint - 1) * self.shade[i])
        water_mean = None
        if self._in("low_contrast", i):
            region = _clip_region(tgt, self.width, self.height)
            if region is not None:
                water_mean = frame[region[0], region[1]].reshape(-1, 3).mean(0)
                tgt.premult[..., :3] = ((1 - self.lc_strength) * tgt.premult[..., :3]
                                        + self.lc_strength * tgt.premult[..., 3:] * water_mean)
        region = _composite(frame, tgt)
        if water_mean is not None and region is not None:
            _calm_patch(frame, tgt.box, water_mean, self.lc_calm)
        return tgt, region, float(tgt.premult[..., 3].sum()), changed

    def _apply_effects(self, frame: np.ndarray, i: int, low_res: bool) -> np.ndarray:
        """Global illumination, pixelation (low-res event) and motion blur of frame ``i``."""
        if self.illum is not None and self.illum[1][i] > 0:
            mode, b, glare = self.illum
            s = float(b[i])
            if mode == "dark":
                frame *= (1 - 0.55 * s) * (1 + (np.array([1.08, 1.0, 0.88], np.float32) - 1) * s)
            elif mode == "warm":
                frame *= (1 - 0.3 * s) * (1 + (np.array([0.62, 0.85, 1.12], np.float32) - 1) * s)
            else:
                frame *= 1 - 0.1 * s
                frame += s * (95 * glare + 20)
        if low_res and self._in("low_res", i):
            small = cv2.resize(frame, (max(1, self.width // self.pixel_block), max(1, self.height // self.pixel_block)),
                               interpolation=cv2.INTER_AREA)
            frame = cv2.resize(small, (self.width, self.height), interpolation=cv2.INTER_NEAREST)
        if self.blur_len[i] > 0:
            step = self.centre[i] - self.centre[i - 1] if i > 0 else np.array([self.flip, 0.0])
            kernel = _line_kernel(int(self.blur_len[i]), math.atan2(step[1], step[0]))
            frame = cv2.filter2D(frame, -1, kernel, borderType=cv2.BORDER_REFLECT)
        return frame

    def run(self) -> SyntheticSequence:
        self._pose()
        self._path()
        occluder = self._occluder()
        distractors = self._distractors()
        self._effects()
        frames, width, height, rng = self.frames, self.width, self.height, self.rng
        jpegs: list[bytes] = []
        boxes = np.zeros((frames, 4))
        absence = np.zeros(frames, int)
        cover = np.zeros(frames, int)
        cut = np.zeros(frames, int)
        flags = {k: np.zeros(frames, int) for k in EVENT_TYPES}
        last_box = None
        for i in range(frames):
            frame = self.water.render(i)
            if self._in("background_clutter", i):
                visible = 0
                for d_sprite, d_mat, d_centre in distractors:
                    placed = d_sprite.place(d_centre[i], d_mat)
                    _composite(frame, placed)
                    cx, cy = (placed.box[:2] + placed.box[2:]) / 2
                    visible += int(0 <= cx < width and 0 <= cy < height)
                flags["background_clutter"][i] = int(visible >= 2)
            tgt, region, total, changed = self._draw_target(frame, i)
            flags["variance_appear"][i] = int(changed)
            alpha_t = tgt.premult[region[2], region[3], 3] if region is not None else np.zeros((0, 0), np.float32)
            occ_alpha = np.zeros_like(alpha_t)
            if occluder is not None:
                o_sprite, o_mat, o_centre = occluder
                placed = o_sprite.place(o_centre[i], o_mat)
                o_region = _composite(frame, placed)
                if o_region is not None and region is not None:  # occluder alpha over the target's region
                    fr, fc = region[0], region[1]
                    y0, y1 = max(fr.start, o_region[0].start), min(fr.stop, o_region[0].stop)
                    x0, x1 = max(fc.start, o_region[1].start), min(fc.stop, o_region[1].stop)
                    if y1 > y0 and x1 > x0:
                        occ_alpha[y0 - fr.start:y1 - fr.start, x0 - fc.start:x1 - fc.start] = \
                            placed.premult[y0 - placed.y0:y1 - placed.y0, x0 - placed.x0:x1 - placed.x0, 3]
            occluded = float((alpha_t * occ_alpha).sum())
            # ---- visibility, box, cover
            x1b, y1b, x2b, y2b = tgt.box
            is_cut = x1b < 0 or y1b < 0 or x2b > width or y2b > height
            is_occ = occluded >= 1.0  # at least one pixel's worth of the target is behind the occluder
            box = np.array([max(x1b, 0.0), max(y1b, 0.0), min(x2b, width), min(y2b, height)])
            visible = alpha_t * (1 - occ_alpha)
            mask = visible >= 0.5
            absent = not mask.any()
            if absent:
                box_xywh = last_box if last_box is not None else np.r_[box[:2], box[2:] - box[:2]]
            else:
                if is_occ:  # the box of the visible pixels
                    fr, fc = region[0], region[1]
                    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
                    box = np.array([max(box[0], fc.start + cols[0]), max(box[1], fr.start + rows[0]),
                                    min(box[2], fc.start + cols[-1] + 1), min(box[3], fr.start + rows[-1] + 1)])
                box_xywh = last_box = np.round(np.r_[box[:2], box[2:] - box[:2]], 4)
            if absent:
                cover[i] = 0
            elif is_cut or is_occ:
                cover[i] = int(min(7, max(1, math.ceil(float(visible.sum()) / max(total, 1e-6) / 0.15 - 1e-9))))
            else:
                cover[i] = 8
            boxes[i], absence[i], cut[i] = box_xywh, int(absent), int(is_cut)
            flags["occlusion"][i] = int(is_occ)
            flags["partial_visibility"][i] = int(is_cut)
            flags["illu_change"][i] = int(self.illum is not None and self.illum[1][i] > 0)
            flags["motion_blur"][i] = int(self.blur_len[i] > 0)
            flags["scale_variation"][i] = int(scale_variation_flag(box_xywh, boxes[0]))
            flags["low_res"][i] = int(low_res_flag(box_xywh))
            # ---- effects, sensor noise, JPEG; the contrast rule reads the decoded file
            frame = self._apply_effects(frame, i, bool(flags["low_res"][i]))
            frame += rng.standard_normal((height, width), dtype=np.float32)[..., None] * 1.5
            ok, buf = cv2.imencode(".jpg", np.clip(frame + 0.5, 0, 255).astype(np.uint8), JPEG_PARAMS)
            if not ok:
                raise RuntimeError(f"JPEG encoding failed for {self.plan.name} frame {i + 1}")
            jpegs.append(buf.tobytes())
            gray = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2GRAY)
            flags["low_contrast"][i] = int(low_contrast_flag(gray, box_xywh))
        return SyntheticSequence(self.plan, (width, height), jpegs, boxes, absence, cover, cut, flags,
                                 tuple(float(c) for c in self.palette["hull"]), self._meta())

    def _meta(self) -> dict[str, str]:
        plan, frames = self.plan, self.frames
        events = sorted(plan.events, key=lambda e: e.start)
        return {
            "url": "synthetic://hiptrack-cls/maritime",
            "begin": "00:00:00",
            "end": f"00:{frames // 1800:02d}:{frames // 30 % 60:02d}",
            "anno_fps": "30Hz",
            "object_class": plan.object_class,
            "motion_class": "sailing" if plan.object_class == "sailboat" else "cruising",
            "major_class": "vessel",
            "root_class": "watercraft",
            "motion_adverb": "fast" if self.v0 > self.unit else "slowly",
            "resolution": f"({self.width}, {self.height})",
            "synthetic_seed": str(plan.seed),
            "synthetic_events": " ".join(f"{e.kind}:{e.start + 1}-{e.end}" for e in events) or "none",  # 1-based
        }


# ----------------------------------------------------------------------------------------------
# Writing a dataset
# ----------------------------------------------------------------------------------------------

def _check_size(size: Sequence[int]) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (W, H), got {size!r}") from None
    in_range = MIN_SIZE[0] <= width <= MAX_SIZE[0] and MIN_SIZE[1] <= height <= MAX_SIZE[1]
    if (width, height) != tuple(size) or not in_range:
        raise ValueError(f"size must be integers (W, H) from {MIN_SIZE} to {MAX_SIZE}, got {tuple(size)}")
    return width, height


def write_sequence(seq: SyntheticSequence, split_dir: Path, ann_dir: Path) -> None:
    """Write frames, GOT-10k label files and meta_info.ini under ``split_dir/<name>`` and the JSONL file."""
    name = seq.plan.name
    seq_dir = Path(split_dir) / name
    seq_dir.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(seq.jpegs):
        (seq_dir / f"{i + 1:08d}.jpg").write_bytes(data)
    lines = lambda values: "".join(f"{v}\n" for v in values)  # noqa: E731
    (seq_dir / "groundtruth.txt").write_text(
        lines(",".join(f"{v:.4f}" for v in box) for box in seq.boxes_xywh), newline="\n")
    (seq_dir / "absence.label").write_text(lines(seq.absence.tolist()), newline="\n")
    (seq_dir / "cover.label").write_text(lines(seq.cover.tolist()), newline="\n")
    (seq_dir / "cut_by_image.label").write_text(lines(seq.cut_by_image.tolist()), newline="\n")
    (seq_dir / "meta_info.ini").write_text(
        "[METAINFO]\n" + "".join(f"{k}: {v}\n" for k, v in seq.meta.items()), newline="\n")
    jsonl_dir = Path(ann_dir) / name
    jsonl_dir.mkdir(parents=True, exist_ok=True)
    (jsonl_dir / f"{name}.jsonl").write_text(lines(json.dumps(r) for r in seq.records()), newline="\n")



def generate_dataset(out_dir: str | Path, sequences: int = 20, frames: int = 60, seed: int = 0,
                     test_fraction: float = 0.25, size: tuple[int, int] = (320, 240), *,
                     overwrite: bool = False, events: Mapping[str, Sequence[Event]] | None = None) -> dict:
    """Write a synthetic maritime dataset in GOT-10k / MVTD layout and return a summary.

    Args:
        out_dir: output folder; must be empty or missing unless ``overwrite``, which replaces only
            :data:`GENERATED` entries and leaves anything else in the folder alone.
        sequences, frames: number of sequences and frames per sequence.
        seed: seeds everything; the same arguments give byte-identical files.
        test_fraction: share of sequences in ``test`` (round(N * f), at least 1 when N >= 2).
        size: frame size (W, H).
        events: optional ``{sequence name: [Event, ...]}`` replacing the planned events of those
            sequences (appearance and motion stay as seeded).

    Returns:
        ``{"out_dir", "seed", "sequences", "frames", "size", "test_fraction", "splits": {"train": [...],
        "test": [...]}, "events": {name: [[kind, start, end], ...]}, "flag_counts": {kind: frames},
        "class_counts": {class name: frames}, "absent_frames"}``.
    """
    width, height = _check_size(size)
    check_dataset_counts(sequences, frames, test_fraction)
    plans = plan_dataset(sequences, frames, seed, test_fraction)
    if events:
        known = {p.name for p, _ in plans}
        unknown = sorted(set(events) - known)
        if unknown:
            raise ValueError(f"events given for unknown sequences {unknown}; names are {sorted(known)}")
        plans = [(SequencePlan(p.name, p.object_class, tuple(events[p.name]), p.seed) if p.name in events else p, s)
                 for p, s in plans]
        for plan, _ in plans:
            check_plan(plan, frames)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass overwrite=True to replace the generated dataset")
        for entry in GENERATED:
            path = out / entry
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    for split in ("train", "test"):
        (out / split).mkdir(parents=True, exist_ok=True)
    ann_dir = out / "cls_annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[str]] = {"train": [], "test": []}
    flag_counts = {k: 0 for k in EVENT_TYPES}
    class_counts = {name: 0 for name in CHALLENGE_NAMES}
    absent = 0
    for n, (plan, split) in enumerate(plans, 1):
        seq = render_sequence(plan, frames, (width, height))
        write_sequence(seq, out / split, ann_dir)
        splits[split].append(plan.name)
        for k in EVENT_TYPES:
            flag_counts[k] += int(seq.flags[k].sum())
        for c in seq.labels():
            class_counts[CHALLENGE_NAMES[c]] += 1
        absent += int(seq.absence.sum())
        logger.info("[%d/%d] %s (%s): %s", n, len(plans), plan.name, split, seq.meta["synthetic_events"])
    for split, names in splits.items():
        (out / split / "list.txt").write_text("".join(f"{name}\n" for name in names), newline="\n")
    summary = {
        "out_dir": str(out), "seed": seed, "sequences": sequences, "frames": frames, "size": (width, height),
        "test_fraction": test_fraction, "splits": splits,
        "events": {p.name: [[e.kind, e.start, e.end] for e in p.events] for p, _ in plans},
        "flag_counts": flag_counts, "class_counts": class_counts, "absent_frames": absent,
    }
    _write_readme(out / "README.txt", summary)
    return summary


def _write_readme(path: Path, summary: dict) -> None:
    width, height = summary["size"]
    total = summary["sequences"] * summary["frames"]
    n_train, n_test = len(summary["splits"]["train"]), len(summary["splits"]["test"])
    classes = "\n".join(f"  {i} {name}: {summary['class_counts'][name]} frames"
                        for i, name in enumerate(CHALLENGE_NAMES))
    text = f"""Synthetic maritime tracking dataset (HIPTrack-CLS embedded default)

Generated by lib.synthetic.maritime.generate_dataset (tracking/make_synthetic_dataset.py) with
  seed={summary['seed']} sequences={summary['sequences']} frames={summary['frames']} size={width}x{height}
  test_fraction={summary['test_fraction']}
The same arguments reproduce every file byte for byte.

Layout (GOT-10k / MVTD):
  train/list.txt, test/list.txt             sequence names ({n_train} train, {n_test} test)
  <split>/<seq>/00000001.jpg ...            JPEG frames (quality 90)
  <split>/<seq>/groundtruth.txt             x,y,w,h per frame: visible part of the target, clipped to the image
  <split>/<seq>/absence.label               1 = target not visible (box kept from the last visible frame)
  <split>/<seq>/cover.label                 visible fraction, 0 = none ... 8 = fully visible (GOT-10k bins)
  <split>/<seq>/cut_by_image.label          1 = target crosses the image border
  <split>/<seq>/meta_info.ini               [METAINFO]: object_class, resolution, events, ...
  cls_annotations/<seq>/<seq>.jsonl         per-frame challenge flags and ground_truth_bbox [x1, y1, x2, y2]

One target vessel per sequence (ship, boat, sailboat or USV in a distinctive colour) on animated
water, with 1-3 scripted challenge events rendered into the pixels. VLM flags mark the frames
where an event is rendered; CV flags follow the rules scale sqrt(area/area0) outside [0.7, 1.4],
shorter side < 24 px or area < 900 px², and box RMS contrast < ring RMS contrast / 1.1.

Frames per challenge class (first VLM flag in priority order, else the first CV flag, else Normal),
{total} frames in all:
{classes}
"""
    path.write_text(text, newline="\n")
