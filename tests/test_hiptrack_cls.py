"""HIPTrack-CLS: the classification head, the fusion option, loading and trainable parts."""
from __future__ import annotations

import logging

import pytest
import torch

from conftest import make_tiny_cfg
from lib.config.hiptrack import config_from_dict, load_config, resolve_experiment_config
from lib.config.node import ConfigError
from lib.models import build_model
from lib.models.hiptrack.hiptrack import HIPTrack, build_hiptrack
from lib.models.hiptrack.hiptrack_cls import HIPTrackCLS, build_hiptrack_cls
from lib.utils.checkpoint import CheckpointError
from lib.models.layers.cls_head import ChallengeClassificationHead, pool_kept_tokens
from lib.models.hiptrack.vit_ce import ctr_point_mask
from lib.test.tracker.hiptrack import load_network
from lib.train.trainable import enter_train_mode, set_trainable, stage_learning_rate, trainable_summary, \
    training_stage
from lib.utils.checkpoint import save_checkpoint


def cls_cfg(*opts):
    return load_config(resolve_experiment_config("hiptrack_cls_tiny"), opts=list(opts))


def inputs(cfg, batch=2, frames=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    t, s = cfg.DATA.TEMPLATE.SIZE, cfg.DATA.SEARCH.SIZE
    return (torch.randn(batch, 3, t, t, generator=g), [torch.randn(batch, 3, s, s, generator=g) for _ in range(frames)],
            torch.tensor([[0.25, 0.25, 0.5, 0.5]]).repeat(batch, 1), ctr_point_mask(t // 16, batch))


class CallCount:
    def __init__(self, module):
        self.n = 0
        module.register_forward_hook(lambda *a: setattr(self, "n", self.n + 1))


def test_build_model_dispatches_on_enabled():
    assert type(build_model(cls_cfg(), training=False)) is HIPTrackCLS
    assert type(build_model(make_tiny_cfg(), training=False)) is HIPTrack


def test_training_outputs_have_logits_per_frame_when_asked():
    torch.manual_seed(0)
    model = build_hiptrack_cls(cls_cfg(), training=True).train()
    outs = model(*inputs(model_cfg := cls_cfg()), with_challenges=True)
    assert len(outs) == 3
    for out in outs:
        assert out["cls_logits"].shape == (2, 10)
        assert out["pred_boxes"].shape == (2, 1, 4)
    assert model_cfg.MODEL.CLS_HEAD.NUM_CLASSES == 10
    assert all("cls_logits" not in out for out in model(*inputs(model_cfg)))  # training mode alone asks nothing


def test_eval_does_not_run_the_head_unless_asked():
    cfg = cls_cfg()
    torch.manual_seed(0)
    model = build_hiptrack_cls(cfg, training=False).eval()
    calls = CallCount(model.cls_head.projection)
    template, search, boxes, mask = inputs(cfg, batch=1)
    state = model.start_tracking(template, boxes, mask)
    out = model.track(state, search[0])
    assert "cls_logits" not in out and calls.n == 0
    with torch.no_grad():
        outs = model(template, search, boxes, mask)
    assert all("cls_logits" not in o for o in outs) and calls.n == 0
    out = model.track(state, search[1], with_challenges=True)
    assert out["cls_logits"].shape == (1, 10) and calls.n == 1
    out = model.track(state, search[2])  # the request was for that call only
    assert "cls_logits" not in out and calls.n == 1
    with torch.no_grad():
        outs = model(template, search, boxes, mask, with_challenges=True)
    assert all(o["cls_logits"].shape == (1, 10) for o in outs) and calls.n == 1 + len(search)


def test_plain_hiptrack_refuses_challenge_predictions():
    cfg = make_tiny_cfg()
    torch.manual_seed(0)
    model = build_hiptrack(cfg, training=False).eval()
    template, search, boxes, mask = inputs(cfg, batch=1)
    state = model.start_tracking(template, boxes, mask)
    with pytest.raises(ValueError, match="no challenge classification head.*MODEL.CLS_HEAD.ENABLED"):
        model.track(state, search[0], with_challenges=True)
    assert state.frame_index == 0  # refused before the video state changed
    with pytest.raises(ValueError, match="no challenge classification head"), torch.no_grad():
        model(template, search, boxes, mask, with_challenges=True)
    assert "pred_boxes" in model.track(state, search[0], with_challenges=False)


def test_without_fusion_boxes_equal_plain_hiptrack():
    cfg = cls_cfg()
    torch.manual_seed(0)
    cls_model = build_hiptrack_cls(cfg, training=False)
    plain = build_hiptrack(cfg, training=False)
    plain.load_state_dict({k: v for k, v in cls_model.state_dict().items() if not k.startswith("cls_head.")})
    template, search, boxes, mask = inputs(cfg)
    for mode in ("train", "eval"):
        getattr(cls_model, mode)()
        getattr(plain, mode)()
        a, b = cls_model(template, search, boxes, mask), plain(template, search, boxes, mask)
        for x, y in zip(a, b):
            for key in ("pred_boxes", "score_map", "size_map", "offset_map"):
                assert torch.equal(x[key], y[key]), (mode, key)


@pytest.mark.parametrize("mode,width", [("ADD", 1), ("FILM", 2), ("GATE", 1)])
def test_fusion_projects_to_box_head_channels_and_changes_boxes(mode, width):
    cfg = cls_cfg(f"MODEL.CLS_HEAD.FUSION={mode}")
    torch.manual_seed(0)
    model = build_hiptrack_cls(cfg, training=False).eval()
    assert model.cls_head.fusion.weight.shape == (width * cfg.MODEL.HIDDEN_DIM, cfg.MODEL.CLS_HEAD.HIDDEN_DIM)
    assert model.box_head.conv1_ctr[0].in_channels == cfg.MODEL.HIDDEN_DIM
    template, search, boxes, mask = inputs(cfg)
    with torch.no_grad():
        before = model(template, search[:1], boxes, mask)[0]["score_map"]
        calls = CallCount(model.cls_head.projection)
        torch.nn.init.normal_(model.cls_head.fusion.weight, std=1.0)
        torch.nn.init.normal_(model.cls_head.fusion.bias, std=1.0)
        out = model(template, search[:1], boxes, mask)[0]
    assert calls.n == 1 and "cls_logits" not in out  # features computed for the boxes, logits not
    assert not torch.allclose(out["score_map"], before)


@pytest.mark.parametrize("mode", ["ADD", "FILM", "GATE"])
def test_fusion_starts_as_identity(mode):
    cfg = cls_cfg(f"MODEL.CLS_HEAD.FUSION={mode}")
    torch.manual_seed(0)
    fused = build_hiptrack_cls(cfg, training=False).eval()
    plain = build_hiptrack(cfg, training=False).eval()
    plain.load_state_dict({k: v for k, v in fused.state_dict().items() if not k.startswith("cls_head.")})
    template, search, boxes, mask = inputs(cfg)
    with torch.no_grad():
        assert torch.equal(fused(template, search, boxes, mask)[2]["pred_boxes"],
                           plain(template, search, boxes, mask)[2]["pred_boxes"])


def test_stem_features_feed_the_head_and_leave_the_boxes_alone():
    cfg = cls_cfg("MODEL.CLS_HEAD.INPUT=tokens+stem")
    torch.manual_seed(0)
    model = build_hiptrack_cls(cfg, training=True)
    stem = 4 * cfg.MODEL.HIP.STEM_WIDTH
    assert model.cls_head.projection[0].in_features == cfg.MODEL.HIDDEN_DIM + stem
    plain = build_hiptrack(cfg, training=False)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("cls_head.")})
    template, search, boxes, mask = inputs(cfg)
    model.train(), plain.train()
    stem_runs = CallCount(model.HIP.encoder.layer3)
    outs = model(template, search, boxes, mask, with_challenges=True)
    assert stem_runs.n == 1 + len(search)  # template + once per frame: memory writes reuse the head's stem
    for x, y in zip(outs, plain(template, search, boxes, mask)):
        assert x["cls_logits"].shape == (2, 10) and torch.equal(x["pred_boxes"], y["pred_boxes"])
    model.zero_grad()
    outs[-1]["cls_logits"].sum().backward()  # the last frame is never written to memory: grad only via the head
    assert model.HIP.encoder.conv1.weight.grad.abs().sum() > 0
    # the head reads this frame's crop: another crop, other logits, same boxes
    model.eval()
    state = model.start_tracking(template[:1], boxes[:1], mask[:1])
    with torch.no_grad():
        a = model.track(state, search[0][:1], with_challenges=True)
        state.frame_index -= 1
        b = model.track(state, search[0][:1].flip(-1), with_challenges=True)
    assert a["cls_logits"].shape == (1, 10) and not torch.allclose(a["cls_logits"], b["cls_logits"])
    # tracking: a frame written to memory runs the stem once, with or without the head
    for with_challenges in (False, True):
        state = model.start_tracking(template[:1], boxes[:1], mask[:1])
        state.frame_index = cfg.TEST.WARMUP_WRITE_FRAMES[0] - 1
        stem_runs.n = 0
        model.track(state, search[0][:1], with_challenges=with_challenges)
        assert len(state.memory) == 1 and stem_runs.n == 1, with_challenges


def test_stem_input_excludes_fusion_and_needs_the_head():
    with pytest.raises(ConfigError, match="exclude each other"):
        cls_cfg("MODEL.CLS_HEAD.INPUT=tokens+stem", "MODEL.CLS_HEAD.FUSION=ADD")
    with pytest.raises(ConfigError, match=r"INPUT: tokens\+stem needs the classification head"):
        make_tiny_cfg("MODEL.CLS_HEAD.INPUT=tokens+stem")
    from lib.models.layers.cls_head import ChallengeClassificationHead
    with pytest.raises(ValueError, match="exclude each other"):
        ChallengeClassificationHead(16, 8, fusion_dim=16, stem_dim=8)
    head = ChallengeClassificationHead(16, 8, stem_dim=8)
    with pytest.raises(ValueError, match="8-channel"):
        head(torch.zeros(1, 4, 16), [])
    assert head(torch.zeros(1, 4, 16), [], torch.zeros(1, 8, 2, 2))["cls_logits"].shape == (1, 10)


@pytest.mark.parametrize("head_input, stem_width", [("tokens", 0), ("tokens+stem", 4 * 16)])
def test_head_input_sets_the_head_input_width(head_input, stem_width):
    cfg = cls_cfg(f"MODEL.CLS_HEAD.INPUT={head_input}", "MODEL.HIP.STEM_WIDTH=16")
    head = build_hiptrack_cls(cfg, training=False).cls_head
    assert head.projection[0].in_features == cfg.MODEL.HIDDEN_DIM + stem_width
    assert head.reads_stem == (head_input == "tokens+stem") == (head.input_norm is not None)


def test_pooling_leaves_out_eliminated_tokens():
    tokens = torch.tensor([[[1.0, 2.0], [0.0, 0.0], [3.0, 4.0], [0.0, 0.0]]])
    pooled = pool_kept_tokens(tokens, [torch.tensor([[1]]), torch.tensor([[3]])])
    assert torch.equal(pooled, torch.tensor([[2.0, 3.0]]))
    cfg = cls_cfg()
    torch.manual_seed(0)
    model = build_hiptrack_cls(cfg, training=True).train()
    out = model(*inputs(cfg, frames=1))[0]
    removed = out["removed_indexes_s"]
    search = out["backbone_feat"][:, -64:]
    kept = torch.ones(2, 64, dtype=torch.bool)
    for r in removed:
        kept.scatter_(1, r, False)
    manual = torch.stack([search[b][kept[b]].mean(0) for b in range(2)])
    assert torch.allclose(pool_kept_tokens(search, removed), manual, atol=1e-6)


def test_hidden_dim_must_match_backbone():
    with pytest.raises(ValueError, match="MODEL.HIDDEN_DIM"):
        build_hiptrack_cls(cls_cfg("MODEL.HIDDEN_DIM=768"), training=False)


def test_config_rejects_fusion_without_head_and_bottleneck_dim(tmp_path):
    with pytest.raises(ConfigError, match="FUSION needs the classification head"):
        make_tiny_cfg("MODEL.CLS_HEAD.FUSION=ADD")
    with pytest.raises(ConfigError, match="TWO_STAGE needs the classification head"):
        make_tiny_cfg("TRAIN.TWO_STAGE=True", "TRAIN.EPOCH=50")
    with pytest.raises(ConfigError, match="STAGE1_EPOCHS"):
        cls_cfg("TRAIN.TWO_STAGE=True")  # EPOCH 2 != 30 + 20
    with pytest.raises(ConfigError, match="CLS_CLASS_WEIGHTS"):
        cls_cfg("TRAIN.CLS_CLASS_WEIGHTS=[1.0, 2.0]")
    yaml = tmp_path / "old.yaml"
    yaml.write_text("MODEL:\n  BOTTLENECK_DIM: 256\n")
    with pytest.raises(ConfigError, match="FUSION"):
        load_config(yaml)


def test_plain_hiptrack_checkpoint_loads_with_fresh_head(tmp_path, caplog):
    torch.manual_seed(1)
    plain = build_hiptrack(make_tiny_cfg(), training=False)
    path = save_checkpoint({"net": plain.state_dict(), "epoch": 3}, tmp_path / "HIPTrack_ep0003.pth.tar")
    with caplog.at_level(logging.INFO):
        model = build_hiptrack_cls(cls_cfg(f"MODEL.PRETRAIN_FILE={path}"), training=True)
    assert "classification head newly initialised" in caplog.text
    assert "cls_head.projection" in caplog.text
    own = model.state_dict()
    for k, v in plain.state_dict().items():
        assert torch.equal(own[k], v), k


def test_own_checkpoint_round_trip_is_strict(tmp_path):
    cfg = cls_cfg()
    torch.manual_seed(2)
    model = build_hiptrack_cls(cfg, training=False)
    path = save_checkpoint({"net": model.state_dict()}, tmp_path / "cls.pth.tar")
    loaded = load_network(cfg, path)
    assert isinstance(loaded, HIPTrackCLS)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    # a plain HIPTrack checkpoint is not enough for the strict test-time load of the CLS model
    plain_path = save_checkpoint({"net": build_hiptrack(cfg, training=False).state_dict()}, tmp_path / "plain.pth")
    with pytest.raises(CheckpointError, match="cls_head"):
        load_network(cfg, plain_path)


def frozen_names(model):
    return {n.split(".")[0] for n, p in model.named_parameters() if not p.requires_grad}


def test_single_stage_trainable_parts():
    model = build_hiptrack_cls(cls_cfg("TRAIN.FREEZE_BACKBONE=True"), training=False)
    set_trainable(model, cls_cfg("TRAIN.FREEZE_BACKBONE=True"), epoch=1)
    assert frozen_names(model) == {"backbone"}
    cfg = cls_cfg("TRAIN.FREEZE_LAYERS=[0, 2]")
    set_trainable(model, cfg, epoch=1)
    frozen = {n for n, p in model.backbone.named_parameters() if not p.requires_grad}
    assert {"patch_embed.proj.weight", "pos_embed_x", "blocks.0.attn.qkv.weight", "blocks.2.mlp.fc1.bias"} <= frozen
    assert not any(n.startswith(("blocks.1.", "blocks.3.", "norm.")) for n in frozen)
    assert training_stage(cfg, 5) == 0 and stage_learning_rate(cfg, 0) == cfg.TRAIN.LR


def test_two_stage_trainable_parts_and_learning_rates():
    cfg = cls_cfg("TRAIN.TWO_STAGE=True", "TRAIN.STAGE1_EPOCHS=1", "TRAIN.STAGE2_EPOCHS=1")
    model = build_hiptrack_cls(cfg, training=False)
    assert (training_stage(cfg, 1), training_stage(cfg, 2)) == (1, 2)
    assert (stage_learning_rate(cfg, 1), stage_learning_rate(cfg, 2)) == (1e-3, 1e-5)
    set_trainable(model, cfg, epoch=1)
    summary = trainable_summary(model)
    assert [name for name, (t, _) in summary.items() if t] == ["cls_head"]
    set_trainable(model, cls_cfg("TRAIN.TWO_STAGE=True", "TRAIN.STAGE1_EPOCHS=1", "TRAIN.STAGE2_EPOCHS=1",
                                 "TRAIN.FREEZE_BACKBONE_STAGE1=False"), epoch=1)
    assert {name for name, (t, _) in trainable_summary(model).items() if t} == {"cls_head", "backbone"}
    set_trainable(model, cfg, epoch=2)
    assert all(t == total for t, total in trainable_summary(model).values())


def test_stage_one_gradients_reach_only_the_head():
    cfg = cls_cfg("TRAIN.TWO_STAGE=True", "TRAIN.STAGE1_EPOCHS=1", "TRAIN.STAGE2_EPOCHS=1")
    torch.manual_seed(0)
    model = build_hiptrack_cls(cfg, training=True)
    set_trainable(model, cfg, epoch=1)
    enter_train_mode(model)
    assert not model.box_head.conv1_ctr[1].training  # frozen BatchNorm keeps its statistics
    assert model.cls_head.training
    running = model.box_head.conv1_ctr[1].running_mean.clone()
    outs = model(*inputs(cfg), with_challenges=True)
    loss = sum(o["cls_logits"].logsumexp(-1).mean() + o["score_map"].mean() for o in outs)
    loss.backward()
    with_grad = {n.split(".")[0] for n, p in model.named_parameters() if p.grad is not None}
    assert with_grad == {"cls_head"}
    assert torch.equal(model.box_head.conv1_ctr[1].running_mean, running)


def test_freeze_cls_epoch():
    cfg = cls_cfg("TRAIN.FREEZE_CLS_EPOCH=2")
    model = build_hiptrack_cls(cfg, training=False)
    set_trainable(model, cfg, epoch=1)
    assert all(p.requires_grad for p in model.cls_head.parameters())
    set_trainable(model, cfg, epoch=2)
    assert not any(p.requires_grad for p in model.cls_head.parameters())
    assert all(p.requires_grad for p in model.box_head.parameters())


def test_fusion_modes_compute_what_they_say():
    torch.manual_seed(0)
    fmap, hidden = torch.randn(2, 3, 4, 4), torch.randn(2, 5)
    for mode in ("ADD", "FILM", "GATE"):
        head = ChallengeClassificationHead(8, 5, fusion_dim=3, fusion_mode=mode)
        torch.nn.init.normal_(head.fusion.weight)
        p = head.fusion(hidden)[:, :, None, None]
        expected = {"ADD": lambda: fmap + p,
                    "FILM": lambda: (1 + torch.tanh(p[:, :3])) * fmap + p[:, 3:],
                    "GATE": lambda: 2 * torch.sigmoid(p) * fmap}[mode]()
        assert torch.allclose(head.condition(fmap, hidden), expected), mode
    with pytest.raises(ValueError, match="fusion_mode"):
        ChallengeClassificationHead(8, 5, fusion_dim=3, fusion_mode="CONCAT")


def test_old_boolean_fusion_is_read_as_add_or_none(caplog):
    with caplog.at_level(logging.WARNING):
        assert cls_cfg("MODEL.CLS_HEAD.FUSION=True").MODEL.CLS_HEAD.FUSION == "ADD"
    assert "MODEL.CLS_HEAD.FUSION" in caplog.text and "deprecated value" in caplog.text
    assert cls_cfg("MODEL.CLS_HEAD.FUSION=False").MODEL.CLS_HEAD.FUSION == "NONE"
    stored = cls_cfg().to_dict()
    stored["MODEL"]["CLS_HEAD"]["FUSION"] = True  # a checkpoint written before the fusion modes
    assert config_from_dict(stored).MODEL.CLS_HEAD.FUSION == "ADD"
