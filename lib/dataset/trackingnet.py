"""TrackingNet (Müller et al., "TrackingNet: A Large-Scale Dataset and Benchmark for Object
Tracking in the Wild", ECCV 2018).

Layout (chunks ``TRAIN_0 .. TRAIN_11`` and ``TEST``)::

    <root>/<chunk>/frames/<seq>/0.jpg, 1.jpg, ..   frame names are unpadded integers
    <root>/<chunk>/anno/<seq>.txt                  x,y,w,h per frame, comma-separated
                                                   (TEST: the first frame only)

There are no visibility files: a frame is visible when its box is valid.
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from lib.dataset.challenge_labels import ChallengeLabelStore
from lib.dataset.got10k import DEFAULT_CACHE_SIZE, Annotations, FolderSequenceDataset, boxes_for_frames

SPLITS = ("train", "test")
TEST_CHUNK = "TEST"
_TRAIN_CHUNK = re.compile(r"TRAIN_(\d+)")


def train_chunks(root: Path) -> list[str]:
    """The ``TRAIN_<k>`` folders present under ``root``, in numeric order."""
    found = [(int(m.group(1)), p.name) for p in root.iterdir()
             if p.is_dir() and (m := _TRAIN_CHUNK.fullmatch(p.name))]
    return [name for _, name in sorted(found)]


class TrackingNet(FolderSequenceDataset):
    """TrackingNet sequences of some chunks; ``sequences`` selects a subset by name.

    ``chunks`` defaults to every ``TRAIN_*`` folder present (``split="train"``) or ``["TEST"]``
    (``split="test"``). A ``TEST`` annotation holding only the first box makes frame 0 the only
    valid frame. ``SequenceInfo.meta`` holds ``chunk`` and ``cls_labels_found``.
    """

    first_frame_number = 0  # frames are 0.jpg, 1.jpg, ...

    def __init__(
        self,
        name: str,
        root: Path,
        split: str = "train",
        sequences: Sequence[str] | None = None,
        labels: ChallengeLabelStore | None = None,
        chunks: Sequence[str] | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        root = Path(root)
        if split not in SPLITS:
            raise ValueError(f"{name}: TrackingNet split must be one of {', '.join(SPLITS)}, got {split!r}")
        if chunks is None:
            chunks = train_chunks(root) if split == "train" else [TEST_CHUNK]
            if not chunks:
                raise FileNotFoundError(
                    f"{name}: no TRAIN_0 .. TRAIN_11 folders in {root} (TrackingNet layout: "
                    f"<root>/TRAIN_k/frames/<seq>/0.jpg, <root>/TRAIN_k/anno/<seq>.txt)")
        self.split = split
        self.chunks = list(chunks)
        self._chunk_of: dict[str, str] = {}
        available = []
        for chunk in self.chunks:
            anno_dir = root / chunk / "anno"
            if not anno_dir.is_dir():
                raise FileNotFoundError(f"{name}: {anno_dir} not found (TrackingNet layout: "
                                        f"<root>/{chunk}/anno/<seq>.txt, <root>/{chunk}/frames/<seq>/0.jpg)")
            with os.scandir(anno_dir) as entries:
                names = sorted(e.name[:-4] for e in entries if e.name.endswith(".txt"))
            for seq in names:
                if seq in self._chunk_of:
                    raise ValueError(f"{name}: sequence {seq} is in both {self._chunk_of[seq]} and {chunk}")
                self._chunk_of[seq] = chunk
            available += names
        source = "the anno/*.txt files of " + ", ".join(str(root / c) for c in self.chunks)
        super().__init__(name, root, available, source, sequences, labels, cache_size)

    def chunk_of(self, seq_id: int) -> str:
        """Chunk folder (``TRAIN_3``, ``TEST``) holding a sequence."""
        return self._chunk_of[self.sequence_name(seq_id)]

    def frame_dir(self, seq_id: int) -> Path:
        return self.root / self.chunk_of(seq_id) / "frames" / self.sequence_name(seq_id)

    def annotation_files(self, seq_id: int) -> list[Path]:
        return [self.root / self.chunk_of(seq_id) / "anno" / f"{self.sequence_name(seq_id)}.txt"]

    def _annotations(self, seq_id: int, num_frames: int) -> Annotations:
        chunk = self.chunk_of(seq_id)
        [anno] = self.annotation_files(seq_id)
        ann = boxes_for_frames(anno, num_frames, first_frame_only_ok=chunk == TEST_CHUNK)
        ann.meta["chunk"] = chunk
        return ann
