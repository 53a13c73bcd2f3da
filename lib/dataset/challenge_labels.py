"""Per-frame maritime challenge labels read from ``<ann_dir>/<seq>/<seq>.jsonl``.

Each line of a sequence file is one JSON object describing one frame::

    {"sequence_name": "1-Ship", "frame_id": 1, "frame_file": "00000001.jpg",
     "cv_response": {"scale_variation": 0, "low_res": 0, "low_contrast": 0},
     "vlm_response": {"occlusion": {"flag": 0, "conf": 0.0}, "motion_blur": {...},
                      "illu_change": {...}, "partial_visibility": {...},
                      "variance_appear": {...}, "background_clutter": {...}},
     "ground_truth_bbox": [x, y, w, h]}

The single-label and multi-label targets follow the one rule of :mod:`lib.challenges`
(:func:`~lib.challenges.primary_label`, :func:`~lib.challenges.flagged_classes`).

Soft targets (a store made with ``soft_targets=True``, from ``TRAIN.CLS_SOFT_TARGETS``) replace the
multi-hot vector: a flagged VLM class gets its ``conf``, CV flags stay 1, Normal is 1 when no flag is
set, everything else 0. A flagged VLM class whose ``conf`` is missing, not a number or outside
[0, 1] gets 1.0 and is counted (``bad_conf`` / ``stats["bad_conf_flags"]``, one warning per file).

Frames without a record, and every frame of a sequence without a (readable) file, get
:data:`~lib.challenges.IGNORE_INDEX` (-100): never a silent Normal. Malformed lines are
skipped, counted and reported with file and 1-based line number; the good lines still load.
"""
from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lib.challenges import (CV_FLAGS, DEFAULT_LABEL_SEED, IGNORE_INDEX, NORMAL, NUM_CLASSES, VLM_PRIORITY,
                            flagged_classes, primary_label)

logger = logging.getLogger(__name__)

MAX_LOGGED_PER_FILE = 5  # malformed lines logged one by one per file; the rest only counted
MAX_LOGGED_MISSING = 5  # sequences without a file logged one by one per store


def _flag_value(value: Any) -> bool | None:
    """``True`` / ``False`` for a flag given as 0, 1 or a JSON boolean; ``None`` otherwise."""
    if isinstance(value, bool):
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    return None


def validate_record(record: Any) -> str | None:
    """Why ``record`` (one parsed JSONL line) is malformed, or ``None`` if it is usable.

    A record needs a positive integer ``frame_id`` or a non-empty ``frame_file`` string, a
    ``cv_response`` object with every key of :data:`CV_FLAGS` and a ``vlm_response`` object with
    every key of :data:`VLM_PRIORITY` as ``{"flag": ..., "conf": ...}``. Flags must be 0, 1 or a
    boolean (``1.0`` or ``"1"`` are refused); ``conf`` is not checked here (only soft targets read it,
    see :func:`conf_target`). Missing sections or flags are malformed, never read as 0.
    """
    if not isinstance(record, dict):
        return f"not a JSON object ({type(record).__name__})"
    frame_id = record.get("frame_id")
    frame_file = record.get("frame_file")
    if frame_id is None and frame_file is None:
        return "no frame_id and no frame_file"
    if frame_id is not None and (type(frame_id) is not int or frame_id < 1):
        return f"frame_id must be a positive integer, got {frame_id!r}"
    if frame_file is not None and (not isinstance(frame_file, str) or not frame_file):
        return f"frame_file must be a non-empty string, got {frame_file!r}"
    cv, problem = _section(record, "cv_response")
    if problem:
        return problem
    for key, _ in CV_FLAGS:
        if key not in cv:
            return f"cv_response.{key} missing"
        if _flag_value(cv[key]) is None:
            return f"cv_response.{key} must be 0, 1 or a boolean, got {cv[key]!r}"
    vlm, problem = _section(record, "vlm_response")
    if problem:
        return problem
    for key, _ in VLM_PRIORITY:
        if key not in vlm:
            return f"vlm_response.{key} missing"
        entry = vlm[key]
        if not isinstance(entry, dict) or "flag" not in entry:
            return f"vlm_response.{key} must be an object with a 'flag', got {entry!r}"
        if _flag_value(entry["flag"]) is None:
            return f"vlm_response.{key}.flag must be 0, 1 or a boolean, got {entry['flag']!r}"
    return None


