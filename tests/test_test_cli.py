"""tracking/test.py end to end on generated sequences, and the HIPTrack-CLS tracker."""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import load_script
from lib.config.hiptrack import load_config, resolve_experiment_config
from lib.models import build_model
from lib.synthetic import generate_dataset
from lib.test.evaluation.results import read_challenges, read_result_boxes, results_dir, sequence_files
from lib.test.tracker import TRACKERS, HIPTrackCLSTracker
from lib.dataset.got10k import read_boxes
from lib.utils.checkpoint import save_checkpoint

TEST_PY = Path(__file__).resolve().parents[1] / "tracking" / "test.py"
SEQUENCES = ("2-Boat", "4-USV")  # the test split of the generated data
FRAMES = 12


def load_test_cli():
    """tracking/test.py as a module (tracking/ is not a package)."""
    return load_script(TEST_PY)


@pytest.fixture(scope="module")
def cli():
    return load_test_cli()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synthetic") / "data"
    summary = generate_dataset(out, sequences=4, frames=FRAMES, seed=0, test_fraction=0.5)
    assert tuple(summary["splits"]["test"]) == SEQUENCES
    return out


@pytest.fixture(scope="module")
def cls_checkpoint(tmp_path_factory) -> Path:
    """A random-init tiny HIPTrack-CLS checkpoint in the trainer's format."""
    cfg = load_config(resolve_experiment_config("hiptrack_cls_tiny"))
    torch.manual_seed(0)
    model = build_model(cfg, training=False)
    path = tmp_path_factory.mktemp("ckpt") / "HIPTrack_ep0002.pth.tar"
    return save_checkpoint({"net": model.state_dict(), "epoch": 2, "config": cfg.to_dict()}, path)


def out_dir(save_dir: Path, dataset: str = "synthetic_test", tracker: str = "hiptrack_cls") -> Path:
    return results_dir(save_dir, tracker, "hiptrack_cls_tiny", dataset)


def check_sequence_results(directory: Path, data_dir: Path, name: str, save_cls: bool) -> None:
    files = sequence_files(directory, name, "got10k")
    boxes = read_result_boxes(files.boxes)
    assert boxes.shape == (FRAMES, 4) and np.isfinite(boxes).all()
    lines = files.boxes.read_text().splitlines()
    assert all(len(line.split(",")) == 4 for line in lines)
    init = read_boxes(data_dir / "test" / name / "groundtruth.txt")[0]
    np.testing.assert_allclose(boxes[0], init, atol=1e-3)
    times = np.loadtxt(files.times)
    assert times.shape == (FRAMES,) and (times > 0).all()
    if save_cls:
        ids, probs = read_challenges(files.challenges)
        assert ids.shape == (FRAMES,) and ids[0] == -1 and np.isnan(probs[0]).all()
        assert ((ids[1:] >= 0) & (ids[1:] < 10)).all()
        np.testing.assert_allclose(probs[1:].sum(axis=1), 1.0, atol=1e-3)
        np.testing.assert_array_equal(ids[1:], probs[1:].argmax(axis=1))
    else:
        assert not files.challenges.exists()


def test_help(cli, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--help"])
    assert exc.value.code == 0
    assert "--save_cls" in capsys.readouterr().out


def test_run_in_process_with_default_checkpoint_then_resume(cli, data_dir, cls_checkpoint, tmp_path, capsys):
    save_dir = tmp_path / "output"
    default = save_dir / "checkpoints" / "train" / "hiptrack" / "hiptrack_cls_tiny" / "HIPTrack_ep0002.pth.tar"
    default.parent.mkdir(parents=True)
    shutil.copy(cls_checkpoint, default)
    argv = ["hiptrack_cls", "hiptrack_cls_tiny", "--dataset", "synthetic_test", "--save_dir", str(save_dir),
            "--dataset_dir", f"synthetic={data_dir}", "--save_cls", "--device", "cpu"]
    assert cli.main(argv) == 0
    assert "2 sequences done, 0 skipped, 0 failed" in capsys.readouterr().out
    directory = out_dir(save_dir)
    for name in SEQUENCES:
        check_sequence_results(directory, data_dir, name, save_cls=True)

    stamps = {p: p.stat().st_mtime_ns for p in directory.rglob("*.txt")}
    assert len(stamps) == 3 * len(SEQUENCES)
    assert cli.main(argv) == 0
    assert "0 sequences done, 2 skipped, 0 failed" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in directory.rglob("*.txt")} == stamps


