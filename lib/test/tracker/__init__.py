"""Trackers: the pytracking ``initialize`` / ``track`` contract around our networks.

:data:`TRACKERS` maps the tracker name of ``tracking/test.py`` to its class; every class has
``from_checkpoint(cfg, checkpoint, device, save_cls)``.
"""
from lib.test.tracker.hiptrack import HIPTrackTracker
from lib.test.tracker.hiptrack_cls import HIPTrackCLSTracker

TRACKERS: dict[str, type[HIPTrackTracker]] = {
    "hiptrack": HIPTrackTracker,          # plain HIPTrack (configs with MODEL.CLS_HEAD.ENABLED False)
    "hiptrack_cls": HIPTrackCLSTracker,   # HIPTrack-CLS; with save_cls also per-frame challenge predictions
}

__all__ = ["TRACKERS", "HIPTrackCLSTracker", "HIPTrackTracker"]
