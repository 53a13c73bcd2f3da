"""Cost of the classification head: training step and tracking frame, with vs without it.

Builds HIPTrack-CLS and plain HIPTrack from the same config and weights and alternates their
measurements (A, B, A, B, ...) so that drift of this noisy machine hits both equally; prints the
median of the paired ratios of this run. Targets: training step <= 1.03x; tracking frame <= 1.00x
(the head does not run when tracking).

Both are COMPONENT timings for this one comparison: the step is the model's forward, a stand-in box
loss plus the real classification loss, backward and AdamW (no clipping, not the trainer: for the
trainer's real step use ``bench_train_step.py``), and the frame is ``network.track()`` on a ready
crop (for ``tracker.track()`` on full frames, plain vs cls trackers, use ``bench_tracker.py
--variants plain cls cls+pred``).

    python benchmarks/bench_cls_overhead.py [--config hiptrack_cls] [--steps 6] [--frames 8] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from lib.config.hiptrack import load_config, resolve_experiment_config
from lib.models.hiptrack.hiptrack import build_hiptrack
from lib.models.hiptrack.hiptrack_cls import build_hiptrack_cls
from lib.models.hiptrack.vit_ce import template_ce_mask
from lib.train.trainable import set_trainable
from lib.utils.cls_loss import build_cls_loss


def make_inputs(cfg, batch: int, frames: int):
    g = torch.Generator().manual_seed(0)
    t, s = cfg.DATA.TEMPLATE.SIZE, cfg.DATA.SEARCH.SIZE
    return (torch.randn(batch, 3, t, t, generator=g), [torch.randn(batch, 3, s, s, generator=g) for _ in range(frames)],
            torch.tensor([[0.25, 0.25, 0.5, 0.5]]).repeat(batch, 1),
            template_ce_mask(cfg, t // cfg.MODEL.BACKBONE.STRIDE, batch))


class TrainStep:
    """One optimisation step of a model on fixed inputs (a stand-in box loss + the real cls loss)."""

    def __init__(self, model, cfg, epoch: int, batch: int):
        self.model, self.cfg = model.train(), cfg
        set_trainable(model, cfg, epoch)
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        self.inputs = make_inputs(cfg, batch, cfg.DATA.SEARCH.NUMBER)
        self.labels = torch.arange(batch) % cfg.MODEL.CLS_HEAD.NUM_CLASSES
        self.cls_loss = build_cls_loss(cfg)
        self.with_challenges = model.has_challenge_head  # as the actor: logits whenever there is a head

    def __call__(self) -> float:
        start = time.perf_counter()
        outs = self.model(*self.inputs, with_challenges=self.with_challenges)
        loss = sum(o["score_map"].mean() + o["pred_boxes"].abs().mean() for o in outs)
        if self.with_challenges:
            loss = loss + self.cfg.TRAIN.CLS_WEIGHT * sum(self.cls_loss(o["cls_logits"], self.labels) for o in outs)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return time.perf_counter() - start


class TrackFrame:
    """Tracking frames after the memory warm-up."""

    def __init__(self, model, cfg):
        self.model = model.eval()
        template, search, box, mask = make_inputs(cfg, 1, cfg.TEST.WARMUP_FRAMES + 1)
        self.search = search[-1]
        self.state = model.start_tracking(template, box, mask)
        for x in search[:-1]:
            model.track(self.state, x)

    def __call__(self) -> float:
        start = time.perf_counter()
        self.model.track(self.state, self.search)
        return time.perf_counter() - start


def paired_ratio(with_head, without_head, repeats: int) -> tuple[float, float, float]:
    """Median time with, without, and median of paired ratios (after one warm-up call each).

    Which of the two runs first alternates from pair to pair, so order effects cancel.
    """
    with_head(), without_head()
    a, b = [], []
    for i in range(repeats):
        if i % 2:
            b.append(without_head())
            a.append(with_head())
        else:
            a.append(with_head())
            b.append(without_head())
    return statistics.median(a), statistics.median(b), statistics.median(x / y for x, y in zip(a, b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="hiptrack_cls", help="HIPTrack-CLS experiment name or YAML path")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6, help="paired training steps")
    parser.add_argument("--frames", type=int, default=8, help="paired tracking frames")
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(resolve_experiment_config(args.config), opts=["MODEL.PRETRAIN_FILE="])
    if not cfg.MODEL.CLS_HEAD.ENABLED:
        parser.error(f"{args.config} has MODEL.CLS_HEAD.ENABLED False")
    # the main regime: stage 2 of a two-stage schedule (everything the config trains)
    epoch = cfg.TRAIN.STAGE1_EPOCHS + 1 if cfg.TRAIN.TWO_STAGE else 1
    torch.manual_seed(0)
    cls_model = build_hiptrack_cls(cfg, training=True)
    plain = build_hiptrack(cfg, training=True)
    plain.load_state_dict({k: v for k, v in cls_model.state_dict().items() if not k.startswith("cls_head.")})
    print(f"config {args.config}: {cfg.MODEL.BACKBONE.TYPE}, backbone "
          f"{'frozen' if cfg.TRAIN.FREEZE_BACKBONE and not cfg.TRAIN.TWO_STAGE else 'trained'}, "
          f"fusion {cfg.MODEL.CLS_HEAD.FUSION}, batch {args.batch}, {cfg.DATA.SEARCH.NUMBER} search frames, "
          f"threads {args.threads}")

    a, b, r = paired_ratio(TrainStep(cls_model, cfg, epoch, args.batch), TrainStep(plain, cfg, epoch, args.batch),
                           args.steps)
    print(f"training step: with head {a:.3f} s, without {b:.3f} s, ratio {r:.3f} (target <= 1.03)")
    a, b, r = paired_ratio(TrackFrame(cls_model, cfg), TrackFrame(plain, cfg), args.frames)
    print(f"tracking frame: with head {a:.3f} s, without {b:.3f} s, ratio {r:.3f} (target <= 1.00)")


if __name__ == "__main__":
    main()
