"""Synthetic maritime dataset: layout, labels, determinism, every event in the pixels, CLI."""
from __future__ import annotations

import configparser
import hashlib
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from lib.challenges import CLASS_NAMES, DEFAULT_LABEL_SEED, FLAG_CLASS
from lib.dataset.challenge_labels import label_from_record
from lib.synthetic import (
    EVENT_TYPES,
    Event,
    SequencePlan,
    generate_dataset,
    low_res_flag,
    plan_dataset,
    render_sequence,
    rms_contrast,
    split_sizes,
)
from lib.synthetic.labels import CV_KEYS, VLM_KEYS

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tracking" / "make_synthetic_dataset.py"
SIZE = (192, 144)
FRAMES = 24
LABEL_FILES = ("groundtruth.txt", "absence.label", "cover.label", "cut_by_image.label", "meta_info.ini")
MANIFEST = REPO / "tests" / "data" / "synthetic_manifest.json"
# small, yet every event kind and every flag occurs, in a train and a test split
MANIFEST_ARGS = dict(sequences=4, frames=24, seed=3, size=(128, 96))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic") / "data"
    summary = generate_dataset(out, sequences=5, frames=FRAMES, seed=7, size=SIZE)
    return out, summary


def read_sequence(split_dir: Path, name: str) -> dict:
    seq = split_dir / name
    gt = np.loadtxt(seq / "groundtruth.txt", delimiter=",", ndmin=2)
    labels = {f: np.loadtxt(seq / f"{f}.label", dtype=int, ndmin=1) for f in ("absence", "cover", "cut_by_image")}
    jsonl = split_dir.parent / "cls_annotations" / name / f"{name}.jsonl"
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    return {"gt": gt, **labels, "records": records}


def all_sequences(out: Path):
    for split in ("train", "test"):
        for name in (out / split / "list.txt").read_text().split():
            yield split, name


# ---------------------------------------------------------------------------------------------
# Layout and labels on disk
# ---------------------------------------------------------------------------------------------

def test_layout_and_line_counts(dataset):
    out, summary = dataset
    train = (out / "train" / "list.txt").read_text().split()
    test = (out / "test" / "list.txt").read_text().split()
    assert train == summary["splits"]["train"] and test == summary["splits"]["test"]
    assert len(test) == 1 and not set(train) & set(test)
    names = sorted(train + test, key=lambda n: int(n.split("-")[0]))
    assert names == ["1-Ship", "2-Boat", "3-Sailboat", "4-USV", "5-Ship"]
    for split, name in all_sequences(out):
        seq = out / split / name
        frames = sorted(p.name for p in seq.glob("*.jpg"))
        assert frames == [f"{i:08d}.jpg" for i in range(1, FRAMES + 1)]
        assert cv2.imread(str(seq / frames[0])).shape == (SIZE[1], SIZE[0], 3)
        for f in LABEL_FILES[:4]:
            assert len((seq / f).read_text().splitlines()) == FRAMES, f"{name}/{f}"
        meta = configparser.ConfigParser()
        meta.read(seq / "meta_info.ini")
        assert meta["METAINFO"]["object_class"] == name.split("-")[1].lower()
        assert meta["METAINFO"]["resolution"] == f"({SIZE[0]}, {SIZE[1]})"
        lines = (out / "cls_annotations" / name / f"{name}.jsonl").read_text().splitlines()
        assert len(lines) == FRAMES
        first = json.loads(lines[0])
        assert list(first) == ["sequence_name", "frame_id", "frame_file", "cv_response", "vlm_response",
                               "ground_truth_bbox"]
        assert list(first["cv_response"]) == list(CV_KEYS) and list(first["vlm_response"]) == list(VLM_KEYS)
        assert (first["sequence_name"], first["frame_id"], first["frame_file"]) == (name, 1, "00000001.jpg")
    readme = (out / "README.txt").read_text()
    assert "seed=7" in readme and f"frames={FRAMES}" in readme and "size=192x144" in readme


