"""The dataset check run before training (lib/dataset/check.py): every fault in both modes of
DATA.ON_BAD_SEQUENCE, the three layouts, the registry, and the cached index (reused, rebuilt after
a change, never fatal when damaged or unwritable). Data: tiny sequences written in tmp_path."""
from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from lib.dataset.check import CACHE_DIR_ENV, BadSequenceError, check_dataset, index_path
from lib.dataset.got10k import GOT10k
from lib.dataset.lasot import LaSOT
from lib.dataset.paths import DatasetPaths
from lib.dataset.registry import build_dataset
from lib.dataset.trackingnet import TrackingNet
from test_datasets import box_lines, boxes, write_frames, write_got10k_seq, write_list

FRAMES = 6
NAMES = ["good_a", "bad", "good_b"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh index folder per test."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_DIR_ENV, str(folder))
    return folder


def later(path: Path) -> None:
    """Move a file's or folder's modification time 2 s on, as an edit made later would (file times
    can be coarser than a fast test's steps)."""
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))


def split_with_sequences(root: Path, names: list[str] = NAMES, split: str = "train") -> Path:
    """GOT-10k-layout ``root/split`` with ``FRAMES``-frame sequences and their absence / cover labels."""
    split_dir = root / split
    for name in names:
        write_got10k_seq(split_dir, name, n=FRAMES,
                         labels={"absence.label": [0] * FRAMES, "cover.label": [8] * FRAMES})
    write_list(split_dir, names)
    return split_dir


def rewrite(path: Path, text: str) -> None:
    path.write_text(text)
    later(path)


def remove_frame(folder: Path, name: str) -> None:
    (folder / name).unlink()
    later(folder)


# name -> (how to break the sequence folder, a part of the reason given)
FAULTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing folder": (lambda seq: shutil.rmtree(seq), "frame folder {seq} not found"),
    "no frames": (lambda seq: [p.unlink() for p in seq.glob("*.jpg")], "no frames (*.jpg, *.png) in {seq}"),
    "short groundtruth": (lambda seq: rewrite(seq / "groundtruth.txt", box_lines(boxes(FRAMES - 2))),
                          "groundtruth.txt has 4 boxes but the sequence has 6 frames"),
    "missing groundtruth": (lambda seq: (seq / "groundtruth.txt").unlink(), "groundtruth.txt not found"),
    "malformed groundtruth": (lambda seq: rewrite(seq / "groundtruth.txt", "1,2,3\n" * FRAMES),
                              "groundtruth.txt:1: expected 4 values x,y,w,h, got 3"),
    "short absence label": (lambda seq: rewrite(seq / "absence.label", "0\n" * (FRAMES - 1)),
                            "absence.label has 5 values but the sequence has 6 frames"),
    "short cover label": (lambda seq: rewrite(seq / "cover.label", "8\n" * (FRAMES + 1)),
                          "cover.label has 7 values but the sequence has 6 frames"),
    "missing frame (gap)": (lambda seq: remove_frame(seq, "00000003.jpg"),
                            "not continuous: no file numbered 3 (5 frame files, numbered 1 to 6)"),
    "missing first frame": (lambda seq: remove_frame(seq, "00000001.jpg"), "no file numbered 1"),
    "duplicate frame number": (lambda seq: write_frames(seq, ["00000002.png"]),
                               "two frame files are numbered 2"),
    "unnumbered frame": (lambda seq: write_frames(seq, ["cover.jpg"]), "frame file cover.jpg is not numbered"),
    "all-zero boxes": (lambda seq: rewrite(seq / "groundtruth.txt", "0,0,0,0\n" * FRAMES),
                       "no box with a positive width and height"),
    "non-finite box": (lambda seq: rewrite(seq / "groundtruth.txt", box_lines(boxes(FRAMES - 1)) + "1,2,nan,4\n"),
                       "1 box(es) with a NaN or infinite value (the first: box 6 of the box file)"),
    "infinite box": (lambda seq: rewrite(seq / "groundtruth.txt", "inf,2,3,4\n" + box_lines(boxes(FRAMES - 1))),
                     "1 box(es) with a NaN or infinite value (the first: box 1 of the box file)"),
}


def broken_dataset(tmp_path: Path, fault: str) -> tuple[GOT10k, str]:
    """A 3-sequence GOT-10k train split whose middle sequence has ``fault``; the expected reason."""
    split_dir = split_with_sequences(tmp_path / "got10k")
    breaker, reason = FAULTS[fault]
    seq = split_dir / "bad"
    breaker(seq)
    return GOT10k("GOT10K_train_full", split_dir.parent, "train"), reason.format(seq=seq)


def check_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "lib.dataset.check" and r.levelno == logging.WARNING]


