"""Speed of the ViT-B HIPTrack model on this machine's CPU.

Prints parameter counts, the median time of one training step (batch 1, template + 5 search
frames, forward + backward + AdamW, backbone frozen as upstream) and of one tracking frame with
the memory bank nearly empty (frames 5 and 10 only) and full (MAX_MEM frames), in fp32 and in a
bf16 autocast inference mode, then ratios measured within this run and against the original
implementation's figures measured on a machine of this kind (0.93 s per frame; 1.9-2.6 s with a
full bank; training step 6.3-6.9 s).

Random weights: timings do not depend on the weights. The bf16/fp32 box agreement is measured
too, but note that random weights give nearly flat score maps, so a precision change moves the
peak far more easily than with trained weights.

    python benchmarks/bench_model.py [--threads 2] [--frames 7] [--config hiptrack_got]
"""
from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch

from lib.config.hiptrack import load_config, resolve_experiment_config
from lib.models.hiptrack.hiptrack import build_hiptrack
from lib.models.hiptrack.vit_ce import template_ce_mask
from lib.utils.box_ops import box_cxcywh_to_xyxy
from torchvision.ops import box_iou

ORIGINAL_FRAME_S = 0.93
ORIGINAL_FULL_BANK_S = (1.9, 2.6)
ORIGINAL_TRAIN_STEP_S = (6.3, 6.9)


def count_params(model: torch.nn.Module) -> dict[str, int]:
    counts = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    counts["total"] = sum(counts.values())
    return counts


class CallCounter:
    """Counts forward calls of a module and the images it saw."""

    def __init__(self, module: torch.nn.Module):
        self.calls = 0
        module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output):
        self.calls += 1


