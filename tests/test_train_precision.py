"""Training precision: TRAIN.AMP forces mixed precision, TRAIN.AMP_AUTO turns it on only where it is fast
(CUDA, or a CPU with native bf16 kernels), fp32 elsewhere."""
from __future__ import annotations

import logging

import pytest
import torch

from lib.config.hiptrack import load_config, resolve_experiment_config
from lib.config.node import ConfigError
from lib.models import build_model
from lib.train import trainer as trainer_module
from lib.train.actors.hiptrack_cls import HIPTrackActor
from lib.train.trainer import Trainer, resolve_amp
from lib.utils.runs import RunPaths

TINY = ["DATA.SEARCH.NUMBER=2", "DATA.SEARCH.SIZE=64", "DATA.TEMPLATE.SIZE=32", "TEST.SEARCH_SIZE=64",
        "TEST.TEMPLATE_SIZE=32", "TRAIN.BATCH_SIZE=2", "TRAIN.GRAD_CLIP_NORM=0"]


@pytest.fixture
def bf16_cpu(monkeypatch):
    """Set whether this CPU 'has' native bf16 kernels: ``bf16_cpu(True)``."""
    return lambda fast: monkeypatch.setattr(trainer_module, "cpu_has_fast_bf16", lambda: fast)


@pytest.mark.parametrize("amp, auto, device, fast, expected", [
    (False, False, "cpu", True, False),    # fp32 unless asked
    (True, False, "cpu", False, True),     # TRAIN.AMP: always (a warning names the slow CPU)
    (True, True, "cpu", False, True),
    (False, True, "cpu", True, True),      # auto: on where bf16 is native
    (False, True, "cpu", False, False),    # ... and off elsewhere
    (False, True, "cuda", False, True),    # auto on CUDA: fp16 + loss scaling
    (False, False, "cuda", True, False),
])
def test_resolve_amp(bf16_cpu, amp, auto, device, fast, expected):
    bf16_cpu(fast)
    assert resolve_amp(amp, auto, torch.device(device)) is expected


def test_amp_auto_is_a_typed_bool_and_off_by_default():
    cfg = load_config(resolve_experiment_config("hiptrack_cls_tiny"))
    assert cfg.TRAIN.AMP_AUTO is False and cfg.TRAIN.AMP is False
    assert load_config(resolve_experiment_config("hiptrack_cls_tiny"), opts=["TRAIN.AMP_AUTO=True"]).TRAIN.AMP_AUTO
    with pytest.raises(ConfigError, match="TRAIN.AMP_AUTO"):
        load_config(resolve_experiment_config("hiptrack_cls_tiny"), opts=["TRAIN.AMP_AUTO=sometimes"])


def one_batch(cfg) -> dict:
    """A loader batch (batch-first) of random crops, boxes near the centre and labelled frames."""
    torch.manual_seed(0)
    b, n = cfg.TRAIN.BATCH_SIZE, cfg.DATA.SEARCH.NUMBER
    sz, sx = cfg.DATA.TEMPLATE.SIZE, cfg.DATA.SEARCH.SIZE
    return {"template_images": torch.randn(b, 1, 3, sz, sz),
            "template_anno": torch.tensor([0.4, 0.4, 0.2, 0.2]).repeat(b, 1, 1),
            "search_images": torch.randn(b, n, 3, sx, sx),
            "search_anno": torch.tensor([0.35, 0.4, 0.2, 0.25]).repeat(b, n, 1),
            "search_visible": torch.ones(b, n, dtype=torch.bool),
            "search_cls_label": torch.arange(b * n).view(b, n) % cfg.MODEL.CLS_HEAD.NUM_CLASSES}


class AutocastSpy:
    """The real actor; records the CPU autocast state and dtype of every call."""

    def __init__(self, actor: HIPTrackActor) -> None:
        self.actor, self.seen = actor, []

    def __getattr__(self, name):
        return getattr(self.actor, name)

    def __call__(self, batch, epoch):
        self.seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return self.actor(batch, epoch)


