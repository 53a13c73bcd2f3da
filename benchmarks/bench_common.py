"""Shared pieces of the speed scripts: alternating measurements, their summaries, recorded figures.

The rule of these scripts: every figure is an absolute time with its spread, and a ratio is only
ever taken between two things measured in the same run, alternately (this machine is shared and
drifts by more than the effects measured). Figures recorded elsewhere are printed as such, never
divided by.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

# The original HIPTrack's figures recorded on other occasions (sources in the labels). They are printed
# for orientation only: another machine, load and library version, so no ratio is formed with them.
RECORDED_ORIGINAL = {
    "tracker": (
        ("original track() median 0.93 s per frame (bank of 2), 1.9-2.6 s with the bank at its 150-frame cap; "
         "2-core CPU, random weights, 2 threads (/work/shared/anchors/hiptrack_notes.md, last section)"),
        "original 0.557 s per frame on a 2-core machine (issue 15)",
    ),
    "train_step": (
        ("original training step, batch 1, 5 search frames, backbone frozen, CE keep 0.7: 6.3-6.9 s "
         "(forward, backward, AdamW); training forward without grad 5.0 s; 2-core CPU, 2 threads "
         "(/work/shared/anchors/hiptrack_notes.md, last section)"),
    ),
}


WORKER = Path(__file__).with_name("original_worker.py")


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


def original_dir_problem(path: Path | None) -> str | None:
    """Why ``--original PATH`` is not a HIPTrack checkout (None when it is one, or not given)."""
    if path is None or (path / "lib" / "test" / "tracker" / "hiptrack.py").is_file():
        return None
    return f"--original {path}: no lib/test/tracker/hiptrack.py there (not a HIPTrack checkout)"


def like_for_like_warning(cfg, original: Path, config: str) -> str | None:
    """A warning when our config's model sizes differ from the original's YAML ``config`` (then the
    ratio against the original compares different models); None when they match."""
    import yaml

    theirs = yaml.safe_load((original / "experiments" / "hiptrack" / f"{config}.yaml").read_text())
    pairs = {
        "backbone": (cfg.MODEL.BACKBONE.TYPE, theirs["MODEL"]["BACKBONE"]["TYPE"]),
        "search size": (cfg.DATA.SEARCH.SIZE, theirs["DATA"]["SEARCH"]["SIZE"]),
        "template size": (cfg.DATA.TEMPLATE.SIZE, theirs["DATA"]["TEMPLATE"]["SIZE"]),
        "CE keep ratio": (list(cfg.MODEL.BACKBONE.CE_KEEP_RATIO), list(theirs["MODEL"]["BACKBONE"]["CE_KEEP_RATIO"])),
    }
    differ = [f"{k} {ours} vs {other}" for k, (ours, other) in pairs.items() if ours != other]
    return f"NOT like for like (ours vs the original's {config}.yaml): " + "; ".join(differ) if differ else None


class WorkerProcess:
    """A benchmark worker script in its own process, driven over a pipe: one command line in, replies
    as lines starting with ``@@`` (its other prints are skipped), ``@@error ...`` raised here."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
        self.name = name
        self.process = subprocess.Popen([sys.executable, "-W", "ignore", *command], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env, cwd=cwd)

    def _reply(self) -> str:
        """The worker's next protocol reply."""
        for line in self.process.stdout:
            if line.startswith("@@"):
                reply = line[2:].strip()
                if reply.startswith("error"):
                    raise RuntimeError(f"{self.name}: {reply}")
                return reply
        raise RuntimeError(f"{self.name} ended (exit code {self.process.wait()}); its error is above")

    def _send(self, command: str) -> None:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def _ask(self, command: str) -> str:
        self._send(command)
        return self._reply()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
            self.process.wait(timeout=60)


def environment_without_pythonpath() -> dict[str, str]:
    """This process's environment minus ``PYTHONPATH``: a worker's ``lib`` is the one it chooses."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


class OriginalProcess(WorkerProcess):
    """The original HIPTrack in a worker process (``original_worker.py``; its package is also called ``lib``)."""

    def __init__(self, original: Path, config: str, threads: int) -> None:
        super().__init__("original worker", [str(WORKER), "--original", str(original), "--config", config,
                                             "--threads", str(threads)], environment_without_pythonpath(), original)
        self._reply()  # "ready": built

    def set_bank(self, bank: int) -> None:
        """Start a video of the original's tracker with a memory bank of ``bank`` frames."""
        held = int(self._ask(f"bank {bank}").split()[1])
        if held != bank:
            raise RuntimeError(f"the original's bank holds {held} frames, expected {bank}")

    def frame(self) -> float:
        """Seconds of one ``track()`` of the original (after :meth:`set_bank`)."""
        return float(self._ask("frame"))

    def set_train(self, epoch: int, batch: int) -> None:
        """Build the original's training step (``original_worker.OriginalTrainStep``) at ``epoch``."""
        self._ask(f"train {epoch} {batch}")

    def step(self) -> float:
        """Seconds of one training step of the original (after :meth:`set_train`)."""
        return float(self._ask("step"))


