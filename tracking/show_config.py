"""Print a resolved experiment config, or the documented defaults.

    python tracking/show_config.py hiptrack_tiny --opts MODEL.MAX_MEM=10
    python tracking/show_config.py --keys          # every key with its default and comment
"""
from __future__ import annotations

import argparse
import sys

from lib.config.hiptrack import get_default_config, load_config, resolve_experiment_config
from lib.config.node import ConfigError, describe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Show a resolved HIPTrack config (defaults -> YAML -> --opts).")
    parser.add_argument("config", nargs="?", default=None,
                        help="experiment name under experiments/hiptrack/ or a YAML path")
    parser.add_argument("--opts", nargs="*", default=[], metavar="KEY=VALUE", help="overrides, e.g. TRAIN.LR=1e-5")
    parser.add_argument("--keys", action="store_true", help="list every key with its default and comment")
    args = parser.parse_args(argv)
    if args.keys:
        for dotted, default, comment in describe(get_default_config()):
            print(f"{dotted} = {default!r}  # {comment}")
        return 0
    try:
        path = resolve_experiment_config(args.config) if args.config else None
        print(load_config(path, opts=args.opts))
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
