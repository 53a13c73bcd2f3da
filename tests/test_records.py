"""JSON records (lib/utils/records.py) and the metrics.jsonl helpers of lib/utils/runs.py."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lib.utils.records import JsonlError, append_jsonl, json_safe, jsonl_records
from lib.utils.runs import METRICS_FILE, RunPaths, drop_metrics_after, read_metrics


def strict_json(text: str):
    """``json.loads`` that fails on NaN / Infinity (not JSON, though Python writes them by default)."""
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))


def write_records(path: Path, *epochs: int) -> None:
    for epoch in epochs:
        append_jsonl(path, {"epoch": epoch, "train": {"Loss/total": float(epoch)}})


def test_metrics_file_is_beside_the_checkpoints(tmp_path):
    paths = RunPaths(tmp_path, "hiptrack_cls_tiny")
    assert paths.metrics_file == tmp_path / "checkpoints" / "train" / "hiptrack" / "hiptrack_cls_tiny" / METRICS_FILE
    assert paths.metrics_file.parent == paths.checkpoint(1).parent


def test_non_finite_numbers_are_written_as_null(tmp_path):
    path = tmp_path / "sub" / "m.jsonl"  # folders are created
    append_jsonl(path, {"epoch": 1, "train": {"Loss/total": float("nan"), "IoU": np.float32(0.5),
                                              "hi": float("inf"), "n": np.int64(3)}, "where": tmp_path})
    append_jsonl(path, {"epoch": 2, "train": {"Loss/total": -math.inf}})
    lines = path.read_text().splitlines()
    assert [strict_json(line) for line in lines] == [
        {"epoch": 1, "train": {"Loss/total": None, "IoU": 0.5, "hi": None, "n": 3}, "where": str(tmp_path)},
        {"epoch": 2, "train": {"Loss/total": None}}]
    assert json_safe((np.float64(2.5), [np.nan])) == [2.5, [None]]


def test_read_metrics_skips_blank_lines_and_an_incomplete_last_line(tmp_path):
    path = tmp_path / METRICS_FILE
    write_records(path, 1, 2)
    with open(path, "a") as f:
        f.write('\n{"epoch": 3, "train": {"Loss/to')  # a record being written (or torn by a crash)
    assert [r["epoch"] for r in read_metrics(path)] == [1, 2]
    assert [number for number, _ in jsonl_records(path)] == [1, 2]


@pytest.mark.parametrize("bad_line, message", [
    ('{"epoch": 2, "train": ', r"m\.jsonl:2: not valid JSON \(Expecting value, column 23\)"),
    ("[1, 2]", r"m\.jsonl:2: a JSON object was expected, got list"),
    ('{"train": {}}', r'm\.jsonl:2: a record needs "epoch", a positive integer; got None'),
    ('{"epoch": "3"}', r"m\.jsonl:2: a record needs \"epoch\", a positive integer; got '3'"),
    ('{"epoch": 0}', r'm\.jsonl:2: a record needs "epoch", a positive integer; got 0'),
])
def test_read_metrics_names_file_and_line_of_a_malformed_line(tmp_path, bad_line, message):
    path = tmp_path / "m.jsonl"
    write_records(path, 1)
    with open(path, "a") as f:
        f.write(bad_line + "\n")
    write_records(path, 3)
    with pytest.raises(JsonlError, match=message) as error:
        read_metrics(path)
    assert str(error.value).startswith(f"{path}:2: ")
    assert isinstance(error.value, ValueError)
    with pytest.raises(FileNotFoundError):
        read_metrics(tmp_path / "missing.jsonl")


def test_drop_metrics_after_keeps_earlier_epochs_and_drops_a_torn_line(tmp_path):
    path = tmp_path / METRICS_FILE
    assert drop_metrics_after(path, 3) == 0 and not path.exists()  # nothing to do without a file
    write_records(path, 1, 2, 3)
    before = path.stat()
    assert drop_metrics_after(path, 3) == 0
    assert path.stat().st_ino == before.st_ino and path.stat().st_mtime_ns == before.st_mtime_ns  # not rewritten
    with open(path, "a") as f:
        f.write('{"epoch": 4, "tr')
    assert drop_metrics_after(path, 1) == 3  # epochs 2 and 3, and the torn line
    assert path.read_text() == '{"epoch": 1, "train": {"Loss/total": 1.0}}\n'
    assert drop_metrics_after(path, 0) == 1 and path.read_text() == ""  # a fresh run starts empty
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic rewrite left no temporary file
