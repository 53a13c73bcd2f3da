"""Per-frame challenge labels (lib/dataset/challenge_labels.py) and their checking CLI."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import load_script
from lib.challenges import CLASS_NAMES, CV_FLAGS, IGNORE_INDEX, NORMAL, VLM_PRIORITY
from lib.dataset.challenge_labels import (
    ChallengeLabelStore,
    SequenceLabels,
    label_from_record,
    multi_hot_from_record,
    soft_targets_from_record,
    unlabeled,
    validate_record,
)

REPO = Path(__file__).resolve().parents[1]
CLI = REPO / "tracking" / "test_cls_annotations.py"
VLM_CLASS = dict(VLM_PRIORITY)
CV_CLASS = dict(CV_FLAGS)


def rec(frame_id: int | None = 1, vlm: tuple[str, ...] = (), cv: tuple[str, ...] = (), *,
        frame_file: str | None = None, seq: str = "1-Ship", conf: float = 0.5) -> dict:
    """A valid record with the given VLM / CV flags set (conf the same for every VLM entry)."""
    record = {
        "sequence_name": seq,
        "cv_response": {key: int(key in cv) for key, _ in CV_FLAGS},
        "vlm_response": {key: {"flag": int(key in vlm), "conf": conf} for key, _ in VLM_PRIORITY},
        "ground_truth_bbox": [1.0, 2.0, 30.0, 40.0],
    }
    if frame_id is not None:
        record["frame_id"] = frame_id
    if frame_file is not None:
        record["frame_file"] = frame_file
    return record


def write_seq(ann_dir: Path, seq: str, lines: list) -> Path:
    """Write ``<ann_dir>/<seq>/<seq>.jsonl``; dicts are dumped as JSON, strings written verbatim."""
    path = ann_dir / seq / f"{seq}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines),
                    encoding="utf-8")
    return path


def label(vlm: tuple[str, ...] = (), cv: tuple[str, ...] = (), frame_id: int = 1, seed: int = 0) -> int:
    return label_from_record(rec(frame_id, vlm, cv), seed, "1-Ship")


# ----------------------------------------------------------------------------- label logic


def test_class_tables():
    assert CLASS_NAMES[NORMAL] == "Normal"
    assert [k for k, _ in VLM_PRIORITY] == ["occlusion", "motion_blur", "illu_change", "partial_visibility",
                                            "variance_appear", "background_clutter"]
    assert VLM_CLASS == {"occlusion": 0, "illu_change": 1, "motion_blur": 3, "variance_appear": 4,
                         "partial_visibility": 5, "background_clutter": 7}
    assert CV_CLASS == {"scale_variation": 2, "low_res": 6, "low_contrast": 8}


@pytest.mark.parametrize("key", list(VLM_CLASS))
def test_each_vlm_flag_alone_gives_its_class(key):
    assert label(vlm=(key,)) == VLM_CLASS[key]


@pytest.mark.parametrize("first,second", list(zip(VLM_PRIORITY, VLM_PRIORITY[1:])), ids=lambda p: p[0])
def test_vlm_priority_between_adjacent_flags(first, second):
    assert label(vlm=(first[0], second[0])) == first[1]


def test_all_vlm_flags_give_occlusion():
    assert label(vlm=tuple(VLM_CLASS)) == 0


@pytest.mark.parametrize("key", list(VLM_CLASS))
def test_vlm_beats_every_cv_flag(key):
    assert label(vlm=(key,), cv=tuple(CV_CLASS)) == VLM_CLASS[key]


@pytest.mark.parametrize("key", list(CV_CLASS))
def test_each_cv_flag_alone_gives_its_class(key):
    assert label(cv=(key,)) == CV_CLASS[key]


def test_no_flag_is_normal():
    assert label() == NORMAL


@pytest.mark.parametrize("cv", [("scale_variation", "low_res"), ("scale_variation", "low_contrast"),
                                ("low_res", "low_contrast"), tuple(CV_CLASS)], ids="+".join)
def test_several_cv_flags_pick_one_reproducibly_and_vary_across_frames(cv):
    options = {CV_CLASS[k] for k in cv}
    picks = [label(cv=cv, frame_id=f) for f in range(1, 201)]
    assert set(picks) == options  # every option occurs: not always the same choice
    assert picks == [label(cv=cv, frame_id=f) for f in range(1, 201)]  # same on a second call
    counts = np.bincount(picks, minlength=10)[sorted(options)]
    assert counts.min() > 200 / len(options) / 2  # roughly balanced


def test_cv_choice_depends_on_seed_and_sequence_not_on_call_order():
    cv = tuple(CV_CLASS)
    by_seed = {s: [label(cv=cv, frame_id=f, seed=s) for f in range(1, 101)] for s in (0, 1)}
    assert by_seed[0] != by_seed[1]
    other = [label_from_record(rec(f, cv=cv), 0, "2-Boat") for f in range(1, 101)]
    assert other != by_seed[0]
    assert [label(cv=cv, frame_id=f) for f in reversed(range(1, 101))][::-1] == by_seed[0]


def test_conf_is_ignored_and_booleans_are_flags():
    assert label_from_record(rec(1, conf=1.0), 0, "s") == NORMAL  # flag 0 with conf 1.0: not set
    assert label_from_record(rec(1, vlm=("motion_blur",), conf=0.0), 0, "s") == 3  # flag 1, conf 0
    record = rec(1)
    record["vlm_response"]["illu_change"]["flag"] = True
    record["vlm_response"]["occlusion"]["flag"] = False
    record["cv_response"]["low_res"] = True
    assert validate_record(record) is None
    assert label_from_record(record, 0, "s") == 1
    np.testing.assert_array_equal(np.flatnonzero(multi_hot_from_record(record)), [1, 6])


def test_multi_hot_sets_every_flag_or_normal():
    hot = multi_hot_from_record(rec(1, vlm=("occlusion", "background_clutter"), cv=("low_contrast",)))
    assert hot.shape == (10,) and hot.dtype == np.float32
    np.testing.assert_array_equal(np.flatnonzero(hot), [0, 7, 8])
    np.testing.assert_array_equal(np.flatnonzero(multi_hot_from_record(rec(1, cv=tuple(CV_CLASS)))), [2, 6, 8])
    np.testing.assert_array_equal(np.flatnonzero(multi_hot_from_record(rec(1))), [NORMAL])


def test_label_functions_refuse_malformed_records():
    bad = rec(1)
    del bad["cv_response"]
    with pytest.raises(ValueError, match="cv_response"):
        label_from_record(bad, 0, "s")
    with pytest.raises(ValueError, match="cv_response"):
        multi_hot_from_record(bad)


def _without(path: str) -> dict:
    record = rec(1)
    node, keys = record, path.split(".")
    for k in keys[:-1]:
        node = node[k]
    del node[keys[-1]]
    return record


def _with(path: str, value) -> dict:
    record = rec(1)
    node, keys = record, path.split(".")
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    return record


MALFORMED = {
    "list": ([1, 2], "not a JSON object"),
    "number": (3, "not a JSON object"),
    "no_frame": (_without("frame_id"), "no frame_id and no frame_file"),
    "frame_id_zero": (_with("frame_id", 0), "frame_id must be a positive integer"),
    "frame_id_negative": (_with("frame_id", -2), "frame_id must be a positive integer"),
    "frame_id_string": (_with("frame_id", "3"), "frame_id must be a positive integer"),
    "frame_id_float": (_with("frame_id", 2.0), "frame_id must be a positive integer"),
    "frame_id_bool": (_with("frame_id", True), "frame_id must be a positive integer"),
    "frame_file_empty": ({**_without("frame_id"), "frame_file": ""}, "frame_file must be a non-empty string"),
    "no_cv": (_without("cv_response"), "missing cv_response"),
    "no_vlm": (_without("vlm_response"), "missing vlm_response"),
    "cv_not_object": (_with("cv_response", [0, 0, 0]), "cv_response must be an object"),
    "cv_key_missing": (_without("cv_response.low_res"), "cv_response.low_res missing"),
    "cv_flag_two": (_with("cv_response.low_contrast", 2), "cv_response.low_contrast must be 0, 1"),
    "cv_flag_string": (_with("cv_response.scale_variation", "1"), "cv_response.scale_variation must be 0, 1"),
    "cv_flag_float": (_with("cv_response.low_res", 1.0), "cv_response.low_res must be 0, 1"),
    "vlm_key_missing": (_without("vlm_response.occlusion"), "vlm_response.occlusion missing"),
    "vlm_entry_not_object": (_with("vlm_response.motion_blur", 1), "vlm_response.motion_blur must be an object"),
    "vlm_flag_missing": (_without("vlm_response.illu_change.flag"), "vlm_response.illu_change must be an object"),
    "vlm_flag_null": (_with("vlm_response.background_clutter.flag", None),
                      "vlm_response.background_clutter.flag must be 0, 1"),
    "vlm_flag_negative": (_with("vlm_response.occlusion.flag", -1), "vlm_response.occlusion.flag must be 0, 1"),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_validate_record_gives_a_reason(name):
    record, reason = MALFORMED[name]
    assert reason in validate_record(record)


def test_validate_record_accepts_frame_file_only_and_extra_keys():
    assert validate_record(rec(None, frame_file="00000001.jpg")) is None
    assert validate_record({**rec(1), "extra": {"anything": 1}}) is None


# ----------------------------------------------------------------------------- the store


def test_store_labels_by_frame_id_and_leaves_frames_without_record_unlabeled(tmp_path):
    write_seq(tmp_path, "1-Ship", [rec(3, vlm=("occlusion",)), rec(1, cv=("low_res",)), rec(2)])
    result = ChallengeLabelStore(tmp_path).for_sequence("1-Ship", 5)
    assert result.found and result.error is None
    assert result.labels.dtype == torch.long and result.multi_hot.dtype == torch.float32
    assert result.labels.tolist() == [6, NORMAL, 0, IGNORE_INDEX, IGNORE_INDEX]
    assert result.multi_hot.shape == (5, 10)
    assert result.multi_hot[3:].abs().sum() == 0
    assert result.multi_hot[:3].argmax(dim=1).tolist() == [6, NORMAL, 0]
    assert (result.unmatched, result.duplicates, result.malformed, result.num_labeled) == (0, 0, [], 3)


def test_missing_file_gives_all_ignore_and_found_false(tmp_path):
    write_seq(tmp_path, "1-Ship", [rec(1)])
    result = ChallengeLabelStore(tmp_path).for_sequence("2-Boat", 4)
    assert not result.found and result.error is None
    assert result.labels.tolist() == [IGNORE_INDEX] * 4
    assert result.multi_hot.shape == (4, 10) and result.multi_hot.abs().sum() == 0
    empty = unlabeled(3)
    assert empty.labels.tolist() == [IGNORE_INDEX] * 3 and not empty.found and empty.multi_hot.sum() == 0


def test_matching_by_frame_file(tmp_path):
    write_seq(tmp_path, "s", [rec(None, vlm=("illu_change",), frame_file="00000002.jpg"),
                              rec(None, frame_file="00000003.jpg"),
                              rec(None, frame_file="00000009.jpg")])
    store = ChallengeLabelStore(tmp_path)
    frames = ["00000001.jpg", "00000002.jpg", "00000003.jpg"]
    result = store.for_sequence("s", 3, frames)
    assert result.labels.tolist() == [IGNORE_INDEX, 1, NORMAL]
    assert result.unmatched == 1
    # full paths are compared by base name
    assert store.for_sequence("s", 3, [f"/data/s/{f}" for f in frames]).labels.tolist() == [IGNORE_INDEX, 1, NORMAL]
    # without frame names a record with only a frame_file matches nothing
    assert store.for_sequence("s", 3).unmatched == 3
    with pytest.raises(ValueError, match="2 frame files"):
        store.for_sequence("s", 3, frames[:2])


def test_frame_id_wins_over_frame_file(tmp_path):
    write_seq(tmp_path, "s", [rec(2, vlm=("occlusion",), frame_file="00000001.jpg")])
    result = ChallengeLabelStore(tmp_path).for_sequence("s", 2, ["00000001.jpg", "00000002.jpg"])
    assert result.labels.tolist() == [IGNORE_INDEX, 0]


def test_unmatched_and_duplicate_records_are_counted(tmp_path, caplog):
    write_seq(tmp_path, "s", [rec(1, vlm=("occlusion",)), rec(2), rec(7), rec(1, cv=("low_res",)),
                              rec(None, vlm=("motion_blur",), frame_file="00000002.jpg"), rec(12)])
    store = ChallengeLabelStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="lib.dataset.challenge_labels"):
        result = store.for_sequence("s", 3, ["00000001.jpg", "00000002.jpg", "00000003.jpg"])
    assert result.labels.tolist() == [6, 3, IGNORE_INDEX]  # the later line wins
    assert (result.unmatched, result.duplicates) == (2, 2)
    assert "2 records match none of the 3 frames" in caplog.text and "2 duplicate records" in caplog.text
    assert store.stats["unmatched_records"] == 2 and store.stats["duplicate_records"] == 2


def test_malformed_lines_are_reported_with_line_numbers_and_good_lines_load(tmp_path):
    lines: list = [rec(1, vlm=("occlusion",)), "", "{not json"]
    expected = {3: "invalid JSON"}
    for i, (record, reason) in enumerate(MALFORMED.values()):
        lines.append(record)
        expected[len(lines)] = reason
        if i % 3 == 0:
            lines.append("   ")  # blank lines are skipped silently but still count for line numbers
    lines.append(rec(2, cv=("low_contrast",)))
    path = write_seq(tmp_path, "s", lines)
    result = ChallengeLabelStore(tmp_path).for_sequence("s", 2)
    assert result.labels.tolist() == [0, 8]
    assert [line for _, line, _ in result.malformed] == sorted(expected)
    for file, line, reason in result.malformed:
        assert file == str(path)
        assert expected[line] in reason, (line, reason)


def test_malformed_lines_are_logged_up_to_a_cap(tmp_path, caplog):
    write_seq(tmp_path, "s", ["[]"] * 8 + [rec(1)])
    with caplog.at_level(logging.WARNING, logger="lib.dataset.challenge_labels"):
        ChallengeLabelStore(tmp_path).for_sequence("s", 1)
    per_line = [r for r in caplog.records if "skipped malformed line" in r.getMessage()]
    assert len(per_line) == 5
    assert "8 malformed lines skipped in total (3 more not shown), 1 valid records" in caplog.text


def test_unreadable_files_leave_the_sequence_unlabeled(tmp_path):
    path = write_seq(tmp_path, "latin", [rec(1)])
    path.write_bytes(json.dumps(rec(1, seq="caf\xe9"), ensure_ascii=False).encode("latin-1") + b"\n")
    store = ChallengeLabelStore(tmp_path)
    result = store.for_sequence("latin", 1)
    assert not result.found and "not UTF-8" in result.error and result.labels.tolist() == [IGNORE_INDEX]
    (tmp_path / "dir" / "dir.jsonl").mkdir(parents=True)  # a folder where the file should be
    result = store.for_sequence("dir", 2)
    assert not result.found and "cannot read" in result.error
    assert store.stats["files_unreadable"] == 2 and store.stats["files_missing"] == 0


def test_file_without_read_permission_is_unreadable(tmp_path, monkeypatch):
    path = write_seq(tmp_path, "s", [rec(1)])
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # root reads any file: simulate the refusal
        real = Path.read_bytes

        def refuse(self):
            if self == path:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self)
        monkeypatch.setattr(Path, "read_bytes", refuse)
    path.chmod(0)
    try:
        result = ChallengeLabelStore(tmp_path).for_sequence("s", 1)
    finally:
        path.chmod(0o644)
    assert not result.found and "cannot read (Permission denied)" in result.error
    assert result.labels.tolist() == [IGNORE_INDEX]


def test_utf8_bom_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "s" / "s.jsonl"
    path.parent.mkdir()
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(rec(1, vlm=("occlusion",))).encode() + b"\r\n"
                     + json.dumps(rec(2)).encode() + b"\r\n")
    result = ChallengeLabelStore(tmp_path).for_sequence("s", 2)
    assert result.labels.tolist() == [0, NORMAL] and result.malformed == []


def _multi_cv_tree(root: Path, seqs: tuple[str, ...] = ("a", "b", "c"), frames: int = 40) -> None:
    for seq in seqs:
        write_seq(root, seq, [rec(f, cv=tuple(CV_CLASS), seq=seq) for f in range(1, frames + 1)])


def test_cv_choice_is_independent_of_store_instance_and_load_order(tmp_path):
    _multi_cv_tree(tmp_path)
    first = ChallengeLabelStore(tmp_path, seed=3)
    forward = {s: first.for_sequence(s, 40).labels.tolist() for s in ("a", "b", "c")}
    second = ChallengeLabelStore(tmp_path, seed=3)
    backward = {s: second.for_sequence(s, 40).labels.tolist() for s in ("c", "b", "a")}
    assert forward == backward
    assert forward["a"] != forward["b"]  # keyed by sequence too
    assert all(set(v) == {2, 6, 8} for v in forward.values())
    other_seed = ChallengeLabelStore(tmp_path, seed=4).for_sequence("a", 40).labels.tolist()
    assert other_seed != forward["a"]


def test_store_api(tmp_path):
    with pytest.raises(FileNotFoundError, match="DATA.TRAIN.CLS_ANN_DIR") as info:
        ChallengeLabelStore(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(info.value)
    write_seq(tmp_path, "b", [rec(1)])
    write_seq(tmp_path, "a", [rec(1), "oops"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "stray.jsonl").write_text("{}\n")
    store = ChallengeLabelStore(str(tmp_path))
    assert store.sequence_names() == ["a", "b"]
    first = store.for_sequence("a", 3)
    assert store.for_sequence("a", 3) is first  # cached
    store.for_sequence("a", 2)  # another length: stats still count the file once
    store.for_sequence("zzz", 4)
    assert store.stats == {"sequences": 2, "files_found": 1, "files_missing": 1, "files_unreadable": 0,
                           "malformed_lines": 1, "unmatched_records": 0, "duplicate_records": 0,
                           "bad_conf_flags": 0, "frames": 6, "labeled_frames": 1}
    assert store.frames_from_records("a") == (1, None)
    with pytest.raises(ValueError):
        store.for_sequence("a", -1)


def vlm_rec(frame_id: int, confs: dict[str, object], cv: tuple[str, ...] = ()) -> dict:
    """A record whose VLM flags in ``confs`` are set with those conf values (``...`` = no conf key)."""
    record = rec(frame_id, tuple(confs), cv, conf=0.0)
    for key, conf in confs.items():
        if conf is ...:
            del record["vlm_response"][key]["conf"]
        else:
            record["vlm_response"][key]["conf"] = conf
    return record


def test_soft_targets_from_record_use_conf_for_vlm_flags_only():
    row, bad = soft_targets_from_record(vlm_rec(1, {"occlusion": 0.8, "background_clutter": 0.25}, cv=("low_res",)))
    expected = np.zeros(10, dtype=np.float32)
    expected[[VLM_CLASS["occlusion"], VLM_CLASS["background_clutter"], CV_CLASS["low_res"]]] = [0.8, 0.25, 1.0]
    np.testing.assert_array_equal(row, expected)
    assert bad == []
    # an unflagged VLM class ignores its conf; no flag at all is Normal
    row, bad = soft_targets_from_record(rec(1, conf=0.9))
    assert row.tolist() == [0.0] * 9 + [1.0] and bad == []
    with pytest.raises(ValueError, match="malformed"):
        soft_targets_from_record({"frame_id": 1})


@pytest.mark.parametrize("conf", [..., None, "0.7", True, 1.5, -0.1, float("nan")],
                         ids=["missing", "null", "string", "bool", "above_1", "negative", "nan"])
def test_unusable_conf_of_a_flagged_class_is_one_and_reported(conf):
    row, bad = soft_targets_from_record(vlm_rec(1, {"motion_blur": conf, "occlusion": 0.6}))
    assert row[VLM_CLASS["motion_blur"]] == 1.0 and row[VLM_CLASS["occlusion"]] == pytest.approx(0.6)
    assert bad == ["motion_blur"]


def test_store_soft_targets_from_jsonl_with_known_conf_values(tmp_path, caplog):
    path = write_seq(tmp_path, "s", [
        vlm_rec(1, {"occlusion": 0.9}),
        vlm_rec(2, {"illu_change": 0.3, "partial_visibility": 0.55}, cv=("scale_variation",)),
        rec(3),                                                   # no flag: Normal
        vlm_rec(4, {"variance_appear": "high"}),                  # bad conf, line 4
        '{"frame_id": 5, "vlm_response": {}, "cv_response": {}}',  # malformed, skipped
        vlm_rec(6, {"motion_blur": ..., "occlusion": 0.0}),       # missing conf (bad), a flag with conf 0
    ])
    hard_store = ChallengeLabelStore(tmp_path)
    hard = hard_store.for_sequence("s", 7)
    with caplog.at_level(logging.WARNING, logger="lib.dataset.challenge_labels"):
        store = ChallengeLabelStore(tmp_path, soft_targets=True)
        soft = store.for_sequence("s", 7)
        store.for_sequence("s", 8)  # another length of the same file: logged once
    expected = np.zeros((7, 10), dtype=np.float32)
    expected[0, VLM_CLASS["occlusion"]] = 0.9
    expected[1, [VLM_CLASS["illu_change"], VLM_CLASS["partial_visibility"], CV_CLASS["scale_variation"]]] = [
        0.3, 0.55, 1.0]
    expected[2, NORMAL] = 1.0
    expected[3, VLM_CLASS["variance_appear"]] = 1.0
    expected[5, VLM_CLASS["motion_blur"]] = 1.0  # occlusion flagged with conf 0.0 keeps target 0
    np.testing.assert_allclose(soft.multi_hot.numpy(), expected, rtol=0, atol=1e-7)
    assert torch.equal(soft.labels, hard.labels)  # the single-label targets do not change
    assert torch.equal(hard.multi_hot, (hard.multi_hot > 0).float()) and hard.multi_hot[0].sum() == 1
    assert soft.bad_conf == [(str(path), 4, "variance_appear"), (str(path), 6, "motion_blur")]
    assert store.stats["bad_conf_flags"] == 2 and store.stats["malformed_lines"] == 1
    assert hard_store.stats["bad_conf_flags"] == 0  # conf is read only for soft targets
    conf_warnings = [r.getMessage() for r in caplog.records if "conf" in r.getMessage()]
    assert conf_warnings == [f"{path}:4: vlm_response.variance_appear.conf is missing, not a number or outside "
                             "[0, 1]: soft target 1.0 used (2 such flags in this file)"]


def test_cache_is_bounded_and_problems_are_logged_once(tmp_path, caplog):
    for seq in ("a", "b", "c"):
        write_seq(tmp_path, seq, [rec(1), rec(1), "[]"])
    store = ChallengeLabelStore(tmp_path, cache_size=2)
    with caplog.at_level(logging.WARNING, logger="lib.dataset.challenge_labels"):
        first = store.for_sequence("a", 1)
        for seq in ("b", "c", "a", "b"):
            store.for_sequence(seq, 1)
    assert len(store._cache) == 2
    assert store.for_sequence("a", 1) is not first and torch.equal(store.for_sequence("a", 1).labels, first.labels)
    assert caplog.text.count("a/a.jsonl:3: skipped malformed line") == 1
    assert caplog.text.count("a/a.jsonl: 1 duplicate records") == 1
    assert store.stats["malformed_lines"] == 3 and store.stats["duplicate_records"] == 3


def test_frames_from_records(tmp_path):
    write_seq(tmp_path, "ids", [rec(2), rec(9)])
    write_seq(tmp_path, "files", [rec(None, frame_file="b.jpg"), rec(None, frame_file="a.jpg"),
                                  rec(None, frame_file="b.jpg")])
    store = ChallengeLabelStore(tmp_path)
    assert store.frames_from_records("ids") == (9, None)
    assert store.frames_from_records("files") == (2, ["a.jpg", "b.jpg"])
    assert store.frames_from_records("missing") == (0, None)


# ----------------------------------------------------------------------------- the CLI


def run_cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CLI), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.fixture(scope="module")
def cli_main():
    """``main`` of the CLI script, imported from its file."""
    return load_script(CLI).main


def call(cli_main, capsys, *args: str) -> tuple[int, str, str]:
    code = cli_main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _distribution(out: str) -> dict[str, tuple[int, str]]:
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0].isdigit() and int(parts[0]) < 10:
            name = CLASS_NAMES[int(parts[0])]
            assert line.split(maxsplit=1)[1].startswith(name)
            count, pct = line[line.index(name) + len(name):].split()[:2]
            rows[name] = (int(count), pct)
    return rows


def test_cli_reports_distribution(tmp_path, cli_main, capsys):
    ann = tmp_path / "ann"
    write_seq(ann, "1-Ship", [rec(1, vlm=("occlusion",)), rec(2, vlm=("occlusion",)), rec(3), rec(5, cv=("low_res",))])
    write_seq(ann, "2-Boat", [rec(1, vlm=("partial_visibility",), seq="2-Boat")])
    code, out, _ = call(cli_main, capsys, "--cls_ann_dir", str(ann))
    assert code == 0
    assert "Loaded classification annotations for 2 / 2 sequences" in out.splitlines()
    dist = _distribution(out)
    assert list(dist) == list(CLASS_NAMES)
    assert dist["Occlusion"] == (2, "40.0%") and dist["Partial Visibility"] == (1, "20.0%")
    assert dist["Low Resolution"] == (1, "20.0%") and dist["Normal"] == (1, "20.0%")
    assert dist["Motion Blur"] == (0, "0.0%")
    assert "Frames without labels: 1 (16.7%)" in out  # frame 4 of 1-Ship has no record
    assert "Malformed lines: 0" in out and "Unmatched records: 0" in out and "Duplicate records: 0" in out
    assert out.isascii()


def _cooccurrence_table(out: str) -> tuple[list[list[int]], str]:
    """The co-occurrence rows (class id order) and the 2+ flags line of the CLI's output."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Challenge co-occurrence"))
    assert lines[start + 1].split() == ["class"] + [str(c) for c in range(10)]
    rows = []
    for cid, line in enumerate(lines[start + 2:start + 12]):
        label = f"{CLASS_NAMES[cid]} ({cid})"
        assert line.strip().startswith(label)
        rows.append([int(v) for v in line.strip()[len(label):].split()])
    return rows, lines[start + 12]


