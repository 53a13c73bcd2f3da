"""Which checkpoint the results in a results folder come from: ``checkpoint.json`` beside them.

``tracking/test.py`` records the checkpoint it loads (absolute path, the epoch stored in the file,
the SHA-256 of its bytes) in ``<results folder>/checkpoint.json`` when tracking starts. A later run
into the same folder with another checkpoint (other bytes, wherever the file is) is refused unless
``--overwrite`` clears the folder first, so a folder never mixes the results of two checkpoints; the
same checkpoint resumes, skipping the sequences that have results.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from lib.test.evaluation.results import got10k_zip_path
from lib.utils.atomic import atomic_write_text
from lib.utils.checkpoint import checkpoint_epoch, file_sha256
from lib.utils.cli import UsageError

RECORD_FILE = "checkpoint.json"


class ResultsConflictError(UsageError):
    """A results folder holds results of another (or of an unknown) checkpoint."""


@dataclass(frozen=True)
class CheckpointRecord:
    """The checkpoint a test run loads: where it was, its stored epoch (None if it has none), its digest."""
    path: str
    epoch: int | None
    sha256: str

    @classmethod
    def of(cls, checkpoint: str | Path) -> CheckpointRecord:
        """Read the epoch (tensors are mapped, not read) and hash the bytes of ``checkpoint``."""
        return cls(str(Path(checkpoint).absolute()), checkpoint_epoch(checkpoint), file_sha256(checkpoint))

    def describe(self) -> str:
        epoch = "unknown" if self.epoch is None else self.epoch
        return f"{self.path} (epoch {epoch}, sha256 {self.sha256[:12]})"


def read_record(folder: str | Path) -> CheckpointRecord | None:
    """The record of a results folder; None when it has none or it cannot be read."""
    try:
        data = json.loads((Path(folder) / RECORD_FILE).read_text(encoding="utf-8"))
        return CheckpointRecord(str(data["path"]), data.get("epoch"), str(data["sha256"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_record(folder: str | Path, record: CheckpointRecord) -> Path:
    """Write ``<folder>/checkpoint.json`` atomically."""
    return atomic_write_text(Path(folder) / RECORD_FILE, json.dumps(asdict(record), indent=2) + "\n")


def holds_results(folder: str | Path) -> bool:
    """Whether ``folder`` holds anything besides its record."""
    folder = Path(folder)
    return folder.is_dir() and any(p.name != RECORD_FILE for p in folder.iterdir())


def results_conflict(folder: str | Path, record: CheckpointRecord) -> str | None:
    """Why the results in ``folder`` are not results of ``record``'s checkpoint; None when they are
    (same bytes) or when the folder holds no results."""
    if not holds_results(folder):
        return None
    found = read_record(folder)
    if found is None:
        return "holds results without a readable checkpoint record (written by an older version, or by other code)"
    if found.sha256 != record.sha256:
        return f"holds results of another checkpoint, {found.describe()}"
    return None


def clear_results(folder: str | Path) -> None:
    """Delete a results folder and its GOT-10k server archive (``<folder>.zip``)."""
    folder = Path(folder)
    if folder.is_dir():
        shutil.rmtree(folder)
    got10k_zip_path(folder).unlink(missing_ok=True)


def check_results_folder(folder: str | Path, record: CheckpointRecord, overwrite: bool) -> None:
    """Refuse (:class:`ResultsConflictError`, nothing changes) a folder holding results of another
    checkpoint than ``record``'s, unless ``overwrite`` (the caller then clears it with
    :func:`clear_results` before writing)."""
    reason = None if overwrite else results_conflict(folder, record)
    if reason is not None:
        raise ResultsConflictError(f"{folder} {reason}, not of {record.describe()}: pass --overwrite to clear the "
                                   "folder and test again, or choose another --save_dir")
