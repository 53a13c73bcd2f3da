"""Seconds of one real training step of HIPTrack(-CLS) on this machine's CPU, fp32 vs AMP, alternately.

One step is what the trainer does per iteration (``Trainer.train_epoch`` over a one-batch loader):
the actor's forward and its real multi-task loss, backward, gradient clipping
(``TRAIN.GRAD_CLIP_NORM``) and AdamW with the trainer's parameter groups. Batch ``--batch`` of
template + ``DATA.SEARCH.NUMBER`` search frames of random pixels, random weights.

The step runs at a stated epoch and candidate-elimination keep rate: ``--keep`` (default 0.7, the
rate of the original's recorded figure) sets ``MODEL.BACKBONE.CE_KEEP_RATIO``, and ``--epoch``
(default: the first epoch at which the schedule reaches it, ``CE_START_EPOCH + CE_WARM_EPOCH``, e.g.
100) is the epoch handed to the trainer; the keep rate the actor actually uses at that epoch is
printed (at epoch 1 it is 1.0, which alone makes a step about 20% slower).

Regimes: ``frozen`` (default) freezes the ViT as the original does (its trainable set; single
stage; for HIPTrack-CLS the classification head trains with the rest); ``config`` trains what the
config trains at that epoch (e.g. stage 2 of a two-stage schedule: everything).

fp32 and AMP (bf16 autocast on CPU, no loss scaling) share one trainer and are timed in alternating
order after one warm-up step each. With ``--original DIR`` (a checkout of github
WenRuiCai/HIPTrack) the original's fp32 step joins the rotation, run in a worker process
(``original_worker.py``) as its trainer does it: its actor and loss on a random batch of the same
sizes, backward, clipping, AdamW, backbone frozen, at the same epoch (its own CE schedule of its YAML
``--original-config``). Prints each one's median seconds with spread and the ratios of this run;
the original's training step recorded elsewhere is printed as such, never divided by.

    python benchmarks/bench_train_step.py                                  # hiptrack_got, frozen, epoch 100, keep 0.7
    python benchmarks/bench_train_step.py --original /work/original-hiptrack --precision fp32 --steps 4
    python benchmarks/bench_train_step.py --config hiptrack_cls --regime frozen config --steps 4
    python benchmarks/bench_train_step.py --config hiptrack_cls_tiny --steps 1      # smoke run
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import torch

from bench_cls_overhead import make_inputs
from bench_common import (OriginalProcess, alternate, like_for_like_warning, original_dir_problem, paired_ratio,
                          print_recorded, print_rows)
from lib.config.hiptrack import load_config, resolve_experiment_config
from lib.models import build_model
from lib.train.actors.hiptrack_cls import HIPTrackActor
from lib.train.trainable import training_stage
from lib.train.trainer import Trainer
from lib.utils.precision import cpu_has_fast_bf16
from lib.utils.runs import RunPaths

REGIME_OPTS = {"frozen": ["TRAIN.TWO_STAGE=False", "TRAIN.FREEZE_BACKBONE=True"], "config": []}
PRECISIONS = {"fp32": False, "amp": True}  # name -> Trainer.use_amp


def make_batch(cfg, batch: int) -> dict[str, torch.Tensor]:
    """A loader batch (batch-first, one template) of random images, boxes near the crop centre and labels."""
    template, search, template_box, _ = make_inputs(cfg, batch, cfg.DATA.SEARCH.NUMBER)
    frames = cfg.DATA.SEARCH.NUMBER
    search_box = torch.tensor([0.4, 0.4, 0.2, 0.2]).repeat(batch, frames, 1)
    labels = torch.arange(batch * frames).view(batch, frames) % cfg.MODEL.CLS_HEAD.NUM_CLASSES
    return {"template_images": template[:, None], "template_anno": template_box[:, None],
            "search_images": torch.stack(search, 1), "search_anno": search_box,
            "search_visible": torch.ones(batch, frames, dtype=torch.bool), "search_cls_label": labels}


def default_epoch(cfg) -> int:
    """The first epoch at which the CE schedule reaches ``CE_KEEP_RATIO``."""
    return max(1, cfg.TRAIN.CE_START_EPOCH + cfg.TRAIN.CE_WARM_EPOCH)


class TrainerStep:
    """Times ``Trainer.train_epoch`` over a one-batch loader at a fixed epoch: one real training step per call."""

    def __init__(self, cfg, batch: int, epoch: int, save_dir: Path) -> None:
        torch.manual_seed(0)
        model = build_model(cfg, training=True)
        self.actor = HIPTrackActor(model, cfg)
        self.trainer = Trainer(cfg, model, self.actor, [make_batch(cfg, batch)], None,
                               RunPaths(save_dir, "bench_train_step"), torch.device("cpu"))
        self.epoch = epoch
        self.trainer._enter_stage(training_stage(cfg, epoch), epoch)

    def trainable(self) -> tuple[int, int]:
        params = list(self.trainer.model.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    def timed(self, amp: bool):
        """A contestant for :func:`bench_common.alternate`: one step with or without AMP."""
        def step() -> float:
            self.trainer.use_amp = amp
            start = time.perf_counter()
            self.trainer.train_epoch(self.epoch)
            return time.perf_counter() - start
        return step


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", nargs="+", default=["hiptrack_got"],
                        help="experiment names or YAML paths (default hiptrack_got)")
    parser.add_argument("--regime", nargs="+", default=["frozen"], choices=sorted(REGIME_OPTS),
                        help="trainable set (default frozen: the original's)")
    parser.add_argument("--epoch", type=int, default=None,
                        help="epoch of the step (default CE_START_EPOCH + CE_WARM_EPOCH: the keep rate reached)")
    parser.add_argument("--keep", type=float, default=0.7,
                        help="MODEL.BACKBONE.CE_KEEP_RATIO of every CE block (default 0.7; 0 keeps the config's)")
    parser.add_argument("--precision", nargs="+", choices=sorted(PRECISIONS), default=["fp32", "amp"],
                        help="fp32 and / or amp (bf16 autocast), alternated (default both)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per precision after one warm-up (default 4)")
    parser.add_argument("--batch", type=int, default=1, help="batch size (default 1, as the recorded figure)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="further config overrides")
    parser.add_argument("--original", type=Path, default=None,
                        help="a checkout of the original HIPTrack (github WenRuiCai/HIPTrack): time its step too")
    parser.add_argument("--original-config", default="hiptrack_got",
                        help="the original's experiment YAML name (default hiptrack_got)")
    parser.add_argument("--verbose", action="store_true", help="print every timed step")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch < 1 or not 0 <= args.keep <= 1:
        parser.error("--steps and --batch must be >= 1 and --keep in [0, 1]")
    if problem := original_dir_problem(args.original):
        parser.error(problem)
    return args


def step_config(name: str, regime: str, args: argparse.Namespace):
    """The config of one measurement: random weights, the regime's trainable set, the keep rate."""
    opts = ["MODEL.PRETRAIN_FILE=", *REGIME_OPTS[regime], *args.opts]
    cfg = load_config(resolve_experiment_config(name), opts=opts)
    if args.keep and cfg.MODEL.BACKBONE.CE_LOC:
        ratios = "[" + ",".join([str(args.keep)] * len(cfg.MODEL.BACKBONE.CE_LOC)) + "]"
        cfg = load_config(resolve_experiment_config(name), opts=[*opts, f"MODEL.BACKBONE.CE_KEEP_RATIO={ratios}"])
    return cfg


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    print(f"one Trainer.train_epoch step over a one-batch loader: threads {args.threads}, batch {args.batch}, random "
          f"weights, {args.steps} timed steps per precision after 1 warm-up each, alternating; native bf16 kernels "
          f"on this CPU: {'yes' if cpu_has_fast_bf16() else 'no (bf16 conv / matmul fall back to slow paths)'}")
    original = OriginalProcess(args.original.resolve(), args.original_config, args.threads) if args.original else None
    try:
        with tempfile.TemporaryDirectory() as tmp:  # the trainer's run folder (nothing is written by a step)
            for name in args.config:
                for regime in args.regime:
                    measure(name, regime, args, Path(tmp), original)
    finally:
        if original is not None:
            original.close()
    print()
    print_recorded("train_step")


