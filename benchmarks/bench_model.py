"""Model facts and a COMPONENT timing: the network alone on ready crops (not what users run).

Prints the parameter counts of the ViT-B HIPTrack (``--config``), the template work per tracking
frame (patch embeddings of the template and memory-encoder runs beyond the memory writes: both 0,
the constant template is encoded once per video), and the seconds of ``network.track()`` on
ready-made normalised search crops, with the bank nearly empty (2 frames) and full (``MAX_MEM``),
fp32 and bf16 (as the tracker: a copy with conv / linear weights cast once, one autocast block per
frame), timed alternately. It leaves out
cropping, normalisation and box decoding: for the per-frame time users get, and for any comparison
with the original, use ``bench_tracker.py`` (``tracker.track()`` on full frames); for the training
step, ``bench_train_step.py``. The bf16 / fp32 box agreement of the timed frames is printed too
(with random weights the score maps are nearly flat, so it is only meaningful with trained weights).

    python benchmarks/bench_model.py [--config hiptrack_got] [--frames 5] [--threads 2]
    python benchmarks/bench_model.py --config hiptrack_tiny --frames 1     # smoke run
"""
from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import torch
from torchvision.ops import box_iou

from bench_common import alternate, fill_memory, paired_ratio, print_rows
from lib.config.hiptrack import load_config, resolve_experiment_config
from lib.models.hiptrack.hiptrack import build_hiptrack
from lib.models.hiptrack.vit_ce import template_ce_mask
from lib.utils.box_ops import box_cxcywh_to_xyxy
from lib.utils.precision import autocast_weight_copy


def count_params(model: torch.nn.Module) -> dict[str, int]:
    """Parameters per top-level child and in total."""
    counts = {name: sum(p.numel() for p in child.parameters()) for name, child in model.named_children()}
    counts["total"] = sum(counts.values())
    return counts


class CallCounter:
    """Counts forward calls of a module."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.calls = 0
        module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        self.calls += 1


def crops(cfg, frames: int, seed: int = 0) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
    """A random normalised template crop, ``frames`` search crops and the template box (normalised cxcywh)."""
    g = torch.Generator().manual_seed(seed)
    t, s = cfg.DATA.TEMPLATE.SIZE, cfg.DATA.SEARCH.SIZE
    return (torch.randn(1, 3, t, t, generator=g), [torch.randn(1, 3, s, s, generator=g) for _ in range(frames)],
            torch.tensor([[0.25, 0.25, 0.5, 0.5]]))


class NetworkFrame:
    """``network.track()`` of one ready search crop with a bank of fixed size: seconds per call."""

    def __init__(self, model, cfg, precision: str, bank: int) -> None:
        self.precision = precision
        self.model = model = autocast_weight_copy(model) if precision == "bf16" else model
        template, search, box = crops(cfg, cfg.TEST.WARMUP_FRAMES + 1)
        self.search = search[-1]
        with self._autocast(), torch.no_grad():
            self.state = model.start_tracking(template, box, template_ce_mask(cfg, model.backbone.template_grid))
            for x in search[:-1]:  # the warm-up frames write the bank's first entries
                model.track(self.state, x)
        fill_memory(model, self.state, bank - len(self.state.memory))
        self.read_index = self.state.frame_index
        self.boxes: list[torch.Tensor] = []

    def _autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16) if self.precision == "bf16" else nullcontext()

    def __call__(self) -> float:
        self.state.frame_index = self.read_index  # the first frame after the warm-up: reads, writes nothing
        start = time.perf_counter()
        with self._autocast(), torch.no_grad():  # one autocast block per frame, as the tracker
            out = self.model.track(self.state, self.search)
        seconds = time.perf_counter() - start
        self.boxes.append(out["pred_boxes"].float().view(1, 4))
        return seconds


def print_template_work(model, cfg) -> None:
    """Run a short video and print the template work beyond the first frame (expected: none)."""
    patch_calls = CallCounter(model.backbone.patch_embed)
    encoder, stem_calls = model.HIP.encoder, [0]
    stem = encoder.stem

    def counting_stem(*args, **kwargs):
        stem_calls[0] += 1
        return stem(*args, **kwargs)

    encoder.stem = counting_stem  # an instance attribute shadowing the method, removed below
    frames = cfg.TEST.WARMUP_FRAMES + 3
    template, search, box = crops(cfg, frames)
    with torch.no_grad():
        state = model.start_tracking(template, box, template_ce_mask(cfg, model.backbone.template_grid))
        for x in search:
            model.track(state, x)
    del encoder.stem
    writes = sum(model.schedule.writes(i) for i in range(1, frames + 1))
    print(f"template work over {frames} frames: patch embeddings of the template beyond the first frame "
          f"{patch_calls.calls - 1 - frames}, memory-encoder stem runs beyond the memory writes "
          f"{stem_calls[0] - 1 - writes} (expected 0, 0)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="hiptrack_got", help="experiment name or YAML path (default hiptrack_got)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--frames", type=int, default=5, help="timed rounds per bank size after 1 warm-up (default 5)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(resolve_experiment_config(args.config), opts=["MODEL.PRETRAIN_FILE="])
    torch.manual_seed(0)
    model = build_hiptrack(cfg, training=False).eval()
    counts = count_params(model)
    print(f"config {args.config}: {cfg.MODEL.BACKBONE.TYPE}, template {cfg.DATA.TEMPLATE.SIZE}, "
          f"search {cfg.DATA.SEARCH.SIZE}, MAX_MEM {cfg.MODEL.MAX_MEM}, threads {args.threads}")
    print("parameters: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    print(f"trainable with the backbone frozen: {counts['total'] - counts['backbone']:,}")
    print_template_work(model, cfg)

    print("\nCOMPONENT timing: network.track() on ready crops (no crop / normalisation / decoding; "
          "users' per-frame time: bench_tracker.py)")
    for bank in sorted({2, cfg.MODEL.MAX_MEM}):
        frames = {p: NetworkFrame(model, cfg, p, bank) for p in ("fp32", "bf16")}
        samples = alternate({f"network {p}": f for p, f in frames.items()}, args.frames)
        print_rows(f"bank of {bank} frames, seconds per network frame:", list(samples.values()))
        print(f"  ratio measured in this run: {paired_ratio(samples['network bf16'], samples['network fp32'])}")
        ious = box_iou(box_cxcywh_to_xyxy(torch.cat(frames["fp32"].boxes)),
                       box_cxcywh_to_xyxy(torch.cat(frames["bf16"].boxes))).diagonal()
        print(f"  bf16 vs fp32 boxes: min IoU {ious.min():.3f}, mean {ious.mean():.3f} (random weights: see --help)")


if __name__ == "__main__":
    main()