def _section(record: dict, name: str) -> tuple[dict, str | None]:
    """A record's ``cv_response`` / ``vlm_response`` object, or why it is unusable."""
    section = record.get(name)
    if section is None:
        return {}, f"missing {name}"
    if not isinstance(section, dict):
        return {}, f"{name} must be an object, got {type(section).__name__}"
    return section, None


def _checked(record: Any) -> dict:
    reason = validate_record(record)
    if reason is not None:
        raise ValueError(f"malformed challenge record: {reason}")
    return record


def record_flags(record: Mapping) -> dict[str, bool]:
    """Flag key -> set, for every VLM and CV flag of a validated record."""
    flags = {key: bool(_flag_value(record["vlm_response"][key]["flag"])) for key, _ in VLM_PRIORITY}
    flags.update({key: bool(_flag_value(record["cv_response"][key])) for key, _ in CV_FLAGS})
    return flags


def label_from_record(record: dict, seed: int, sequence: str) -> int:
    """Challenge class id (0..9) of one valid record; raises ``ValueError`` if it is malformed.

    VLM flags in :data:`VLM_PRIORITY` order first, then a seeded choice among the CV flags set
    (keyed by ``frame_id``, or ``frame_file`` when there is no id), else Normal (:func:`lib.challenges.primary_label`).
    """
    return _label(_checked(record), seed, sequence)


def _label(record: Mapping, seed: int, sequence: str) -> int:
    """:func:`label_from_record` of an already validated record."""
    frame_key = record.get("frame_id")
    if frame_key is None:
        frame_key = record["frame_file"]
    return primary_label(record_flags(record), seed, sequence, frame_key)


def multi_hot_from_record(record: dict) -> np.ndarray:
    """(K,) float32 vector (K = NUM_CLASSES): 1 for every VLM and CV flag set, or only Normal if none is set."""
    out = np.zeros(NUM_CLASSES, dtype=np.float32)
    out[_flagged(_checked(record))] = 1.0
    return out


def _flagged(record: Mapping) -> list[int]:
    """Class ids of every flag set in a validated record, or ``[NORMAL]`` if none is."""
    return flagged_classes(record_flags(record))


def conf_target(entry: Mapping) -> float | None:
    """The ``conf`` of a ``vlm_response`` entry as a soft target, or ``None`` when it is missing, not a
    number (JSON booleans included) or outside [0, 1] (NaN included)."""
    conf = entry.get("conf")
    if isinstance(conf, bool) or not isinstance(conf, (int, float)):
        return None
    conf = float(conf)
    return conf if 0.0 <= conf <= 1.0 else None


def soft_targets_from_record(record: dict) -> tuple[np.ndarray, list[str]]:
    """(K,) float32 soft target of one record and the VLM keys whose flag is set but whose ``conf``
    is unusable (their target is 1.0); raises ``ValueError`` if the record is malformed.

    A flagged VLM class gets its ``conf``, a flagged CV class 1, Normal 1 when no flag is set.
    """
    return _soft_targets(_checked(record))


def _soft_targets(record: Mapping) -> tuple[np.ndarray, list[str]]:
    """:func:`soft_targets_from_record` of an already validated record."""
    flags = record_flags(record)
    out = np.zeros(NUM_CLASSES, dtype=np.float32)
    bad_conf = []
    for key, class_id in VLM_PRIORITY:
        if flags[key]:
            conf = conf_target(record["vlm_response"][key])
            if conf is None:
                bad_conf.append(key)
            out[class_id] = 1.0 if conf is None else conf  # a flag without a usable conf is still a flag
    for key, class_id in CV_FLAGS:
        if flags[key]:
            out[class_id] = 1.0  # the classical measurements have no confidence
    if not any(flags.values()):
        out[NORMAL] = 1.0
    return out, bad_conf


