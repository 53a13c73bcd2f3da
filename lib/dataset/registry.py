"""Config dataset names (``DATA.TRAIN.DATASETS_NAME``) -> dataset objects.

``NAME:FILE`` selects the sequences listed in ``FILE`` (one per line) from dataset ``NAME``, e.g.
``MVTD_train:splits/mvtd_fold0.txt``. In split files (user files and the GOT-10k ``vot`` splits) a
line is a sequence name, or else a 0-based index into the dataset's sequence list (for GOT-10k the
order of ``list.txt``), as in OSTrack's ``lib/train/data_specs/got10k_vot_*_split.txt``.
"""
from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from lib.challenges import DEFAULT_LABEL_SEED
from lib.dataset.base import SequenceDataset
from lib.dataset.challenge_labels import ChallengeLabelStore
from lib.dataset.check import check_dataset
from lib.dataset.got10k import MAX_LISTED_NAMES, FolderSequenceDataset, GOT10k, read_name_list
from lib.dataset.lasot import LaSOT
from lib.dataset.paths import DatasetPaths
from lib.dataset.trackingnet import TrackingNet


@dataclass(frozen=True)
class DatasetSpec:
    """How to build one config dataset name."""
    kind: str                            # dataset root in DatasetPaths: got10k, mvtd, lasot, ...
    cls: type[FolderSequenceDataset]
    split: str
    split_file: str | None = None        # relative to the root: selects a subset of the split
    options: Mapping[str, Any] = field(default_factory=dict)  # further constructor arguments
    description: str = ""


DATASET_TABLE: dict[str, DatasetSpec] = {
    "GOT10K_train_full": DatasetSpec("got10k", GOT10k, "train", description="GOT-10k train, all 9,335 sequences"),
    "GOT10K_official_val": DatasetSpec("got10k", GOT10k, "val", description="GOT-10k val (180 sequences)"),
    "GOT10K_test": DatasetSpec("got10k", GOT10k, "test", description="GOT-10k test, first-frame boxes only"),
    "GOT10K_vottrain": DatasetSpec("got10k", GOT10k, "train", split_file="train/vot_train_split.txt",
                                   description="GOT-10k train subset (pytracking / OSTrack split)"),
    "GOT10K_votval": DatasetSpec("got10k", GOT10k, "train", split_file="train/vot_val_split.txt",
                                 description="GOT-10k train subset (pytracking / OSTrack split)"),
    "MVTD_train": DatasetSpec("mvtd", GOT10k, "train", description="MVTD train split"),
    "MVTD_test": DatasetSpec("mvtd", GOT10k, "test", description="MVTD test split (no visibility labels)"),
    "LASOT": DatasetSpec("lasot", LaSOT, "train", description="LaSOT train (all but testing_set.txt)"),
    "LASOT_test": DatasetSpec("lasot", LaSOT, "test", description="LaSOT test (testing_set.txt)"),
    "TRACKINGNET": DatasetSpec("trackingnet", TrackingNet, "train", description="TrackingNet TRAIN_* chunks"),
    "TRACKINGNET_test": DatasetSpec("trackingnet", TrackingNet, "test",
                                    description="TrackingNet TEST chunk, first-frame boxes only"),
    "SYNTHETIC_train": DatasetSpec("synthetic", GOT10k, "train", description="generated sequences, train"),
    "SYNTHETIC_test": DatasetSpec("synthetic", GOT10k, "test", description="generated sequences, test"),
    "SYNTHETIC_val": DatasetSpec("synthetic", GOT10k, "val", description="generated sequences, validation "
                                                                        "(planned with its own seed)"),
}


def dataset_names() -> list[str]:
    """Every config dataset name."""
    return list(DATASET_TABLE)


def closest_name(name: str) -> str:
    """The valid dataset name closest to ``name``: a name it starts, else the most similar."""
    lower = {n.lower(): n for n in DATASET_TABLE}
    query = name.lower()
    prefixed = [n for n in lower if n.startswith(query)]
    if prefixed:
        return lower[min(prefixed, key=len)]
    return lower[difflib.get_close_matches(query, list(lower), n=1, cutoff=0.0)[0]]


def _spec(name: str) -> DatasetSpec:
    spec = DATASET_TABLE.get(name)
    if spec is not None:
        return spec
    hint = f" Did you mean {closest_name(name)}?" if name else ""
    raise ValueError(f"unknown dataset {name!r}.{hint} Valid names: {', '.join(DATASET_TABLE)} "
                     f"(or NAME:FILE for the sequences of FILE)")