def test_boxes_inside_image_and_consistent_with_jsonl(dataset):
    out, _ = dataset
    width, height = SIZE
    for split, name in all_sequences(out):
        s = read_sequence(out / split, name)
        gt = s["gt"]
        assert gt.shape == (FRAMES, 4)
        assert (gt[:, 2] > 0).all() and (gt[:, 3] > 0).all()
        assert (gt[:, 0] >= 0).all() and (gt[:, 1] >= 0).all()
        assert (gt[:, 0] + gt[:, 2] <= width + 1e-3).all() and (gt[:, 1] + gt[:, 3] <= height + 1e-3).all()
        boxes = np.array([r["ground_truth_bbox"] for r in s["records"]])
        np.testing.assert_allclose(boxes, np.c_[gt[:, :2], gt[:, :2] + gt[:, 2:]], atol=1e-3)
        assert set(s["absence"]) <= {0, 1} and set(s["cut_by_image"]) <= {0, 1} and set(s["cover"]) <= set(range(9))
        assert (s["cover"][s["absence"] == 1] == 0).all()
        vlm = {k: np.array([r["vlm_response"][k]["flag"] for r in s["records"]]) for k in VLM_KEYS}
        conf = {k: np.array([r["vlm_response"][k]["conf"] for r in s["records"]]) for k in VLM_KEYS}
        np.testing.assert_array_equal(vlm["partial_visibility"], s["cut_by_image"])
        assert (vlm["occlusion"][s["absence"] == 1] == 1).all()  # only an occluder hides the whole target
        assert ((s["cover"] < 8) == ((vlm["occlusion"] == 1) | (s["cut_by_image"] == 1))).all()
        for k in VLM_KEYS:
            assert ((conf[k] > 0) == (vlm[k] == 1)).all()
        # the template frame is a normal frame
        first = s["records"][0]
        assert not any(first["cv_response"].values()) and not any(v["flag"] for v in first["vlm_response"].values())
        assert s["cover"][0] == 8 and s["absence"][0] == 0


def test_cv_flags_follow_the_rules_on_the_written_files(dataset):
    out, _ = dataset
    for split, name in all_sequences(out):
        s = read_sequence(out / split, name)
        gt = s["gt"]
        ratio = np.sqrt(gt[:, 2] * gt[:, 3] / (gt[0, 2] * gt[0, 3]))
        for i, r in enumerate(s["records"]):
            cv = r["cv_response"]
            assert cv["scale_variation"] == int(ratio[i] < 0.7 or ratio[i] > 1.4)
            assert cv["low_res"] == int(min(gt[i, 2:]) < 24 or gt[i, 2] * gt[i, 3] < 900)
            gray = cv2.imread(str(out / split / name / f"{i + 1:08d}.jpg"), cv2.IMREAD_GRAYSCALE)
            box_std, ring_std = rms_contrast(gray, gt[i])
            assert cv["low_contrast"] == int(box_std < ring_std / 1.1), (name, i)


def test_summary_counts_are_the_training_labels(dataset):
    """The class counts the generator reports are those of the labels a training run reads."""
    out, summary = dataset
    assert sum(summary["class_counts"].values()) == 5 * FRAMES
    labels = []
    for split, name in all_sequences(out):
        for r in read_sequence(out / split, name)["records"]:
            labels.append(label_from_record(r, DEFAULT_LABEL_SEED, name))
    counts = np.bincount(labels, minlength=10)
    assert {CLASS_NAMES[c]: int(n) for c, n in enumerate(counts)} == summary["class_counts"]


# ---------------------------------------------------------------------------------------------
# Plans, splits, determinism
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n, fraction, expected", [(1, 0.25, (1, 0)), (2, 0.25, (1, 1)), (4, 0.25, (3, 1)),
                                                   (10, 0.25, (7, 3)), (40, 0.25, (30, 10)), (5, 0.0, (5, 0)),
                                                   (3, 0.9, (1, 2))])
def test_split_sizes(n, fraction, expected):
    assert split_sizes(n, fraction) == expected


def test_plans_are_balanced_disjoint_and_reproducible():
    plans = plan_dataset(36, 60, seed=3)
    assert plans == plan_dataset(36, 60, seed=3)
    assert plans != plan_dataset(36, 60, seed=4)
    names = [p.name for p, _ in plans]
    assert len(set(names)) == 36 and names[:4] == ["1-Ship", "2-Boat", "3-Sailboat", "4-USV"]
    assert sum(s == "test" for _, s in plans) == 9
    counts = {k: 0 for k in EVENT_TYPES}
    for plan, _ in plans:
        spans = sorted((e.start, e.end) for e in plan.events)
        assert 1 <= len(spans) <= 3 and spans[0][0] >= 2 and spans[-1][1] <= 60
        assert all(b[0] - a[1] >= 3 for a, b in zip(spans, spans[1:]))
        for e in plan.events:
            counts[e.kind] += 1
    assert min(counts.values()) >= 1 and max(counts.values()) - min(counts.values()) <= 2, counts


