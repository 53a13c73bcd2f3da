"""Vessel sprites: side-view part polygons, colour palettes, textured sprites, placement and compositing.

A :class:`Sprite` is drawn once, supersampled, from :func:`vessel_parts` in a palette; each frame
warps it into place (:meth:`Sprite.place`) and alpha-composites it over the background (:func:`composite`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from lib.synthetic.drawing import hsv_bgr, smoothstep

Region = tuple[slice, slice, slice, slice]  # frame rows, frame cols, sprite rows, sprite cols

_SUPERSAMPLE = 4     # sprites are drawn at this multiple of their base display size


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


def vessel_parts(rng: np.random.Generator, kind: str) -> list[tuple[str, np.ndarray]]:
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


def target_palette(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A saturated, distinctive hull colour with light superstructure and dark details."""
    hue = float(rng.choice(_TARGET_HUES)) + rng.uniform(-3, 3)
    sat, val = rng.uniform(0.75, 1.0), rng.uniform(0.72, 0.95)
    hull = hsv_bgr(hue, sat, val)
    accent = [hsv_bgr(0, 0, 0.95), hsv_bgr(0, 0, 0.12), hsv_bgr(hue + 12, sat * 0.6, min(1.0, val + 0.1))][
        int(rng.integers(0, 3))]
    return {
        "hull": hull, "stripe": accent,
        "super": hsv_bgr(rng.uniform(15, 30), rng.uniform(0.0, 0.12), rng.uniform(0.86, 0.97)),
        "window": hsv_bgr(110, 0.4, rng.uniform(0.12, 0.22)), "boot": hsv_bgr(0, rng.uniform(0, 0.6), 0.2),
        "funnel": accent if rng.uniform() < 0.5 else hull, "mast": hsv_bgr(0, 0, 0.3),
        "cargo0": hull, "cargo1": hsv_bgr(hue + 10, sat * 0.8, val * 0.8), "cargo2": hsv_bgr(0, 0, 0.75),
        "sail": hsv_bgr(20, 0.06, 0.95), "sail2": hull, "dome": hsv_bgr(0, 0, 0.93),
    }


def neutral_palette(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Unsaturated colours of occluding vessels: grey, navy, black or white hulls."""
    hull = [hsv_bgr(0, 0, rng.uniform(0.25, 0.5)), hsv_bgr(115, 0.5, rng.uniform(0.2, 0.3)),
            hsv_bgr(0, 0, rng.uniform(0.08, 0.14)), hsv_bgr(0, 0, rng.uniform(0.82, 0.92))][int(rng.integers(0, 4))]
    grey = hsv_bgr(0, 0, rng.uniform(0.55, 0.7))
    return {"hull": hull, "stripe": hsv_bgr(0, 0, 0.9), "super": grey, "window": hsv_bgr(0, 0, 0.1),
            "boot": hsv_bgr(0, 0, 0.15), "funnel": hsv_bgr(0, 0, 0.2), "mast": hsv_bgr(0, 0, 0.3),
            "cargo0": grey, "cargo1": hsv_bgr(0, 0, 0.4), "cargo2": hsv_bgr(0, 0, 0.8),
            "sail": hsv_bgr(0, 0, 0.92), "sail2": hsv_bgr(0, 0, 0.85), "dome": hsv_bgr(0, 0, 0.9)}


def similar_palette(rng: np.random.Generator, palette: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The target palette with the hull hue, saturation and value jittered slightly (distractors)."""
    h, s, v = cv2.cvtColor(palette["hull"].astype(np.uint8)[None, None], cv2.COLOR_BGR2HSV)[0, 0].astype(float)
    hull = hsv_bgr(h + rng.uniform(-5, 5), min(1.0, s / 255 * rng.uniform(0.85, 1.1)),
                   min(1.0, v / 255 * rng.uniform(0.85, 1.1)))
    out = dict(palette)
    out.update(hull=hull, cargo0=hull, sail2=hull)
    return out


@dataclass
class PlacedSprite:
    """A sprite warped into a frame-aligned region (possibly reaching outside the image)."""
    x0: int
    y0: int
    premult: np.ndarray  # (h, w, 4) float32: BGR * alpha, alpha
    box: np.ndarray      # (4,) x1, y1, x2, y2 of the polygons, image continuous coordinates


class Sprite:
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

    def place(self, centre: np.ndarray, mat: np.ndarray) -> PlacedSprite:
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
        return PlacedSprite(x0, y0, out, box)


def clip_region(p: PlacedSprite, width: int, height: int) -> Region | None:
    """(frame rows, frame cols, sprite rows, sprite cols) of the part of ``p`` inside the image."""
    h, w = p.premult.shape[:2]
    fx0, fy0 = max(0, p.x0), max(0, p.y0)
    fx1, fy1 = min(width, p.x0 + w), min(height, p.y0 + h)
    if fx1 <= fx0 or fy1 <= fy0:
        return None
    return (slice(fy0, fy1), slice(fx0, fx1), slice(fy0 - p.y0, fy1 - p.y0), slice(fx0 - p.x0, fx1 - p.x0))


def composite(frame: np.ndarray, p: PlacedSprite) -> Region | None:
    """Alpha-composite ``p`` over ``frame`` in place; returns the region drawn (see :func:`clip_region`)."""
    region = clip_region(p, frame.shape[1], frame.shape[0])
    if region is None:
        return None
    fr, fc, sr, sc = region
    src = p.premult[sr, sc]
    frame[fr, fc] = frame[fr, fc] * (1 - src[..., 3:]) + src[..., :3]
    return region


def calm_patch(frame: np.ndarray, box: np.ndarray, colour: np.ndarray, strength: float, feather: float = 5.0) -> None:
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
    mask = (strength * smoothstep(1 - dist / feather)).astype(np.float32)[..., None]
    haze = colour + 0.12 * (225 - colour)
    region = frame[y0:y1, x0:x1]
    frame[y0:y1, x0:x1] = region * (1 - mask) + haze * mask

