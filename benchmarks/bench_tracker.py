"""Per-frame time of the plain and the classification tracker (ViT-B), and its growth with memory.

Times ``tracker.track()`` on a 640x480 frame (crop, normalisation, network, Hann window, box
decoding) for three trackers sharing one set of random weights:

* ``plain``: HIPTrackTracker on the ``hiptrack`` config;
* ``cls``: HIPTrackCLSTracker on ``hiptrack_cls`` without challenge predictions (head not run);
* ``cls+pred``: the same with ``--save_cls`` behaviour (head run, softmax returned).

For banks of ~2 (after warm-up), 50 and 150 memory frames (filled with random entries of the
right shape), each classification variant is measured alternately with the plain tracker
(A, B, B, A, ...) and the median of the paired ratios printed, then each tracker's growth
relative to the bank of 2. Every timed call reads the bank (frame index past the warm-up) and
writes nothing, so the bank size stays fixed.

    python benchmarks/bench_tracker.py [--threads 2] [--frames 4] [--banks 2 50 150]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from bench_cls_overhead import paired_ratio
from bench_model import fill_memory
from lib.config.hiptrack import load_config, resolve_experiment_config
from lib.models import build_model
from lib.test.tracker import HIPTrackCLSTracker, HIPTrackTracker

INIT_BOX = [280.0, 200.0, 80.0, 60.0]


class TimedFrame:
    """One ``track()`` call on a fixed frame with a bank of fixed size; returns its seconds."""

    def __init__(self, tracker: HIPTrackTracker, image: np.ndarray, bank: int):
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


def build_trackers(max_mem: int) -> dict[str, HIPTrackTracker]:
    """Plain and classification trackers on the ViT-B configs, with the same random weights."""
    opts = ["MODEL.PRETRAIN_FILE=", f"MODEL.MAX_MEM={max_mem}"]
    cls_cfg = load_config(resolve_experiment_config("hiptrack_cls"), opts=opts)
    plain_cfg = load_config(resolve_experiment_config("hiptrack"), opts=opts)
    torch.manual_seed(0)
    cls_net = build_model(cls_cfg, training=False)
    plain_net = build_model(plain_cfg, training=False)
    plain_net.load_state_dict({k: v for k, v in cls_net.state_dict().items() if not k.startswith("cls_head.")})
    return {
        "plain": HIPTrackTracker(plain_net, plain_cfg),
        "cls": HIPTrackCLSTracker(cls_net, cls_cfg, predict_challenges=False),
        "cls+pred": HIPTrackCLSTracker(cls_net, cls_cfg, predict_challenges=True),  # same network
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=4, help="paired timed frames per setting")
    parser.add_argument("--banks", type=int, nargs="+", default=[2, 50, 150], help="memory bank sizes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    trackers = build_trackers(max(args.banks))
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    cfg = trackers["plain"].cfg
    print(f"ViT-B trackers (hiptrack / hiptrack_cls, random weights): search {cfg.TEST.SEARCH_SIZE}, "
          f"threads {args.threads}, {args.frames} paired frames per setting")
    medians: dict[tuple[str, int], list[float]] = {}
    for bank in args.banks:
        for name in ("cls", "cls+pred"):
            variant = TimedFrame(trackers[name], image, bank)
            plain = TimedFrame(trackers["plain"], image, bank)
            a, b, ratio = paired_ratio(variant, plain, args.frames)
            medians.setdefault((name, bank), []).append(a)
            medians.setdefault(("plain", bank), []).append(b)
            print(f"bank {bank:4d}: {name:8s} {a:.3f} s, plain {b:.3f} s, paired ratio {ratio:.3f}")
    print("growth with the memory bank (median s per frame, ratio to the bank of "
          f"{args.banks[0]}):")
    for name in ("plain", "cls", "cls+pred"):
        base = statistics.median(medians[name, args.banks[0]])
        parts = [f"{bank}: {statistics.median(medians[name, bank]):.3f} s "
                 f"({statistics.median(medians[name, bank]) / base:.2f}x)" for bank in args.banks]
        print(f"  {name:8s} " + ", ".join(parts))


if __name__ == "__main__":
    main()
