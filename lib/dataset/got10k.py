"""GOT-10k-layout datasets (GOT-10k, MVTD, the project's synthetic data) and the pieces shared by
every folder-per-sequence format (LaSOT and TrackingNet build on :class:`FolderSequenceDataset`).

GOT-10k layout (Huang et al., "GOT-10k: A Large High-Diversity Benchmark for Generic Object
Tracking in the Wild", TPAMI 2019); MVTD (arXiv:2506.02866) ships in the same layout::

    <root>/<split>/list.txt                  one sequence folder name per line
    <root>/<split>/<seq>/00000001.jpg ...    frames, *.jpg or *.png, frame id 0 = first file
    <root>/<split>/<seq>/groundtruth.txt     x,y,w,h per frame (GOT-10k test: first frame only)
    <root>/<split>/<seq>/absence.label       optional: 1 = target absent, one value per frame
    <root>/<split>/<seq>/cover.label         optional: 0 (fully covered) .. 8 (fully visible)
    <root>/<split>/<seq>/cut_by_image.label  optional: 1 = box cut by the image border
    <root>/<split>/<seq>/meta_info.ini       optional: [METAINFO] key: value entries

A sequence without the label files (MVTD test, custom data; see OSTrack#66) is visible wherever
its box is valid.
"""
from __future__ import annotations

import configparser
import os
import re
from abc import abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lib.dataset.base import SequenceDataset, SequenceInfo
from lib.dataset.challenge_labels import ChallengeLabelStore, unlabeled

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
DEFAULT_CACHE_SIZE = 2048  # SequenceInfo objects kept per dataset (and per data-loader worker)
MAX_LISTED_NAMES = 5       # unknown sequence names quoted in an error message
LABEL_FILES = ("absence.label", "cover.label", "cut_by_image.label")  # optional per-frame files of GOT-10k

_SEPARATORS = re.compile(r"[,\s]+")


# ----------------------------------------------------------------------------- annotation files

def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from e


def read_name_list(path: Path) -> list[str]:
    """Non-empty, stripped lines of a text file (``list.txt``, split files)."""
    return [line.strip() for line in _read_text(path).splitlines() if line.strip()]


