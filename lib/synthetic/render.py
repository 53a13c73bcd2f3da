"""Rendering one synthetic sequence: target pose and path, event props, frames, boxes and flags.

:func:`render_sequence` turns a :class:`~lib.synthetic.plan.SequencePlan` into a
:class:`SyntheticSequence` (JPEG frames plus every per-frame annotation). All random draws of a
sequence come from one generator seeded by its plan, in a fixed order, so the output is
byte-identical for a plan with the same NumPy / OpenCV build.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from lib.challenges import DEFAULT_LABEL_SEED, primary_label
from lib.synthetic.drawing import line_kernel, smoothstep
from lib.synthetic.labels import (
    CV_KEYS,
    EVENT_TYPES,
    FLAG_CONF,
    VLM_KEYS,
    low_contrast_flag,
    low_res_flag,
    scale_variation_flag,
)
from lib.synthetic.plan import Event, SequencePlan, check_plan
from lib.synthetic.sprites import (
    PlacedSprite,
    Region,
    Sprite,
    calm_patch,
    clip_region,
    composite,
    neutral_palette,
    similar_palette,
    target_palette,
    vessel_parts,
)
from lib.synthetic.water import Water

logger = logging.getLogger(__name__)

MIN_SIZE = (128, 96)
MAX_SIZE = (4096, 4096)
JPEG_PARAMS = [cv2.IMWRITE_JPEG_QUALITY, 90, cv2.IMWRITE_JPEG_OPTIMIZE, 0, cv2.IMWRITE_JPEG_PROGRESSIVE, 0]
if hasattr(cv2, "IMWRITE_JPEG_SAMPLING_FACTOR"):  # OpenCV >= 4.5.5; 4:2:0 is also the older default
    JPEG_PARAMS += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420]

_MARGIN = 4.0        # px kept between the target and the image border outside partial-visibility events
_HORIZON_GAP = 14.0  # px kept between the target's top and the horizon (keeps the sky out of the contrast ring)


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
        """(N,) challenge class per frame, by the rule training uses (default tie-break seed, frame id key)."""
        return np.array([primary_label({k: bool(v[i]) for k, v in self.flags.items()}, DEFAULT_LABEL_SEED,
                                       self.plan.name, i + 1) for i in range(len(self))])

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
    up = smoothstep((t - event.start + 1) / (ramp + 1))
    down = smoothstep((event.end - t) / (ramp + 1))
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
    width, height = check_frame_size(size)
    check_plan(plan, frames)
    return _SequenceRenderer(plan, frames, width, height).run()


def check_frame_size(size: Sequence[int]) -> tuple[int, int]:
    """``size`` as integers (W, H); ``ValueError`` unless they are whole numbers from MIN_SIZE to MAX_SIZE."""
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (W, H), got {size!r}") from None
    in_range = MIN_SIZE[0] <= width <= MAX_SIZE[0] and MIN_SIZE[1] <= height <= MAX_SIZE[1]
    if (width, height) != tuple(size) or not in_range:
        raise ValueError(f"size must be integers (W, H) from {MIN_SIZE} to {MAX_SIZE}, got {tuple(size)}")
    return width, height


class _SequenceRenderer:
    """One sequence: scene and target sprite, per-frame pose and path, event props, then the frames.

    Every random draw comes from one generator seeded by the plan, in a fixed order.
    """

    def __init__(self, plan: SequencePlan, frames: int, width: int, height: int) -> None:
        self.plan, self.frames, self.width, self.height = plan, frames, width, height
        self.rng = rng = np.random.default_rng(plan.seed)
        self.ev = {e.kind: e for e in plan.events}
        self.water = Water(rng, width, height, frames)
        self.palette = target_palette(rng)
        parts = vessel_parts(rng, plan.object_class)
        pts = np.concatenate([p for _, p in parts])
        unit_w, unit_h = pts.max(0) - pts.min(0)
        k, self.lr_scale = _base_scale_range(float(unit_w), float(unit_h), "low_res" in self.ev, rng, width, height)
        self.sprite = Sprite(rng, parts, self.palette, base_length=k * unit_w)
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
            fast = smoothstep((t - e.start + 3) / 3) * smoothstep((e.end + 2 - t) / 3)
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
            pv_weight = smoothstep((t - (pv.start - 2.5)) / 4) * smoothstep(((pv.end + 1.5) - t) / 4)
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
    def _occluder(self) -> tuple[Sprite, np.ndarray, np.ndarray] | None:
        """A neutral vessel, lower (closer) than the target, crossing it during the occlusion event."""
        e = self.ev.get("occlusion")
        if e is None:
            return None
        rng, bw, bh = self.rng, self.bw, self.bh
        parts = vessel_parts(rng, str(rng.choice(["ship", "boat", "ship"])))
        pts = np.concatenate([p for _, p in parts])
        o_w, o_h = pts.max(0) - pts.min(0)
        o_hgt = rng.uniform(1.0, 1.5) * bh
        sprite = Sprite(rng, parts, neutral_palette(rng), base_length=o_hgt * o_w / o_h)
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

    def _distractors(self) -> list[tuple[Sprite, np.ndarray, np.ndarray]]:
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
            parts = vessel_parts(rng, kind)
            pts = np.concatenate([p for _, p in parts])
            d_w, d_h = pts.max(0) - pts.min(0)
            d_hgt = rng.uniform(0.45, 0.75) * th if kind == "buoy" else rng.uniform(0.5, 0.8) * tw * d_h / d_w
            sprite = Sprite(rng, parts, similar_palette(rng, self.palette), base_length=d_hgt * d_w / d_h)
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
    def _draw_target(self, frame: np.ndarray, i: int) -> tuple[PlacedSprite, Region | None, float, bool]:
        """Composite the target (with appearance / low-contrast changes); returns it, its region,
        its alpha mass and whether its appearance changed."""
        tgt = self.sprite.place(self.centre[i], self.mats[i])
        changed = bool(self.shade[i] > 0)
        if changed:
            tgt.premult[..., :3] *= (1 - 0.4 * self.shade[i]) * (1 + (self.appear_tint - 1) * self.shade[i])
        water_mean = None
        if self._in("low_contrast", i):
            region = clip_region(tgt, self.width, self.height)
            if region is not None:
                water_mean = frame[region[0], region[1]].reshape(-1, 3).mean(0)
                tgt.premult[..., :3] = ((1 - self.lc_strength) * tgt.premult[..., :3]
                                        + self.lc_strength * tgt.premult[..., 3:] * water_mean)
        region = composite(frame, tgt)
        if water_mean is not None and region is not None:
            calm_patch(frame, tgt.box, water_mean, self.lc_calm)
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
            kernel = line_kernel(int(self.blur_len[i]), math.atan2(step[1], step[0]))
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
                    composite(frame, placed)
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
                o_region = composite(frame, placed)
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

