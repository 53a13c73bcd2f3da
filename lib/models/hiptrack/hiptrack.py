"""HIPTrack: one-stream ViT tracker with a historical prompt network (Cai et al., CVPR 2024).

Per search frame: the ViT-CE backbone encodes template + search jointly; the search feature map
gives a memory key (``key_proj``) and a compressed value (``key_comp``); reading the memory of
earlier frames with that key gives the historical prompt, which is added to the search features,
refined by a residual block (``searchRegionFusion``) and decoded by the CENTER box head. After a
frame is predicted, its image, the predicted-box mask (with eliminated patches blanked) and its
features can be encoded into a new memory value.

Memory schedules:
* training (``forward``): frame 1 reads a memory made of the template (image, GT box, template
  features); frame t > 1 reads frames 1..t-1 of the same clip (causal, differentiable).
* tracking (``start_tracking`` / ``track``): during the first ``warmup_frames`` frames the
  template memory is read and frames in ``warmup_write_frames`` are written to the bank; after
  that the bank is read and every ``update_interval``-th frame is written; the bank keeps the
  newest ``max_mem`` frames. Tracking state lives in a ``TrackingState`` owned by the caller, so
  a new video always starts with an empty bank. A caller may veto a write (``allow_write`` of
  ``track``, e.g. a challenge-aware memory gate): the write is then kept pending and made on the
  next frame the caller allows, after which the schedule continues as before.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from lib.models.hip.historical_prompt import (RESNET18_WIDTH, HistoricalPromptNetwork, KeyProjection, MemoryBank,
                                              ReadoutWorkspace, ResBlock, read_memory, to_tokens)
from lib.models.hiptrack.pretrained import LoadReport, load_pretrained, resolve_pretrained_path
from lib.models.hiptrack.vit_ce import VisionTransformerCE, build_vit_ce
from lib.models.layers.head import CenterPredictor
from lib.utils.box_ops import box_masks, kept_patch_masks, normalized_cxcywh_to_pixel_xyxy, \
    normalized_xywh_to_pixel_xyxy


@dataclass(frozen=True)
class MemorySchedule:
    """When tracking reads the template memory and when it writes frames to the bank."""
    max_mem: int = 150
    update_interval: int = 20
    warmup_frames: int = 10
    warmup_write_frames: tuple[int, ...] = (5, 10)

    def reads_template(self, frame_index: int) -> bool:
        return frame_index <= self.warmup_frames

    def writes(self, frame_index: int) -> bool:
        if frame_index <= self.warmup_frames:
            return frame_index in self.warmup_write_frames
        return frame_index % self.update_interval == 0


@dataclass
class TrackingState:
    """Per-video state: cached template encodings and the memory bank."""
    template_tokens: torch.Tensor       # (B, Lz, C) patch + position embedded template
    template_image: torch.Tensor        # (B, 3, Hs, Ws) template upsampled to the search size
    template_stem: torch.Tensor         # (B, 256, Gs, Gs) memory-encoder stem of template + box mask
    template_mask: torch.Tensor | None  # (B, Lz) bool, template queries that drive CE
    memory: MemoryBank
    frame_index: int = 0
    write_pending: bool = False         # a due memory write was vetoed and waits for an allowed frame


class HIPTrack(nn.Module):
    """HIPTrack network: backbone, historical prompt network, fusion block and box head."""

    has_challenge_head: ClassVar[bool] = False  # may callers ask for challenges (``with_challenges=True``)?

    def __init__(self, backbone: VisionTransformerCE, head_channels: int = 256, key_dim: int = 64,
                 schedule: MemorySchedule = MemorySchedule(), stem_width: int = RESNET18_WIDTH) -> None:
        super().__init__()
        dim = backbone.embed_dim
        value_dim = dim // 2  # prompt = [memory read-out, compressed query] has ``dim`` channels
        self.backbone = backbone
        self.box_head = CenterPredictor(dim, head_channels, backbone.search_grid)
        self.HIP = HistoricalPromptNetwork(dim, value_dim, stem_width)
        self.key_proj = KeyProjection(dim, key_dim)
        self.key_comp = nn.Conv2d(dim, value_dim, kernel_size=3, padding=1)
        self.searchRegionFusion = ResBlock(dim, dim)
        self.schedule = schedule

    # ----------------------------------------------------------------------------- pieces
    @property
    def search_grid(self) -> int:
        return self.backbone.search_grid

    def _token_map(self, tokens: torch.Tensor, grid: int) -> torch.Tensor:
        """(B, grid*grid, C) tokens -> (B, C, grid, grid) map."""
        B, _, C = tokens.shape
        return tokens.transpose(1, 2).reshape(B, C, grid, grid)

    def search_map(self, tokens: torch.Tensor) -> torch.Tensor:
        """Search part of the backbone output as a (B, C, Gs, Gs) map."""
        return self._token_map(tokens[:, -self.search_grid ** 2:], self.search_grid)

    def template_map(self, tokens: torch.Tensor) -> torch.Tensor:
        """Template part of the backbone output, upsampled to the search grid (B, C, Gs, Gs)."""
        grid = self.backbone.template_grid
        fmap = self._token_map(tokens[:, :grid ** 2], grid)
        return self.upsample(fmap, self.search_grid)

    @staticmethod
    def upsample(x: torch.Tensor, size: int) -> torch.Tensor:
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=True)

    def check_can_predict(self, with_challenges: bool) -> None:
        """Raise ``ValueError`` when asked for challenge predictions this network has no head for."""
        if with_challenges and not self.has_challenge_head:
            raise ValueError(f"{type(self).__name__} has no challenge classification head, so it cannot predict "
                             "challenges (with_challenges=True); build HIPTrack-CLS (MODEL.CLS_HEAD.ENABLED True)")

    def predict_frame(self, fused_map: torch.Tensor, tokens: torch.Tensor, removed: list[torch.Tensor],
                      search: torch.Tensor, with_challenges: bool = False) -> dict[str, torch.Tensor]:
        """Outputs of one frame: the box head on its prompt-fused search map (B, C, Gs, Gs).

        Subclasses with more heads override this; they may also read the backbone ``tokens``
        (B, Lz + Ls, C), the CE ``removed`` indices and the search crop ``search`` (B, 3, Hs, Ws), and
        add challenge predictions when ``with_challenges`` (never True here: see ``check_can_predict``).
        """
        return self.box_head(fused_map)

    def target_mask(self, pred_boxes: torch.Tensor, removed: list[torch.Tensor], size: int) -> torch.Tensor:
        """(B, 1, size, size) mask of the predicted box with CE-eliminated patches blanked."""
        boxes = normalized_cxcywh_to_pixel_xyxy(pred_boxes.detach().reshape(-1, 4).float(), size)
        mask = box_masks(boxes, size, size)
        if removed:
            patch = size // self.search_grid
            mask = mask * kept_patch_masks(removed, mask.shape[0], self.search_grid, patch, mask.device)
        return mask.unsqueeze(1)

    def template_box_mask(self, template_boxes: torch.Tensor, size: int) -> torch.Tensor:
        """(B, 1, size, size) mask of normalised xywh template boxes on the upsampled template."""
        boxes = normalized_xywh_to_pixel_xyxy(template_boxes.reshape(-1, 4).float(), size)
        return box_masks(boxes, size, size).unsqueeze(1)

    def frame_value(self, search: torch.Tensor, search_map: torch.Tensor, out: dict,
                    removed: list[torch.Tensor]) -> torch.Tensor:
        """Memory value (B, Cv, Gs, Gs) of a predicted frame: its encoder stem fused with its features."""
        return self.HIP.encoder(search, search_map, None, stem=self.frame_stem(search, out, removed))

    def frame_stem(self, search: torch.Tensor, out: dict, removed: list[torch.Tensor]) -> torch.Tensor:
        """Memory-encoder stem (B, 4 * stem_width, Gs, Gs) of a predicted frame: its crop (B, 3, Hs, Ws) and
        its predicted-box mask. A subclass whose prediction already ran it returns that output instead."""
        return self.HIP.encoder.stem(search, self.target_mask(out["pred_boxes"], removed, search.shape[-1]))

    def template_memory(self, tokens: torch.Tensor, template_image: torch.Tensor, mask: torch.Tensor | None,
                        stem: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Key (B, Ck, Gs, Gs) and value (B, Cv, Gs, Gs) of the template for this frame's tokens."""
        fmap = self.template_map(tokens)
        return self.key_proj(fmap), self.HIP.encoder(template_image, fmap, mask, stem=stem)

    def _decode(self, search: torch.Tensor, tokens: torch.Tensor, removed: list[torch.Tensor],
                memory_keys: torch.Tensor, memory_values: torch.Tensor, memory_key_norms: torch.Tensor | None = None,
                with_challenges: bool = False, workspace: ReadoutWorkspace | None = None
                ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Read memory ((B, N, Ck) keys, (B, N, Cv) values; the read-out's affinity into ``workspace`` if
        given) and predict the frame of search crop ``search`` (with its challenge if ``with_challenges``);
        returns outputs, search map, key."""
        search_map = self.search_map(tokens)
        key = self.key_proj(search_map)
        prompt = read_memory(memory_keys, memory_values, key, self.key_comp(search_map), memory_key_norms, workspace)
        out = self.predict_frame(self.searchRegionFusion(search_map + prompt), tokens, removed, search, with_challenges)
        out["removed_indexes_s"] = removed
        out["backbone_feat"] = tokens
        return out, search_map, key

    # ----------------------------------------------------------------------------- training
    def forward(self, template: torch.Tensor, search: list[torch.Tensor], template_boxes: torch.Tensor,
                ce_template_mask: torch.Tensor | None = None, ce_keep_rate: float | None = None, *,
                with_challenges: bool = False) -> list[dict[str, torch.Tensor]]:
        """Causal multi-frame forward used in training.

        Args:
            template: (B, 3, Hz, Wz) normalised template crop.
            search: list of T (B, 3, Hs, Ws) search crops, in time order.
            template_boxes: (B, 4) or (1, B, 4) normalised xywh of the target in the template crop.
            ce_template_mask: (B, Lz) bool template queries for CE (None: all).
            ce_keep_rate: scheduled CE keep ratio (None: the blocks' own).
            with_challenges: also predict each frame's challenge (``cls_logits``); needs a classification
                head (HIPTrack-CLS), plain HIPTrack raises ``ValueError``.

        Returns:
            one dict per search frame: ``pred_boxes`` (B, 1, 4) normalised cxcywh, ``score_map``
            (B, 1, Gs, Gs), ``size_map`` / ``offset_map`` (B, 2, Gs, Gs), ``removed_indexes_s``
            and ``backbone_feat`` (B, Lz + Ls, C); with challenges also ``cls_logits`` (B, K).
        """
        self.check_can_predict(with_challenges)
        size = search[0].shape[-1]
        template_image = self.upsample(template, size)
        template_mask = self.template_box_mask(template_boxes, size)
        keys: list[torch.Tensor] = []
        values: list[torch.Tensor] = []
        outputs = []
        backbone_frames = self._backbone_frames(template, search, ce_template_mask, ce_keep_rate)
        for t, (x, (tokens, removed)) in enumerate(zip(search, backbone_frames)):
            if t == 0:
                mem_k, mem_v = map(to_tokens, self.template_memory(tokens, template_image, template_mask))
            else:
                mem_k, mem_v = torch.cat(keys, dim=1), torch.cat(values, dim=1)
            out, search_map, key = self._decode(x, tokens, removed, mem_k, mem_v, with_challenges=with_challenges)
            outputs.append(out)
            if t < len(search) - 1:  # the last frame's memory would never be read
                keys.append(to_tokens(key))
                values.append(to_tokens(self.frame_value(x, search_map, out, removed)))
        return outputs

    def _backbone_frames(self, template: torch.Tensor, search: list[torch.Tensor],
                         ce_template_mask: torch.Tensor | None, ce_keep_rate: float | None
                         ) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        """``(tokens, removed)`` of each search frame with the template. The backbone does not read the
        memory, so every frame goes through it in one batch: the same per-sample computation (LayerNorm,
        per-sample candidate elimination), a fraction of the calls of one pass per frame."""
        frames = len(search)
        z_tokens = self.backbone.embed_template(template).repeat(frames, 1, 1)
        mask = None if ce_template_mask is None else ce_template_mask.repeat(frames, 1)
        tokens, removed = self.backbone(None, torch.cat(search), mask, ce_keep_rate, z_tokens=z_tokens)
        removed_per_frame = [r.chunk(frames) for r in removed]
        return [(frame_tokens, [r[t] for r in removed_per_frame])
                for t, frame_tokens in enumerate(tokens.chunk(frames))]

    # ----------------------------------------------------------------------------- tracking
    def use_channels_last_convolutions(self) -> None:
        """Keep the weights of the prompt fusion block and the box head in channels-last layout.

        Their inputs are channels-last (a token map is a channels-last view of the backbone tokens,
        and the sum with the prompt keeps that layout); with channels-first weights each of these
        convolutions re-lays-out its weights on every call. The same kernels run on the same
        values, so the outputs are bit-identical. Idempotent; ``start_tracking`` calls it.
        """
        for module in (self.searchRegionFusion, self.box_head):
            module.to(memory_format=torch.channels_last)

    @torch.no_grad()
    def start_tracking(self, template: torch.Tensor, template_boxes: torch.Tensor,
                       ce_template_mask: torch.Tensor | None = None) -> TrackingState:
        """Encode the constant parts of the template once and return a fresh tracking state."""
        self.use_channels_last_convolutions()
        size = self.search_grid * self.backbone.patch_size
        template_image = self.upsample(template, size)
        mask = self.template_box_mask(template_boxes, size)
        return TrackingState(
            template_tokens=self.backbone.embed_template(template),
            template_image=template_image,
            template_stem=self.HIP.encoder.stem(template_image, mask),
            template_mask=ce_template_mask,
            memory=MemoryBank(self.schedule.max_mem),
        )

    @torch.no_grad()
    def track(self, state: TrackingState, search: torch.Tensor, *, with_challenges: bool = False,
              allow_write: Callable[[dict], bool] | None = None) -> dict[str, torch.Tensor]:
        """Predict the next frame of ``state``'s video from its search crop (B, 3, Hs, Ws); with
        ``with_challenges`` also its challenge (``cls_logits`` (B, K), HIPTrack-CLS only).

        ``allow_write(out)`` is asked, with this frame's outputs, whenever a memory write is due (scheduled,
        or pending from a vetoed frame); False vetoes it and keeps it pending. None: the schedule alone
        decides (no write is ever pending)."""
        self.check_can_predict(with_challenges)
        state.frame_index += 1
        index = state.frame_index
        tokens, removed = self.backbone(None, search, state.template_mask, None, z_tokens=state.template_tokens)
        if self.schedule.reads_template(index) or len(state.memory) == 0:
            mem_k, mem_v = map(to_tokens, self.template_memory(tokens, state.template_image, None,
                                                               stem=state.template_stem))
            norms = None
        else:
            mem_k, mem_v, norms = state.memory.tensors()
        out, search_map, key = self._decode(search, tokens, removed, mem_k, mem_v, norms, with_challenges,
                                            workspace=state.memory.workspace)
        if self._writes_frame(state, out, allow_write):
            state.memory.write(key, self.frame_value(search, search_map, out, removed))
        return out

    def _writes_frame(self, state: TrackingState, out: dict, allow_write: Callable[[dict], bool] | None) -> bool:
        """Whether the current frame of ``state`` goes to the memory bank; updates ``state.write_pending``."""
        if not (self.schedule.writes(state.frame_index) or state.write_pending):
            return False
        state.write_pending = allow_write is not None and not allow_write(out)
        return not state.write_pending


def hiptrack_parts(cfg, training: bool) -> dict:
    """Constructor arguments of ``HIPTrack`` from a config (checks MODEL.HIDDEN_DIM and STRIDE)."""
    model_cfg = cfg.MODEL
    backbone = build_vit_ce(model_cfg.BACKBONE.TYPE, cfg.DATA.TEMPLATE.SIZE, cfg.DATA.SEARCH.SIZE,
                            ce_loc=list(model_cfg.BACKBONE.CE_LOC), ce_keep_ratio=list(model_cfg.BACKBONE.CE_KEEP_RATIO),
                            drop_path_rate=cfg.TRAIN.DROP_PATH_RATE if training else 0.0)
    if backbone.patch_size != model_cfg.BACKBONE.STRIDE:
        raise ValueError(f"MODEL.BACKBONE.STRIDE={model_cfg.BACKBONE.STRIDE} but {model_cfg.BACKBONE.TYPE} "
                         f"has patch size {backbone.patch_size}")
    if backbone.embed_dim != model_cfg.HIDDEN_DIM:
        raise ValueError(f"MODEL.HIDDEN_DIM={model_cfg.HIDDEN_DIM} but {model_cfg.BACKBONE.TYPE} produces "
                         f"{backbone.embed_dim}-channel features: set MODEL.HIDDEN_DIM: {backbone.embed_dim}")
    schedule = MemorySchedule(max_mem=model_cfg.MAX_MEM, update_interval=cfg.TEST.UPDATE_INTERVAL,
                              warmup_frames=cfg.TEST.WARMUP_FRAMES,
                              warmup_write_frames=tuple(cfg.TEST.WARMUP_WRITE_FRAMES))
    return {"backbone": backbone, "head_channels": model_cfg.HEAD.NUM_CHANNELS, "key_dim": model_cfg.HIP.KEY_DIM,
            "schedule": schedule, "stem_width": model_cfg.HIP.STEM_WIDTH}


def load_initial_weights(model: HIPTrack, cfg) -> LoadReport | None:
    """Load ``MODEL.HIP.ENCODER_PRETRAINED`` and ``MODEL.PRETRAIN_FILE`` (training only)."""
    if cfg.MODEL.HIP.ENCODER_PRETRAINED:
        model.HIP.encoder.load_torchvision_resnet18(resolve_pretrained_path(cfg.MODEL.HIP.ENCODER_PRETRAINED))
    if cfg.MODEL.PRETRAIN_FILE:
        return load_pretrained(model, resolve_pretrained_path(cfg.MODEL.PRETRAIN_FILE))
    return None


def build_hiptrack(cfg, training: bool = True) -> HIPTrack:
    """Build HIPTrack from a config (see ``lib/config/hiptrack/config.py``).

    With ``training=True`` the backbone uses ``TRAIN.DROP_PATH_RATE`` and the weights named by
    ``MODEL.PRETRAIN_FILE`` / ``MODEL.HIP.ENCODER_PRETRAINED`` are loaded; for testing the
    tracker loads its own checkpoint afterwards, so nothing is loaded here.
    """
    model = HIPTrack(**hiptrack_parts(cfg, training))
    if training:
        load_initial_weights(model, cfg)
    return model
