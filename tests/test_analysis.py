"""Evaluation of result files: GOT-10k official protocol, LaSOT-style curves, tables, plots, CLI."""
from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import load_script
from lib.synthetic import generate_dataset
from lib.test.analysis import metrics
from lib.test.analysis.evaluate import MissingResultsError, evaluate_results
from lib.test.evaluation.results import results_dir, sequence_files, write_boxes, write_times
from lib.dataset.paths import DatasetPaths
from lib.dataset.registry import build_dataset

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tracking" / "analysis_results.py"
COVERED = (5, 6, 7)  # frames of the first test sequence made fully covered (cover.label 0)


# ----------------------------------------------------------------------------- metrics by hand

def test_box_iou_hand_values():
    a = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5]], float)
    np.testing.assert_allclose(metrics.box_iou(a, b), [1.0, 50 / 150, 0.0], atol=1e-12)


def test_clip_to_image_shifts_like_the_toolkit():
    boxes = np.array([[-10, -10, 50, 50], [90, 95, 20, 20], [120, 5, 10, 10]], float)
    clipped = metrics.clip_to_image(boxes, 100, 100)
    np.testing.assert_array_equal(clipped, [[0, 0, 50, 50], [90, 95, 10, 5], [100, 5, 0, 10]])
    assert boxes[0, 0] == -10  # the input is not modified


def test_pooled_ao_is_frame_weighted():
    ious = np.concatenate([np.ones(10), np.zeros(2)])
    scores = metrics.got10k_scores(ious)
    assert scores["ao"] == pytest.approx(10 / 12) and round(scores["ao"], 3) == 0.833
    assert scores["sr50"] == pytest.approx(10 / 12) and scores["frames"] == 12


def test_success_rate_is_strictly_greater():
    scores = metrics.got10k_scores(np.array([0.5, 0.75, 0.76, 0.2]))
    assert scores["sr50"] == 0.5 and scores["sr75"] == 0.25


def test_got10k_mask_drops_frame0_and_covered_frames():
    pred = np.tile([10.0, 10, 20, 20], (4, 1))
    ious = metrics.got10k_sequence_ious(pred, pred.copy(), np.array([1, 1, 0, 1], bool), (100, 100))
    assert ious.shape == (2,) and np.allclose(ious, 1.0)


def test_mean_fps_is_mean_of_inverse_times_over_positive_times():
    assert metrics.mean_fps(np.array([0.1, 0.05, 0.0, np.nan])) == pytest.approx(15.0)
    assert np.isnan(metrics.mean_fps(np.zeros(3)))


def test_fill_empty_predictions_carries_previous_box():
    pred = np.array([[1, 1, 5, 5], [2, 2, 0, 5], [3, 3, 5, -1], [4, 4, 5, 5]], float)
    np.testing.assert_array_equal(metrics.fill_empty_predictions(pred)[:, 0], [1, 1, 1, 4])


def test_lasot_curves_frame0_is_ground_truth_and_invisible_frames_fail():
    gt = np.tile([10.0, 10, 20, 20], (5, 1))
    pred = gt.copy()
    pred[0] = [80, 80, 5, 5]                          # replaced by the ground truth
    visible = np.array([1, 1, 1, 1, 0], bool)         # last frame: a failure even if perfect
    curves = metrics.lasot_sequence_curves(pred, gt, visible)
    assert curves.success[0] == pytest.approx(0.8) and curves.success[-1] == 0.0
    scores = metrics.lasot_scores(curves)
    assert scores["auc"] == pytest.approx(0.8 * 20 / 21)
    assert scores["precision"] == pytest.approx(0.8) and scores["norm_precision"] == pytest.approx(0.8)


def test_precision_at_20_pixels_and_normalised_at_020():
    gt = np.tile([0.0, 0, 100, 100], (3, 1))
    pred = gt + np.array([[0, 0, 0, 0], [20, 0, 0, 0], [21, 0, 0, 0]])
    scores = metrics.lasot_scores(metrics.lasot_sequence_curves(pred, gt, np.ones(3, bool)))
    assert scores["precision"] == pytest.approx(2 / 3)        # 0 and 20 px are <= 20
    assert scores["norm_precision"] == pytest.approx(2 / 3)   # 0.20 <= 0.20, 0.21 is not


# ----------------------------------------------------------------------------- on a generated dataset

