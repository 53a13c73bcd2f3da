"""Dataset classes, dataset roots and the name registry on tiny on-disk sequences (16x16 JPEGs)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lib.dataset.image_loader import ImageReadError, read_image
from lib.challenges import IGNORE_INDEX
from lib.dataset.base import SequenceDataset
from lib.dataset.challenge_labels import SequenceLabels
from lib.dataset.got10k import GOT10k
from lib.dataset.lasot import LaSOT
from lib.dataset.paths import (
    DATA_DIR_ENV,
    DATASET_KINDS,
    ENV_VARS,
    PATHS_FILE_ENV,
    DatasetPaths,
    DatasetRootError,
)
from lib.dataset.registry import DATASET_TABLE, build_dataset, build_datasets, dataset_names
from lib.dataset.trackingnet import TrackingNet

RED_RGB = (200, 30, 30)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in [*ENV_VARS.values(), PATHS_FILE_ENV, DATA_DIR_ENV]:
        monkeypatch.delenv(var, raising=False)


# ----------------------------------------------------------------------------- fixture writers

def write_frames(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    image = np.zeros((16, 16, 3), np.uint8)
    image[:] = RED_RGB[::-1]  # OpenCV writes BGR
    for name in names:
        assert cv2.imwrite(str(folder / name), image)


def boxes(n: int) -> list[tuple[float, float, float, float]]:
    return [(i, i + 1, 4.0, 5.0) for i in range(n)]


def box_lines(rows, sep: str = ",") -> str:
    return "".join(sep.join(f"{v:g}" for v in row) + "\n" for row in rows)


def write_got10k_seq(split_dir: Path, name: str, n: int = 4, gt: str | None = None,
                     labels: dict[str, list[int]] | None = None, meta: str | None = None) -> Path:
    folder = split_dir / name
    write_frames(folder, [f"{i:08d}.jpg" for i in range(1, n + 1)])
    (folder / "groundtruth.txt").write_text(box_lines(boxes(n)) if gt is None else gt)
    for file, values in (labels or {}).items():
        (folder / file).write_text("".join(f"{v}\n" for v in values))
    if meta is not None:
        (folder / "meta_info.ini").write_text(meta)
    return folder


def write_list(split_dir: Path, names: list[str]) -> None:
    split_dir.mkdir(parents=True, exist_ok=True)
    (split_dir / "list.txt").write_text("".join(f"{n}\n" for n in names))


META = """[METAINFO]
url: https://youtu.be/x
anno_fps: 10Hz
object_class: ship
resolution: (1920, 1080)
"""


@pytest.fixture
def got10k_root(tmp_path) -> Path:
    """train: 3 labelled sequences (+ vot split files); val: 1; test: 1 with a first-line-only groundtruth."""
    root = tmp_path / "got10k"
    train = [f"GOT-10k_Train_{i:06d}" for i in range(1, 4)]
    for name in train:
        write_got10k_seq(root / "train", name, labels={"absence.label": [0] * 4, "cover.label": [8] * 4})
    write_list(root / "train", train)
    (root / "train" / "vot_train_split.txt").write_text("0\n2\n")
    (root / "train" / "vot_val_split.txt").write_text("GOT-10k_Train_000002\n")
    write_got10k_seq(root / "val", "GOT-10k_Val_000001", meta=META)
    write_list(root / "val", ["GOT-10k_Val_000001"])
    write_got10k_seq(root / "test", "GOT-10k_Test_000001", n=3, gt="10,20,30,40\n")
    write_list(root / "test", ["GOT-10k_Test_000001"])
    return root


@pytest.fixture
def mvtd_root(tmp_path) -> Path:
    root = tmp_path / "mvtd"
    write_got10k_seq(root / "train", "1-Ship", labels={"absence.label": [0, 1, 0, 0], "cover.label": [8, 8, 0, 3]})
    write_got10k_seq(root / "train", "2-USV")
    write_list(root / "train", ["1-Ship", "2-USV"])
    write_got10k_seq(root / "test", "9", n=3)
    write_list(root / "test", ["9"])
    return root


@pytest.fixture
def lasot_root(tmp_path) -> Path:
    root = tmp_path / "lasot"
    for name in ("airplane-1", "airplane-2", "airplane-10", "boat-1"):
        folder = root / name.split("-")[0] / name
        write_frames(folder / "img", [f"{i:08d}.jpg" for i in range(1, 5)])
        (folder / "groundtruth.txt").write_text(box_lines(boxes(4)))
        (folder / "full_occlusion.txt").write_text("0,1,0,0")
        (folder / "out_of_view.txt").write_text("0,0,1,0\n")
    (root / "testing_set.txt").write_text("airplane-2\nboat-1\n")
    return root


@pytest.fixture
def trackingnet_root(tmp_path) -> Path:
    root = tmp_path / "trackingnet"
    for chunk, seq in (("TRAIN_0", "a_0"), ("TRAIN_2", "b_1"), ("TRAIN_10", "c_2")):
        write_frames(root / chunk / "frames" / seq, [f"{i}.jpg" for i in range(12)])
        (root / chunk / "anno").mkdir(parents=True)
        (root / chunk / "anno" / f"{seq}.txt").write_text(box_lines(boxes(12)))
    write_frames(root / "TEST" / "frames" / "t_0", [f"{i}.jpg" for i in range(3)])
    (root / "TEST" / "anno").mkdir(parents=True)
    (root / "TEST" / "anno" / "t_0.txt").write_text("1,2,3,4\n")
    return root


@pytest.fixture
def all_roots(tmp_path, got10k_root, mvtd_root, lasot_root, trackingnet_root, monkeypatch) -> dict[str, Path]:
    synthetic = tmp_path / "synthetic"
    for split in ("train", "test", "val"):
        write_got10k_seq(synthetic / split, f"synth_{split}_0000")
        write_list(synthetic / split, [f"synth_{split}_0000"])
    roots = {"got10k": got10k_root, "mvtd": mvtd_root, "lasot": lasot_root,
             "trackingnet": trackingnet_root, "synthetic": synthetic}
    for kind, root in roots.items():
        monkeypatch.setenv(ENV_VARS[kind], str(root))
    return roots


class FakeStore:
    """Same interface as ChallengeLabelStore: sequence 1-Ship has labels, others none."""

    def __init__(self):
        self.calls = []

    def for_sequence(self, seq_name, num_frames, frame_files=None):
        self.calls.append((seq_name, num_frames, list(frame_files)))
        labels = torch.full((num_frames,), IGNORE_INDEX, dtype=torch.long)
        multi_hot = torch.zeros(num_frames, 10)
        found = seq_name == "1-Ship"
        if found:
            labels[:] = torch.arange(num_frames) % 10
            multi_hot[torch.arange(num_frames), labels] = 1.0
        return SequenceLabels(labels, multi_hot, found)


# ----------------------------------------------------------------------------- GOT-10k layout

def test_got10k_boxes_visibility_and_meta(got10k_root, mvtd_root):
    mvtd = GOT10k("MVTD_train", mvtd_root, "train")
    assert isinstance(mvtd, SequenceDataset) and len(mvtd) == 2 and mvtd.sequence_name(0) == "1-Ship"
    info = mvtd.sequence_info(0)
    assert info.bbox.dtype == torch.float32 and info.bbox.shape == (4, 4)
    assert torch.equal(info.bbox, torch.tensor(boxes(4), dtype=torch.float32))
    assert info.valid.tolist() == [True] * 4
    assert info.visible.tolist() == [True, False, False, True]  # absent at 1, cover 0 at 2
    assert info.meta["cover"].tolist() == [8, 8, 0, 3] and "cut_by_image" not in info.meta
    assert mvtd.sequence_info(0) is info  # cached

    val = GOT10k("GOT10K_official_val", got10k_root, "val")
    meta = val.sequence_info(0).meta
    assert meta["object_class"] == "ship" and meta["resolution"] == "(1920, 1080)" and meta["anno_fps"] == "10Hz"
    assert val.frame_path(0, 0) == got10k_root / "val" / "GOT-10k_Val_000001" / "00000001.jpg"
    assert val.frame_path(0, 3).name == "00000004.jpg"
    with pytest.raises(IndexError, match="frame id 4"):
        val.frame_path(0, 4)


def test_got10k_separators_invalid_boxes_and_cut_labels(tmp_path):
    gt = "1\t2\t3\t4\n5 6 7 8\n9, 10, 0, 5\n\n"
    write_got10k_seq(tmp_path / "train", "s", n=3, gt=gt, labels={"cut_by_image.label": [0, 1, 0]})
    write_list(tmp_path / "train", ["s"])
    info = GOT10k("x", tmp_path, "train").sequence_info(0)
    assert info.bbox[:2].tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert info.valid.tolist() == [True, True, False]  # zero width
    assert info.visible.tolist() == [True, True, False]
    assert info.meta["cut_by_image"].tolist() == [False, True, False]


def test_sequence_without_label_files_is_all_visible(mvtd_root):
    info = GOT10k("MVTD_test", mvtd_root, "test").sequence_info(0)
    assert info.name == "9" and info.visible.all() and info.valid.all() and info.meta == {"cls_labels_found": False}


def test_first_line_only_groundtruth_on_test_split(got10k_root, tmp_path):
    info = GOT10k("GOT10K_test", got10k_root, "test").sequence_info(0)
    assert info.valid.tolist() == [True, False, False] and info.visible.tolist() == [True, False, False]
    assert info.bbox[0].tolist() == [10, 20, 30, 40] and not info.bbox[1:].any()
    # the same file in a train split is a length mismatch
    write_got10k_seq(tmp_path / "train", "s", n=3, gt="10,20,30,40\n")
    write_list(tmp_path / "train", ["s"])
    with pytest.raises(ValueError, match=r"groundtruth.txt has 1 boxes but the sequence has 3 frames"):
        GOT10k("x", tmp_path, "train").sequence_info(0)


def test_groundtruth_and_label_length_mismatch_errors(tmp_path):
    write_got10k_seq(tmp_path / "train", "short", n=4, gt=box_lines(boxes(3)))
    write_got10k_seq(tmp_path / "train", "badlabel", n=4, labels={"cover.label": [8, 8]})
    write_list(tmp_path / "train", ["short", "badlabel"])
    ds = GOT10k("x", tmp_path, "train")
    with pytest.raises(ValueError) as err:
        ds.sequence_info(0)
    assert str(tmp_path / "train" / "short" / "groundtruth.txt") in str(err.value)
    assert "3 boxes" in str(err.value) and "4 frames" in str(err.value)
    with pytest.raises(ValueError, match=r"cover.label has 2 values but the sequence has 4 frames"):
        ds.sequence_info(1)


def test_malformed_groundtruth_line_is_named(tmp_path):
    write_got10k_seq(tmp_path / "train", "s", n=2, gt="1,2,3,4\n1,2,3\n")
    write_list(tmp_path / "train", ["s"])
    with pytest.raises(ValueError, match=r"groundtruth.txt:2: expected 4 values"):
        GOT10k("x", tmp_path, "train").sequence_info(0)


def test_missing_list_txt_is_an_error(tmp_path):
    write_got10k_seq(tmp_path / "train", "s")
    with pytest.raises(FileNotFoundError, match=r"train/list.txt not found"):
        GOT10k("x", tmp_path, "train")


def test_subset_selection_and_unknown_names(got10k_root):
    ds = GOT10k("x", got10k_root, "train", sequences=["GOT-10k_Train_000003", "GOT-10k_Train_000001"])
    assert ds.sequence_names == ["GOT-10k_Train_000003", "GOT-10k_Train_000001"]
    assert ds.sequence_info(0).name == "GOT-10k_Train_000003"
    unknown = [f"nope{i}" for i in range(7)]
    with pytest.raises(ValueError) as err:
        GOT10k("x", got10k_root, "train", sequences=["GOT-10k_Train_000001", *unknown])
    message = str(err.value)
    assert "7 of the 8 selected sequences" in message and "list.txt" in message
    assert "nope0, nope1, nope2, nope3, nope4, ..." in message and "nope6" not in message


def test_get_frames_rgb_and_corrupt_frame(mvtd_root):
    ds = GOT10k("MVTD_train", mvtd_root, "train")
    frames, info = ds.get_frames(0, [0, 3], read_image)
    assert len(frames) == 2 and info.name == "1-Ship"
    for frame in frames:
        assert frame.shape == (16, 16, 3) and frame.dtype == np.uint8
        assert np.abs(frame.reshape(-1, 3).mean(0) - RED_RGB).max() < 8  # RGB order, not BGR
    (mvtd_root / "train" / "1-Ship" / "00000002.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(ImageReadError, match="00000002.jpg"):
        ds.get_frames(0, [0, 1], read_image)


def noise_jpeg(path: Path, **params: int) -> bytes:
    """A 64x64 noise JPEG (the compressed data fills most of the file); its bytes."""
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    flags = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if params.get("progressive") else []
    assert cv2.imwrite(str(path), image, flags)
    return path.read_bytes()


@pytest.mark.parametrize("progressive", [False, True])
def test_truncated_jpeg_is_unreadable_and_named(tmp_path, progressive):
    path = tmp_path / "00000001.jpg"
    data = noise_jpeg(path, progressive=progressive)
    assert read_image(path).shape == (64, 64, 3)
    path.write_bytes(data[:len(data) // 2])  # OpenCV would decode this as a grey-filled image
    with pytest.raises(ImageReadError, match=f"truncated JPEG {path} "):
        read_image(path)
    path.write_bytes(data[:-2])  # only the end-of-image marker missing
    with pytest.raises(ImageReadError, match="truncated JPEG"):
        read_image(path)


def test_complete_images_still_read(tmp_path):
    jpeg = tmp_path / "trailer.jpg"
    jpeg.write_bytes(noise_jpeg(jpeg) + b"\x00" * 16 + b"camera trailer")  # data after the end marker
    assert read_image(jpeg).shape == (64, 64, 3)
    png = tmp_path / "a.png"
    assert cv2.imwrite(str(png), np.zeros((8, 8, 3), np.uint8))
    named_jpg = tmp_path / "png_named.jpg"
    named_jpg.write_bytes(png.read_bytes())
    assert read_image(png).shape == read_image(named_jpg).shape == (8, 8, 3)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty.jpg \\(empty file\\)"):
        read_image(tmp_path / "empty.jpg")
    with pytest.raises(ImageReadError, match="missing.jpg"):
        read_image(tmp_path / "missing.jpg")


def test_jpeg4py_backend_checks_truncation_too(tmp_path, monkeypatch):
    import sys
    import types
    from lib.dataset import image_loader
    decoded = []

    class JPEG:  # stands in for jpeg4py: decodes the bytes it is given with OpenCV
        def __init__(self, source):
            self.source = source

        def decode(self):
            decoded.append(len(self.source))
            return cv2.cvtColor(cv2.imdecode(np.asarray(self.source), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    monkeypatch.setitem(sys.modules, "jpeg4py", types.SimpleNamespace(JPEG=JPEG))
    read = image_loader._jpeg4py_reader()
    path = tmp_path / "00000001.jpg"
    data = noise_jpeg(path)
    assert read(str(path)).shape == (64, 64, 3) and decoded[-1] == len(data)  # decoded from the bytes read
    path.write_bytes(data[:len(data) // 2])
    calls = len(decoded)
    with pytest.raises(ImageReadError, match="truncated JPEG"):
        read(str(path))
    assert len(decoded) == calls  # refused before decoding


def test_labels_attached_from_store(mvtd_root):
    store = FakeStore()
    ds = GOT10k("MVTD_train", mvtd_root, "train", labels=store)
    info = ds.sequence_info(0)
    assert info.cls_label.tolist() == [0, 1, 2, 3] and info.cls_multi_hot[2, 2] == 1
    assert info.meta["cls_labels_found"] is True
    assert store.calls[0] == ("1-Ship", 4, [f"{i:08d}.jpg" for i in range(1, 5)])
    other = ds.sequence_info(1)
    assert (other.cls_label == IGNORE_INDEX).all() and other.meta["cls_labels_found"] is False
    plain = GOT10k("MVTD_train", mvtd_root, "train").sequence_info(0)
    assert (plain.cls_label == IGNORE_INDEX).all() and plain.cls_multi_hot.shape == (4, 10)
    assert not plain.cls_multi_hot.any()


# ----------------------------------------------------------------------------- LaSOT, TrackingNet

def test_lasot_splits_and_visibility(lasot_root):
    train = LaSOT("LASOT", lasot_root, "train")
    assert train.sequence_names == ["airplane-1", "airplane-10"]  # numeric order, test names removed
    test = LaSOT("LASOT_test", lasot_root, "test")
    assert test.sequence_names == ["airplane-2", "boat-1"]
    info = test.sequence_info(1)
    assert info.visible.tolist() == [True, False, False, True]  # occluded at 1, out of view at 2
    assert info.valid.all() and info.meta["object_class"] == "boat"
    assert test.frame_path(1, 0) == lasot_root / "boat" / "boat-1" / "img" / "00000001.jpg"
    assert LaSOT("x", lasot_root, sequences=["airplane-10"]).sequence_names == ["airplane-10"]


def test_lasot_without_testing_set_explains(lasot_root):
    (lasot_root / "testing_set.txt").unlink()
    with pytest.raises(FileNotFoundError, match="testing_set.txt.*ships"):
        LaSOT("LASOT", lasot_root)


def test_trackingnet_chunks_numeric_frames_and_test(trackingnet_root):
    ds = TrackingNet("TRACKINGNET", trackingnet_root)
    assert ds.chunks == ["TRAIN_0", "TRAIN_2", "TRAIN_10"] and ds.sequence_names == ["a_0", "b_1", "c_2"]
    assert [ds.frame_path(2, i).name for i in (1, 2, 10, 11)] == ["1.jpg", "2.jpg", "10.jpg", "11.jpg"]
    assert ds.frame_files(0)[:3] == ["0.jpg", "1.jpg", "2.jpg"]
    info = ds.sequence_info(2)
    assert info.bbox[10].tolist() == [10, 11, 4, 5] and info.visible.all() and info.meta["chunk"] == "TRAIN_10"
    assert TrackingNet("x", trackingnet_root, chunks=["TRAIN_2"]).sequence_names == ["b_1"]
    test = TrackingNet("x", trackingnet_root, "test")
    assert test.sequence_info(0).valid.tolist() == [True, False, False]
    with pytest.raises(FileNotFoundError, match="TRAIN_5/anno"):
        TrackingNet("x", trackingnet_root, chunks=["TRAIN_5"])


# ----------------------------------------------------------------------------- dataset roots

def test_paths_priority(tmp_path, monkeypatch):
    dirs = {k: tmp_path / k for k in ("override", "env", "file", "data/got10k")}
    for d in dirs.values():
        d.mkdir(parents=True)
    paths_file = tmp_path / "paths.yaml"
    paths_file.write_text("got10k: file\nlasot: null\n")  # relative to the file's folder
    monkeypatch.setenv(ENV_VARS["got10k"], str(dirs["env"]))
    full = DatasetPaths.from_env(["got10k=" + str(dirs["override"])], paths_file, tmp_path / "data")
    assert full.root("got10k") == dirs["override"]
    assert DatasetPaths.from_env(None, paths_file, tmp_path / "data").root("got10k") == dirs["env"]
    monkeypatch.delenv(ENV_VARS["got10k"])
    assert DatasetPaths.from_env(None, paths_file, tmp_path / "data").root("got10k") == dirs["file"]
    assert DatasetPaths.from_env(None, None, tmp_path / "data").root("got10k") == dirs["data/got10k"]
    monkeypatch.setenv(PATHS_FILE_ENV, str(paths_file))  # read by from_env and by a plain DatasetPaths
    assert DatasetPaths.from_env().root("got10k") == DatasetPaths().root("got10k") == dirs["file"]
    monkeypatch.delenv(PATHS_FILE_ENV)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "data"))
    assert DatasetPaths.from_env().root("got10k") == DatasetPaths().root("got10k") == dirs["data/got10k"]
    monkeypatch.delenv(DATA_DIR_ENV)
    monkeypatch.chdir(tmp_path)  # default: ./data of the working directory
    assert DatasetPaths().root("got10k") == dirs["data/got10k"]


def test_missing_root_error_names_every_way_to_set_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetRootError) as err:
        DatasetPaths.from_env().root("got10k")
    message = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    for text in ("GOT-10k", "--dataset_dir got10k=PATH", "HIPTRACK_GOT10K_DIR", "key 'got10k'",
                 "HIPTRACK_PATHS_FILE", str(tmp_path / "data" / "got10k"),
                 "<root>/train/list.txt, <root>/train/GOT-10k_Train_000001/00000001.jpg"):
        assert text in message
    with pytest.raises(DatasetRootError, match=r"(?s)LaSOT.*nowhere.*testing_set.txt"):
        DatasetPaths.from_env(["lasot=" + str(tmp_path / "nowhere")]).root("lasot")


def test_paths_file_and_override_key_errors(tmp_path):
    paths_file = tmp_path / "paths.yaml"
    paths_file.write_text("got10k: /x\ngot10: /y\n")
    with pytest.raises(ValueError) as err:
        DatasetPaths.from_env(paths_file=paths_file).root("got10k")
    assert str(paths_file) in str(err.value) and "'got10'" in str(err.value) and "closest: got10k" in str(err.value)
    with pytest.raises(ValueError, match="unknown dataset 'coco'"):
        DatasetPaths.from_env(["coco=/x"])
    with pytest.raises(ValueError, match="expected NAME=PATH"):
        DatasetPaths.from_env(["got10k"])
    with pytest.raises(FileNotFoundError, match="paths file"):
        DatasetPaths.from_env(paths_file=tmp_path / "none.yaml").root("got10k")


# ----------------------------------------------------------------------------- registry

def test_every_registry_name_resolves(all_roots):
    paths = DatasetPaths.from_env()
    assert set(dataset_names()) == set(DATASET_TABLE)
    assert {spec.kind for spec in DATASET_TABLE.values()} == set(DATASET_KINDS)
    for ds, name in zip(build_datasets(dataset_names(), paths), dataset_names()):
        assert ds.name == name and len(ds) > 0
        info = ds.sequence_info(0)
        assert len(info) == len(info.cls_label) and (info.cls_label == IGNORE_INDEX).all()
        assert ds.frame_path(0, 0).is_file()


def test_vot_splits_by_index_and_name(all_roots):
    paths = DatasetPaths.from_env()
    assert build_dataset("GOT10K_vottrain", paths).sequence_names == ["GOT-10k_Train_000001", "GOT-10k_Train_000003"]
    assert build_dataset("GOT10K_votval", paths).sequence_names == ["GOT-10k_Train_000002"]
    (all_roots["got10k"] / "train" / "vot_val_split.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"(?s)vot_val_split.txt not found.*data_specs.*put it at"):
        build_dataset("GOT10K_votval", paths)


def test_user_split_files_and_unknown_names(all_roots, tmp_path):
    paths = DatasetPaths.from_env()
    split = tmp_path / "fold.txt"
    split.write_text("2-USV\n")
    ds = build_dataset(f"MVTD_train:{split}", paths)
    assert ds.name == f"MVTD_train:{split}" and ds.sequence_names == ["2-USV"]
    split.write_text("GOT-10k_Train_000003\n")  # a subset of a subset
    assert build_dataset(f"GOT10K_vottrain:{split}", paths).sequence_names == ["GOT-10k_Train_000003"]
    split.write_text("2-USV\n7-Boat\n")
    with pytest.raises(ValueError, match=r"fold.txt: 1 lines .*7-Boat"):
        build_dataset(f"MVTD_train:{split}", paths)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        build_dataset(f"MVTD_train:{tmp_path / 'missing.txt'}", paths)
    with pytest.raises(ValueError) as err:
        build_dataset("GOT10K_train", paths)
    assert "Did you mean GOT10K_train_full?" in str(err.value) and "MVTD_test" in str(err.value)


def test_registry_labels_from_folder_or_unlabeled(all_roots, tmp_path):
    ann_dir = tmp_path / "labels"
    (ann_dir / "1-Ship").mkdir(parents=True)
    flags = {"flag": 0, "conf": 0.0}
    record = {"sequence_name": "1-Ship", "frame_file": "00000002.jpg",
              "cv_response": {"scale_variation": 0, "low_res": 1, "low_contrast": 0},
              "vlm_response": {k: flags for k in ("occlusion", "motion_blur", "illu_change", "partial_visibility",
                                                  "variance_appear", "background_clutter")}}
    (ann_dir / "1-Ship" / "1-Ship.jsonl").write_text(json.dumps(record) + "\n")
    paths = DatasetPaths.from_env()
    train, test = build_datasets(["MVTD_train", "MVTD_test"], paths, cls_ann_dir=ann_dir)
    assert train.labels is test.labels  # one store per folder
    info = train.sequence_info(0)
    assert info.cls_label.tolist() == [IGNORE_INDEX, 6, IGNORE_INDEX, IGNORE_INDEX]  # 6 = Low Resolution
    assert info.cls_multi_hot[1, 6] == 1 and info.meta["cls_labels_found"] is True
    assert (build_dataset("MVTD_train", paths, cls_ann_dir="").sequence_info(0).cls_label == IGNORE_INDEX).all()


def test_registry_soft_targets_fill_cls_multi_hot_with_conf(all_roots, tmp_path):
    ann_dir = tmp_path / "labels"
    (ann_dir / "1-Ship").mkdir(parents=True)
    vlm = {k: {"flag": 0, "conf": 0.1} for k in ("occlusion", "motion_blur", "illu_change", "partial_visibility",
                                                 "variance_appear", "background_clutter")}
    vlm["occlusion"] = {"flag": 1, "conf": 0.65}
    record = {"sequence_name": "1-Ship", "frame_file": "00000002.jpg", "vlm_response": vlm,
              "cv_response": {"scale_variation": 0, "low_res": 1, "low_contrast": 0}}
    (ann_dir / "1-Ship" / "1-Ship.jsonl").write_text(json.dumps(record) + "\n")
    paths = DatasetPaths.from_env()
    [hard] = build_datasets(["MVTD_train"], paths, cls_ann_dir=ann_dir)
    soft_train, soft_test = build_datasets(["MVTD_train", "MVTD_test"], paths, cls_ann_dir=ann_dir,
                                           soft_targets=True)
    assert soft_train.labels is soft_test.labels and soft_train.labels is not hard.labels  # one store per kind
    assert soft_train.labels.soft_targets and not hard.labels.soft_targets
    soft_row, hard_row = soft_train.sequence_info(0).cls_multi_hot[1], hard.sequence_info(0).cls_multi_hot[1]
    assert soft_row.tolist() == pytest.approx([0.65, 0, 0, 0, 0, 0, 1.0, 0, 0, 0])  # occlusion conf, low_res 1
    assert hard_row.tolist() == [1.0, 0, 0, 0, 0, 0, 1.0, 0, 0, 0]
    assert torch.equal(soft_train.sequence_info(0).cls_label, hard.sequence_info(0).cls_label)
