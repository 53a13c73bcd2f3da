"""The ablation pipeline (lib.pipeline.ablation, tracking/ablation.py) and tracking/quickstart.py.

Unit tests score hand-written result files and format the tables; one end-to-end test runs
tracking/quickstart.py as a user would, at a budget of two training steps per variant.
"""
from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import load_script
from lib.pipeline import ablation
from lib.pipeline.ablation import AblationSettings, VariantResult
from lib.test.analysis.ablation_report import format_challenge_table, format_overall_table, format_summary
from lib.test.analysis.challenges import challenge_accuracy, challenge_labels
from lib.synthetic import generate_dataset
from lib.test.analysis import evaluate_results
from lib.test.evaluation.results import results_dir, sequence_files, write_boxes, write_challenges
from lib.dataset.paths import DatasetPaths
from lib.dataset.registry import build_dataset
from lib.challenges import CLASS_NAMES, IGNORE_INDEX
from lib.utils.cli import parse_with_renamed_flags
from lib.utils.records import append_jsonl
from lib.utils.runs import read_metrics

REPO = Path(__file__).resolve().parents[1]
ABLATION_PY = REPO / "tracking" / "ablation.py"
QUICKSTART_PY = REPO / "tracking" / "quickstart.py"
NORMAL, OCCLUSION, MOTION_BLUR = 9, 0, 3
# two training steps of batch 2, one epoch: the pipeline, not the model, is under test
TINY_BUDGET = ["TRAIN.EPOCH=1", "TEST.EPOCH=1", "DATA.TRAIN.SAMPLE_PER_EPOCH=4", "TRAIN.BATCH_SIZE=2",
               "TRAIN.LR_DROP_EPOCH=1"]
SMALL_CROPS = ["DATA.SEARCH.SIZE=64", "DATA.TEMPLATE.SIZE=32", "TEST.SEARCH_SIZE=64", "TEST.TEMPLATE_SIZE=32"]
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # the machine is shared: one intra-op thread


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """4 generated sequences of 20 frames, 2 of them in the test split, with challenge labels."""
    root = tmp_path_factory.mktemp("ablation_data")
    generate_dataset(root, sequences=4, frames=20, seed=0, test_fraction=0.5)
    return root


@pytest.fixture(scope="module")
def ground_truth(data_dir):
    paths = DatasetPaths.from_env([f"synthetic={data_dir}"])
    return build_dataset("SYNTHETIC_test", paths, cls_ann_dir=data_dir / "cls_annotations", label_seed=42)


def variant_result(name: str, scores: dict, challenge: dict | None = None, train_seconds: float | None = 90.0,
                   skipped: bool = False) -> VariantResult:
    tracker = "hiptrack" if name == "baseline" else "hiptrack_cls"
    return VariantResult(name, tracker, "", "ckpt", "results", "log", train_seconds, skipped, 1.0, scores, challenge)


# ----------------------------------------------------------------------------- challenge accuracy

def write_predictions(directory: Path, sequence: str, class_ids: list[int]) -> None:
    probs = np.full((len(class_ids), len(CLASS_NAMES)), 0.1)
    write_challenges(sequence_files(directory, sequence, "got10k").challenges, class_ids, probs)


def test_challenge_accuracy_by_hand(tmp_path):
    """Frame 1 (template), unlabelled frames and frames without a prediction are not counted."""
    labels = {"a": np.array([NORMAL, NORMAL, OCCLUSION, OCCLUSION, IGNORE_INDEX, MOTION_BLUR]),
              "b": np.array([OCCLUSION, NORMAL, NORMAL, NORMAL])}
    write_predictions(tmp_path, "a", [-1, NORMAL, OCCLUSION, MOTION_BLUR, 5, MOTION_BLUR])  # 3 of 4 right
    write_predictions(tmp_path, "b", [-1, NORMAL, OCCLUSION, -1])                           # 1 of 2 right
    result = challenge_accuracy(tmp_path, "got10k", labels)
    assert result["frames"] == 6
    assert result["accuracy"] == 4 / 6
    assert result["majority"] == 3 / 6 and result["majority_class"] == "Normal"
    assert result["per_class"] == {"Occlusion": 1 / 2, "Motion Blur": 1.0, "Normal": 2 / 3}


def test_challenge_accuracy_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no challenge predictions for a.*--save_cls"):
        challenge_accuracy(tmp_path, "got10k", {"a": np.array([NORMAL, NORMAL])})
    write_predictions(tmp_path, "a", [-1, NORMAL, NORMAL])
    with pytest.raises(ValueError, match="3 lines for 2 frames"):
        challenge_accuracy(tmp_path, "got10k", {"a": np.array([NORMAL, NORMAL])})


def test_always_majority_scores_the_majority_baseline(ground_truth, tmp_path):
    labels = challenge_labels(ground_truth)
    assert set(labels) == {"2-Boat", "4-USV"} and all(len(v) == 20 for v in labels.values())
    scored = np.concatenate([v[1:] for v in labels.values()])
    majority = int(np.bincount(scored).argmax())
    for name, seq_labels in labels.items():
        write_predictions(tmp_path, name, [-1] + [majority] * (len(seq_labels) - 1))
    result = challenge_accuracy(tmp_path, "got10k", labels)
    assert result["frames"] == 38 and result["accuracy"] == result["majority"]
    assert result["majority_class"] == CLASS_NAMES[majority]


# ----------------------------------------------------------------------------- tables

BASELINE = {"ao": 0.5, "sr50": 0.6, "sr75": 0.25, "auc": 0.4567, "fps": 30.04,
            "per_challenge": {"Occlusion": {"ao": 0.4, "frames": 10}, "Normal": {"ao": 0.6, "frames": 20}}}
