"""Where one ``tracker.track()`` call of the ViT-B ``hiptrack`` tracker spends its time.

Builds the plain tracker on the ``hiptrack`` config with random weights, fills its memory bank to
a given size (``fill_memory`` of bench_model.py) and times ``track()`` on a 640x480 frame,
split into stages by wrapping the functions and modules that implement them:

* ``crop``: search-region crop and normalisation (``sample_target``, ``_to_tensor``);
* ``backbone``: the ViT-CE backbone;
* ``key/value``: ``key_proj`` and ``key_comp`` on the search feature map;
* ``read-out``: ``read_memory`` (affinity, softmax over the bank, weighted values);
* ``fusion+head``: ``searchRegionFusion`` and the box head;
* ``write``: the memory value of the frame (encoder stem and fuser), timed on a frame the
  schedule writes (one in ``TEST.UPDATE_INTERVAL``); the bank write itself is in ``other``;
* ``other``: the rest (token maps, Hann window, box decoding, Python).

Prints the median of each stage over ``--frames`` read-only frames and ``--frames`` writing frames,
per bank size, and the growth of the read-only frame with the bank.

Then the kernel floor of a read-only frame (bank of the first ``--banks`` size;
``bench_common.KernelFloor``): every matrix product and convolution the network ran in that frame (each
``nn.Linear`` and ``nn.Conv2d`` call, with its input's shape and layout, and each attention's fused
kernel) run again alone, back to back, on random inputs of those shapes (median of ``--frames``
passes). That is what the frame would take if everything else (normalisation, activations, token
selection, copies, Python, cropping, decoding) cost nothing: a lower bound for an implementation with
the same kernels and the same arithmetic, printed by kind with its GFLOP and rate beside the measured
frame.

    python benchmarks/profile_track_frame.py [--threads 2] [--frames 5] [--banks 2 50 100 150] [--precision fp32|bf16]
        [--timer wall]
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager

import numpy as np
import torch

import lib.models.hiptrack.hiptrack as hiptrack_model
import lib.test.tracker.hiptrack as hiptrack_tracker
from bench_common import KernelFloor
from bench_model import fill_memory
from lib.config.hiptrack import load_config, resolve_experiment_config
from lib.models import build_model
from lib.test.tracker import HIPTrackTracker

INIT_BOX = [280.0, 200.0, 80.0, 60.0]
TIMERS = {"wall": time.perf_counter, "cpu": time.process_time}
timer = TIMERS["wall"]  # set from --timer in main()
STAGES = ("crop", "backbone", "key/value", "read-out", "fusion+head", "write", "other")


class StageClock:
    """Accumulates wall time per stage of the current frame (nested stages are not subtracted)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def stage(self, name: str):
        start = timer()
        try:
            yield
        finally:
            self.seconds[name] += timer() - start

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            with self.stage(name):
                return fn(*args, **kwargs)
        return timed

    def time_module(self, name: str, module: torch.nn.Module) -> None:
        starts: list[float] = []
        module.register_forward_pre_hook(lambda *_: starts.append(timer()))

        def post(*_):
            self.seconds[name] += timer() - starts.pop()
        module.register_forward_hook(post)


def instrument(tracker: HIPTrackTracker, clock: StageClock) -> None:
    """Route the stages of ``tracker.track()`` through ``clock``."""
    net = tracker.network
    hiptrack_tracker.sample_target = clock.wrap("crop", hiptrack_tracker.sample_target)
    tracker._to_tensor = clock.wrap("crop", tracker._to_tensor)
    hiptrack_model.read_memory = clock.wrap("read-out", hiptrack_model.read_memory)
    net.frame_value = clock.wrap("write", net.frame_value)
    for name, module in (("backbone", net.backbone), ("key/value", net.key_proj), ("key/value", net.key_comp),
                         ("fusion+head", net.searchRegionFusion), ("fusion+head", net.box_head)):
        clock.time_module(name, module)


def build_tracker(max_mem: int, precision: str) -> HIPTrackTracker:
    cfg = load_config(resolve_experiment_config("hiptrack"), opts=["MODEL.PRETRAIN_FILE=", f"MODEL.MAX_MEM={max_mem}"])
    torch.manual_seed(0)
    return HIPTrackTracker(build_model(cfg, training=False), cfg, precision=precision)


