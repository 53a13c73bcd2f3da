"""Where the datasets are: one root folder per dataset kind, never written by this code.

The root of a kind (``got10k``, ``mvtd``, ``lasot``, ``trackingnet``, ``synthetic``) comes from the
first of these that is set:

1. ``--dataset_dir KIND=PATH`` on the command line (``overrides``);
2. the environment variable ``HIPTRACK_<KIND>_DIR`` (e.g. ``HIPTRACK_GOT10K_DIR``);
3. key ``KIND`` of a YAML paths file (``--paths FILE`` or ``HIPTRACK_PATHS_FILE``); relative paths
   in it are relative to the file's folder;
4. ``<data dir>/KIND``, the data dir being ``--data_dir``, ``HIPTRACK_DATA_DIR`` or ``./data``
   (relative to the working directory).

A root that does not exist raises :class:`DatasetRootError` listing all of these and the layout
expected under the root.
"""
from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DATASET_KINDS = ("got10k", "mvtd", "lasot", "trackingnet", "synthetic")
ENV_VARS = {kind: f"HIPTRACK_{kind.upper()}_DIR" for kind in DATASET_KINDS}
PATHS_FILE_ENV = "HIPTRACK_PATHS_FILE"
DATA_DIR_ENV = "HIPTRACK_DATA_DIR"
DEFAULT_DATA_DIR = Path("data")

DISPLAY_NAMES = {
    "got10k": "GOT-10k",
    "mvtd": "MVTD",
    "lasot": "LaSOT",
    "trackingnet": "TrackingNet",
    "synthetic": "synthetic (generated, GOT-10k layout)",
}
LAYOUTS = {
    "got10k": "<root>/train/list.txt, <root>/train/GOT-10k_Train_000001/00000001.jpg, groundtruth.txt, "
              "absence.label, cover.label (also <root>/val/..., <root>/test/...)",
    "mvtd": "<root>/train/list.txt, <root>/train/1-Ship/00000001.jpg, groundtruth.txt "
            "(absence.label, cover.label optional); <root>/test/list.txt, <root>/test/<seq>/...",
    "lasot": "<root>/testing_set.txt, <root>/airplane/airplane-1/img/00000001.jpg, groundtruth.txt, "
             "full_occlusion.txt, out_of_view.txt",
    "trackingnet": "<root>/TRAIN_0/frames/<seq>/0.jpg, <root>/TRAIN_0/anno/<seq>.txt "
                   "(TRAIN_0 .. TRAIN_11, TEST)",
    "synthetic": "<root>/train/list.txt, <root>/train/<seq>/00000001.jpg, groundtruth.txt "
                 "(GOT-10k layout; also <root>/test/...)",
}


class DatasetRootError(FileNotFoundError):
    """A dataset root folder that does not exist; the message says every way to set it."""


def _check_kind(kind: str, where: str) -> str:
    key = kind.strip().lower()
    if key not in DATASET_KINDS:
        close = difflib.get_close_matches(key, DATASET_KINDS, n=1, cutoff=0.0)
        raise ValueError(f"{where}: unknown dataset {kind!r}; valid names: {', '.join(DATASET_KINDS)}"
                         + (f" (closest: {close[0]})" if close else ""))
    return key


def parse_dataset_dirs(values: Iterable[str] | Mapping[str, str | Path] | None) -> dict[str, Path]:
    """``{"got10k": Path(...)}`` from ``--dataset_dir`` values ``KIND=PATH`` (or a mapping)."""
    if values is None:
        return {}
    if isinstance(values, str):
        values = [values]
    if isinstance(values, Mapping):
        items = list(values.items())
    else:
        items = []
        for value in values:
            kind, sep, path = value.partition("=")
            if not sep or not kind.strip() or not path.strip():
                raise ValueError(f"--dataset_dir {value!r}: expected NAME=PATH, e.g. got10k=/data/got10k")
            items.append((kind, path.strip()))
    return {_check_kind(str(kind), "--dataset_dir"): Path(path).expanduser() for kind, path in items}


