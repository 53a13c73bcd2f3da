"""Writing the synthetic dataset: sequence files in GOT-10k / MVTD layout, JSONL labels, splits and README.

:func:`generate_dataset` plans, renders and writes a whole dataset and returns a summary of it.
"""
from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from lib.challenges import CLASS_NAMES
from lib.synthetic.labels import EVENT_TYPES
from lib.synthetic.plan import Event, SequencePlan, check_dataset_counts, check_plan, plan_dataset
from lib.synthetic.render import SyntheticSequence, check_frame_size, render_sequence

logger = logging.getLogger(__name__)

GENERATED = ("train", "test", "val", "cls_annotations", "README.txt")  # everything generate_dataset writes


def write_sequence(seq: SyntheticSequence, split_dir: Path, ann_dir: Path) -> None:
    """Write frames, GOT-10k label files and meta_info.ini under ``split_dir/<name>`` and the JSONL file."""
    name = seq.plan.name
    seq_dir = Path(split_dir) / name
    seq_dir.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(seq.jpegs):
        (seq_dir / f"{i + 1:08d}.jpg").write_bytes(data)
    lines = lambda values: "".join(f"{v}\n" for v in values)  # noqa: E731
    (seq_dir / "groundtruth.txt").write_text(
        lines(",".join(f"{v:.4f}" for v in box) for box in seq.boxes_xywh), newline="\n")
    (seq_dir / "absence.label").write_text(lines(seq.absence.tolist()), newline="\n")
    (seq_dir / "cover.label").write_text(lines(seq.cover.tolist()), newline="\n")
    (seq_dir / "cut_by_image.label").write_text(lines(seq.cut_by_image.tolist()), newline="\n")
    (seq_dir / "meta_info.ini").write_text(
        "[METAINFO]\n" + "".join(f"{k}: {v}\n" for k, v in seq.meta.items()), newline="\n")
    jsonl_dir = Path(ann_dir) / name
    jsonl_dir.mkdir(parents=True, exist_ok=True)
    (jsonl_dir / f"{name}.jsonl").write_text(lines(json.dumps(r) for r in seq.records()), newline="\n")


def generate_dataset(out_dir: str | Path, sequences: int = 20, frames: int = 60, seed: int = 0,
                     test_fraction: float = 0.25, size: tuple[int, int] = (320, 240), *,
                     overwrite: bool = False, events: Mapping[str, Sequence[Event]] | None = None,
                     val_sequences: int = 0, val_seed: int | None = None) -> dict:
    """Write a synthetic maritime dataset in GOT-10k / MVTD layout and return a summary.

    Args:
        out_dir: output folder; must be empty or missing unless ``overwrite``, which replaces only
            :data:`GENERATED` entries and leaves anything else in the folder alone.
        sequences, frames: number of sequences and frames per sequence.
        seed: seeds everything; the same arguments give byte-identical files.
        test_fraction: share of sequences in ``test`` (round(N * f), at least 1 when N >= 2).
        size: frame size (W, H).
        events: optional ``{sequence name: [Event, ...]}`` replacing the planned events of those
            sequences (appearance and motion stay as seeded).
        val_sequences: sequences of a ``val`` split, planned separately from train and test with
            ``val_seed`` (default ``seed + 1``) and numbered after them: choose thresholds and policy
            settings there, never on the test split. 0 = no validation split (the files are then exactly
            those of a dataset generated without this option).

    Returns:
        ``{"out_dir", "seed", "sequences", "frames", "size", "test_fraction", "splits": {"train": [...],
        "test": [...]}, "events": {name: [[kind, start, end], ...]}, "flag_counts": {kind: frames},
        "class_counts": {class name: frames}, "absent_frames"}``.
    """
    width, height = check_frame_size(size)
    check_dataset_counts(sequences, frames, test_fraction)
    plans = plan_dataset(sequences, frames, seed, test_fraction)
    if val_sequences:
        check_dataset_counts(val_sequences, frames, 0.0)
        plans += plan_dataset(val_sequences, frames, seed + 1 if val_seed is None else val_seed, 0.0,
                              first_index=sequences + 1, split="val")
    if events:
        known = {p.name for p, _ in plans}
        unknown = sorted(set(events) - known)
        if unknown:
            raise ValueError(f"events given for unknown sequences {unknown}; names are {sorted(known)}")
        plans = [(SequencePlan(p.name, p.object_class, tuple(events[p.name]), p.seed) if p.name in events else p, s)
                 for p, s in plans]
        for plan, _ in plans:
            check_plan(plan, frames)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} exists and is not a directory")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; pass overwrite=True to replace the generated dataset")
        for entry in GENERATED:
            path = out / entry
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    split_names = ("train", "test", "val") if val_sequences else ("train", "test")
    for split in split_names:
        (out / split).mkdir(parents=True, exist_ok=True)
    ann_dir = out / "cls_annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    splits: dict[str, list[str]] = {split: [] for split in split_names}
    flag_counts = {k: 0 for k in EVENT_TYPES}
    class_counts = {name: 0 for name in CLASS_NAMES}
    absent = 0
    for n, (plan, split) in enumerate(plans, 1):
        seq = render_sequence(plan, frames, (width, height))
        write_sequence(seq, out / split, ann_dir)
        splits[split].append(plan.name)
        for k in EVENT_TYPES:
            flag_counts[k] += int(seq.flags[k].sum())
        for c in seq.labels():
            class_counts[CLASS_NAMES[c]] += 1
        absent += int(seq.absence.sum())
        logger.info("[%d/%d] %s (%s): %s", n, len(plans), plan.name, split, seq.meta["synthetic_events"])
    for split, names in splits.items():
        (out / split / "list.txt").write_text("".join(f"{name}\n" for name in names), newline="\n")
    summary = {
        "out_dir": str(out), "seed": seed, "sequences": sequences, "frames": frames, "size": (width, height),
        "test_fraction": test_fraction, "splits": splits,
        "events": {p.name: [[e.kind, e.start, e.end] for e in p.events] for p, _ in plans},
        "flag_counts": flag_counts, "class_counts": class_counts, "absent_frames": absent,
    }
    if val_sequences:
        summary.update(val_sequences=val_sequences, val_seed=seed + 1 if val_seed is None else val_seed)
    _write_readme(out / "README.txt", summary)
    return summary


