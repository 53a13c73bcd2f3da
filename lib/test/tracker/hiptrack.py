"""HIPTrack tracker: the ``initialize`` / ``track`` contract of pytracking around the network.

Per frame: crop a search region ``TEST.SEARCH_FACTOR`` times the previous box around it, run the
network with the video's memory, weight the score map with a Hann window, decode the box at
the peak and map it back to image pixels. Images are RGB ``uint8`` arrays (H, W, 3); boxes are
``[x, y, w, h]`` in pixels.

With a challenge-aware policy on (``TEST.POLICY``, see :mod:`lib.test.tracker.policies`) a
:class:`~lib.test.tracker.policies.PolicyRun` may change the crop factor, veto the memory write,
sharpen the window and damp the size, and ``track()`` reports what acted under ``"policy"``. The
plain tracker has no head, so it runs policies only with ``TEST.POLICY.SOURCE: oracle``.

With ``TEST.PRECISION: bf16`` the tracker runs its own copy of the network whose convolution and
linear weights were cast to bf16 once, at construction (:func:`lib.utils.precision.autocast_weight_copy`),
under bf16 autocast: the same outputs as autocast over the fp32 network, without re-casting the
weights on every frame. On the CPU, with ``TEST.PACKED_LINEAR`` (the default), the large linear layers
of the network it runs are packed once for oneDNN (:mod:`lib.utils.packed_linear`, again a copy):
ViT-B frames about 10 % faster, boxes equal up to float rounding. The network passed in is never
changed, so other trackers may share it.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from lib.models import build_model
from lib.models.hiptrack.hiptrack import HIPTrack, TrackingState
from lib.utils.checkpoint import CheckpointError, extract_state_dict, read_checkpoint
from lib.models.hiptrack.vit_ce import template_ce_mask
from lib.test.tracker.policies import NO_POLICY, ChallengePolicies, PolicyRun, blend_size, powered_window
from lib.utils.crop import box_to_crop, clip_box, sample_target
from lib.utils.packed_linear import packed_linear_available, packed_linear_copy
from lib.utils.precision import autocast_weight_copy, cpu_has_fast_bf16

logger = logging.getLogger(__name__)

BOX_MARGIN = 10  # pixels of the box kept inside the image, as the original tracker


def hann1d(size: int) -> torch.Tensor:
    """Cosine window of ``size`` samples, zero just outside both ends."""
    return 0.5 * (1 - torch.cos(2 * math.pi / (size + 1) * torch.arange(1, size + 1, dtype=torch.float32)))


def hann2d(size: int) -> torch.Tensor:
    """(1, 1, size, size) separable cosine window."""
    w = hann1d(size)
    return w.view(1, 1, -1, 1) * w.view(1, 1, 1, -1)


def load_network(cfg, checkpoint: str | Path, device: torch.device | str = "cpu") -> HIPTrack:
    """Build the network for testing and load a checkpoint strictly (missing keys are an error)."""
    network = build_model(cfg, training=False)
    state, kind = extract_state_dict(read_checkpoint(checkpoint), checkpoint)
    if kind != "tracker":
        raise CheckpointError(f"{checkpoint} is a backbone-only checkpoint; testing needs a tracker checkpoint "
                              "({'net': ...}) trained for this config")
    check_head_matches(cfg, state, checkpoint)
    network.load_state_dict(state, strict=True)
    return network.to(device).eval()


def check_head_matches(cfg, state: dict[str, torch.Tensor], checkpoint: str | Path) -> None:
    """Raise ``CheckpointError`` when the checkpoint and the config disagree about the classification head."""
    has_head = any(k.startswith("cls_head.") for k in state)
    if has_head and not cfg.MODEL.CLS_HEAD.ENABLED:
        raise CheckpointError(
            f"{checkpoint} is a HIPTrack-CLS checkpoint (it holds cls_head.* weights) but the config has "
            "MODEL.CLS_HEAD.ENABLED False. Test it with the classification tracker and its config "
            "(tracking/test.py hiptrack_cls <cls config>), or strip the head first with "
            "tracking/convert_cls_to_tracking.py --input CKPT --output PLAIN_CKPT")
    if cfg.MODEL.CLS_HEAD.ENABLED and not has_head:
        raise CheckpointError(
            f"{checkpoint} holds no cls_head.* weights but the config has MODEL.CLS_HEAD.ENABLED True; "
            "test a plain HIPTrack checkpoint with a config without the head (e.g. tracking/test.py hiptrack "
            "hiptrack) or pass --opts MODEL.CLS_HEAD.ENABLED=False")


class HIPTrackTracker:
    """Single-object tracker around a HIPTrack network."""

    reads_challenge_head: ClassVar[bool] = False  # can it feed the head's predictions to the policies?

    def __init__(self, network: HIPTrack, cfg, device: torch.device | str = "cpu", precision: str | None = None):
        self.cfg = cfg
        self.device = torch.device(device)
        self.precision = precision or cfg.TEST.PRECISION
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be fp32 or bf16, got {self.precision!r}")
        network = network.to(device).eval()
        self.network = self._inference_network(network, cfg)
        if self.precision == "bf16" and self.device.type == "cpu" and not cpu_has_fast_bf16():
            logger.warning("TEST.PRECISION bf16 on a CPU without bf16 instructions (AVX512-BF16 / AMX): bf16 "
                           "convolutions and matrix products fall back to slow kernels, so tracking is slower "
                           "than fp32; use TEST.PRECISION fp32")
        self.mean = torch.tensor(cfg.DATA.MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.DATA.STD, device=self.device).view(1, 3, 1, 1)
        self.window = hann2d(network.search_grid).to(self.device)
        self.prev_box_xywh: list[float] | None = None  # the last box [x, y, w, h], centre of the next search crop
        self.video_state: TrackingState | None = None  # the network's state of this video (template, memory bank)
        self.policies = ChallengePolicies.from_config(cfg)
        if self.policies.needs_predictions and not self.reads_challenge_head:
            raise ValueError(f"{type(self).__name__} runs no classification head, but TEST.POLICY policies with "
                             "TEST.POLICY.SOURCE predicted act on its predictions: use the hiptrack_cls tracker with "
                             "a HIPTrack-CLS config, or TEST.POLICY.SOURCE=oracle")
        self.policy_run: PolicyRun | None = None  # the policies' state of this video; None when all are off

    def _inference_network(self, network: HIPTrack, cfg) -> HIPTrack:
        """The network this tracker runs: ``network`` itself, or its own copy with conv / linear weights
        cast to bf16 once (bf16) and / or large linear layers packed for oneDNN (CPU,
        ``TEST.PACKED_LINEAR``). ``network`` is never changed, so other trackers may share it."""
        if self.precision == "bf16":
            network = autocast_weight_copy(network, torch.bfloat16)
        if cfg.TEST.PACKED_LINEAR and self.device.type == "cpu" and packed_linear_available():
            network = packed_linear_copy(network)
        return network

    @classmethod
    def from_checkpoint(cls, cfg, checkpoint: str | Path, device: torch.device | str = "cpu",
                        save_cls: bool = False) -> HIPTrackTracker:
        """The tracker of ``cfg`` with the weights of ``checkpoint`` (loaded strictly)."""
        if save_cls:
            raise ValueError("the plain hiptrack tracker predicts no challenges; use the hiptrack_cls tracker "
                             "with a HIPTrack-CLS config for --save_cls")
        if cfg.MODEL.CLS_HEAD.ENABLED:
            raise ValueError("the plain hiptrack tracker runs plain HIPTrack, but this config has "
                             "MODEL.CLS_HEAD.ENABLED True: test a HIPTrack-CLS checkpoint with the hiptrack_cls "
                             "tracker, or strip its head with tracking/convert_cls_to_tracking.py and test the "
                             "result with a config without the head")
        return cls(load_network(cfg, checkpoint, device), cfg, device)

    def _to_tensor(self, patch: np.ndarray) -> torch.Tensor:
        """uint8 (S, S, 3) RGB crop -> normalised (1, 3, S, S) float tensor on the device."""
        x = torch.from_numpy(patch).to(self.device).permute(2, 0, 1).unsqueeze(0).float()
        return (x / 255.0 - self.mean) / self.std

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def initialize(self, image: np.ndarray, info: dict) -> None:
        """Start a new video from ``info['init_bbox']`` ([x, y, w, h] pixels); clears all memory."""
        test = self.cfg.TEST
        box = [float(v) for v in info["init_bbox"]]
        patch, resize_factor, _ = sample_target(image, box, test.TEMPLATE_FACTOR, test.TEMPLATE_SIZE)
        box_t = torch.tensor(box)
        template_box = box_to_crop(box_t, box_t, resize_factor, test.TEMPLATE_SIZE).view(1, 4).to(self.device)
        grid = self.network.backbone.template_grid
        with self._autocast():
            self.video_state = self.network.start_tracking(self._to_tensor(patch), template_box,
                                                           template_ce_mask(self.cfg, grid, device=self.device))
        self.prev_box_xywh = box
        self.policy_run = (PolicyRun(self.policies, test.CLS_SMOOTHING, test.SEARCH_FACTOR, self.window)
                           if self.policies.active else None)

    @torch.no_grad()
    def track(self, image: np.ndarray, info: dict | None = None) -> dict:
        """Locate the target in the next frame; returns ``{'target_bbox': [x, y, w, h]}``, plus ``'policy'``
        (a :class:`~lib.test.tracker.policies.PolicyRecord`) when a policy is on. With ``TEST.POLICY.SOURCE``
        oracle, ``info['challenge_flags']`` holds the frame's ground-truth flags (K values)."""
        if self.video_state is None:
            raise RuntimeError("call initialize() before track()")
        test = self.cfg.TEST
        height, width = image.shape[:2]
        run = self.policy_run
        factor = test.SEARCH_FACTOR if run is None else run.begin_frame(info or {}, self._predicted_probabilities)
        patch, resize_factor, _ = sample_target(image, self.prev_box_xywh, factor, test.SEARCH_SIZE)
        with self._autocast():
            out = self._run_network(self._to_tensor(patch), None if run is None else run.allow_write)
        maps = {k: out[k].float() for k in ("score_map", "size_map", "offset_map")}
        decision = NO_POLICY if run is None else run.decide(out)
        response = powered_window(self.window, decision.window_power) * maps["score_map"]
        box = self.network.box_head.boxes_from_maps(response, maps["size_map"], maps["offset_map"])
        cx, cy, w, h = (box[0] * test.SEARCH_SIZE / resize_factor).tolist()
        w, h = blend_size(w, h, *self.prev_box_xywh[2:], decision.size_rate)
        self.prev_box_xywh = clip_box(self._to_image(cx, cy, w, h, resize_factor), height, width, BOX_MARGIN)
        result = {"target_bbox": self.prev_box_xywh, **self._extra_outputs(out)}
        if run is not None:
            result["policy"] = run.end_frame(self.network.schedule.writes(self.video_state.frame_index))
        return result

    def _run_network(self, search: torch.Tensor, allow_write: Callable[[dict], bool] | None = None
                     ) -> dict[str, torch.Tensor]:
        """The network's outputs for the normalised search crop (1, 3, S, S) of the next frame, with the
        memory-write veto ``allow_write`` (subclass hook)."""
        return self.network.track(self.video_state, search, allow_write=allow_write)

    def _predicted_probabilities(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """The head's (K,) challenge probabilities of a frame (subclass hook; this tracker runs no head)."""
        raise RuntimeError(f"{type(self).__name__} runs no classification head")

    def _extra_outputs(self, out: dict[str, torch.Tensor]) -> dict:
        """Further entries of ``track()``'s result from the network output (none here; subclass hook)."""
        return {}

    def _to_image(self, cx: float, cy: float, w: float, h: float, resize_factor: float) -> list[float]:
        """Box centred at (cx, cy) in crop pixels (scaled back) -> image [x, y, w, h]."""
        prev_cx = self.prev_box_xywh[0] + 0.5 * self.prev_box_xywh[2]
        prev_cy = self.prev_box_xywh[1] + 0.5 * self.prev_box_xywh[3]
        half = 0.5 * self.cfg.TEST.SEARCH_SIZE / resize_factor
        cx, cy = cx + prev_cx - half, cy + prev_cy - half
        return [cx - 0.5 * w, cy - 0.5 * h, w, h]
