"""Generate the synthetic maritime tracking dataset (GOT-10k / MVTD layout with challenge labels).

    python tracking/make_synthetic_dataset.py --synthetic_dir data/synthetic_maritime --sequences 40 --frames 60 --seed 0

The same arguments always give byte-identical files. See ``lib/synthetic/__init__.py`` for the
layout, the label rules and the scripted challenge events.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from lib.challenges import CLASS_NAMES
from lib.synthetic.render import MIN_SIZE
from lib.synthetic.writer import GENERATED, generate_dataset
from lib.utils.cli import UsageError, add_debug_argument, parse_with_renamed_flags, renamed_flags_epilog, run_cli

logger = logging.getLogger("make_synthetic_dataset")

RENAMED_FLAGS = {"--out": "--synthetic_dir", "--test-fraction": "--test_fraction"}


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH such as 320x240, got {text!r}") from None
    if width < MIN_SIZE[0] or height < MIN_SIZE[1]:
        raise argparse.ArgumentTypeError(f"size {text} is below the minimum {MIN_SIZE[0]}x{MIN_SIZE[1]}")
    return width, height


def main(argv: list[str] | None = None) -> int:
    """Generate the dataset; the exit code (2 bad settings or target folder)."""
    parser = argparse.ArgumentParser(
        description="Write a deterministic synthetic maritime tracking dataset (train/test splits in "
                    "GOT-10k layout plus per-frame challenge labels in cls_annotations/).",
        epilog=renamed_flags_epilog(RENAMED_FLAGS))
    parser.add_argument("--synthetic_dir", required=True, type=Path,
                        help="folder the dataset is written to (must be empty unless --overwrite)")
    parser.add_argument("--sequences", type=int, default=20, help="number of sequences, >= 1 (default 20)")
    parser.add_argument("--frames", type=int, default=60, help="frames per sequence, >= 2 (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--test_fraction", type=float, default=0.25,
                        help="share of sequences in the test split, in [0, 1) (default 0.25)")
    parser.add_argument("--val_sequences", type=int, default=0,
                        help="sequences of a validation split (val/), planned with --val_seed (default 0: none)")
    parser.add_argument("--val_seed", type=int, default=None, help="seed of the validation split (default --seed + 1)")
    parser.add_argument("--size", type=_size, default=(320, 240), metavar="WxH", help="frame size (default 320x240)")
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace a previous dataset in --synthetic_dir (only {', '.join(GENERATED)})")
    parser.add_argument("--quiet", action="store_true", help="log warnings only")
    add_debug_argument(parser)
    args = parse_with_renamed_flags(parser, argv, RENAMED_FLAGS)
    if args.sequences < 1:
        parser.error(f"--sequences must be >= 1, got {args.sequences}")
    if args.frames < 2:
        parser.error(f"--frames must be >= 2, got {args.frames}")
    if args.val_sequences < 0:
        parser.error(f"--val_sequences must be >= 0, got {args.val_sequences}")
    if not 0 <= args.test_fraction < 1:
        parser.error(f"--test_fraction must be in [0, 1), got {args.test_fraction}")
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # the generator checks its settings and the folder before writing: a ValueError or OSError is the input's
    return run_cli(lambda run: generate(args), debug=args.debug, user_errors=(ValueError, OSError))


def check_target(folder: Path, overwrite: bool) -> None:
    """Refuse a target that is a file, or a folder holding something, unless ``overwrite``."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is not a directory")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise UsageError(f"{folder} is not empty (pass --overwrite to replace it)")


def generate(args: argparse.Namespace) -> int:
    """Write the dataset and print what was written."""
    check_target(args.synthetic_dir, args.overwrite)
    logger.info("command: %s", " ".join(sys.argv))
    start = time.perf_counter()
    summary = generate_dataset(args.synthetic_dir, sequences=args.sequences, frames=args.frames, seed=args.seed,
                               test_fraction=args.test_fraction, size=args.size, overwrite=args.overwrite,
                               val_sequences=args.val_sequences, val_seed=args.val_seed)
    seconds = time.perf_counter() - start
    counts = ", ".join(f"{name} {summary['class_counts'][name]}" for name in CLASS_NAMES)
    splits = " + ".join(f"{len(names)} {split}" for split, names in summary["splits"].items())
    print(f"wrote {args.synthetic_dir}: {splits} "
          f"sequences x {args.frames} frames ({args.size[0]}x{args.size[1]}) in {seconds:.1f}s; classes: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