@pytest.mark.parametrize("fault", FAULTS)
def test_skip_drops_the_bad_sequence_with_one_warning_and_counts_it(tmp_path, caplog, fault):
    dataset, reason = broken_dataset(tmp_path, fault)
    with caplog.at_level(logging.INFO, logger="lib.dataset.check"):
        result = check_dataset(dataset, "skip")
    [warning] = check_warnings(caplog)
    assert warning.startswith("GOT10K_train_full: skipping sequence bad: ") and reason in warning
    assert "\n" not in warning
    assert dataset.sequence_names == ["good_a", "good_b"] and len(dataset) == 2
    assert [name for name, _ in dataset.skipped_sequences] == ["bad"] and reason in dataset.skipped_sequences[0][1]
    assert (result.checked, len(result.problems)) == (3, 1)
    assert dataset.sequence_info(1).name == "good_b"  # ids renumbered, annotations of the right folder
    assert "3 sequences checked" in caplog.text and "1 skipped" in caplog.text


@pytest.mark.parametrize("fault", FAULTS)
def test_error_mode_raises_one_line_naming_dataset_sequence_and_reason(tmp_path, caplog, fault):
    dataset, reason = broken_dataset(tmp_path, fault)
    with pytest.raises(BadSequenceError) as err:
        check_dataset(dataset, "error")
    message = str(err.value)
    assert message.startswith("GOT10K_train_full: 1 of 3 sequence(s) cannot be trained on (DATA.ON_BAD_SEQUENCE")
    assert "sequence bad: " in message and reason in message and "\n" not in message
    assert len(dataset) == 3 and not check_warnings(caplog)


@pytest.mark.parametrize("mode", ["skip", "error"])
def test_a_dataset_without_a_usable_sequence_is_an_error_in_both_modes(tmp_path, mode):
    split_dir = split_with_sequences(tmp_path / "got10k", ["a", "b"])
    for name in ("a", "b"):
        rewrite(split_dir / name / "groundtruth.txt", "0,0,0,0\n" * FRAMES)
    dataset = GOT10k("MVTD_train", split_dir.parent, "train")
    with pytest.raises(BadSequenceError, match=r"MVTD_train: none of its 2 sequence\(s\) can be trained on: "
                                               r"sequence a: no box .*; sequence b: no box"):
        check_dataset(dataset, mode)


def test_good_sequences_pass_quietly_and_a_first_frame_test_split_is_good(tmp_path, caplog):
    split_with_sequences(tmp_path / "got10k")
    write_got10k_seq(tmp_path / "got10k" / "test", "t", n=FRAMES, gt="10,20,30,40\n")
    write_list(tmp_path / "got10k" / "test", ["t"])
    with caplog.at_level(logging.WARNING):
        for split in ("train", "test"):
            dataset = GOT10k("x", tmp_path / "got10k", split)
            assert not check_dataset(dataset, "error").problems and not dataset.skipped_sequences
    assert not caplog.records


def test_unknown_mode_is_refused(tmp_path):
    split_with_sequences(tmp_path / "got10k")
    with pytest.raises(ValueError, match="skip, error"):
        check_dataset(GOT10k("x", tmp_path / "got10k", "train"), "ignore")


def test_lasot_layout_gaps_and_flag_files(tmp_path, caplog):
    root = tmp_path / "lasot"
    for name in ("cat-1", "cat-2", "cat-3"):
        folder = root / "cat" / name
        write_frames(folder / "img", [f"{i:08d}.jpg" for i in range(1, 5)])
        (folder / "groundtruth.txt").write_text(box_lines(boxes(4)))
        (folder / "full_occlusion.txt").write_text("0,0,0,0")
        (folder / "out_of_view.txt").write_text("0,0,0,0\n")
    (root / "testing_set.txt").write_text("other-1\n")
    (root / "cat" / "cat-2" / "img" / "00000004.jpg").unlink()     # 3 frames, 4 values per file
    (root / "cat" / "cat-3" / "out_of_view.txt").write_text("0,0,0")  # 3 values, 4 frames
    dataset = LaSOT("LASOT", root)
    with caplog.at_level(logging.WARNING):
        check_dataset(dataset, "skip")
    assert dataset.sequence_names == ["cat-1"]
    reasons = dict(dataset.skipped_sequences)
    assert "full_occlusion.txt has 4 values but the sequence has 3 frames" in reasons["cat-2"]
    assert "out_of_view.txt has 3 values but the sequence has 4 frames" in reasons["cat-3"]
    assert len(check_warnings(caplog)) == 2


def test_trackingnet_frames_start_at_zero(tmp_path):
    root = tmp_path / "trackingnet"
    for seq, first in (("a_0", 0), ("b_1", 1), ("c_2", 0)):
        write_frames(root / "TRAIN_0" / "frames" / seq, [f"{i}.jpg" for i in range(first, 12)])
        (root / "TRAIN_0" / "anno").mkdir(parents=True, exist_ok=True)
        (root / "TRAIN_0" / "anno" / f"{seq}.txt").write_text(box_lines(boxes(12 - first)))
    (root / "TRAIN_0" / "anno" / "c_2.txt").write_text(box_lines(boxes(10)))
    dataset = TrackingNet("TRACKINGNET", root)
    check_dataset(dataset, "skip", quiet=True)
    assert dataset.sequence_names == ["a_0"]
    reasons = dict(dataset.skipped_sequences)
    assert "no file numbered 0 (11 frame files, numbered 1 to 11)" in reasons["b_1"]
    assert "c_2.txt has 10 boxes but the sequence has 12 frames" in reasons["c_2"]


