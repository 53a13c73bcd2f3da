"""The tracker on a generated video: a bright square moving over a noisy background."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import lib.test.tracker.hiptrack as tracker_module
from conftest import make_tiny_cfg
from lib.config.hiptrack import load_config, resolve_experiment_config
from lib.models import build_model
from lib.models.hiptrack.hiptrack import build_hiptrack
from lib.test.evaluation.agreement import open_loop_ious
from lib.test.tracker.hiptrack import HIPTrackTracker, hann1d, hann2d
from lib.test.tracker.hiptrack_cls import HIPTrackCLSTracker
from lib.utils.crop import box_to_crop, clip_box, sample_target
from lib.utils.precision import AUTOCAST_LAYERS, autocast_weight_copy


def moving_square(frames: int = 12, size: int = 160, side: int = 24, seed: int = 0):
    rng = np.random.default_rng(seed)
    images, boxes = [], []
    for t in range(frames):
        img = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
        x, y = 20 + 6 * t, 30 + 4 * t
        img[y:y + side, x:x + side] = (230, 200, 40)
        images.append(img)
        boxes.append([x, y, side, side])
    return images, boxes


def run_tracker(tracker, images, boxes):
    tracker.initialize(images[0], {"init_bbox": boxes[0]})
    return [tracker.track(img)["target_bbox"] for img in images[1:]]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_tiny_tracker_boxes_are_finite_and_inside_image(precision):
    cfg = make_tiny_cfg("MODEL.MAX_MEM=2")
    torch.manual_seed(0)
    tracker = HIPTrackTracker(build_hiptrack(cfg, training=False), cfg, precision=precision)
    images, boxes = moving_square()
    out = run_tracker(tracker, images, boxes)
    assert len(out) == len(images) - 1
    for x, y, w, h in out:
        assert all(np.isfinite([x, y, w, h]))
        assert 0 <= x and 0 <= y and w >= 10 and h >= 10
        assert x + w <= 160 + 1e-6 and y + h <= 160 + 1e-6
    assert len(tracker.video_state.memory) == 2  # writes at 2, 4, 5, 10: capped at MAX_MEM


def test_initialize_resets_memory_between_videos():
    cfg = make_tiny_cfg()
    torch.manual_seed(0)
    tracker = HIPTrackTracker(build_hiptrack(cfg, training=False), cfg)
    images, boxes = moving_square()
    first = run_tracker(tracker, images, boxes)
    assert len(tracker.video_state.memory) > 0
    run_tracker(tracker, *moving_square(seed=1))
    assert run_tracker(tracker, images, boxes) == first


def test_track_before_initialize_is_an_error(tiny_cfg):
    tracker = HIPTrackTracker(build_hiptrack(tiny_cfg, training=False), tiny_cfg)
    with pytest.raises(RuntimeError, match="initialize"):
        tracker.track(np.zeros((50, 50, 3), np.uint8))


def test_hann_window_peaks_in_the_centre():
    w = hann1d(24)
    assert w.shape == (24,) and torch.allclose(w, w.flip(0))
    assert w.argmax() in (11, 12) and w.min() > 0
    assert hann2d(8).shape == (1, 1, 8, 8)


def test_sample_target_pads_outside_and_reports_padding():
    img = np.full((100, 100, 3), 255, np.uint8)
    crop, factor, padding = sample_target(img, [0, 0, 20, 20], 2.0, 64)
    assert crop.shape == (64, 64, 3) and factor == pytest.approx(64 / 40)
    assert padding[0, 0] and not padding[-1, -1]  # top-left corner lies outside the image
    assert crop[0, 0].tolist() == [0, 0, 0] and crop[-1, -1].tolist() == [255, 255, 255]
    with pytest.raises(ValueError, match="too small"):
        sample_target(img, [0, 0, 0, 0], 2.0, 64)


def test_box_to_crop_centres_the_reference_box():
    box = torch.tensor([40.0, 50.0, 20.0, 10.0])
    out = box_to_crop(box, box, 2.0, 64)
    assert torch.allclose(out, torch.tensor([(31.5 - 20) / 64, (31.5 - 10) / 64, 40 / 64, 20 / 64]))


def test_clip_box_keeps_margin_inside():
    assert clip_box([-30, 90, 50, 50], 100, 100, margin=10) == [0, 90, 20, 10]


def test_sample_target_window_outside_the_image_is_all_padding():
    img = np.full((100, 100, 3), 255, np.uint8)
    crop, _, padding = sample_target(img, [-300, -300, 20, 20], 2.0, 32)
    assert crop.max() == 0 and padding.all()
    crop, _, padding = sample_target(img, [60, 60, 30, 30], 2.0, 60)  # overlaps bottom-right
    assert padding[-1, -1] and not padding[0, 0] and crop[0, 0].tolist() == [255, 255, 255]


# ----------------------------------------------------------------------------- bf16 precision
class WeightCasts(TorchDispatchMode):
    """Counts fp32 -> bf16 casts of tensors shaped like one of ``weights`` (what autocast does to an fp32
    conv / linear weight on every call)."""

    def __init__(self, weights: list[torch.Tensor]):
        super().__init__()
        self.shapes = {tuple(w.shape) for w in weights if w.dim() >= 2}
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if (func is torch.ops.aten._to_copy.default and kwargs.get("dtype") == torch.bfloat16
                and args[0].dtype == torch.float32 and tuple(args[0].shape) in self.shapes):
            self.count += 1
        return func(*args, **kwargs)


def layer_weights(network: nn.Module) -> list[torch.Tensor]:
    return [p for m in network.modules() if isinstance(m, AUTOCAST_LAYERS) for p in m.parameters(recurse=False)]


def test_bf16_tracker_casts_weights_once_and_matches_per_frame_autocast():
    cfg = make_tiny_cfg("MODEL.MAX_MEM=2")
    torch.manual_seed(0)
    network = build_hiptrack(cfg, training=False)
    images, boxes = moving_square()
    tracker = HIPTrackTracker(network, cfg, precision="bf16")
    assert tracker.network is not network
    assert {p.dtype for p in layer_weights(tracker.network)} == {torch.bfloat16}
    others = [p for n, p in tracker.network.named_parameters() if p.dtype != torch.bfloat16]
    assert others and all(p.dtype == torch.float32 for p in others)  # layer / batch norms, position embeddings
    assert {b.dtype for b in tracker.network.buffers() if b.is_floating_point()} == {torch.float32}
    with WeightCasts(layer_weights(network)) as casts:
        out = run_tracker(tracker, images, boxes)
    assert casts.count == 0

    per_frame = HIPTrackTracker(network, cfg, precision="bf16")
    per_frame.network = network  # bf16 autocast over the fp32 weights, as before the cast-once copy
    with WeightCasts(layer_weights(network)) as casts:
        assert run_tracker(per_frame, images, boxes) == out  # the same rounding, once instead of every call
    assert casts.count > 0  # the counter sees autocast's weight casts


def test_fp32_tracker_sharing_the_network_with_a_bf16_tracker_is_unchanged():
    cfg = make_tiny_cfg("MODEL.MAX_MEM=2")
    torch.manual_seed(0)
    network = build_hiptrack(cfg, training=False)
    images, boxes = moving_square()
    before = run_tracker(HIPTrackTracker(network, cfg), images, boxes)
    bf16 = HIPTrackTracker(network, cfg, precision="bf16")
    fp32 = HIPTrackTracker(network, cfg)
    run_tracker(bf16, images, boxes)
    assert fp32.network is network
    assert {p.dtype for p in network.parameters()} == {torch.float32}
    assert all(p.requires_grad for p in network.parameters())  # the copy's are frozen, not the shared ones
    assert run_tracker(fp32, images, boxes) == before


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_memory_bank_entries_have_one_dtype(precision, dtype):
    cfg = make_tiny_cfg("MODEL.MAX_MEM=3")
    torch.manual_seed(0)
    tracker = HIPTrackTracker(build_hiptrack(cfg, training=False), cfg, precision=precision)
    images, boxes = moving_square()
    out = run_tracker(tracker, images, boxes)
    keys, values, norms = tracker.video_state.memory.tensors()
    assert keys.dtype == values.dtype == dtype and norms.dtype == torch.float32
    assert all(type(v) in (int, float) for box in out for v in box)  # python numbers, whatever the precision


def test_bf16_cls_tracker_returns_float_probabilities():
    cfg = load_config(resolve_experiment_config("hiptrack_cls_tiny"))
    torch.manual_seed(0)
    network = build_model(cfg, training=False)
    tracker = HIPTrackCLSTracker(network, cfg, precision="bf16", predict_challenges=True)
    images, boxes = moving_square(frames=4)
    tracker.initialize(images[0], {"init_bbox": boxes[0]})
    result = tracker.track(images[1])
    assert isinstance(result["cls_id"], int) and all(type(p) is float for p in result["cls_probs"])
    assert sum(result["cls_probs"]) == pytest.approx(1.0, abs=1e-2)
    assert {p.dtype for p in network.parameters()} == {torch.float32}


def test_bf16_tracker_warns_on_a_cpu_without_native_bf16(monkeypatch, caplog):
    cfg = make_tiny_cfg()
    network = build_hiptrack(cfg, training=False)
    monkeypatch.setattr(tracker_module, "cpu_has_fast_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger=tracker_module.__name__):
        HIPTrackTracker(network, cfg)
        assert not caplog.records
        HIPTrackTracker(network, cfg, precision="bf16")
    assert "slower than fp32" in caplog.text


def test_autocast_weight_copy_keeps_tied_weights_tied():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(shared, nn.LayerNorm(4), shared)
    copy = autocast_weight_copy(model)
    assert copy[0].weight is copy[2].weight and copy[0].weight.dtype == torch.bfloat16
    assert copy[1].weight.dtype == torch.float32 and not copy[1].weight.requires_grad
    assert model[0].weight.dtype == torch.float32


class CropRecorder(HIPTrackTracker):
    """Tracker that records the box each frame's search crop is centred on."""

    def track(self, image, info=None):
        self.crop_centres = getattr(self, "crop_centres", []) + [list(self.prev_box_xywh)]
        return super().track(image, info)