def test_cli_prints_challenge_cooccurrence_with_known_counts(tmp_path, cli_main, capsys):
    ann = tmp_path / "ann"
    write_seq(ann, "1-Ship", [rec(1, vlm=("occlusion",), cv=("low_res",)),
                              rec(2, vlm=("occlusion", "motion_blur"), cv=("scale_variation",)),
                              rec(3), rec(4, cv=("low_res",)), rec(5, vlm=("occlusion",)),
                              "not json"])
    write_seq(ann, "2-Boat", [rec(1, vlm=("occlusion",), cv=("low_res",), seq="2-Boat"), rec(3, seq="2-Boat")])
    code, out, _ = call(cli_main, capsys, "--cls_ann_dir", str(ann))
    assert code == 0
    occ, blur, scale, low_res = VLM_CLASS["occlusion"], VLM_CLASS["motion_blur"], CV_CLASS["scale_variation"], \
        CV_CLASS["low_res"]
    expected = np.zeros((10, 10), dtype=int)
    for a, b, n in ((occ, occ, 4), (low_res, low_res, 3), (occ, low_res, 2), (occ, blur, 1), (occ, scale, 1),
                    (blur, blur, 1), (scale, scale, 1), (blur, scale, 1), (NORMAL, NORMAL, 2)):
        expected[a, b] = expected[b, a] = n
    rows, several = _cooccurrence_table(out)
    np.testing.assert_array_equal(np.array(rows), expected)
    # 7 labeled frames (2-Boat frame 2 has no record: unlabeled, left out); 2+ flags: 1-Ship 1, 2 and 2-Boat 1
    assert several == "Frames with 2+ flags: 3 of 7 labeled (42.9%)"
    assert _distribution(out)["Occlusion"] == (4, "57.1%")  # the distribution table still parses