def test_save_cls_writes_sigmoids_in_multi_label_mode(cli, data_dir, cls_checkpoint, tmp_path, capsys):
    """One checkpoint, both label modes: the same logits, read through a softmax or independent sigmoids."""
    probs = {}
    for mode in ("single", "multi"):
        save_dir = tmp_path / mode
        argv = ["hiptrack_cls", "hiptrack_cls_tiny", "--dataset", "synthetic_test", "--save_dir", str(save_dir),
                "--checkpoint", str(cls_checkpoint), "--dataset_dir", f"synthetic={data_dir}", "--save_cls",
                "--device", "cpu", "--sequence", "2-Boat", "--opts", f"MODEL.CLS_HEAD.MODE={mode}"]
        assert cli.main(argv) == 0
        ids, probs[mode] = read_challenges(sequence_files(out_dir(save_dir), "2-Boat", "got10k").challenges)
        assert ids.shape == (FRAMES,) and ids[0] == -1 and np.isnan(probs[mode][0]).all()
        np.testing.assert_array_equal(ids[1:], probs[mode][1:].argmax(axis=1))  # every class's probability written
    capsys.readouterr()
    sigmoids = probs["multi"][1:]
    assert sigmoids.shape == (FRAMES - 1, 10) and ((sigmoids > 0) & (sigmoids < 1)).all()
    assert np.abs(sigmoids.sum(axis=1) - 1).max() > 0.1  # independent per class: rows need not sum to 1
    # the logits behind the sigmoids, through a softmax, are the single-label mode's probabilities
    logits = np.log(sigmoids) - np.log1p(-sigmoids)
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.testing.assert_allclose(softmax / softmax.sum(axis=1, keepdims=True), probs["single"][1:], atol=1e-3)


def test_worker_processes(cli, data_dir, cls_checkpoint, tmp_path, capsys):
    save_dir = tmp_path / "output"
    argv = ["hiptrack_cls", "hiptrack_cls_tiny", "--dataset", "synthetic_test", "--save_dir", str(save_dir),
            "--checkpoint", str(cls_checkpoint), "--dataset_dir", f"synthetic={data_dir}", "--threads", "2"]
    assert cli.main(argv) == 0
    assert "2 sequences done" in capsys.readouterr().out
    for name in SEQUENCES:
        check_sequence_results(out_dir(save_dir), data_dir, name, save_cls=False)


def test_one_sequence_and_unknown_sequence(cli, data_dir, cls_checkpoint, tmp_path, capsys):
    save_dir = tmp_path / "output"
    argv = ["hiptrack_cls", "hiptrack_cls_tiny", "--dataset", "synthetic_test", "--save_dir", str(save_dir),
            "--checkpoint", str(cls_checkpoint), "--dataset_dir", f"synthetic={data_dir}"]
    assert cli.main(argv + ["--sequence", "4-USV"]) == 0
    assert "1 sequences done, 0 skipped, 0 failed" in capsys.readouterr().out
    check_sequence_results(out_dir(save_dir), data_dir, "4-USV", save_cls=False)
    assert not (out_dir(save_dir) / "2-Boat").exists()
    assert cli.main(argv + ["--sequence", "9-Nothing"]) == 2
    line = one_error_line(capsys)
    assert "9-Nothing" in line and "2-Boat" in line


