"""HIPTrack-CLS: HIPTrack with an auxiliary maritime-challenge classification head.

Multi-task learning on one shared backbone: the box path is HIPTrack's, and a classification
head reads the mean of the backbone's search-region tokens of every search frame. In training
each frame's output also holds ``cls_logits``; the auxiliary loss regularises the shared
features. In eval mode the head is not run at all unless ``predict_challenges`` is set, so
tracking costs exactly what HIPTrack costs. With ``MODEL.CLS_HEAD.FUSION`` the head's features are
also projected to the box head's input channels and added to its input map; then they are
computed in every mode, since boxes depend on them. With ``MODEL.CLS_HEAD.STEM_FEATURES`` the head
also reads the HIP memory encoder's convolutional stem of the search crop (with the predicted box
as its mask channel), the network that otherwise encodes the frame into memory.
"""
from __future__ import annotations

import logging

import torch

from lib.models.hip.historical_prompt import stem_channels
from lib.models.hiptrack.hiptrack import HIPTrack, hiptrack_parts, load_initial_weights
from lib.models.layers.cls_head import ChallengeClassificationHead

logger = logging.getLogger(__name__)


class HIPTrackCLS(HIPTrack):
    """HIPTrack plus a challenge classification head on the shared backbone features."""

    def __init__(self, cls_head: ChallengeClassificationHead, **hiptrack_kwargs) -> None:
        super().__init__(**hiptrack_kwargs)
        self.cls_head = cls_head
        # eval mode: run the classifier only when a caller asks for challenge predictions
        self.predict_challenges = False

    @property
    def fusion(self) -> bool:
        return self.cls_head.fusion is not None

    def predict_boxes(self, fused_map: torch.Tensor, tokens: torch.Tensor, removed: list[torch.Tensor],
                      search: torch.Tensor) -> dict[str, torch.Tensor]:
        """Box head output, plus ``cls_logits`` (B, K) in training or when predictions are asked for."""
        want_logits = self.training or self.predict_challenges
        if not (want_logits or self.fusion):
            return super().predict_boxes(fused_map, tokens, removed, search)
        search_tokens = tokens[:, -self.search_grid ** 2:]
        if self.cls_head.stem_dim:  # the stem's mask channel needs this frame's box: head after box head
            out = super().predict_boxes(fused_map, tokens, removed, search)  # (no fusion here: logits wanted)
            stem = self.HIP.encoder.stem(search, self.target_mask(out["pred_boxes"], removed, search.shape[-1]))
            out["search_stem"] = stem  # frame_value reuses it when this frame is written to memory
            out["cls_logits"] = self.cls_head.classifier(self.cls_head.features(search_tokens, removed, stem))
            return out
        hidden = self.cls_head.features(search_tokens, removed)
        if self.fusion:
            fused_map = fused_map + self.cls_head.fusion(hidden)[:, :, None, None]
        out = super().predict_boxes(fused_map, tokens, removed, search)
        if want_logits:
            out["cls_logits"] = self.cls_head.classifier(hidden)
        return out


def build_hiptrack_cls(cfg, training: bool = True) -> HIPTrackCLS:
    """Build HIPTrack-CLS from a config with ``MODEL.CLS_HEAD`` settings.

    A plain HIPTrack checkpoint in ``MODEL.PRETRAIN_FILE`` initialises everything but the
    classification head, which keeps its fresh init (and is reported as such).
    """
    parts = hiptrack_parts(cfg, training)
    head_cfg = cfg.MODEL.CLS_HEAD
    head = ChallengeClassificationHead(cfg.MODEL.HIDDEN_DIM, head_cfg.HIDDEN_DIM, head_cfg.NUM_CLASSES,
                                       head_cfg.DROPOUT, fusion_dim=cfg.MODEL.HIDDEN_DIM if head_cfg.FUSION else None,
                                       stem_dim=stem_channels(parts["stem_width"]) if head_cfg.STEM_FEATURES else 0)
    model = HIPTrackCLS(head, **parts)
    if training:
        report = load_initial_weights(model, cfg)
        if report is not None and any(k.startswith("cls_head.") for k in report.missing):
            logger.info("classification head newly initialised (not in %s)", report.path)
    return model
