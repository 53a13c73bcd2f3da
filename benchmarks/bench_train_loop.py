"""Samples per second of the real training loop on the quick-start data, with a breakdown of its time.

What the quick start runs: ``Trainer.train_epoch`` with the real loader (``build_train_loader``:
TrackingSampler, processing, ``TRAIN.NUM_WORKER`` workers) over a generated synthetic dataset, the
real actor, loss, clipping and optimiser, config ``--config`` (default ``hiptrack_cls_quickstart``)
at ``--epoch``. Each timed epoch draws ``--samples`` samples (``DATA.TRAIN.SAMPLE_PER_EPOCH``).

The data: ``--data DIR``, a dataset written by ``python -m lib.synthetic`` / ``tracking/quickstart.py``
(e.g. ``data/synthetic_quickstart``), or by default a small one generated into a temporary folder
(``--sequences`` x ``--frames`` at 320x240, the quick start's size).

Configurations: each ``--opts KEY=VALUE ...`` is one configuration (overrides on top of
``--common-opts``); give it twice to compare two (e.g. ``--opts --opts TRAIN.AMP=True``; a bare
``--opts`` is the config as it is). Every configuration gets its own model, trainer and loader with
the same seed; after one warm-up epoch each (worker start-up, allocator), their epochs are timed in
alternating order (``--rounds``). Prints per configuration the median samples/s and seconds per
epoch with spread, the share of the epoch spent in

* data: waiting for the next batch in the main process (all of the loading when NUM_WORKER is 0);
* forward: the actor (network forward and the multi-task loss);
* backward: ``loss.backward()``;
* optimizer: gradient clipping and the optimiser step;
* other: the rest (zeroing gradients, device copies, finiteness checks, statistics, logging);

and the samples/s ratio of each configuration to the first, from paired rounds of this run.

    python benchmarks/bench_train_loop.py --opts --opts TRAIN.AMP=True
    python benchmarks/bench_train_loop.py --data data/synthetic_quickstart --samples 200 --rounds 3
    python benchmarks/bench_train_loop.py --config hiptrack_cls_tiny --samples 4 --rounds 1   # smoke run
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from bench_common import Samples, alternate, paired_ratio
from lib.config.hiptrack import load_config, resolve_experiment_config
from lib.dataset.paths import DatasetPaths
from lib.dataset.registry import build_datasets
from lib.models import build_model
from lib.synthetic import generate_dataset
from lib.train.actors.hiptrack_cls import HIPTrackActor
from lib.train.data.loader import build_train_loader, set_epoch
from lib.train.trainable import training_stage
from lib.train.trainer import Trainer
from lib.utils.runs import RunPaths

PARTS = ("data", "forward", "backward", "optimizer")
DATASET_OPTS = ["DATA.TRAIN.DATASETS_NAME=[SYNTHETIC_train]", "DATA.TRAIN.DATASETS_RATIO=[1]"]


class PartTimes:
    """Seconds spent in each part of the loop while :meth:`recording`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def timed(self, part: str, fn: Callable) -> Callable:
        """``fn`` wrapped so that its calls add to ``part``."""
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[part] += time.perf_counter() - start
        return wrapper

    @contextlib.contextmanager
    def recording(self, trainer: Trainer) -> Iterator[None]:
        """Time the backward and clipping calls (process-wide functions) and the optimiser step
        (its hooks) of ``trainer`` for the duration; the actor and loader are wrapped once (:class:`LoopRun`)."""
        backward, clip = torch.Tensor.backward, torch.nn.utils.clip_grad_norm_
        torch.Tensor.backward = self.timed("backward", backward)
        torch.nn.utils.clip_grad_norm_ = self.timed("optimizer", clip)
        starts: list[float] = []

        def step_done(*args) -> None:
            self.seconds["optimizer"] += time.perf_counter() - starts.pop()

        pre = trainer.optimizer.register_step_pre_hook(lambda *args: starts.append(time.perf_counter()))
        post = trainer.optimizer.register_step_post_hook(step_done)
        try:
            yield
        finally:
            torch.Tensor.backward, torch.nn.utils.clip_grad_norm_ = backward, clip
            pre.remove()
            post.remove()


class TimedLoader:
    """The real loader, with the main process's wait for each batch added to ``data``."""

    def __init__(self, loader, times: PartTimes) -> None:
        self.loader, self.times = loader, times
        self.dataset = loader.dataset  # the trainer reads its sampler's counters

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator:
        iterator = iter(self.loader)
        while True:
            start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            finally:
                self.times.seconds["data"] += time.perf_counter() - start
            yield batch


class LoopRun:
    """One configuration's trainer over the real loader; each call runs (and times) one epoch."""

    def __init__(self, cfg, data_dir: Path, epoch: int, save_dir: Path, seed: int = 0) -> None:
        torch.manual_seed(seed)
        datasets = build_datasets(list(cfg.DATA.TRAIN.DATASETS_NAME), DatasetPaths.from_env([f"synthetic={data_dir}"]),
                                  cls_ann_dir=data_dir / "cls_annotations", label_seed=seed, quiet=True)
        loader = build_train_loader(cfg, datasets, training=True, seed=seed)
        model = build_model(cfg, training=True)
        self.actor = HIPTrackActor(model, cfg)
        self.times = PartTimes()
        self.trainer = Trainer(cfg, model, self.times.timed("forward", self.actor), TimedLoader(loader, self.times),
                               None, RunPaths(save_dir, "bench_train_loop"), torch.device("cpu"),
                               set_loader_epoch=lambda timed, e: set_epoch(timed.loader, e))
        self.trainer._enter_stage(training_stage(cfg, epoch), epoch)
        self.epoch, self.samples = epoch, len(loader) * cfg.TRAIN.BATCH_SIZE
        self.parts: list[dict[str, float]] = []  # per timed epoch: part -> seconds, plus "total"

    def __call__(self) -> float:
        self.times.seconds.clear()
        with self.times.recording(self.trainer):
            start = time.perf_counter()
            self.trainer.train_epoch(self.epoch)
            total = time.perf_counter() - start
        self.parts.append({**self.times.seconds, "total": total})
        return total

    def close(self) -> None:
        loader = self.trainer.train_loader.loader
        iterator = getattr(loader, "_iterator", None)  # persistent workers: stop them now
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()


