"""Turn a HIPTrack-CLS checkpoint into a plain HIPTrack tracking checkpoint.

The classification head (``cls_head.*``) is dropped; every other weight is kept, so a config
without the head (``MODEL.CLS_HEAD.ENABLED False``, e.g. ``hiptrack_tiny`` for a
``hiptrack_cls_tiny`` checkpoint) loads the result strictly. Refused when the head is fused into
the box path (``MODEL.CLS_HEAD.FUSION``): boxes then depend on the head, and removing it would
change the tracker.
"""
from __future__ import annotations

import copy
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lib.utils.checkpoint import CheckpointError, extract_state_dict, read_checkpoint, save_checkpoint

logger = logging.getLogger(__name__)

HEAD_PREFIX = "cls_head."
FUSION_PREFIX = "cls_head.fusion."


@dataclass(frozen=True)
class ConversionReport:
    """What a conversion removed and kept."""
    output: Path
    removed_keys: int
    removed_parameters: int   # number of scalars in the removed tensors
    kept_keys: int
    epoch: Any


def _fusion_in_config(config: Any) -> bool:
    """True when a stored config dict conditions the box path on the head (``MODEL.CLS_HEAD.FUSION`` other than
    NONE, or True in configs older than the fusion modes)."""
    try:
        value = config["MODEL"]["CLS_HEAD"]["FUSION"]
    except (KeyError, TypeError):
        return False
    return value is True or (isinstance(value, str) and value != "NONE")


def plain_config(config: Any) -> Any:
    """A copy of a stored config dict with ``MODEL.CLS_HEAD.ENABLED`` False (``None`` stays ``None``)."""
    if not isinstance(config, dict):
        return None
    config = copy.deepcopy(config)
    config.setdefault("MODEL", {}).setdefault("CLS_HEAD", {})["ENABLED"] = False
    return config


def strip_cls_head(payload: Any, source: str | Path) -> tuple[dict, ConversionReport]:
    """The plain-tracker payload ``{'net', 'epoch', 'config'}`` of a loaded HIPTrack-CLS checkpoint.

    Raises:
        CheckpointError: not a tracker checkpoint, no ``cls_head.*`` weights, or fusion is on.
    """
    state, kind = extract_state_dict(payload, source)
    if kind != "tracker":
        raise CheckpointError(f"{source} is not a tracker checkpoint ({{'net': ...}}); nothing to convert")
    head = {k: v for k, v in state.items() if k.startswith(HEAD_PREFIX)}
    if not head:
        raise CheckpointError(f"{source} holds no {HEAD_PREFIX}* weights: it is not a HIPTrack-CLS checkpoint "
                              "(a plain HIPTrack checkpoint is already usable by the hiptrack tracker)")
    config = payload.get("config")
    fusion_keys = [k for k in head if k.startswith(FUSION_PREFIX)]
    if fusion_keys or _fusion_in_config(config):
        where = f"{len(fusion_keys)} {FUSION_PREFIX}* weights" if fusion_keys else "MODEL.CLS_HEAD.FUSION on"
        raise CheckpointError(f"{source} was trained with classification->box fusion ({where}): its boxes depend "
                              "on the classification head, so the head cannot be removed. Test it with the "
                              "hiptrack_cls tracker instead")
    kept = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIX)}
    out = {"net": kept, "epoch": payload.get("epoch"), "config": plain_config(config)}
    report = ConversionReport(Path(), len(head), sum(v.numel() for v in head.values()), len(kept), out["epoch"])
    return out, report


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    return a.exists() and b.exists() and os.path.samefile(a, b)


def check_output(output: Path) -> None:
    """Refuse, before any reading, an output that cannot become a written file: a folder, a path through
    a file, or a folder this process may not write in (``IsADirectoryError`` / ``NotADirectoryError`` /
    ``PermissionError`` naming the path)."""
    if output.is_dir():
        raise IsADirectoryError(f"output {output} is a folder; give the file to write, e.g. {output / 'plain.pth.tar'}")
    existing = next(p for p in output.absolute().parents if p.exists())  # the folder the missing ones go into
    if not existing.is_dir():
        raise NotADirectoryError(f"output {output} cannot be written: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"output {output} cannot be written: no write permission in {existing}")


def convert_cls_checkpoint(source: str | Path, output: str | Path, overwrite: bool = False) -> ConversionReport:
    """Read ``source``, drop the classification head and write ``output`` atomically.

    ``source`` is never written: ``output`` equal to it is refused, and an existing ``output`` is
    refused unless ``overwrite``; so is an output that cannot be written (:func:`check_output`). On any
    error nothing is written.
    """
    source, output = Path(source), Path(output)
    if _same_file(source, output):
        raise CheckpointError(f"output {output} is the input checkpoint; refusing to overwrite the input")
    check_output(output)
    if output.exists() and not overwrite:
        raise FileExistsError(f"output {output} already exists; pass --overwrite to replace it")
    payload, report = strip_cls_head(read_checkpoint(source), source)
    try:
        written = save_checkpoint(payload, output)
    except OSError as e:  # found only when writing (read-only file system, full disk): name the output
        raise OSError(e.errno, f"cannot write {output}: {e.strerror or e}") from e
    logger.info("%s -> %s: removed %d keys", source, written, report.removed_keys)
    return ConversionReport(written, report.removed_keys, report.removed_parameters, report.kept_keys, report.epoch)
