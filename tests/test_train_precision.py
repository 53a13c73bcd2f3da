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
