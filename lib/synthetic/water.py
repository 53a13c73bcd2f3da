"""Background of the synthetic sequences: animated water in perspective under an optional sky."""
from __future__ import annotations

import math

import cv2
import numpy as np

from lib.synthetic.drawing import hsv_bgr


class Water:
    """Animated water (sums of sinusoids in perspective + drifting low-frequency noise) and optional sky."""

    def __init__(self, rng: np.random.Generator, width: int, height: int, frames: int) -> None:
        self.width, self.height = width, height
        self.horizon = int(round(rng.uniform(0.12, 0.3) * height)) if rng.uniform() < 0.7 else 0
        hue = rng.uniform(92, 112)
        self.base = hsv_bgr(hue, rng.uniform(0.35, 0.75), rng.uniform(0.35, 0.6))
        self.wave_gain = rng.uniform(0.09, 0.14)
        self.noise_gain = rng.uniform(0.04, 0.08)
        self.glint = rng.uniform(0.06, 0.12)
        rows = np.arange(self.horizon, height, dtype=np.float32)
        if self.horizon:
            depth = (rows - self.horizon + 1) / (height - self.horizon)
            persp = 0.25 + 0.75 * depth
            self.haze = (0.6 * (1 - depth) ** 3)[:, None, None].astype(np.float32)
            self.haze_colour = hsv_bgr(hue, 0.12, rng.uniform(0.75, 0.9))
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
            top = hsv_bgr(rng.uniform(100, 115), rng.uniform(0.25, 0.6), rng.uniform(0.72, 0.9))
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