def measure(name: str, regime: str, args: argparse.Namespace, tmp: Path, original: OriginalProcess | None) -> None:
    """Time and report one config / regime (and the original's step, when given) alternately."""
    cfg = step_config(name, regime, args)
    epoch = args.epoch or default_epoch(cfg)
    step = TrainerStep(cfg, args.batch, epoch, tmp / f"{name}-{regime}")
    n_train, n_total = step.trainable()
    keep = step.actor.keep_rate(epoch)
    print(f"\n{name}, {regime}: {cfg.MODEL.BACKBONE.TYPE}, template {cfg.DATA.TEMPLATE.SIZE}, search "
          f"{cfg.DATA.SEARCH.SIZE}, {cfg.DATA.SEARCH.NUMBER} search frames, epoch {epoch}, CE keep rate "
          f"{'none (no CE blocks)' if keep is None else f'{keep:.3f}'}, grad clip "
          f"{cfg.TRAIN.GRAD_CLIP_NORM}, trainable {n_train:,} / {n_total:,} parameters", flush=True)
    contestants = {p: step.timed(PRECISIONS[p]) for p in args.precision}
    if original is not None:
        original.set_train(epoch, args.batch)
        contestants["original fp32"] = original.step
        print(f"  original: {args.original} ({args.original_config}.yaml), fp32, backbone frozen, epoch "
              f"{epoch}, in a worker process", flush=True)
        if warning := like_for_like_warning(cfg, args.original.resolve(), args.original_config):
            print(f"  WARNING: {warning}")
    samples = alternate(contestants, args.steps, log=print if args.verbose else None)
    print_rows("  seconds per training step:", list(samples.values()))
    lines = []
    if "fp32" in samples and "amp" in samples:
        lines.append(paired_ratio(samples["amp"], samples["fp32"]))
    if original is not None:
        lines += [paired_ratio(samples[p], samples["original fp32"]) for p in args.precision]
    for line in lines:
        print(f"  ratio measured in this run: {line}")


if __name__ == "__main__":
    main()