def test_failing_sequence_is_listed_and_the_others_complete(cli, data_dir, cls_checkpoint, tmp_path, capsys, caplog):
    broken = tmp_path / "data"
    shutil.copytree(data_dir, broken)
    (broken / "test" / "4-USV" / "00000005.jpg").write_bytes(b"not a jpeg")
    save_dir = tmp_path / "output"
    argv = ["hiptrack_cls", "hiptrack_cls_tiny", "--dataset", "synthetic_test", "--save_dir", str(save_dir),
            "--checkpoint", str(cls_checkpoint), "--dataset_dir", f"synthetic={broken}"]
    with caplog.at_level(logging.ERROR):
        assert cli.main(argv) == 1
    assert "1 sequences done, 0 skipped, 1 failed" in capsys.readouterr().out
    assert "4-USV" in caplog.text and "00000005.jpg" in caplog.text
    check_sequence_results(out_dir(save_dir), broken, "2-Boat", save_cls=False)
    assert not (out_dir(save_dir) / "4-USV").exists()


def test_got10k_test_writes_the_server_zip(cli, data_dir, cls_checkpoint, tmp_path):
    got10k = tmp_path / "got10k"
    shutil.copytree(data_dir / "test", got10k / "test")
    for name in SEQUENCES:  # GOT-10k test publishes the first box only
        gt = got10k / "test" / name / "groundtruth.txt"
        gt.write_text(gt.read_text().splitlines()[0] + "\n")
    save_dir = tmp_path / "output"
    argv = ["hiptrack_cls", "hiptrack_cls_tiny", "--dataset", "got10k_test", "--save_dir", str(save_dir),
            "--checkpoint", str(cls_checkpoint), "--dataset_dir", f"got10k={got10k}"]
    assert cli.main(argv) == 0
    directory = out_dir(save_dir, "got10k_test")
    archive = directory.with_name("got10k_test.zip")
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == sorted(f"{s}/{s}_{kind}.txt" for s in SEQUENCES for kind in ("001", "time"))
        assert z.read("2-Boat/2-Boat_001.txt") == (directory / "2-Boat" / "2-Boat_001.txt").read_bytes()


def one_error_line(capsys) -> str:
    """The one ``error:`` line on stderr; no traceback."""
    err = capsys.readouterr().err
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err
    return line


def test_missing_checkpoint_names_path_and_flags(cli, data_dir, tmp_path, capsys):
    assert cli.main(["hiptrack_cls", "hiptrack_cls_tiny", "--dataset", "synthetic_test", "--save_dir", str(tmp_path),
                     "--epoch", "7", "--dataset_dir", f"synthetic={data_dir}"]) == 2
    message = one_error_line(capsys)
    assert "HIPTrack_ep0007.pth.tar" in message and "--checkpoint" in message and "--epoch" in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error(cli, data_dir, cls_checkpoint, tmp_path, capsys):
    assert cli.main(["hiptrack_cls", "hiptrack_cls_tiny", "--dataset", "synthetic_test", "--save_dir", str(tmp_path),
                     "--checkpoint", str(cls_checkpoint), "--dataset_dir", f"synthetic={data_dir}",
                     "--device", "cuda"]) == 2
    assert "--device cpu" in one_error_line(capsys)


def test_cls_checkpoint_with_plain_tracker_suggests_the_fix(cli, data_dir, cls_checkpoint, tmp_path, capsys):
    assert cli.main(["hiptrack", "hiptrack_tiny", "--dataset", "synthetic_test", "--save_dir", str(tmp_path),
                     "--checkpoint", str(cls_checkpoint), "--dataset_dir", f"synthetic={data_dir}"]) == 2
    message = one_error_line(capsys)
    assert "hiptrack_cls" in message and "convert_cls_to_tracking.py" in message
    assert not any(tmp_path.rglob("*.txt"))


