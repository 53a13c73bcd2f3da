"""Training from the command line: arguments, config, logging, data, model, actor, trainer.

    python -m lib.train.run --script hiptrack --config hiptrack_cls --save_dir ./output --mode single
    python tracking/train.py ...   # the same entry point (a thin wrapper)

:func:`main` parses the arguments; with ``--mode multiple`` it re-launches this module through
``torch.distributed.run`` (torchrun, ``--module lib.train.run``), and each worker process lands
in :func:`run_training` with the process-group environment set (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.distributed as dist

from lib.config.hiptrack import load_config, resolve_experiment_config
from lib.dataset.paths import add_path_arguments
from lib.utils.cli import (EXIT_FAILED, EXIT_USAGE, CliRun, UsageError, add_debug_argument, run_cli,
                           sigterm_as_interrupt, user_mistakes)
from lib.utils.locks import hold_lock
from lib.utils.runtime import git_hash, resolve_device, seed_everything

logger = logging.getLogger("lib.train")

TRAIN_MODULE = "lib.train.run"  # what torchrun starts in every worker process
LAUNCHER_ONLY = ("--nproc_per_node", "--nnodes", "--node_rank", "--master_addr", "--master_port")


@contextlib.contextmanager
def training_logging(rank: int, level: str = "INFO") -> Iterator[Callable[[Path], None]]:
    """Console logging for a run (ranks other than 0: warnings and errors only).

    Yields a function that adds the run's log file (rank 0 only). The root logger's previous
    handlers and level are restored on exit, so runs can follow one another in one process.
    """
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    fmt = logging.Formatter(f"%(asctime)s [rank {rank}] %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    added: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    added[0].setFormatter(fmt)
    root.handlers = list(added)
    root.setLevel(getattr(logging, level) if rank == 0 else logging.WARNING)

    def add_log_file(log_file: Path) -> None:
        if rank != 0:
            return
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(log_file)
        handler.setFormatter(fmt)
        root.addHandler(handler)
        added.append(handler)

    try:
        yield add_log_file
    finally:
        for handler in added:
            handler.close()
        root.handlers = saved_handlers
        root.setLevel(saved_level)


def init_distributed(device: torch.device):
    """Join the process group torchrun prepared (NCCL on GPU, gloo on CPU); returns DistInfo."""
    from lib.train.trainer import DistInfo
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return DistInfo()
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size())


def run_training(args: argparse.Namespace, run: CliRun) -> int:
    """Train as ``args`` say inside the error boundary of :func:`main` (errors propagate to it)."""
    rank = int(os.environ.get("RANK", "0"))
    with training_logging(rank, args.log_level) as add_log_file, sigterm_as_interrupt():
        return _train(args, add_log_file, run)


def dataset_paths(args: argparse.Namespace):
    """The dataset roots of ``--dataset_dir`` / ``--paths`` / ``--data_dir`` (a bad one: UsageError)."""
    from lib.dataset.paths import DatasetPaths
    with user_mistakes(ValueError):
        return DatasetPaths.from_env(args.dataset_dir, args.paths, args.data_dir)


def refuse_fresh_run_over_checkpoints(paths, resume: str | None, overwrite: bool) -> None:
    """A new run into a run folder holding checkpoints would replace some and keep others (which
    ``--resume`` and ``tracking/test.py`` then pick up): refused unless ``--resume`` / ``--overwrite``."""
    from lib.utils.runs import epoch_checkpoints
    found = epoch_checkpoints(paths.checkpoint_dir)
    if not found or resume or overwrite:
        return
    raise UsageError(f"{paths.checkpoint_dir} already holds {len(found)} checkpoint(s) of {paths.config_name} "
                     f"(epochs {found[0][0]}..{found[-1][0]}): pass --resume to continue that run, --overwrite to "
                     "delete its checkpoints, metrics.jsonl and TensorBoard events and train again, or choose "
                     "another --save_dir")


def _train(args: argparse.Namespace, add_log_file: Callable[[Path], None], run: CliRun) -> int:
    """Check the inputs, take the run lock (rank 0), build everything, resume, then train.

    Nothing of the run is written before the inputs, the run folder and a ``--resume`` checkpoint
    are checked: a failed start leaves the folder as it was (the log aside).
    """
    from lib.models import build_model
    from lib.train.actors.hiptrack_cls import HIPTrackActor
    from lib.train.data.loader import build_train_loader, set_epoch
    from lib.dataset.registry import build_datasets
    from lib.train.trainer import Trainer
    from lib.utils.runs import RunPaths, clear_run

    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    config_path = resolve_experiment_config(args.config, script=args.script)
    paths = RunPaths(Path(args.save_dir).expanduser().resolve(), config_path.stem, args.script)
    with user_mistakes(OSError, context=f"cannot write the run's log under --save_dir {paths.save_dir}: "):
        add_log_file(paths.log_file)  # before the lock: a stale lock's takeover is logged
    with _run_lock(paths, rank == 0):
        if rank == 0:  # only once the lock is ours: a run refused for it writes nothing into the holder's log
            run.use_log_file(paths.log_file)
        cfg = load_config(config_path, opts=args.opts)
        device = resolve_device(args.device, local_rank)
        data_paths = dataset_paths(args)
        if rank == 0:
            refuse_fresh_run_over_checkpoints(paths, args.resume, args.overwrite)
        dist_info = init_distributed(device)
        try:
            seed = cfg.TRAIN.SEED if args.seed is None else args.seed
            seed_everything(seed + dist_info.rank)
            if dist_info.is_main:
                _log_header(args, cfg, config_path, device, dist_info, seed)
            loaders = {}
            for split, training in (("TRAIN", True), ("VAL", False)):
                split_cfg = cfg.DATA[split]
                if split == "VAL" and args.no_val:
                    continue
                # soft targets (multi-label mode) replace the 0 / 1 multi-hot vectors at the source; every
                # sequence is checked here, before the first step (ranks other than 0 check quietly)
                with user_mistakes(ValueError):  # names and label folders of the config, the data on disk
                    datasets = build_datasets(list(split_cfg.DATASETS_NAME), data_paths,
                                              cls_ann_dir=split_cfg.CLS_ANN_DIR or None, label_seed=seed,
                                              soft_targets=cfg.TRAIN.CLS_SOFT_TARGETS,
                                              on_bad_sequence=cfg.DATA.ON_BAD_SEQUENCE, quiet=not dist_info.is_main)
                loaders[split] = build_train_loader(cfg, datasets, training=training, seed=seed,
                                                    epoch_sampler_rank=dist_info.rank,
                                                    world_size=dist_info.world_size)
            model = build_model(cfg, training=True)
            actor = HIPTrackActor(model, cfg)
            trainer = Trainer(cfg, model, actor, loaders["TRAIN"], loaders.get("VAL"), paths, device, dist_info,
                              set_loader_epoch=set_epoch)
            if args.resume:
                trainer.resume(args.resume)  # read and checked before anything is written
            if args.overwrite and dist_info.is_main:
                removed = clear_run(paths)
                logger.warning("--overwrite: removed the previous run's checkpoints, metrics.jsonl and TensorBoard "
                               "events (%d paths) under %s", len(removed), paths.save_dir)
            run.start()
            if dist_info.is_main:
                cfg.dump_yaml(paths.checkpoint_dir / "config.yaml")
            trainer.fit()
            if dist_info.is_main:
                logger.info("training finished: %s", paths.checkpoint_dir)
            return 0
        finally:
            if dist_info.enabled and dist.is_initialized():
                dist.destroy_process_group()


def _run_lock(paths, take: bool) -> contextlib.AbstractContextManager:
    """The run's lock (:attr:`RunPaths.lock_file`) when ``take`` (rank 0 only), else nothing."""
    if not take:
        return contextlib.nullcontext()
    with user_mistakes(OSError, context=f"cannot write to --save_dir {paths.save_dir}: "):
        paths.checkpoint_dir.mkdir(parents=True, exist_ok=True)
    return hold_lock(paths.lock_file, hint="two trainings of one run would overwrite each other's checkpoints: wait "
                                          "for it to finish, or train into another --save_dir")


