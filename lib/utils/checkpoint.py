"""Reading and writing checkpoint files.

We write plain data only (tensors, numbers, strings, lists, dicts), atomically, so every file we
write loads with ``torch.load(weights_only=True)`` and a crash never leaves a half-written file.

Reading also accepts the released OSTrack / HIPTrack trainer checkpoints, which pickle a few
project classes (``Settings``, ``AverageMeter`` ...) beside the weights. Those classes are
replaced by inert placeholders so the file still loads in weights-only mode: nothing from the
file is executed. Files that pickle references to modules able to run code (``os``,
``subprocess``, ``builtins`` ...) are refused outright.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from lib.utils.atomic import atomic_target
from lib.utils.cli import InputError

logger = logging.getLogger(__name__)

# Top-level modules whose names in a checkpoint mean the pickle tries to call code (a released
# trainer checkpoint never needs them). Placeholders would neutralise them anyway; refusing makes
# a tampered file visible. torch itself also blocks sys / os / posix / nt.
_REFUSED_MODULES = frozenset({
    "__builtin__", "builtins", "code", "codeop", "commands", "ctypes", "functools", "importlib", "inspect",
    "io", "_io", "marshal", "multiprocessing", "nt", "operator", "os", "pathlib", "pdb", "pickle", "_pickle",
    "posix", "pty", "runpy", "shutil", "socket", "subprocess", "sys", "tempfile", "types", "webbrowser",
})


class CheckpointError(ValueError, InputError):
    """A file that is missing, unreadable or not a checkpoint of the expected kind."""


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``payload`` to ``path`` atomically (temporary file in the same folder, then rename).

    The payload must be plain data (what ``torch.load(weights_only=True)`` accepts); otherwise
    ``CheckpointError`` names the offending classes and ``path`` is left untouched.
    """
    path = Path(path)
    with atomic_target(path) as tmp:
        with open(tmp, "xb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(tmp))
        if unsafe:
            raise CheckpointError(f"not writing {path}: the payload pickles {', '.join(sorted(unsafe))}, which "
                                  "torch.load(weights_only=True) refuses; store plain data (dicts, lists, "
                                  "numbers, strings, tensors) instead")
    return path


def _placeholder(module: str, qualname: str) -> type:
    """An inert stand-in for a pickled class of another code base; keeps the pickled state."""

    def setstate(self, state):
        self.__dict__["_state"] = state

    cls = type(qualname.rsplit(".", 1)[-1], (), {
        "__init__": lambda self, *args, **kwargs: None,
        "__setstate__": setstate,
        "__repr__": lambda self: f"<placeholder {module}.{qualname}>",
    })
    cls.__module__, cls.__qualname__ = module, qualname
    return cls


# sentences of torch.load's errors that advise loading without the weights-only check: never shown
_UNSAFE_ADVICE = ("weights_only", "Weights only load failed", "trust the source", "safe_globals",
                  "Check the documentation", "Please file an issue")


def _reason(error: BaseException) -> str:
    """The useful part of a ``torch.load`` error, without its advice to load unsafely."""
    text = str(error).strip()
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not any(advice in line for advice in _UNSAFE_ADVICE)]
    if not lines:
        return type(error).__name__
    return lines[0].split(" Please use")[0] if marker in str(error) else f"{type(error).__name__}: {lines[0]}"


def _refused_globals(error: BaseException) -> list[str] | None:
    """The pickled names (``module.qualname``) that torch's weights-only unpickler refused, when
    ``error`` is such a refusal (an empty list if torch does not name them); None for other errors."""
    text = str(error)
    if "Weights only load failed" not in text or not ("GLOBAL" in text or "Unsupported global" in text):
        return None
    return list(dict.fromkeys(re.findall(r"GLOBAL ([\w.]+)", text)))


def _refusal(path: Path, names: list[str]) -> CheckpointError:
    """The error of a legacy-format file whose pickle holds objects that are not plain data."""
    what = ", ".join(names) if names else "objects torch does not name"
    return CheckpointError(
        f"{path} was refused: it is a legacy-format (torch < 1.6) checkpoint whose pickle holds objects that "
        f"are not plain data ({what}); unpickling them could run code, so they are never loaded. Only "
        "zip-format files can be read with inert placeholders for such objects: save the weights again as "
        "plain data (a dict of tensors, torch >= 1.6) where the file came from")


