"""Speed of one training step of the ViT-B HIPTrack(-CLS) on this machine's CPU, fp32 vs AMP.

One step is what the trainer does per iteration (``Trainer.train_epoch`` over a one-batch
loader): the actor's forward and multi-task loss, backward, gradient clipping and AdamW. Batch 1,
template + ``DATA.SEARCH.NUMBER`` (5) search frames, random weights. fp32 and AMP (bf16 autocast
on CPU, no loss scaling) share one model and alternate (fp32, AMP, AMP, fp32, ...) so that drift
of this noisy machine hits both equally. Prints the medians, the AMP / fp32 ratio of this run and
both against the original implementation's training step measured on a machine of this kind
(6.3-6.9 s, backbone frozen). Targets: fp32 <= 0.95x, AMP <= 0.5x the original.

Regimes: ``frozen`` (default) freezes the ViT as the original does (single stage; for HIPTrack-CLS
the classification head trains with the rest); ``config`` trains what the config's main phase
trains (stage 2 of a two-stage schedule: everything).

    python benchmarks/bench_train_step.py [--config hiptrack_cls hiptrack] [--steps 4] [--threads 2]
"""
from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import torch

from bench_cls_overhead import make_inputs
from bench_model import ORIGINAL_TRAIN_STEP_S
from lib.config.hiptrack import load_config, resolve_experiment_config
from lib.models import build_model
from lib.train.actors.hiptrack_cls import HIPTrackActor
from lib.train.trainable import stage_first_epoch, training_stage
from lib.train.trainer import Trainer, cpu_has_fast_bf16
from lib.utils.runs import RunPaths

TARGET_FP32, TARGET_AMP = 0.95, 0.5
REGIME_OPTS = {"frozen": ["TRAIN.TWO_STAGE=False", "TRAIN.FREEZE_BACKBONE=True"], "config": []}


def make_batch(cfg, batch: int) -> dict[str, torch.Tensor]:
    """A loader batch (batch-first, one template) of random images, boxes near the crop centre and labels."""
    template, search, template_box, _ = make_inputs(cfg, batch, cfg.DATA.SEARCH.NUMBER)
    frames = cfg.DATA.SEARCH.NUMBER
    search_box = torch.tensor([0.4, 0.4, 0.2, 0.2]).repeat(batch, frames, 1)
    labels = torch.arange(batch * frames).view(batch, frames) % cfg.MODEL.CLS_HEAD.NUM_CLASSES
    return {"template_images": template[:, None], "template_anno": template_box[:, None],
            "search_images": torch.stack(search, 1), "search_anno": search_box,
            "search_visible": torch.ones(batch, frames, dtype=torch.bool), "search_cls_label": labels}


class TrainerStep:
    """Times ``Trainer.train_epoch`` over a one-batch loader: one real training step per call."""

    def __init__(self, cfg, batch: int, save_dir: Path) -> None:
        torch.manual_seed(0)
        model = build_model(cfg, training=True)
        paths = RunPaths(save_dir, "bench_train_step")
        self.trainer = Trainer(cfg, model, HIPTrackActor(model, cfg), [make_batch(cfg, batch)], None, paths,
                               torch.device("cpu"))
        # the main phase: stage 2 of a two-stage schedule, else the single stage
        self.epoch = stage_first_epoch(cfg, 2) if cfg.TRAIN.TWO_STAGE else 1
        self.trainer._enter_stage(training_stage(cfg, self.epoch), self.epoch)

    def trainable(self) -> tuple[int, int]:
        params = list(self.trainer.model.parameters())
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    def __call__(self, amp: bool) -> float:
        self.trainer.use_amp = amp
        start = time.perf_counter()
        self.trainer.train_epoch(self.epoch)
        return time.perf_counter() - start

    def close(self) -> None:
        for writer in self.trainer.writers.values():
            writer.close()


def alternate(step: TrainerStep, repeats: int) -> tuple[list[float], list[float]]:
    """fp32 and AMP step times, after one warm-up step each, alternating which runs first."""
    for use_amp in (False, True):
        print(f"    warm-up {'AMP' if use_amp else 'fp32'}: {step(use_amp):.2f} s", flush=True)
    fp32, amp = [], []
    for i in range(repeats):
        for use_amp in ((False, True) if i % 2 == 0 else (True, False)):
            (amp if use_amp else fp32).append(step(use_amp))
            print(f"    step {i + 1} {'AMP' if use_amp else 'fp32'}: {(amp if use_amp else fp32)[-1]:.2f} s", flush=True)
    return fp32, amp


def report(name: str, fp32: list[float], amp: list[float]) -> None:
    """Print medians, the in-run ratio and the ratios against the original's step."""
    ref_lo, ref_hi = ORIGINAL_TRAIN_STEP_S
    a, b = statistics.median(fp32), statistics.median(amp)
    ratios = statistics.median(y / x for x, y in zip(fp32, amp))
    print(f"  {name}: fp32 {a:.2f} s (all: {', '.join(f'{t:.2f}' for t in fp32)}), "
          f"AMP bf16 {b:.2f} s (all: {', '.join(f'{t:.2f}' for t in amp)})")
    print(f"    AMP / fp32 in this run (median of pairs): {ratios:.2f}x")
    for label, sec, target in (("fp32", a, TARGET_FP32), ("AMP", b, TARGET_AMP)):
        verdict = "met" if sec / ref_lo <= target else "not met"
        print(f"    {label} vs the original's {ref_lo}-{ref_hi} s: {sec / ref_hi:.2f}-{sec / ref_lo:.2f}x "
              f"(target <= {target}x of the faster original: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", nargs="+", default=["hiptrack_cls"], help="experiment names or YAML paths")
    parser.add_argument("--regime", nargs="+", default=["frozen"], choices=sorted(REGIME_OPTS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per precision after one warm-up each")
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    print(f"threads {args.threads}, batch {args.batch}, random weights, {args.steps} timed steps per precision; "
          f"native bf16 kernels on this CPU: {'yes' if cpu_has_fast_bf16() else 'no (bf16 conv / matmul fall back to slow paths)'}")
    with tempfile.TemporaryDirectory() as tmp:  # the trainer's TensorBoard folders
        for name in args.config:
            for regime in args.regime:
                opts = ["MODEL.PRETRAIN_FILE=", *REGIME_OPTS[regime]]
                cfg = load_config(resolve_experiment_config(name), opts=opts)
                step = TrainerStep(cfg, args.batch, Path(tmp) / f"{name}-{regime}")
                n_train, n_total = step.trainable()
                print(f"\n{name}, {regime}: {cfg.MODEL.BACKBONE.TYPE}, template {cfg.DATA.TEMPLATE.SIZE}, search "
                      f"{cfg.DATA.SEARCH.SIZE}, {cfg.DATA.SEARCH.NUMBER} search frames, trainable {n_train:,} / "
                      f"{n_total:,} parameters", flush=True)
                fp32, amp = alternate(step, args.steps)
                step.close()
                report("median step", fp32, amp)


if __name__ == "__main__":
    main()
