"""Print a resolved experiment config, or the documented defaults.

    python tracking/show_config.py hiptrack_tiny --opts MODEL.MAX_MEM=10
    python tracking/show_config.py --keys          # every key with its default and comment
    python tracking/show_config.py --reference docs/config_reference.md   # regenerate the Markdown reference
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lib.config.hiptrack import get_default_config, load_config, resolve_experiment_config
from lib.config.node import describe
from lib.config.reference import config_reference_markdown
from lib.utils.cli import add_debug_argument, run_cli, user_mistakes


def main(argv: list[str] | None = None) -> int:
    """Print the config, the keys or write the reference; 2 on a config or path error."""
    parser = argparse.ArgumentParser(description="Show a resolved HIPTrack config (defaults -> YAML -> --opts).")
    parser.add_argument("config", nargs="?", default=None,
                        help="experiment name under experiments/hiptrack/ or a YAML path")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="overrides, e.g. TRAIN.LR=1e-5")
    parser.add_argument("--keys", action="store_true", help="list every key with its default and comment")
    parser.add_argument("--reference", type=Path, default=None, metavar="FILE",
                        help="write the Markdown reference of every key and legacy key to FILE "
                             "(docs/config_reference.md)")
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    return run_cli(lambda run: show(args), debug=args.debug)


def show(args: argparse.Namespace) -> int:
    """What the arguments ask for: the reference file, the key list or the resolved config."""
    if args.reference is not None:
        with user_mistakes(OSError, context=f"cannot write {args.reference}: "):
            args.reference.parent.mkdir(parents=True, exist_ok=True)
            args.reference.write_text(config_reference_markdown(), encoding="utf-8", newline="\n")
        print(f"wrote {args.reference}")
        return 0
    if args.keys:
        for dotted, default, comment in describe(get_default_config()):
            print(f"{dotted} = {default!r}  # {comment}")
        return 0
    path = resolve_experiment_config(args.config) if args.config else None
    print(load_config(path, opts=args.opts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
