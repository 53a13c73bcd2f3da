"""Worker process that times the ORIGINAL HIPTrack tracker (github WenRuiCai/HIPTrack) on this CPU.

Started by ``bench_tracker.py --original DIR`` (:class:`bench_tracker.OriginalProcess`); it is not a
user-facing script. It runs in its own process because the original's package is also called
``lib``: it cannot be imported next to ours. The original is external code, run as it is: this
driver (our code) only

* puts ``DIR`` first on ``sys.path`` (acceptable here only: the target is not our package);
* turns ``.cuda()`` into a no-op (the original hard-codes it) and stubs modules it imports but
  does not use on this path (``thop``, ``skimage``, ``visdom``, ``jpeg4py``, ``lmdb``, and
  ``torch._six``, gone from torch 2, which its training data loader imports);
* builds the tracker of ``DIR/experiments/hiptrack/<config>.yaml`` with random weights
  (``torch.manual_seed(0)``; timings do not depend on the weights) instead of a checkpoint, and
  gives its memory encoder random ImageNet-ResNet weights instead of downloading them.

Protocol (one line each way; replies start with ``@@`` so that the original's own prints are
skipped): ``bank N`` -> sets up a video with a memory bank of N frames (two real writes, frames 5
and 10, then random entries of the same shape) and replies ``@@ok N``; ``frame`` -> one timed
``track()`` of frame 11 (reads the bank, writes nothing) on the fixed 640x480 frame, replies
``@@<seconds>``; ``quit`` ends.

    python benchmarks/original_worker.py --original /work/original-hiptrack [--threads 2]
"""
from __future__ import annotations

import argparse
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch

INIT_BOX = [280.0, 200.0, 80.0, 60.0]  # the same frame and box as bench_tracker.py
FRAME_SHAPE = (480, 640, 3)
UNUSED_MODULES = ("thop", "thop.utils", "skimage", "visdom", "visdom.server", "jpeg4py", "lmdb")


def stub_module(name: str) -> types.ModuleType:
    """A module whose every attribute is a do-nothing callable (for imports the timed path never uses)."""
    module = types.ModuleType(name)

    def attribute(attr: str):
        if attr.startswith("__"):  # inspect and importlib probe dunders: answer as a plain module
            raise AttributeError(attr)
        return lambda *args, **kwargs: None

    module.__getattr__ = attribute  # type: ignore[attr-defined]
    return module


def prepare_imports(original: Path) -> None:
    """Make ``import lib`` load the original's package, stub its unused imports, make ``.cuda()`` a no-op."""
    sys.path.insert(0, str(original))  # external code only: see the module docstring
    for name in UNUSED_MODULES:
        sys.modules.setdefault(name, stub_module(name))
    six = types.ModuleType("torch._six")  # removed from torch after 1.x; its data loader imports it
    six.string_classes, six.int_classes = (str, bytes), int  # type: ignore[attr-defined]
    sys.modules.setdefault("torch._six", six)
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self  # type: ignore[method-assign]
    import lib
    if Path(lib.__file__).resolve().parent != (original / "lib").resolve():
        raise RuntimeError(f"'import lib' found {lib.__file__}, not the original's package in {original}")


def build_tracker(original: Path, config: str):
    """The original's HIPTrack tracker on its YAML ``config``, with random weights (seed 0)."""
    from lib.config.hiptrack.config import cfg, update_config_from_file
    from lib.models.hiptrack import build_hiptrack
    from lib.test.tracker.hiptrack import HIPTrack
    from lib.test.utils import TrackerParams

    update_config_from_file(str(original / "experiments" / "hiptrack" / f"{config}.yaml"))
    params = TrackerParams()
    params.cfg = cfg
    params.template_factor, params.template_size = cfg.TEST.TEMPLATE_FACTOR, cfg.TEST.TEMPLATE_SIZE
    params.search_factor, params.search_size = cfg.TEST.SEARCH_FACTOR, cfg.TEST.SEARCH_SIZE
    params.checkpoint, params.debug, params.save_all_boxes = "random-weights", 0, False
    real_load, real_load_url = torch.load, torch.utils.model_zoo.load_url
    # its memory encoder downloads ImageNet ResNet weights when built: offline, random ones of that layout
    torch.utils.model_zoo.load_url = imagenet_resnet_stand_in
    try:
        torch.manual_seed(0)
        weights = build_hiptrack(cfg, training=False).state_dict()
        torch.load = lambda *args, **kwargs: {"net": weights}  # the tracker loads its checkpoint with torch.load
        return HIPTrack(params, "bench")
    finally:
        torch.load, torch.utils.model_zoo.load_url = real_load, real_load_url


def imagenet_resnet_stand_in(url: str, *args, **kwargs) -> dict[str, torch.Tensor]:
    """Random weights in the layout of the torchvision ResNet named in ``url`` (resnet18 / resnet50)."""
    import torchvision

    name = "resnet50" if "resnet50" in url else "resnet18"
    return getattr(torchvision.models, name)(weights=None).state_dict()


class OriginalFrame:
    """The original tracker on a fixed frame with a memory bank of fixed size."""

    def __init__(self, tracker, image: np.ndarray) -> None:
        self.tracker, self.image = tracker, image

    def set_bank(self, bank: int) -> int:
        """Start a video and fill its bank to ``bank`` frames; the bank's size in frames."""
        tracker = self.tracker
        tracker.network.set_eval()  # the original keeps its bank across videos: start empty
        tracker.initialize(self.image, {"init_bbox": list(INIT_BOX)}, "bench")
        for last in (4, 9):  # frames 5 and 10 write the bank's first entries
            tracker.frame_id = last
            tracker.state = list(INIT_BOX)
            tracker.track(self.image)
        decoder = tracker.network.HIP.decoder
        per_frame = decoder.mem_k.shape[2] // decoder.mem_cnt
        extra = bank - decoder.mem_cnt
        if extra > 0:
            decoder.mem_k = torch.cat([decoder.mem_k, torch.randn(1, decoder.CK, extra * per_frame)], 2)
            decoder.mem_v = torch.cat([decoder.mem_v, torch.randn(1, decoder.CV, extra * per_frame)], 2)
            decoder.mem_cnt += extra
        return decoder.mem_k.shape[2] // per_frame

    def __call__(self) -> float:
        """Seconds of one ``track()`` of frame 11 (reads the bank, no write: 11 is not a multiple of 20)."""
        self.tracker.frame_id = 10
        self.tracker.state = list(INIT_BOX)
        start = time.perf_counter()
        self.tracker.track(self.image)
        return time.perf_counter() - start


def serve(frame: OriginalFrame) -> None:
    """Answer the parent's commands on stdin until ``quit`` or end of input."""
    print("@@ready", flush=True)
    for line in sys.stdin:
        command, *rest = line.split()
        if command == "bank":
            print(f"@@ok {frame.set_bank(int(rest[0]))}", flush=True)
        elif command == "frame":
            print(f"@@{frame():.6f}", flush=True)
        elif command == "quit":
            return
        else:
            print(f"@@error unknown command {command!r}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original", type=Path, required=True, help="the original HIPTrack's source folder")
    parser.add_argument("--config", default="hiptrack_got", help="the original's experiment YAML name")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prepare_imports(args.original.resolve())
    image = np.random.default_rng(0).integers(0, 256, FRAME_SHAPE, dtype=np.uint8)
    serve(OriginalFrame(build_tracker(args.original.resolve(), args.config), image))


if __name__ == "__main__":
    main()
