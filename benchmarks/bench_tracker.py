"""Seconds per frame of ``tracker.track()`` on a full frame, fp32 and bf16, by memory-bank size.

What users run: ``tracker.track()`` on a full 640x480 RGB frame (crop, normalisation, network with
the video's memory, Hann window, box decoding), each bf16 frame exactly as the tracker does it
(``TEST.PRECISION=bf16``: one autocast block per frame). Random weights (timings do not depend on
them). For each bank size (``--banks``, default 2 50 100 150 frames: one real write, then random
entries of the same shape and dtype), every timed call is the first frame after the warm-up, so it
reads the bank and writes nothing: the bank stays at its size.

Contestants: ``--variants`` (``plain``: HIPTrackTracker on ``--config``; ``cls``: HIPTrackCLSTracker
on ``--cls-config`` without challenge predictions; ``cls+pred``: the same with predictions, the head
run) times ``--precision`` (fp32, bf16), all sharing one set of weights; with ``--original DIR``
also the ORIGINAL HIPTrack's tracker (a checkout of github WenRuiCai/HIPTrack, fp32, its YAML
``--original-config``) on the same frame, box and bank size, run in a worker process
(``original_worker.py``). With ``--floor`` also "ours ... kernels alone" for each of ours: the matrix
products, convolutions and attention kernels of its frame run again alone, back to back, on random
inputs of the same shapes and dtypes (a bf16 frame's under bf16 autocast; ``bench_common.KernelFloor``;
the memory read-out's products are not included): what our frame would take if everything else cost
nothing, so its ratio to the original says how far any implementation with these kernels could go.
The floor's inputs share the caches with the other contestants and change their times: read our
frame's own ratio to the original from a run without ``--floor``. They are timed in rounds, one call
each per round, the first rotating.

``--ab-opts TEST.KEY=VALUE ...`` adds each of ours built with those test-time overrides (same
network), e.g. ``TEST.PACKED_LINEAR=False``: an A/B of a setting in the same rounds.

Prints, per bank: each contestant's median seconds with min / IQR / max; the paired ratios of this
run (each contestant against the first, each of ours against itself with ``--ab-opts``, and ours
against the original); then the growth of each contestant's median with the bank. The original's
figures recorded on other machines are printed last, labelled as such and never divided by.

    python benchmarks/bench_tracker.py                                   # fp32 vs bf16, banks 2 50 100 150
    python benchmarks/bench_tracker.py --original /work/original-hiptrack --banks 2 150
    python benchmarks/bench_tracker.py --variants plain cls cls+pred --precision fp32
    python benchmarks/bench_tracker.py --original /work/original-hiptrack --banks 2 --precision fp32 --floor
    python benchmarks/bench_tracker.py --banks 2 150 --ab-opts TEST.PACKED_LINEAR=False
    python benchmarks/bench_tracker.py --config hiptrack_tiny --banks 2 --frames 1   # smoke run
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bench_common import (KernelFloor, OriginalProcess, Samples, alternate, fill_memory, like_for_like_warning,
                          original_dir_problem, paired_ratio, print_recorded, print_rows)
from lib.config.hiptrack import load_config, resolve_experiment_config
from lib.models import build_model
from lib.test.tracker import HIPTrackCLSTracker, HIPTrackTracker

INIT_BOX = [280.0, 200.0, 80.0, 60.0]  # the same in original_worker.py
VARIANTS = ("plain", "cls", "cls+pred")


class TimedFrame:
    """One ``track()`` call on a fixed frame with a bank of fixed size; returns its seconds."""

    def __init__(self, tracker: HIPTrackTracker, image: np.ndarray, bank: int) -> None:
        self.tracker, self.image = tracker, image
        cfg = tracker.cfg
        tracker.initialize(image, {"init_bbox": INIT_BOX})
        state = tracker.video_state
        state.frame_index = cfg.TEST.WARMUP_WRITE_FRAMES[0] - 1
        tracker.track(image)  # one real write: the bank's first entry, with the model's dtype
        fill_memory(tracker.network, state, bank - 1)
        self.read_index = cfg.TEST.WARMUP_FRAMES  # next call is the first frame reading the bank
        if len(state.memory) != bank:
            raise RuntimeError(f"bank holds {len(state.memory)} frames, expected {bank} (MODEL.MAX_MEM too small?)")

    def __call__(self) -> float:
        self.tracker.video_state.frame_index = self.read_index
        self.tracker.prev_box_xywh = list(INIT_BOX)
        start = time.perf_counter()
        self.tracker.track(self.image)
        return time.perf_counter() - start


def build_trackers(args: argparse.Namespace) -> dict[str, HIPTrackTracker]:
    """``"<variant> <precision>"`` -> tracker, and with ``--ab-opts`` also ``"<variant> <precision> [<opts>]"``
    built with those test-time overrides; all share one set of random weights."""
    opts = ["MODEL.PRETRAIN_FILE=", f"MODEL.MAX_MEM={max(args.banks)}", *args.opts]
    settings = {"": opts}
    if args.ab_opts:
        settings[f" [{' '.join(args.ab_opts)}]"] = [*opts, *args.ab_opts]
    plain_cfgs = {tag: load_config(resolve_experiment_config(args.config), opts=[*o, "MODEL.CLS_HEAD.ENABLED=False"])
                  for tag, o in settings.items()}
    torch.manual_seed(0)
    plain_net = build_model(plain_cfgs[""], training=False)
    cls_net, cls_cfgs = None, {}
    if {"cls", "cls+pred"} & set(args.variants):
        cls_cfgs = {tag: load_config(resolve_experiment_config(args.cls_config), opts=o) for tag, o in settings.items()}
        torch.manual_seed(0)
        cls_net = build_model(cls_cfgs[""], training=False)
        plain_net.load_state_dict({k: v for k, v in cls_net.state_dict().items() if not k.startswith("cls_head.")})
    makers: dict[str, Callable[[str, str], HIPTrackTracker]] = {
        "plain": lambda p, tag: HIPTrackTracker(plain_net, plain_cfgs[tag], precision=p),
        "cls": lambda p, tag: HIPTrackCLSTracker(cls_net, cls_cfgs[tag], predict_challenges=False, precision=p),
        "cls+pred": lambda p, tag: HIPTrackCLSTracker(cls_net, cls_cfgs[tag], predict_challenges=True, precision=p),
    }
    return {f"{v} {p}{tag}": makers[v](p, tag) for v in args.variants for p in args.precision for tag in settings}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="hiptrack_got",
                        help="config of the plain tracker: experiment name or YAML path (default hiptrack_got)")
    parser.add_argument("--cls-config", default="hiptrack_cls",
                        help="config of the cls variants (default hiptrack_cls)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=["plain"],
                        help="our trackers to time (default plain)")
    parser.add_argument("--precision", nargs="+", choices=("fp32", "bf16"), default=["fp32", "bf16"],
                        help="TEST.PRECISION of our trackers (default fp32 bf16)")
    parser.add_argument("--banks", type=int, nargs="+", default=[2, 50, 100, 150],
                        help="memory bank sizes in frames (default 2 50 100 150)")
    parser.add_argument("--frames", type=int, default=5, help="timed rounds per bank, after one warm-up (default 5)")
    parser.add_argument("--frame-size", default="640x480", help="WIDTHxHEIGHT of the frame (default 640x480)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads, also of the original (default 2)")
    parser.add_argument("--original", type=Path, default=None,
                        help="a checkout of the original HIPTrack (github WenRuiCai/HIPTrack): time its tracker too")
    parser.add_argument("--original-config", default="hiptrack_got",
                        help="the original's experiment YAML name (default hiptrack_got)")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides for ours")
    parser.add_argument("--ab-opts", nargs="+", default=[], metavar="TEST.KEY=VALUE",
                        help="also time each of ours built with these test-time overrides (an A/B in the same rounds)")
    parser.add_argument("--floor", action="store_true",
                        help="also time the kernels of each of our frames run alone (the floor of the same kernels)")
    parser.add_argument("--verbose", action="store_true", help="print every timed call")
    args = parser.parse_args(argv)
    if min(args.banks) < 1 or args.frames < 1:
        parser.error("--banks and --frames must be >= 1")
    if problem := original_dir_problem(args.original):
        parser.error(problem)
    if not_test := [o for o in args.ab_opts if not o.startswith("TEST.")]:
        parser.error(f"--ab-opts {' '.join(not_test)}: only TEST.* settings (the trackers share one network)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.frame_size.lower().split("x"))
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    trackers = build_trackers(args)
    cfg = next(iter(trackers.values())).cfg
    print(f"tracker.track() on a {width}x{height} frame: config {args.config} ({cfg.MODEL.BACKBONE.TYPE}, search "
          f"{cfg.TEST.SEARCH_SIZE}, template {cfg.TEST.TEMPLATE_SIZE}), random weights, threads {args.threads}, "
          f"{args.frames} rounds per bank after 1 warm-up; each bf16 frame in its own autocast block as the tracker")
    original = OriginalProcess(args.original.resolve(), args.original_config, args.threads) if args.original else None
    if original is not None:
        print(f"original: {args.original} ({args.original_config}.yaml), fp32, in a worker process")
        if warning := like_for_like_warning(cfg, args.original.resolve(), args.original_config):
            print(f"WARNING: {warning}")
    log = print if args.verbose else None
    medians: dict[str, dict[int, float]] = {}
    try:
        for bank in args.banks:
            contestants: dict[str, Callable[[], float]] = {
                f"ours {name}": TimedFrame(tracker, image, bank) for name, tracker in trackers.items()}
            if args.floor:
                for name, tracker in trackers.items():
                    frame = contestants[f"ours {name}"]
                    contestants[f"ours {name} kernels alone"] = KernelFloor.of_tracker(tracker, frame)
            if original is not None:
                original.set_bank(bank)
                contestants["original fp32"] = original.frame
            samples = alternate(contestants, args.frames, log=log)
            report_bank(bank, list(samples.values()))
            for name, s in samples.items():
                medians.setdefault(name, {})[bank] = s.median
    finally:
        if original is not None:
            original.close()
    report_growth(medians, args.banks)
    print()
    print_recorded("tracker")


def report_bank(bank: int, samples: list[Samples]) -> None:
    """Absolute times of one bank size and the ratios measured in this run."""
    print()
    print_rows(f"bank of {bank} frames, seconds per track():", samples)
    ours = [s for s in samples if s.name.startswith("ours")]
    originals = [s for s in samples if s.name.startswith("original")]
    by_name = {s.name: s for s in samples}
    lines = [paired_ratio(s, ours[0]) for s in ours[1:]]
    # --ab-opts: each tracker with the overrides against the same tracker without them
    lines += [paired_ratio(by_name[s.name.split(" [")[0]], s) for s in ours if s.name.endswith("]")]
    lines += [paired_ratio(s, o) for o in originals for s in ours]
    if lines:
        print("  ratios measured in this run:")
        for line in lines:
            print(f"    {line}")


def report_growth(medians: dict[str, dict[int, float]], banks: list[int]) -> None:
    """Each contestant's median per bank and its ratio to the first bank (all from this run)."""
    if len(banks) < 2:
        return
    print(f"\ngrowth with the memory bank (median s per frame; x = ratio to the bank of {banks[0]}, this run):")
    width = max(len(n) for n in medians)
    for name, by_bank in medians.items():
        base = by_bank[banks[0]]
        print(f"  {name:{width}s} " + ", ".join(f"{b}: {by_bank[b]:.3f} s ({by_bank[b] / base:.2f}x)" for b in banks))


if __name__ == "__main__":
    main()