def prepare(tracker: HIPTrackTracker, image: np.ndarray, bank: int) -> None:
    """Initialise on ``image`` and fill the bank to ``bank`` frames (one real write, then random entries)."""
    cfg = tracker.cfg
    tracker.initialize(image, {"init_bbox": INIT_BOX})
    state = tracker.video_state
    state.frame_index = cfg.TEST.WARMUP_WRITE_FRAMES[0] - 1
    tracker.track(image)
    fill_memory(tracker.network, state, bank - 1)


def timed_frame(tracker: HIPTrackTracker, clock: StageClock, image: np.ndarray, write: bool) -> dict[str, float]:
    """Stage seconds of one track() call that reads the bank and writes (or not) its frame; the bank
    is restored afterwards so its size stays fixed."""
    cfg = tracker.cfg
    state = tracker.video_state
    interval = cfg.TEST.UPDATE_INTERVAL
    state.frame_index = (cfg.TEST.WARMUP_FRAMES // interval + 2) * interval - (1 if write else 2)
    tracker.prev_box_xywh = list(INIT_BOX)
    bank = state.memory
    held = (len(bank), bank._next) if write else None  # a write to a free slot is undone by forgetting it
    clock.seconds.clear()
    start = timer()
    tracker.track(image)
    total = timer() - start
    if held is not None:
        bank._count, bank._next = held
    seconds = dict(clock.seconds)
    seconds["other"] = total - sum(seconds.values())
    seconds["total"] = total
    return seconds


def print_kernel_floor(tracker: HIPTrackTracker, clock: StageClock, image: np.ndarray, bank: int,
                       repeats: int) -> None:
    prepare(tracker, image, bank)
    floor = KernelFloor.of_tracker(tracker, lambda: timed_frame(tracker, clock, image, write=False))
    measured = statistics.median(timed_frame(tracker, clock, image, write=False)["total"] for _ in range(repeats))
    passes = [(floor(), dict(floor.last)) for _ in range(repeats + 1)][1:]
    total, by_kind = sorted(passes, key=lambda p: p[0])[len(passes) // 2]  # the median pass
    parts = ", ".join(f"{kind} {seconds:.3f} s ({floor.flops[kind] / 1e9:.1f} GFLOP, "
                      f"{floor.flops[kind] / seconds / 1e9:.0f} GFLOP/s)" for kind, seconds in by_kind.items())
    print(f"kernel floor of a read-only frame, bank {bank} ({len(floor.calls)} kernel calls run alone, back to back, "
          f"wall time, median of {repeats}): {total:.3f} s = {parts}")
    print(f"measured frame {measured:.3f} s; everything but these kernels {measured - total:.3f} s "
          f"({100 * (measured - total) / measured:.0f}%)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=5, help="timed frames per kind and bank size")
    parser.add_argument("--banks", type=int, nargs="+", default=[2, 50, 100, 150], help="memory bank sizes")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="TEST.PRECISION (default fp32)")
    parser.add_argument("--timer", choices=sorted(TIMERS), default="wall",
                        help="wall clock, or this process's CPU time (steadier on a loaded machine; use --threads 1)")
    args = parser.parse_args()
    global timer
    timer = TIMERS[args.timer]
    torch.set_num_threads(args.threads)
    tracker = build_tracker(max(args.banks) + 1, args.precision)  # room for the timed write
    clock = StageClock()
    instrument(tracker, clock)
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    print(f"ViT-B hiptrack tracker, {args.precision}, random weights, threads {args.threads}, {args.timer} time, "
          f"median of {args.frames} frames")
    totals = {}
    for bank in args.banks:
        prepare(tracker, image, bank)
        for write in (False, True):
            runs = [timed_frame(tracker, clock, image, write) for _ in range(args.frames + 1)][1:]
            med = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in (*STAGES, "total")}
            if not write:
                totals[bank] = med["total"]
            parts = ", ".join(f"{k} {med[k]:.3f} ({100 * med[k] / med['total']:.0f}%)" for k in STAGES if med[k])
            print(f"bank {bank:4d} {'write' if write else 'read '}: total {med['total']:.3f} s = {parts}")
    base = totals[args.banks[0]]
    print("growth of the read-only frame: " + ", ".join(f"{b}: {t:.3f} s ({t / base:.2f}x)" for b, t in totals.items()))
    print_kernel_floor(tracker, clock, image, args.banks[0], args.frames)


if __name__ == "__main__":
    main()
