"""Shared pieces of the speed scripts: alternating measurements, their summaries, recorded figures.

The rule of these scripts: every figure is an absolute time with its spread, and a ratio is only
ever taken between two things measured in the same run, alternately (this machine is shared and
drifts by more than the effects measured). Figures recorded elsewhere are printed as such, never
divided by.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

# The original HIPTrack's figures recorded on other occasions (sources in the labels). They are printed
# for orientation only: another machine, load and library version, so no ratio is formed with them.
RECORDED_ORIGINAL = {
    "tracker": (
        "original track() median 0.93 s per frame (bank of 2), 1.9-2.6 s with the bank at its 150-frame cap; "
        "2-core CPU, random weights, 2 threads (/work/shared/anchors/hiptrack_notes.md, last section)",
        "original 0.557 s per frame on a 2-core machine (issue 15)",
    ),
    "train_step": (
        "original training step, batch 1, 5 search frames, backbone frozen, CE keep 0.7: 6.3-6.9 s "
        "(forward, backward, AdamW); training forward without grad 5.0 s; 2-core CPU, 2 threads "
        "(/work/shared/anchors/hiptrack_notes.md, last section)",
    ),
}


def print_recorded(kind: str) -> None:
    """Print the recorded figures of ``kind`` (a key of :data:`RECORDED_ORIGINAL`), labelled as such."""
    print("recorded elsewhere, not a ratio (other machine / load; for orientation only):")
    for line in RECORDED_ORIGINAL[kind]:
        print(f"  {line}")


@dataclass
class Samples:
    """Seconds of repeated measurements of one thing."""
    name: str
    seconds: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def summary(self) -> str:
        """``median 0.612 s (min 0.590, IQR 0.600-0.640, max 0.700; n 5)``."""
        s = sorted(self.seconds)
        if len(s) >= 4:
            q1, _, q3 = statistics.quantiles(s, n=4, method="inclusive")
            iqr = f", IQR {q1:.3f}-{q3:.3f}"
        else:
            iqr = ""
        return f"median {self.median:.3f} s (min {s[0]:.3f}{iqr}, max {s[-1]:.3f}; n {len(s)})"


def alternate(contestants: dict[str, Callable[[], float]], rounds: int, warmup: int = 1,
              log: Callable[[str], None] | None = None) -> dict[str, Samples]:
    """Time each contestant once per round, the first of each round rotating (order effects cancel);
    ``warmup`` untimed calls each first. Each contestant returns the seconds of one call."""
    names = list(contestants)
    for _ in range(warmup):
        for name in names:
            contestants[name]()
    samples = {name: Samples(name) for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            samples[name].seconds.append(contestants[name]())
            if log is not None:
                log(f"    round {r + 1} {name}: {samples[name].seconds[-1]:.3f} s")
    return samples


def paired_ratio(numerator: Samples, denominator: Samples) -> str:
    """Median (and range) of the per-round ratios of two contestants timed in the same rounds."""
    ratios = sorted(a / b for a, b in zip(numerator.seconds, denominator.seconds))
    spread = f", range {ratios[0]:.2f}-{ratios[-1]:.2f}" if len(ratios) > 1 else ""
    return (f"{numerator.name} / {denominator.name}: {statistics.median(ratios):.2f}x "
            f"(median of {len(ratios)} paired rounds{spread})")


def fill_memory(model, state, frames: int) -> None:
    """Write ``frames`` memory entries of the right shape and dtype into ``state``'s bank (contents do not
    affect timing)."""
    grid = model.search_grid
    key_dim = model.key_proj.key_proj.out_channels
    value_dim = model.key_comp.out_channels
    dtype = state.memory.tensors()[0].dtype  # what the model itself wrote (bf16 under autocast)
    for _ in range(frames):
        state.memory.write(torch.randn(1, key_dim, grid, grid, dtype=dtype),
                           torch.randn(1, value_dim, grid, grid, dtype=dtype))


def print_rows(title: str, samples: Sequence[Samples]) -> None:
    """A block of absolute times: one line per contestant."""
    print(title)
    width = max(len(s.name) for s in samples)
    for s in samples:
        print(f"  {s.name:{width}s}  {s.summary()}")
