"""Throughput of training-data sampling + processing in one process (as ``num_workers=0``), and the
time of the dataset check run before training.

Sampling: samples per second of :class:`TrackingSampler` (frame choice, JPEG decoding, crops,
augmentation, normalisation) at the ViT-B sizes of ``hiptrack_got`` (1 template 192 + 5 search
384) and at the tiny sizes of ``hiptrack_cls_tiny`` (64 + 5 x 128), plus the share of the time
spent decoding frames. Data: a generated GOT-10k-layout split of 640x480 JPEGs in a temporary
folder, or ``--data DIR``, a GOT-10k-layout split folder (with ``list.txt``).

Check (``lib/dataset/check.py``): seconds to check every sequence of a split with no cached index
(cold), with the index of the previous run (cached), and after one sequence's groundtruth changed.
Data: a generated fake GOT-10k train split (``--check_sequences`` x ``--check_frames`` empty frame
files, groundtruth, absence, cover and cut-by-image labels, meta_info.ini; the check opens no
image), or ``--data DIR``. The index goes to a temporary folder. "Cold" means no index; the
operating system's file cache is warm (the files were just written or listed).

    python benchmarks/bench_data.py [--data /data/got10k/train] [--samples 60] [--threads 1]
    python benchmarks/bench_data.py --part check [--check_sequences 10000] [--check_frames 20]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from lib.config.hiptrack import load_config, resolve_experiment_config
from lib.dataset.image_loader import image_backend, read_image
from lib.train.data.processing import TrackingProcessing
from lib.train.data.sampler import TrackingSampler
from lib.dataset.check import CACHE_DIR_ENV, check_dataset
from lib.dataset.got10k import GOT10k

META_INFO = "[METAINFO]\nobject_class: ship\nmotion_class: sailing\nanno_fps: 10Hz\nresolution: (1920, 1080)\n"


def write_split(split_dir: Path, sequences: int, frames: int, width: int = 640, height: int = 480) -> None:
    """GOT-10k-layout sequences: smooth random backgrounds, a moving textured box, list.txt."""
    rng = np.random.default_rng(0)
    names = []
    for s in range(sequences):
        name = f"BENCH_{s:06d}"
        folder = split_dir / name
        folder.mkdir(parents=True)
        background = cv2.resize(rng.integers(0, 255, (height // 16, width // 16, 3), dtype=np.uint8),
                                (width, height), interpolation=cv2.INTER_CUBIC)
        patch = rng.integers(0, 255, (80, 60, 3), dtype=np.uint8)
        boxes = []
        for f in range(frames):
            x, y = 100 + 8 * f % (width - 260), 120 + 3 * f % (height - 220)
            image = np.roll(background, 4 * f, axis=1).copy()
            image[y:y + 80, x:x + 60] = patch
            cv2.imwrite(str(folder / f"{f + 1:08d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
            boxes.append(f"{x},{y},60,80")
        (folder / "groundtruth.txt").write_text("\n".join(boxes) + "\n")
        names.append(name)
    (split_dir / "list.txt").write_text("\n".join(names) + "\n")


def write_fake_split(split_dir: Path, sequences: int, frames: int) -> None:
    """A GOT-10k-train-like split whose frames are empty files (the check never opens them)."""
    boxes = "".join(f"{10 + f},{20 + f},30,40\n" for f in range(frames))
    zeros, cover = "0\n" * frames, "8\n" * frames
    names = [f"GOT-10k_Train_{s + 1:06d}" for s in range(sequences)]
    for name in names:
        folder = split_dir / name
        folder.mkdir(parents=True)
        for f in range(1, frames + 1):
            (folder / f"{f:08d}.jpg").touch()
        for file, text in (("groundtruth.txt", boxes), ("absence.label", zeros), ("cover.label", cover),
                           ("cut_by_image.label", zeros), ("meta_info.ini", META_INFO)):
            (folder / file).write_text(text)
    (split_dir / "list.txt").write_text("\n".join(names) + "\n")


def measure_check(split_dir: Path, cache: Path, change_one: bool) -> dict[str, float]:
    """Seconds of the dataset check: no index, the previous run's index and, with ``change_one``
    (generated data only: a user's dataset is never written), after one groundtruth changed."""
    os.environ[CACHE_DIR_ENV] = str(cache)  # never the user's ~/.cache

    def timed() -> float:
        start = time.perf_counter()
        dataset = GOT10k("bench", split_dir.parent, split_dir.name)
        result = check_dataset(dataset, "skip", quiet=True)
        assert not result.problems, result.problems[:3]
        return time.perf_counter() - start

    times = {"cold (no index)": timed(), "cached": timed()}
    if change_one:
        first = split_dir / (split_dir / "list.txt").read_text().split()[0] / "groundtruth.txt"
        first.write_text(first.read_text() + "\n")  # another size and time: this sequence is checked again
        times["one sequence changed"] = timed()
    return times


def measure(cfg, dataset, samples: int) -> tuple[float, float]:
    """Samples per second and the fraction of time spent reading frames."""
    read_time = 0.0

    def timed_reader(path):
        nonlocal read_time
        start = time.perf_counter()
        image = read_image(path)
        read_time += time.perf_counter() - start
        return image

    sampler = TrackingSampler([dataset], [1.0], samples_per_epoch=samples + 3,
                              num_search=cfg.DATA.SEARCH.NUMBER, max_interval=cfg.DATA.MAX_SAMPLE_INTERVAL,
                              processing=TrackingProcessing(cfg, training=True), seed=0, reader=timed_reader)
    for index in range(3):  # warm-up: annotation caches, OpenCV initialisation
        sampler[index]
    read_time = 0.0
    start = time.perf_counter()
    for index in range(3, samples + 3):
        sampler[index]
    elapsed = time.perf_counter() - start
    return samples / elapsed, read_time / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="GOT-10k-layout split folder (default: generated data)")
    parser.add_argument("--samples", type=int, default=60, help="timed samples per size (default 60)")
    parser.add_argument("--threads", type=int, default=1,
                        help="OpenCV / torch threads, 1 = as in a data-loader worker (default 1)")
    parser.add_argument("--part", choices=("all", "sampling", "check"), default="all",
                        help="what to measure (default all)")
    parser.add_argument("--check_sequences", type=int, default=10000,
                        help="sequences of the generated split of the check (default 10000)")
    parser.add_argument("--check_frames", type=int, default=20,
                        help="frames per generated sequence of the check (default 20; GOT-10k train has ~150)")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)
    if args.part in ("all", "sampling"):
        bench_sampling(args)
    if args.part in ("all", "check"):
        bench_check(args)