def _write_readme(path: Path, summary: dict) -> None:
    width, height = summary["size"]
    total = sum(len(names) for names in summary["splits"].values()) * summary["frames"]
    n_train, n_test = len(summary["splits"]["train"]), len(summary["splits"]["test"])
    val_settings, val_layout = "", ""
    if "val_sequences" in summary:
        val_settings = f"\n  val_sequences={summary['val_sequences']} val_seed={summary['val_seed']}"
        val_layout = (f"\n  val/list.txt                              validation sequences ({summary['val_sequences']}, "
                      "planned with val_seed: tune thresholds here, not on test)")
    classes = "\n".join(f"  {i} {name}: {summary['class_counts'][name]} frames"
                        for i, name in enumerate(CLASS_NAMES))
    text = f"""Synthetic maritime tracking dataset (HIPTrack-CLS embedded default)

Generated by lib.synthetic.generate_dataset (tracking/make_synthetic_dataset.py) with
  seed={summary['seed']} sequences={summary['sequences']} frames={summary['frames']} size={width}x{height}
  test_fraction={summary['test_fraction']}{val_settings}
The same arguments reproduce every file byte for byte.

Layout (GOT-10k / MVTD):
  train/list.txt, test/list.txt             sequence names ({n_train} train, {n_test} test){val_layout}
  <split>/<seq>/00000001.jpg ...            JPEG frames (quality 90)
  <split>/<seq>/groundtruth.txt             x,y,w,h per frame: visible part of the target, clipped to the image
  <split>/<seq>/absence.label               1 = target not visible (box kept from the last visible frame)
  <split>/<seq>/cover.label                 visible fraction, 0 = none ... 8 = fully visible (GOT-10k bins)
  <split>/<seq>/cut_by_image.label          1 = target crosses the image border
  <split>/<seq>/meta_info.ini               [METAINFO]: object_class, resolution, events, ...
  cls_annotations/<seq>/<seq>.jsonl         per-frame challenge flags and ground_truth_bbox [x1, y1, x2, y2]

One target vessel per sequence (ship, boat, sailboat or USV in a distinctive colour) on animated
water, with 1-3 scripted challenge events rendered into the pixels. VLM flags mark the frames
where an event is rendered; CV flags follow the rules scale sqrt(area/area0) outside [0.7, 1.4],
shorter side < 24 px or area < 900 px², and box RMS contrast < ring RMS contrast / 1.1.

Frames per challenge class (the label rule of lib/challenges.py with the default seed: the first VLM
flag in priority order, else a seeded choice among the CV flags set, else Normal), {total} frames in all:
{classes}
"""
    path.write_text(text, newline="\n")
