"""Shapes, candidate elimination, memory and masks of the HIPTrack model (tiny variant)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from conftest import make_tiny_cfg
from lib.config.hiptrack import EXPERIMENTS_DIR, load_config
from lib.models import build_model
from lib.models.hip import historical_prompt
from lib.models.hip.historical_prompt import MemoryBank, read_memory
from lib.models.hiptrack.hiptrack import MemorySchedule, build_hiptrack
from lib.models.hiptrack.vit_ce import build_vit_ce
from lib.models.layers.attn_blocks import eliminate_candidates, template_to_search_attention
from lib.models.hiptrack.vit_ce import ctr_point_mask


def tiny_inputs(cfg, batch=2, frames=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    t, s = cfg.DATA.TEMPLATE.SIZE, cfg.DATA.SEARCH.SIZE
    return (torch.randn(batch, 3, t, t, generator=g),
            [torch.randn(batch, 3, s, s, generator=g) for _ in range(frames)],
            torch.tensor([[0.25, 0.25, 0.5, 0.5]]).repeat(batch, 1),
            ctr_point_mask(t // 16, batch))


@pytest.fixture
def tiny_model(tiny_cfg):
    torch.manual_seed(0)
    return build_hiptrack(tiny_cfg, training=False).eval()


def test_training_forward_shapes(tiny_cfg, tiny_model):
    template, search, boxes, mask = tiny_inputs(tiny_cfg)
    outs = tiny_model(template, search, boxes, mask)
    assert len(outs) == 5
    for out in outs:
        assert out["pred_boxes"].shape == (2, 1, 4)
        assert out["score_map"].shape == (2, 1, 8, 8)
        assert out["size_map"].shape == out["offset_map"].shape == (2, 2, 8, 8)
        assert out["backbone_feat"].shape == (2, 16 + 64, 64)
        assert torch.isfinite(out["pred_boxes"]).all()
        assert ((out["score_map"] >= 1e-4) & (out["score_map"] <= 1 - 1e-4)).all()


def test_search_frame_count_is_free(tiny_cfg, tiny_model):
    template, search, boxes, mask = tiny_inputs(tiny_cfg, frames=2)
    assert len(tiny_model(template, search, boxes, mask)) == 2


def test_ce_removes_expected_token_counts(tiny_cfg, tiny_model):
    template, search, boxes, mask = tiny_inputs(tiny_cfg)
    out = tiny_model(template, search[:1], boxes, mask)[0]
    n0 = 64
    n1 = math.ceil(0.7 * n0)
    n2 = math.ceil(0.7 * n1)
    removed = out["removed_indexes_s"]
    assert [r.shape[1] for r in removed] == [n0 - n1, n1 - n2]
    all_removed = torch.cat(removed, dim=1)
    for b in range(2):
        assert len(set(all_removed[b].tolist())) == all_removed.shape[1]  # disjoint
        search_tokens = out["backbone_feat"][b, 16:]
        zero_rows = (search_tokens.abs().sum(-1) == 0).nonzero().flatten()
        assert sorted(zero_rows.tolist()) == sorted(all_removed[b].tolist())


def test_keep_rate_one_disables_ce(tiny_cfg, tiny_model):
    template, search, boxes, mask = tiny_inputs(tiny_cfg)
    out = tiny_model(template, search[:1], boxes, mask, ce_keep_rate=1.0)[0]
    assert out["removed_indexes_s"] == []
    assert (out["backbone_feat"][:, 16:].abs().sum(-1) > 0).all()


def test_eliminate_candidates_keeps_best_scored():
    tokens = torch.arange(2 * 6 * 1, dtype=torch.float).view(1, 12, 1)  # 2 template + 10 search
    scores = torch.tensor([[0.1, 0.9, 0.3, 0.8, 0.0, 0.5, 0.2, 0.7, 0.4, 0.6]])
    index = torch.arange(10).unsqueeze(0)
    new, kept, removed = eliminate_candidates(tokens, scores, 2, 0.5, index)
    assert kept.tolist() == [[1, 3, 7, 9, 5]]
    assert sorted(removed[0].tolist()) == [0, 2, 4, 6, 8]
    assert new[0, :2, 0].tolist() == [0.0, 1.0]
    assert new[0, 2:, 0].tolist() == [3.0, 5.0, 9.0, 11.0, 7.0]


def test_template_attention_uses_selected_rows_then_heads():
    rows = torch.rand(1, 3, 4, 4 + 5)
    mask = torch.tensor([[False, True, True, False]])
    expected = rows[:, :, 1:3, 4:].mean(dim=2).mean(dim=1)
    assert torch.allclose(template_to_search_attention(rows, 4, mask), expected)
    assert torch.allclose(template_to_search_attention(rows, 4, None), rows[:, :, :, 4:].mean(2).mean(1))


def test_gradients_flow_through_causal_memory(tiny_cfg):
    torch.manual_seed(0)
    model = build_hiptrack(tiny_cfg, training=True).train()
    template, search, boxes, mask = tiny_inputs(tiny_cfg)
    outs = model(template, search, boxes, mask)
    outs[-1]["score_map"].sum().backward()  # frame 5 sees the encoder only through memory values
    grad = model.HIP.encoder.layer1[0].conv1.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_memory_schedule_matches_original():
    s = MemorySchedule()
    assert [i for i in range(1, 100) if s.writes(i)] == [5, 10, 20, 40, 60, 80]
    assert s.reads_template(10) and not s.reads_template(11)


def frame_ids(tensor: torch.Tensor, frame_len: int) -> list[float]:
    """The first entry of each frame's slot of bank keys (B, N, Ck) filled with the frame's id."""
    return tensor[0, ::frame_len, 0].tolist()


def test_memory_bank_is_fifo_and_capped():
    bank = MemoryBank(capacity=3)
    for i in range(5):
        bank.write(torch.full((1, 2, 2, 2), float(i)), torch.full((1, 3, 2, 2), float(i)))
    keys, values, norms = bank.ordered_tensors()
    assert len(bank) == 3
    assert torch.allclose(norms, keys.pow(2).sum(-1))
    assert keys.shape == (1, 12, 2) and values.shape == (1, 12, 3) and norms.shape == (1, 12)
    assert frame_ids(keys, 4) == frame_ids(values, 4) == [2.0, 3.0, 4.0]
    with pytest.raises(ValueError):
        MemoryBank(0)
    with pytest.raises(RuntimeError):
        MemoryBank(2).tensors()


def test_memory_bank_ring_buffer_overwrites_the_oldest_slot_in_place():
    bank = MemoryBank(capacity=3)
    seen = []
    for i in range(8):
        bank.write(torch.full((2, 2, 2, 2), float(i)), torch.full((2, 3, 2, 2), float(i)))
        keys, values, norms = bank.tensors()
        ordered = bank.ordered_tensors()
        expected = list(range(max(0, i - 2), i + 1))
        assert frame_ids(ordered[0], 4) == frame_ids(ordered[1], 4) == expected, i
        assert sorted(frame_ids(keys, 4)) == expected  # storage order: a rotation of the time order
        assert torch.equal(keys[1], keys[0]) and torch.equal(norms, keys.pow(2).sum(-1))
        seen.append(keys.data_ptr())
    assert frame_ids(bank.tensors()[0], 4) == [6.0, 7.0, 5.0]
    assert len(set(seen[2:])) == 1  # full after 3 writes: later writes reuse the same buffer
    assert bank.tensors()[0].is_contiguous() and bank.tensors()[1].is_contiguous()


def reference_readout(mk: torch.Tensor, mv: torch.Tensor, qk: torch.Tensor) -> torch.Tensor:
    """(B, Cv, HW): softmax over memory of -||k - q||^2 / sqrt(Ck), straight from the definition."""
    q = qk.flatten(2)  # (B, Ck, HW); mk (B, Ck, N), mv (B, Cv, N)
    dist = ((mk.unsqueeze(3) - q.unsqueeze(2)) ** 2).sum(1)  # (B, N, HW); ||q||^2 cancels in the softmax
    return mv @ torch.softmax(-dist / math.sqrt(mk.shape[1]), dim=1)


@pytest.mark.parametrize("chunk", [1, 4, 1000])
def test_read_memory_matches_explicit_softmax(chunk, monkeypatch):
    monkeypatch.setattr(historical_prompt, "READOUT_CHUNK_ELEMENTS", chunk * 10)
    g = torch.Generator().manual_seed(3)
    mk, mv = torch.randn(1, 4, 10, generator=g), torch.randn(1, 3, 10, generator=g)
    qk, qv = torch.randn(1, 4, 2, 3, generator=g), torch.randn(1, 3, 2, 3, generator=g)
    out = read_memory(mk.transpose(1, 2), mv.transpose(1, 2), qk, qv)
    assert torch.allclose(out[:, :3].flatten(2), reference_readout(mk, mv, qk), atol=1e-5)
    assert torch.equal(out[:, 3:], qv)


@pytest.mark.parametrize("elements", [7, 4096])
def test_read_memory_of_a_wrapped_bank_matches_the_definition(elements, monkeypatch):
    monkeypatch.setattr(historical_prompt, "READOUT_CHUNK_ELEMENTS", elements)
    g = torch.Generator().manual_seed(5)
    bank = MemoryBank(capacity=4)
    for _ in range(6):  # wraps: storage order differs from time order
        bank.write(torch.randn(2, 8, 3, 4, generator=g), torch.randn(2, 5, 3, 4, generator=g))
    qk, qv = torch.randn(2, 8, 3, 4, generator=g), torch.randn(2, 5, 3, 4, generator=g)
    qv = qv.contiguous(memory_format=torch.channels_last)
    keys, values, norms = bank.tensors()
    out = read_memory(keys, values, qk, qv, norms)
    keys, values, _ = bank.ordered_tensors()
    expected = reference_readout(keys.transpose(1, 2), values.transpose(1, 2), qk)
    torch.testing.assert_close(out[:, :5].flatten(2), expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(out[:, 5:], qv) and out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("elements", [7, 4096])
def test_read_memory_into_a_workspace_equals_fresh_buffers_and_reuses_it(elements, monkeypatch):
    """Chunks written into the bank's workspace: the same result bit for bit, the buffer kept from call
    to call (no new allocation once large enough), replaced when the bank grows or the dtype changes."""
    monkeypatch.setattr(historical_prompt, "READOUT_CHUNK_ELEMENTS", elements)
    g = torch.Generator().manual_seed(7)
    bank = MemoryBank(capacity=4)
    for _ in range(3):
        bank.write(torch.randn(2, 8, 3, 4, generator=g), torch.randn(2, 5, 3, 4, generator=g))
    qk, qv = torch.randn(2, 8, 3, 4, generator=g), torch.randn(2, 5, 3, 4, generator=g)
    workspace = historical_prompt.ReadoutWorkspace()

    def readout(**kwargs):
        keys, values, norms = bank.tensors()
        return read_memory(keys, values, qk, qv, norms, **kwargs)[:, :5]

    with torch.no_grad():
        expected = readout()
        assert torch.equal(readout(workspace=workspace), expected)
        kept = workspace._buffer
        assert kept is not None
        assert torch.equal(readout(workspace=workspace), expected)
        assert workspace._buffer is kept
        bank.write(torch.randn(2, 8, 3, 4, generator=g), torch.randn(2, 5, 3, 4, generator=g))  # N grows
        assert torch.equal(readout(workspace=workspace), readout())
        keys, values, norms = (x.to(torch.bfloat16) for x in bank.tensors())
        read_memory(keys, values, qk, qv, norms, workspace=workspace)
        assert workspace._buffer.dtype == torch.bfloat16


def test_read_memory_with_gradients_ignores_the_workspace():
    g = torch.Generator().manual_seed(8)
    keys = torch.randn(1, 6, 4, generator=g, requires_grad=True)
    values = torch.randn(1, 6, 3, generator=g)
    qk, qv = torch.randn(1, 4, 2, 1, generator=g), torch.randn(1, 3, 2, 1, generator=g)
    workspace = historical_prompt.ReadoutWorkspace()
    read_memory(keys, values, qk, qv, workspace=workspace).sum().backward()
    assert workspace._buffer is None and keys.grad is not None and torch.isfinite(keys.grad).all()


def test_tracking_memory_is_capped_and_reuses_its_readout_buffer(tiny_model):
    cfg = make_tiny_cfg("MODEL.MAX_MEM=3")
    torch.manual_seed(0)
    model = build_hiptrack(cfg, training=False).eval()
    template, search, boxes, mask = tiny_inputs(cfg, batch=1, frames=1)
    state = model.start_tracking(template, boxes, mask)
    sizes, buffers = [], []
    with torch.no_grad():
        for i in range(30):
            model.track(state, search[0] + 0.01 * i)
            sizes.append(len(state.memory))
            buffers.append(state.memory.workspace._buffer)
    # writes at 2 and 4 (warm-up), then every 5th frame (5, 10, ...); capped at 3
    assert sizes[:6] == [0, 1, 1, 2, 3, 3]
    assert sizes[9] == 3 and max(sizes) == 3
    assert buffers[-1] is not None and buffers[-1] is buffers[-2]  # full bank: the same buffer every frame


def test_new_tracking_state_starts_empty_and_repeats_exactly(tiny_cfg, tiny_model):
    template, search, boxes, mask = tiny_inputs(tiny_cfg, batch=1, frames=8)

    def run():
        state = tiny_model.start_tracking(template, boxes, mask)
        assert len(state.memory) == 0
        return torch.cat([tiny_model.track(state, x)["pred_boxes"] for x in search])

    assert torch.equal(run(), run())


def test_target_mask_clamps_to_image_and_blanks_removed_patches(tiny_model):
    boxes = torch.tensor([[[0.1, 0.05, 0.5, 0.4]]])  # crosses the top and left edges
    mask = tiny_model.target_mask(boxes, [torch.tensor([[0]])], 128)[0, 0]
    # box x1 = -0.15 -> 0, y1 = -0.15 -> 0, x2 = 0.35 * 128 = 44, y2 = 0.25 * 128 = 32
    expected = torch.zeros(128, 128)
    expected[:32, :44] = 1
    expected[:16, :16] = 0  # patch 0 removed by CE
    assert torch.equal(mask, expected)


def test_template_box_mask_uses_integer_corners(tiny_model):
    mask = tiny_model.template_box_mask(torch.tensor([[0.25, 0.3, 0.5, 0.26]]), 128)[0, 0]
    ys, xs = mask.nonzero(as_tuple=True)
    assert (ys.min().item(), ys.max().item()) == (38, 38 + 33 - 1)
    assert (xs.min().item(), xs.max().item()) == (32, 32 + 64 - 1)


def test_pos_embed_derivation_is_bicubic_without_antialias():
    backbone = build_vit_ce("vit_tiny_test_ce", 64, 128)
    grid = backbone.pos_embed[:, 1:].reshape(1, 14, 14, -1).permute(0, 3, 1, 2)
    for name, size in (("pos_embed_z", 4), ("pos_embed_x", 8)):
        expected = F.interpolate(grid, size=(size, size), mode="bicubic", align_corners=False)
        assert torch.allclose(getattr(backbone, name), expected.flatten(2).transpose(1, 2), atol=1e-6)


def test_narrow_memory_stem_scales_every_stage_and_still_trains():
    cfg = make_tiny_cfg("MODEL.HIP.STEM_WIDTH=8")
    torch.manual_seed(0)
    model = build_hiptrack(cfg, training=True).train()
    encoder = model.HIP.encoder
    assert [encoder.conv1.out_channels, encoder.layer1[0].conv2.out_channels, encoder.layer2[0].conv2.out_channels,
            encoder.layer3[1].conv2.out_channels] == [8, 8, 16, 32]
    assert encoder.fuser.block1.conv1.in_channels == cfg.MODEL.HIDDEN_DIM + 32
    wide = sum(p.numel() for p in build_hiptrack(make_tiny_cfg(), training=True).HIP.parameters())
    assert sum(p.numel() for p in model.HIP.parameters()) < wide / 10
    template, search, boxes, mask = tiny_inputs(cfg)
    outs = model(template, search, boxes, mask)
    assert outs[-1]["score_map"].shape == (2, 1, 8, 8)
    outs[-1]["score_map"].sum().backward()
    assert encoder.layer1[0].conv1.weight.grad.abs().sum() > 0


def test_build_rejects_inconsistent_backbone():
    with pytest.raises(ValueError, match="unknown backbone"):
        build_vit_ce("vit_huge_nonexistent", 64, 128)
    with pytest.raises(ValueError, match="CE_LOC"):
        build_vit_ce("vit_tiny_test_ce", 64, 128, ce_loc=[7], ce_keep_ratio=[0.7])


def test_parameter_count_of_vit_b_matches_original():
    backbone = build_vit_ce("vit_base_patch16_224_ce", 192, 384, [3, 6, 9], [0.7] * 3)
    from lib.models.hiptrack.hiptrack import HIPTrack
    model = HIPTrack(backbone)
    count = {name: sum(p.numel() for p in m.parameters()) for name, m in model.named_children()}
    assert count["backbone"] == 86_353_152
    assert count["box_head"] == 6_474_117
    assert count["HIP"] == 13_868_219
    assert sum(count.values()) == 120_410_880


@pytest.mark.parametrize("yaml_path", sorted((EXPERIMENTS_DIR / "hiptrack").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_config_builds_its_model(yaml_path):
    cfg = load_config(yaml_path)
    model = build_model(cfg, training=False)
    assert model.backbone.embed_dim == cfg.MODEL.HIDDEN_DIM
    assert hasattr(model, "cls_head") == cfg.MODEL.CLS_HEAD.ENABLED
