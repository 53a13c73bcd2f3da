"""Shared pieces of the command-line scripts in ``tracking/``: one spelling per flag meaning, one
error boundary.

Across scripts a flag means one thing: ``--save_dir`` is the output root of a run, ``--data_dir`` a
root folder holding datasets, ``--synthetic_dir`` the folder a synthetic dataset is generated into,
``--cls_ann_dir`` the JSONL challenge labels, ``--json`` a JSON file of the scores. Words are joined
with underscores. Older spellings keep working for a while: :func:`parse_with_renamed_flags` rewrites
them and warns once per flag.

Every script runs its work through :func:`run_cli`, which turns an exception into an exit code and
one ``error: ...`` line on stderr (the full traceback goes to the run's log file, and to the console
with ``--debug``, :func:`add_debug_argument`). The exit codes of every script:

====  ===========================================================================================
0     done
1     the run started and failed, or an unexpected error (a bug: the traceback says where)
2     a mistake in what the user gave, found before the run started: a bad argument, config, missing
      file or folder, dataset root, checkpoint, a run folder held by another run, results of another
      checkpoint
3     ``probe_cls_labels.py`` only: the labels are not learnable
130   interrupted (Ctrl-C)
====  ===========================================================================================

What counts as the user's mistake is decided by type, before the run started only (the script calls
:meth:`CliRun.start` when its real work begins): :class:`InputError` (the base of ``ConfigError``,
``CheckpointError`` and :class:`UsageError`), the missing-or-unusable path errors of
:data:`PATH_ERRORS` (a ``DatasetRootError`` is a ``FileNotFoundError``) and whatever types a script
adds with ``user_errors``. Anything raised after the start is a failed run.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class InputError(Exception):
    """Base of the errors in what the user gave (config, checkpoint, argument, path).

    Error classes of the lower layers derive from it (``ConfigError``, ``CheckpointError``), so the
    boundary classifies them without importing their packages.
    """


class UsageError(InputError):
    """A bad argument, path or combination of flags; the message names it and says what to do."""


# a missing or unusable file or folder the user named (a DatasetRootError is a FileNotFoundError)
PATH_ERRORS: tuple[type[BaseException], ...] = (FileNotFoundError, FileExistsError, NotADirectoryError,
                                                IsADirectoryError, PermissionError)


class CliRun:
    """What the error boundary knows about a script's run: whether it started, and its log file."""

    def __init__(self, debug: bool = False) -> None:
        self.debug = debug
        self.started = False
        self.log_file: Path | None = None

    def start(self) -> None:
        """The real work begins: from here on every error is a failed run (exit code 1)."""
        self.started = True

    def use_log_file(self, path: str | Path) -> None:
        """The run's log file: an error's traceback is appended to it."""
        self.log_file = Path(path)


def add_debug_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--debug``: on an error, also print the full traceback on the console."""
    parser.add_argument("--debug", action="store_true", help="on an error, also print the full traceback")


def exit_code_of(error: BaseException, started: bool, user_errors: Sequence[type[BaseException]] = ()) -> int:
    """The exit code of ``error``: 130 interrupted, 1 after the start, 2 a user mistake, else 1."""
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if not started and isinstance(error, (InputError, *PATH_ERRORS, *user_errors)):
        return EXIT_USAGE
    return EXIT_FAILED


def error_message(error: BaseException, code: int) -> str:
    """The text after ``error:``: a user mistake's own message; a failure's also names its type."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    text = str(error).strip()
    if code == EXIT_USAGE and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def run_cli(work: Callable[[CliRun], int], *, debug: bool = False,
            user_errors: Sequence[type[BaseException]] = ()) -> int:
    """Run a script's ``work`` and return its exit code; an exception becomes one ``error:`` line.

    ``user_errors``: further exception types that are the user's mistake when raised before
    :meth:`CliRun.start` (e.g. ``ValueError`` where the script only checks its inputs by then).
    ``SystemExit`` (argparse) passes through.
    """
    run = CliRun(debug)
    try:
        return work(run)
    except (Exception, KeyboardInterrupt) as error:
        code = exit_code_of(error, run.started, tuple(user_errors))
        report_error(error, code, run)
        return code


def report_error(error: BaseException, code: int, run: CliRun) -> None:
    """The traceback to the log file (and with ``--debug`` to stderr), then the ``error:`` line."""
    message = error_message(error, code)
    trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    logged = run.log_file is not None and _append_to_log(run.log_file, f"error: {message}\n{trace}")
    if run.debug and not isinstance(error, KeyboardInterrupt):
        sys.stderr.write(trace)
    elif code == EXIT_FAILED and not isinstance(error, KeyboardInterrupt):
        message += f" (traceback in {run.log_file})" if logged else " (rerun with --debug for the traceback)"
    # the one line a script prints on failure (scripts print, lib/ logs: this is the scripts' boundary)
    print(f"error: {message}", file=sys.stderr, flush=True)


def _append_to_log(log_file: Path, text: str) -> bool:
    """Append a timestamped block to the run's log; False when the log cannot be written."""
    try:
        with open(log_file, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} ERROR {text}")
    except OSError:
        return False
    return True


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM (``kill``, torchrun stopping its workers) raises KeyboardInterrupt,
    so ``finally`` clauses (a run lock) run as on Ctrl-C; outside the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def user_mistakes(*types: type[BaseException], context: str = "") -> Iterator[None]:
    """Re-raise ``types`` raised in the block as :class:`UsageError` (``context`` before the message):
    for checks of the user's input whose code raises a general type such as ``ValueError``."""
    try:
        yield
    except types as e:
        raise UsageError(f"{context}{e}") from e


def parse_with_renamed_flags(parser: argparse.ArgumentParser, argv: Sequence[str] | None,
                             renamed: Mapping[str, str]) -> argparse.Namespace:
    """``parser.parse_args`` after rewriting deprecated flag spellings (``{"--out": "--synthetic_dir"}``).

    ``--old value`` and ``--old=value`` are both rewritten; each deprecated flag used gets one warning.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    warned: set[str] = set()
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        new = renamed.get(name)
        if new is None:
            continue
        if name not in warned:
            warned.add(name)
            logger.warning("warning: %s is deprecated, use %s", name, new)
        args[i] = f"{new}{eq}{value}"
    return parser.parse_args(args)


def renamed_flags_epilog(renamed: Mapping[str, str]) -> str:
    """A help-text line listing the deprecated spellings a script still accepts."""
    return "Deprecated spellings still accepted: " + ", ".join(f"{old} (now {new})" for old, new in renamed.items())
