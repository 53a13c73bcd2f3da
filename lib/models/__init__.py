"""Model constructors, chosen by config."""
from __future__ import annotations

from lib.models.hiptrack.hiptrack import HIPTrack, build_hiptrack
from lib.models.hiptrack.hiptrack_cls import HIPTrackCLS, build_hiptrack_cls


def build_model(cfg, training: bool = True) -> HIPTrack:
    """HIPTrack-CLS when ``MODEL.CLS_HEAD.ENABLED``, else plain HIPTrack."""
    return build_hiptrack_cls(cfg, training) if cfg.MODEL.CLS_HEAD.ENABLED else build_hiptrack(cfg, training)


__all__ = ["HIPTrack", "HIPTrackCLS", "build_hiptrack", "build_hiptrack_cls", "build_model"]