MULTITASK = {"ao": 0.5512, "sr50": 0.625, "sr75": 0.3, "auc": 0.5, "fps": float("nan"),
             "per_challenge": {"Occlusion": {"ao": 0.45, "frames": 10}, "Normal": {"ao": 0.58, "frames": 20}}}


def test_overall_table_exact():
    variants = {"baseline": variant_result("baseline", BASELINE),
                "multitask": variant_result("multitask", MULTITASK, {"accuracy": 0.7, "majority": 0.4125}, 150.0,
                                            skipped=True)}
    assert format_overall_table(variants) == "\n".join([
        "Variant       AO  SR0.5  SR0.75    AUC   FPS  ClsAcc  Majority  Train min",
        "---------  -----  -----  ------  -----  ----  ------  --------  ---------",
        "baseline   0.500  0.600   0.250  0.457  30.0       -         -        1.5",
        "multitask  0.551  0.625   0.300  0.500     -   0.700     0.412       2.5*",
    ])


def test_challenge_table_and_summary_exact():
    variants = {"baseline": variant_result("baseline", BASELINE),
                "multitask": variant_result("multitask", MULTITASK, {"accuracy": 0.7, "majority": 0.4125}),
                "fusion": variant_result("fusion", {**MULTITASK, "ao": 0.49,
                                                    "per_challenge": {"Normal": {"ao": 0.7, "frames": 20}}})}
    assert format_challenge_table(variants) == "\n".join([
        "Challenge  Frames  baseline AO  multitask AO  fusion AO  Δ multitask  Δ fusion",
        "---------  ------  -----------  ------------  ---------  -----------  --------",
        "Occlusion      10        0.400         0.450          -       +0.050         -",
        "Normal         20        0.600         0.580      0.700       -0.020    +0.100",
    ])
    assert format_summary(variants) == [
        "auxiliary task: AO 0.551 vs baseline 0.500 (Δ +0.051); challenge accuracy 0.700 vs majority-class 0.412",
        "fusion: AO 0.490 vs baseline 0.500 (Δ -0.010); challenge accuracy - (no challenge labels)",
    ]


def test_tables_of_scored_result_files(ground_truth, tmp_path):
    """Result files written by hand, scored by lib.test.analysis: exact boxes give AO 1, boxes of
    5/8 of the width (inside the target) AO 0.625 on every challenge and AUC (20 + 19 * 13) / 420
    (frame 1 is the ground truth: IoU 1 beats 20 of the 21 thresholds, 0.625 beats 13)."""
    scores = {}
    for name, width in (("baseline", 0.625), ("multitask", 1.0)):
        for i in range(len(ground_truth)):
            boxes = ground_truth.sequence_info(i).bbox.numpy().astype(np.float64)
            boxes[:, 2] *= width
            write_boxes(sequence_files(tmp_path / name, ground_truth.sequence_name(i), "got10k").boxes, boxes)
        scores[name] = evaluate_results(tmp_path / name, ground_truth, "got10k")
    variants = {n: variant_result(n, s, train_seconds=None) for n, s in scores.items()}
    overall = format_overall_table(variants).splitlines()
    assert overall[2].split() == ["baseline", "0.625", "1.000", "0.000", "0.636", "-", "-", "-", "-"]
    assert overall[3].split()[:4] == ["multitask", "1.000", "1.000", "1.000"]
    rows = {line[:19].strip(): line[19:].split() for line in format_challenge_table(variants).splitlines()[2:]}
    assert rows == {"Motion Blur": ["8", "0.625", "1.000", "+0.375"],
                    "Low Resolution": ["4", "0.625", "1.000", "+0.375"],
                    "Low Contrast Object": ["8", "0.625", "1.000", "+0.375"],
                    "Normal": ["18", "0.625", "1.000", "+0.375"]}


