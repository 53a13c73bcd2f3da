"""Deterministic weights and inputs shared by the equivalence fixture and its test.

The fixture ``tests/data/hiptrack_reference.pt`` holds outputs of the original HIPTrack
implementation computed with exactly these weights and inputs (see
``tests/data/README.md``). Everything here is derived from parameter names and fixed seeds,
so no large file has to be stored: the test rebuilds the same weights on any machine.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import torch

DATA_DIR = Path(__file__).resolve().parent / "data"
KEY_FILE = DATA_DIR / "hiptrack_vitb_state_dict_keys.txt"
FIXTURE_FILE = DATA_DIR / "hiptrack_reference.pt"

TEMPLATE_SIZE = 192
SEARCH_SIZE = 384
TRAIN_BATCH = 2
NUM_SEARCH = 5
TRACK_FRAMES = 21  # covers warm-up frames 1-10, writes at 5, 10, 20 and memory reads 11-21


def load_key_shapes(path: Path = KEY_FILE) -> dict[str, tuple[int, ...]]:
    """Parse ``name<TAB>(d0, d1, ...)`` lines into an ordered name -> shape dict."""
    shapes: dict[str, tuple[int, ...]] = {}
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        name, shape = line.split("\t")
        dims = shape.strip("()").replace(" ", "")
        shapes[name] = tuple(int(d) for d in dims.split(",") if d)
    return shapes


def _generator(name: str) -> torch.Generator:
    return torch.Generator().manual_seed(zlib.crc32(name.encode()))


def deterministic_tensor(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A well-scaled random tensor for parameter ``name``, seeded by the name alone."""
    g = _generator(name)
    if name.endswith("num_batches_tracked"):
        return torch.tensor(0, dtype=torch.long)
    if name.endswith("running_mean"):
        return 0.1 * torch.randn(shape, generator=g)
    if name.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    if "pos_embed" in name or "cls_token" in name:
        return 0.02 * torch.randn(shape, generator=g)
    if len(shape) >= 2:
        fan_in = 1
        for d in shape[1:]:
            fan_in *= d
        return torch.randn(shape, generator=g) / fan_in ** 0.5
    if name.endswith(".weight"):  # LayerNorm / BatchNorm scale
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    return 0.02 * torch.randn(shape, generator=g)


def deterministic_state_dict(shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, torch.Tensor]:
    """State dict under the original HIPTrack (ViT-B) names with name-seeded values."""
    shapes = load_key_shapes() if shapes is None else shapes
    return {name: deterministic_tensor(name, shape) for name, shape in shapes.items()}


def ctr_point_mask(batch: int, grid: int = TEMPLATE_SIZE // 16) -> torch.Tensor:
    """CE template mask selecting the centre token of a ``grid x grid`` template, (B, grid*grid) bool."""
    mask = torch.zeros(batch, grid, grid, dtype=torch.bool)
    c = (grid - 1) // 2  # 5 for a 12x12 grid, as the original's slice(5, 6)
    mask[:, c, c] = True
    return mask.flatten(1)


def reference_train_inputs() -> dict:
    """Inputs of the 5-frame training forward: normalised images and template boxes."""
    g = torch.Generator().manual_seed(1234)
    template = torch.randn(TRAIN_BATCH, 3, TEMPLATE_SIZE, TEMPLATE_SIZE, generator=g)
    search = [torch.randn(TRAIN_BATCH, 3, SEARCH_SIZE, SEARCH_SIZE, generator=g) for _ in range(NUM_SEARCH)]
    # normalised x, y, w, h of the target in the template crop (factor 2 -> about half the crop)
    template_boxes = torch.tensor([[[0.25, 0.25, 0.5, 0.5], [0.3, 0.2, 0.4, 0.55]]])  # (1, B, 4)
    return {
        "template": template,
        "search": search,
        "template_boxes": template_boxes,
        "ce_template_mask": ctr_point_mask(TRAIN_BATCH),
    }


def reference_track_inputs(num_frames: int = TRACK_FRAMES) -> dict:
    """Inputs of frame-by-frame tracking: one template, ``num_frames`` search crops."""
    g = torch.Generator().manual_seed(4321)
    template = torch.randn(1, 3, TEMPLATE_SIZE, TEMPLATE_SIZE, generator=g)
    search = [torch.randn(1, 3, SEARCH_SIZE, SEARCH_SIZE, generator=g) for _ in range(num_frames)]
    return {
        "template": template,
        "search": search,
        "template_boxes": torch.tensor([[0.25, 0.25, 0.5, 0.5]]),  # (1, 4) normalised x, y, w, h
        "ce_template_mask": ctr_point_mask(1),
    }
