"""Where test runs write their results, and in which format: one place for the runner and the analysis.

Layout (``<save_dir>/test/tracking_results/<tracker>/<param>/<dataset>/``), each benchmark in its
own format:

* ``got10k`` format (GOT-10k, MVTD, synthetic): ``<seq>/<seq>_001.txt`` (one ``x,y,w,h`` line per
  frame, comma-separated floats, frame 1 included) and ``<seq>/<seq>_time.txt`` (seconds per frame);
  this is what the GOT-10k evaluation server and the official toolkit read.
* ``otb`` format (LaSOT, TrackingNet): ``<seq>.txt`` and ``<seq>_time.txt``.

Per-frame challenge predictions (``--save_cls``) go beside the boxes in ``<seq>_cls.txt``: one
line per frame, ``class_id,p_0,...,p_9`` (frame 1, the template, gets ``-1`` and empty
probabilities written as ``nan``; always the head's raw probabilities, never smoothed).

With a challenge-aware policy on (``TEST.POLICY``, see ``lib/test/tracker/policies.py``) the policy
log ``<seq>_policy.txt`` goes beside them: a CSV header ``frame,memory,search_factor,window_power,
size_rate,score_peak``, then one line per frame (1-based, frame 1 the template: ``1,-,nan,nan,nan,nan``);
``memory`` is ``write`` (written), ``skip`` (a scheduled write vetoed by the memory gate, now pending),
``pending`` (a pending write vetoed again) or ``-`` (no write due); ``search_factor`` is the crop
factor the frame was cropped with, ``window_power`` / ``size_rate`` the damping applied to it (1 = none),
``score_peak`` the peak of its Hann-windowed score map.

Every file is written to a temporary name and renamed, so a result that exists is complete and a
resumed test run can skip its sequence.
"""
from __future__ import annotations

import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lib.utils.atomic import atomic_target, atomic_write_text


@dataclass(frozen=True)
class TestDataset:
    """A ``--dataset`` name of ``tracking/test.py``."""
    registry_name: str   # name in lib.dataset.registry.DATASET_TABLE
    result_format: str   # "got10k" or "otb"
    has_ground_truth: bool = True  # False: only the first box is public (evaluation server)


TEST_DATASETS: dict[str, TestDataset] = {
    "got10k_test": TestDataset("GOT10K_test", "got10k", has_ground_truth=False),
    "got10k_val": TestDataset("GOT10K_official_val", "got10k"),
    "mvtd_test": TestDataset("MVTD_test", "got10k"),
    "mvtd_train": TestDataset("MVTD_train", "got10k"),
    "lasot": TestDataset("LASOT_test", "otb"),
    "trackingnet": TestDataset("TRACKINGNET_test", "otb", has_ground_truth=False),
    "synthetic_test": TestDataset("SYNTHETIC_test", "got10k"),
    "synthetic_train": TestDataset("SYNTHETIC_train", "got10k"),
    "synthetic_val": TestDataset("SYNTHETIC_val", "got10k"),
}


def test_dataset(name: str) -> TestDataset:
    """The :class:`TestDataset` of a ``--dataset`` name; unknown names list the valid ones."""
    try:
        return TEST_DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown test dataset {name!r}; valid: {', '.join(TEST_DATASETS)}") from None


def results_dir(save_dir: str | Path, tracker: str, param: str, dataset: str) -> Path:
    """``<save_dir>/test/tracking_results/<tracker>/<param>/<dataset>``."""
    return Path(save_dir) / "test" / "tracking_results" / tracker / param / dataset


@dataclass(frozen=True)
class SequenceResultFiles:
    """The result files of one sequence in one dataset's format."""
    boxes: Path
    times: Path
    challenges: Path
    policy: Path      # the policy log, written when a challenge-aware policy is on


def sequence_files(directory: str | Path, sequence: str, result_format: str) -> SequenceResultFiles:
    """Paths of the boxes / times / challenge-prediction / policy-log files of ``sequence`` under ``directory``."""
    directory = Path(directory)
    if result_format == "got10k":
        base = directory / sequence
        return SequenceResultFiles(base / f"{sequence}_001.txt", base / f"{sequence}_time.txt",
                                   base / f"{sequence}_cls.txt", base / f"{sequence}_policy.txt")
    if result_format == "otb":
        return SequenceResultFiles(directory / f"{sequence}.txt", directory / f"{sequence}_time.txt",
                                   directory / f"{sequence}_cls.txt", directory / f"{sequence}_policy.txt")
    raise ValueError(f"unknown result format {result_format!r} (expected got10k or otb)")


