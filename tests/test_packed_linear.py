"""Linear layers packed for oneDNN in the tracker's copy of the network (lib/utils/packed_linear.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import lib.utils.packed_linear as packed_linear
from conftest import make_tiny_cfg
from lib.models.hiptrack.hiptrack import build_hiptrack
from lib.test.tracker import HIPTrackTracker
from lib.utils.packed_linear import MIN_PACKED_WEIGHT, PackedLinear, packed_linear_available, packed_linear_copy
from lib.utils.precision import autocast_weight_copy
from test_tracker import moving_square, run_tracker

pytestmark = pytest.mark.skipif(not packed_linear_available(), reason="no oneDNN packed linear in this torch build")


@pytest.mark.parametrize("bias", [True, False])
def test_packed_linear_equals_linear_up_to_rounding(bias):
    torch.manual_seed(0)
    linear = nn.Linear(96, 80, bias=bias)
    packed = PackedLinear(linear)
    for x in (torch.randn(7, 96), torch.randn(2, 5, 96), torch.randn(2, 96, 5).transpose(1, 2)):  # last: strided
        with torch.no_grad():
            expected = linear(x)
        out = packed(x)
        assert out.shape == expected.shape and out.dtype == torch.float32
        torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_bf16_packed_linear_matches_autocast_linear():
    """In a bf16 copy the weight is bf16; an fp32 input is cast first, as autocast casts a linear's input."""
    torch.manual_seed(0)
    linear = autocast_weight_copy(nn.Sequential(nn.Linear(96, 80)), torch.bfloat16)[0]
    packed = PackedLinear(linear)
    x = torch.randn(4, 96)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = linear(x)
        out = packed(x)
    assert out.dtype == expected.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected.float(), rtol=2e-2, atol=2e-2)


def test_copy_packs_large_linears_only_and_leaves_the_network_alone():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 8))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    copy = packed_linear_copy(net)
    assert isinstance(copy[0], PackedLinear) and isinstance(copy[2], nn.Linear)  # 256 * 8 < MIN_PACKED_WEIGHT
    assert 256 * 256 >= MIN_PACKED_WEIGHT > 256 * 8
    assert isinstance(net[0], nn.Linear) and all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    assert all(p.requires_grad for p in net.parameters())
    assert not any(p.requires_grad for p in copy.parameters())
    x = torch.randn(3, 256)
    with torch.no_grad():
        torch.testing.assert_close(copy(x), net(x), rtol=1e-5, atol=1e-5)
    assert "packed_weight" not in copy.state_dict() and "0.packed_weight" not in copy.state_dict()


def test_copy_without_large_linears_is_the_network_itself():
    net = nn.Sequential(nn.Linear(64, 64))
    assert packed_linear_copy(net) is net


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_tracker_with_packed_linears_tracks_as_torch_linear(precision, monkeypatch):
    """Every linear of the tiny model packed (threshold lowered: its layers are too small to pack by
    default): the tracker runs the packed copy, the shared network is untouched, the boxes are those
    of TEST.PACKED_LINEAR False up to float rounding."""
    cfg = make_tiny_cfg("MODEL.MAX_MEM=2")
    torch.manual_seed(0)
    network = build_hiptrack(cfg, training=False)
    images, boxes = moving_square()
    plain = HIPTrackTracker(network, make_tiny_cfg("MODEL.MAX_MEM=2", "TEST.PACKED_LINEAR=False"), precision=precision)
    assert not any(isinstance(m, PackedLinear) for m in plain.network.modules())
    monkeypatch.setattr(packed_linear, "MIN_PACKED_WEIGHT", 1)
    packed = HIPTrackTracker(network, cfg, precision=precision)
    linears = [m for m in network.modules() if isinstance(m, nn.Linear)]
    assert packed.network is not network
    assert sum(isinstance(m, PackedLinear) for m in packed.network.modules()) == len(linears)
    assert all(isinstance(m, nn.Linear) for m in linears)
    expected = run_tracker(plain, images, boxes)
    out = run_tracker(packed, images, boxes)
    tolerance = 1e-3 if precision == "fp32" else 0.5  # pixels; bf16: another rounding of bf16 products
    assert np.allclose(out, expected, atol=tolerance), (out, expected)


def test_tiny_tracker_keeps_the_shared_network():
    """The tiny model's layers are below the threshold: no copy, fp32 trackers share the network."""
    cfg = make_tiny_cfg("MODEL.MAX_MEM=2")
    network = build_hiptrack(cfg, training=False)
    assert HIPTrackTracker(network, cfg).network is network