@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    """6 generated sequences (3 test) of 20 frames; frames COVERED of the first test sequence are
    made fully covered (absent)."""
    root = tmp_path_factory.mktemp("analysis_data")
    summary = generate_dataset(root, sequences=6, frames=20, seed=0, test_fraction=0.5)
    seq_dir = root / "test" / summary["splits"]["test"][0]
    cover = np.loadtxt(seq_dir / "cover.label", dtype=int)
    absence = np.loadtxt(seq_dir / "absence.label", dtype=int)
    cover[list(COVERED)], absence[list(COVERED)] = 0, 1
    np.savetxt(seq_dir / "cover.label", cover, fmt="%d")
    np.savetxt(seq_dir / "absence.label", absence, fmt="%d")
    return root


def _dataset(root: Path, labels: bool = True):
    paths = DatasetPaths.from_env([f"synthetic={root}"])
    return build_dataset("SYNTHETIC_test", paths, cls_ann_dir=root / "cls_annotations" if labels else None)


def _write_results(directory: Path, dataset, noise: float, seed: int = 0, times: bool = True) -> None:
    rng = np.random.default_rng(seed)
    for i in range(len(dataset)):
        gt = dataset.sequence_info(i).bbox.numpy().astype(np.float64)
        files = sequence_files(directory, dataset.sequence_name(i), "got10k")
        write_boxes(files.boxes, gt + rng.normal(0.0, noise, gt.shape) if noise else gt)
        if times:
            write_times(files.times, rng.uniform(0.01, 0.05, len(gt)))


def test_perfect_results_score_one_and_exclude_frame0_and_covered(synthetic, tmp_path):
    dataset = _dataset(synthetic)
    _write_results(tmp_path, dataset, noise=0.0)
    result = evaluate_results(tmp_path, dataset, "got10k")
    assert result["frames"] == 3 * 19 - len(COVERED) and result["sequences"] == 3
    assert result["ao"] == pytest.approx(1.0) and result["sr50"] == 1.0 and result["sr75"] == 1.0
    assert result["auc"] == pytest.approx((3 * 20 - len(COVERED)) / 60 * 20 / 21)
    assert len(result["success_curve"]["success"]) == 21 and 0 < result["fps"] < 200


def test_hand_computed_pooled_ao(synthetic, tmp_path):
    """Two frames of one sequence far off (IoU 0), everything else exact: AO = (F - 2) / F pooled."""
    dataset = _dataset(synthetic)
    _write_results(tmp_path, dataset, noise=0.0)
    name = dataset.sequence_name(1)
    gt = dataset.sequence_info(1).bbox.numpy().astype(np.float64)
    gt[[3, 4]] = [[0, 0, 1, 1], [0, 0, 1, 1]]
    write_boxes(sequence_files(tmp_path, name, "got10k").boxes, gt)
    result = evaluate_results(tmp_path, dataset, "got10k")
    frames = 3 * 19 - len(COVERED)
    assert result["ao"] == pytest.approx((frames - 2) / frames)
    assert result["per_sequence"][name]["ao"] == pytest.approx(17 / 19)


def test_per_challenge_table_counts_labelled_scored_frames(synthetic, tmp_path):
    dataset = _dataset(synthetic)
    _write_results(tmp_path, dataset, noise=4.0)
    result = evaluate_results(tmp_path, dataset, "got10k")
    table = result["per_challenge"]
    assert table and set(table) <= set(metrics_class_names())
    labelled = 0
    for i in range(len(dataset)):
        info = dataset.sequence_info(i)
        scored = info.meta["cover"].numpy() > 0
        scored[0] = False
        labelled += int(((info.cls_label.numpy() >= 0) & scored).sum())
    assert sum(row["frames"] for row in table.values()) == labelled
    assert all(0 <= row["ao"] <= 1 and 0 <= row["sr50"] <= 1 for row in table.values())
    assert evaluate_results(tmp_path, _dataset(synthetic, labels=False), "got10k")["per_challenge"] == {}


def metrics_class_names() -> tuple[str, ...]:
    from lib.challenges import CLASS_NAMES
    return CLASS_NAMES


def test_missing_results_error_lists_them_or_skip_with_warning(synthetic, tmp_path, caplog):
    dataset = _dataset(synthetic)
    _write_results(tmp_path, dataset, noise=2.0)
    missing = dataset.sequence_name(2)
    shutil.rmtree(tmp_path / missing)
    with pytest.raises(MissingResultsError, match=missing):
        evaluate_results(tmp_path, dataset, "got10k")
    with caplog.at_level(logging.WARNING):
        result = evaluate_results(tmp_path, dataset, "got10k", skip_missing=True)
    assert result["sequences"] == 2 and "1 of the 3 sequences" in caplog.text


