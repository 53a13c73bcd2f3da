"""Checking every sequence of a dataset before training, with a cached index of the verdicts.

A sequence that is broken on disk (frame folder missing, a gap in the frame numbers, an annotation
file missing, malformed or shorter than the frame count, boxes that are NaN or never valid) would
otherwise crash training when the sampler first draws it, possibly hours in, or never be sampled
without a word. :func:`check_dataset` asks :meth:`FolderSequenceDataset.check_sequence` about every
sequence before the first step and, as ``DATA.ON_BAD_SEQUENCE`` says, drops the bad ones with one
warning each (``skip``) or stops with :class:`BadSequenceError` (``error``). A dataset none of whose
sequences is usable is an error either way.

The check opens no image: per sequence it lists the frame folder once and reads the small
annotation files. Its verdicts are kept in a JSON index, one file per dataset root and split::

    <cache dir>/dataset_index/<class>-<hash of class, root and split>.json

the cache dir being ``$HIPTRACK_CACHE_DIR``, else ``$XDG_CACHE_HOME/hiptrack_cls``, else
``~/.cache/hiptrack_cls`` (dataset roots are never written). A sequence's verdict is reused while
its key is unchanged: the paths, sizes and modification times (ns) of its frame folder (which
changes when a frame file is added, removed or renamed) and of its annotation files (present or
not). Any other change is picked up on the next run; deleting the folder clears the cache.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lib.dataset.got10k import MAX_LISTED_NAMES, FolderSequenceDataset
from lib.utils.atomic import atomic_write_text

logger = logging.getLogger(__name__)

ON_BAD_SEQUENCE = ("skip", "error")  # values of DATA.ON_BAD_SEQUENCE
INDEX_VERSION = 1                     # bump when the check changes, so older verdicts are not reused
CACHE_DIR_ENV = "HIPTRACK_CACHE_DIR"
_NEW_LINES = re.compile(r"\s*\n\s*")


class BadSequenceError(ValueError):
    """A sequence that cannot be trained on with ``DATA.ON_BAD_SEQUENCE: error``, or a dataset with
    no usable sequence at all; the one-line message names the dataset, the sequences and why."""


@dataclass
class CheckResult:
    """What :func:`check_dataset` found in one dataset."""
    dataset: str
    checked: int                      # sequences looked at
    from_index: int                   # of those, verdicts reused from the cached index
    problems: list[tuple[str, str]] = field(default_factory=list)  # (sequence, reason)
    seconds: float = 0.0
    index_file: Path | None = None    # None: not cached


def cache_dir() -> Path:
    """The folder of this project's caches: ``$HIPTRACK_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/hiptrack_cls``, else ``~/.cache/hiptrack_cls``."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "hiptrack_cls"


def index_path(dataset: FolderSequenceDataset) -> Path:
    """The index file of a dataset's root and split (datasets that select subsets of one split share it)."""
    digest = hashlib.sha1(dataset.index_identity().encode()).hexdigest()[:16]
    return cache_dir() / "dataset_index" / f"{type(dataset).__name__.lower()}-{digest}.json"


def sequence_key(dataset: FolderSequenceDataset, seq_id: int) -> str:
    """Hash of the path, modification time and size of a sequence's frame folder and annotation files."""
    parts = []
    for path in (dataset.frame_dir(seq_id), *dataset.annotation_files(seq_id)):
        try:
            stat = os.stat(path)
        except OSError:  # missing (optional label files) or unreachable: part of the key too
            parts.append(f"{path}|-")
            continue
        parts.append(f"{path}|{stat.st_mtime_ns}|{stat.st_size}")
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=12).hexdigest()