def read_boxes(path: Path) -> np.ndarray:
    """(M, 4) float32 ``x, y, w, h``: one box per non-empty line, separated by commas, spaces or tabs."""
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} not found")
    rows: list[list[str]] = []
    for line_no, line in enumerate(_read_text(path).splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        values = _SEPARATORS.split(line)
        if len(values) != 4:
            raise ValueError(f"{path}:{line_no}: expected 4 values x,y,w,h, got {len(values)}: {line!r}")
        try:
            rows.append([float(v) for v in values])
        except ValueError:
            raise ValueError(f"{path}:{line_no}: not a number in {line!r}") from None
    return np.asarray(rows, dtype=np.float32).reshape(-1, 4)


def read_flags(path: Path, num_frames: int) -> np.ndarray | None:
    """(N,) int64 per-frame integers (one per line, or comma-separated on one line); ``None`` if the
    file does not exist. A count other than ``num_frames`` is an error naming the file."""
    if not path.is_file():
        return None
    text = _read_text(path).strip()
    tokens = _SEPARATORS.split(text) if text else []
    try:
        values = np.array([int(float(t)) for t in tokens], dtype=np.int64)
    except ValueError:
        raise ValueError(f"{path}: expected integers separated by commas or new lines") from None
    if len(values) != num_frames:
        raise ValueError(f"{path} has {len(values)} values but the sequence has {num_frames} frames")
    return values


def read_meta_info(path: Path) -> dict[str, str]:
    """Entries of a GOT-10k ``meta_info.ini`` (all sections, keys lower-case, values as text)."""
    text = _read_text(path)
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        try:
            parser.read_string(text, source=str(path))
        except configparser.MissingSectionHeaderError:
            parser.read_string("[METAINFO]\n" + text, source=str(path))
    except configparser.Error as e:
        raise ValueError(f"cannot parse {path}: {e}") from e
    return {key: value for section in parser.sections() for key, value in parser.items(section)}


def list_frames(folder: Path) -> list[str]:
    """File names of the ``*.jpg`` / ``*.png`` frames of a folder, in frame order: numerically when
    every stem is an integer (``0.jpg, 1.jpg, .., 10.jpg``), else by name."""
    try:
        with os.scandir(folder) as entries:
            names = [e.name for e in entries if e.name.lower().endswith(FRAME_SUFFIXES) and e.is_file()]
    except FileNotFoundError:
        raise FileNotFoundError(f"frame folder {folder} not found") from None
    except NotADirectoryError:
        raise NotADirectoryError(f"frame folder {folder} is not a folder") from None
    if not names:
        raise FileNotFoundError(f"no frames (*.jpg, *.png) in {folder}")
    stems = [name.rsplit(".", 1)[0] for name in names]
    if all(stem.isdigit() for stem in stems):
        names.sort(key=lambda name: (int(name.rsplit(".", 1)[0]), name))
    else:
        names.sort()
    return names


def frame_numbering_problem(names: list[str], first: int) -> str | None:
    """Why frame files (in :func:`list_frames` order) are not numbered ``first, first + 1, ...``
    without a gap or a duplicate, or ``None`` when they are."""
    numbers = []
    for name in names:
        stem = name.rsplit(".", 1)[0]
        if not stem.isdigit():
            return f"frame file {name} is not numbered (expected {first:08d}.jpg, {first + 1:08d}.jpg, ...)"
        numbers.append(int(stem))
    if numbers == list(range(first, first + len(numbers))):
        return None
    for position, number in enumerate(numbers):
        expected = first + position
        if number == expected:
            continue
        if number < expected:
            return f"two frame files are numbered {number}"
        return (f"frame files are not continuous: no file numbered {expected} ({len(names)} frame files, "
                f"numbered {numbers[0]} to {numbers[-1]})")
    return None


@dataclass
class Annotations:
    """Per-frame boxes and flags of one sequence, before challenge labels are attached."""
    bbox: np.ndarray     # (N, 4) float32 x, y, w, h; zeros where no box is known
    valid: np.ndarray    # (N,) bool
    visible: np.ndarray  # (N,) bool
    meta: dict = field(default_factory=dict)
    # frame ids whose box file row held NaN / inf (their box is zeroed and invalid)
    nonfinite: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def box_problem(ann: Annotations) -> str | None:
    """Why a sequence's boxes make it unusable for training, or ``None``: a NaN / inf value means a
    broken box file; without one box of positive width and height no frame can ever be sampled."""
    if len(ann.nonfinite):
        return (f"{len(ann.nonfinite)} box(es) with a NaN or infinite value (the first: box "
                f"{int(ann.nonfinite[0]) + 1} of the box file)")
    if not ann.valid.any():
        return "no box with a positive width and height, so no frame can ever be sampled"
    return None


def boxes_for_frames(
    path: Path, num_frames: int, first_frame_only_ok: bool, hidden: np.ndarray | None = None
) -> Annotations:
    """Read ``path`` (x,y,w,h per frame) for a sequence of ``num_frames`` frames.

    A box count other than ``num_frames`` is an error naming the file and both counts, except a
    single box when ``first_frame_only_ok`` (test splits): frame 0 is then the only valid frame.
    ``valid`` = finite box with ``w, h > 0``; ``visible`` = valid and not ``hidden`` (N,) bool.
    """
    boxes = read_boxes(path)
    if len(boxes) == num_frames:
        bbox = boxes
    elif first_frame_only_ok and len(boxes) == 1:
        bbox = np.zeros((num_frames, 4), dtype=np.float32)
        bbox[0] = boxes[0]
    else:
        raise ValueError(f"{path} has {len(boxes)} boxes but the sequence has {num_frames} frames "
                         f"(images in its frame folder)")
    finite = np.isfinite(bbox).all(axis=1)
    bbox[~finite] = 0.0
    valid = finite & (bbox[:, 2] > 0) & (bbox[:, 3] > 0)
    if len(boxes) != num_frames:
        valid[1:] = False
    visible = valid if hidden is None else valid & ~hidden
    return Annotations(bbox=bbox, valid=valid, visible=visible, nonfinite=np.flatnonzero(~finite))


# ----------------------------------------------------------------------------- shared base class

def select_sequences(
    available: Sequence[str], wanted: Sequence[str] | None, dataset: str, source: str
) -> list[str]:
    """``wanted`` (in its order, duplicates dropped), or all of ``available`` when it is ``None``.

    Names not in ``available`` are an error quoting the first few of them and ``source``.
    """
    if wanted is None:
        return list(available)
    wanted = list(dict.fromkeys(wanted))
    known = set(available)
    unknown = [n for n in wanted if n not in known]
    if unknown:
        shown = ", ".join(unknown[:MAX_LISTED_NAMES]) + (", ..." if len(unknown) > MAX_LISTED_NAMES else "")
        raise ValueError(f"{dataset}: {len(unknown)} of the {len(wanted)} selected sequences are not in "
                         f"{source}: {shown}")
    if not wanted:
        raise ValueError(f"{dataset}: the sequence selection is empty")
    return wanted


class FolderSequenceDataset(SequenceDataset):
    """A dataset with one folder of frames per sequence, plus per-sequence annotation files.

    Handles what every such format shares: a subset of sequences chosen by name, a bounded cache
    of :class:`SequenceInfo` (asked for once per sample) and the challenge labels of the
    ``labels`` store (frames matched by index and file name; all ``-100`` without a store).
    Subclasses give the ordered sequence names, :meth:`frame_dir`, :meth:`_annotations` and
    :meth:`annotation_files`. :meth:`check_sequence` finds what would make a sequence fail when it
    is drawn (``lib/dataset/check.py`` runs it over a dataset before training and drops the bad
    ones; they are then listed in ``skipped_sequences``).
    """

    first_frame_number = 1  # number in the file name of frame id 0 (00000001.jpg)

    def __init__(
        self,
        name: str,
        root: Path,
        available: Sequence[str],
        source: str,
        sequences: Sequence[str] | None = None,
        labels: ChallengeLabelStore | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        super().__init__(name, root)
        if not available:
            raise ValueError(f"{name}: {source} lists no sequences")
        self.labels = labels
        self.cache_size = cache_size
        self._names = select_sequences(available, sequences, name, source)
        self._cache: OrderedDict[int, tuple[list[str], SequenceInfo]] = OrderedDict()
        self.skipped_sequences: list[tuple[str, str]] = []  # (name, reason) dropped by drop_sequences

    def __len__(self) -> int:
        return len(self._names)

    @property
    def sequence_names(self) -> list[str]:
        """Names of the sequences, index = sequence id."""
        return list(self._names)

    def sequence_name(self, seq_id: int) -> str:
        self._check_seq_id(seq_id)
        return self._names[seq_id]

    @abstractmethod
    def frame_dir(self, seq_id: int) -> Path:
        """Folder holding the frames of a sequence."""

    @abstractmethod
    def _annotations(self, seq_id: int, num_frames: int) -> Annotations:
        """Boxes, valid / visible flags and metadata of a sequence of ``num_frames`` frames."""

    def annotation_files(self, seq_id: int) -> list[Path]:
        """The annotation files a sequence's annotations are read from (present or not); with the
        frame folder they key the cached check of the sequence."""
        return []

    def index_identity(self) -> str:
        """What, besides the sequence name, decides the layout and the check of a sequence: the
        class, the absolute root and the split (the key of the cached index)."""
        return f"{type(self).__name__}:{self.root.absolute()}:{getattr(self, 'split', '')}"

    def check_sequence(self, seq_id: int) -> str | None:
        """Why sequence ``seq_id`` cannot be trained on, or ``None``: its frame folder is missing or
        empty, its frame files are not numbered continuously, an annotation file is missing, malformed
        or of another length than the frame count, or its boxes are unusable (:func:`box_problem`).
        Reads the folder listing and the annotation files, never an image."""
        try:
            frames = list_frames(self.frame_dir(seq_id))
        except OSError as e:  # folder missing, not a folder, no frames
            return str(e)
        problem = frame_numbering_problem(frames, self.first_frame_number)
        if problem is not None:
            return problem
        try:
            ann = self._annotations(seq_id, len(frames))
        except (OSError, ValueError) as e:  # missing, malformed or wrong-length annotation files
            return str(e)
        return box_problem(ann)

    def drop_sequences(self, problems: Sequence[tuple[str, str]]) -> None:
        """Remove sequences ``(name, reason)`` from the dataset (ids are renumbered) and add them to
        :attr:`skipped_sequences`."""
        dropped = {name for name, _ in problems}
        self._names = [n for n in self._names if n not in dropped]
        self._cache.clear()
        self.skipped_sequences.extend(problems)

    def frame_files(self, seq_id: int) -> list[str]:
        """Frame file names of a sequence, in frame order."""
        return list(self._entry(seq_id)[0])

    def sequence_info(self, seq_id: int) -> SequenceInfo:
        """Annotations of a sequence (cached: do not modify the tensors)."""
        return self._entry(seq_id)[1]

    def frame_path(self, seq_id: int, frame_id: int) -> Path:
        frames = self._entry(seq_id)[0]
        if not 0 <= frame_id < len(frames):
            raise IndexError(f"{self.name}: frame id {frame_id} outside 0..{len(frames) - 1} "
                             f"of sequence {self._names[seq_id]}")
        return self.frame_dir(seq_id) / frames[frame_id]

    def _check_seq_id(self, seq_id: int) -> None:
        if not 0 <= seq_id < len(self._names):
            raise IndexError(f"{self.name}: sequence id {seq_id} outside 0..{len(self._names) - 1}")

    def _entry(self, seq_id: int) -> tuple[list[str], SequenceInfo]:
        self._check_seq_id(seq_id)
        entry = self._cache.get(seq_id)
        if entry is not None:
            self._cache.move_to_end(seq_id)
            return entry
        frames = list_frames(self.frame_dir(seq_id))
        ann = self._annotations(seq_id, len(frames))
        seq_name = self._names[seq_id]
        if self.labels is not None:
            cls = self.labels.for_sequence(seq_name, len(frames), frames)
        else:
            cls = unlabeled(len(frames))
        info = SequenceInfo(
            name=seq_name,
            bbox=torch.from_numpy(ann.bbox),
            valid=torch.from_numpy(ann.valid),
            visible=torch.from_numpy(ann.visible),
            cls_label=cls.labels,
            cls_multi_hot=cls.multi_hot,
            meta={**ann.meta, "cls_labels_found": cls.found},
        )
        entry = (frames, info)
        if self.cache_size > 0:
            self._cache[seq_id] = entry
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return entry


# ----------------------------------------------------------------------------- GOT-10k layout

class GOT10k(FolderSequenceDataset):
    """GOT-10k layout: GOT-10k train / val / test, MVTD train / test, the synthetic data.

    ``root`` holds the split folders; ``split`` names one (``train``, ``val``, ``test``).
    ``sequences`` selects a subset by name. With ``split == "test"`` a ``groundtruth.txt`` holding
    only the first box is accepted (GOT-10k test): only frame 0 is then valid.
    ``SequenceInfo.meta`` holds the ``meta_info.ini`` entries, ``cover`` ((N,) uint8) and
    ``cut_by_image`` ((N,) bool) when those files exist, and ``cls_labels_found``.
    """

    def __init__(
        self,
        name: str,
        root: Path,
        split: str,
        sequences: Sequence[str] | None = None,
        labels: ChallengeLabelStore | None = None,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        root = Path(root)
        self.split = split
        self.split_dir = root / split
        list_file = self.split_dir / "list.txt"
        if not list_file.is_file():
            where = "" if self.split_dir.is_dir() else f" ({self.split_dir} does not exist either)"
            raise FileNotFoundError(
                f"{name}: {list_file} not found{where}. The {split!r} split in GOT-10k layout needs a "
                f"list.txt with one sequence folder name per line (it ships with GOT-10k; for other "
                f"data in this layout write it next to the sequence folders)")
        super().__init__(name, root, read_name_list(list_file), str(list_file), sequences, labels, cache_size)

    def sequence_dir(self, seq_id: int) -> Path:
        """Folder of a sequence (frames and annotation files)."""
        return self.split_dir / self.sequence_name(seq_id)

    def frame_dir(self, seq_id: int) -> Path:
        return self.sequence_dir(seq_id)

    def annotation_files(self, seq_id: int) -> list[Path]:
        folder = self.sequence_dir(seq_id)
        return [folder / f for f in ("groundtruth.txt", *LABEL_FILES, "meta_info.ini")]

    def _annotations(self, seq_id: int, num_frames: int) -> Annotations:
        folder = self.sequence_dir(seq_id)
        absent = read_flags(folder / "absence.label", num_frames)
        cover = read_flags(folder / "cover.label", num_frames)
        cut = read_flags(folder / "cut_by_image.label", num_frames)
        hidden = np.zeros(num_frames, dtype=bool)
        if absent is not None:
            hidden |= absent != 0
        if cover is not None:
            hidden |= cover <= 0
        ann = boxes_for_frames(folder / "groundtruth.txt", num_frames,
                               first_frame_only_ok=self.split == "test", hidden=hidden)
        meta_file = folder / "meta_info.ini"
        if meta_file.is_file():
            ann.meta.update(read_meta_info(meta_file))
        if cover is not None:
            ann.meta["cover"] = torch.from_numpy(cover.astype(np.uint8))
        if cut is not None:
            ann.meta["cut_by_image"] = torch.from_numpy(cut != 0)
        return ann
