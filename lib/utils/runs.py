"""Where a training run writes (OSTrack's layout under ``--save_dir``) and how its checkpoints are found.

Training writes here and testing, the ablation pipeline and the benchmarks read from here, so the
layout lives below all of them.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

CHECKPOINT_PATTERN = re.compile(r"HIPTrack_ep(\d{4,})\.pth\.tar$")


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

    def checkpoint(self, epoch: int) -> Path:
        return self.checkpoint_dir / f"HIPTrack_ep{epoch:04d}.pth.tar"


def epoch_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(epoch, path) of the epoch checkpoints in ``directory``, oldest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))]
    return sorted(found)