def moving_square(frames: int = 8, size: int = 160, side: int = 24):
    rng = np.random.default_rng(0)
    images = []
    for t in range(frames):
        img = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
        img[30 + 4 * t:54 + 4 * t, 20 + 6 * t:44 + 6 * t] = (230, 200, 40)
        images.append(img)
    return images, [20, 30, side, side]


def test_cls_tracker_runs_the_head_only_for_challenge_predictions():
    cfg = load_config(resolve_experiment_config("hiptrack_cls_tiny"))
    torch.manual_seed(0)
    network = build_model(cfg, training=False)
    runs = []
    network.cls_head.projection.register_forward_hook(lambda *a: runs.append(1))
    images, box = moving_square()
    results = {}
    for predict in (False, True):
        tracker = HIPTrackCLSTracker(network, cfg, predict_challenges=predict)
        tracker.initialize(images[0], {"init_bbox": box})
        results[predict] = [tracker.track(img) for img in images[1:]]
        if not predict:
            assert not runs and all(set(r) == {"target_bbox"} for r in results[False])
    assert len(runs) == len(images) - 1
    for plain, with_cls in zip(results[False], results[True]):
        assert plain["target_bbox"] == with_cls["target_bbox"]
        probs = np.asarray(with_cls["cls_probs"])
        assert probs.shape == (10,) and probs.sum() == pytest.approx(1.0, abs=1e-5)
        assert with_cls["cls_id"] == int(probs.argmax())

    # two trackers on one network: each call uses its own tracker's setting
    off, on = (HIPTrackCLSTracker(network, cfg, predict_challenges=p) for p in (False, True))
    for tracker in (off, on):
        tracker.initialize(images[0], {"init_bbox": box})
    assert "cls_id" in on.track(images[1]) and "cls_id" not in off.track(images[1])


def test_tracker_table_and_config_checks():
    assert set(TRACKERS) == {"hiptrack", "hiptrack_cls"}
    plain_cfg = load_config(resolve_experiment_config("hiptrack_tiny"))
    with pytest.raises(ValueError, match="CLS_HEAD.ENABLED True"):
        TRACKERS["hiptrack_cls"].from_checkpoint(plain_cfg, "unused.pth")
    with pytest.raises(ValueError, match="hiptrack_cls"):
        TRACKERS["hiptrack"].from_checkpoint(plain_cfg, "unused.pth", save_cls=True)
    cls_cfg = load_config(resolve_experiment_config("hiptrack_cls_tiny"))
    with pytest.raises(ValueError, match="hiptrack_cls tracker.*convert_cls_to_tracking.py"):
        TRACKERS["hiptrack"].from_checkpoint(cls_cfg, "unused.pth")


# ---------------------------------------------------------------------- errors, provenance, progress
def base_argv(save_dir: Path, data_dir: Path, *extra: str) -> list[str]:
    return ["hiptrack_cls", "hiptrack_cls_tiny", "--dataset", "synthetic_test", "--save_dir", str(save_dir),
            "--dataset_dir", f"synthetic={data_dir}", "--device", "cpu", *extra]


@pytest.mark.parametrize("case", ["missing_config", "invalid_yaml", "unknown_key", "bad_value"])
def test_config_mistakes_exit_2_with_one_error_line(cli, data_dir, cls_checkpoint, tmp_path, capsys, case):
    argv = base_argv(tmp_path, data_dir, "--checkpoint", str(cls_checkpoint))
    if case == "missing_config":
        argv[1] = str(tmp_path / "nowhere.yaml")
    elif case == "invalid_yaml":
        argv[1] = str(tmp_path / "broken.yaml")
        (tmp_path / "broken.yaml").write_text("MODEL: [unclosed\n")
    opts = {"unknown_key": ["MODEL.FOO=1", "TEST.EPOH=3"], "bad_value": ["TRAIN.LR=abc"]}.get(case)
    argv += ["--opts", *opts] if opts else []
    assert cli.main(argv) == 2
    line = one_error_line(capsys)
    expected = {"missing_config": "nowhere.yaml' does not exist", "invalid_yaml": "broken.yaml' is not valid YAML",
                "unknown_key": "2 config errors:", "bad_value": "key 'TRAIN.LR': expected float, got str 'abc'"}[case]
    assert expected in line
    assert not (tmp_path / "test").exists()