def read_paths_file(path: Path) -> dict[str, Path]:
    """Dataset roots of a YAML paths file (``got10k: /data/got10k`` ...); relative to its folder."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"paths file {path} not found (given by --paths or {PATHS_FILE_ENV})")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as e:
        raise ValueError(f"paths file {path}: invalid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"paths file {path}: expected a mapping such as 'got10k: /data/got10k', "
                         f"got {type(data).__name__}")
    roots = {}
    for key, value in data.items():
        kind = _check_kind(str(key), f"paths file {path}")
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise ValueError(f"paths file {path}: {key} must be a path string, got {value!r}")
        roots[kind] = path.parent / Path(value).expanduser()
    return roots


@dataclass
class DatasetPaths:
    """Dataset roots from overrides > environment > paths file > ``<data dir>/<kind>``.

    ``paths_file`` / ``data_dir`` left ``None`` fall back to ``HIPTRACK_PATHS_FILE`` /
    ``HIPTRACK_DATA_DIR`` (then ``./data``), and ``HIPTRACK_<KIND>_DIR`` is read, at lookup time.
    """
    overrides: dict[str, Path] = field(default_factory=dict)  # kind -> root, from --dataset_dir
    paths_file: Path | None = None                            # YAML kind -> root (--paths)
    data_dir: Path | None = None                              # folder of <kind>/ folders (--data_dir)
    _file_roots: dict[Path, dict[str, Path]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.overrides = parse_dataset_dirs(self.overrides)
        self.paths_file = Path(self.paths_file).expanduser() if self.paths_file else None
        self.data_dir = Path(self.data_dir).expanduser() if self.data_dir else None

    @classmethod
    def from_env(
        cls,
        overrides: Iterable[str] | Mapping[str, str | Path] | None = None,
        paths_file: str | Path | None = None,
        data_dir: str | Path | None = None,
    ) -> DatasetPaths:
        """From command-line values (``--dataset_dir`` list, ``--paths``, ``--data_dir``), with
        ``HIPTRACK_PATHS_FILE`` and ``HIPTRACK_DATA_DIR`` filled in now when those are not given."""
        return cls(
            overrides=parse_dataset_dirs(overrides),
            paths_file=paths_file or os.environ.get(PATHS_FILE_ENV) or None,
            data_dir=data_dir or os.environ.get(DATA_DIR_ENV) or None,
        )

    def _paths_file(self) -> tuple[Path | None, str]:
        if self.paths_file is not None:
            return self.paths_file, "--paths"
        env = os.environ.get(PATHS_FILE_ENV)
        return (Path(env).expanduser(), PATHS_FILE_ENV) if env else (None, "")

    def _data_dir(self) -> tuple[Path, str]:
        if self.data_dir is not None:
            return self.data_dir, "--data_dir"
        env = os.environ.get(DATA_DIR_ENV)
        if env:
            return Path(env).expanduser(), DATA_DIR_ENV
        return DEFAULT_DATA_DIR, f"the default ./data (set --data_dir or {DATA_DIR_ENV})"

    def candidates(self, kind: str) -> list[tuple[str, Path | None]]:
        """``(source, path or None if not set)`` for ``kind``, highest priority first."""
        kind = _check_kind(kind, "DatasetPaths")
        env = os.environ.get(ENV_VARS[kind]) or None
        paths_file, file_source = self._paths_file()
        if paths_file is None:
            file_root = None
            file_desc = f"key {kind!r} in a paths file (--paths FILE or {PATHS_FILE_ENV}; none given)"
        else:
            if paths_file not in self._file_roots:
                self._file_roots[paths_file] = read_paths_file(paths_file)
            file_desc = f"key {kind!r} in paths file {paths_file} (from {file_source})"
            file_root = self._file_roots[paths_file].get(kind)
        data_dir, data_source = self._data_dir()
        return [
            (f"--dataset_dir {kind}=PATH", self.overrides.get(kind)),
            (f"environment variable {ENV_VARS[kind]}", Path(env).expanduser() if env else None),
            (file_desc, file_root),
            (f"<data dir>/{kind}, data dir from {data_source}", data_dir / kind),
        ]

    def root(self, kind: str) -> Path:
        """Absolute root folder of a dataset kind; :class:`DatasetRootError` if it does not exist."""
        candidates = self.candidates(kind)
        kind = kind.strip().lower()
        source, path = next((s, p) for s, p in candidates if p is not None)
        path = path.absolute()
        if path.is_dir():
            return path
        looked = "\n".join(f"  {s}: {p.absolute() if p is not None else 'not set'}" for s, p in candidates)
        raise DatasetRootError(
            f"{DISPLAY_NAMES[kind]} dataset root {path} does not exist (taken from {source}).\n"
            f"Places looked at, highest priority first (the first one set is used):\n{looked}\n"
            f"Set it with --dataset_dir {kind}=PATH, the environment variable {ENV_VARS[kind]}, key "
            f"'{kind}' of a paths file, or put it at <data dir>/{kind}.\n"
            f"Expected layout: {LAYOUTS[kind]}")


def add_path_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--dataset_dir KIND=PATH`` (repeatable), ``--paths FILE`` and ``--data_dir DIR``;
    build with ``DatasetPaths.from_env(args.dataset_dir, args.paths, args.data_dir)``."""
    parser.add_argument("--dataset_dir", action="append", default=[], metavar="NAME=PATH",
                        help=f"root of one dataset ({', '.join(DATASET_KINDS)}); repeatable")
    parser.add_argument("--paths", default=None, metavar="FILE",
                        help=f"YAML file of dataset roots (default: ${PATHS_FILE_ENV})")
    parser.add_argument("--data_dir", default=None, metavar="DIR",
                        help=f"folder holding <kind>/ dataset folders (default: ${DATA_DIR_ENV} or ./data)")
