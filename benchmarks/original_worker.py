"""Worker process that times the ORIGINAL HIPTrack (github WenRuiCai/HIPTrack) on this CPU.

Started by ``bench_tracker.py --original DIR`` and ``bench_train_step.py --original DIR``
(:class:`bench_common.OriginalProcess`) to time its tracker or its training step; it is not a
user-facing script. It runs in its own process because the original's package is also called
``lib``: it cannot be imported next to ours. The original is external code, run as it is: this
driver (our code) only

* puts ``DIR`` first on ``sys.path`` (acceptable here only: the target is not our package);
* turns ``.cuda()`` into a no-op (the original hard-codes it) and stubs modules it imports but
  does not use on these paths (``thop``, ``skimage``, ``visdom``, ``jpeg4py``, ``lmdb``, ``pandas``,
  ``pycocotools``, and ``torch._six``, gone from torch 2, which its training data loader imports);
* builds the tracker of ``DIR/experiments/hiptrack/<config>.yaml`` with random weights
  (``torch.manual_seed(0)``; timings do not depend on the weights) instead of a checkpoint, and
  gives its memory encoder random ImageNet-ResNet weights instead of downloading them.

Protocol (one line each way; replies start with ``@@`` so that the original's own prints are
skipped): ``bank N`` -> sets up a video with a memory bank of N frames (two real writes, frames 5
and 10, then random entries of the same shape) and replies ``@@ok N``; ``frame`` -> one timed
``track()`` of frame 11 (reads the bank, writes nothing) on the fixed 640x480 frame, replies
``@@<seconds>``; ``train EPOCH BATCH`` -> sets up the original's training step (see
:class:`OriginalTrainStep`) and replies ``@@ok``; ``step`` -> one timed step, replies
``@@<seconds>``; ``quit`` ends.

    python benchmarks/original_worker.py --original /work/original-hiptrack [--threads 2]
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.machinery
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

INIT_BOX = [280.0, 200.0, 80.0, 60.0]  # the same frame and box as bench_tracker.py
FRAME_SHAPE = (480, 640, 3)
UNUSED_MODULES = ("thop", "thop.utils", "skimage", "visdom", "visdom.server", "jpeg4py", "lmdb", "pandas",
                  "pycocotools", "pycocotools.coco", "pycocotools.mask")


def stub_module(name: str) -> types.ModuleType:
    """A module whose every attribute is a do-nothing callable (for imports the timed path never uses)."""
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)  # torch._dynamo looks modules up by spec

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
    real_load = torch.load
    with offline_resnet():
        torch.manual_seed(0)
        weights = build_hiptrack(cfg, training=False).state_dict()
        torch.load = lambda *args, **kwargs: {"net": weights}  # the tracker loads its checkpoint with torch.load
        try:
            return HIPTrack(params, "bench")
        finally:
            torch.load = real_load


@contextlib.contextmanager
def offline_resnet() -> Iterator[None]:
    """While building: its memory encoder downloads ImageNet ResNet weights; give it random ones of that layout."""
    real_load_url = torch.utils.model_zoo.load_url
    torch.utils.model_zoo.load_url = imagenet_resnet_stand_in
    try:
        yield
    finally:
        torch.utils.model_zoo.load_url = real_load_url


def imagenet_resnet_stand_in(url: str, *args, **kwargs) -> dict[str, torch.Tensor]:
    """Random weights in the layout of the torchvision ResNet named in ``url`` (resnet18 / resnet50)."""
    import torchvision

    name = "resnet50" if "resnet50" in url else "resnet18"
    return getattr(torchvision.models, name)(weights=None).state_dict()


class OriginalFrame:
    """The original tracker on a fixed frame with a memory bank of fixed size."""

    def __init__(self, original: Path, config: str, image: np.ndarray) -> None:
        self.source, self.image = (original, config), image
        self._tracker = None

    @property
    def tracker(self):
        """The tracker, built on first use (a training-step run never needs it)."""
        if self._tracker is None:
            self._tracker = build_tracker(*self.source)
        return self._tracker

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


class OriginalTrainStep:
    """One training step as the original's trainer does it in fp32 (``LTRTrainer.cycle_dataset``): its
    actor (forward and loss) on a batch, ``zero_grad``, backward, clipping of all parameters to
    ``GRAD_CLIP_NORM``, AdamW from its ``get_optimizer_scheduler``; backbone frozen as its
    ``train_script.py`` does. The batch: random normalised crops, boxes near the crop centre."""

    def __init__(self, config_path: Path, epoch: int, batch: int) -> None:
        from lib.config.hiptrack.config import cfg, update_config_from_file
        from lib.models.hiptrack import build_hiptrack
        from lib.train.actors import HIPTrackActor
        from lib.train.base_functions import get_optimizer_scheduler
        from lib.utils.box_ops import giou_loss
        from lib.utils.focal_loss import FocalLoss

        update_config_from_file(str(config_path))
        cfg.MODEL.PRETRAIN_FILE = ""  # random weights: no DropTrack / MAE file
        torch.manual_seed(0)
        with offline_resnet():
            net = build_hiptrack(cfg, training=True)
        for name, p in net.named_parameters():
            if "backbone" in name:
                p.requires_grad = False
        settings = types.SimpleNamespace(batchsize=batch, num_template=1)
        objective = {"giou": giou_loss, "l1": torch.nn.functional.l1_loss, "focal": FocalLoss()}
        weights = {"giou": cfg.TRAIN.GIOU_WEIGHT, "l1": cfg.TRAIN.L1_WEIGHT, "focal": 1.0}
        self.actor = HIPTrackActor(net=net, objective=objective, loss_weight=weights, settings=settings, cfg=cfg)
        self.optimizer, _ = get_optimizer_scheduler(net, cfg)
        self.net, self.clip = net, cfg.TRAIN.GRAD_CLIP_NORM
        g = torch.Generator().manual_seed(0)
        t, s, frames = cfg.DATA.TEMPLATE.SIZE, cfg.DATA.SEARCH.SIZE, cfg.DATA.SEARCH.NUMBER
        self.data = {"template_images": torch.randn(1, batch, 3, t, t, generator=g),
                     "search_images": torch.randn(frames, batch, 3, s, s, generator=g),
                     "template_anno": torch.tensor([0.25, 0.25, 0.5, 0.5]).repeat(1, batch, 1),
                     "search_anno": torch.tensor([0.4, 0.4, 0.2, 0.2]).repeat(frames, batch, 1),
                     "epoch": epoch}
        net.train()

    def __call__(self) -> float:
        start = time.perf_counter()
        loss, _ = self.actor(self.data)
        self.optimizer.zero_grad()
        loss.backward()
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.clip)
        self.optimizer.step()
        return time.perf_counter() - start


def serve(frame: OriginalFrame, config_path: Path) -> None:
    """Answer the parent's commands on stdin until ``quit`` or end of input."""
    print("@@ready", flush=True)
    step = None
    for line in sys.stdin:
        command, *rest = line.split()
        if command == "bank":
            print(f"@@ok {frame.set_bank(int(rest[0]))}", flush=True)
        elif command == "frame":
            print(f"@@{frame():.6f}", flush=True)
        elif command == "train":
            step = OriginalTrainStep(config_path, int(rest[0]), int(rest[1]))
            print("@@ok", flush=True)
        elif command == "step":
            print(f"@@{step():.6f}", flush=True)
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
    config_path = args.original.resolve() / "experiments" / "hiptrack" / f"{args.config}.yaml"
    serve(OriginalFrame(args.original.resolve(), args.config, image), config_path)


if __name__ == "__main__":
    main()
