"""Same weights, same inputs: our ViT-B HIPTrack against outputs of the original implementation.

``tests/data/hiptrack_reference.pt`` holds score / size / offset maps, boxes and CE decisions of
the original code (see tests/data/README.md) for the 5-frame training forward and for 21 frames
of tracking with its memory schedule (template memory for frames 1-10, writes at 5, 10, 20).
"""
from __future__ import annotations

import pytest
import torch

from lib.config.hiptrack import load_config, resolve_experiment_config
from lib.models.hiptrack.hiptrack import build_hiptrack
from reference_data import (FIXTURE_FILE, deterministic_state_dict, reference_track_inputs,
                            reference_train_inputs)

MAP_ATOL = 1e-4
BOX_ATOL = 1e-5


@pytest.fixture(scope="module")
def reference():
    return torch.load(FIXTURE_FILE, weights_only=True)


@pytest.fixture(scope="module")
def model():
    cfg = load_config(resolve_experiment_config("hiptrack_got"))
    net = build_hiptrack(cfg, training=False)
    net.load_state_dict(deterministic_state_dict(), strict=True)
    return net.eval()


def assert_same_frame(ours: dict, ref: dict, where: str) -> None:
    for key in ("score_map", "size_map", "offset_map"):
        torch.testing.assert_close(ours[key], ref[key], atol=MAP_ATOL, rtol=0, msg=f"{where}: {key}")
    torch.testing.assert_close(ours["pred_boxes"], ref["pred_boxes"], atol=BOX_ATOL, rtol=0, msg=f"{where}: boxes")
    assert len(ours["removed_indexes_s"]) == len(ref["removed_indexes_s"]) == 3
    for i, (a, b) in enumerate(zip(ours["removed_indexes_s"], ref["removed_indexes_s"])):
        assert torch.equal(a.sort(dim=1).values, b), f"{where}: CE block {i} removed other tokens"


def test_training_forward_matches_original(model, reference):
    inputs = reference_train_inputs()
    with torch.no_grad():
        outs = model(inputs["template"], inputs["search"], inputs["template_boxes"], inputs["ce_template_mask"])
    assert len(outs) == len(reference["train"]) == 5
    for t, (ours, ref) in enumerate(zip(outs, reference["train"])):
        assert_same_frame(ours, ref, f"training frame {t + 1}")


def test_tracking_matches_original_frame_by_frame(model, reference):
    inputs = reference_track_inputs()
    state = model.start_tracking(inputs["template"], inputs["template_boxes"], inputs["ce_template_mask"])
    for t, (search, ref) in enumerate(zip(inputs["search"], reference["track"])):
        ours = model.track(state, search)
        assert_same_frame(ours, ref, f"tracking frame {t + 1}")
        assert len(state.memory) == ref["mem_frames"], f"tracking frame {t + 1}: memory size"
