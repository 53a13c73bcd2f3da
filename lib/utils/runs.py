"""Where a training run writes (OSTrack's layout under ``--save_dir``), how its checkpoints are
found, and its per-epoch metrics file.

Training writes here and testing, the ablation pipeline and the benchmarks read from here, so the
layout lives below all of them.

``run.lock`` (beside the checkpoints) names the process training the run while it runs.
``metrics.jsonl`` (beside the checkpoints) holds one JSON object per finished epoch, appended by
the trainer's rank 0; the fields are listed in docs/training.md. Non-finite numbers are written
as ``null``, so every line is strict JSON.
"""
from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from lib.utils.atomic import atomic_write_text
from lib.utils.records import JsonlError, jsonl_records, record_line

CHECKPOINT_PATTERN = re.compile(r"HIPTrack_ep(\d{4,})\.pth\.tar$")
METRICS_FILE = "metrics.jsonl"
LOCK_FILE = "run.lock"


@dataclass(frozen=True)
class RunPaths:
    """Where a run writes, OSTrack's layout: checkpoints/, logs/, tensorboard/ under save_dir."""
    save_dir: Path
    config_name: str
    script: str = "hiptrack"

    @property
    def checkpoint_dir(self) -> Path:
        return self.save_dir / "checkpoints" / "train" / self.script / self.config_name

    @property
    def log_file(self) -> Path:
        return self.save_dir / "logs" / f"{self.script}-{self.config_name}.log"

    @property
    def tensorboard_dir(self) -> Path:
        return self.save_dir / "tensorboard" / "train" / self.script / self.config_name

    @property
    def metrics_file(self) -> Path:
        """One JSON record per finished epoch, beside the checkpoints (:func:`read_metrics`)."""
        return self.checkpoint_dir / METRICS_FILE

    @property
    def lock_file(self) -> Path:
        """Held by the process training this run (:mod:`lib.utils.locks`), beside the checkpoints."""
        return self.checkpoint_dir / LOCK_FILE

    def checkpoint(self, epoch: int) -> Path:
        return self.checkpoint_dir / f"HIPTrack_ep{epoch:04d}.pth.tar"


def clear_run(paths: RunPaths) -> list[Path]:
    """Delete what a previous training of this run left (epoch checkpoints, ``metrics.jsonl``, the
    TensorBoard events), so that a new run starts clean; returns what was removed. The log (a
    history of every run) and ``config.yaml`` (rewritten at the start) stay."""
    removed = [path for _, path in epoch_checkpoints(paths.checkpoint_dir)]
    for path in removed:
        path.unlink()
    if paths.metrics_file.is_file():
        paths.metrics_file.unlink()
        removed.append(paths.metrics_file)
    if paths.tensorboard_dir.is_dir():
        shutil.rmtree(paths.tensorboard_dir)
        removed.append(paths.tensorboard_dir)
    return removed


def epoch_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of the epoch checkpoints in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))]
    return sorted(found)


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """The epoch records of a ``metrics.jsonl``, in file order (``null`` values read as ``None``).

    A last line without its newline is a record still being written and is left out. Raises
    :class:`lib.utils.records.JsonlError` naming the file and line of a line that is not a JSON
    object with a positive integer ``"epoch"``; FileNotFoundError for a missing file.
    """
    records = []
    for number, record in jsonl_records(path):
        epoch = record.get("epoch")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
            raise JsonlError(f"{path}:{number}: a record needs \"epoch\", a positive integer; got {epoch!r}")
        records.append(record)
    return records


def drop_metrics_after(path: str | os.PathLike, epoch: int) -> int:
    """Keep the records of epochs ``<= epoch`` only (a run continuing from that epoch's checkpoint
    writes the later ones again), rewriting the file atomically; the number of records dropped.

    An incomplete last line (torn by a crash) is dropped too. A missing file, or one with nothing
    to drop, is left as it is.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    text = path.read_text(encoding="utf-8")
    torn = bool(text) and not text.endswith("\n")
    records = read_metrics(path)
    kept = [r for r in records if r["epoch"] <= epoch]
    if len(kept) == len(records) and not torn:
        return 0
    atomic_write_text(path, "".join(record_line(r) for r in kept))
    return len(records) - len(kept) + int(torn)