def test_registry_checks_only_when_asked_and_split_indexes_keep_the_list_order(tmp_path, caplog):
    split_dir = split_with_sequences(tmp_path / "got10k")
    (split_dir / "vot_train_split.txt").write_text("0\n2\n")  # indexes into list.txt: good_a, good_b
    rewrite(split_dir / "bad" / "groundtruth.txt", box_lines(boxes(2)))
    paths = DatasetPaths(overrides={"got10k": tmp_path / "got10k"})
    assert len(build_dataset("GOT10K_train_full", paths)) == 3  # evaluation and tools: unchecked
    with caplog.at_level(logging.WARNING):
        checked = build_dataset("GOT10K_train_full", paths, on_bad_sequence="skip")
        subset = build_dataset("GOT10K_vottrain", paths, on_bad_sequence="error")
    assert checked.sequence_names == ["good_a", "good_b"] and subset.sequence_names == ["good_a", "good_b"]
    assert len(check_warnings(caplog)) == 1  # the subset does not hold the bad sequence
    quiet = build_dataset("GOT10K_train_full", paths, on_bad_sequence="skip", quiet=True)
    assert len(quiet) == 2 and len(check_warnings(caplog)) == 1  # DDP ranks other than 0


# ----------------------------------------------------------------------------- the cached index

@pytest.fixture
def listings(monkeypatch) -> list[str]:
    """Folders listed with os.scandir since the fixture started."""
    seen: list[str] = []
    scandir = os.scandir

    def spy(path="."):
        seen.append(str(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", spy)
    return seen


def listed_sequences(listings: list[str], split_dir: Path) -> list[str]:
    return sorted(Path(p).name for p in listings if Path(p).parent == split_dir)


def test_index_is_reused_and_rebuilt_for_changed_sequences_only(tmp_path, cache, listings, caplog):
    split_dir = split_with_sequences(tmp_path / "got10k")
    rewrite(split_dir / "bad" / "groundtruth.txt", box_lines(boxes(3)))

    def check() -> GOT10k:
        listings.clear()
        caplog.clear()
        dataset = GOT10k("x", split_dir.parent, "train")
        with caplog.at_level(logging.WARNING):
            check_dataset(dataset, "skip")
        return dataset

    first = check()
    assert listed_sequences(listings, split_dir) == ["bad", "good_a", "good_b"]
    assert index_path(first).is_file() and index_path(first).parent == cache / "dataset_index"

    again = check()  # nothing changed: no folder listed, the same verdicts (the bad one warned again)
    assert listed_sequences(listings, split_dir) == []
    assert again.sequence_names == ["good_a", "good_b"] and len(check_warnings(caplog)) == 1

    rewrite(split_dir / "bad" / "groundtruth.txt", box_lines(boxes(FRAMES)))  # fixed
    remove_frame(split_dir / "good_b", "00000004.jpg")                           # broken
    changed = check()
    assert listed_sequences(listings, split_dir) == ["bad", "good_b"]
    assert changed.sequence_names == ["good_a", "bad"]
    assert "skipping sequence good_b: frame files are not continuous: no file numbered 4" in caplog.text

    (split_dir / "good_a" / "cut_by_image.label").write_text("0\n" * (FRAMES - 1))  # an optional file appears
    check()
    assert listed_sequences(listings, split_dir) == ["good_a"]
    assert "cut_by_image.label has 5 values" in caplog.text


def test_damaged_or_unwritable_index_costs_a_full_check_never_a_failure(tmp_path, cache, listings, monkeypatch):
    split_dir = split_with_sequences(tmp_path / "got10k")
    dataset = GOT10k("x", split_dir.parent, "train")
    check_dataset(dataset, "skip", quiet=True)
    index_path(dataset).write_text('{"version": 1, "sequences": [')  # cut short
    listings.clear()
    assert not check_dataset(GOT10k("x", split_dir.parent, "train"), "error", quiet=True).problems
    assert len(listed_sequences(listings, split_dir)) == 3
    assert check_dataset(GOT10k("x", split_dir.parent, "train"), "error", quiet=True).from_index == 3  # rewritten

    blocked = tmp_path / "a_file"
    blocked.write_text("")
    monkeypatch.setenv(CACHE_DIR_ENV, str(blocked))  # the index folder cannot be made
    result = check_dataset(GOT10k("x", split_dir.parent, "train"), "error", quiet=True)
    assert result.index_file is None and not result.problems and result.from_index == 0
