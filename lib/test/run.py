"""Run a tracker over a test benchmark and write its result files (resumable).

    python tracking/test.py hiptrack_cls hiptrack_cls --dataset got10k_test --threads 4
    python tracking/test.py hiptrack hiptrack_got --dataset lasot --epoch 100 --dataset_dir lasot=/data/lasot
    python tracking/test.py hiptrack_cls hiptrack_cls --dataset mvtd_test --save_cls --checkpoint ckpt.pth.tar

Results go to ``<save_dir>/test/tracking_results/<tracker>/<param>/<dataset>/`` (``<param>`` is the
config file's stem) with ``checkpoint.json``, the checkpoint they come from (path, epoch, sha256);
for got10k_test also ``<that folder>.zip`` for the evaluation server. Sequences with results are
skipped; results of another checkpoint are never mixed in (refused, exit code 2, unless
``--overwrite`` clears the folder); failed sequences are listed and make the exit code 1.
"""
from __future__ import annotations

import argparse
import logging
import platform
import sys
from pathlib import Path

import torch

from lib.config.hiptrack import load_config, resolve_experiment_config
from lib.test.evaluation.provenance import CheckpointRecord, check_results_folder, clear_results, write_record
from lib.test.evaluation.results import TEST_DATASETS, results_dir
from lib.test.evaluation.runner import PROGRESS_FRAMES, PROGRESS_SECONDS, RunSettings, run_dataset
from lib.test.tracker import TRACKERS
from lib.test.tracker.policies import ChallengePolicies
from lib.dataset.paths import DatasetPaths, add_path_arguments
from lib.dataset.registry import build_dataset
from lib.utils.cli import CliRun, UsageError, add_debug_argument, run_cli, user_mistakes
from lib.utils.runtime import git_hash, resolve_device
from lib.utils.runs import RunPaths

# the name the script's log lines always had (``__name__`` is ``__main__`` under ``python -m``)
logger = logging.getLogger("tracking.test")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tracker_name", choices=sorted(TRACKERS), help="hiptrack (plain) or hiptrack_cls")
    parser.add_argument("tracker_param", help="experiment name under experiments/hiptrack/ or a YAML path")
    parser.add_argument("--dataset", default="got10k_test", choices=list(TEST_DATASETS), help="test dataset")
    parser.add_argument("--sequence", action="append", default=None, metavar="NAME",
                        help="only this sequence (repeatable)")
    parser.add_argument("--epoch", type=int, default=None, help="checkpoint epoch (default: TEST.EPOCH)")
    parser.add_argument("--checkpoint", default=None, metavar="PATH",
                        help="checkpoint file (default: <save_dir>/checkpoints/train/hiptrack/<param>/"
                             "HIPTrack_ep<epoch>.pth.tar)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--save_dir", default="output", help="output root (default: ./output)")
    parser.add_argument("--threads", type=int, default=0,
                        help="worker processes over sequences (0 or 1: in this process)")
    parser.add_argument("--save_cls", action="store_true",
                        help="also write per-frame challenge predictions <seq>_cls.txt (hiptrack_cls only)")
    parser.add_argument("--cls_ann_dir", default=None, type=Path, metavar="DIR",
                        help="JSONL challenge labels (<DIR>/<seq>/<seq>.jsonl) whose flags drive the policies with "
                             "TEST.POLICY.SOURCE oracle (required there, unused otherwise)")
    parser.add_argument("--overwrite", action="store_true",
                        help="clear the results folder first (needed when it holds results of another checkpoint)")
    parser.add_argument("--progress_every", type=int, default=PROGRESS_FRAMES, metavar="N",
                        help=f"log progress within a sequence every N frames (and every {PROGRESS_SECONDS:.0f} s; "
                             f"a bar instead on a terminal, in this process); 0: none (default {PROGRESS_FRAMES})")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    add_path_arguments(parser)
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.threads < 0:
        parser.error("--threads must be >= 0")
    if args.progress_every < 0:
        parser.error("--progress_every must be >= 0")
    return args


def default_checkpoint(save_dir: str | Path, param: str, epoch: int) -> Path:
    """The trainer's checkpoint of ``epoch`` for config ``param`` under ``save_dir``."""
    return RunPaths(Path(save_dir), param).checkpoint(epoch)