@dataclass
class SequenceLabels:
    """Challenge labels of one sequence of N frames, with what went wrong reading them."""
    labels: torch.Tensor                # (N,) long class id 0..9, IGNORE_INDEX (-100) if unlabeled
    multi_hot: torch.Tensor             # (N, K) float32 every flag of the frame (soft targets if asked); zeros if unlabeled
    found: bool                         # a readable label file exists for the sequence
    malformed: list[tuple[str, int, str]] = field(default_factory=list)  # (file, 1-based line, reason)
    bad_conf: list[tuple[str, int, str]] = field(default_factory=list)  # soft targets: (file, line, VLM key) read as 1.0
    unmatched: int = 0                  # valid records whose frame_id / frame_file is no frame
    duplicates: int = 0                 # valid records overridden by a later line for the same frame
    error: str | None = None            # why an existing file could not be read (then found is False)

    @property
    def num_labeled(self) -> int:
        """Frames with a class label (not IGNORE_INDEX)."""
        return int((self.labels != IGNORE_INDEX).sum())


def unlabeled(num_frames: int) -> SequenceLabels:
    """Labels of a sequence without annotations: every frame IGNORE_INDEX, multi-hot all zeros."""
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    return SequenceLabels(
        labels=torch.full((num_frames,), IGNORE_INDEX, dtype=torch.long),
        multi_hot=torch.zeros(num_frames, NUM_CLASSES, dtype=torch.float32),
        found=False,
    )


@dataclass
class _ParsedFile:
    """Valid records of one sequence file (with their line numbers) and its malformed lines."""
    path: Path
    found: bool
    records: list[tuple[int, dict]] = field(default_factory=list)
    malformed: list[tuple[str, int, str]] = field(default_factory=list)
    error: str | None = None


def _read_jsonl(path: Path) -> _ParsedFile:
    """Parse one sequence file; missing / unreadable files and bad lines are recorded, not raised."""
    if not path.exists():
        return _ParsedFile(path, found=False)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return _ParsedFile(path, found=False, error=f"not UTF-8 text ({e.reason} at byte {e.start})")
    except OSError as e:
        return _ParsedFile(path, found=False, error=f"cannot read ({e.strerror or e})")
    parsed = _ParsedFile(path, found=True)
    # Split on "\n" only: str.splitlines() would also split on U+2028 inside JSON strings.
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            parsed.malformed.append((str(path), line_no, f"invalid JSON ({e.msg}, column {e.colno})"))
            continue
        reason = validate_record(record)
        if reason is not None:
            parsed.malformed.append((str(path), line_no, reason))
            continue
        parsed.records.append((line_no, record))
    return parsed


@dataclass(frozen=True)
class _Summary:
    """What :attr:`ChallengeLabelStore.stats` keeps of one sequence (no tensors, no records)."""
    found: bool
    unreadable: bool
    malformed: int
    unmatched: int
    duplicates: int
    bad_conf: int
    frames: int
    labeled: int


