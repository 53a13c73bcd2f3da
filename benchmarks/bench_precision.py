"""bf16 tracking against fp32: per-frame speed (ViT-B) and open-loop box agreement (a checkpoint).

``speed``: ``tracker.track()`` on a 640x480 frame with a bank of 2 (random weights, as
``bench_tracker.py``) for three trackers sharing one network, in rotating order, median s/frame:

* ``fp32``;
* ``bf16 per-frame cast``: bf16 autocast over the fp32 network, the tracker before the weights
  were cast once (every convolution / linear layer re-casts its weight on every frame);
* ``bf16``: today's tracker, which casts those weights once at construction.

All three with ``TEST.PACKED_LINEAR=False``, so that only the weight casts differ (the packed linear
layers have their own A/B: ``bench_tracker.py --ab-opts TEST.PACKED_LINEAR=False``). Prints wall-clock
and process CPU time (all threads; the steadier figure on a shared machine when run with
``--threads 1``). Also checks that the two bf16 trackers return the same boxes.

``agreement``: the mean IoU of bf16 boxes with fp32 boxes on the same search crops
(:func:`lib.test.evaluation.agreement.open_loop_ious`) over the sequences of a test dataset; the
crops follow the fp32 tracker (``--crops fp32``) or the previous frame's ground truth (``gt``).

    python benchmarks/bench_precision.py speed [--config hiptrack] [--threads 2] [--frames 6]
    python benchmarks/bench_precision.py agreement hiptrack hiptrack_cls_quickstart --checkpoint CKPT \\
        --dataset synthetic_test --dataset_dir synthetic=DIR [--crops fp32|gt] [--opts KEY=VALUE ...] \\
        [--sequence NAME ...]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from bench_tracker import TimedFrame
from lib.config.hiptrack import load_config, resolve_experiment_config
from lib.dataset.image_loader import read_image
from lib.dataset.paths import DatasetPaths, add_path_arguments
from lib.dataset.registry import build_dataset
from lib.models import build_model
from lib.test.evaluation.agreement import open_loop_ious
from lib.test.evaluation.results import TEST_DATASETS
from lib.test.tracker import TRACKERS
from lib.test.tracker.hiptrack import HIPTrackTracker, load_network
from lib.utils.precision import cpu_has_fast_bf16

BANK = 2  # memory frames read by every timed frame


def speed(args: argparse.Namespace) -> None:
    """Median s/frame of fp32, bf16 with per-frame weight casts and bf16 with weights cast once."""
    torch.set_num_threads(args.threads)
    # linear layers as torch runs them: this compares weight casts (packing has its own A/B in bench_tracker.py)
    cfg = load_config(resolve_experiment_config(args.config),
                      opts=["MODEL.PRETRAIN_FILE=", f"MODEL.MAX_MEM={BANK}", "TEST.PACKED_LINEAR=False"])
    torch.manual_seed(0)
    network = build_model(cfg, training=False)
    per_frame_cast = HIPTrackTracker(network, cfg, precision="bf16")
    per_frame_cast.network = network  # autocast over the fp32 weights: each frame casts them again
    trackers = {"fp32": HIPTrackTracker(network, cfg, precision="fp32"),
                "bf16 per-frame cast": per_frame_cast,
                "bf16": HIPTrackTracker(network, cfg, precision="bf16")}
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    frames = {}
    for name, tracker in trackers.items():
        torch.manual_seed(1)  # the same random memory entries for every tracker
        frames[name] = TimedFrame(tracker, image, BANK)
    for frame in frames.values():
        frame()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in frames}
    cpu_times: dict[str, list[float]] = {name: [] for name in frames}
    names = list(frames)
    for i in range(args.frames):
        for name in names[i % len(names):] + names[:i % len(names)]:  # rotating order
            start = time.process_time()
            times[name].append(frames[name]())
            cpu_times[name].append(time.process_time() - start)
    boxes = {name: trackers[name].prev_box_xywh for name in ("bf16 per-frame cast", "bf16")}
    print(f"{args.config} tracker, random weights, 640x480 frame, bank of {BANK}, threads {args.threads}, "
          f"{args.frames} frames each; native bf16 kernels on this CPU: {'yes' if cpu_has_fast_bf16() else 'no'}")
    for clock, measured in (("wall", times), ("CPU", cpu_times)):
        fp32 = statistics.median(measured["fp32"])
        for name, values in measured.items():
            median = statistics.median(values)
            print(f"  {clock:4s} {name:20s} {median:.3f} s/frame ({median / fp32:.2f}x fp32; all: "
                  f"{', '.join(f'{t:.3f}' for t in values)})")
    same = boxes["bf16 per-frame cast"] == boxes["bf16"]
    print(f"  bf16 boxes with weights cast once {'equal' if same else 'DIFFER FROM'} those of per-frame casts")


def agreement(args: argparse.Namespace) -> None:
    """Mean open-loop IoU of bf16 against fp32 boxes over a test dataset's sequences."""
    torch.set_num_threads(args.threads)
    cfg = load_config(resolve_experiment_config(args.tracker_param), opts=args.opts)
    tracker_cls = TRACKERS[args.tracker_name]
    network = load_network(cfg, args.checkpoint, args.device)
    fp32 = tracker_cls(network, cfg, args.device, precision="fp32")
    bf16 = tracker_cls(network, cfg, args.device, precision="bf16")
    dataset = build_dataset(TEST_DATASETS[args.dataset].registry_name,
                            DatasetPaths.from_env(args.dataset_dir, args.paths, args.data_dir))
    ids = {dataset.sequence_name(i): i for i in range(len(dataset))}
    names = args.sequence or list(ids)
    all_ious = []
    for name in names:
        seq_id = ids[name]
        info = dataset.sequence_info(seq_id)
        frames = (read_image(dataset.frame_path(seq_id, f)) for f in range(len(info)))
        crops = info.bbox.numpy() if args.crops == "gt" else None
        ious = open_loop_ious(fp32, bf16, frames, info.bbox[0].tolist(), crops)
        all_ious.append(ious)
        print(f"  {name:20s} {len(ious):5d} frames, mean IoU {ious.mean():.3f}, min {ious.min():.3f}")
    ious = np.concatenate(all_ious)
    crops = "the ground truth" if args.crops == "gt" else "the fp32 boxes"
    print(f"bf16 vs fp32, crops around {crops}, {args.tracker_name} {args.tracker_param} on {args.dataset}: "
          f"{len(names)} sequences, {len(ious)} frames, mean IoU {ious.mean():.3f}, median {np.median(ious):.3f}, "
          f"frames with IoU < 0.5: {(ious < 0.5).mean():.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    timing = commands.add_parser("speed", help="s/frame of fp32 and bf16 (ViT-B, random weights)")
    timing.add_argument("--config", default="hiptrack", help="experiment name or YAML path")
    timing.add_argument("--threads", type=int, default=2)
    timing.add_argument("--frames", type=int, default=6, help="timed frames per tracker")
    timing.set_defaults(run=speed)
    agree = commands.add_parser("agreement", help="open-loop bf16 / fp32 box IoU of a checkpoint on a dataset")
    agree.add_argument("tracker_name", choices=sorted(TRACKERS))
    agree.add_argument("tracker_param", help="experiment name or YAML path")
    agree.add_argument("--checkpoint", required=True, help="tracker checkpoint file")
    agree.add_argument("--dataset", default="synthetic_test", choices=list(TEST_DATASETS), help="test dataset")
    agree.add_argument("--crops", choices=("fp32", "gt"), default="fp32",
                       help="centre each frame's search crop on the fp32 tracker's last box, or on the previous "
                            "frame's ground truth")
    agree.add_argument("--sequence", action="append", default=None, metavar="NAME", help="only this sequence")
    agree.add_argument("--device", default="cpu")
    agree.add_argument("--threads", type=int, default=2)
    agree.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    add_path_arguments(agree)
    agree.set_defaults(run=agreement)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
