"""The contract every training / evaluation dataset class fulfils.

A dataset is a list of video sequences. Sequence ids are ``0 .. len(dataset) - 1``; frame ids are
0-based positions in the sequence (frame file ``00000001.jpg`` of GOT-10k is frame id 0).
Boxes are ``x, y, w, h`` in pixels of the original frame.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

@dataclass
class SequenceInfo:
    """Per-frame annotations of one sequence (N frames)."""
    name: str
    bbox: torch.Tensor                 # (N, 4) float32 x, y, w, h pixels
    valid: torch.Tensor                # (N,) bool: box has positive width and height
    visible: torch.Tensor              # (N,) bool: target present and not fully covered
    cls_label: torch.Tensor            # (N,) long challenge class 0..9, IGNORE_INDEX if unlabeled
    cls_multi_hot: torch.Tensor        # (N, NUM_CLASSES) float: every challenge flag of the frame (Normal if none);
                                       # soft targets (VLM conf) when the label store has soft_targets
    meta: dict = field(default_factory=dict)  # e.g. GOT-10k meta_info.ini entries

    def __len__(self) -> int:
        return self.bbox.shape[0]


class SequenceDataset(ABC):
    """A collection of annotated video sequences of one benchmark format."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name  # config name, e.g. GOT10K_train_full
        self.root = Path(root)

    @abstractmethod
    def __len__(self) -> int:
        """Number of sequences."""

    @abstractmethod
    def sequence_name(self, seq_id: int) -> str:
        """Name of sequence ``seq_id`` (e.g. ``GOT-10k_Train_000001`` or ``1-Ship``)."""

    @abstractmethod
    def sequence_info(self, seq_id: int) -> SequenceInfo:
        """Annotations of sequence ``seq_id`` (cached by implementations: called per sample)."""

    @abstractmethod
    def frame_path(self, seq_id: int, frame_id: int) -> Path:
        """Image file of a frame."""

    def is_video_sequence(self) -> bool:
        """False for image datasets whose 'sequences' are single images (COCO-style)."""
        return True

    def get_frames(self, seq_id: int, frame_ids: list[int], reader) -> tuple[list[np.ndarray], SequenceInfo]:
        """Read frames with ``reader(path) -> RGB uint8 (H, W, 3)``; returns them and the sequence info."""
        return [reader(self.frame_path(seq_id, f)) for f in frame_ids], self.sequence_info(seq_id)
