"""Initialising HIPTrack from released weights.

Accepted files:
* tracker checkpoints ``{'net': state_dict}`` of HIPTrack, DropTrack or OSTrack (and ours):
  loaded onto the whole model; search / template position embeddings of another crop size are
  resampled to this model's grids.
* ViT checkpoints: MAE ``{'model': ...}``, ``{'state_dict': ...}``, bare timm ViT state dicts
  (``.pth`` or ``.safetensors``): loaded onto the backbone; ``pos_embed_z`` / ``pos_embed_x``
  are resampled from the 224-pixel ``pos_embed``, as the original's ``finetune_track``.

Missing and unexpected keys are always reported (logged and returned), never hidden. Nothing is
downloaded: files are looked up as described in :func:`resolve_pretrained_path`.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from timm.layers import resample_abs_pos_embed
from torch import nn

from lib.utils.checkpoint import CheckpointError, extract_state_dict, read_checkpoint

logger = logging.getLogger(__name__)

PRETRAINED_DIR_ENV = "HIPTRACK_PRETRAINED_DIR"
REPO_PRETRAINED_DIR = Path(__file__).resolve().parents[3] / "pretrained"


@dataclass
class LoadReport:
    """What loading a checkpoint did.

    ``missing``: model parameters the file did not provide (they keep their init; for ViT files
    only backbone parameters are listed). ``unexpected``: entries of the file the model has no
    use for, under the file's own names. ``resampled``: model parameters interpolated to this
    model's token grids.
    """
    path: str
    kind: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    resampled: list[str] = field(default_factory=list)

    def log(self) -> None:
        logger.info("loaded %s weights from %s", self.kind, self.path)
        if self.kind == "vit":
            logger.info("  backbone only: the memory network, fusion block and box head keep their init")
        for name in self.resampled:
            logger.info("  resampled %s to this model's grid", name)
        if self.missing:
            logger.warning("  %d parameters not in the checkpoint (keep their init): %s",
                           len(self.missing), summarize_keys(self.missing))
        if self.unexpected:
            logger.warning("  %d checkpoint entries not used by the model: %s",
                           len(self.unexpected), summarize_keys(self.unexpected))


def summarize_keys(keys: list[str], depth: int = 2) -> str:
    """Group dotted keys by their first ``depth`` components: 'a.b (12), c.d (3)'."""
    groups: dict[str, int] = {}
    for k in keys:
        prefix = ".".join(k.split(".")[:depth])
        groups[prefix] = groups.get(prefix, 0) + 1
    return ", ".join(f"{p} ({n})" for p, n in groups.items())


def resolve_pretrained_path(name: str | os.PathLike) -> Path:
    """Find a weights file: ``name`` as a path, else in $HIPTRACK_PRETRAINED_DIR, else in ``<repo>/pretrained``.

    In those folders the file may also sit one sub-folder down (``pretrained/HIPTrack/x.pth.tar``).

    Raises:
        FileNotFoundError: listing every place looked at.
    """
    direct = Path(name).expanduser()
    if direct.is_file():
        return direct
    if direct.is_absolute():
        raise FileNotFoundError(f"pretrained weights not found: {direct}")
    roots = [Path(os.environ[PRETRAINED_DIR_ENV]).expanduser()] if os.environ.get(PRETRAINED_DIR_ENV) else []
    roots.append(REPO_PRETRAINED_DIR)
    looked = [str(direct)]
    for root in roots:
        subfolders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        for candidate in [root / direct, *(sub / direct.name for sub in subfolders)]:
            if candidate.is_file():
                return candidate
        looked.append(f"{root / direct}, {root}/*/{direct.name}" + ("" if root.is_dir() else " (no such folder)"))
    raise FileNotFoundError(
        f"pretrained weights {str(name)!r} not found; looked at: {'; '.join(looked)}. Put the file in "
        f"{REPO_PRETRAINED_DIR}, set ${PRETRAINED_DIR_ENV}, or give MODEL.PRETRAIN_FILE as a path.")


def _split_prefix(pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(1, P + g*g, C) -> prefix (class / distillation) tokens (1, P, C), patch part, grid ``g``."""
    n = pos.shape[1]
    grid = math.isqrt(n)
    num_prefix = n - grid * grid
    if num_prefix > 8:  # no ViT has that many prefix tokens: the grid is not square
        raise CheckpointError(f"position embedding of {n} tokens is not a square grid")
    return pos[:, :num_prefix], pos[:, num_prefix:], grid