def read_split_file(path: Path, dataset: FolderSequenceDataset, missing_hint: str = "") -> list[str]:
    """Sequence names selected by a split file: each line a name of ``dataset``, or else a 0-based
    index into its sequence list."""
    if not path.is_file():
        hint = f"; {missing_hint}" if missing_hint else ""
        raise FileNotFoundError(f"{dataset.name}: split file {path} not found{hint}")
    available = dataset.sequence_names
    known = set(available)
    names, unknown = [], []
    for line in read_name_list(path):
        if line in known:
            names.append(line)
        elif line.isdigit() and int(line) < len(available):
            names.append(available[int(line)])
        else:
            unknown.append(line)
    if unknown:
        shown = ", ".join(unknown[:MAX_LISTED_NAMES]) + (", ..." if len(unknown) > MAX_LISTED_NAMES else "")
        raise ValueError(f"{path}: {len(unknown)} lines are neither a sequence name of {dataset.name} nor "
                         f"an index below {len(available)}: {shown}")
    if not names:
        raise ValueError(f"{path} selects no sequences of {dataset.name}")
    return names


@lru_cache(maxsize=None)
def _label_store(ann_dir: Path, seed: int, soft_targets: bool) -> ChallengeLabelStore:
    return ChallengeLabelStore(ann_dir, seed=seed, soft_targets=soft_targets)


def label_store(
    cls_ann_dir: str | Path | None, seed: int = DEFAULT_LABEL_SEED, soft_targets: bool = False
) -> ChallengeLabelStore | None:
    """The challenge-label store of a folder (one per folder, seed and target kind in a process);
    ``None`` for ``None`` or an empty string (every frame unlabeled)."""
    if cls_ann_dir is None or not str(cls_ann_dir).strip():
        return None
    return _label_store(Path(cls_ann_dir).expanduser().absolute(), int(seed), bool(soft_targets))


def build_dataset(
    name: str, paths: DatasetPaths, cls_ann_dir: str | Path | None = None, label_seed: int = DEFAULT_LABEL_SEED,
    soft_targets: bool = False, on_bad_sequence: str | None = None, quiet: bool = False,
) -> SequenceDataset:
    """The dataset of a config name (``GOT10K_train_full``, ``MVTD_train:my_split.txt``, ...).

    With ``soft_targets`` its ``SequenceInfo.cls_multi_hot`` holds soft targets (the VLM ``conf``
    of each flagged class, ``TRAIN.CLS_SOFT_TARGETS``) instead of 0 / 1 flags. With
    ``on_bad_sequence`` (``skip`` / ``error``, ``DATA.ON_BAD_SEQUENCE``) its sequences are checked
    first (:func:`lib.dataset.check.check_dataset`; ``quiet`` logs nothing); ``None`` checks nothing.
    """
    base_name, sep, split_path = name.partition(":")
    spec = _spec(base_name)
    if sep and not split_path.strip():
        raise ValueError(f"dataset {name!r}: no split file after ':' (expected NAME:FILE)")
    root = paths.root(spec.kind)
    options = dict(spec.options)
    sequences = None
    if spec.split_file is not None:
        split_file = root / spec.split_file
        full = spec.cls(base_name, root, spec.split, **options)
        sequences = read_split_file(split_file, full, missing_hint=(
            f"{base_name} needs it: one sequence name or 0-based list.txt index per line (OSTrack ships "
            f"it as lib/train/data_specs/got10k_{Path(spec.split_file).name}); put it at {split_file}"))
    if sep:
        current = spec.cls(base_name, root, spec.split, sequences=sequences, **options)
        sequences = read_split_file(Path(split_path.strip()).expanduser(), current)
    dataset = spec.cls(name, root, spec.split, sequences=sequences,
                       labels=label_store(cls_ann_dir, label_seed, soft_targets), **options)
    if on_bad_sequence is not None:
        check_dataset(dataset, on_bad_sequence, quiet=quiet)
    return dataset


def build_datasets(
    names: Sequence[str], paths: DatasetPaths, cls_ann_dir: str | Path | None = None,
    label_seed: int = DEFAULT_LABEL_SEED, soft_targets: bool = False, on_bad_sequence: str | None = None,
    quiet: bool = False,
) -> list[SequenceDataset]:
    """:func:`build_dataset` for each name (one label store shared by all)."""
    return [build_dataset(n, paths, cls_ann_dir, label_seed, soft_targets, on_bad_sequence, quiet) for n in names]
