"""Reading and writing checkpoint files.

We write plain data only (tensors, numbers, strings, lists, dicts), atomically, so every file we
write loads with ``torch.load(weights_only=True)`` and a crash never leaves a half-written file.

Reading also accepts the released OSTrack / HIPTrack trainer checkpoints, which pickle a few
project classes (``Settings``, ``AverageMeter`` ...) beside the weights. Those classes are
replaced by inert placeholders so the file still loads in weights-only mode: nothing from the
file is executed.
"""
from __future__ import annotations

import logging
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A file that is missing, unreadable or not a checkpoint of the expected kind."""


def save_checkpoint(payload: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``payload`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _placeholder(module: str, qualname: str) -> type:
    """An inert stand-in for a pickled class of another code base."""

    def setstate(self, state):
        self.__dict__["_state"] = state

    cls = type(qualname.rsplit(".", 1)[-1], (), {
        "__init__": lambda self, *args, **kwargs: None,
        "__setstate__": setstate,
        "__repr__": lambda self: f"<placeholder {module}.{qualname}>",
    })
    cls.__module__, cls.__qualname__ = module, qualname
    return cls


def _load_with_placeholders(path: Path) -> Any:
    names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    placeholders = []
    for name in names:
        module, _, qualname = name.rpartition(".")
        placeholders.append((_placeholder(module, qualname), name))
    logger.info("%s: replaced pickled classes %s by placeholders", path, ", ".join(sorted(names)))
    with torch.serialization.safe_globals(placeholders):
        return torch.load(path, map_location="cpu", weights_only=True)


def read_checkpoint(path: str | os.PathLike) -> Any:
    """Load a checkpoint file on CPU without executing code from it.

    Raises:
        FileNotFoundError: the file does not exist.
        CheckpointError: the file is not a PyTorch / safetensors checkpoint or is corrupt.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own error types
            raise CheckpointError(f"{path} is not a readable safetensors file: {e}") from e
    if path.suffix == ".npz":
        raise CheckpointError(f"{path}: JAX .npz weights are not supported; convert them to a PyTorch "
                              "state dict (.pth or .safetensors) first")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e):
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {e}") from e
        return _load_with_placeholders(path)
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (corrupt or truncated?): {e}") from e


def strip_prefix(state_dict: dict[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Remove a wrapper prefix (DataParallel / DDP ``module.``) from every key that has it."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state_dict.items()}


def extract_state_dict(obj: Any, path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """The weights in a loaded checkpoint and their kind.

    Kinds: ``tracker`` (``{'net': ...}``: OSTrack, DropTrack, HIPTrack and our own files),
    ``vit`` (``{'model': ...}`` MAE / DeiT files, ``{'state_dict': ...}`` or a bare state dict of
    a ViT, e.g. timm weights).
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
        keys = ", ".join(list(obj)[:8])
        raise CheckpointError(f"{path} has no state dict of tensors (top-level keys: {keys})")
    state = strip_prefix(state)
    if kind == "vit" and any(k.startswith("backbone.") for k in state):
        kind = "tracker"  # a bare state dict of a whole tracker
    return state, kind