def format_rows(rows: np.ndarray, fmt: str = "%.4f") -> str:
    """Comma-separated lines of a 2-D array (the GOT-10k server rejects other separators)."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim == 1:
        rows = rows[:, None]
    return "".join(",".join(fmt % v for v in row) + "\n" for row in rows)


def write_boxes(path: str | Path, boxes_xywh: Sequence[Sequence[float]] | np.ndarray) -> Path:
    """Write (N, 4) ``x, y, w, h`` boxes, one comma-separated line per frame."""
    boxes = np.asarray(boxes_xywh, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) x, y, w, h, got shape {boxes.shape}")
    if not np.isfinite(boxes).all():
        raise ValueError(f"not writing {path}: boxes contain NaN or inf")
    return atomic_write_text(path, format_rows(boxes))


def write_times(path: str | Path, seconds: Sequence[float]) -> Path:
    """Write per-frame times in seconds, one line per frame."""
    return atomic_write_text(path, format_rows(np.asarray(seconds, dtype=np.float64), "%.8f"))


def write_challenges(path: str | Path, class_ids: Sequence[int], probabilities: np.ndarray) -> Path:
    """Write per-frame predicted challenge classes and probabilities: ``class_id,p_0,...,p_{K-1}``."""
    probs = np.asarray(probabilities, dtype=np.float64)
    ids = np.asarray(class_ids, dtype=np.int64)
    if probs.ndim != 2 or probs.shape[0] != ids.shape[0]:
        raise ValueError(f"probabilities must be (N, K) for N={ids.shape[0]} frames, got {probs.shape}")
    lines = "".join(f"{i}," + ",".join("%.5f" % p for p in row) + "\n" for i, row in zip(ids, probs))
    return atomic_write_text(path, lines)


POLICY_LOG_COLUMNS = ("frame", "memory", "search_factor", "window_power", "size_rate", "score_peak")


def write_policy_log(path: str | Path, records: Sequence[Any | None]) -> Path:
    """Write the policy log of a sequence: one record per frame (``None`` for the template frame), each with the
    attributes :data:`POLICY_LOG_COLUMNS` but ``frame`` (a :class:`lib.test.tracker.policies.PolicyRecord`)."""
    lines = [",".join(POLICY_LOG_COLUMNS)]
    for frame, record in enumerate(records, start=1):
        if record is None:
            values = ["-"] + ["nan"] * (len(POLICY_LOG_COLUMNS) - 2)
        else:
            values = [str(record.memory)] + ["%.5f" % getattr(record, c) for c in POLICY_LOG_COLUMNS[2:]]
        lines.append(",".join([str(frame)] + values))
    return atomic_write_text(path, "\n".join(lines) + "\n")


def read_policy_log(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a ``<seq>_policy.txt`` as dicts (``frame`` int, ``memory`` str, the other columns float)."""
    path = Path(path)
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines or tuple(lines[0].split(",")) != POLICY_LOG_COLUMNS:
        raise ValueError(f"{path}: expected the header {','.join(POLICY_LOG_COLUMNS)}")
    rows = []
    for line_no, line in enumerate(lines[1:], start=2):
        values = line.split(",")
        if len(values) != len(POLICY_LOG_COLUMNS):
            raise ValueError(f"{path}:{line_no}: expected {len(POLICY_LOG_COLUMNS)} values, got {len(values)}")
        try:
            numbers = [float(v) for v in values[2:]]
            rows.append({"frame": int(values[0]), "memory": values[1],
                         **dict(zip(POLICY_LOG_COLUMNS[2:], numbers))})
        except ValueError:
            raise ValueError(f"{path}:{line_no}: not a number in {line!r}") from None
    return rows