def oracle_labels_dir(cfg, cls_ann_dir: Path | None) -> Path | None:
    """The label folder the test dataset is built with: ``--cls_ann_dir`` when the policies read ground truth
    (``TEST.POLICY.SOURCE`` oracle; then it is required), else None."""
    if not ChallengePolicies.from_config(cfg).uses_oracle:
        if cls_ann_dir is not None:
            logger.warning("--cls_ann_dir is only used by policies with TEST.POLICY.SOURCE oracle; ignoring it")
        return None
    if cls_ann_dir is None:
        raise UsageError("TEST.POLICY.SOURCE oracle drives the policies with the ground-truth challenge flags "
                         "of each frame: pass their folder with --cls_ann_dir DIR")
    if not cls_ann_dir.is_dir():
        raise UsageError(f"--cls_ann_dir {cls_ann_dir} is not a folder")
    return cls_ann_dir


def checkpoint_path(args: argparse.Namespace, param: str, epoch: int) -> Path:
    """``--checkpoint``, else the trainer's checkpoint of ``epoch`` under ``--save_dir``; it must exist."""
    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint(args.save_dir, param, epoch)
    if not checkpoint.is_file():
        raise UsageError(f"checkpoint {checkpoint} not found. Pass the file with --checkpoint PATH, or "
                         f"the epoch of a checkpoint under --save_dir with --epoch N (looked for epoch {epoch} "
                         f"under {Path(args.save_dir).absolute()})")
    return checkpoint


def loaded_epoch(record: CheckpointRecord, requested: int, args: argparse.Namespace) -> str:
    """The epoch the header shows: the one stored in the file (a warning when ``--epoch`` asked for another)."""
    if record.epoch is None:
        return "epoch unknown"
    if args.epoch is not None and not args.checkpoint and record.epoch != requested:
        logger.warning("%s holds epoch %d, not the requested %d", record.path, record.epoch, requested)
    return f"epoch {record.epoch}"


def main(argv: list[str] | None = None) -> int:
    """Run the test; returns the exit code (1 if any sequence failed; :mod:`lib.utils.cli`)."""
    args = parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_cli(lambda run: run_test(args, argv, run), debug=args.debug)


def run_test(args: argparse.Namespace, argv: list[str] | None, run: CliRun) -> int:
    """Check the inputs and the results folder, then track (inside the error boundary of :func:`main`)."""
    logger.info("command: %s", " ".join(sys.argv[:1] + (argv if argv is not None else sys.argv[1:])))
    config_path = resolve_experiment_config(args.tracker_param)
    param = config_path.stem
    cfg = load_config(config_path, opts=args.opts)
    logger.info("python %s, torch %s, git %s; config %s", platform.python_version(), torch.__version__,
                git_hash(), config_path)
    logger.debug("resolved config:\n%s", cfg)
    cls_ann_dir = oracle_labels_dir(cfg, args.cls_ann_dir)
    epoch = args.epoch if args.epoch is not None else cfg.TEST.EPOCH
    checkpoint = checkpoint_path(args, param, epoch)
    device = str(resolve_device(args.device, local_rank=0))
    settings = RunSettings(args.tracker_name, str(config_path), tuple(args.opts), str(checkpoint.absolute()),
                           device, args.save_cls, args.progress_every)
    spec = TEST_DATASETS[args.dataset]
    out_dir = results_dir(args.save_dir, args.tracker_name, param, args.dataset).absolute()
    with user_mistakes(ValueError):  # dataset arguments, root and annotations
        dataset = build_dataset(spec.registry_name, DatasetPaths.from_env(args.dataset_dir, args.paths, args.data_dir),
                                cls_ann_dir=cls_ann_dir)
    record = CheckpointRecord.of(checkpoint)
    check_results_folder(out_dir, record, args.overwrite)
    logger.info("%s / %s (%s, %s) on %s: %d sequences -> %s", args.tracker_name, param,
                loaded_epoch(record, epoch, args), checkpoint, args.dataset, len(dataset), out_dir)

    def start() -> None:  # the tracker is built: (clear the folder,) record the checkpoint, then track
        if args.overwrite:
            clear_results(out_dir)
        write_record(out_dir, record)
        run.start()

    try:
        summary = run_dataset(settings, dataset, out_dir, spec.result_format, args.sequence, args.threads,
                              write_zip=args.dataset == "got10k_test", on_start=start)
    except ValueError as e:  # before tracking: an unknown sequence, a checkpoint that does not fit the tracker
        if run.started:
            raise
        raise UsageError(str(e)) from e
    for outcome in summary.failed:
        logger.error("failed: %s: %s", outcome.name, outcome.error)
    print(f"{args.tracker_name} {param} on {args.dataset}: {summary.line()}")
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