def test_open_loop_ious_compare_boxes_on_the_same_crops():
    cfg = make_tiny_cfg("MODEL.MAX_MEM=2")
    torch.manual_seed(0)
    network = build_hiptrack(cfg, training=False)
    images, boxes = moving_square()
    same = open_loop_ious(HIPTrackTracker(network, cfg), HIPTrackTracker(network, cfg), images, boxes[0])
    assert same.shape == (len(images) - 1,) and np.all(same == 1.0)
    reference, bf16 = CropRecorder(network, cfg), CropRecorder(network, cfg, precision="bf16")
    ious = open_loop_ious(reference, bf16, images, boxes[0])
    assert ious.shape == (len(images) - 1,) and np.all((ious >= 0) & (ious <= 1))
    assert bf16.crop_centres == reference.crop_centres  # the crops follow the reference tracker
    reference, bf16 = CropRecorder(network, cfg), CropRecorder(network, cfg, precision="bf16")
    open_loop_ious(reference, bf16, images, boxes[0], np.asarray(boxes, dtype=float))
    assert reference.crop_centres == bf16.crop_centres == [[float(v) for v in b] for b in boxes[:-1]]


def reference_read_memory(memory_keys, memory_values, query_key, query_value, memory_key_norms=None, workspace=None):
    """The memory read-out straight from its definition: softmax over memory of -||k - q||^2 / sqrt(Ck)."""
    q = query_key.flatten(2).transpose(1, 2)  # (B, HW, Ck)
    dist = torch.cdist(q.double(), memory_keys.double()) ** 2  # (B, HW, N)
    weights = torch.softmax(-dist / memory_keys.shape[-1] ** 0.5, dim=-1)
    readout = (weights @ memory_values.double()).transpose(1, 2).reshape(query_value.shape)
    return torch.cat([readout.to(query_value.dtype), query_value], dim=1)


