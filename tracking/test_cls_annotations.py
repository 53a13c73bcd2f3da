"""Check a folder of challenge-label files (``<cls_ann_dir>/<seq>/<seq>.jsonl``) before training.

    python tracking/test_cls_annotations.py --cls_ann_dir /data/maritime_clf_annts
    python tracking/test_cls_annotations.py --cls_ann_dir /data/maritime_clf_annts --split_dir /data/train

Without ``--split_dir`` the sequences are the label files, with as many frames as the largest
``frame_id`` (or the number of distinct ``frame_file`` names). With ``--split_dir`` (a split in
GOT-10k layout: ``list.txt`` or one sub-folder of ``*.jpg`` / ``*.png`` frames per sequence) the
sequences, their frame counts and frame files come from the images.

Besides the class distribution it prints how often challenges co-occur: a K x K table of labeled
frames in which both flags are set (the diagonal counts the frames with that flag; Normal is the
frames without any) and the share of labeled frames with two or more flags, which is what the
multi-label mode (``MODEL.CLS_HEAD.MODE: multi``) learns beyond the single-label rule.

Exit code: 0 if at least one sequence has a labeled frame, 1 if nothing could be loaded,
2 for bad arguments (e.g. a missing folder).
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable
from pathlib import Path

import torch

from lib.challenges import CLASS_NAMES, DEFAULT_LABEL_SEED, IGNORE_INDEX
from lib.dataset.challenge_labels import ChallengeLabelStore, SequenceLabels
from lib.utils.cli import (CliRun, UsageError, add_debug_argument, parse_with_renamed_flags, renamed_flags_epilog,
                           run_cli, user_mistakes)

RENAMED_FLAGS = {"--ann-dir": "--cls_ann_dir", "--data-dir": "--split_dir", "--max-report": "--max_report"}

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


def _frames_of(folder: Path) -> list[str]:
    """Sorted frame file names of a sequence folder."""
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES)


def data_sequences(data_dir: Path) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """``(name, frame files)`` of every sequence of a split, and names in list.txt without a folder."""
    list_file = data_dir / "list.txt"
    if list_file.is_file():
        names = [line.strip() for line in list_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        names = sorted(p.name for p in data_dir.iterdir() if p.is_dir())
    sequences, missing = [], []
    for name in names:
        folder = data_dir / name
        if not folder.is_dir():
            missing.append(name)
            continue
        frames = _frames_of(folder)
        if frames or list_file.is_file():
            sequences.append((name, frames))
    return sequences, missing


def _class_counts(result: SequenceLabels) -> list[int]:
    """Frames per class id of one sequence (unlabeled frames left out)."""
    labels = result.labels[result.labels >= 0]
    return labels.bincount(minlength=len(CLASS_NAMES)).tolist()


def cooccurrence(results: Iterable[SequenceLabels]) -> tuple[torch.Tensor, int]:
    """(K, K) long counts of labeled frames with both flags set (diagonal: frames with that flag) and the
    number of labeled frames with two or more flags, over the sequences' multi-hot labels."""
    counts = torch.zeros(len(CLASS_NAMES), len(CLASS_NAMES), dtype=torch.long)
    several = 0
    for r in results:
        flags = (r.multi_hot[r.labels != IGNORE_INDEX] > 0).long()  # (labeled frames, K)
        counts += flags.T @ flags
        several += int((flags.sum(dim=1) >= 2).sum())
    return counts, several


def print_cooccurrence(counts: torch.Tensor, several: int, labeled: int) -> None:
    """The co-occurrence table, rows named ``<class> (<id>)``, columns by class id."""
    width = max(6, len(str(int(counts.max()))) + 2)  # room for the largest count
    print("Challenge co-occurrence (labeled frames with both flags set; diagonal = frames with that flag):")
    print(f"  {'class':<28}" + "".join(f"{cid:>{width}}" for cid in range(len(CLASS_NAMES))))
    for cid, name in enumerate(CLASS_NAMES):
        print(f"  {f'{name} ({cid})':<28}" + "".join(f"{n:>{width}}" for n in counts[cid].tolist()))
    print(f"Frames with 2+ flags: {several} of {labeled} labeled ({_pct(several, labeled)})")


def _names(names: list[str], cap: int) -> str:
    shown = ", ".join(names[:cap])
    return shown + (f", ... and {len(names) - cap} more" if len(names) > cap else "")


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "n/a"