def _load_with_placeholders(path: Path, names: list[str], mmap: bool = False) -> Any:
    refused = sorted(n for n in names if n.split(".", 1)[0] in _REFUSED_MODULES)
    if refused:
        raise CheckpointError(f"{path} pickles references to {', '.join(refused)}, which could run code when "
                              "loaded; refusing to read it")
    placeholders = [(_placeholder(*name.rsplit(".", 1)), name) for name in names]
    logger.info("%s: replaced pickled classes %s by placeholders", path, ", ".join(sorted(names)))
    try:
        with torch.serialization.safe_globals(placeholders):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:
        raise CheckpointError(f"{path} is not readable even with placeholders for {', '.join(sorted(names))}: "
                              f"{_reason(e)}") from e


def read_checkpoint(path: str | os.PathLike, mmap: bool = False) -> Any:
    """Load a checkpoint file on CPU without executing code from it.

    ``mmap``: map a zip-format file's tensors instead of reading them (cheap when only the small
    entries such as ``epoch`` are needed).

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointError: the file is not a PyTorch / safetensors checkpoint, is corrupt or
            truncated, or pickles objects that are not plain data (references to code).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from e
    if path.suffix == ".npz":
        raise CheckpointError(f"{path}: JAX .npz weights are not supported; convert them to a PyTorch "
                              "state dict (.pth or .safetensors) first")
    try:  # scans the pickle only (no tensor data): cheap even for a 1 GB file
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # not a zip-format checkpoint (legacy format, or not one at all): torch.load will tell
        names = []
    mmap = mmap and zipfile.is_zipfile(path)  # torch maps zip-format files only
    if names:
        return _load_with_placeholders(path, names, mmap)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as e:  # corrupt input surfaces as UnpicklingError, RuntimeError, EOFError, KeyError ...
        refused = _refused_globals(e)  # only a legacy-format file gets here with pickled objects
        if refused is not None:
            raise _refusal(path, refused) from e
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (corrupt or truncated?): "
                              f"{_reason(e)}") from e


def checkpoint_epoch(path: str | os.PathLike) -> int | None:
    """The ``epoch`` stored in a checkpoint file (None when it has none), read without loading the
    tensors of a zip-format file. Raises like :func:`read_checkpoint`."""
    state = read_checkpoint(path, mmap=True)
    epoch = state.get("epoch") if isinstance(state, dict) else None
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None


def file_sha256(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    """The SHA-256 hex digest of a file's bytes, read in chunks (checkpoints can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def strip_prefix(state_dict: dict[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Remove a wrapper prefix (DataParallel / DDP ``module.``) from every key that has it."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state_dict.items()}


def extract_state_dict(obj: Any, path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """The weights in a loaded checkpoint and their kind; ``module.`` prefixes are stripped.

    Kinds: ``tracker`` (``{'net': ...}``: OSTrack, DropTrack, HIPTrack and our own files, or a
    bare state dict with ``backbone.*`` keys), ``vit`` (``{'model': ...}`` MAE / DeiT files,
    ``{'state_dict': ...}`` or a bare state dict of a ViT, e.g. timm weights).

    Raises:
        CheckpointError: ``obj`` is not a dict, or holds no non-empty dict of tensors.
    """
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a checkpoint dict")
    if "net" in obj:
        state, kind = obj["net"], "tracker"
    elif "model" in obj:
        state, kind = obj["model"], "vit"
    elif "state_dict" in obj:
        state, kind = obj["state_dict"], "vit"
    else:
        state, kind = obj, "vit"
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        keys = ", ".join(map(str, list(obj)[:8]))
        raise CheckpointError(f"{path} has no state dict of tensors (top-level keys: {keys})")
    state = strip_prefix(state)
    if kind == "vit" and any(k.startswith("backbone.") for k in state):
        kind = "tracker"  # a bare state dict of a whole tracker
    return state, kind
