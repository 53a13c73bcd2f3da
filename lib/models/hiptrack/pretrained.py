"""Initialising HIPTrack from released weights.

Accepted files:
* tracker checkpoints ``{'net': state_dict}`` of HIPTrack, DropTrack or OSTrack (and ours):
  loaded onto the whole model; search / template position embeddings of another crop size are
  resampled to this model's grids.
* ViT checkpoints: MAE ``{'model': ...}``, ``{'state_dict': ...}`` or bare timm ViT state dicts:
  loaded onto the backbone; ``pos_embed_z`` / ``pos_embed_x`` are resampled from the 224-pixel
  ``pos_embed``.

Missing and unexpected keys are always reported (logged and returned), never hidden.
"""
from __future__ import annotations

import logging
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
    """What loading a checkpoint did."""
    path: str
    kind: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    resampled: list[str] = field(default_factory=list)

    def log(self) -> None:
        logger.info("loaded %s weights from %s", self.kind, self.path)
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
    """An existing path as given, else ``name`` in $HIPTRACK_PRETRAINED_DIR or ``<repo>/pretrained``.

    Inside those folders the file may also sit one sub-folder down (``pretrained/HIPTrack/x.pth.tar``).
    """
    direct = Path(name).expanduser()
    if direct.is_file():
        return direct
    roots = [Path(os.environ[PRETRAINED_DIR_ENV])] if os.environ.get(PRETRAINED_DIR_ENV) else []
    roots.append(REPO_PRETRAINED_DIR)
    for root in roots:
        for candidate in [root / name, *sorted(root.glob(f"*/{direct.name}"))]:
            if candidate.is_file():
                return candidate
    looked = ", ".join(str(p) for p in [direct, *(r / name for r in roots)])
    raise FileNotFoundError(
        f"pretrained weights {str(name)!r} not found; looked at: {looked} (and their sub-folders). "
        f"Put the file in {REPO_PRETRAINED_DIR}, set ${PRETRAINED_DIR_ENV}, or give MODEL.PRETRAIN_FILE as a path.")


def _is_square(n: int) -> bool:
    return int(round(n ** 0.5)) ** 2 == n


def _grid(num_tokens: int, name: str) -> int:
    side = int(round(num_tokens ** 0.5))
    if side * side != num_tokens:
        raise CheckpointError(f"{name} has {num_tokens} positions, not a square grid")
    return side


def _resample_grid(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """(1, g*g, C) position embedding -> (1, grid*grid, C), bicubic without anti-aliasing."""
    old = _grid(pos.shape[1], "position embedding")
    return resample_abs_pos_embed(pos, [grid, grid], [old, old], num_prefix_tokens=0, antialias=False)


def _vit_to_backbone(state: dict[str, torch.Tensor], backbone: nn.Module) -> tuple[dict, list[str]]:
    """Map ViT (MAE / timm) keys onto ``backbone.*`` and derive template / search embeddings."""
    mapped = {f"backbone.{k}": v for k, v in state.items()}
    resampled = []
    if "pos_embed" in state:
        pos = state["pos_embed"]
        patch_pos = pos if _is_square(pos.shape[1]) else pos[:, 1:]  # drop the class-token slot
        for name, grid in (("pos_embed_z", backbone.template_grid), ("pos_embed_x", backbone.search_grid)):
            mapped[f"backbone.{name}"] = _resample_grid(patch_pos, grid)
            resampled.append(f"backbone.{name} (from pos_embed)")
        expected = backbone.pos_embed.shape
        if pos.shape != expected:
            grid = _grid(expected[1] - 1, "pos_embed")
            mapped["backbone.pos_embed"] = torch.cat([pos[:, :1], _resample_grid(patch_pos, grid)], dim=1)
            resampled.append("backbone.pos_embed")
    return mapped, resampled


def _fit_tracker_pos_embeds(state: dict[str, torch.Tensor], model: nn.Module) -> list[str]:
    """Resample a tracker checkpoint's template / search embeddings to this model's crop sizes."""
    resampled = []
    own = model.state_dict()
    for name in ("backbone.pos_embed_z", "backbone.pos_embed_x"):
        if name in state and name in own and state[name].shape != own[name].shape \
                and state[name].shape[-1] == own[name].shape[-1]:
            state[name] = _resample_grid(state[name], _grid(own[name].shape[1], name))
            resampled.append(name)
    return resampled


def load_pretrained(model: nn.Module, path: str | os.PathLike) -> LoadReport:
    """Initialise ``model`` (a HIPTrack) from a tracker or ViT checkpoint file; returns the report.

    Shape mismatches that cannot be resampled raise ``CheckpointError`` naming the parameter.
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
    if kind == "vit":  # only the backbone was on offer: the rest keeping its init is expected
        missing = [k for k in missing if k.startswith("backbone.")]
    report = LoadReport(str(path), kind, missing, list(result.unexpected_keys), resampled)
    report.log()
    return report