def _resample_grid(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """(1, g*g, C) patch position embedding -> (1, grid*grid, C), bicubic without anti-aliasing."""
    old = math.isqrt(pos.shape[1])
    if old * old != pos.shape[1]:
        raise CheckpointError(f"position embedding of {pos.shape[1]} tokens is not a square grid")
    return resample_abs_pos_embed(pos, [grid, grid], [old, old], num_prefix_tokens=0, antialias=False)


def _fit_pos_embed(pos: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """A 224-pixel ``pos_embed`` (prefix tokens + grid) resampled to ``target``'s grid and prefix count."""
    prefix, patches, _ = _split_prefix(pos)
    own_prefix, own_patches, own_grid = _split_prefix(target)
    if prefix.shape[1] != own_prefix.shape[1]:  # e.g. no class token in the file: keep ours
        prefix = own_prefix.to(pos.dtype)
    return torch.cat([prefix, _resample_grid(patches, own_grid)], dim=1)


def _vit_to_backbone(state: dict[str, torch.Tensor], backbone: nn.Module) -> tuple[dict, list[str]]:
    """Map ViT (MAE / timm) keys onto ``backbone.*`` and derive template / search embeddings."""
    mapped = {f"backbone.{k}": v for k, v in state.items()}
    resampled = []
    if "pos_embed" in state:
        pos = state["pos_embed"]
        _, patch_pos, _ = _split_prefix(pos)
        for name, grid in (("pos_embed_z", backbone.template_grid), ("pos_embed_x", backbone.search_grid)):
            mapped[f"backbone.{name}"] = _resample_grid(patch_pos, grid)
            resampled.append(f"backbone.{name}")
        if pos.shape[1] != backbone.pos_embed.shape[1]:
            mapped["backbone.pos_embed"] = _fit_pos_embed(pos, backbone.pos_embed.detach())
            resampled.append("backbone.pos_embed")
    return mapped, resampled


def _fit_tracker_pos_embeds(state: dict[str, torch.Tensor], model: nn.Module) -> list[str]:
    """Resample a tracker checkpoint's position embeddings of other crop sizes to this model's grids."""
    resampled = []
    own = model.state_dict()
    for name in ("backbone.pos_embed_z", "backbone.pos_embed_x", "backbone.pos_embed"):
        if name not in state or name not in own:
            continue
        value, target = state[name], own[name]
        if value.shape == target.shape or value.dim() != 3 or value.shape[-1] != target.shape[-1]:
            continue  # equal, or a mismatch resampling cannot fix (reported by load_pretrained)
        if name == "backbone.pos_embed":
            state[name] = _fit_pos_embed(value, target)
        else:
            state[name] = _resample_grid(value, math.isqrt(target.shape[1]))
        resampled.append(name)
    return resampled


def load_pretrained(model: nn.Module, path: str | os.PathLike) -> LoadReport:
    """Initialise ``model`` (a HIPTrack) from a tracker or ViT checkpoint file; returns the report.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        CheckpointError: unreadable file, no state dict in it, or a shape mismatch that cannot be
            resampled (the message names the parameter).
    """
    state, kind = extract_state_dict(read_checkpoint(path), path)
    if kind == "tracker":
        resampled = _fit_tracker_pos_embeds(state, model)
    else:
        state, resampled = _vit_to_backbone(state, model.backbone)
    own = model.state_dict()
    for name, value in state.items():
        if name in own and own[name].shape != value.shape:
            raise CheckpointError(f"{path}: {name} has shape {tuple(value.shape)}, the model expects "
                                  f"{tuple(own[name].shape)} (is MODEL.BACKBONE.TYPE right?)")
    result = model.load_state_dict(state, strict=False)
    missing = list(result.missing_keys)
    unexpected = list(result.unexpected_keys)
    if kind == "vit":  # only the backbone was on offer: the rest keeping its init is expected
        missing = [k for k in missing if k.startswith("backbone.")]
        unexpected = [k.removeprefix("backbone.") for k in unexpected]  # the file's own names
    report = LoadReport(str(path), kind, missing, unexpected, resampled)
    report.log()
    return report
