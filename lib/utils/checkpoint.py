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

import logging
import os
from pathlib import Path
from typing import Any

import torch

from lib.utils.atomic import atomic_target

logger = logging.getLogger(__name__)

# Top-level modules whose names in a checkpoint mean the pickle tries to call code (a released
# trainer checkpoint never needs them). Placeholders would neutralise them anyway; refusing makes
# a tampered file visible. torch itself also blocks sys / os / posix / nt.
_REFUSED_MODULES = frozenset({
    "__builtin__", "builtins", "code", "codeop", "commands", "ctypes", "functools", "importlib", "inspect",
    "io", "_io", "marshal", "multiprocessing", "nt", "operator", "os", "pathlib", "pdb", "pickle", "_pickle",
    "posix", "pty", "runpy", "shutil", "socket", "subprocess", "sys", "tempfile", "types", "webbrowser",
})


class CheckpointError(ValueError):
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


def _reason(error: BaseException) -> str:
    """The useful part of a ``torch.load`` error, without its advice to load unsafely."""
    text = str(error).strip()
    marker = "WeightsUnpickler error:"
    if marker in text:
        return text.split(marker, 1)[1].strip().splitlines()[0]
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def _load_with_placeholders(path: Path, names: list[str]) -> Any:
    refused = sorted(n for n in names if n.split(".", 1)[0] in _REFUSED_MODULES)
    if refused:
        raise CheckpointError(f"{path} pickles references to {', '.join(refused)}, which could run code when "
                              "loaded; refusing to read it")
    placeholders = [(_placeholder(*name.rsplit(".", 1)), name) for name in names]
    logger.info("%s: replaced pickled classes %s by placeholders", path, ", ".join(sorted(names)))
    try:
        with torch.serialization.safe_globals(placeholders):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path} is not readable even with placeholders for {', '.join(sorted(names))}: "
                              f"{_reason(e)}") from e


def read_checkpoint(path: str | os.PathLike) -> Any:
    """Load a checkpoint file on CPU without executing code from it.

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointError: the file is not a PyTorch / safetensors checkpoint, is corrupt or
            truncated, or pickles references to code.
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
    if names:
        return _load_with_placeholders(path, names)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt input surfaces as UnpicklingError, RuntimeError, EOFError, KeyError ...
        if "Unsupported global" in str(e):  # only a legacy-format file gets here with pickled classes
            raise CheckpointError(f"{path} is a legacy-format (torch < 1.6) checkpoint holding pickled objects: "
                                  f"{_reason(e).split(' Please use')[0]}; only zip-format files can be read "
                                  "with placeholders") from e
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (corrupt or truncated?): "
                              f"{_reason(e)}") from e


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