def test_cooccurrence_skips_unlabeled_frames():
    cli = load_script(CLI)
    labels = torch.tensor([0, IGNORE_INDEX, 2])
    multi_hot = torch.zeros(3, 10)
    multi_hot[0, [0, 6]] = 1
    multi_hot[1, [0, 1]] = 1  # an unlabeled frame's flags (never produced by the store) must not count
    multi_hot[2, 2] = 1
    counts, several = cli.cooccurrence([SequenceLabels(labels, multi_hot, found=True)])
    assert counts[0, 6] == counts[6, 0] == 1 and counts[0, 1] == 0 and counts.diagonal()[[0, 2, 6]].tolist() == [1] * 3
    assert counts.sum() == 5 and several == 1


def test_cli_data_dir_counts_unlabeled_frames_and_sequences_without_file(tmp_path, cli_main, capsys):
    ann, data = tmp_path / "ann", tmp_path / "train"
    for seq, n in (("GOT-10k_Train_000001", 4), ("GOT-10k_Train_000002", 2), ("GOT-10k_Train_000003", 3)):
        (data / seq).mkdir(parents=True)
        for f in range(1, n + 1):
            (data / seq / f"{f:08d}.jpg").write_bytes(b"")
    (data / "list.txt").write_text("GOT-10k_Train_000001\nGOT-10k_Train_000002\nGOT-10k_Train_000003\n")
    write_seq(ann, "GOT-10k_Train_000001", [rec(1), rec(None, vlm=("occlusion",), frame_file="00000002.jpg"),
                                           rec(9), rec(1, cv=("low_res",))])
    write_seq(ann, "orphan", [rec(1)])
    code, out, _ = call(cli_main, capsys, "--cls_ann_dir", str(ann), "--split_dir", str(data))
    assert code == 0
    assert "Loaded classification annotations for 1 / 3 sequences" in out
    assert "Frames without labels: 7 (77.8%)" in out
    assert _distribution(out)["Low Resolution"] == (1, "50.0%")
    assert "Unmatched records: 1" in out and "Duplicate records: 1" in out
    assert "Sequences without a file: 2\n  GOT-10k_Train_000002, GOT-10k_Train_000003" in out
    assert "Label files without a sequence in --split_dir: 1\n  orphan" in out