def add_loop_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``--config``, and the data of the loop: ``--data`` or a generated ``--sequences`` x ``--frames``."""
    parser.add_argument("--config", default="hiptrack_cls_quickstart",
                        help="experiment name or YAML path (default hiptrack_cls_quickstart)")
    parser.add_argument("--data", type=Path, default=None,
                        help="a generated synthetic dataset folder (default: generate a small one in a temp folder)")
    parser.add_argument("--sequences", type=int, default=12, help="sequences of the generated dataset (default 12)")
    parser.add_argument("--frames", type=int, default=40, help="frames per generated sequence (default 40)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_loop_data_arguments(parser)
    parser.add_argument("--opts", nargs="*", action="append", metavar="KEY=VALUE",
                        help="one configuration's overrides; repeat to compare configurations (default: one, as is)")
    parser.add_argument("--common-opts", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides of every configuration")
    parser.add_argument("--samples", type=int, default=96,
                        help="samples per timed epoch, DATA.TRAIN.SAMPLE_PER_EPOCH (default 96)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="timed epochs per configuration after 1 warm-up (default 3)")
    parser.add_argument("--epoch", type=int, default=1, help="the epoch handed to the trainer (default 1)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the main process (default 2)")
    args = parser.parse_args(argv)
    args.opts = args.opts or [[]]
    if min(args.sequences, args.frames, args.samples, args.rounds, args.epoch) < 1:
        parser.error("--sequences, --frames, --samples, --rounds and --epoch must be >= 1")
    return args


def loop_config(config: str, samples: int, opts: list[str]):
    """A config of the loop: the synthetic train split, ``samples`` per epoch, no pretrained file, ``opts``."""
    return load_config(resolve_experiment_config(config),
                       opts=[*DATASET_OPTS, "MODEL.PRETRAIN_FILE=", f"DATA.TRAIN.SAMPLE_PER_EPOCH={samples}", *opts])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data.resolve() if args.data else generate_small_dataset(Path(tmp) / "synthetic", args)
        runs: dict[str, LoopRun] = {}
        try:
            for i, opts in enumerate(args.opts):
                name = chr(ord("A") + i)
                cfg = loop_config(args.config, args.samples, [*args.common_opts, *opts])
                runs[name] = LoopRun(cfg, data_dir, args.epoch, Path(tmp) / f"run{name}")
                print(f"{name}: {args.config} {' '.join(opts) or '(as is)'}: batch {cfg.TRAIN.BATCH_SIZE}, "
                      f"{cfg.TRAIN.NUM_WORKER} loader workers, AMP {cfg.TRAIN.AMP}, {runs[name].samples} samples per "
                      f"epoch, epoch {args.epoch} (CE keep {runs[name].actor.keep_rate(args.epoch)})", flush=True)
            print(f"threads {args.threads}, {args.rounds} timed epochs each after 1 warm-up, alternating\n")
            samples = alternate(dict(runs), args.rounds)
            for run in runs.values():
                del run.parts[0]  # the warm-up epoch
            report(runs, samples)
        finally:
            for run in runs.values():
                run.close()


def generate_small_dataset(out: Path, args: argparse.Namespace) -> Path:
    """A quick-start-like synthetic dataset (320x240, train / test splits) of the requested size."""
    start = time.perf_counter()
    generate_dataset(out, sequences=args.sequences, frames=args.frames, seed=0, size=(320, 240))
    print(f"generated {args.sequences} x {args.frames} frames in {out} ({time.perf_counter() - start:.1f} s)")
    return out


def report(runs: dict[str, LoopRun], samples: dict[str, Samples]) -> None:
    """Samples/s with spread, the time breakdown, and the paired samples/s ratios to the first configuration."""
    rates: dict[str, Samples] = {}
    for name, run in runs.items():
        epoch = samples[name]
        per_s = sorted(run.samples / t for t in epoch.seconds)
        rates[name] = Samples(name, [1 / r for r in per_s])  # seconds per sample, for the paired ratios
        print(f"{name}: {statistics.median(per_s):.2f} samples/s (min {per_s[0]:.2f}, max {per_s[-1]:.2f}); "
              f"epoch {epoch.summary()}")
        shares = {part: statistics.median(p.get(part, 0.0) / p["total"] for p in run.parts) for part in PARTS}
        shares["other"] = 1 - sum(shares.values())
        print("   time: " + ", ".join(f"{part} {100 * share:.0f}%" for part, share in shares.items()))
    first = next(iter(rates))
    for name in list(rates)[1:]:
        # seconds per sample of the first over this one's = this one's samples/s over the first's
        ratio = paired_ratio(Samples(f"{name} samples/s", samples[first].seconds),
                             Samples(f"{first} samples/s", [t * runs[first].samples / runs[name].samples
                                                            for t in samples[name].seconds]))
        print(f"ratio measured in this run: {ratio}")


if __name__ == "__main__":
    main()