def _log_header(args: argparse.Namespace, cfg, config_path: Path, device, dist_info, seed: int) -> None:
    """What a run logs first: command, arguments, versions, device, process group, config."""
    logger.info("command: %s", " ".join(sys.argv))
    logger.info("arguments: %s", " ".join(f"--{k} {v}" for k, v in vars(args).items()))
    logger.info("python %s, torch %s, %s, git %s, device %s, world size %d, seed %d", platform.python_version(),
                torch.__version__, platform.platform(), git_hash(), device, dist_info.world_size, seed)
    if dist_info.enabled:
        logger.info("process group: %s, rendezvous %s:%s", dist.get_backend(),
                    os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT"))
    logger.info("config %s:\n%s", config_path, cfg)


def launch_distributed(args: argparse.Namespace, worker_argv: list[str]) -> int:
    """Run this module (:data:`TRAIN_MODULE`) in ``--nproc_per_node`` processes through
    torch.distributed.run (in this process), so the workers do not depend on where a script is.

    Single node without ``--master_addr``: ``--standalone``, a rendezvous on a free port of
    localhost. Returns 0 when every worker succeeded, else 1 (torchrun names the failed ranks).
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun_main

    launcher = [f"--nproc_per_node={args.nproc_per_node}", f"--nnodes={args.nnodes}"]
    if args.nnodes == 1 and args.master_addr is None:
        launcher.append("--standalone")
    else:
        launcher += [f"--node_rank={args.node_rank}", f"--master_addr={args.master_addr or '127.0.0.1'}",
                     f"--master_port={args.master_port}"]
    cmd = [*launcher, "--module", TRAIN_MODULE, *worker_argv]
    logger.info("launching: torchrun %s", " ".join(cmd))
    try:
        torchrun_main(cmd)
    except ChildFailedError as e:
        logger.error("%d of %d worker process(es) failed: %s", len(e.failures), args.nproc_per_node * args.nnodes,
                     ", ".join(f"rank {rank} exit code {f.exitcode}" for rank, f in sorted(e.failures.items())))
        # every failed worker refused its input (e.g. rank 0 found the run locked): the command did too
        return EXIT_USAGE if all(f.exitcode == EXIT_USAGE for f in e.failures.values()) else EXIT_FAILED
    return 0


def launch(args: argparse.Namespace, argv: list[str], run: CliRun) -> int:
    """Check the config and the dataset arguments once, here, then start the workers: a mistake is
    reported in one line instead of once per worker."""
    load_config(resolve_experiment_config(args.config, script=args.script), opts=args.opts)
    dataset_paths(args)
    run.start()
    return launch_distributed(args, worker_argv(argv))


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of training runs and of their torchrun workers."""
    parser = argparse.ArgumentParser(description="Train HIPTrack / HIPTrack-CLS.")
    parser.add_argument("--script", default="hiptrack", choices=["hiptrack"], help="experiment family")
    parser.add_argument("--config", default="hiptrack_cls", help="experiment name (experiments/<script>/) or YAML path")
    parser.add_argument("--save_dir", default="./output", help="checkpoints/, logs/ and tensorboard/ go here")
    parser.add_argument("--mode", default="single", choices=["single", "multiple"],
                        help="one process, or torch.distributed with --nproc_per_node processes per node")
    parser.add_argument("--nproc_per_node", type=int, default=1, help="processes per node (--mode multiple)")
    parser.add_argument("--nnodes", type=int, default=1, help="nodes (multi-node --mode multiple)")
    parser.add_argument("--node_rank", type=int, default=0, help="rank of this node (multi-node)")
    parser.add_argument("--master_addr", default=None, help="address of node 0 (multi-node)")
    parser.add_argument("--master_port", type=int, default=29500, help="port on node 0 (multi-node)")
    parser.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CHECKPOINT",
                        help="continue from the newest checkpoint of this run, or from the file given")
    parser.add_argument("--overwrite", action="store_true",
                        help="start again in a run folder that holds checkpoints: delete them, metrics.jsonl and "
                             "the TensorBoard events first (a fresh run there is refused without it)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: TRAIN.SEED)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    add_path_arguments(parser)
    parser.add_argument("--no_val", action="store_true", help="skip validation (DATA.VAL)")
    parser.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    add_debug_argument(parser)
    return parser


def worker_argv(argv: list[str]) -> list[str]:
    """The arguments a torchrun worker gets: everything but the launcher's own options."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in LAUNCHER_ONLY:
            skip = "=" not in arg
            continue
        out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    """Train (``--mode single`` or inside a torchrun worker) or launch the workers; the exit code
    (:mod:`lib.utils.cli`: 0 done, 1 failed, 2 bad input, 130 interrupted)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume and args.overwrite:
        parser.error("--resume continues the run, --overwrite deletes it and starts again: pass one of them")
    if args.mode == "multiple" and "LOCAL_RANK" not in os.environ:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
        return run_cli(lambda run: launch(args, argv, run), debug=args.debug)
    return run_cli(lambda run: run_training(args, run), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
