"""Atomic file writes: a file we write either exists complete or not at all.

Everything is written to a temporary name in the target's folder (same file system, so the final
``os.replace`` is atomic), flushed to disk, then renamed; on any error the temporary file is removed
and the target is left as it was. Temporary files are opened with plain ``open`` (not ``mkstemp``)
so they get the usual umask permissions, not 0600.
"""
from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_target(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; when the block ends without error it replaces ``path``.

    The block must create the temporary file (and should flush it); it is renamed onto ``path`` and the
    rename is made durable. On an exception the temporary file is deleted and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    path = Path(path)
    with atomic_target(path) as tmp, open(tmp, "x", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    return path


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort; not possible on every platform)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