def test_generation_is_byte_identical_for_a_seed(tmp_path):
    args = dict(sequences=2, frames=10, size=(160, 120))
    generate_dataset(tmp_path / "a", seed=5, **args)
    generate_dataset(tmp_path / "b", seed=5, **args)
    generate_dataset(tmp_path / "c", seed=6, **args)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 2 * (10 + 5 + 1) + 2 + 1
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    def first_frame(root: Path) -> bytes:
        return next(root.glob("*/1-Ship/00000001.jpg")).read_bytes()

    assert first_frame(tmp_path / "c") != first_frame(tmp_path / "a")


def file_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root``, keyed by its relative POSIX path, in sorted order."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def build_versions() -> dict[str, str]:
    """The libraries whose float kernels and JPEG encoder decide the image bytes."""
    return {"numpy": np.__version__, "opencv": cv2.__version__}


def write_synthetic_manifest(path: Path = MANIFEST) -> None:
    """Regenerate the manifest, only when the generator's output is meant to change:
    ``PYTHONPATH=. python -c "from tests.test_synthetic import write_synthetic_manifest as w; w()"``."""
    with tempfile.TemporaryDirectory() as scratch:
        generate_dataset(scratch, **MANIFEST_ARGS)
        files = file_hashes(Path(scratch))
    manifest = {"arguments": {**MANIFEST_ARGS, "size": list(MANIFEST_ARGS["size"])}, **build_versions(),
                "files": files}
    path.write_text(json.dumps(manifest, indent=1) + "\n", newline="\n")


def test_generation_matches_the_committed_manifest(tmp_path):
    """Every file is byte-identical to the recorded output: the guard for refactoring the generator."""
    manifest = json.loads(MANIFEST.read_text())
    assert manifest["arguments"] == {**MANIFEST_ARGS, "size": list(MANIFEST_ARGS["size"])}
    recorded = {k: manifest[k] for k in build_versions()}
    if recorded != build_versions():
        pytest.skip(f"manifest recorded with {recorded}, installed {build_versions()}: "
                    "image bytes may differ between builds")
    generate_dataset(tmp_path, **MANIFEST_ARGS)
    hashes = file_hashes(tmp_path)
    assert sorted(hashes) == sorted(manifest["files"]), "a different set of files"
    changed = [rel for rel, digest in hashes.items() if manifest["files"][rel] != digest]
    assert not changed, f"{len(changed)} of {len(hashes)} files differ from the manifest, e.g. {changed[:5]}"


def test_refuses_non_empty_dir_and_overwrite_keeps_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_dataset(tmp_path, sequences=1, frames=4, size=(128, 96))
    generate_dataset(tmp_path, sequences=1, frames=4, size=(128, 96), overwrite=True)
    (tmp_path / "train" / "stale").mkdir()
    generate_dataset(tmp_path, sequences=1, frames=4, size=(128, 96), overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "train" / "stale").exists()
    assert (tmp_path / "train" / "list.txt").read_text() == "1-Ship\n"


