"""Ablation of the auxiliary challenge task: train, test and score model variants over seeds, same budget.

    python tracking/ablation.py --config hiptrack_cls_quickstart --train_dataset SYNTHETIC_train \\
        --test_dataset synthetic_test --val_dataset synthetic_val --dataset_dir synthetic=data/synthetic_maritime \\
        --cls_ann_dir data/synthetic_maritime/cls_annotations --save_dir output/ablation --seeds 0 1 2

Trained variants: baseline (plain HIPTrack), multitask (challenge head as an auxiliary loss), fusion /
film / channel_gate (head features condition the box head's input: added, FiLM, a channel gate).
Test-time variants reuse the multitask checkpoint with a challenge-aware tracking policy driven by the
head (multitask+memory_gate, +search_adapt, +damping; the policy's threshold is chosen on
--val_dataset by AO) or by the ground-truth flags (oracle+...). Each trained variant runs training then
testing in a child process (python -m lib.train.run / lib.test.run, the code of tracking/train.py /
test.py; output in <save_dir>/seed<s>/<variant>/ablation.log, epoch progress read from the trainer's
metrics.jsonl); a variant whose tested checkpoint exists is not trained again unless --retrain. Prints
the tables (mean +- std over seeds; each variant minus the baseline with a 95% paired-bootstrap
interval, overall and per challenge), writes <save_dir>/ablation.json (every seed's per-sequence
scores) and PNG plots in <save_dir>/plots/. Exit code 2 on bad input, 1 when a step fails (docs/README.md).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lib.pipeline.ablation import (DEFAULT_VARIANTS, INPUT_ERRORS, VARIANTS, AblationSettings, add_jobs_argument,
                                   report_lines, run_ablation)
from lib.test.evaluation.results import TEST_DATASETS
from lib.dataset.paths import add_path_arguments
from lib.utils.cli import CliRun, add_debug_argument, parse_with_renamed_flags, renamed_flags_epilog, run_cli

RENAMED_FLAGS = {"--out_dir": "--save_dir"}


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1] + "\n\n" + renamed_flags_epilog(RENAMED_FLAGS))
    parser.add_argument("--config", required=True, help="experiment name (experiments/hiptrack/) or YAML path")
    parser.add_argument("--train_dataset", nargs="+", default=None, metavar="NAME",
                        help="DATA.TRAIN.DATASETS_NAME, equal ratios (default: the config's)")
    parser.add_argument("--test_dataset", required=True, choices=list(TEST_DATASETS), help="tracking/test.py dataset")
    parser.add_argument("--val_dataset", default=None, choices=list(TEST_DATASETS),
                        help="validation split: policy thresholds and the smoothing factor are chosen there "
                             "(default: none, no tuning)")
    parser.add_argument("--save_dir", required=True, type=Path, help="everything goes to <save_dir>/seed<s>/<variant>/")
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=list(VARIANTS),
                        help=f"variants (default: {' '.join(DEFAULT_VARIANTS)}); the model a test-time variant "
                             "needs is added")
    parser.add_argument("--cls_ann_dir", type=Path, default=None, metavar="DIR",
                        help="JSONL challenge labels: training targets, per-challenge table, challenge accuracy")
    parser.add_argument("--seed", type=int, default=42, help="training seed of every variant (default 42)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                        help="run every variant once per seed (overrides --seed), e.g. --seeds 0 1 2")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--threads", type=int, default=0, help="tracking/test.py worker processes (0: in-process)")
    parser.add_argument("--epoch", type=int, default=None, help="checkpoint epoch to test (default TEST.EPOCH)")
    parser.add_argument("--retrain", action="store_true", help="train even when the tested checkpoint exists")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides, every variant")
    add_path_arguments(parser)
    add_jobs_argument(parser)
    add_debug_argument(parser)
    return parser


def absolute_path_args(args: argparse.Namespace) -> tuple[str, ...]:
    """``--dataset_dir`` / ``--paths`` / ``--data_dir`` for the child scripts, paths made absolute so
    the logged commands can be rerun from anywhere."""
    out: list[str] = []
    for value in args.dataset_dir:
        kind, sep, path = value.partition("=")
        out += ["--dataset_dir", f"{kind}={Path(path).expanduser().absolute()}" if sep else value]
    for flag, value in (("--paths", args.paths), ("--data_dir", args.data_dir)):
        if value:
            out += [flag, str(Path(value).expanduser().absolute())]
    return tuple(out)


def settings_from_args(args: argparse.Namespace) -> AblationSettings:
    """The :class:`AblationSettings` of the parsed command line."""
    config = args.config
    if config.endswith((".yaml", ".yml")):
        config = str(Path(config).expanduser().absolute())
    train_opts: tuple[str, ...] = ()
    if args.train_dataset:
        train_opts = (f"DATA.TRAIN.DATASETS_NAME=[{','.join(args.train_dataset)}]",
                      f"DATA.TRAIN.DATASETS_RATIO=[{','.join('1' for _ in args.train_dataset)}]")
    return AblationSettings(
        config=config, train_dataset_opts=train_opts, test_dataset=args.test_dataset,
        out_dir=args.save_dir.expanduser().absolute(),
        cls_ann_dir=args.cls_ann_dir.expanduser().absolute() if args.cls_ann_dir else None,
        path_args=absolute_path_args(args), seed=args.seed, device=args.device, threads=args.threads, jobs=args.jobs,
        opts=tuple(args.opts), epoch=args.epoch, retrain=args.retrain, seeds=tuple(args.seeds or ()),
        val_dataset=args.val_dataset)


def main(argv: list[str] | None = None) -> int:
    """Run the ablation; the exit code (2 bad input, 1 a failed step)."""
    parser = build_parser()
    args = parse_with_renamed_flags(parser, argv, RENAMED_FLAGS)
    if args.threads < 0:
        parser.error("--threads must be >= 0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def ablate(run: CliRun) -> int:
        result = run_ablation(settings_from_args(args), args.variants, on_start=run.start)
        print("\n".join(report_lines(result)))
        return 0

    return run_cli(ablate, debug=args.debug, user_errors=INPUT_ERRORS)


if __name__ == "__main__":
    sys.exit(main())
