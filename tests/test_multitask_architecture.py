"""Six-step check of the HIPTrack-CLS multi-task architecture.

Runs as a script (prints the numbered checks, exits non-zero on a failure)::

    python tests/test_multitask_architecture.py [--config hiptrack_cls_tiny]

and under pytest (one test per check). The tiny config is the default, so it runs in seconds
anywhere; ``--config hiptrack_cls`` checks the ViT-B model (no pretrained file is loaded).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Callable

import pytest
import torch

DEFAULT_CONFIG = "hiptrack_cls_tiny"


class Context:
    """State shared by the checks; each check may rely on the ones before it."""

    def __init__(self, config: str) -> None:
        self.config_name = config
        self.modules: dict = {}
        self.cfg = None
        self.model = None


def check_imports(ctx: Context) -> str:
    from lib.config.hiptrack import load_config, resolve_experiment_config
    from lib.models import build_model
    from lib.models.hiptrack.hiptrack_cls import HIPTrackCLS
    from lib.models.layers.cls_head import ChallengeClassificationHead
    from lib.challenges import CLASS_NAMES
    from lib.utils.cls_loss import build_cls_loss
    ctx.modules.update(load_config=load_config, resolve=resolve_experiment_config, build_model=build_model,
                       HIPTrackCLS=HIPTrackCLS, Head=ChallengeClassificationHead, CLASS_NAMES=CLASS_NAMES,
                       build_cls_loss=build_cls_loss)
    return f"torch {torch.__version__}"


def check_config(ctx: Context) -> str:
    m = ctx.modules
    cfg = m["load_config"](m["resolve"](ctx.config_name), opts=["MODEL.PRETRAIN_FILE="])
    head = cfg.MODEL.CLS_HEAD
    assert head.ENABLED, "MODEL.CLS_HEAD.ENABLED is False"
    assert head.NUM_CLASSES == len(m["CLASS_NAMES"]) == 10, f"NUM_CLASSES {head.NUM_CLASSES}"
    assert "BOTTLENECK_DIM" not in cfg.MODEL, "MODEL.BOTTLENECK_DIM must not exist"
    ctx.cfg = cfg
    return (f"{ctx.config_name}: backbone {cfg.MODEL.BACKBONE.TYPE}, HIDDEN_DIM {cfg.MODEL.HIDDEN_DIM}, "
            f"head {head.HIDDEN_DIM} hidden, dropout {head.DROPOUT}, fusion {head.FUSION}, "
            f"loss {cfg.TRAIN.CLS_LOSS_TYPE} x {cfg.TRAIN.CLS_WEIGHT}")


def check_classification_head(ctx: Context) -> str:
    cfg = ctx.cfg
    dim, k = cfg.MODEL.HIDDEN_DIM, cfg.MODEL.CLS_HEAD.NUM_CLASSES
    hw = (cfg.DATA.SEARCH.SIZE // cfg.MODEL.BACKBONE.STRIDE) ** 2
    head = ctx.modules["Head"](dim, cfg.MODEL.CLS_HEAD.HIDDEN_DIM, k, cfg.MODEL.CLS_HEAD.DROPOUT, fusion_dim=dim)
    tokens = torch.randn(2, hw, dim)
    tokens[:, :3] = 0  # as if eliminated by CE
    out = head(tokens, [torch.tensor([[0, 1, 2]] * 2)])
    assert out["cls_logits"].shape == (2, k), out["cls_logits"].shape
    assert out["fusion_features"].shape == (2, dim), "fusion must project to the box head's input channels"
    return f"[2, {hw}, {dim}] -> logits [2, {k}], fusion [2, {dim}]"


def check_model_building(ctx: Context) -> str:
    torch.manual_seed(0)
    ctx.model = ctx.modules["build_model"](ctx.cfg, training=False)
    assert isinstance(ctx.model, ctx.modules["HIPTrackCLS"]), type(ctx.model).__name__
    head = sum(p.numel() for p in ctx.model.cls_head.parameters())
    total = sum(p.numel() for p in ctx.model.parameters())
    return f"{type(ctx.model).__name__}: {total:,} parameters, classification head {head:,}"


def _inputs(cfg, batch: int, frames: int):
    t, s = cfg.DATA.TEMPLATE.SIZE, cfg.DATA.SEARCH.SIZE
    grid = t // cfg.MODEL.BACKBONE.STRIDE
    mask = torch.zeros(batch, grid, grid, dtype=torch.bool)
    mask[:, (grid - 1) // 2, (grid - 1) // 2] = True
    return (torch.randn(batch, 3, t, t), [torch.randn(batch, 3, s, s) for _ in range(frames)],
            torch.tensor([[0.25, 0.25, 0.5, 0.5]]).repeat(batch, 1), mask.flatten(1))


def check_forward_pass(ctx: Context) -> str:
    cfg, model = ctx.cfg, ctx.model.train()
    frames = cfg.DATA.SEARCH.NUMBER
    outs = model(*_inputs(cfg, 2, frames), with_challenges=True)
    assert len(outs) == frames
    labels = torch.tensor([0, -100])  # one labeled, one unlabeled frame
    loss_fn = ctx.modules["build_cls_loss"](cfg)
    loss = sum(loss_fn(o["cls_logits"], labels) for o in outs)
    for o in outs:
        assert o["cls_logits"].shape == (2, cfg.MODEL.CLS_HEAD.NUM_CLASSES)
        assert o["pred_boxes"].shape == (2, 1, 4)
    assert torch.isfinite(loss), loss
    loss.backward()
    assert model.cls_head.classifier.weight.grad.abs().sum() > 0
    return f"{frames} frames: cls_logits {tuple(outs[0]['cls_logits'].shape)}, loss {loss.item():.3f}"


def check_inference_mode(ctx: Context) -> str:
    cfg, model = ctx.cfg, ctx.model.eval()
    calls = []
    hook = model.cls_head.classifier.register_forward_hook(lambda *a: calls.append(1))
    try:
        template, search, boxes, mask = _inputs(cfg, 1, 3)
        state = model.start_tracking(template, boxes, mask)
        outs = [model.track(state, x) for x in search]
    finally:
        hook.remove()
    assert not calls, "the classifier ran during tracking"
    assert all("cls_logits" not in o for o in outs)
    return f"{len(outs)} tracking frames, classifier calls: 0"


CHECKS: list[tuple[str, Callable[[Context], str]]] = [
    ("imports", check_imports),
    ("config", check_config),
    ("classification head", check_classification_head),
    ("model building", check_model_building),
    ("forward pass", check_forward_pass),
    ("inference mode", check_inference_mode),
]


def run(config: str = DEFAULT_CONFIG) -> int:
    """Run every check in order, printing one numbered line each; returns the number of failures."""
    ctx, failures = Context(config), 0
    for i, (name, check) in enumerate(CHECKS, start=1):
        print(f"[Test {i}/{len(CHECKS)}] Testing {name}... ", end="", flush=True)
        try:
            print(f"OK ({check(ctx)})")
        except Exception as e:  # report and go on: later checks say what else works
            failures += 1
            print(f"FAILED: {type(e).__name__}: {e}")
            traceback.print_exc(limit=3, file=sys.stdout)
    print("All tests passed!" if not failures else f"{failures} of {len(CHECKS)} checks failed")
    return failures


@pytest.fixture(scope="module")
def context():
    return Context(DEFAULT_CONFIG)


@pytest.mark.parametrize("step", range(len(CHECKS)), ids=[name for name, _ in CHECKS])
def test_step(step, context):
    for _, check in CHECKS[:step]:  # earlier steps build what this one needs (cheap for the tiny model)
        check(context)
    CHECKS[step][1](context)


def main() -> int:
    parser = argparse.ArgumentParser(description="Check the HIPTrack-CLS multi-task architecture in six steps.")
    parser.add_argument("--config", default=DEFAULT_CONFIG, help="experiment name or YAML path")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    return 1 if run(args.config) else 0


if __name__ == "__main__":
    sys.exit(main())


def test_script_reports_failures_with_nonzero_exit(tmp_path):
    bad = tmp_path / "no_head.yaml"
    bad.write_text("MODEL:\n  HIDDEN_DIM: 64\n  BACKBONE:\n    TYPE: vit_tiny_test_ce\n"
                   "DATA:\n  SEARCH:\n    SIZE: 128\n  TEMPLATE:\n    SIZE: 64\n"
                   "TEST:\n  SEARCH_SIZE: 128\n  TEMPLATE_SIZE: 64\n")
    result = subprocess.run([sys.executable, str(Path(__file__)), "--config", str(bad)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 1
    assert "[Test 2/6] Testing config... FAILED" in result.stdout
    assert "checks failed" in result.stdout
