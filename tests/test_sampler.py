"""Training data: causal sampler, processing and loaders on real JPEG sequences in tmp_path."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lib.config.hiptrack import load_config, resolve_experiment_config
from lib.train.data.loader import build_train_loader, set_epoch
from lib.train.data.processing import TrackingProcessing
from lib.train.data.sampler import TrackingSampler
from lib.dataset.base import SequenceDataset, SequenceInfo

IMAGE_SIZE = 48
TARGET = 12          # side of the square target in pixels
RED, BLUE = (255, 0, 0), (0, 0, 255)


# -- synthetic on-disk datasets ------------------------------------------------------------
def target_box(frame: int) -> list[float]:
    """Known box of the target in a frame: moves right then down, always inside the image."""
    return [6.0 + frame % 24, 8.0 + (frame // 24) % 20, TARGET, TARGET]


def write_sequence(folder: Path, num_frames: int, seed: int) -> list[list[float]]:
    """Noise frames with a target whose left half is red and right half blue; returns the boxes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    boxes = []
    for f in range(num_frames):
        image = rng.integers(60, 200, (IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        x, y, w, h = (int(v) for v in target_box(f))
        image[y:y + h, x:x + w // 2] = RED
        image[y:y + h, x + w // 2:x + w] = BLUE
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(folder / f"{f:08d}.jpg"), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
        boxes.append(target_box(f))
    return boxes


class SyntheticDataset(SequenceDataset):
    """Sequences ``seq<i>`` of JPEG frames; challenge label of frame f is f % 10."""

    def __init__(self, name: str, root: Path, lengths: list[int], invisible_every: int = 0,
                 video: bool = True) -> None:
        super().__init__(name, root)
        self.video = video
        self.infos = []
        for s, n in enumerate(lengths):
            boxes = torch.tensor(write_sequence(self.root / f"seq{s}", n, seed=s), dtype=torch.float32)
            visible = torch.ones(n, dtype=torch.bool)
            if invisible_every:
                visible[::invisible_every] = False
            labels = torch.arange(n) % 10
            self.infos.append(SequenceInfo(f"{name}_seq{s}", boxes, torch.ones(n, dtype=torch.bool), visible,
                                           labels, torch.nn.functional.one_hot(labels, 10).float()))

    def __len__(self) -> int:
        return len(self.infos)

    def sequence_name(self, seq_id: int) -> str:
        return self.infos[seq_id].name

    def sequence_info(self, seq_id: int) -> SequenceInfo:
        return self.infos[seq_id]

    def frame_path(self, seq_id: int, frame_id: int) -> Path:
        return self.root / f"seq{seq_id}" / f"{frame_id:08d}.jpg"

    def is_video_sequence(self) -> bool:
        return self.video


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sampler_data")


@pytest.fixture(scope="module")
def dataset_a(data_root) -> SyntheticDataset:
    return SyntheticDataset("synthA", data_root / "A", [30, 40], invisible_every=4)


@pytest.fixture(scope="module")
def dataset_b(data_root) -> SyntheticDataset:
    return SyntheticDataset("synthB", data_root / "B", [24])


def cfg_with(*opts: str):
    """Tiny HIPTrack-CLS config (template 64, search 128, 5 search frames) with overrides."""
    base = ["DATA.TRAIN.DATASETS_NAME=[synthA]", "DATA.VAL.DATASETS_NAME=[synthA]"]
    return load_config(resolve_experiment_config("hiptrack_cls_tiny"), opts=base + list(opts))


def make_sampler(datasets, training=True, cfg=None, ratios=None, **kwargs) -> TrackingSampler:
    cfg = cfg or cfg_with()
    kwargs.setdefault("samples_per_epoch", 64)
    kwargs.setdefault("num_search", cfg.DATA.SEARCH.NUMBER)
    kwargs.setdefault("max_interval", cfg.DATA.MAX_SAMPLE_INTERVAL)
    return TrackingSampler(datasets, ratios or [1.0] * len(datasets), processing=TrackingProcessing(cfg, training),
                           **kwargs)


def to_rgb(images: torch.Tensor, cfg) -> np.ndarray:
    """Undo the normalisation: (..., 3, S, S) -> (..., S, S, 3) in [0, 255]."""
    mean = torch.tensor(cfg.DATA.MEAN).view(3, 1, 1)
    std = torch.tensor(cfg.DATA.STD).view(3, 1, 1)
    return ((images * std + mean) * 255).movedim(-3, -1).numpy()


def box_halves(image: np.ndarray, anno: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean colour of the left and right inner halves of a normalised box in a crop."""
    size = image.shape[0]
    x, y, w, h = (float(v) * size for v in anno)
    y0, y1 = int(round(y + 0.25 * h)), int(round(y + 0.75 * h))
    left = image[y0:y1, int(round(x + 0.1 * w)):int(round(x + 0.4 * w))]
    right = image[y0:y1, int(round(x + 0.6 * w)):int(round(x + 0.9 * w))]
    return left.reshape(-1, 3).mean(0), right.reshape(-1, 3).mean(0)


def is_gray(image: np.ndarray) -> bool:
    return bool(np.abs(image[..., 0] - image[..., 2]).max() < 1e-2)


def red_on_left(image: np.ndarray, anno: torch.Tensor) -> bool:
    left, right = box_halves(image, anno)
    return bool(left[0] - left[2] > right[0] - right[2])


# -- output format and geometry ------------------------------------------------------------
def test_output_shapes_and_dtypes(dataset_a):
    sample = make_sampler([dataset_a])[0]
    expected = {
        "template_images": ((1, 3, 64, 64), torch.float32), "template_anno": ((1, 4), torch.float32),
        "template_padding": ((1, 64, 64), torch.bool),
        "search_images": ((5, 3, 128, 128), torch.float32), "search_anno": ((5, 4), torch.float32),
        "search_padding": ((5, 128, 128), torch.bool), "search_visible": ((5,), torch.bool),
        "search_cls_label": ((5,), torch.long), "search_cls_multi_hot": ((5, 10), torch.float32),
        "frame_ids": ((6,), torch.long),
    }
    for key, (shape, dtype) in expected.items():
        assert sample[key].shape == shape and sample[key].dtype == dtype, key
    assert sample["dataset"] == "synthA" and sample["sequence"].startswith("synthA_seq")


def test_validation_boxes_are_centred_and_match_the_target(dataset_a):
    cfg = cfg_with()
    sampler = make_sampler([dataset_a], training=False, cfg=cfg)
    for index in range(4):
        sample = sampler[index]
        for images, annos, factor in ((sample["template_images"], sample["template_anno"], 2.0),
                                      (sample["search_images"], sample["search_anno"], 5.0)):
            size = images.shape[-1]
            centre = annos[:, :2] + annos[:, 2:] / 2
            torch.testing.assert_close(centre, torch.full_like(centre, (size - 1) / (2 * size)))
            # square target of side 12: crop side ceil(12 * factor), so w = h = 12 / side
            torch.testing.assert_close(annos[:, 2:], torch.full_like(annos[:, 2:], TARGET / np.ceil(TARGET * factor)))
            for image, anno in zip(to_rgb(images, cfg), annos):
                left, right = box_halves(image, anno)
                assert left[0] > 180 and left[2] < 80 and right[2] > 180 and right[0] < 80  # red | blue


def test_training_boxes_inside_unit_square_and_on_the_target(dataset_a):
    cfg = cfg_with()
    sampler = make_sampler([dataset_a], cfg=cfg)
    checked = 0
    for index in range(6):
        sample = sampler[index]
        for key in ("template_anno", "search_anno"):
            centre = sample[key][:, :2] + sample[key][:, 2:] / 2
            assert ((centre >= 0) & (centre <= 1)).all() and (sample[key][:, 2:] > 0).all()
        for image, anno in zip(to_rgb(sample["search_images"], cfg), sample["search_anno"]):
            inside = bool((anno[:2] >= 0).all() and (anno[:2] + anno[2:] <= 1).all())
            if inside and not is_gray(image):  # whole box in the crop
                left, right = box_halves(image, anno)
                assert max(left[0], right[0]) > 150 and max(left[2], right[2]) > 150  # the target is in the box
                checked += 1
    assert checked >= 10


# -- frame sampling ---------------------------------------------------------------------------
def test_search_frames_causal_visible_and_within_interval(dataset_a):
    sampler = make_sampler([dataset_a], max_interval=3)
    orders = set()
    for _ in range(200):
        clip = sampler.sample_clip(np.random.default_rng(_))
        visible = dataset_a.sequence_info(clip.seq_id).visible
        ids = clip.template_ids + clip.search_ids
        assert len(ids) == 6 and all(visible[ids])
        steps = np.diff(ids)
        forward = bool((steps > 0).all())
        assert forward or (steps < 0).all()
        assert (np.abs(steps) <= 3).all()
        orders.add(forward)
    assert orders == {True, False}  # reversed clips occur too


def test_labels_follow_each_search_frame(dataset_a):
    sampler = make_sampler([dataset_a])
    for index in range(5):
        sample = sampler[index]
        search_ids = sample["frame_ids"][1:]
        assert torch.equal(sample["search_cls_label"], search_ids % 10)
        assert torch.equal(sample["search_cls_multi_hot"].argmax(1), search_ids % 10)
        assert sample["search_visible"].all()


def test_dataset_ratios_respected(dataset_a, dataset_b, data_root):
    dataset_c = SyntheticDataset("synthC", data_root / "C", [20])
    sampler = make_sampler([dataset_a, dataset_b, dataset_c], ratios=[3, 1, 0])
    drawn = np.array([sampler.sample_clip(np.random.default_rng([7, i])).dataset_index for i in range(4000)])
    assert (drawn != 2).all()
    assert abs((drawn == 0).mean() - 0.75) < 0.03


def test_short_and_sparse_sequences_are_skipped(data_root):
    dataset = SyntheticDataset("mixed", data_root / "mixed", [12, 22])  # seq0 has < 20 frames
    sampler = make_sampler([dataset])
    assert {sampler.sample_clip(np.random.default_rng(i)).seq_id for i in range(50)} == {1}
    with pytest.raises(ValueError, match="has no sequence"):
        make_sampler([SyntheticDataset("short", data_root / "short", [12])]).sample_clip(np.random.default_rng(0))


def test_min_sequence_length_comes_from_the_config(data_root):
    short = SyntheticDataset("synthA", data_root / "short14", [14])
    with pytest.raises(ValueError, match="DATA.MIN_SEQUENCE_LENGTH"):
        build_train_loader(cfg_with(), [short], training=True, seed=0).dataset.sample_clip(np.random.default_rng(0))
    loader = build_train_loader(cfg_with("DATA.MIN_SEQUENCE_LENGTH=14"), [short], training=True, seed=0)
    assert loader.dataset.sample_clip(np.random.default_rng(0)).seq_id == 0


def test_image_dataset_repeats_its_image(data_root):
    images = SyntheticDataset("images", data_root / "images", [1, 1], video=False)
    sample = make_sampler([images])[0]
    assert sample["frame_ids"].tolist() == [0] * 6


# -- determinism ------------------------------------------------------------------------------
def test_samples_depend_only_on_seed_epoch_index(dataset_a, dataset_b):
    first, second = make_sampler([dataset_a, dataset_b], seed=3), make_sampler([dataset_a, dataset_b], seed=3)
    a, b = first[5], second[5]
    for key in a:
        assert torch.equal(a[key], b[key]) if torch.is_tensor(a[key]) else a[key] == b[key]
    second.set_epoch(1)
    assert not torch.equal(second[5]["search_images"], a["search_images"])
    assert not torch.equal(first[6]["search_images"], a["search_images"])


def loader_cfg(*opts):
    return cfg_with("TRAIN.BATCH_SIZE=2", "DATA.TRAIN.SAMPLE_PER_EPOCH=8", *opts)


def epoch_batches(loader, epoch):
    set_epoch(loader, epoch)
    return list(loader)


def assert_same_batches(first, second):
    assert len(first) == len(second)
    for x, y in zip(first, second):
        for key in x:
            assert torch.equal(x[key], y[key]) if torch.is_tensor(x[key]) else x[key] == y[key], key


def test_loader_batches_and_worker_independence(dataset_a):
    serial = build_train_loader(loader_cfg("TRAIN.NUM_WORKER=0"), [dataset_a], training=True, seed=1)
    parallel = build_train_loader(loader_cfg("TRAIN.NUM_WORKER=2"), [dataset_a], training=True, seed=1)
    batches = epoch_batches(serial, 0)
    batch = batches[0]
    assert batch["template_images"].shape == (2, 1, 3, 64, 64)
    assert batch["search_images"].shape == (2, 5, 3, 128, 128)
    assert batch["search_cls_label"].shape == (2, 5) and batch["frame_ids"].shape == (2, 6)
    assert batch["dataset"] == ["synthA", "synthA"] and len(batch["sequence"]) == 2
    assert_same_batches(batches, epoch_batches(parallel, 0))
    # set_epoch reaches the persistent workers: epoch 1 differs from epoch 0 and matches serial
    epoch1 = epoch_batches(parallel, 1)
    assert not torch.equal(epoch1[0]["search_images"], batches[0]["search_images"])
    assert_same_batches(epoch1, epoch_batches(serial, 1))
    assert_same_batches(batches, epoch_batches(serial, 0))  # the shuffle depends only on (seed, epoch)


def sample_keys(batches):
    return sorted((seq, tuple(ids.tolist()), round(float(anno.sum()), 4))
                  for b in batches for seq, ids, anno in zip(b["sequence"], b["frame_ids"], b["search_anno"]))


def test_distributed_ranks_cover_the_epoch(dataset_a):
    cfg = loader_cfg("TRAIN.NUM_WORKER=0")
    ranks = [build_train_loader(cfg, [dataset_a], training=True, seed=2, epoch_sampler_rank=r, world_size=2)
             for r in range(2)]
    single = build_train_loader(cfg, [dataset_a], training=True, seed=2)
    per_rank = [epoch_batches(loader, 3) for loader in ranks]
    assert all(len(b) == 2 for b in per_rank)
    assert sample_keys(per_rank[0] + per_rank[1]) == sample_keys(epoch_batches(single, 3))


def test_loader_checks_dataset_names(dataset_b):
    with pytest.raises(ValueError, match="DATASETS_NAME"):
        build_train_loader(loader_cfg(), [dataset_b], training=True, seed=0)


# -- failures -----------------------------------------------------------------------------------
def test_corrupt_frame_is_skipped_counted_and_reported(data_root, caplog):
    dataset = SyntheticDataset("corrupt", data_root / "corrupt", [24])
    bad = dataset.frame_path(0, 21)  # late frames are drawn most often (as in the original sampler)
    bad.write_bytes(b"this is not a JPEG")
    sampler = make_sampler([dataset])
    with caplog.at_level(logging.WARNING, logger="lib.train.data.sampler"):
        for index in range(40):
            sample = sampler[index]
            assert 21 not in sample["frame_ids"].tolist()
    assert sampler.read_errors >= 1
    assert str(bad) in caplog.text


def truncate(path: Path) -> None:
    """Cut a JPEG part-way through its compressed data, as an interrupted copy does."""
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 2 // 3])


def test_truncated_jpeg_is_skipped_counted_and_named(data_root, caplog):
    dataset = SyntheticDataset("truncated", data_root / "truncated", [24])
    bad = dataset.frame_path(0, 21)
    truncate(bad)
    sampler = make_sampler([dataset])
    with caplog.at_level(logging.WARNING, logger="lib.train.data.sampler"):
        for index in range(40):
            assert 21 not in sampler[index]["frame_ids"].tolist()
    assert sampler.unreadable_frames == sampler.read_errors >= 1  # one bad frame per redrawn clip
    assert f"truncated JPEG {bad}" in caplog.text and "unreadable frame(s) so far" in caplog.text


def test_every_unreadable_frame_of_a_clip_is_counted(data_root):
    dataset = SyntheticDataset("all_bad", data_root / "all_bad", [20])
    for f in range(20):
        truncate(dataset.frame_path(0, f))
    sampler = make_sampler([dataset], max_tries=4)
    with pytest.raises(RuntimeError, match="after 4 tries.*truncated JPEG"):
        sampler[0]
    clip_frames = 1 + sampler.num_search  # template + search frames, all distinct
    assert (sampler.read_errors, sampler.unreadable_frames) == (4, 4 * clip_frames)


def test_counters_include_worker_processes(data_root):
    dataset = SyntheticDataset("corrupt2", data_root / "corrupt2", [24])
    dataset.frame_path(0, 22).write_bytes(b"")
    sampler = make_sampler([dataset], samples_per_epoch=8)
    batches = list(torch.utils.data.DataLoader(sampler, batch_size=4, num_workers=2))
    assert len(batches) == 2 and sampler.read_errors > 0 and sampler.unreadable_frames == sampler.read_errors


def test_max_tries_exhausted_raises(data_root):
    dataset = SyntheticDataset("broken", data_root / "broken", [20])
    for f in range(20):
        dataset.frame_path(0, f).write_bytes(b"")
    sampler = make_sampler([dataset], max_tries=5)
    with pytest.raises(RuntimeError, match="after 5 tries.*broken"):
        sampler[0]
    assert sampler.read_errors == 5


def test_unexpected_errors_are_not_swallowed(dataset_a):
    def reader(path):
        raise KeyError("bug")

    with pytest.raises(KeyError):
        make_sampler([dataset_a], reader=reader)[0]


# -- augmentation -------------------------------------------------------------------------------
def test_flip_is_joint_and_moves_the_box(dataset_a):
    cfg = cfg_with()
    sampler = make_sampler([dataset_a], cfg=cfg)
    seen, checked = set(), 0
    for index in range(16):
        sample = sampler[index]
        flags = {red_on_left(img, anno) for key in ("template", "search")
                 for img, anno in zip(to_rgb(sample[f"{key}_images"], cfg), sample[f"{key}_anno"])
                 if (anno[:2] >= 0).all() and (anno[:2] + anno[2:] <= 1).all() and not is_gray(img)}
        assert len(flags) <= 1  # every frame of the sample flipped, or none
        seen |= flags
        checked += bool(flags)
    assert seen == {True, False} and checked >= 12


def test_grayscale_is_joint(dataset_a):
    cfg = cfg_with()
    processing = TrackingProcessing(cfg, training=True)
    processing.GRAYSCALE_PROB = 0.5
    info = dataset_a.sequence_info(0)
    frames = [cv2.cvtColor(cv2.imread(str(dataset_a.frame_path(0, f))), cv2.COLOR_BGR2RGB) for f in range(1, 7)]
    seen = set()
    for seed in range(20):
        out = processing(frames[:1], info.bbox[1:2], frames[1:], info.bbox[2:7], np.random.default_rng(seed))
        if out is None:
            continue
        rgb = np.concatenate([to_rgb(out["template_images"], cfg).reshape(-1, 3),
                              to_rgb(out["search_images"], cfg).reshape(-1, 3)])
        gray = [is_gray(img) for key in ("template_images", "search_images") for img in to_rgb(out[key], cfg)]
        assert len(set(gray)) == 1 and rgb.min() > -1e-3 and rgb.max() < 255 + 1e-3
        seen.add(gray[0])
    assert seen == {True, False}


def test_validation_processing_has_no_randomness(dataset_a):
    processing = TrackingProcessing(cfg_with(), training=False)
    info = dataset_a.sequence_info(0)
    frames = [cv2.cvtColor(cv2.imread(str(dataset_a.frame_path(0, f))), cv2.COLOR_BGR2RGB) for f in range(6)]
    a = processing(frames[:1], info.bbox[:1], frames[1:], info.bbox[1:6], np.random.default_rng(0))
    b = processing(frames[:1], info.bbox[:1], frames[1:], info.bbox[1:6], np.random.default_rng(1))
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_rejects_search_box_outside_its_crop(dataset_a):
    cfg = cfg_with("DATA.SEARCH.CENTER_JITTER=12.0")
    processing = TrackingProcessing(cfg, training=True)
    info = dataset_a.sequence_info(0)
    frames = [cv2.cvtColor(cv2.imread(str(dataset_a.frame_path(0, f))), cv2.COLOR_BGR2RGB) for f in range(6)]
    results = [processing(frames[:1], info.bbox[:1], frames[1:], info.bbox[1:6], np.random.default_rng(s))
               for s in range(30)]
    assert any(r is None for r in results)
    for r in results:
        if r is not None:  # every accepted box has >= 25% of its area inside the crop
            x1, y1 = r["search_anno"][:, 0].clamp(0, 1), r["search_anno"][:, 1].clamp(0, 1)
            x2 = (r["search_anno"][:, 0] + r["search_anno"][:, 2]).clamp(0, 1)
            y2 = (r["search_anno"][:, 1] + r["search_anno"][:, 3]).clamp(0, 1)
            inside = (x2 - x1) * (y2 - y1)
            assert (inside >= 0.25 * r["search_anno"][:, 2] * r["search_anno"][:, 3] - 1e-6).all()
    empty_box = info.bbox[1:6].clone()
    empty_box[2, 2:] = 0
    assert processing(frames[:1], info.bbox[:1], frames[1:], empty_box, np.random.default_rng(0)) is None
    # the sampler redraws rejected samples and counts them
    sampler = make_sampler([dataset_a], cfg=cfg_with("DATA.SEARCH.CENTER_JITTER=6.0"))
    for index in range(5):
        assert sampler[index] is not None
    assert sampler.rejected > 0