class SequenceIndex:
    """Cached verdicts of one dataset's sequences: name -> (key, reason or None)."""

    def __init__(self, path: Path | None, identity: str) -> None:
        self.path = path
        self.identity = identity
        self.entries: dict[str, list] = {}
        self.changed = False

    @classmethod
    def load(cls, path: Path | None, identity: str) -> SequenceIndex:
        """The index in ``path``; empty when it is missing, unreadable, of another version or root."""
        index = cls(path, identity)
        if path is None or not path.is_file():
            return index
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("version") == INDEX_VERSION and data.get("identity") == identity:
                index.entries = {str(k): v for k, v in data["sequences"].items()
                                 if isinstance(v, list) and len(v) == 2}
        except (OSError, ValueError, AttributeError, KeyError, TypeError) as e:
            # a damaged cache costs one full check, never a failed run
            logger.info("dataset index %s unreadable (%s): checking every sequence again", path, e)
        return index

    def verdict(self, name: str, key: str) -> tuple[bool, str | None]:
        """``(True, reason or None)`` when the index holds ``name`` with this key, else ``(False, None)``."""
        entry = self.entries.get(name)
        if entry is None or entry[0] != key:
            return False, None
        return True, entry[1]

    def store(self, name: str, key: str, reason: str | None) -> None:
        self.entries[name] = [key, reason]
        self.changed = True

    def save(self) -> bool:
        """Write the index if it changed; False (and an info line) when the cache folder is not writable."""
        if self.path is None or not self.changed:
            return True
        data = {"version": INDEX_VERSION, "identity": self.identity, "sequences": self.entries}
        try:
            atomic_write_text(self.path, json.dumps(data, separators=(",", ":")))
        except OSError as e:
            logger.info("cannot write the dataset index %s (%s): the next run checks every sequence again "
                        "(set %s to a writable folder)", self.path, e, CACHE_DIR_ENV)
            return False
        self.changed = False
        return True


def one_line(text: str) -> str:
    """``text`` with line breaks (e.g. of configparser errors) turned into spaces: one log line each."""
    return _NEW_LINES.sub(" ", text.strip())


def find_bad_sequences(dataset: FolderSequenceDataset, use_cache: bool = True) -> CheckResult:
    """Check every sequence of ``dataset`` (verdicts of unchanged sequences from the index)."""
    start = time.perf_counter()
    path = index_path(dataset) if use_cache else None
    index = SequenceIndex.load(path, dataset.index_identity())
    result = CheckResult(dataset.name, checked=len(dataset), from_index=0, index_file=path)
    for seq_id, name in enumerate(dataset.sequence_names):
        key = sequence_key(dataset, seq_id)  # before the check: a change during it invalidates the verdict
        known, reason = index.verdict(name, key)
        if known:
            result.from_index += 1
        else:
            reason = dataset.check_sequence(seq_id)
            reason = None if reason is None else one_line(reason)
            index.store(name, key, reason)
        if reason is not None:
            result.problems.append((name, reason))
    if not index.save():
        result.index_file = None
    result.seconds = time.perf_counter() - start
    return result


def _quoted(problems: Sequence[tuple[str, str]]) -> str:
    """``sequence NAME: reason; ...`` for the first few problems."""
    shown = "; ".join(f"sequence {name}: {reason}" for name, reason in problems[:MAX_LISTED_NAMES])
    return shown + ("; ..." if len(problems) > MAX_LISTED_NAMES else "")


def check_dataset(
    dataset: FolderSequenceDataset, on_bad_sequence: str = "skip", use_cache: bool = True, quiet: bool = False
) -> CheckResult:
    """Check ``dataset`` before training and act on its bad sequences.

    ``skip``: drop each with one warning (dataset, sequence, reason); they are then listed in
    ``dataset.skipped_sequences``. ``error``: raise :class:`BadSequenceError` naming them. A dataset
    left without sequences raises in both modes. ``quiet`` (DDP ranks other than 0) logs nothing.
    """
    if on_bad_sequence not in ON_BAD_SEQUENCE:
        raise ValueError(f"on_bad_sequence must be one of {', '.join(ON_BAD_SEQUENCE)}, got {on_bad_sequence!r}")
    result = find_bad_sequences(dataset, use_cache)
    problems = result.problems
    if len(problems) == result.checked:
        raise BadSequenceError(f"{dataset.name}: none of its {result.checked} sequence(s) can be trained on: "
                               f"{_quoted(problems)}")
    if problems and on_bad_sequence == "error":
        raise BadSequenceError(f"{dataset.name}: {len(problems)} of {result.checked} sequence(s) cannot be trained "
                               f"on (DATA.ON_BAD_SEQUENCE error; 'skip' trains without them): {_quoted(problems)}")
    if not quiet:
        for name, reason in problems:
            logger.warning("%s: skipping sequence %s: %s", dataset.name, name, reason)
        cached = f"{result.from_index} verdicts from {result.index_file}" if result.index_file else "not cached"
        logger.info("%s: %d sequences checked in %.2f s (%s), %d skipped", dataset.name, result.checked,
                    result.seconds, cached, len(problems))
    if problems:
        dataset.drop_sequences(problems)
    return result