class KernelFloor:
    """The matrix products, convolutions and attention kernels of one network call, run again alone.

    Built from one call of ``run()`` (e.g. a ``track()``): forward pre-hooks record every ``nn.Linear``
    (or ``PackedLinear``) and ``nn.Conv2d`` call (module, input shape and strides) and every attention
    block's input (its fused ``scaled_dot_product_attention`` kernel is rerun; the CE blocks' few
    template rows of attention probabilities are not). Each call of the object runs all of them back to
    back on random inputs of the recorded shapes and layouts and returns the seconds; ``last`` holds the
    seconds by kind of that pass and ``flops`` the FLOP by kind. This is the time of the call if
    everything but these kernels were free: the floor of any implementation with the same kernels and
    arithmetic. ``autocast``: the dtype the call ran under ``torch.autocast`` (a bf16 tracker), None for
    none; the kernels rerun under it, the attention kernel in that dtype. :meth:`of_tracker` derives it
    from a tracker.
    """

    def __init__(self, net: torch.nn.Module, run: Callable[[], object], autocast: torch.dtype | None = None) -> None:
        from lib.models.layers.attn_blocks import Attention
        from lib.utils.packed_linear import PackedLinear

        self.autocast = autocast

        kinds = ((torch.nn.Linear, "linear"), (PackedLinear, "linear"), (torch.nn.Conv2d, "convolution"),
                 (Attention, "attention"))
        self.calls: list[tuple[str, torch.nn.Module, tuple[torch.Tensor, ...]]] = []
        hooks = [module.register_forward_pre_hook(lambda m, args, kind=kind: self._record(kind, m, args[0]))
                 for module in net.modules() for cls, kind in kinds if isinstance(module, cls)]
        try:
            run()
        finally:
            for hook in hooks:
                hook.remove()
        self.flops: dict[str, float] = {}
        for kind, module, inputs in self.calls:
            self.flops[kind] = self.flops.get(kind, 0.0) + self._flops(kind, module, inputs)
        self.last: dict[str, float] = {}

    @classmethod
    def of_tracker(cls, tracker, run: Callable[[], object]) -> KernelFloor:
        """The floor of ``tracker``'s network over ``run()`` (one of its ``track()`` calls), under the
        autocast its ``TEST.PRECISION`` runs frames in."""
        return cls(tracker.network, run, autocast=torch.bfloat16 if tracker.precision == "bf16" else None)

    def _record(self, kind: str, module: torch.nn.Module, x: torch.Tensor) -> None:
        if kind == "attention":  # q, k, v of (B, heads, N, head_dim), as the block hands them to the kernel
            batch, tokens, channels = x.shape
            heads = module.num_heads
            dtype = self.autocast or x.dtype
            inputs = tuple(torch.randn(batch, heads, tokens, channels // heads, dtype=dtype) for _ in range(3))
        else:
            inputs = (torch.empty_strided(tuple(x.shape), x.stride(), dtype=x.dtype).normal_(),)
        self.calls.append((kind, module, inputs))

    @staticmethod
    def _flops(kind: str, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> float:
        x = inputs[0]
        if kind == "linear":
            return 2.0 * x.numel() // module.in_features * module.in_features * module.out_features
        if kind == "attention":
            batch, heads, tokens, dim = x.shape
            return 4.0 * batch * heads * tokens * tokens * dim  # scores and weighted values
        out_pixels = 1
        for size, kernel, stride, padding, dilation in zip(x.shape[-2:], module.kernel_size, module.stride,
                                                           module.padding, module.dilation):
            out_pixels *= (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
        return 2.0 * x.shape[0] * module.out_channels * out_pixels * module.in_channels // module.groups \
            * module.kernel_size[0] * module.kernel_size[1]

    def __call__(self) -> float:
        self.last = {}
        autocast = torch.autocast("cpu", dtype=self.autocast, enabled=self.autocast is not None)
        with torch.inference_mode(), autocast:
            for kind, module, inputs in self.calls:
                start = time.perf_counter()
                if kind == "attention":
                    torch.nn.functional.scaled_dot_product_attention(*inputs)
                else:
                    module(*inputs)
                self.last[kind] = self.last.get(kind, 0.0) + time.perf_counter() - start
        return sum(self.last.values())
