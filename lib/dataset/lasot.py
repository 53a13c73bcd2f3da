"""LaSOT (Fan et al., "LaSOT: A High-quality Benchmark for Large-scale Single Object Tracking",
CVPR 2019).

Layout::

    <root>/testing_set.txt                          the 280 test sequence names, one per line
    <root>/<class>/<class>-<n>/img/00000001.jpg ...
    <root>/<class>/<class>-<n>/groundtruth.txt      x,y,w,h per frame, comma-separated
    <root>/<class>/<class>-<n>/full_occlusion.txt   0/1 per frame, comma-separated on one line
    <root>/<class>/<class>-<n>/out_of_view.txt      0/1 per frame, comma-separated on one line

The test split is ``testing_set.txt``; the train split is every other ``<class>-<n>`` folder.
A frame is visible when its box is valid and it is neither fully occluded nor out of view
(a missing occlusion / out-of-view file counts as all zeros).
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lib.dataset.challenge_labels import ChallengeLabelStore
from lib.dataset.got10k import (
    DEFAULT_CACHE_SIZE,
    Annotations,
    FolderSequenceDataset,
    boxes_for_frames,
    read_flags,
    read_name_list,
)

SPLITS = ("train", "test")
FLAG_FILES = ("full_occlusion.txt", "out_of_view.txt")  # per-frame 0 / 1, comma-separated


def class_of(sequence: str) -> str:
    """Object class of a LaSOT sequence name (``airplane-13`` -> ``airplane``)."""
    return sequence.rsplit("-", 1)[0]


def scan_sequences(root: Path) -> list[str]:
    """Every ``<class>/<class>-<n>`` folder under ``root``, by class, then by number."""
    found = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        pattern = re.compile(re.escape(class_dir.name) + r"-(\d+)")
        for seq_dir in class_dir.iterdir():
            match = pattern.fullmatch(seq_dir.name)
            if match and seq_dir.is_dir():
                found.append((class_dir.name, int(match.group(1)), seq_dir.name))
    return [name for _, _, name in sorted(found)]


class LaSOT(FolderSequenceDataset):
    """LaSOT train (1,120 sequences) or test (280) split; ``sequences`` selects a subset by name.

    ``SequenceInfo.meta`` holds ``object_class`` and ``cls_labels_found``.
    """

    def __init__(
        self,
        name: str,
        root: Path,
        split: str = "train",
        sequences: Sequence[str] | None = None,
        labels: ChallengeLabelStore | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        root = Path(root)
        if split not in SPLITS:
            raise ValueError(f"{name}: LaSOT split must be one of {', '.join(SPLITS)}, got {split!r}")
        self.split = split
        test_file = root / "testing_set.txt"
        if not test_file.is_file():
            raise FileNotFoundError(
                f"{name}: {test_file} not found. LaSOT's train / test split is defined by "
                f"testing_set.txt (the 280 test sequence names such as airplane-1, one per line), "
                f"which ships at the top of the LaSOT download next to the class folders; put it in {root}")
        test_names = read_name_list(test_file)
        if split == "test":
            available, source = test_names, str(test_file)
        else:
            test_set = set(test_names)
            available = [n for n in scan_sequences(root) if n not in test_set]
            source = f"the <class>/<class>-<n> folders under {root} not listed in testing_set.txt"
        super().__init__(name, root, available, source, sequences, labels, cache_size)

    def sequence_dir(self, seq_id: int) -> Path:
        """Folder of a sequence (``img/`` and the annotation files)."""
        seq_name = self.sequence_name(seq_id)
        return self.root / class_of(seq_name) / seq_name

    def frame_dir(self, seq_id: int) -> Path:
        return self.sequence_dir(seq_id) / "img"

    def annotation_files(self, seq_id: int) -> list[Path]:
        folder = self.sequence_dir(seq_id)
        return [folder / "groundtruth.txt", *(folder / f for f in FLAG_FILES)]

    def _annotations(self, seq_id: int, num_frames: int) -> Annotations:
        folder = self.sequence_dir(seq_id)
        hidden = np.zeros(num_frames, dtype=bool)
        for flag_file in FLAG_FILES:
            flags = read_flags(folder / flag_file, num_frames)
            if flags is not None:
                hidden |= flags != 0
        ann = boxes_for_frames(folder / "groundtruth.txt", num_frames, first_frame_only_ok=False, hidden=hidden)
        ann.meta["object_class"] = class_of(self.sequence_name(seq_id))
        return ann