class ChallengeLabelStore:
    """Challenge labels of the sequences under ``ann_dir`` (``<ann_dir>/<seq>/<seq>.jsonl``).

    Files are read lazily when a sequence is first asked for; :meth:`for_sequence` results are
    kept in an LRU cache of ``cache_size`` sequences keyed by ``(seq_name, num_frames,
    frame_files)`` (parsed records are not kept, so memory stays bounded for large benchmarks;
    a file is logged about once). Every label depends only on the record, the seed and the
    sequence name, so results are identical whatever the order of calls, the process or the
    data-loader worker. With ``soft_targets`` the ``multi_hot`` tensors hold soft targets (see the
    module docstring) instead of 0 / 1 flags.
    """

    def __init__(self, ann_dir: str | Path, seed: int = DEFAULT_LABEL_SEED, cache_size: int = 256,
                 soft_targets: bool = False) -> None:
        self.ann_dir = Path(ann_dir).expanduser()
        if not self.ann_dir.exists():
            raise FileNotFoundError(
                f"challenge label folder {str(self.ann_dir)!r} does not exist "
                "(set by DATA.TRAIN.CLS_ANN_DIR / DATA.VAL.CLS_ANN_DIR; empty = unlabeled)"
            )
        if not self.ann_dir.is_dir():
            raise NotADirectoryError(
                f"challenge label folder {str(self.ann_dir)!r} is not a folder "
                "(set by DATA.TRAIN.CLS_ANN_DIR / DATA.VAL.CLS_ANN_DIR)"
            )
        self.seed = int(seed)
        self.cache_size = int(cache_size)
        self.soft_targets = bool(soft_targets)
        self._cache: OrderedDict[tuple, SequenceLabels] = OrderedDict()
        self._latest: dict[str, _Summary] = {}  # per sequence, for stats without double counts
        self._logged: set[str] = set()  # sequences whose file problems were logged
        self._match_logged: set[str] = set()  # sequences whose unmatched / duplicate counts were logged
        self._conf_logged: set[str] = set()  # sequences whose unusable conf values were logged
        self._missing_logged = 0

    def path_of(self, seq_name: str) -> Path:
        """Label file of a sequence (it may not exist)."""
        return self.ann_dir / seq_name / f"{seq_name}.jsonl"

    def sequence_names(self) -> list[str]:
        """Sorted names of the folders that hold ``<seq>/<seq>.jsonl``."""
        return sorted(
            p.name for p in self.ann_dir.iterdir() if p.is_dir() and (p / f"{p.name}.jsonl").is_file()
        )

    def _parsed(self, seq_name: str) -> _ParsedFile:
        parsed = _read_jsonl(self.path_of(seq_name))
        if seq_name not in self._logged:
            self._logged.add(seq_name)
            self._log_file(seq_name, parsed)
        return parsed

    def _log_file(self, seq_name: str, parsed: _ParsedFile) -> None:
        if parsed.error is not None:
            logger.warning("%s: %s; sequence %s is unlabeled", parsed.path, parsed.error, seq_name)
        elif not parsed.found:
            self._missing_logged += 1
            if self._missing_logged <= MAX_LOGGED_MISSING:
                logger.warning("no challenge labels for sequence %s (%s missing); its frames are unlabeled",
                               seq_name, parsed.path)
            elif self._missing_logged == MAX_LOGGED_MISSING + 1:
                logger.warning("more sequences without a challenge label file; see ChallengeLabelStore.stats")
        for file, line, reason in parsed.malformed[:MAX_LOGGED_PER_FILE]:
            logger.warning("%s:%d: skipped malformed line: %s", file, line, reason)
        if len(parsed.malformed) > MAX_LOGGED_PER_FILE:
            logger.warning("%s: %d malformed lines skipped in total (%d more not shown), %d valid records",
                           parsed.path, len(parsed.malformed), len(parsed.malformed) - MAX_LOGGED_PER_FILE,
                           len(parsed.records))

    def frames_from_records(self, seq_name: str) -> tuple[int, list[str] | None]:
        """Frame count (and frame files) implied by a sequence file when there is no image folder.

        The largest ``frame_id`` if any record has one (frame files ``None``); else the sorted
        distinct ``frame_file`` names. ``(0, None)`` for a missing or unreadable file.
        """
        records = [r for _, r in self._parsed(seq_name).records]
        ids = [r["frame_id"] for r in records if r.get("frame_id") is not None]
        if ids:
            return max(ids), None
        files = sorted({r["frame_file"] for r in records})
        return len(files), (files or None)

    def for_sequence(self, seq_name: str, num_frames: int, frame_files: list[str] | None = None) -> SequenceLabels:
        """Labels of the ``num_frames`` frames of ``seq_name``.

        A record matches frame ``frame_id - 1`` when it has a ``frame_id``; else the frame whose
        file name (``frame_files[i]``, compared by base name) equals its ``frame_file``. Records
        matching no frame count as ``unmatched``; for two records of one frame the later line wins
        and the earlier counts as a duplicate. Do not modify the returned tensors: they are cached.
        """
        if num_frames < 0:
            raise ValueError(f"num_frames must be >= 0, got {num_frames}")
        if frame_files is not None and len(frame_files) != num_frames:
            raise ValueError(f"{len(frame_files)} frame files given for {num_frames} frames of {seq_name}")
        key = (seq_name, num_frames, tuple(frame_files) if frame_files is not None else None)
        cached = self._cache.get(key)
        if cached is not None:
            self._cache.move_to_end(key)
            return cached
        result = self._build(seq_name, num_frames, frame_files)
        if self.cache_size > 0:
            self._cache[key] = result
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        self._latest[seq_name] = _Summary(
            found=result.found, unreadable=result.error is not None, malformed=len(result.malformed),
            unmatched=result.unmatched, duplicates=result.duplicates, bad_conf=len(result.bad_conf),
            frames=len(result.labels),
            labeled=result.num_labeled,
        )
        return result

    def _build(self, seq_name: str, num_frames: int, frame_files: list[str] | None) -> SequenceLabels:
        parsed = self._parsed(seq_name)
        if not parsed.found:
            result = unlabeled(num_frames)
            result.error = parsed.error
            return result
        by_name = {Path(f).name: i for i, f in enumerate(frame_files)} if frame_files is not None else None
        chosen: dict[int, tuple[int, dict]] = {}  # frame index -> (line, record)
        unmatched: list[Any] = []
        duplicates = 0
        for line_no, record in parsed.records:
            frame_id = record.get("frame_id")
            if frame_id is not None:
                index = frame_id - 1 if frame_id <= num_frames else None
            elif by_name is not None:
                index = by_name.get(Path(record["frame_file"]).name)
            else:
                index = None
            if index is None:
                unmatched.append(frame_id if frame_id is not None else record["frame_file"])
                continue
            if index in chosen:
                duplicates += 1
            chosen[index] = (line_no, record)
        labels = np.full(num_frames, IGNORE_INDEX, dtype=np.int64)
        multi_hot = np.zeros((num_frames, NUM_CLASSES), dtype=np.float32)
        bad_conf: list[tuple[str, int, str]] = []
        for index, (line_no, record) in chosen.items():
            labels[index] = _label(record, self.seed, seq_name)  # records were validated when read
            if self.soft_targets:
                multi_hot[index], bad_keys = _soft_targets(record)
                bad_conf.extend((str(parsed.path), line_no, key) for key in bad_keys)
            else:
                multi_hot[index, _flagged(record)] = 1.0
        if (unmatched or duplicates or len(chosen) < num_frames) and seq_name not in self._match_logged:
            self._match_logged.add(seq_name)
            self._log_matching(parsed.path, num_frames, len(chosen), unmatched, duplicates)
        if bad_conf and seq_name not in self._conf_logged:
            self._conf_logged.add(seq_name)
            bad_conf.sort(key=lambda item: item[1])
            file, line, key = bad_conf[0]
            logger.warning("%s:%d: vlm_response.%s.conf is missing, not a number or outside [0, 1]: soft target "
                           "1.0 used (%d such flags in this file)", file, line, key, len(bad_conf))
        return SequenceLabels(torch.from_numpy(labels), torch.from_numpy(multi_hot), found=True,
                              malformed=list(parsed.malformed), bad_conf=bad_conf,
                              unmatched=len(unmatched), duplicates=duplicates)

    @staticmethod
    def _log_matching(path: Path, num_frames: int, matched: int, unmatched: list, duplicates: int) -> None:
        if unmatched:
            logger.warning("%s: %d records match none of the %d frames, e.g. %s", path,
                           len(unmatched), num_frames, ", ".join(map(repr, unmatched[:3])))
        if duplicates:
            logger.warning("%s: %d duplicate records (the later line wins)", path, duplicates)
        if matched < num_frames:
            logger.info("%s: %d of %d frames have no record (unlabeled)", path, num_frames - matched, num_frames)

    @property
    def stats(self) -> dict[str, int]:
        """Totals over the sequences asked for so far (latest call per sequence)."""
        results = self._latest.values()
        return {
            "sequences": len(self._latest),
            "files_found": sum(r.found for r in results),
            "files_missing": sum(not r.found and not r.unreadable for r in results),
            "files_unreadable": sum(r.unreadable for r in results),
            "malformed_lines": sum(r.malformed for r in results),
            "unmatched_records": sum(r.unmatched for r in results),
            "duplicate_records": sum(r.duplicates for r in results),
            "bad_conf_flags": sum(r.bad_conf for r in results),
            "frames": sum(r.frames for r in results),
            "labeled_frames": sum(r.labeled for r in results),
        }