def main(argv: list[str] | None = None) -> int:
    """Check the label folder; the exit code (0 some labels load, 1 none, 2 bad arguments)."""
    parser = argparse.ArgumentParser(
        description="Summarise per-frame challenge labels (<cls_ann_dir>/<seq>/<seq>.jsonl): class "
                    "distribution, challenge co-occurrence, unlabeled frames, malformed lines, unmatched and duplicate "
                    "records.",
        epilog=renamed_flags_epilog(RENAMED_FLAGS))
    parser.add_argument("--cls_ann_dir", required=True, type=Path, help="folder of <seq>/<seq>.jsonl label files")
    parser.add_argument("--split_dir", type=Path, default=None,
                        help="split folder in GOT-10k layout (list.txt or one folder of frames per sequence); "
                             "sequences and frame counts then come from the images")
    parser.add_argument("--seed", type=int, default=DEFAULT_LABEL_SEED,
                        help=f"seed of the choice among several CV flags; use the training run's TRAIN.SEED "
                             f"(default {DEFAULT_LABEL_SEED}, TRAIN.SEED's default)")
    parser.add_argument("--max_report", type=int, default=10, metavar="K",
                        help="malformed lines and sequence names listed at most (default 10)")
    parser.add_argument("-v", "--verbose", action="store_true", help="also print the loader's log warnings")
    add_debug_argument(parser)
    args = parse_with_renamed_flags(parser, argv, RENAMED_FLAGS)
    logging.basicConfig(level=logging.WARNING if args.verbose else logging.ERROR, format="%(levelname)s %(message)s")
    if args.max_report < 0:
        parser.error("--max_report must be >= 0")
    return run_cli(lambda run: summarise(args, run), debug=args.debug)


def summarise(args: argparse.Namespace, run: CliRun) -> int:
    """Load every label file and print the summary; 1 when no labeled frame could be loaded."""
    with user_mistakes(OSError):
        store = ChallengeLabelStore(args.cls_ann_dir, seed=args.seed)
    if args.split_dir is not None and not args.split_dir.is_dir():
        raise UsageError(f"data folder {str(args.split_dir)!r} does not exist or is not a folder")
    run.start()

    ann_names = store.sequence_names()
    listed_without_folder: list[str] = []
    if args.split_dir is None:
        sequences = []
        for name in ann_names:
            num_frames, frame_files = store.frames_from_records(name)
            sequences.append((name, num_frames, frame_files))
    else:
        found, listed_without_folder = data_sequences(args.split_dir)
        sequences = [(name, len(frames), frames) for name, frames in found]

    results: dict[str, SequenceLabels] = {
        name: store.for_sequence(name, num_frames, frame_files) for name, num_frames, frame_files in sequences
    }
    loaded = [name for name, r in results.items() if r.num_labeled > 0]
    total_frames = sum(len(r.labels) for r in results.values())
    labeled = sum(r.num_labeled for r in results.values())
    counts = [0] * len(CLASS_NAMES)
    flagged = [0] * len(CLASS_NAMES)
    for r in results.values():
        for cid, n in enumerate(_class_counts(r)):
            counts[cid] += n
        for cid, n in enumerate(r.multi_hot.sum(dim=0).long().tolist()):
            flagged[cid] += n

    k = args.max_report
    print(f"Annotation folder: {args.cls_ann_dir}")
    if args.split_dir is not None:
        print(f"Data folder: {args.split_dir}")
    print(f"Loaded classification annotations for {len(loaded)} / {len(results)} sequences")
    print(f"Frames: {total_frames}, labeled: {labeled}")
    print()
    print("Class distribution (label = training target; flag set = frames with that flag, any priority):")
    print(f"  {'id':>2}  {'class':<24} {'label':>8} {'% labeled':>10} {'flag set':>9}")
    for cid, name in enumerate(CLASS_NAMES):
        print(f"  {cid:>2}  {name:<24} {counts[cid]:>8} {_pct(counts[cid], labeled):>10} {flagged[cid]:>9}")
    print()
    print_cooccurrence(*cooccurrence(results.values()), labeled)
    print()
    print(f"Frames without labels: {total_frames - labeled} ({_pct(total_frames - labeled, total_frames)})")

    malformed = [m for r in results.values() for m in r.malformed]
    print(f"Malformed lines: {len(malformed)}")
    for file, line, reason in malformed[:k]:
        print(f"  {file}:{line}: {reason}")
    if len(malformed) > k:
        print(f"  ... and {len(malformed) - k} more")
    print(f"Unmatched records: {sum(r.unmatched for r in results.values())}")
    print(f"Duplicate records: {sum(r.duplicates for r in results.values())}")

    unreadable = [(name, r.error) for name, r in results.items() if r.error is not None]
    if unreadable:
        print(f"Unreadable files: {len(unreadable)}")
        for name, error in unreadable[:k]:
            print(f"  {store.path_of(name)}: {error}")
        if len(unreadable) > k:
            print(f"  ... and {len(unreadable) - k} more")
    without_file = [name for name, r in results.items() if not r.found and r.error is None]
    print(f"Sequences without a file: {len(without_file)}")
    if without_file:
        print(f"  {_names(without_file, k)}")
    if args.split_dir is not None:
        orphans = sorted(set(ann_names) - set(results))
        print(f"Label files without a sequence in --split_dir: {len(orphans)}")
        if orphans:
            print(f"  {_names(orphans, k)}")
        if listed_without_folder:
            print(f"Sequences in list.txt without a folder: {len(listed_without_folder)}")
            print(f"  {_names(listed_without_folder, k)}")
    if not loaded:
        print("error: no labeled frame could be loaded", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