def test_malformed_and_wrong_length_files_are_named(synthetic, tmp_path):
    dataset = _dataset(synthetic)
    _write_results(tmp_path, dataset, noise=2.0)
    path = sequence_files(tmp_path, dataset.sequence_name(0), "got10k").boxes
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3] + ["1,2,x,4"] + lines[4:]) + "\n")
    with pytest.raises(ValueError, match=f"{path.name}:4"):
        evaluate_results(tmp_path, dataset, "got10k")
    path.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match=f"{path.name} has 19 boxes but the sequence has 20"):
        evaluate_results(tmp_path, dataset, "got10k")


# ----------------------------------------------------------------------------- official toolkit

def test_rect_iou_matches_got10k_toolkit_on_random_boxes():
    toolkit = pytest.importorskip("got10k.utils.metrics")
    rng = np.random.default_rng(1)
    a = np.column_stack([rng.uniform(-60, 300, 500), rng.uniform(-60, 220, 500), rng.uniform(0, 150, (500, 2))])
    b = np.column_stack([rng.uniform(-60, 300, 500), rng.uniform(-60, 220, 500), rng.uniform(0, 150, (500, 2))])
    bound = (320, 240)
    ours = metrics.box_iou(metrics.clip_to_image(a, *bound), metrics.clip_to_image(b, *bound))
    np.testing.assert_allclose(ours, toolkit.rect_iou(a.copy(), b.copy(), bound=bound), rtol=0, atol=1e-12)
    np.testing.assert_allclose(metrics.box_iou(a, b), toolkit.rect_iou(a.copy(), b.copy()), rtol=0, atol=1e-12)


def test_evaluate_results_matches_got10k_toolkit_report(synthetic, tmp_path, monkeypatch):
    """The toolkit's ExperimentGOT10k.report() on the same files (test split served as 'val').

    The dataset classes hold ground truth as float32, the toolkit as float64: AO agrees to 1e-6."""
    pytest.importorskip("six")
    experiments = pytest.importorskip("got10k.experiments")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    dataset = _dataset(synthetic)
    toolkit_root = tmp_path / "got10k"
    toolkit_root.mkdir()
    (toolkit_root / "val").symlink_to(synthetic / "test", target_is_directory=True)
    tracker_dir = tmp_path / "results" / "GOT-10k" / "fake"
    _write_results(tracker_dir, dataset, noise=6.0, seed=3)
    # a second repetition and boxes leaving the image exercise pooling and clipping
    name = dataset.sequence_name(0)
    gt = dataset.sequence_info(0).bbox.numpy().astype(np.float64)
    write_boxes(tracker_dir / name / f"{name}_002.txt", gt + [-40.0, -30.0, 60.0, 50.0])
    monkeypatch.chdir(tmp_path)
    experiment = experiments.ExperimentGOT10k(str(toolkit_root), subset="val", result_dir=str(tmp_path / "results"),
                                              report_dir=str(tmp_path / "reports"))
    official = experiment.report(["fake"])["fake"]["overall"]
    ours = evaluate_results(tracker_dir, dataset, "got10k")
    assert ours["ao"] == pytest.approx(official["ao"], abs=1e-6)
    assert ours["sr50"] == pytest.approx(official["sr"], abs=1e-9)
    assert ours["sr75"] == pytest.approx(official["succ_curve"][75], abs=1e-9)
    assert ours["fps"] == pytest.approx(official["speed_fps"], rel=1e-9)


# ----------------------------------------------------------------------------- tables, plots, CLI