def bench_check(args: argparse.Namespace) -> None:
    """Print the check's times on ``--data`` or on a generated fake GOT-10k split."""
    with tempfile.TemporaryDirectory() as tmp:
        if args.data is None:
            split_dir = Path(tmp) / "got10k" / "train"
            start = time.perf_counter()
            write_fake_split(split_dir, args.check_sequences, args.check_frames)
            source = (f"generated {args.check_sequences:,} sequences x {args.check_frames} empty frames "
                      f"(written in {time.perf_counter() - start:.1f} s)")
        else:
            split_dir = args.data.resolve()
            source = str(split_dir)
        times = measure_check(split_dir, Path(tmp) / "cache", change_one=args.data is None)
    print(f"dataset check on {source}:")
    for name, seconds in times.items():
        print(f"  {name:22s} {seconds:7.2f} s")


def bench_sampling(args: argparse.Namespace) -> None:
    """Print the sampling throughput at the ViT-B and the tiny sizes."""
    with tempfile.TemporaryDirectory() as tmp:
        if args.data is None:
            split_dir = Path(tmp) / "train"
            write_split(split_dir, sequences=4, frames=40)
            source = "generated 4 x 40 frames of 640x480"
        else:
            split_dir = args.data.resolve()
            source = str(split_dir)
        dataset = GOT10k("bench", split_dir.parent, split_dir.name)
        results = {}
        for name in ("hiptrack_got", "hiptrack_cls_tiny"):
            cfg = load_config(resolve_experiment_config(name))
            results[name] = measure(cfg, dataset, args.samples)

    print(f"data: {source}; image backend: {image_backend()}; threads: {args.threads}")
    for name, (rate, read_share) in results.items():
        cfg = load_config(resolve_experiment_config(name))
        sizes = f"1x{cfg.DATA.TEMPLATE.SIZE} + {cfg.DATA.SEARCH.NUMBER}x{cfg.DATA.SEARCH.SIZE}"
        print(f"{name:18s} {sizes:14s} {rate:7.1f} samples/s  ({100 * read_share:.0f}% reading frames)")
    print(f"ViT-B / tiny time per sample: {results['hiptrack_cls_tiny'][0] / results['hiptrack_got'][0]:.2f}x")


if __name__ == "__main__":
    main()
