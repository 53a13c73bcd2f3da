"""Samples per second of several trainings side by side against one training with every core.

What ``tracking/quickstart.py`` and ``tracking/ablation.py`` do with ``--jobs``: on the CPU they run
their trainings one per core, each child with its share of the threads. This script measures whether
that pays, on the real loop (``bench_train_loop.LoopRun``: ``Trainer.train_epoch`` with the real loader,
actor, loss, clipping and optimiser; config ``--config``, default ``hiptrack_cls_quickstart``). Every
training is a worker process (``loop_worker.py``) that runs one epoch of ``--samples`` samples when asked:

* A, one training with all cores' threads (``--threads``, default every core);
* B, ``--jobs`` trainings side by side (one thread each unless ``--threads-per-job``), asked at the same
  moment; the wall time until the last one finishes;
* with ``--before DIR``, also P: one training as A, but running the ``lib`` of ``DIR``, another checkout
  of this project (e.g. the code before a change: ``git worktree add ../before <commit>``), so that the
  speed-up of a change is measured in one run rather than divided across runs.

After one warm-up epoch of each, the contestants alternate for ``--rounds`` rounds. Prints the samples/s
of each (B: all its trainings together, and the epoch time of each), and the samples/s ratios from
paired rounds of this run: B over A, and with ``--before`` A over P and B over P. A training of B takes
longer than A's alone; the total is what counts for a run of several trainings (the quick start trains
two, a three-seed study six or more).

    python benchmarks/bench_parallel_training.py --data data/synthetic_quickstart
    python benchmarks/bench_parallel_training.py --data data/synthetic_quickstart --samples 200 --rounds 3
    python benchmarks/bench_parallel_training.py --data data/synthetic_quickstart --samples 200 --before ../before
    python benchmarks/bench_parallel_training.py --config hiptrack_cls_tiny --samples 4 --rounds 1   # smoke run
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench_common import Samples, WorkerProcess, alternate, environment_without_pythonpath, paired_ratio
from bench_train_loop import add_loop_data_arguments, generate_small_dataset
from lib.utils.runtime import available_cores

WORKER = Path(__file__).with_name("loop_worker.py")


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
    parser.add_argument("--before", type=Path, default=None, metavar="DIR",
                        help="also time one training running the lib of DIR, another checkout of this project")
    args = parser.parse_args(argv)
    cores = available_cores()
    args.jobs = args.jobs or cores
    args.threads = args.threads or cores
    args.threads_per_job = args.threads_per_job or max(1, cores // args.jobs)
    if min(args.sequences, args.frames, args.samples, args.rounds, args.jobs) < 1:
        parser.error("--sequences, --frames, --samples, --rounds and --jobs must be >= 1")
    if args.jobs < 2:
        parser.error(f"--jobs {args.jobs}: side by side needs at least 2 (this machine has {cores} core(s))")
    if args.before is not None and not (args.before / "lib" / "__init__.py").is_file():
        parser.error(f"--before {args.before}: no lib/__init__.py there (not a checkout of this project)")
    return args


class LoopProcess(WorkerProcess):
    """One training in a ``loop_worker.py`` process; :meth:`start_epoch` / :meth:`epoch_seconds` run one epoch."""

    def __init__(self, name: str, args: argparse.Namespace, data_dir: Path, threads: int, seed: int,
                 source: Path | None = None) -> None:
        command = [str(WORKER), "--data", str(data_dir), "--config", args.config, "--samples", str(args.samples),
                   "--threads", str(threads), "--seed", str(seed)]
        if source is not None:
            command += ["--source", str(source.resolve())]
        env = environment_without_pythonpath()  # 'lib' is the installed or the --source one
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        super().__init__(f"training {name}", [*command, "--opts", *args.opts], env)
        _, samples, self.lib = self._reply().split(maxsplit=2)
        self.samples = int(samples)

    def start_epoch(self) -> None:
        self._send("epoch")

    def epoch_seconds(self) -> float:
        return float(self._reply())

    def __call__(self) -> float:
        self.start_epoch()
        return self.epoch_seconds()


class SideBySide:
    """Several :class:`LoopProcess` trainings that run an epoch at the same moment when called."""

    def __init__(self, trainings: list[LoopProcess]) -> None:
        self.trainings = trainings
        self.epochs: list[list[float]] = []  # per call: each training's epoch seconds

    def __call__(self) -> float:
        start = time.perf_counter()
        for training in self.trainings:
            training.start_epoch()
        self.epochs.append([training.epoch_seconds() for training in self.trainings])
        return time.perf_counter() - start

    def close(self) -> None:
        for training in self.trainings:
            training.close()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp_name:
        data_dir = args.data.resolve() if args.data else generate_small_dataset(Path(tmp_name) / "synthetic", args)
        processes: list[LoopProcess] = []
        try:
            processes.append(LoopProcess("A", args, data_dir, args.threads, seed=0))
            side = SideBySide([LoopProcess(f"B{job + 1}", args, data_dir, args.threads_per_job, seed=job)
                               for job in range(args.jobs)])
            processes += side.trainings
            contestants = {"A": processes[0], "B": side}
            print(f"A: one training of {args.config}, {args.threads} thread(s); B: {args.jobs} trainings side by "
                  f"side, {args.threads_per_job} thread(s) each; {processes[0].samples} samples per epoch each")
            if args.before is not None:
                processes.append(LoopProcess("P", args, data_dir, args.threads, seed=0, source=args.before))
                contestants["P"] = processes[-1]
                print(f"P: one training as A with the lib of {processes[-1].lib}")
            print(f"A runs {processes[0].lib}; {args.rounds} rounds after 1 warm-up, alternating\n")
            samples = alternate(contestants, args.rounds)
            report(samples, processes[0].samples, args.jobs, side.epochs[1:])
        finally:
            for process in processes:
                process.close()


def report(samples: dict[str, Samples], per_epoch: int, jobs: int, side_epochs: list[list[float]]) -> None:
    # seconds per `per_epoch` samples: B's wall divided by its trainings; ratios of these are samples/s ratios
    per_samples = {name: [t / (jobs if name == "B" else 1) for t in s.seconds] for name, s in samples.items()}
    for name, seconds in per_samples.items():
        rates = sorted(per_epoch / t for t in seconds)
        what = "samples/s in all" if name == "B" else "samples/s"
        print(f"{name}: {statistics.median(rates):.2f} {what} (min {rates[0]:.2f}, max {rates[-1]:.2f}); "
              f"{'wall per round' if name == 'B' else 'epoch'} {samples[name].summary()}")
        if name == "B":
            each = sorted(t for epoch in side_epochs for t in epoch)
            print(f"   each training's epoch: median {statistics.median(each):.3f} s (min {each[0]:.3f}, "
                  f"max {each[-1]:.3f})")
    pairs = [("B", "A")] + [(name, "P") for name in ("A", "B") if "P" in samples]
    print("ratios measured in this run:")
    for faster, slower in pairs:
        print("  " + paired_ratio(Samples(f"{faster} samples/s", per_samples[slower]),
                                  Samples(f"{slower} samples/s", per_samples[faster])))


if __name__ == "__main__":
    main()
