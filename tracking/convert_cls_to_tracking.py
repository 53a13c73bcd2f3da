"""Convert a HIPTrack-CLS checkpoint into a plain HIPTrack tracking checkpoint.

    python tracking/convert_cls_to_tracking.py --input cls.pth.tar --output plain.pth.tar [--overwrite]

Drops the ``cls_head.*`` weights (refused when the head is fused into the box path,
``MODEL.CLS_HEAD.FUSION``), keeps everything else and stores the config with
``MODEL.CLS_HEAD.ENABLED False``. The output loads strictly with the plain tracker and a config
without the head, e.g. ``tracking/test.py hiptrack hiptrack_tiny --checkpoint plain.pth.tar`` for a
``hiptrack_cls_tiny`` checkpoint. The input is never modified.
"""
from __future__ import annotations

import argparse
import logging
import sys

from lib.test.tracker.checkpoint_conversion import convert_cls_checkpoint
from lib.utils.cli import add_debug_argument, run_cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="HIPTrack-CLS checkpoint (read only)")
    parser.add_argument("--output", required=True, help="plain HIPTrack checkpoint to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    add_debug_argument(parser)
    return parser.parse_args(argv)


def convert(args: argparse.Namespace) -> int:
    """Convert and print what was removed and kept."""
    report = convert_cls_checkpoint(args.input, args.output, args.overwrite)
    print(f"removed {report.removed_keys} cls_head keys ({report.removed_parameters:,} parameters), kept "
          f"{report.kept_keys} keys (epoch {report.epoch}); wrote {report.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Convert; an error exits 2 with one ``error:`` line and writes nothing (a failed write of the
    output, e.g. a full disk, is an error of the given path too)."""
    args = parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_cli(lambda run: convert(args), debug=args.debug, user_errors=(OSError,))


if __name__ == "__main__":
    sys.exit(main())