def test_format_comparison_and_plots(synthetic, tmp_path):
    from lib.test.analysis import format_comparison, plot_per_challenge, plot_success
    dataset = _dataset(synthetic)
    results = {}
    for label, noise in (("exact", 0.0), ("noisy", 8.0)):
        _write_results(tmp_path / label, dataset, noise=noise)
        results[label] = evaluate_results(tmp_path / label, dataset, "got10k")
    text = format_comparison(results)
    assert "exact" in text and "noisy" in text and "Per challenge" in text and "noisy SR0.5" in text
    assert " 100.0 " in text.splitlines()[3]  # exact: SR0.5 100 %
    png = plot_success(results, tmp_path / "plots" / "success.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_per_challenge(results, tmp_path / "plots" / "challenges.png").is_file()
    unlabeled = {"x": evaluate_results(tmp_path / "exact", _dataset(synthetic, labels=False), "got10k")}
    assert "Per challenge" not in format_comparison(unlabeled)
    assert plot_per_challenge(unlabeled, tmp_path / "none.png") is None


def _cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_cli_compares_two_runs_from_another_directory(synthetic, tmp_path):
    dataset = _dataset(synthetic)
    save_dir = tmp_path / "output"
    _write_results(results_dir(save_dir, "hiptrack", "a", "synthetic_test"), dataset, noise=2.0)
    other = tmp_path / "elsewhere" / "run"
    _write_results(other, dataset, noise=9.0, seed=1)
    result = _cli(["--dataset", "synthetic_test", "--dataset_dir", f"synthetic={synthetic}",
                   "--cls_ann_dir", str(synthetic / "cls_annotations"), "--save_dir", str(save_dir),
                   "--tracker", "hiptrack:a", "--results_dir", f"{other}:baseline", "--json", "scores.json"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "hiptrack/a" in result.stdout and "baseline" in result.stdout and "Per challenge" in result.stdout
    assert (save_dir / "test" / "analysis" / "synthetic_test" / "success_plot.png").is_file()
    assert (tmp_path / "scores.json").is_file()


def test_cli_errors_are_clear(synthetic, tmp_path, capsys):
    main = _script_module().main
    assert main(["--dataset", "got10k_test", "--tracker", "a:b"]) == 2
    err = capsys.readouterr().err
    assert "cannot be scored locally" in err and "got-10k.aitestunion.com" in err
    dataset = _dataset(synthetic)
    _write_results(tmp_path / "run", dataset, noise=2.0)
    shutil.rmtree(tmp_path / "run" / dataset.sequence_name(0))
    args = ["--dataset", "synthetic_test", "--dataset_dir", f"synthetic={synthetic}", "--no_plot",
            "--results_dir", str(tmp_path / "run")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert dataset.sequence_name(0) in err and "--skip_missing" in err
    assert main([*args, "--skip_missing"]) == 0
    assert "Tracker" in capsys.readouterr().out


def _script_module():
    return load_script(SCRIPT)


def test_cli_run_specs_parse():
    script = _script_module()
    assert script.parse_tracker("hiptrack:hiptrack_cls") == ("hiptrack", "hiptrack_cls", "hiptrack/hiptrack_cls")
    assert script.parse_tracker("hiptrack:ep10:early") == ("hiptrack", "ep10", "early")
    assert script.parse_results_dir("/r/hiptrack/ep5/got10k_val:ep5") == (Path("/r/hiptrack/ep5/got10k_val"), "ep5")
    assert script.parse_results_dir("/r/hiptrack/ep5/got10k_val")[1] == "hiptrack/ep5"
    with pytest.raises(Exception, match="NAME:PARAM"):
        script.parse_tracker("justaname")


def test_otb_format_gives_the_same_scores(synthetic, tmp_path):
    dataset = _dataset(synthetic)
    _write_results(tmp_path / "got", dataset, noise=5.0)
    (tmp_path / "otb").mkdir()
    for i in range(len(dataset)):
        name = dataset.sequence_name(i)
        shutil.copy(sequence_files(tmp_path / "got", name, "got10k").boxes,
                    sequence_files(tmp_path / "otb", name, "otb").boxes)
    got, otb = (evaluate_results(tmp_path / d, dataset, f) for d, f in (("got", "got10k"), ("otb", "otb")))
    assert otb["ao"] == got["ao"] and otb["auc"] == got["auc"] and np.isnan(otb["fps"])


def test_image_size_falls_back_to_the_first_frame(synthetic):
    import dataclasses
    from lib.test.analysis.evaluate import image_size
    dataset = _dataset(synthetic)
    info = dataset.sequence_info(0)
    assert image_size(dataset, 0, info) == (320, 240)
    assert image_size(dataset, 0, dataclasses.replace(info, meta={})) == (320, 240)


def test_evaluate_tracker_by_test_dataset_name(synthetic, tmp_path):
    from lib.test.analysis import NoGroundTruthError, evaluate_tracker
    dataset = _dataset(synthetic)
    _write_results(tmp_path, dataset, noise=3.0)
    paths = DatasetPaths.from_env([f"synthetic={synthetic}"])
    result = evaluate_tracker(tmp_path, "synthetic_test", paths=paths, cls_ann_dir=synthetic / "cls_annotations")
    assert result["ao"] == evaluate_results(tmp_path, dataset, "got10k")["ao"] and result["per_challenge"]
    with pytest.raises(NoGroundTruthError, match="upload the zip to the evaluation server"):
        evaluate_tracker(tmp_path, "got10k_test", paths=paths)
