"""A lock file that says which process works in a folder, so that two runs never write one folder.

The lock is a small JSON file (pid, host, start time, command) created with ``O_CREAT | O_EXCL``:
of two processes creating it, the file system lets exactly one succeed. The holder removes it on
every way out of :func:`hold_lock` (return, exception, Ctrl-C; a process killed outright leaves
it behind). A lock whose holder is a dead process of this host is stale and taken over with a
warning; a lock of another host cannot be checked from here, so it is reported with the command
that removes it.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from lib.utils.cli import UsageError

logger = logging.getLogger(__name__)

_TAKEOVER_ATTEMPTS = 3  # another process may take a stale lock between our checks: look again


class LockHeldError(UsageError):
    """The lock is held by another process (alive, on another host, or unreadable)."""


@dataclass(frozen=True)
class LockOwner:
    """Who holds a lock: what the lock file records."""
    pid: int
    host: str
    since: str
    command: str

    @classmethod
    def this_process(cls) -> LockOwner:
        return cls(os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%d %H:%M:%S"), " ".join(sys.argv))

    @classmethod
    def parse(cls, text: str) -> LockOwner | None:
        """The owner recorded in a lock file's text; None when it is not a lock record."""
        try:
            data = json.loads(text)
            return cls(int(data["pid"]), str(data["host"]), str(data["since"]), str(data.get("command", "")))
        except (ValueError, KeyError, TypeError):
            return None

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host} (since {self.since}: {self.command})"


def process_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _create(path: Path, owner: LockOwner) -> bool:
    """Create the lock file holding ``owner``; False when it exists already."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(asdict(owner)) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return True


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:  # released meanwhile
        return None


def _remove_stale(path: Path, text: str) -> None:
    """Remove the stale lock whose content is ``text``, unless another process replaced it meanwhile.

    Renaming first makes the removal atomic: of two processes taking the same stale lock over, one
    renames it, the other finds nothing to rename; a fresh lock renamed by mistake is put back.
    """
    aside = path.with_name(f"{path.name}.stale-{os.getpid()}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if aside.read_text(encoding="utf-8") == text:
        aside.unlink()
    else:
        os.rename(aside, path)


def _refusal(path: Path, holder: LockOwner | None, hint: str) -> LockHeldError:
    if holder is None:
        return LockHeldError(f"{path.parent} is locked by {path}, which does not say who holds it; if no "
                             f"process works there, remove it: rm {path}")
    if holder.host != socket.gethostname():
        return LockHeldError(f"{path.parent} is locked by {holder.describe()}; this host cannot check whether that "
                             f"process still runs. If it does not, remove the lock on any host: rm {path}")
    return LockHeldError(f"{path.parent} is in use by {holder.describe()}; {hint}")


def acquire_lock(path: str | os.PathLike, hint: str = "wait for it to finish") -> LockOwner:
    """Take the lock file ``path`` for this process (its folder is created); returns the record written.

    Raises :class:`LockHeldError` naming the holder (pid, host, since, command) when another live
    process of this host, or any process of another host, holds it; ``hint`` says what to do then.
    A lock of a dead process of this host is taken over with a warning.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    owner = LockOwner.this_process()
    for _ in range(_TAKEOVER_ATTEMPTS):
        if _create(path, owner):
            return owner
        text = _read(path)
        if text is None:
            continue
        holder = LockOwner.parse(text)
        if holder is None or holder.host != socket.gethostname() or process_alive(holder.pid):
            raise _refusal(path, holder, hint)
        logger.warning("taking over the stale lock %s: its holder, %s, is no longer running", path,
                       holder.describe())
        _remove_stale(path, text)
    raise LockHeldError(f"{path.parent}: could not take the lock {path}, other processes keep taking it")


def release_lock(path: str | os.PathLike, owner: LockOwner) -> None:
    """Remove the lock file if it still holds ``owner``'s record (never another process's lock)."""
    path = Path(path)
    text = _read(path)
    if text is not None and LockOwner.parse(text) == owner:
        path.unlink(missing_ok=True)
    elif text is not None:
        logger.warning("not removing %s: it no longer holds this process's lock", path)


@contextlib.contextmanager
def hold_lock(path: str | os.PathLike, hint: str = "wait for it to finish") -> Iterator[LockOwner]:
    """Hold the lock file ``path`` for the block (:func:`acquire_lock`), released on every way out."""
    owner = acquire_lock(path, hint)
    try:
        yield owner
    finally:
        release_lock(path, owner)