@pytest.mark.parametrize("kwargs, message", [
    (dict(sequences=0), "sequences"), (dict(frames=1), "frames"), (dict(size=(64, 48)), "size"),
    (dict(size=(320.5, 240)), "size"), (dict(test_fraction=1.0), "test_fraction"),
    (dict(events={"9-Ship": [Event("low_res", 2, 5)]}), "unknown sequences"),
    (dict(events={"1-Ship": [Event("low_res", 2, 50)]}), "ends at 50"),
])
def test_invalid_arguments(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_dataset(tmp_path / "out", **{"sequences": 2, "frames": 6, **kwargs})
    assert not (tmp_path / "out").exists()


def test_invalid_events():
    with pytest.raises(ValueError, match="unknown event kind"):
        Event("fog", 2, 5)
    with pytest.raises(ValueError, match="overlap"):
        SequencePlan("1-Ship", "ship", (Event("low_res", 2, 8), Event("occlusion", 6, 10)), 0)
    with pytest.raises(ValueError, match="template"):
        render_sequence(SequencePlan("1-Ship", "ship", (Event("low_res", 0, 8),), 0), 10, SIZE)


def test_forced_events_replace_the_plan(tmp_path):
    summary = generate_dataset(tmp_path, sequences=2, frames=12, size=(160, 120),
                               events={"2-Boat": [Event("illu_change", 3, 9)]})
    assert summary["events"]["2-Boat"] == [["illu_change", 3, 9]]
    split = "train" if "2-Boat" in summary["splits"]["train"] else "test"
    records = read_sequence(tmp_path / split, "2-Boat")["records"]
    assert [r["vlm_response"]["illu_change"]["flag"] for r in records] == [0] * 3 + [1] * 6 + [0] * 3


def test_event_kinds_are_in_class_id_order():
    assert [FLAG_CLASS[kind] for kind in EVENT_TYPES] == list(range(len(CLASS_NAMES) - 1))
    assert CLASS_NAMES[EVENT_TYPES.index("low_contrast")] == "Low Contrast Object"


# ---------------------------------------------------------------------------------------------
# Every event really happens in the pixels, and its flags are exactly its rendered frames
# ---------------------------------------------------------------------------------------------

START, END, N_FRAMES = 8, 20, 26


def render(kind: str, object_class: str = "ship", seed: int = 11):
    plan = SequencePlan("1-Test", object_class, (Event(kind, START, END),), seed)
    return render_sequence(plan, N_FRAMES, SIZE)


def in_event() -> np.ndarray:
    mask = np.zeros(N_FRAMES, bool)
    mask[START:END] = True
    return mask


def gray(seq, i: int) -> np.ndarray:
    return cv2.cvtColor(seq.image(i), cv2.COLOR_BGR2GRAY).astype(np.float64)


def hull_pixels(seq, i: int, region: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Mask of saturated pixels within 10 hue steps of the target's hull colour."""
    hsv = cv2.cvtColor(seq.image(i), cv2.COLOR_BGR2HSV).astype(int)
    hue = int(cv2.cvtColor(np.uint8([[seq.target_bgr]]), cv2.COLOR_BGR2HSV)[0, 0, 0])
    diff = np.abs(hsv[..., 0] - hue)
    mask = (np.minimum(diff, 180 - diff) <= 10) & (hsv[..., 1] >= 90) & (hsv[..., 2] >= 60)
    if region is not None:
        x0, y0, x1, y1 = region
        keep = np.zeros_like(mask)
        keep[max(0, y0):y1, max(0, x0):x1] = True
        mask &= keep
    return mask


def check_only(seq, kind: str) -> None:
    """No VLM flag other than ``kind`` is set, and the template frame is normal."""
    for k in VLM_KEYS:
        if k != kind:
            assert not seq.flags[k].any(), k
    assert all(seq.flags[k][0] == 0 for k in EVENT_TYPES)


@pytest.mark.parametrize("object_class, seed", [("ship", 11), ("sailboat", 12)])
def test_occlusion_covers_the_target(object_class, seed):
    seq = render("occlusion", object_class, seed)
    check_only(seq, "occlusion")
    flagged = seq.flags["occlusion"].astype(bool)
    assert flagged.sum() >= 6 and not (flagged & ~in_event()).any()
    assert (seq.cover[flagged] < 8).all() and (seq.cover[~flagged] == 8).all()
    full = hull_pixels(seq, 0).sum()
    assert min(hull_pixels(seq, i).sum() for i in np.flatnonzero(flagged)) < 0.7 * full
    for i in np.flatnonzero(seq.absence):  # fully covered: the last visible box is kept
        assert seq.cover[i] == 0
        np.testing.assert_array_equal(seq.boxes_xywh[i], seq.boxes_xywh[i - 1])


@pytest.mark.parametrize("seed", [11, 13, 14])
def test_illumination_change_shifts_brightness(seed):
    seq = render("illu_change", "boat", seed)
    check_only(seq, "illu_change")
    np.testing.assert_array_equal(seq.flags["illu_change"].astype(bool), in_event())
    before = np.mean([gray(seq, i).mean() for i in range(START - 3, START)])
    peak = gray(seq, (START + END) // 2).mean()
    assert abs(peak - before) > 12
    after = np.mean([gray(seq, i).mean() for i in range(END, END + 3)])
    assert abs(after - before) < 6


@pytest.mark.parametrize("object_class", ["ship", "usv"])
def test_scale_variation_changes_the_size(object_class):
    seq = render("scale_variation", object_class, 21)
    check_only(seq, "scale_variation")
    box = seq.boxes_xywh
    ratio = np.sqrt(box[:, 2] * box[:, 3] / (box[0, 2] * box[0, 3]))
    flagged = seq.flags["scale_variation"].astype(bool)
    assert flagged.sum() >= 8 and not (flagged & ~in_event()).any()
    np.testing.assert_array_equal(flagged, (ratio < 0.7) | (ratio > 1.4))
    assert not seq.flags["low_res"].any()


def test_motion_blur_smears_the_target():
    seq = render("motion_blur", "boat", 31)
    check_only(seq, "motion_blur")
    np.testing.assert_array_equal(seq.flags["motion_blur"].astype(bool), in_event())

    def sharpness(i):
        x, y, w, h = seq.boxes_xywh[i].astype(int)
        return cv2.Laplacian(gray(seq, i)[y:y + h + 1, x:x + w + 1], cv2.CV_64F).var()

    normal = np.median([sharpness(i) for i in range(START)])
    blurred = np.median([sharpness(i) for i in range(START, END)])
    assert blurred < 0.5 * normal
    speed = np.linalg.norm(np.diff(seq.boxes_xywh[:, :2], axis=0), axis=1)
    assert np.median(speed[START:END - 1]) > 2 * np.median(speed[:START - 3])


@pytest.mark.parametrize("object_class", ["ship", "sailboat"])
def test_variance_in_appearance_turns_the_target(object_class):
    seq = render("variance_appear", object_class, 41)
    check_only(seq, "variance_appear")
    np.testing.assert_array_equal(seq.flags["variance_appear"].astype(bool), in_event())
    aspect = seq.boxes_xywh[:, 2] / seq.boxes_xywh[:, 3]
    assert aspect[(START + END) // 2] < 0.75 * aspect[0]
    assert abs(aspect[-1] / aspect[0] - 1) < 0.1


@pytest.mark.parametrize("object_class, seed", [("ship", 51), ("boat", 52), ("usv", 53)])
def test_partial_visibility_cuts_the_target(object_class, seed):
    seq = render("partial_visibility", object_class, seed)
    check_only(seq, "partial_visibility")
    width, height = SIZE
    flagged = seq.flags["partial_visibility"].astype(bool)
    assert flagged.sum() >= 10
    near = np.zeros(N_FRAMES, bool)
    near[START - 2:END + 2] = True
    assert not (flagged & ~near).any()
    x, y, w, h = seq.boxes_xywh.T
    touches = (x <= 1e-3) | (y <= 1e-3) | (x + w >= width - 1e-3) | (y + h >= height - 1e-3)
    np.testing.assert_array_equal(touches, flagged)
    np.testing.assert_array_equal(seq.cut_by_image.astype(bool), flagged)
    assert (seq.cover[flagged] < 8).all()


@pytest.mark.parametrize("object_class", ["ship", "boat", "sailboat", "usv"])
def test_low_resolution_shrinks_the_target(object_class):
    seq = render("low_res", object_class, 61)
    check_only(seq, "low_res")
    flagged = seq.flags["low_res"].astype(bool)
    assert flagged.sum() >= 8 and not (flagged & ~in_event()).any()
    assert all(low_res_flag(b) for b in seq.boxes_xywh[flagged])
    assert not low_res_flag(seq.boxes_xywh[0])
    assert not seq.flags["scale_variation"].any()  # one CV flag at a time: no random tie-break


@pytest.mark.parametrize("seed", [71, 72])
def test_background_clutter_adds_similar_distractors(seed):
    seq = render("background_clutter", "usv", seed)
    check_only(seq, "background_clutter")
    np.testing.assert_array_equal(seq.flags["background_clutter"].astype(bool), in_event())

    def distractor_pixels(i):
        x, y, w, h = seq.boxes_xywh[i]
        side = 2.5 * math.sqrt(w * h)
        cx, cy = x + w / 2, y + h / 2
        near = hull_pixels(seq, i, (int(cx - side), int(cy - side), int(cx + side), int(cy + side)))
        near[int(y) - 1:int(y + h) + 2, int(x) - 1:int(x + w) + 2] = False  # the target itself
        return near.sum()

    assert distractor_pixels(0) < 5
    assert min(distractor_pixels(i) for i in range(START, END)) > 40


@pytest.mark.parametrize("object_class, seed", [("ship", 81), ("boat", 82), ("sailboat", 83), ("usv", 84)])
def test_low_contrast_meets_the_rms_rule(object_class, seed):
    seq = render("low_contrast", object_class, seed)
    check_only(seq, "low_contrast")
    np.testing.assert_array_equal(seq.flags["low_contrast"].astype(bool), in_event())
    for i in range(N_FRAMES):
        box_std, ring_std = rms_contrast(gray(seq, i), seq.boxes_xywh[i])
        assert (box_std < ring_std / 1.1) == bool(seq.flags["low_contrast"][i])
    assert hull_pixels(seq, START + 3).sum() < 0.2 * hull_pixels(seq, 0).sum()


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_cli_help(tmp_path):
    result = run_cli(["--help"], tmp_path)
    assert result.returncode == 0 and "--overwrite" in result.stdout


def test_cli_writes_a_dataset_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "data"
    args = ["--synthetic_dir", str(out), "--sequences", "3", "--frames", "5", "--seed", "2", "--size", "128x96"]
    result = run_cli(args, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2 train + 1 test sequences x 5 frames" in result.stdout and "Normal" in result.stdout
    assert (out / "train" / "list.txt").exists() and (out / "cls_annotations").is_dir()
    before = (out / "README.txt").read_bytes()
    result = run_cli(args, tmp_path)
    assert result.returncode == 2 and "not empty" in result.stderr
    result = run_cli(args + ["--overwrite", "--quiet"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert (out / "README.txt").read_bytes() == before


@pytest.mark.parametrize("bad", [["--sequences", "0"], ["--frames", "1"], ["--size", "64x48"], ["--size", "big"],
                                 ["--test_fraction", "1.5"]])
def test_cli_rejects_bad_arguments(tmp_path, bad):
    result = run_cli(["--synthetic_dir", str(tmp_path / "x"), *bad], tmp_path)
    assert result.returncode == 2
    assert "error" in result.stderr
    assert not (tmp_path / "x").exists()


def test_validation_split_is_planned_apart_and_leaves_train_and_test_unchanged(tmp_path):
    args = dict(sequences=4, frames=8, seed=3, size=(128, 96))
    generate_dataset(tmp_path / "plain", **args)
    summary = generate_dataset(tmp_path / "with_val", **args, val_sequences=2, val_seed=11)
    assert summary["splits"]["val"] == ["5-Ship", "6-Boat"] and summary["val_seed"] == 11
    assert (tmp_path / "with_val" / "val" / "list.txt").read_text() == "5-Ship\n6-Boat\n"
    plain, with_val = file_hashes(tmp_path / "plain"), file_hashes(tmp_path / "with_val")
    assert {k: v for k, v in with_val.items() if k in plain and k != "README.txt"} == {
        k: v for k, v in plain.items() if k != "README.txt"}
    assert "val_sequences=2 val_seed=11" in (tmp_path / "with_val" / "README.txt").read_text()
    # another validation seed gives other sequences under the same names
    generate_dataset(tmp_path / "other_val", **args, val_sequences=2, val_seed=12)
    assert (file_hashes(tmp_path / "other_val")["val/5-Ship/groundtruth.txt"]
            != with_val["val/5-Ship/groundtruth.txt"])


def test_validation_split_is_a_dataset(tmp_path):
    from lib.dataset.paths import DatasetPaths
    from lib.dataset.registry import build_dataset
    generate_dataset(tmp_path, sequences=2, frames=6, seed=1, size=(128, 96), val_sequences=1)
    dataset = build_dataset("SYNTHETIC_val", DatasetPaths({"synthetic": tmp_path}),
                            cls_ann_dir=tmp_path / "cls_annotations")
    assert len(dataset) == 1 and dataset.sequence_name(0) == "3-Sailboat"
    assert (dataset.sequence_info(0).cls_label >= 0).all()