def test_debug_shows_the_traceback(cli, data_dir, cls_checkpoint, tmp_path, capsys):
    argv = base_argv(tmp_path, data_dir, "--checkpoint", str(cls_checkpoint), "--debug", "--opts", "TRAIN.LR=abc")
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.rstrip().splitlines()[-1].startswith("error: ")


def test_results_record_their_checkpoint_and_another_one_is_refused(cli, data_dir, cls_checkpoint, tmp_path,
                                                                     capsys, caplog):
    import hashlib
    import json
    save_dir = tmp_path / "output"
    with caplog.at_level(logging.INFO):
        assert cli.main(base_argv(save_dir, data_dir, "--checkpoint", str(cls_checkpoint), "--sequence", "2-Boat")) == 0
    # the header shows the epoch stored in the file (2), not TEST.EPOCH
    assert re.search(r"hiptrack_cls / hiptrack_cls_tiny \(epoch 2, .*HIPTrack_ep0002\.pth\.tar\) on synthetic_test",
                     caplog.text)
    directory = out_dir(save_dir)
    record = json.loads((directory / "checkpoint.json").read_text())
    assert record == {"path": str(cls_checkpoint.absolute()), "epoch": 2,
                      "sha256": hashlib.sha256(cls_checkpoint.read_bytes()).hexdigest()}

    other = tmp_path / "other.pth.tar"
    payload = torch.load(cls_checkpoint, weights_only=True)
    payload["epoch"] = 5
    save_checkpoint(payload, other)
    stamps = {p: p.stat().st_mtime_ns for p in directory.rglob("*")}
    capsys.readouterr()
    assert cli.main(base_argv(save_dir, data_dir, "--checkpoint", str(other))) == 2
    line = one_error_line(capsys)
    assert f"{directory} holds results of another checkpoint, {cls_checkpoint.absolute()} (epoch 2" in line
    assert f"not of {other.absolute()} (epoch 5" in line and "--overwrite" in line
    assert {p: p.stat().st_mtime_ns for p in directory.rglob("*")} == stamps  # nothing mixed in, nothing changed

    # the same bytes elsewhere are the same checkpoint: the run resumes
    same = tmp_path / "copy.pth.tar"
    shutil.copy(cls_checkpoint, same)
    assert cli.main(base_argv(save_dir, data_dir, "--checkpoint", str(same))) == 0
    assert "1 sequences done, 1 skipped, 0 failed" in capsys.readouterr().out

    # --overwrite clears the folder only once the setup is through: a mistake keeps the old results
    stamps = {p: p.stat().st_mtime_ns for p in directory.rglob("*")}
    assert cli.main(base_argv(save_dir, data_dir, "--checkpoint", str(other), "--overwrite", "--sequence", "9-No")) == 2
    assert "9-No" in one_error_line(capsys)
    assert {p: p.stat().st_mtime_ns for p in directory.rglob("*")} == stamps
    # then every sequence is tracked with the new checkpoint
    assert cli.main(base_argv(save_dir, data_dir, "--checkpoint", str(other), "--overwrite")) == 0
    assert "2 sequences done, 0 skipped, 0 failed" in capsys.readouterr().out
    assert json.loads((directory / "checkpoint.json").read_text())["epoch"] == 5
    for name in SEQUENCES:
        check_sequence_results(directory, data_dir, name, save_cls=False)


