"""Throughput of training-data sampling + processing in one process (as ``num_workers=0``).

Measures samples per second of :class:`TrackingSampler` (frame choice, JPEG decoding, crops,
augmentation, normalisation) at the ViT-B sizes of ``hiptrack_got`` (1 template 192 + 5 search
384) and at the tiny sizes of ``hiptrack_cls_tiny`` (64 + 5 x 128), plus the share of the time
spent decoding frames. Data: a generated GOT-10k-layout split of 640x480 JPEGs in a temporary
folder, or ``--data DIR``, a GOT-10k-layout split folder (with ``list.txt``).

    python benchmarks/bench_data.py [--data /data/got10k/train] [--samples 60] [--threads 1]
"""
from __future__ import annotations

import argparse
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
from lib.dataset.got10k import GOT10k


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
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)
    torch.set_num_threads(args.threads)

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