@pytest.mark.parametrize("fast", [True, False])
def test_amp_auto_trains_in_bf16_only_on_a_cpu_with_native_bf16(bf16_cpu, tmp_path, caplog, fast):
    bf16_cpu(fast)
    cfg = load_config(resolve_experiment_config("hiptrack_cls_tiny"), opts=[*TINY, "TRAIN.AMP_AUTO=True"])
    torch.manual_seed(0)
    model = build_model(cfg, training=True)
    actor = AutocastSpy(HIPTrackActor(model, cfg))
    with caplog.at_level(logging.INFO, logger="lib.train.trainer"):
        trainer = Trainer(cfg, model, actor, [one_batch(cfg)], None, RunPaths(tmp_path, "precision"),
                          torch.device("cpu"))
    assert trainer.use_amp is fast and not trainer.scaler.is_enabled()  # no loss scaling for bf16
    expected = "bf16 autocast (TRAIN.AMP_AUTO, cpu, native bf16: yes)" if fast else \
        "fp32 (TRAIN.AMP_AUTO, cpu, native bf16: no)"
    assert f"training precision: {expected}" in caplog.text
    assert "slow kernels" not in caplog.text  # auto never picks the slow path, so nothing to warn about
    trainer._enter_stage(0, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = trainer.train_epoch(1)
    assert [enabled for enabled, _ in actor.seen] == [fast]
    if fast:
        assert actor.seen[0][1] == torch.bfloat16
    assert torch.isfinite(torch.tensor(stats["Loss/total"]))
    changed = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert any(k.startswith("backbone.") for k in changed) and any(k.startswith("cls_head.") for k in changed)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # autocast: weights stay fp32


def _trainer(cfg, tmp_path, name: str, seed: int = 0) -> Trainer:
    torch.manual_seed(seed)
    model = build_model(cfg, training=True)
    trainer = Trainer(cfg, model, HIPTrackActor(model, cfg), [one_batch(cfg)], None, RunPaths(tmp_path, name),
                      torch.device("cpu"))
    trainer._enter_stage(0, 1)
    return trainer


def _conv_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


def test_channels_last_training_is_the_same_training(tmp_path):
    """TRAIN.CHANNELS_LAST lays out the convolution weights channels-last (the default) and changes
    nothing but float rounding: same loss, same gradients, same parameter objects in the optimiser."""
    base = load_config(resolve_experiment_config("hiptrack_cls_tiny"), opts=TINY)
    assert base.TRAIN.CHANNELS_LAST is True
    runs = {}
    for layout in (True, False):
        cfg = load_config(resolve_experiment_config("hiptrack_cls_tiny"), opts=[*TINY, f"TRAIN.CHANNELS_LAST={layout}"])
        runs[layout] = _trainer(cfg, tmp_path, f"layout{layout}")
    fast, plain = runs[True], runs[False]
    convs = _conv_weights(fast.model)
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert all(w.is_contiguous() for w in _conv_weights(plain.model))
    optimised = {id(p) for group in fast.optimizer.param_groups for p in group["params"]}
    assert all(id(w) in optimised for w in convs)  # laid out in place: the optimiser holds these tensors
    batch = one_batch(fast.cfg)
    losses = {}
    for layout, trainer in runs.items():
        trainer.model.zero_grad()
        torch.manual_seed(5)  # the same dropout masks
        loss, _ = trainer.actor(batch, 1)
        loss.backward()
        losses[layout] = loss.detach()
    torch.testing.assert_close(losses[True], losses[False], rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(fast.model.named_parameters(), plain.model.parameters()):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-5, msg=name)


def test_a_channels_last_checkpoint_loads_into_a_tracking_model(tmp_path):
    """Weights saved from a channels-last training load into a plainly laid-out model: same values."""
    cfg = load_config(resolve_experiment_config("hiptrack_cls_tiny"), opts=TINY)
    trained = _trainer(cfg, tmp_path, "saved").model
    torch.save({"net": trained.state_dict()}, tmp_path / "ckpt.pth.tar")
    torch.manual_seed(1)
    fresh = build_model(cfg, training=False)
    fresh.load_state_dict(torch.load(tmp_path / "ckpt.pth.tar", weights_only=True)["net"])
    for (name, a), b in zip(trained.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
