"""Quick start on the embedded default: generate the synthetic maritime dataset, train and test
plain HIPTrack against HIPTrack-CLS (auxiliary challenge task), and compare them.

    python tracking/quickstart.py
    python tracking/quickstart.py --all --seeds 0 1 2      # every variant of the study, three seeds

Steps: (1) the dataset (train / test splits and a validation split planned with its own seed) is
generated into --synthetic_dir, or reused when it was generated with the same settings (recorded in
<synthetic_dir>/quickstart_dataset.json; other settings need --overwrite); (2) tracking/ablation.py's
pipeline runs the variants (default baseline and multitask; --fusion, --policies, --all or --variants
for more) once per seed with the hiptrack_cls_quickstart config, choosing policy thresholds and the
smoothing factor on the validation split; (3) the tables (mean +- std over seeds, differences to the
baseline with 95% paired-bootstrap intervals), a one-line verdict and the written files are printed.
What will run, and a time estimate, are printed first. Training is skipped for variants whose
checkpoint exists (unless --retrain, or the dataset was just generated). On the CPU the trainings run
side by side, one per core with one thread each (--jobs N: N at a time; 1: one at a time).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

from lib.pipeline.ablation import (INPUT_ERRORS, VARIANTS, AblationSettings, add_jobs_argument, report_lines,
                                   run_ablation)
from lib.synthetic import generate_dataset
from lib.utils.atomic import atomic_write_text

logger = logging.getLogger("quickstart")

# generator settings of the quick-start dataset: 72 train + 24 held-out test sequences (with 36 train
# sequences the challenge head memorised their look and fell below the majority class on the test split)
QUICKSTART_SEQUENCES = 96
QUICKSTART_FRAMES = 50
QUICKSTART_SIZE = "320x240"
QUICKSTART_SEED = 0
QUICKSTART_VAL_SEQUENCES = 24  # validation split, planned with seed QUICKSTART_SEED + 1

CONFIG = "hiptrack_cls_quickstart"
DEFAULT_VARIANTS = ("baseline", "multitask")
POLICY_VARIANTS = tuple(n for n in VARIANTS if n.startswith(("multitask+", "oracle+")))
ALL_VARIANTS = ("baseline", "multitask", *POLICY_VARIANTS, "film")  # the study recorded in README
SETTINGS_FILE = "quickstart_dataset.json"  # generator settings of the dataset in --synthetic_dir
from lib.utils.cli import CliRun, add_debug_argument, parse_with_renamed_flags, renamed_flags_epilog, run_cli

RENAMED_FLAGS = {"--out_dir": "--save_dir", "--data_dir": "--synthetic_dir"}


class DatasetMismatchError(ValueError):
    """--synthetic_dir holds something other than the dataset asked for."""


def parse_size(text: str) -> tuple[int, int]:
    """``"320x240"`` -> ``(320, 240)``."""
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1] + "\n\n" + renamed_flags_epilog(RENAMED_FLAGS))
    parser.add_argument("--save_dir", type=Path, default=Path("output/quickstart"),
                        help="checkpoints, results, ablation.json, plots (default ./output/quickstart)")
    parser.add_argument("--synthetic_dir", type=Path, default=Path("data/synthetic_quickstart"),
                        help="the generated dataset (default ./data/synthetic_quickstart)")
    parser.add_argument("--sequences", type=int, default=QUICKSTART_SEQUENCES,
                        help=f"generated sequences (default {QUICKSTART_SEQUENCES})")
    parser.add_argument("--frames", type=int, default=QUICKSTART_FRAMES,
                        help=f"frames per generated sequence (default {QUICKSTART_FRAMES})")
    parser.add_argument("--overwrite", action="store_true",
                        help="regenerate the dataset in --synthetic_dir when its settings differ")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    parser.add_argument("--seed", type=int, default=42, help="training seed (default 42)")
    parser.add_argument("--threads", type=int, default=0, help="test worker processes (0: in-process)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, metavar="SEED",
                        help="run every variant once per training seed (overrides --seed), e.g. --seeds 0 1 2")
    parser.add_argument("--fusion", action="store_true", help="also run the fusion variant")
    parser.add_argument("--policies", action="store_true",
                        help="also run the challenge-aware tracking policies, predicted and oracle (test time only)")
    parser.add_argument("--all", action="store_true", help=f"run {' '.join(ALL_VARIANTS)}")
    parser.add_argument("--variants", nargs="+", default=None, choices=list(VARIANTS),
                        help="exactly these variants (overrides --fusion / --policies / --all)")
    parser.add_argument("--retrain", action="store_true", help="train even when checkpoints exist")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for every variant (e.g. a smaller budget)")
    add_jobs_argument(parser)
    add_debug_argument(parser)
    return parser


def ensure_dataset(data_dir: Path, sequences: int, frames: int, overwrite: bool) -> bool:
    """Generate the dataset unless ``data_dir`` already holds it with these settings; True if generated.

    Raises :class:`DatasetMismatchError` when ``data_dir`` holds other data and not ``overwrite``.
    """
    wanted = {"sequences": sequences, "frames": frames, "size": QUICKSTART_SIZE, "seed": QUICKSTART_SEED,
              "val_sequences": QUICKSTART_VAL_SEQUENCES}
    settings_file = data_dir / SETTINGS_FILE
    if settings_file.is_file() and json.loads(settings_file.read_text(encoding="utf-8")) == wanted:
        logger.info("reusing the dataset in %s (%s)", data_dir, wanted)
        return False
    if data_dir.is_dir() and any(data_dir.iterdir()):
        found = settings_file.read_text(encoding="utf-8").strip() if settings_file.is_file() else "unknown contents"
        if not overwrite:
            raise DatasetMismatchError(f"{data_dir} holds a dataset generated with {found}, not {wanted}: pass "
                                       f"--overwrite to regenerate it, or choose another --synthetic_dir")
        logger.info("regenerating %s (was %s)", data_dir, found)
    start = time.perf_counter()
    generate_dataset(data_dir, sequences=sequences, frames=frames, seed=QUICKSTART_SEED,
                     size=parse_size(QUICKSTART_SIZE), overwrite=True, val_sequences=QUICKSTART_VAL_SEQUENCES)
    atomic_write_text(settings_file, json.dumps(wanted) + "\n")  # last: a half-written dataset is not reused
    logger.info("generated %s in %.1f s", data_dir, time.perf_counter() - start)
    return True


def settings_from_args(args: argparse.Namespace, retrain: bool) -> AblationSettings:
    """The ablation settings of the quick start (paths absolute, as the logged commands show them)."""
    data_dir = args.synthetic_dir.expanduser().absolute()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return AblationSettings(
        config=CONFIG,
        train_dataset_opts=("DATA.TRAIN.DATASETS_NAME=[SYNTHETIC_train]", "DATA.TRAIN.DATASETS_RATIO=[1]"),
        test_dataset="synthetic_test", val_dataset="synthetic_val", out_dir=args.save_dir.expanduser().absolute(),
        cls_ann_dir=data_dir / "cls_annotations", path_args=("--dataset_dir", f"synthetic={data_dir}"),
        seed=args.seed, seeds=tuple(args.seeds or ()), device=device, threads=args.threads, jobs=args.jobs,
        opts=tuple(args.opts),
        retrain=retrain)


def chosen_variants(args: argparse.Namespace) -> list[str]:
    """The variants of the command line: --variants as given, else --all, else the default plus --fusion /
    --policies."""
    if args.variants:
        return list(args.variants)
    if args.all:
        return list(ALL_VARIANTS)
    return [*DEFAULT_VARIANTS, *(["fusion"] if args.fusion else []), *(POLICY_VARIANTS if args.policies else [])]


def main(argv: list[str] | None = None) -> int:
    """Run the quick start; the exit code (2 bad input, 1 a failed step)."""
    parser = build_parser()
    args = parse_with_renamed_flags(parser, argv, RENAMED_FLAGS)
    if args.sequences < 2 or args.frames < 2:
        parser.error("--sequences and --frames must be >= 2 (train and test splits, a template and a search frame)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    start = time.perf_counter()
    variants = chosen_variants(args)

    def quickstart(run: CliRun) -> int:
        generated = ensure_dataset(args.synthetic_dir.expanduser(), args.sequences, args.frames, args.overwrite)
        if generated and not args.retrain:
            logger.info("new dataset: every variant is trained again")
        result = run_ablation(settings_from_args(args, retrain=args.retrain or generated), variants,
                              on_start=run.start)
        print("\n".join(report_lines(result)))
        print(f"total wall time {(time.perf_counter() - start) / 60:.1f} min")
        return 0

    return run_cli(quickstart, debug=args.debug, user_errors=INPUT_ERRORS)


if __name__ == "__main__":
    sys.exit(main())
