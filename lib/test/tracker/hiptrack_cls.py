"""HIPTrack-CLS tracker: HIPTrack's tracker that can also report the frame's maritime challenge.

Tracking is exactly :class:`~lib.test.tracker.hiptrack.HIPTrackTracker` (the box path of
HIPTrack-CLS does not depend on the head unless ``MODEL.CLS_HEAD.FUSION``). A tracker made with
``predict_challenges`` asks the network for the challenge of every search frame
(``with_challenges=True``) and ``track()`` adds ``cls_id`` (int) and ``cls_probs`` (K class
probabilities); without it the classifier never runs unless a challenge-aware policy reads it
(``TEST.POLICY`` on with ``SOURCE: predicted``). The setting belongs to the tracker, so trackers
with different settings can share one network.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from lib.models.hiptrack.hiptrack_cls import HIPTrackCLS
from lib.test.tracker.hiptrack import HIPTrackTracker, load_network


class HIPTrackCLSTracker(HIPTrackTracker):
    """Tracker around a :class:`HIPTrackCLS` network; optionally predicts each frame's challenge."""

    reads_challenge_head = True

    def __init__(self, network: HIPTrackCLS, cfg, device: torch.device | str = "cpu", precision: str | None = None,
                 predict_challenges: bool = False):
        if not isinstance(network, HIPTrackCLS):
            raise TypeError(f"HIPTrackCLSTracker needs a HIPTrackCLS network, got {type(network).__name__}; "
                            "use a config with MODEL.CLS_HEAD.ENABLED True")
        super().__init__(network, cfg, device, precision)
        self.predict_challenges = predict_challenges

    @classmethod
    def from_checkpoint(cls, cfg, checkpoint: str | Path, device: torch.device | str = "cpu",
                        save_cls: bool = False) -> HIPTrackCLSTracker:
        """The tracker of a HIPTrack-CLS config with the weights of ``checkpoint`` (loaded strictly)."""
        if not cfg.MODEL.CLS_HEAD.ENABLED:
            raise ValueError("the hiptrack_cls tracker needs a config with MODEL.CLS_HEAD.ENABLED True; "
                             "use the hiptrack tracker for plain HIPTrack configs")
        return cls(load_network(cfg, checkpoint, device), cfg, device, predict_challenges=save_cls)

    @property
    def runs_head(self) -> bool:
        """True when every frame runs the classifier: challenge predictions asked for, or policies read them."""
        return self.predict_challenges or self.policies.needs_predictions

    def _run_network(self, search: torch.Tensor, allow_write: Callable[[dict], bool] | None = None
                     ) -> dict[str, torch.Tensor]:
        """HIPTrack's network outputs, plus ``cls_logits`` when this tracker runs the head."""
        return self.network.track(self.video_state, search, with_challenges=self.runs_head, allow_write=allow_write)

    def _predicted_probabilities(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """The head's (K,) challenge probabilities of a frame (softmax or sigmoids, ``MODEL.CLS_HEAD.MODE``)."""
        return self.network.cls_head.probabilities(out["cls_logits"])[0]

    def _extra_outputs(self, out: dict[str, torch.Tensor]) -> dict:
        """``cls_id`` and ``cls_probs`` of the frame when challenge predictions are on."""
        if not self.predict_challenges:
            return {}
        probs = self.network.cls_head.probabilities(out["cls_logits"])[0]
        return {"cls_id": int(probs.argmax()), "cls_probs": probs.tolist()}
