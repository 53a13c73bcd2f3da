"""JSON records: strict JSON of Python / NumPy values, and append-only JSON-lines files.

A JSON-lines file holds one JSON object per line. :func:`append_jsonl` flushes and fsyncs every
record, so a crash loses at most the record being written; its incomplete last line (no newline
yet) is not a record, and :func:`jsonl_records` leaves it out.
"""
from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np


class JsonlError(ValueError):
    """A line of a JSON-lines file that is not a JSON object (the message names file and line)."""


def json_safe(value):
    """JSON-ready copy: paths as text, NumPy scalars as Python numbers, non-finite floats as
    ``None`` (strict JSON has no NaN / Infinity, so they are written as ``null``)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def record_line(record: Mapping) -> str:
    """One JSON-lines line (with its newline) of ``record``, made strict by :func:`json_safe`."""
    return json.dumps(json_safe(record), allow_nan=False) + "\n"


def append_jsonl(path: str | os.PathLike, record: Mapping) -> None:
    """Append ``record`` as one line to ``path`` (folders created) and make it durable (flush + fsync)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.write(record_line(record))
        f.flush()
        os.fsync(f.fileno())


def jsonl_records(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """``(1-based line number, record)`` of every complete line of a JSON-lines file.

    Blank lines are skipped; a last line without its newline (being written, or torn by a crash)
    is left out. Raises :class:`JsonlError` naming file and line for a line that is not a JSON
    object, FileNotFoundError for a missing file.
    """
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    for number, line in enumerate(lines[:-1], start=1):  # the piece after the last newline is incomplete
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise JsonlError(f"{path}:{number}: not valid JSON ({e.msg}, column {e.colno})") from None
        if not isinstance(record, dict):
            raise JsonlError(f"{path}:{number}: a JSON object was expected, got {type(record).__name__}")
        yield number, record
