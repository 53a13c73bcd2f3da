"""HIPTrack-CLS: HIPTrack with an auxiliary maritime-challenge classification head.

Multi-task learning on one shared backbone: the box path is HIPTrack's, and a classification
head reads the mean of the backbone's search-region tokens of a search frame. Callers ask for
challenge predictions per call (``with_challenges=True`` of ``forward`` and ``track``): the
training actor does, so each frame's output holds ``cls_logits`` and the auxiliary loss
regularises the shared features; without it the classifier does not run, so tracking costs exactly
what HIPTrack costs. The head configuration picks one prediction path per frame:

* tokens (``MODEL.CLS_HEAD.INPUT: tokens``): boxes as HIPTrack, then the head on the pooled tokens;
* tokens + stem (``INPUT: tokens+stem``): boxes as HIPTrack, then the head on the pooled tokens and
  the pooled HIP memory-encoder stem of the search crop with the predicted box as its mask channel
  (the network that otherwise encodes the frame into memory, which then reuses that stem);
* fusion (``MODEL.CLS_HEAD.FUSION``: ADD, FILM or GATE; tokens only): the head's features condition the
  box head's input map (added, FiLM or a channel gate; see ``lib/models/layers/cls_head.py``), so they are
  computed for every frame.
"""
from __future__ import annotations

import logging

import torch

from lib.models.hip.historical_prompt import stem_channels
from lib.models.hiptrack.hiptrack import HIPTrack, hiptrack_parts, load_initial_weights
from lib.models.layers.cls_head import ChallengeClassificationHead

logger = logging.getLogger(__name__)

SEARCH_STEM = "search_stem"  # output key: the memory-encoder stem (B, 4 * stem_width, Gs, Gs) the head read


class HIPTrackCLS(HIPTrack):
    """HIPTrack plus a challenge classification head on the shared backbone features."""

    has_challenge_head = True

    def __init__(self, cls_head: ChallengeClassificationHead, **hiptrack_kwargs) -> None:
        super().__init__(**hiptrack_kwargs)
        self.cls_head = cls_head

    def predict_frame(self, fused_map: torch.Tensor, tokens: torch.Tensor, removed: list[torch.Tensor],
                      search: torch.Tensor, with_challenges: bool = False) -> dict[str, torch.Tensor]:
        """Box head outputs, plus ``cls_logits`` (B, K) when ``with_challenges``, on the path of this head
        (the tokens + stem path then also returns the stem it ran, as ``out[SEARCH_STEM]``)."""
        if self.cls_head.fusion is not None:
            return self._predict_with_fusion(fused_map, tokens, removed, with_challenges)
        if self.cls_head.reads_stem:
            return self._predict_from_tokens_and_stem(fused_map, tokens, removed, search, with_challenges)
        return self._predict_from_tokens(fused_map, tokens, removed, with_challenges)

    def _search_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Search part (B, Gs * Gs, C) of the backbone output (B, Lz + Ls, C)."""
        return tokens[:, -self.search_grid ** 2:]

    def _predict_from_tokens(self, fused_map: torch.Tensor, tokens: torch.Tensor, removed: list[torch.Tensor],
                             with_challenges: bool) -> dict[str, torch.Tensor]:
        """Tokens input: HIPTrack's boxes; the head reads the pooled search tokens."""
        out = self.box_head(fused_map)
        if with_challenges:
            out["cls_logits"] = self.cls_head.classifier(self.cls_head.features(self._search_tokens(tokens), removed))
        return out

    def _predict_from_tokens_and_stem(self, fused_map: torch.Tensor, tokens: torch.Tensor,
                                      removed: list[torch.Tensor], search: torch.Tensor, with_challenges: bool
                                      ) -> dict[str, torch.Tensor]:
        """Tokens + stem input: HIPTrack's boxes; the head also reads the stem of the crop under the predicted
        box (so it runs after the box head), which is kept as ``out[SEARCH_STEM]`` for the memory write."""
        out = self.box_head(fused_map)
        if with_challenges:
            stem = super().frame_stem(search, out, removed)
            out[SEARCH_STEM] = stem
            hidden = self.cls_head.features(self._search_tokens(tokens), removed, stem)
            out["cls_logits"] = self.cls_head.classifier(hidden)
        return out

    def _predict_with_fusion(self, fused_map: torch.Tensor, tokens: torch.Tensor, removed: list[torch.Tensor],
                             with_challenges: bool) -> dict[str, torch.Tensor]:
        """Fusion: the head's features condition the box head's input, so they always run."""
        hidden = self.cls_head.features(self._search_tokens(tokens), removed)
        out = self.box_head(self.cls_head.condition(fused_map, hidden))
        if with_challenges:
            out["cls_logits"] = self.cls_head.classifier(hidden)
        return out

    def frame_stem(self, search: torch.Tensor, out: dict, removed: list[torch.Tensor]) -> torch.Tensor:
        """The stem the head already read for this frame (``out[SEARCH_STEM]``), else HIPTrack's."""
        stem = out.get(SEARCH_STEM)
        return super().frame_stem(search, out, removed) if stem is None else stem


def build_hiptrack_cls(cfg, training: bool = True) -> HIPTrackCLS:
    """Build HIPTrack-CLS from a config with ``MODEL.CLS_HEAD`` settings.

    A plain HIPTrack checkpoint in ``MODEL.PRETRAIN_FILE`` initialises everything but the
    classification head, which keeps its fresh init (and is reported as such).
    """
    parts = hiptrack_parts(cfg, training)
    head_cfg = cfg.MODEL.CLS_HEAD
    reads_stem = head_cfg.INPUT == "tokens+stem"
    fusion = head_cfg.FUSION != "NONE"
    head = ChallengeClassificationHead(cfg.MODEL.HIDDEN_DIM, head_cfg.HIDDEN_DIM, head_cfg.NUM_CLASSES,
                                       head_cfg.DROPOUT, fusion_dim=cfg.MODEL.HIDDEN_DIM if fusion else None,
                                       stem_dim=stem_channels(parts["stem_width"]) if reads_stem else 0,
                                       fusion_mode=head_cfg.FUSION if fusion else "ADD", label_mode=head_cfg.MODE)
    model = HIPTrackCLS(head, **parts)
    if training:
        report = load_initial_weights(model, cfg)
        if report is not None and any(k.startswith("cls_head.") for k in report.missing):
            logger.info("classification head newly initialised (not in %s)", report.path)
    return model