def read_result_boxes(path: str | Path) -> np.ndarray:
    """(N, 4) float64 boxes of a result file (comma, tab or space separated); clear error if malformed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"result file {path} not found")
    rows = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        values = line.replace("\t", ",").replace(" ", ",").split(",")
        values = [v for v in values if v]
        try:
            row = [float(v) for v in values]
        except ValueError:
            raise ValueError(f"{path}:{line_no}: not a number in {line!r}") from None
        if len(row) != 4:
            raise ValueError(f"{path}:{line_no}: expected 4 values x,y,w,h, got {len(row)}")
        rows.append(row)
    if not rows:
        raise ValueError(f"result file {path} is empty")
    return np.asarray(rows, dtype=np.float64)


def read_challenges(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(class ids (N,), probabilities (N, K)) of a ``<seq>_cls.txt`` file."""
    path = Path(path)
    ids, probs = [], []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.split(",")]
        except ValueError:
            raise ValueError(f"{path}:{line_no}: not a number in {line!r}") from None
        ids.append(int(values[0]))
        probs.append(values[1:])
    return np.asarray(ids, dtype=np.int64), np.asarray(probs, dtype=np.float64)


def repetition_box_files(directory: str | Path, sequence: str, result_format: str) -> list[Path]:
    """Every box file of ``sequence``: in ``got10k`` format each ``<seq>/<seq>_NNN.txt`` repetition
    (``_001``, ``_002``, ... in order, as the GOT-10k toolkit reads them), in ``otb`` format the
    single ``<seq>.txt``. Empty when there is none."""
    boxes = sequence_files(directory, sequence, result_format).boxes
    if result_format == "otb":
        return [boxes] if boxes.is_file() else []
    if not boxes.parent.is_dir():
        return []
    pattern = re.compile(re.escape(sequence) + r"_(\d+)\.txt")
    found = [(int(m.group(1)), p) for p in boxes.parent.iterdir()
             if (m := pattern.fullmatch(p.name)) and p.is_file()]
    return [p for _, p in sorted(found)]


def read_result_times(path: str | Path) -> np.ndarray:
    """(N, R) float64 seconds of a ``<seq>_time.txt`` (one line per frame, one comma-separated column
    per repetition; tabs or spaces also accepted); ``nan`` entries are kept, other text is an error
    naming ``file:line``."""
    path = Path(path)
    rows = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        values = [v for v in re.split(r"[,\s]+", line.strip()) if v]
        if not values:
            continue
        try:
            rows.append([float(v) for v in values])
        except ValueError:
            raise ValueError(f"{path}:{line_no}: not a number in {line.strip()!r}") from None
        if len(rows[-1]) != len(rows[0]):
            raise ValueError(f"{path}:{line_no}: {len(rows[-1])} columns, line 1 has {len(rows[0])}")
    if not rows:
        return np.zeros((0, 1), dtype=np.float64)
    return np.asarray(rows, dtype=np.float64)


def got10k_zip_path(directory: str | Path) -> Path:
    """Where :func:`write_got10k_zip` puts the server archive of a results folder: ``<directory>.zip``."""
    directory = Path(directory)
    return directory.with_name(directory.name + ".zip")


def write_got10k_zip(directory: str | Path, sequences: Sequence[str], path: str | Path | None = None) -> Path:
    """Zip the ``got10k``-format results of ``sequences`` for the GOT-10k evaluation server.

    The archive root holds one ``<seq>/`` folder per sequence with ``<seq>_001.txt`` and
    ``<seq>_time.txt``; written to a temporary name and renamed (default path:
    :func:`got10k_zip_path`). Raises ``FileNotFoundError`` naming sequences without results.
    """
    directory = Path(directory)
    path = Path(path) if path is not None else got10k_zip_path(directory)
    files = [sequence_files(directory, seq, "got10k") for seq in sequences]
    missing = [seq for seq, f in zip(sequences, files) if not (f.boxes.is_file() and f.times.is_file())]
    if missing:
        raise FileNotFoundError(f"not writing {path}: {len(missing)} sequences have no results in {directory} "
                                f"(first: {', '.join(missing[:5])})")
    with atomic_target(path) as tmp, zipfile.ZipFile(tmp, "x", compression=zipfile.ZIP_DEFLATED) as archive:
        for seq, f in zip(sequences, files):
            archive.write(f.boxes, f"{seq}/{f.boxes.name}")
            archive.write(f.times, f"{seq}/{f.times.name}")
    return path
