"""Where the time of the tiny-model training loop goes: data, forward + loss, backward, optimiser.

Runs the real loop (:meth:`lib.train.trainer.Trainer.train_epoch`, the real
:class:`~lib.train.actors.hiptrack_cls.HIPTrackActor` and the real loader of
:func:`lib.train.data.loader.build_train_loader`) on the quick-start config
(``hiptrack_cls_quickstart``) and its synthetic data, for ``--iters`` iterations per round, and
splits each iteration's wall time into

* ``data``: the loader's ``next()`` in the main process (sampler, JPEG decoding, processing,
  collate; with ``TRAIN.NUM_WORKER > 0`` only the wait for a worker's batch),
* ``forward``: the actor (network forward and the multi-task loss, stats included),
* ``backward``: ``loss.backward()``,
* ``optimizer``: the optimiser's ``step`` (AdamW),
* ``other``: the rest of the trainer's iteration (zero_grad, finiteness check, gradient clipping,
  metrics, logging).

Several configurations (``--opts A ... --opts B ...``, each a list of ``KEY=VALUE`` overrides on
top of the quick-start config and ``--variant``) are built once and then run in alternating
rounds (A, B, B, A, ...) after a warm-up round each, so drift of a shared machine hits them
equally; the medians over rounds are printed. Nothing is written outside a temporary folder.

    python benchmarks/profile_train_loop.py --data_dir /tmp/qs [--variant multitask] [--iters 25]
        [--rounds 4] [--opts TRAIN.AMP=False --opts TRAIN.AMP=True]
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from lib.config.hiptrack import load_config, resolve_experiment_config
from lib.dataset.paths import DatasetPaths
from lib.dataset.registry import build_datasets
from lib.models import build_model
from lib.train.actors.hiptrack_cls import HIPTrackActor
from lib.train.data.loader import build_train_loader, set_epoch
from lib.train.trainer import Trainer, cpu_has_fast_bf16
from lib.utils.runs import RunPaths

CONFIG = "hiptrack_cls_quickstart"
PARTS = ("data", "forward", "backward", "optimizer", "other")
# what lib/pipeline/ablation.py sets for the two trained variants of the quick start
VARIANT_OPTS = {
    "baseline": ["MODEL.CLS_HEAD.ENABLED=False", "MODEL.CLS_HEAD.INPUT=tokens", "TRAIN.TWO_STAGE=False"],
    "multitask": ["MODEL.CLS_HEAD.ENABLED=True", "MODEL.CLS_HEAD.FUSION=NONE"],
}


class Clock:
    """Accumulates wall seconds and CPU seconds of this process (all its threads) per part of an
    iteration. On a busy shared machine CPU seconds move less than wall seconds."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.cpu_seconds: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def part(self, name: str):
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start
            self.cpu_seconds[name] += time.process_time() - cpu_start


class TimedLoader:
    """A loader whose ``next()`` is timed as ``data``, stopping after ``iters`` batches."""

    def __init__(self, loader, clock: Clock, iters: int) -> None:
        self.loader, self.clock, self.iters = loader, clock, iters
        self.dataset, self.sampler = loader.dataset, loader.sampler

    def __len__(self) -> int:
        return min(self.iters, len(self.loader))

    def __iter__(self):
        it = iter(self.loader)
        for _ in range(len(self)):
            with self.clock.part("data"):
                batch = next(it)
            yield batch


class TimedActor:
    """The real actor, its call timed as ``forward``."""

    def __init__(self, actor: HIPTrackActor, clock: Clock) -> None:
        self.actor, self.clock = actor, clock

    def __getattr__(self, name):
        return getattr(self.actor, name)

    def __call__(self, batch: dict, epoch: int):
        with self.clock.part("forward"):
            return self.actor(batch, epoch)


@contextlib.contextmanager
def timed_backward(clock: Clock):
    """``torch.Tensor.backward`` timed as ``backward`` (restored on exit)."""
    original = torch.Tensor.backward

    def backward(self, *args, **kwargs):
        with clock.part("backward"):
            return original(self, *args, **kwargs)

    torch.Tensor.backward = backward
    try:
        yield
    finally:
        torch.Tensor.backward = original


