"""Check that challenge labels are learnable: a small CNN on the training pipeline's crops.

    python tracking/probe_cls_labels.py --config hiptrack_cls_quickstart \
        --dataset_dir synthetic=./data/synthetic_quickstart \
        --opts DATA.TRAIN.CLS_ANN_DIR=./data/synthetic_quickstart/cls_annotations

Trains on DATA.TRAIN (its datasets, sampler, crops and labels), scores on DATA.VAL crops (their
labels come from DATA.VAL.CLS_ANN_DIR, or DATA.TRAIN.CLS_ANN_DIR when that is empty) against
always answering the training majority class. Exit code 0 when the probe beats the majority by
--min_margin, 3 when it does not, 2 on bad input, 1 when the probe fails.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys


from lib.config.hiptrack import load_config, resolve_experiment_config
from lib.pipeline.label_probe import format_score, train_probe, verdict
from lib.utils.atomic import atomic_write_text
from lib.utils.cli import (CliRun, add_debug_argument, parse_with_renamed_flags, renamed_flags_epilog, run_cli,
                           user_mistakes)
from lib.train.data.loader import build_train_loader
from lib.dataset.paths import DatasetPaths, add_path_arguments
from lib.dataset.registry import build_datasets
from lib.utils.runtime import resolve_device, seed_everything
from lib.challenges import CLASS_NAMES

logger = logging.getLogger("lib.probe")

RENAMED_FLAGS = {"--out": "--json"}
NOT_LEARNABLE = 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Train a small CNN on the training crops to check the challenge labels.",
                                     epilog=renamed_flags_epilog(RENAMED_FLAGS))
    parser.add_argument("--script", default="hiptrack", choices=["hiptrack"], help="experiment family")
    parser.add_argument("--config", default="hiptrack_cls", help="experiment name (experiments/<script>/) or YAML path")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    add_path_arguments(parser)
    parser.add_argument("--epochs", type=int, default=36, help="training epochs of DATA.TRAIN.SAMPLE_PER_EPOCH samples")
    parser.add_argument("--held_out_samples", type=int, default=600,
                        help="DATA.VAL samples scored at each evaluation (the same ones every time)")
    parser.add_argument("--eval_interval", type=int, default=4, help="score the held-out crops every N epochs")
    parser.add_argument("--min_margin", type=float, default=0.05,
                        help="accuracy above the majority class that counts as learnable")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: TRAIN.SEED)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write every score to this JSON file")
    add_debug_argument(parser)
    return parser


def probe_config(args: argparse.Namespace):
    """The experiment config with the held-out sample count and, if unset, the held-out label folder."""
    path = resolve_experiment_config(args.config, script=args.script)
    opts = list(args.opts) + [f"DATA.VAL.SAMPLE_PER_EPOCH={args.held_out_samples}"]
    cfg = load_config(path, opts=opts)
    if not cfg.DATA.TRAIN.CLS_ANN_DIR:
        raise FileNotFoundError("DATA.TRAIN.CLS_ANN_DIR is empty: the probe needs challenge labels "
                                "(--opts DATA.TRAIN.CLS_ANN_DIR=DIR)")
    if cfg.DATA.VAL.CLS_ANN_DIR:
        return cfg
    return load_config(path, opts=opts + [f"DATA.VAL.CLS_ANN_DIR={cfg.DATA.TRAIN.CLS_ANN_DIR}"])


def run(args: argparse.Namespace, cli_run: CliRun) -> int:
    """Check the inputs and build the loaders, then train and score the probe; the exit code."""
    cfg = probe_config(args)
    seed = cfg.TRAIN.SEED if args.seed is None else args.seed
    seed_everything(seed)
    device = resolve_device(args.device, 0)
    with user_mistakes(ValueError):  # dataset arguments, names and label folders
        paths = DatasetPaths.from_env(args.dataset_dir, args.paths, args.data_dir)
        loaders = []
        for split, training in ((cfg.DATA.TRAIN, True), (cfg.DATA.VAL, False)):
            datasets = build_datasets(list(split.DATASETS_NAME), paths, cls_ann_dir=split.CLS_ANN_DIR,
                                      label_seed=seed)
            loaders.append(build_train_loader(cfg, datasets, training=training, seed=seed))
    cli_run.start()
    logger.info("probe: %d epochs x %d training samples, %d held-out samples, device %s", args.epochs,
                cfg.DATA.TRAIN.SAMPLE_PER_EPOCH, cfg.DATA.VAL.SAMPLE_PER_EPOCH, device)
    scores = train_probe(*loaders, num_classes=cfg.MODEL.CLS_HEAD.NUM_CLASSES, epochs=args.epochs, device=device,
                         eval_interval=args.eval_interval,
                         log=lambda s: logger.info("%s", format_score(s, CLASS_NAMES)))
    best = max(scores, key=lambda s: s.margin)
    logger.info("best %s", format_score(best, CLASS_NAMES))
    logger.info("%s", verdict(best, args.min_margin))
    if args.json:
        record = {"config": args.config, "opts": list(args.opts), "seed": seed, "epochs": args.epochs,
                  "best_epoch": best.epoch, "scores": [s.as_dict() for s in scores]}
        atomic_write_text(args.json, json.dumps(record, indent=2) + "\n")
        logger.info("scores written to %s", args.json)
    return 0 if best.margin >= args.min_margin else NOT_LEARNABLE


def main(argv: list[str] | None = None) -> int:
    """Run the probe; the exit code (0 learnable, 3 not, 2 bad input, 1 the probe failed)."""
    args = parse_with_renamed_flags(build_parser(), argv, RENAMED_FLAGS)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_cli(lambda cli_run: run(args, cli_run), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