def test_fast_inference_path_gives_the_reference_boxes(monkeypatch):
    """Ring-buffer bank, chunked in-place read-out and channels-last head weights against a direct
    read-out with channels-first weights, over a run whose bank wraps (MAX_MEM 2)."""
    import lib.models.hiptrack.hiptrack as hiptrack_model
    cfg = make_tiny_cfg("MODEL.MAX_MEM=2")
    torch.manual_seed(0)
    fast = HIPTrackTracker(build_hiptrack(cfg, training=False), cfg)
    reference = HIPTrackTracker(build_hiptrack(cfg, training=False), cfg)
    reference.network.load_state_dict(fast.network.state_dict())
    reference.network.use_channels_last_convolutions = lambda: None
    images, boxes = moving_square(frames=24)
    maps = {}
    for name, tracker in (("fast", fast), ("reference", reference)):
        if name == "reference":
            monkeypatch.setattr(hiptrack_model, "read_memory", reference_read_memory)
        outputs = []
        run_network = tracker._run_network
        tracker._run_network = lambda *a, **k: outputs.append(run_network(*a, **k)) or outputs[-1]
        maps[name] = (run_tracker(tracker, images, boxes), outputs)
    assert fast.network.box_head.conv1_ctr[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert len(fast.video_state.memory) == 2
    (fast_boxes, fast_out), (ref_boxes, ref_out) = maps["fast"], maps["reference"]
    np.testing.assert_allclose(fast_boxes, ref_boxes, rtol=0, atol=1e-4)
    for t, (a, b) in enumerate(zip(fast_out, ref_out)):
        assert torch.equal(a["score_map"].flatten(1).argmax(1), b["score_map"].flatten(1).argmax(1)), t
        for key in ("score_map", "size_map", "offset_map"):
            torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5, msg=f"frame {t + 1}: {key}")