def test_json_is_strict_and_plots_are_png(ground_truth, tmp_path):
    write_boxes(sequence_files(tmp_path / "r", "2-Boat", "got10k").boxes, ground_truth.sequence_info(0).bbox.numpy())
    write_boxes(sequence_files(tmp_path / "r", "4-USV", "got10k").boxes, ground_truth.sequence_info(1).bbox.numpy())
    scores = evaluate_results(tmp_path / "r", ground_truth, "got10k")  # no time files: fps is nan
    result = ablation.AblationResult({"test_dataset": "synthetic_test"},
                                     {42: {"baseline": variant_result("baseline", scores),
                                           "multitask": variant_result("multitask", scores)}})
    plots = ablation.write_plots(result, tmp_path / "plots")
    assert [p.name for p in plots] == ["success_plot.png", "per_challenge_ao.png", "differences.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)
    path = ablation.write_json(result, tmp_path / "ablation.json")
    data = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert data["runs"]["42"]["baseline"]["scores"]["fps"] is None
    assert data["comparisons"]["multitask"]["overall"]["ao"]["estimate"] == 0.0
    assert data["summary"]["baseline"]["ao"]["seeds"] == 1


# ----------------------------------------------------------------------------- resuming

def settings_for(tmp_path: Path, data_dir: Path, **kwargs) -> AblationSettings:
    kwargs.setdefault("opts", ("TRAIN.EPOCH=3", "TEST.EPOCH=3"))
    return AblationSettings(config="hiptrack_cls_quickstart", train_dataset_opts=(), test_dataset="synthetic_test",
                            out_dir=tmp_path, path_args=("--dataset_dir", f"synthetic={data_dir}"), **kwargs)


@pytest.fixture
def recorded_runs(monkeypatch):
    """Replace the child processes by a record of their command lines."""
    calls = []
    monkeypatch.setattr(ablation, "_run", lambda cmd, what, log_file, env=None: calls.append((what, cmd)) or 12.0)
    return calls


def checkpoint(settings: AblationSettings, variant: str, epoch: int) -> Path:
    path = ablation.RunPaths(settings.out_dir / variant, "hiptrack_cls_quickstart").checkpoint(epoch)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def test_training_skipped_when_the_tested_checkpoint_exists(tmp_path, data_dir, recorded_runs, caplog):
    settings = settings_for(tmp_path, data_dir)
    variant = ablation.VARIANTS["multitask"]
    cfg = ablation.variant_config(settings, variant)
    log_file = tmp_path / "multitask" / "ablation.log"
    assert ablation._train(settings, variant, cfg, log_file) == (12.0, False)  # trained: time recorded
    checkpoint(settings, "multitask", 3)
    assert ablation._train(settings, variant, cfg, log_file) == (12.0, True)   # skipped: the earlier time
    assert [what for what, _ in recorded_runs] == ["multitask: training"]
    assert "multitask: training skipped" in log_file.read_text() and "--retrain" in log_file.read_text()
    other = settings_for(tmp_path, data_dir, epoch=2)  # another tested epoch is no training change
    ablation.variant_config(other, variant).dump_yaml(checkpoint(settings, "multitask", 3).parent / "config.yaml")
    with caplog.at_level(logging.WARNING, logger="lib.pipeline.ablation"):
        ablation._train(settings, variant, cfg, log_file)
    assert not caplog.records
    changed = settings_for(tmp_path, data_dir, opts=("TRAIN.EPOCH=3", "TEST.EPOCH=3", "TRAIN.LR=0.5"))
    with caplog.at_level(logging.WARNING, logger="lib.pipeline.ablation"):
        ablation._train(changed, variant, ablation.variant_config(changed, variant), log_file)
    assert "different config (TRAIN.LR (0.001 -> 0.5))" in caplog.text
    retrain = settings_for(tmp_path, data_dir, retrain=True)
    assert ablation._train(retrain, variant, ablation.variant_config(retrain, variant), log_file)[1] is False
    cmd = recorded_runs[-1][1]
    assert "--resume" not in cmd and cmd.index("--overwrite") < cmd.index("--opts")  # the trainer would refuse


def test_interrupted_training_continues_and_stale_results_go(tmp_path, data_dir, recorded_runs):
    settings = settings_for(tmp_path, data_dir)
    variant = ablation.VARIANTS["baseline"]
    earlier = checkpoint(settings, "baseline", 2)
    stale = results_dir(tmp_path / "baseline", "hiptrack", "hiptrack_cls_quickstart", "synthetic_test")
    stale.mkdir(parents=True)
    ablation._train(settings, variant, ablation.variant_config(settings, variant), tmp_path / "baseline" / "log")
    cmd = recorded_runs[0][1]
    assert cmd[cmd.index("--resume") + 1] == str(earlier) and cmd.index("--resume") < cmd.index("--opts")
    assert not stale.exists()


# ----------------------------------------------------------------------------- trainings at once

def _configs(settings: AblationSettings, names: list[str]) -> tuple[list, dict]:
    chosen = ablation.select_variants(names)
    return chosen, {v.name: ablation.variant_config(settings, v) for v in chosen}


def test_trainings_run_at_once_with_their_share_of_the_cores(tmp_path, data_dir, monkeypatch):
    """Two at a time on 4 cores: each child is told 2 threads, and the two overlap (a barrier both must
    reach would time out if they ran one after the other)."""
    monkeypatch.setattr(ablation, "available_cores", lambda: 4)
    both_running = threading.Barrier(2, timeout=20)
    calls = []

    def child(cmd, what, log_file, env=None):
        calls.append((what, env["OMP_NUM_THREADS"], env["MKL_NUM_THREADS"]))
        both_running.wait()
        return 5.0

    monkeypatch.setattr(ablation, "_run", child)
    settings = settings_for(tmp_path, data_dir, seeds=(0, 1), jobs=2)
    chosen, configs = _configs(settings, ["baseline", "multitask", "multitask+damping"])
    done = ablation.train_variants(settings, chosen, configs)
    assert done == {(0, "baseline"): (5.0, False), (0, "multitask"): (5.0, False), (1, "baseline"): (5.0, False),
                    (1, "multitask"): (5.0, False)}  # the test-time variant trains nothing
    assert sorted(calls) == sorted((f"{v} (seed {s}): training", "2", "2") for s in (0, 1)
                                   for v in ("baseline", "multitask"))
    record = json.loads((tmp_path / "seed1" / "multitask" / "train_time.json").read_text())
    assert record == {"seconds": 5.0, "epoch": 3, "jobs": 2}
    assert "seed 1: training" in (tmp_path / "seed1" / "multitask" / "ablation.log").read_text()


def test_one_training_keeps_the_environment_and_its_label(tmp_path, data_dir, monkeypatch):
    envs = []
    monkeypatch.setattr(ablation, "_run", lambda cmd, what, log_file, env=None: envs.append((what, env)) or 1.0)
    settings = settings_for(tmp_path, data_dir, jobs=1)
    chosen, configs = _configs(settings, ["baseline"])
    assert ablation.train_variants(settings, chosen, configs) == {(42, "baseline"): (1.0, False)}
    assert envs == [("baseline: training", None)]  # torch's default threads (or the user's OMP_NUM_THREADS)


def test_a_skipped_training_of_several_seeds_names_its_seed(tmp_path, data_dir, recorded_runs):
    settings = settings_for(tmp_path, data_dir, seeds=(0, 1), jobs=1)
    checkpoint(replace(settings, out_dir=tmp_path / "seed1"), "baseline", 3)
    chosen, configs = _configs(settings, ["baseline"])
    done = ablation.train_variants(settings, chosen, configs)
    assert done == {(0, "baseline"): (12.0, False), (1, "baseline"): (None, True)}
    assert [what for what, _ in recorded_runs] == ["baseline (seed 0): training"]
    assert "baseline (seed 1): training skipped" in (tmp_path / "seed1" / "baseline" / "ablation.log").read_text()


def test_after_a_failed_training_no_other_starts(tmp_path, data_dir, monkeypatch):
    started = []

    def child(cmd, what, log_file, env=None):
        started.append(what)
        raise RuntimeError(f"{what} failed with exit code 1 (full output in {log_file})")

    monkeypatch.setattr(ablation, "_run", child)
    settings = settings_for(tmp_path, data_dir, seeds=(0, 1, 2), jobs=1)
    chosen, configs = _configs(settings, ["baseline"])
    with pytest.raises(RuntimeError, match=r"baseline \(seed 0\): training failed"):
        ablation.train_variants(settings, chosen, configs)
    assert started == ["baseline (seed 0): training"]


def test_how_many_trainings_run_at_once(tmp_path, data_dir, monkeypatch):
    monkeypatch.setattr(ablation, "available_cores", lambda: 2)
    auto = settings_for(tmp_path, data_dir)
    assert ablation.training_jobs(auto, pending=6) == 2 and ablation.training_jobs(auto, pending=1) == 1
    assert ablation.training_jobs(auto, pending=0) == 1
    assert ablation.training_jobs(replace(auto, device="cuda"), pending=6) == 1  # one GPU: one at a time
    assert ablation.training_jobs(replace(auto, device="gpu"), pending=6) == 1   # not a device: the child says so
    assert ablation.training_jobs(replace(auto, jobs=3), pending=6) == 3        # asked for: as asked
    assert ablation.training_jobs(replace(auto, jobs=3), pending=2) == 2
    assert ablation.child_threads(1) is None and ablation.child_threads(2) == 1 and ablation.child_threads(3) == 1


def test_cli_refuses_negative_jobs(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_script(QUICKSTART_PY).main(["--save_dir", str(tmp_path), "--jobs", "-1"])
    assert exit_info.value.code == 2 and "--jobs: must be >= 0, not -1" in capsys.readouterr().err


# ----------------------------------------------------------------------------- command-line errors

def test_variant_selection():
    assert [v.name for v in ablation.select_variants(None)] == ["baseline", "multitask", "fusion"]
    # a test-time variant brings the model it tests, trained variants run first
    assert [v.name for v in ablation.select_variants(["oracle+damping", "baseline"])] == [
        "multitask", "baseline", "oracle+damping"]
    with pytest.raises(ValueError, match="unknown variant.*'bogus'.*valid: baseline, multitask, fusion, film"):
        ablation.select_variants(["baseline", "bogus"])
    with pytest.raises(ValueError, match="each variant once"):
        ablation.select_variants(["baseline", "baseline"])


def ablation_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["--config", "hiptrack_cls_quickstart", "--train_dataset", "SYNTHETIC_train",
            "--test_dataset", "synthetic_test", "--save_dir", str(tmp_path / "out"), *extra]


def test_cli_bad_variant(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load_script(ABLATION_PY).main(ablation_args(tmp_path, "--variants", "baseline", "bogus"))
    assert exit_info.value.code == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err


def test_cli_missing_dataset_fails_before_training(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    code = load_script(ABLATION_PY).main(ablation_args(tmp_path, "--dataset_dir", f"synthetic={missing}"))
    err = capsys.readouterr().err
    assert code == 2 and f"dataset root {missing} does not exist" in err and "--dataset_dir synthetic=PATH" in err
    assert not (tmp_path / "out").exists()


def test_cli_unknown_train_dataset_and_labels(tmp_path, data_dir, capsys):
    cli = load_script(ABLATION_PY)
    args = ablation_args(tmp_path, "--dataset_dir", f"synthetic={data_dir}")
    args[args.index("SYNTHETIC_train")] = "SYNTHETIC_trian"
    assert cli.main(args) == 2 and "unknown dataset 'SYNTHETIC_trian'" in capsys.readouterr().err
    assert cli.main(ablation_args(tmp_path, "--cls_ann_dir", str(tmp_path / "no_labels"))) == 2
    assert "challenge label folder" in capsys.readouterr().err


def test_cli_failing_child_names_variant_step_and_log(tmp_path, data_dir, capsys):
    """A device that does not exist fails in the training child; the message points at its log."""
    code = load_script(ABLATION_PY).main(ablation_args(
        tmp_path, "--variants", "baseline", "--dataset_dir", f"synthetic={data_dir}", "--device", "cuda:99",
        "--opts", *TINY_BUDGET))
    err = capsys.readouterr().err
    log = tmp_path / "out" / "seed42" / "baseline" / "ablation.log"
    assert code == 1 and "baseline: training failed with exit code" in err and str(log) in err
    assert "cuda" in log.read_text()


# ----------------------------------------------------------------------------- quick start

def test_quickstart_reuses_or_refuses_the_dataset(tmp_path, monkeypatch):
    quickstart = load_script(QUICKSTART_PY)
    monkeypatch.setattr(quickstart, "QUICKSTART_SIZE", "160x120")
    assert quickstart.ensure_dataset(tmp_path, 2, 3, overwrite=False) is True
    assert quickstart.ensure_dataset(tmp_path, 2, 3, overwrite=False) is False
    with pytest.raises(quickstart.DatasetMismatchError, match="pass --overwrite"):
        quickstart.ensure_dataset(tmp_path, 2, 4, overwrite=False)
    assert quickstart.ensure_dataset(tmp_path, 2, 4, overwrite=True) is True
    assert len((tmp_path / "train" / "1-Ship" / "groundtruth.txt").read_text().splitlines()) == 4


def test_quickstart_end_to_end(tmp_path):
    """tracking/quickstart.py from another working directory, its default folders, two steps per variant,
    two seeds, a policy tuned on the validation split and its oracle."""
    variants = ["baseline", "multitask", "multitask+memory_gate", "oracle+memory_gate"]
    proc = subprocess.run([sys.executable, str(QUICKSTART_PY), "--sequences", "4", "--frames", "20",
                           "--device", "cpu", "--seeds", "1", "2", "--variants", *variants,
                           "--opts", *TINY_BUDGET, *SMALL_CROPS],
                          cwd=tmp_path, env={**os.environ, **ONE_THREAD}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out_dir, data_dir = tmp_path / "output" / "quickstart", tmp_path / "data" / "synthetic_quickstart"
    assert "plan: 2 seed(s) x (2 trainings" in proc.stderr  # the cost is printed before anything runs
    data = json.loads((out_dir / "ablation.json").read_text())
    assert list(data["runs"]) == ["1", "2"] and data["settings"]["seeds"] == [1, 2]
    test_sequences = (data_dir / "test" / "list.txt").read_text().split()
    for seed, run in data["runs"].items():
        assert list(run) == variants
        seed_dir = out_dir / f"seed{seed}"
        for name, variant in run.items():
            assert 0.0 <= variant["scores"]["ao"] <= 1.0 and math.isfinite(variant["scores"]["ao"])
            assert sorted(variant["scores"]["per_sequence"]) == sorted(test_sequences)  # for recomputing
            assert variant["seed"] == int(seed)
        for name in ("baseline", "multitask"):
            assert run[name]["train_seconds"] > 0 and run[name]["train_skipped"] is False
            [record] = read_metrics(ablation.RunPaths(seed_dir / name, "hiptrack_cls_quickstart").metrics_file)
            train_stats = {k: v for k, v in record["train"].items() if k != "confusion"}
            assert run[name]["train_metrics"] == {"epoch": 1, **train_stats}
        assert run["baseline"]["challenge"] is None and run["oracle+memory_gate"]["challenge"] is None
        challenge = run["multitask"]["challenge"]
        assert 0.0 <= challenge["accuracy"] <= 1.0 and 0.0 < challenge["majority"] <= 1.0
        assert challenge["smoothing"] in (0.0, 0.3, 0.5, 0.7, 0.9) and 0.0 <= challenge["smoothed_accuracy"] <= 1.0
        tuning = run["multitask+memory_gate"]["tuning"]
        assert tuning["key"] == "TEST.POLICY.MEMORY_GATE_THRESHOLD" and len(tuning["candidates"]) == 3
        assert tuning["candidates"][str(tuning["chosen"])] == max(tuning["candidates"].values())
        for name in ("multitask+memory_gate", "oracle+memory_gate"):  # tested on the multitask checkpoint
            assert run[name]["checkpoint"] == run["multitask"]["checkpoint"] and run[name]["train_seconds"] is None
            assert 0.0 <= run[name]["policy_activity"]["overall"] <= 1.0  # from the <seq>_policy.txt logs
        assert run["multitask"]["policy_activity"] is None
        for name, tracker in (("baseline", "hiptrack"), ("multitask", "hiptrack_cls")):
            results = results_dir(seed_dir / name, tracker, "hiptrack_cls_quickstart", "synthetic_test")
            for seq in test_sequences:
                files = sequence_files(results, seq, "got10k")
                assert files.boxes.is_file() and files.times.is_file()
                assert files.challenges.is_file() == (name == "multitask")
    summary, comparisons = data["summary"], data["comparisons"]
    assert summary["multitask"]["ao"]["seeds"] == 2 and summary["multitask"]["ao"]["std"] is not None
    ci = comparisons["multitask"]["overall"]["ao"]
    # at this budget every replicate may give the same difference: then low == estimate == high up to the
    # rounding of the summation order
    assert ci["low"] <= ci["high"] and ci["low"] - 1e-12 <= ci["estimate"] <= ci["high"] + 1e-12
    assert ci["seeds"] == 2 and ci["sequences"] == len(test_sequences)
    assert set(comparisons) == set(variants) - {"baseline"}
    for plot in ("success_plot.png", "per_challenge_ao.png", "differences.png"):
        assert (out_dir / "plots" / plot).read_bytes()[:4] == b"\x89PNG"
    assert "Over 2 seed(s) (1, 2): mean ± std" in proc.stdout and "ΔAO [95% CI]" in proc.stdout
    assert "Per challenge (AO difference" in proc.stdout


def test_children_run_the_entry_points_as_modules(tmp_path, data_dir):
    settings = settings_for(tmp_path, data_dir)
    train = ablation.train_command(settings, ablation.VARIANTS["baseline"])
    test = ablation.test_command(settings, ablation.VARIANTS["multitask"])
    assert train[:3] == [sys.executable, "-m", "lib.train.run"] and train[3:5] == ["--script", "hiptrack"]
    assert test[:5] == [sys.executable, "-m", "lib.test.run", "hiptrack_cls", "hiptrack_cls_quickstart"]
    assert "--save_cls" in test and not any(arg.endswith(".py") for arg in train + test)


def epoch_record(epoch: int, **train) -> dict:
    return {"epoch": epoch, "stage": 0, "seconds": 1.5, "train": {"Loss/giou": 0.5, **train, "confusion": [[1]]}}


def test_progress_line_of_a_metrics_record():
    record = epoch_record(30, **{"Loss/total": 3.37944, "IoU": 0.65091, "Accuracy": 0.48})
    assert ablation.progress_line(record) == "epoch 30: Loss/total 3.3794, IoU 0.6509, Accuracy 0.4800"
    # NaN is written as null; like the trainer's log line, the echo leaves it out (and absent stats)
    assert ablation.progress_line(epoch_record(2, **{"Loss/total": None, "IoU": 0.1})) == "epoch 2: IoU 0.1000"


def test_progress_is_echoed_from_metrics_jsonl_while_the_child_runs(tmp_path, monkeypatch, caplog):
    """Records appear while the block runs (the child); each new epoch is logged once, stale
    epochs up to ``after_epoch`` are not, and the last record is caught after the child ends."""
    monkeypatch.setattr(ablation, "POLL_SECONDS", 0.02)
    path = tmp_path / "metrics.jsonl"
    append_jsonl(path, epoch_record(1, **{"Loss/total": 9.0}))  # before the resume point: not echoed
    with caplog.at_level(logging.INFO, logger="lib.pipeline.ablation"):
        with ablation.echo_epochs("multitask: training", path, after_epoch=1):
            for epoch in (2, 3):
                append_jsonl(path, epoch_record(epoch, **{"Loss/total": 10.0 - epoch, "IoU": 0.25}))
                deadline = time.monotonic() + 10
                while f"epoch {epoch}:" not in caplog.text and time.monotonic() < deadline:
                    time.sleep(0.01)  # the poller picks it up while the "child" still runs
                assert f"epoch {epoch}:" in caplog.text
            append_jsonl(path, epoch_record(4, **{"Loss/total": 5.5}))
    assert [r.getMessage() for r in caplog.records] == ["multitask: training: epoch 2: Loss/total 8.0000, IoU 0.2500",
                                                       "multitask: training: epoch 3: Loss/total 7.0000, IoU 0.2500",
                                                       "multitask: training: epoch 4: Loss/total 5.5000"]


def test_a_malformed_metrics_file_stops_the_echo_not_the_run(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(ablation, "POLL_SECONDS", 0.01)
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 1}\nnot json\n')
    with caplog.at_level(logging.INFO, logger="lib.pipeline.ablation"):
        with ablation.echo_epochs("baseline: training", path):
            time.sleep(0.1)
    assert [r.getMessage() for r in caplog.records] == [
        f"baseline: training: no more progress lines: {path}:2: not valid JSON (Expecting value, column 1)"]


def test_train_stats_are_the_tested_epochs_record(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    assert ablation.train_stats_of_epoch(path, 2) is None  # no file: a checkpoint from before metrics.jsonl
    for epoch in (1, 2, 3):
        append_jsonl(path, epoch_record(epoch, **{"Loss/total": float(epoch), "Accuracy": epoch / 4}))
    assert ablation.train_stats_of_epoch(path, 2) == {"epoch": 2, "Loss/giou": 0.5, "Loss/total": 2.0, "Accuracy": 0.5}
    assert ablation.train_stats_of_epoch(path, 4) is None
    path.write_text("{oops\n")
    with caplog.at_level(logging.WARNING, logger="lib.pipeline.ablation"):
        assert ablation.train_stats_of_epoch(path, 1) is None
    assert f"no training summary: {path}:1: not valid JSON" in caplog.text


def test_training_starts_with_the_records_it_continues_from(tmp_path, data_dir, recorded_runs):
    """Records of epochs the training child writes again are gone before it starts, so they are
    not echoed as progress (the trainer drops them too)."""
    settings = settings_for(tmp_path, data_dir)
    variant = ablation.VARIANTS["multitask"]
    metrics_file = ablation.RunPaths(tmp_path / "multitask", "hiptrack_cls_quickstart").metrics_file
    for epoch in (1, 2, 3):
        append_jsonl(metrics_file, epoch_record(epoch))
    checkpoint(settings, "multitask", 1)
    ablation._train(settings, variant, ablation.variant_config(settings, variant), tmp_path / "multitask" / "log")
    assert [r["epoch"] for r in read_metrics(metrics_file)] == [1]
    retrain = settings_for(tmp_path, data_dir, retrain=True)
    ablation._train(retrain, variant, ablation.variant_config(retrain, variant), tmp_path / "multitask" / "log")
    assert read_metrics(metrics_file) == []


def test_quickstart_and_ablation_accept_the_old_output_flags():
    quickstart = load_script(QUICKSTART_PY)
    args = parse_with_renamed_flags(quickstart.build_parser(), ["--out_dir", "o", "--data_dir", "d"],
                                    quickstart.RENAMED_FLAGS)
    assert (str(args.save_dir), str(args.synthetic_dir)) == ("o", "d")
    ablation_cli = load_script(REPO / "tracking" / "ablation.py")
    args = parse_with_renamed_flags(ablation_cli.build_parser(), ["--config", "c", "--test_dataset", "synthetic_test",
                                                                  "--out_dir", "o"], ablation_cli.RENAMED_FLAGS)
    assert str(args.save_dir) == "o"


def test_test_time_variants_test_their_models_checkpoint(tmp_path, data_dir):
    settings = settings_for(tmp_path, data_dir)
    gate, oracle = ablation.VARIANTS["multitask+memory_gate"], ablation.VARIANTS["oracle+memory_gate"]
    cmd = ablation.test_command(settings, gate)
    checkpoint = ablation.RunPaths(tmp_path / "multitask", "hiptrack_cls_quickstart").checkpoint(3)
    assert cmd[cmd.index("--checkpoint") + 1] == str(checkpoint)
    assert cmd[cmd.index("--save_dir") + 1] == str(tmp_path / "multitask+memory_gate") and "--save_cls" in cmd
    assert "TEST.POLICY.MEMORY_GATE=True" in cmd and "MODEL.CLS_HEAD.ENABLED=True" in cmd
    oracle_cmd = ablation.test_command(settings, oracle)
    assert "TEST.POLICY.SOURCE=oracle" in oracle_cmd and "--save_cls" not in oracle_cmd
    own = ablation.test_command(settings, ablation.VARIANTS["multitask"])
    assert own[own.index("--checkpoint") + 1] == str(checkpoint)


def test_the_threshold_is_chosen_on_the_validation_split(tmp_path, data_dir, recorded_runs, monkeypatch):
    settings = settings_for(tmp_path, data_dir, val_dataset="synthetic_val")
    variant = ablation.VARIANTS["multitask+damping"]
    val_ao = {"0.3": 0.40, "0.5": 0.61, "0.7": 0.61}  # a tie goes to the first candidate
    monkeypatch.setattr(ablation, "evaluate_results",
                        lambda folder, dataset, fmt: {"ao": val_ao[str(folder).split("THRESHOLD=")[1].split("/")[0]]})
    validation = ablation._Truth(None, "synthetic_val", None, None)
    chosen, tuning, folder = ablation._tune_on_validation(settings, variant, validation, tmp_path / "log")
    assert chosen == ("TEST.POLICY.DAMPING_THRESHOLD=0.5",) and tuning["chosen"] == 0.5
    assert tuning["candidates"] == {0.3: 0.40, 0.5: 0.61, 0.7: 0.61} and "THRESHOLD=0.5" in str(folder)
    datasets = [cmd[cmd.index("--dataset") + 1] for _, cmd in recorded_runs]
    assert datasets == ["synthetic_val"] * 3  # never the test split
    assert [cmd[-1] for _, cmd in recorded_runs] == [f"TEST.POLICY.DAMPING_THRESHOLD={v}" for v in (0.3, 0.5, 0.7)]


def test_plan_summary_counts_and_estimates(tmp_path, data_dir):
    settings = settings_for(tmp_path, data_dir, seeds=(0, 1, 2), val_dataset="synthetic_val")
    chosen = ablation.select_variants(["baseline", "multitask+damping"])
    configs = {v.name: ablation.variant_config(settings, v) for v in chosen}
    text = ablation.plan_summary(settings, chosen, configs)
    assert text.startswith("plan: 3 seed(s) x (2 trainings of multitask 1200 samples, baseline 1200 samples "
                           "+ 3 test runs + 4 validation runs)") and "recorded elsewhere" in text
    (tmp_path / "seed0" / "baseline").mkdir(parents=True)
    (tmp_path / "seed0" / "baseline" / "train_time.json").write_text('{"seconds": 600}')  # before "jobs" was kept
    one_at_a_time = replace(settings, jobs=1)
    assert "about 60 min of training at the pace of the 1 earlier training(s)" in ablation.plan_summary(
        one_at_a_time, chosen, configs)
    # two at a time: 6 trainings take 3 rounds, timed only by trainings that also ran two at a time
    two = replace(settings, jobs=2)
    text = ablation.plan_summary(two, chosen, configs)
    assert "6 trainings to run, 2 at a time" in text and "no earlier run here to time with 2" in text
    (tmp_path / "seed0" / "baseline" / "train_time.json").write_text('{"seconds": 800, "jobs": 2}')
    assert "about 40 min of training at the pace of the 1 earlier training(s)" in ablation.plan_summary(
        two, chosen, configs)
    checkpoint(replace(settings, out_dir=tmp_path / "seed0"), "baseline", 3)  # trained already: 5 to go
    assert "about 40 min" in ablation.plan_summary(two, chosen, configs)
    checkpoint(replace(settings, out_dir=tmp_path / "seed1"), "baseline", 3)  # 4 to go: 2 rounds
    assert "about 27 min" in ablation.plan_summary(two, chosen, configs)


def _per_sequence_scores(ao_by_sequence: dict[str, float], frames: int = 10) -> dict:
    per_sequence = {name: {"ao": ao, "sr50": ao, "sr75": 0.0, "frames": frames,
                           "per_challenge": {"Occlusion": {"ao": ao, "frames": frames}}}
                    for name, ao in ao_by_sequence.items()}
    mean = float(np.mean(list(ao_by_sequence.values())))
    return {"ao": mean, "sr50": mean, "sr75": 0.0, "per_sequence": per_sequence,
            "per_challenge": {"Occlusion": {"ao": mean, "frames": frames * len(ao_by_sequence)}}}


def test_seed_tables_by_hand():
    from lib.test.analysis.ablation_report import compare_to_reference, format_seeds_report, seed_summary
    runs = {seed: {"baseline": variant_result("baseline", _per_sequence_scores({"a": 0.5, "b": 0.3})),
                   "multitask": variant_result("multitask", _per_sequence_scores({"a": 0.5 + gain, "b": 0.3 + gain}),
                                               {"accuracy": acc, "majority": 0.4, "smoothed_accuracy": acc + 0.1})}
            for seed, gain, acc in ((0, 0.1, 0.6), (1, 0.3, 0.8))}
    summary = seed_summary(runs)
    assert summary["multitask"]["ao"].mean == pytest.approx(0.6) and summary["multitask"]["ao"].seeds == 2
    assert summary["multitask"]["accuracy"].std == pytest.approx(math.sqrt(0.02))
    assert summary["baseline"]["accuracy"].seeds == 0
    ci = compare_to_reference(runs, replicates=500)["multitask"]["overall"]["ao"]
    assert ci.estimate == pytest.approx(0.2) and ci.low == pytest.approx(0.2) and ci.significant  # a constant gain
    lines = "\n".join(format_seeds_report(runs, replicates=500))
    assert "multitask      2  0.600 ± 0.141" in lines and "0.700 ± 0.141" in lines  # AO, then ClsAcc
    assert "+0.200 [+0.200, +0.200] *" in lines and "Occlusion" in lines
    assert "One seed" not in lines


def test_policy_activity_by_hand(tmp_path):
    from lib.test.analysis.policy_activity import policy_activity
    from lib.test.evaluation.results import POLICY_LOG_COLUMNS
    rows = ["1,-,nan,nan,nan,nan",
            "2,skip,4.0,1.0,1.0,0.5",     # vetoed write: acted
            "3,write,4.0,1.0,1.0,0.5",    # a pending write done: no change
            "4,-,6.0,1.0,1.0,0.5",        # a grown search region: acted
            "5,-,4.0,2.0,0.5,0.5",        # damped: acted
            "6,-,4.0,1.0,1.0,0.5"]
    path = sequence_files(tmp_path, "a", "got10k").policy
    path.parent.mkdir(parents=True)
    path.write_text(",".join(POLICY_LOG_COLUMNS) + "\n" + "\n".join(rows) + "\n")
    labels = {"a": np.array([NORMAL, OCCLUSION, OCCLUSION, MOTION_BLUR, IGNORE_INDEX, NORMAL])}
    activity = policy_activity(tmp_path, "got10k", labels, search_factor=4.0)
    assert activity["frames"] == 5 and activity["overall"] == pytest.approx(3 / 5)
    assert activity["per_challenge"] == {"Occlusion": 0.5, "Motion Blur": 1.0, "Normal": 0.0}
    with pytest.raises(FileNotFoundError, match="no policy log for b"):
        policy_activity(tmp_path, "got10k", {"b": labels["a"]}, 4.0)


def test_a_variant_retested_after_retraining_is_not_refused(tmp_path, data_dir, recorded_runs):
    """Results of the previous checkpoint (recorded in checkpoint.json) are kept while the checkpoint is the
    same, and removed before the test command runs once it was trained again, which tracking/test.py
    would otherwise refuse."""
    import torch
    from lib.test.evaluation.provenance import CheckpointRecord, results_conflict, write_record
    from lib.utils.checkpoint import save_checkpoint
    settings = settings_for(tmp_path, data_dir)
    variant = ablation.VARIANTS["multitask+memory_gate"]
    model = ablation.model_checkpoint(settings, variant)
    save_checkpoint({"net": {"w": torch.zeros(2)}, "epoch": 3}, model)
    folder = ablation._results_of(settings, variant, settings.test_dataset)
    write_boxes(sequence_files(folder, "2-Boat", "got10k").boxes, [[1, 2, 3, 4]])
    write_record(folder, CheckpointRecord.of(model))
    log_file = tmp_path / variant.name / "ablation.log"
    ablation._test(settings, variant, "testing", log_file)
    assert sequence_files(folder, "2-Boat", "got10k").boxes.is_file()  # same checkpoint: reused

    save_checkpoint({"net": {"w": torch.ones(2)}, "epoch": 3}, model)  # trained again
    assert results_conflict(folder, CheckpointRecord.of(model)) is not None  # what test.py would refuse
    ablation._test(settings, variant, "testing", log_file)
    assert not folder.exists() and "holds results of another checkpoint" in log_file.read_text()
    assert [what for what, _ in recorded_runs] == ["testing", "testing"]


def test_seed_report_shows_each_seed_and_policies_against_their_checkpoint():
    """A pooled difference is shown with its per-seed values (sign flips are visible), and a test-time
    variant is compared with the variant whose checkpoint it runs, not only with the baseline."""
    from lib.test.analysis.ablation_report import compare_to_own_model, format_seeds_report, per_seed_differences
    runs = {seed: {"baseline": variant_result("baseline", _per_sequence_scores({"a": 0.5, "b": 0.3})),
                   "multitask": variant_result("multitask", _per_sequence_scores({"a": 0.5 + gain, "b": 0.3 + gain})),
                   "multitask+damping": variant_result(
                       "multitask+damping", _per_sequence_scores({"a": 0.55 + gain, "b": 0.35 + gain}))}
            for seed, gain in ((0, 0.1), (1, -0.2))}
    assert per_seed_differences(runs, "multitask", "baseline") == pytest.approx([0.1, -0.2])
    own = compare_to_own_model(runs, {"multitask+damping": "multitask", "oracle+damping": "multitask"}, replicates=300)
    assert list(own) == ["multitask+damping"]  # a variant that did not run is left out
    assert own["multitask+damping"]["overall"]["ao"].estimate == pytest.approx(0.05)
    assert own["multitask+damping"]["overall"]["ao"].significant
    lines = "\n".join(format_seeds_report(runs, replicates=300, models={"multitask+damping": "multitask"}))
    assert "+0.100 / -0.200" in lines  # multitask - baseline on seed 0, seed 1
    assert "against the checkpoint they run on" in lines and "+0.050 / +0.050" in lines
    assert "sign changes between seeds" in lines
