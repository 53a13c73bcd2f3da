"""Samples per second of several trainings side by side against one training with every core.

What ``tracking/quickstart.py`` and ``tracking/ablation.py`` do with ``--jobs``: on the CPU they run
their trainings one per core, each child with its share of the threads. This script measures whether
that pays, on the real loop (``bench_train_loop.LoopRun``: ``Trainer.train_epoch`` with the real loader,
actor, loss, clipping and optimiser; config ``--config``, default ``hiptrack_cls_quickstart``):

* A, one training: an epoch of ``--samples`` samples in this process with all cores' threads
  (``--threads``, default every core);
* B, ``--jobs`` trainings side by side: worker processes (one thread each unless ``--threads-per-job``)
  run an epoch of ``--samples`` samples at the same moment; the wall time until the last one finishes.

After one warm-up epoch of each, A and B alternate for ``--rounds`` rounds. Prints the samples/s of
each (B: all its trainings together, and the epoch time of each), and B's samples/s over A's from
paired rounds of this run. A training of B takes longer than A's alone; the total is what counts for a
run of several trainings (the quick start trains two, a three-seed study six or more).

    python benchmarks/bench_parallel_training.py --data data/synthetic_quickstart
    python benchmarks/bench_parallel_training.py --data data/synthetic_quickstart --samples 200 --rounds 3
    python benchmarks/bench_parallel_training.py --config hiptrack_cls_tiny --samples 4 --rounds 1   # smoke run
"""
from __future__ import annotations

import argparse
import logging
import multiprocessing
import statistics
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import torch

from bench_common import Samples, alternate, paired_ratio
from bench_train_loop import LoopRun, add_loop_data_arguments, generate_small_dataset, loop_config
from lib.utils.runtime import available_cores


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_loop_data_arguments(parser)
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--samples", type=int, default=96, help="samples per epoch of each training (default 96)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds after 1 warm-up (default 3)")
    parser.add_argument("--jobs", type=int, default=0, help="trainings side by side (default 0: one per core)")
    parser.add_argument("--threads", type=int, default=0, help="threads of the single training (default 0: every core)")
    parser.add_argument("--threads-per-job", type=int, default=0,
                        help="threads of each side-by-side training (default 0: the cores divided by --jobs)")
    args = parser.parse_args(argv)
    cores = available_cores()
    args.jobs = args.jobs or cores
    args.threads = args.threads or cores
    args.threads_per_job = args.threads_per_job or max(1, cores // args.jobs)
    if min(args.sequences, args.frames, args.samples, args.rounds, args.jobs) < 1:
        parser.error("--sequences, --frames, --samples, --rounds and --jobs must be >= 1")
    if args.jobs < 2:
        parser.error(f"--jobs {args.jobs}: side by side needs at least 2 (this machine has {cores} core(s))")
    return args


def side_by_side_worker(conn: Connection, args: argparse.Namespace, data_dir: Path, save_dir: Path,
                        seed: int) -> None:
    """One training of B: an epoch per ``"epoch"`` message, its seconds sent back; ``"stop"`` ends it."""
    torch.set_num_threads(args.threads_per_job)
    logging.basicConfig(level=logging.WARNING)
    run = LoopRun(loop_config(args.config, args.samples, args.opts), data_dir, 1, save_dir, seed=seed)
    conn.send("ready")
    while conn.recv() == "epoch":
        conn.send(run())
    run.close()


class SideBySide:
    """``jobs`` worker processes that run an epoch at the same moment when called."""

    def __init__(self, args: argparse.Namespace, data_dir: Path, tmp: Path) -> None:
        context = multiprocessing.get_context("spawn")  # no forked torch state
        self.conns, self.procs = [], []
        for job in range(args.jobs):
            ours, theirs = context.Pipe()
            proc = context.Process(target=side_by_side_worker, args=(theirs, args, data_dir, tmp / f"job{job}", job),
                                   daemon=True)
            proc.start()
            self.conns.append(ours)
            self.procs.append(proc)
        for conn in self.conns:
            if conn.recv() != "ready":
                raise RuntimeError("a side-by-side training did not start")
        self.epochs: list[list[float]] = []  # per call: each training's epoch seconds

    def __call__(self) -> float:
        start = time.perf_counter()
        for conn in self.conns:
            conn.send("epoch")
        self.epochs.append([conn.recv() for conn in self.conns])
        return time.perf_counter() - start

    def close(self) -> None:
        for conn in self.conns:
            conn.send("stop")
        for proc in self.procs:
            proc.join(timeout=30)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data_dir = args.data.resolve() if args.data else generate_small_dataset(tmp / "synthetic", args)
        torch.set_num_threads(args.threads)
        single = LoopRun(loop_config(args.config, args.samples, args.opts), data_dir, 1, tmp / "single")
        side = SideBySide(args, data_dir, tmp)
        try:
            print(f"A: one training of {args.config}, {args.threads} thread(s); B: {args.jobs} trainings side by "
                  f"side, {args.threads_per_job} thread(s) each; {single.samples} samples per epoch each; "
                  f"{args.rounds} rounds after 1 warm-up, alternating\n")
            samples = alternate({"A": single, "B": side}, args.rounds)
            report(samples, single.samples, args.jobs, side.epochs[1:])
        finally:
            side.close()
            single.close()


def report(samples: dict[str, Samples], per_epoch: int, jobs: int, side_epochs: list[list[float]]) -> None:
    one = sorted(per_epoch / t for t in samples["A"].seconds)
    together = sorted(jobs * per_epoch / t for t in samples["B"].seconds)
    print(f"A: {statistics.median(one):.2f} samples/s (min {one[0]:.2f}, max {one[-1]:.2f}); "
          f"epoch {samples['A'].summary()}")
    print(f"B: {statistics.median(together):.2f} samples/s in all (min {together[0]:.2f}, max {together[-1]:.2f}); "
          f"wall per round {samples['B'].summary()}")
    each = sorted(t for epoch in side_epochs for t in epoch)
    print(f"   each training's epoch: median {statistics.median(each):.3f} s (min {each[0]:.3f}, max {each[-1]:.3f})")
    # B's seconds per `per_epoch` samples = its wall / jobs: the ratio of A's to it is B's samples/s over A's
    per_sample_b = Samples("A samples/s", [t / jobs for t in samples["B"].seconds])
    print("ratio measured in this run: " + paired_ratio(Samples("B samples/s", samples["A"].seconds), per_sample_b))


if __name__ == "__main__":
    main()
