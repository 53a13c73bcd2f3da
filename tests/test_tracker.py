"""The tracker on a generated video: a bright square moving over a noisy background."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_tiny_cfg
from lib.models.hiptrack.hiptrack import build_hiptrack
from lib.test.tracker.hiptrack import HIPTrackTracker, hann1d, hann2d
from lib.utils.crop import box_to_crop, clip_box, sample_target


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


def reference_read_memory(memory_keys, memory_values, query_key, query_value, memory_key_norms=None):
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
