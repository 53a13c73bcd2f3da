"""Shared pieces of the command-line scripts in ``tracking/``: one spelling per flag meaning.

Across scripts a flag means one thing: ``--save_dir`` is the output root of a run, ``--data_dir`` a
root folder holding datasets, ``--synthetic_dir`` the folder a synthetic dataset is generated into,
``--cls_ann_dir`` the JSONL challenge labels, ``--json`` a JSON file of the scores. Words are joined
with underscores. Older spellings keep working for a while: :func:`parse_with_renamed_flags` rewrites
them and warns once per flag.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping, Sequence

logger = logging.getLogger(__name__)


def parse_with_renamed_flags(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                             renamed: Mapping[str, str]) -> argparse.Namespace:
    """``parser.parse_args`` after rewriting deprecated flag spellings (``{"--out": "--synthetic_dir"}``).

    ``--old value`` and ``--old=value`` are both rewritten; each deprecated flag used gets one warning.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    warned: set[str] = set()
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        new = renamed.get(name)
        if new is None:
            continue
        if name not in warned:
            warned.add(name)
            logger.warning("warning: %s is deprecated, use %s", name, new)
        args[i] = f"{new}{eq}{value}"
    return parser.parse_args(args)


def renamed_flags_epilog(renamed: Mapping[str, str]) -> str:
    """A help-text line listing the deprecated spellings a script still accepts."""
    return "Deprecated spellings still accepted: " + ", ".join(f"{old} (now {new})" for old, new in renamed.items())