def inputs(cfg, frames: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    t, s = cfg.DATA.TEMPLATE.SIZE, cfg.DATA.SEARCH.SIZE
    template = torch.randn(1, 3, t, t, generator=g)
    search = [torch.randn(1, 3, s, s, generator=g) for _ in range(frames)]
    box = torch.tensor([[0.25, 0.25, 0.5, 0.5]])
    return template, search, box


def fill_memory(model, state, frames: int) -> None:
    """Write ``frames`` memory entries of the right shape and dtype (contents do not affect timing)."""
    grid = model.search_grid
    key_dim = model.key_proj.key_proj.out_channels
    value_dim = model.key_comp.out_channels
    dtype = state.memory.tensors()[0].dtype  # what the model itself wrote (bf16 under autocast)
    for _ in range(frames):
        state.memory.write(torch.randn(1, key_dim, grid, grid, dtype=dtype),
                           torch.randn(1, value_dim, grid, grid, dtype=dtype))


def time_tracking(model, cfg, precision: str, full: bool, frames: int) -> tuple[float, torch.Tensor]:
    """Median seconds per steady-state frame (after warm-up); also returns the timed frames' boxes."""
    template, search, box = inputs(cfg, cfg.TEST.WARMUP_FRAMES + frames)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
    times, boxes = [], []
    with autocast:
        mask = template_ce_mask(cfg, model.backbone.template_grid)
        state = model.start_tracking(template, box, mask)
        for x in search[:cfg.TEST.WARMUP_FRAMES]:
            model.track(state, x)
        if full:
            fill_memory(model, state, cfg.MODEL.MAX_MEM)
        for x in search[cfg.TEST.WARMUP_FRAMES:]:
            start = time.perf_counter()
            out = model.track(state, x)
            times.append(time.perf_counter() - start)
            boxes.append(out["pred_boxes"].float().view(1, 4))
    return statistics.median(times), torch.cat(boxes)


def time_train_step(cfg, steps: int) -> float:
    torch.manual_seed(0)
    model = build_hiptrack(cfg, training=True).train()
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    template, search, box = inputs(cfg, cfg.DATA.SEARCH.NUMBER)
    mask = template_ce_mask(cfg, model.backbone.template_grid)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        outs = model(template, search, box, mask)
        loss = sum(o["score_map"].mean() + o["pred_boxes"].abs().mean() for o in outs)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="hiptrack_got", help="experiment name or YAML path")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=7, help="timed tracking frames per setting")
    parser.add_argument("--train-steps", type=int, default=2,
                        help="timed training steps after one warm-up (0: skip the training step)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(resolve_experiment_config(args.config), opts=["MODEL.PRETRAIN_FILE="])

    torch.manual_seed(0)
    model = build_hiptrack(cfg, training=False).eval()
    counts = count_params(model)
    print(f"config {args.config}: {cfg.MODEL.BACKBONE.TYPE}, template {cfg.DATA.TEMPLATE.SIZE}, "
          f"search {cfg.DATA.SEARCH.SIZE}, MAX_MEM {cfg.MODEL.MAX_MEM}, threads {args.threads}")
    print("parameters: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    trainable = counts["total"] - counts["backbone"]
    print(f"trainable with the backbone frozen: {trainable:,}")

    patch_calls = CallCounter(model.backbone.patch_embed)
    stem_calls = {"n": 0}
    stem = model.HIP.encoder.stem

    def counting_stem(*a, **k):
        stem_calls["n"] += 1
        return stem(*a, **k)

    model.HIP.encoder.stem = counting_stem
    results = {}
    for precision in ("fp32", "bf16"):
        for full in (False, True):
            results[precision, full] = time_tracking(model, cfg, precision, full, args.frames)
    tracked_frames = 4 * (cfg.TEST.WARMUP_FRAMES + args.frames)
    writes = sum(model.schedule.writes(i) for i in range(1, cfg.TEST.WARMUP_FRAMES + args.frames + 1)) * 4
    print(f"template work per frame: patch embeddings {patch_calls.calls - 4 - tracked_frames} of the template, "
          f"memory-encoder stem runs {stem_calls['n'] - 4 - writes} beyond memory writes "
          f"(0 and 0: the constant template is encoded once per video)")

    print("\ntracking, median seconds per frame after warm-up:")
    for (precision, full), (sec, _) in results.items():
        bank = f"full bank ({cfg.MODEL.MAX_MEM})" if full else "bank of 2 "
        ref = ORIGINAL_FULL_BANK_S[0] if full else ORIGINAL_FRAME_S
        print(f"  {precision} {bank}: {sec:.3f} s  ({sec / ref:.2f}x the original's {ref} s)")
    fp32_empty, fp32_full = results["fp32", False][0], results["fp32", True][0]
    bf16_empty, bf16_full = results["bf16", False][0], results["bf16", True][0]
    print("\nratios measured in this run:")
    print(f"  full / empty bank: fp32 {fp32_full / fp32_empty:.2f}x, bf16 {bf16_full / bf16_empty:.2f}x (target <= 1.1)")
    print(f"  bf16 / fp32: {bf16_empty / fp32_empty:.2f}x (empty), {bf16_full / fp32_full:.2f}x (full)")
    print(f"  bf16 vs the original's fp32 frame: {bf16_empty / ORIGINAL_FRAME_S:.2f}x (target <= 0.3); "
          f"fp32: {fp32_empty / ORIGINAL_FRAME_S:.2f}x (target <= 0.85)")
    for full in (False, True):
        a = box_cxcywh_to_xyxy(results["fp32", full][1])
        b = box_cxcywh_to_xyxy(results["bf16", full][1])
        ious = box_iou(a, b).diagonal()
        print(f"  bf16 vs fp32 boxes ({'full' if full else 'empty'} bank): min IoU {ious.min():.3f}, "
              f"mean {ious.mean():.3f} (target >= 0.98)")

    if args.train_steps < 1:
        return
    step = time_train_step(cfg, args.train_steps)
    print(f"\ntraining step, batch 1, {cfg.DATA.SEARCH.NUMBER} search frames, backbone frozen: {step:.2f} s "
          f"({step / ORIGINAL_TRAIN_STEP_S[0]:.2f}x the original's {ORIGINAL_TRAIN_STEP_S[0]}-{ORIGINAL_TRAIN_STEP_S[1]} s)")


if __name__ == "__main__":
    main()