class Setup:
    """One configuration: config, data, model, actor and trainer, built once."""

    def __init__(self, name: str, opts: list[str], args: argparse.Namespace, save_dir: Path) -> None:
        self.name = name
        self.cfg = load_config(resolve_experiment_config(CONFIG), opts=[
            "DATA.TRAIN.DATASETS_NAME=[SYNTHETIC_train]", "DATA.TRAIN.DATASETS_RATIO=[1]",
            f"DATA.TRAIN.CLS_ANN_DIR={args.data_dir / 'synthetic_quickstart' / 'cls_annotations'}",
            *VARIANT_OPTS[args.variant], *opts])
        paths = DatasetPaths.from_env([f"synthetic={args.data_dir / 'synthetic_quickstart'}"], None, None)
        datasets = build_datasets(list(self.cfg.DATA.TRAIN.DATASETS_NAME), paths,
                                  cls_ann_dir=self.cfg.DATA.TRAIN.CLS_ANN_DIR or None, label_seed=42, quiet=True)
        self.clock = Clock()
        loader = build_train_loader(self.cfg, datasets, training=True, seed=42)
        torch.manual_seed(42)
        model = build_model(self.cfg, training=True)
        self.loader = TimedLoader(loader, self.clock, args.iters)
        self.trainer = Trainer(self.cfg, model, TimedActor(HIPTrackActor(model, self.cfg), self.clock), self.loader,
                               None, RunPaths(save_dir / name, "profile"), torch.device("cpu"),
                               set_loader_epoch=lambda wrapped, epoch: set_epoch(wrapped.loader, epoch))
        self.trainer._enter_stage(0, 1)
        clock = self.clock

        def pre(*_):
            self._step_start = time.perf_counter(), time.process_time()

        def post(*_):
            clock.seconds["optimizer"] += time.perf_counter() - self._step_start[0]
            clock.cpu_seconds["optimizer"] += time.process_time() - self._step_start[1]

        self._hooks = (pre, post)
        self.epoch = 0

    def run(self) -> dict[str, dict[str, float]]:
        """One round of ``--iters`` iterations (a new epoch of samples): wall and CPU seconds per part
        and in total (``{"wall": {...}, "cpu": {...}}``)."""
        self.clock.seconds.clear()
        self.clock.cpu_seconds.clear()
        optimizer = self.trainer.optimizer
        handles = [optimizer.register_step_pre_hook(self._hooks[0]), optimizer.register_step_post_hook(self._hooks[1])]
        self.epoch += 1
        start, cpu_start = time.perf_counter(), time.process_time()
        with timed_backward(self.clock):
            self.trainer.train_epoch(self.epoch)
        totals = {"wall": time.perf_counter() - start, "cpu": time.process_time() - cpu_start}
        for handle in handles:
            handle.remove()
        out = {}
        for kind, seconds in (("wall", self.clock.seconds), ("cpu", self.clock.cpu_seconds)):
            parts = {k: seconds[k] for k in PARTS if k != "other"}
            parts["other"] = totals[kind] - sum(parts.values())
            parts["total"] = totals[kind]
            out[kind] = parts
        return out


def report(setup: Setup, rounds: list[dict], iters: int) -> tuple[float, float]:
    """Print the median breakdown of a configuration; returns its median samples per wall second
    and per CPU second."""
    batch = setup.cfg.TRAIN.BATCH_SIZE
    rates = {kind: [iters * batch / r[kind]["total"] for r in rounds] for kind in ("wall", "cpu")}
    print(f"\n[{setup.name}] batch {batch}: {statistics.median(rates['wall']):.1f} samples/s "
          f"(rounds: {', '.join(f'{r:.1f}' for r in rates['wall'])}), "
          f"{statistics.median(rates['cpu']):.1f} samples per CPU second "
          f"(rounds: {', '.join(f'{r:.1f}' for r in rates['cpu'])})")
    print(f"  {'part':<10} {'wall ms/it':>10} {'share':>6} {'CPU ms/it':>10} {'share':>6}")
    totals = {kind: statistics.median(r[kind]["total"] for r in rounds) / iters * 1000 for kind in ("wall", "cpu")}
    for part in (*PARTS, "total"):
        cells = []
        for kind in ("wall", "cpu"):
            ms = statistics.median(r[kind][part] for r in rounds) / iters * 1000
            cells.append(f"{ms:10.1f} {100 * ms / totals[kind]:5.1f}%")
        print(f"  {part:<10} {' '.join(cells)}")
    return statistics.median(rates["wall"]), statistics.median(rates["cpu"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--data_dir", type=Path, required=True,
                        help="folder holding synthetic_quickstart/ (as written by tracking/quickstart.py)")
    parser.add_argument("--variant", default="multitask", choices=sorted(VARIANT_OPTS))
    parser.add_argument("--opts", nargs="*", action="append", default=None, metavar="KEY=VALUE",
                        help="a configuration to compare (repeat for several); default: the config as it is")
    parser.add_argument("--iters", type=int, default=25, help="iterations per round")
    parser.add_argument("--rounds", type=int, default=4, help="timed rounds per configuration after one warm-up")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    configs = args.opts or [[]]
    print(f"variant {args.variant}, {args.iters} iterations per round, {args.rounds} rounds, "
          f"torch threads {torch.get_num_threads()}, native bf16: {'yes' if cpu_has_fast_bf16() else 'no'}")
    with tempfile.TemporaryDirectory() as tmp:
        setups = [Setup(" ".join(opts) or "config as is", opts, args, Path(tmp) / str(i))
                  for i, opts in enumerate(configs)]
        for setup in setups:
            setup.run()  # warm-up
        results: list[list[dict]] = [[] for _ in setups]
        for r in range(args.rounds):
            order = range(len(setups)) if r % 2 == 0 else reversed(range(len(setups)))
            for i in order:
                results[i].append(setups[i].run())
                last = results[i][-1]
                print(f"  round {r + 1} [{setups[i].name}]: {last['wall']['total']:.2f} s wall, "
                      f"{last['cpu']['total']:.2f} s CPU", flush=True)
        rates = [report(s, res, args.iters) for s, res in zip(setups, results)]
        if len(rates) > 1:
            print("\nrelative to the first configuration (samples per wall second / per CPU second): "
                  + ", ".join(f"{s.name}: {w / rates[0][0]:.2f}x / {c / rates[0][1]:.2f}x"
                              for s, (w, c) in zip(setups, rates)))


if __name__ == "__main__":
    main()
