"""Process-level helpers every command-line run shares: seeding, device choice, source version."""
from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import numpy as np
import torch

from lib.utils.cli import UsageError

REPO_ROOT = Path(__file__).resolve().parents[2]


def git_hash() -> str:
    """Short commit hash of the source tree, or ``unknown``."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def available_cores() -> int:
    """CPU cores this process may use (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def seed_everything(seed: int) -> None:
    """Seed python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def resolve_device(name: str | None, local_rank: int) -> torch.device:
    """``--device`` or the best available; under torchrun on GPUs each process takes its local rank's GPU.

    Raises :class:`lib.utils.cli.UsageError` for a device name torch does not know, or CUDA asked for
    on a machine without it.
    """
    if name is None:
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise UsageError(f"--device {name}: not a torch device (cpu, cuda or cuda:N): {e}") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name} was asked for but CUDA is not available; use --device cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device