def test_cli_lists_malformed_lines_up_to_max_report(tmp_path, cli_main, capsys):
    ann = tmp_path / "ann"
    path = write_seq(ann, "s", [rec(1), "{bad", "", "[]", _without("cv_response"), rec(2)])
    code, out, _ = call(cli_main, capsys, "--cls_ann_dir", str(ann), "--max_report", "2")
    assert code == 0
    assert "Malformed lines: 3" in out
    assert f"  {path}:2: invalid JSON" in out and f"  {path}:4: not a JSON object" in out
    assert f"{path}:5:" not in out and "  ... and 1 more" in out


def test_cli_exits_1_when_nothing_loads(tmp_path, cli_main, capsys):
    ann = tmp_path / "ann"
    write_seq(ann, "s", ["{bad", "[]"])
    code, out, err = call(cli_main, capsys, "--cls_ann_dir", str(ann))
    assert code == 1 and "Loaded classification annotations for 0 / 1 sequences" in out and "error" in err
    (tmp_path / "empty").mkdir()
    code, out, _ = call(cli_main, capsys, "--cls_ann_dir", str(tmp_path / "empty"))
    assert code == 1 and "Loaded classification annotations for 0 / 0 sequences" in out


def test_cli_exits_2_for_missing_folders_and_bad_arguments(tmp_path, cli_main, capsys):
    code, _, err = call(cli_main, capsys, "--cls_ann_dir", str(tmp_path / "nope"))
    assert code == 2 and str(tmp_path / "nope") in err
    code, _, err = call(cli_main, capsys, "--cls_ann_dir", str(tmp_path), "--split_dir", str(tmp_path / "nodata"))
    assert code == 2 and "nodata" in err
    with pytest.raises(SystemExit) as info:
        cli_main(["--seed", "x"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        cli_main(["--help"])
    assert info.value.code == 0 and "--cls_ann_dir" in capsys.readouterr().out


def test_cli_runs_from_any_directory_with_the_same_labels_in_another_process(tmp_path, cli_main, capsys):
    ann = tmp_path / "ann"
    _multi_cv_tree(ann, frames=30)
    _, expected, _ = call(cli_main, capsys, "--cls_ann_dir", str(ann), "--seed", "7")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # Python's str hash differs: labels must not
    result = run_cli("--cls_ann_dir", str(ann), "--seed", "7", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected
    counts = _distribution(expected)
    assert counts["Scale Variation"][0] + counts["Low Resolution"][0] + counts["Low Contrast Object"][0] == 90
    assert min(counts[n][0] for n in ("Scale Variation", "Low Resolution", "Low Contrast Object")) > 0


def test_default_label_seed_is_the_default_training_seed():
    from lib.config.hiptrack import get_default_config
    from lib.challenges import DEFAULT_LABEL_SEED
    assert DEFAULT_LABEL_SEED == get_default_config().TRAIN.SEED