def test_results_without_a_record_are_refused_unless_overwrite(cli, data_dir, cls_checkpoint, tmp_path, capsys):
    directory = out_dir(tmp_path)
    (directory / "2-Boat").mkdir(parents=True)
    (directory / "2-Boat" / "2-Boat_001.txt").write_text("1,2,3,4\n")  # from an older version or other code
    argv = base_argv(tmp_path, data_dir, "--checkpoint", str(cls_checkpoint), "--sequence", "2-Boat")
    assert cli.main(argv) == 2
    assert "without a readable checkpoint record" in one_error_line(capsys)
    assert cli.main(argv + ["--overwrite"]) == 0
    check_sequence_results(directory, data_dir, "2-Boat", save_cls=False)


def test_header_shows_the_epoch_read_from_the_default_checkpoint(cli, data_dir, cls_checkpoint, tmp_path, caplog):
    default = tmp_path / "checkpoints" / "train" / "hiptrack" / "hiptrack_cls_tiny" / "HIPTrack_ep0007.pth.tar"
    default.parent.mkdir(parents=True)
    shutil.copy(cls_checkpoint, default)  # stores epoch 2
    with caplog.at_level(logging.INFO):
        assert cli.main(base_argv(tmp_path, data_dir, "--epoch", "7", "--sequence", "2-Boat")) == 0
    assert "(epoch 2, " in caplog.text and "(epoch 7, " not in caplog.text
    assert f"{default.absolute()} holds epoch 2, not the requested 7" in caplog.text


@pytest.fixture(scope="module")
def long_data_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("long") / "data"
    generate_dataset(out, sequences=4, frames=45, seed=0, test_fraction=0.5, size=(160, 120))
    return out


def test_progress_lines_within_a_long_sequence(cli, long_data_dir, cls_checkpoint, tmp_path, caplog):
    argv = base_argv(tmp_path, long_data_dir, "--checkpoint", str(cls_checkpoint), "--sequence", "2-Boat",
                     "--progress_every", "10")
    with caplog.at_level(logging.INFO):
        assert cli.main(argv) == 0
    lines = re.findall(r"2-Boat: frame (\d+)/45, [\d.]+ frames/s, ETA \d+s", caplog.text)
    assert [int(n) for n in lines] == [10, 20, 30, 40]


def test_progress_lines_from_worker_processes(long_data_dir, cls_checkpoint, tmp_path):
    # a child process: the workers write to the stderr of the process that started them (this pytest
    # process may have started its forkserver in another test, under another capture)
    argv = base_argv(tmp_path, long_data_dir, "--checkpoint", str(cls_checkpoint), "--threads", "2",
                     "--progress_every", "20")
    result = subprocess.run([sys.executable, str(TEST_PY), *argv], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    err = result.stderr
    for name in SEQUENCES:  # each worker logs its own sequence's lines
        assert re.search(rf"\[worker \d+\]: {name}: frame 20/45, [\d.]+ frames/s, ETA", err), err[-2000:]
        assert re.search(rf"\[worker \d+\]: {name}: frame 40/45", err)


def test_frame_progress_by_time_and_as_a_bar(monkeypatch, caplog):
    from lib.test.evaluation import runner
    monkeypatch.setattr(runner, "PROGRESS_SECONDS", 0.0)  # a line on every frame: the time rule alone
    progress = runner.FrameProgress("seq", total=4, every=1000)
    with caplog.at_level(logging.INFO):
        for done in range(1, 5):
            progress.update(done)
    assert re.findall(r"seq: frame (\d)/4", caplog.text) == ["1", "2", "3"]  # the last frame: no line
    bar = runner.FrameProgress("seq", total=4, every=500, bar=True)
    bar.update(3)
    assert bar.bar is not None and bar.bar.n == 3
    bar.close()
    assert runner.FrameProgress("seq", total=4, every=0, bar=True).bar is None  # 0: silent
    assert [runner.format_duration(s) for s in (12.2, 405, 3725)] == ["12s", "6m45s", "1h02m"]
