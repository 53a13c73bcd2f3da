"""Ablation of the auxiliary task: train, test and evaluate model variants with the same seed and budget.

Variants (:data:`VARIANTS`):

* ``baseline``: plain HIPTrack (``MODEL.CLS_HEAD.ENABLED=False``), tested with the ``hiptrack`` tracker;
* ``multitask``: HIPTrack-CLS, the classification loss only regularises the shared backbone;
* ``fusion``: HIPTrack-CLS with ``MODEL.CLS_HEAD.FUSION=True`` (head features added before the box head).

Each variant runs the project's own command-line scripts in a child process (``tracking/train.py``,
then ``tracking/test.py``), so an ablation exercises exactly what a user runs; the results are then
scored in this process with :mod:`lib.test.analysis` and the challenge predictions of the
classification variants are compared with the JSONL labels. Everything a variant writes stays
under ``<out_dir>/<variant>/`` (checkpoints, logs, TensorBoard, results).
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lib.test.evaluation.results import atomic_write_text, read_challenges, results_dir, sequence_files, test_dataset
from lib.utils.cls_loss import CLASS_NAMES, IGNORE_INDEX

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = REPO_ROOT / "tracking" / "train.py"
TEST_SCRIPT = REPO_ROOT / "tracking" / "test.py"


@dataclass(frozen=True)
class Variant:
    """One model variant of the ablation."""
    name: str
    tracker: str                 # tracker name of tracking/test.py
    opts: tuple[str, ...]        # config overrides that make the variant
    description: str

    @property
    def classifies(self) -> bool:
        return self.tracker == "hiptrack_cls"


VARIANTS: dict[str, Variant] = {
    "baseline": Variant("baseline", "hiptrack", ("MODEL.CLS_HEAD.ENABLED=False",),
                        "HIPTrack, no classification head"),
    "multitask": Variant("multitask", "hiptrack_cls", ("MODEL.CLS_HEAD.ENABLED=True", "MODEL.CLS_HEAD.FUSION=False"),
                         "shared backbone + challenge head (auxiliary loss only)"),
    "fusion": Variant("fusion", "hiptrack_cls", ("MODEL.CLS_HEAD.ENABLED=True", "MODEL.CLS_HEAD.FUSION=True"),
                      "challenge head features also added before the box head"),
}


@dataclass
class AblationSettings:
    """What every variant shares: config, data, seed, device and where results go."""
    config: str                          # experiment name or YAML path
    train_dataset_opts: tuple[str, ...]  # e.g. DATA.TRAIN.DATASETS_NAME=[SYNTHETIC_train]
    test_dataset: str                    # a tracking/test.py --dataset name
    out_dir: Path
    cls_ann_dir: Path | None = None      # JSONL challenge labels (training targets and the per-challenge table)
    path_args: tuple[str, ...] = ()      # --dataset_dir / --data_dir / --paths of both scripts
    seed: int = 42
    device: str = "cpu"
    threads: int = 0                     # tracking/test.py --threads
    opts: tuple[str, ...] = ()           # further overrides for every variant
    epoch: int | None = None             # checkpoint epoch to test (default: TEST.EPOCH of the config)
    extra_train_args: tuple[str, ...] = field(default_factory=tuple)


def _run(cmd: list[str], what: str, log_file: Path) -> float:
    """Run a child process, its output appended to ``log_file``; raise with the log's tail on failure."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    logger.info("%s: %s", what, " ".join(cmd))
    start = time.perf_counter()
    with open(log_file, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT).returncode
    seconds = time.perf_counter() - start
    if code != 0:
        tail = "".join(log_file.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)[-25:])
        raise RuntimeError(f"{what} failed with exit code {code} (full output in {log_file}):\n{tail}")
    return seconds


def _variant_opts(settings: AblationSettings, variant: Variant) -> list[str]:
    opts = [*settings.train_dataset_opts, *variant.opts, *settings.opts]
    if settings.cls_ann_dir is not None:
        opts.append(f"DATA.TRAIN.CLS_ANN_DIR={settings.cls_ann_dir}")
    if settings.epoch is not None:
        opts.append(f"TEST.EPOCH={settings.epoch}")
    return opts


def train_command(settings: AblationSettings, variant: Variant) -> list[str]:
    """The ``tracking/train.py`` command line of a variant."""
    return [sys.executable, str(TRAIN_SCRIPT), "--script", "hiptrack", "--config", settings.config,
            "--save_dir", str(settings.out_dir / variant.name), "--mode", "single", "--seed", str(settings.seed),
            "--device", settings.device, "--no_val", *settings.path_args, *settings.extra_train_args,
            "--opts", *_variant_opts(settings, variant)]


def test_command(settings: AblationSettings, variant: Variant) -> list[str]:
    """The ``tracking/test.py`` command line of a variant (challenge predictions saved when it has a head)."""
    cmd = [sys.executable, str(TEST_SCRIPT), variant.tracker, settings.config, "--dataset", settings.test_dataset,
           "--save_dir", str(settings.out_dir / variant.name), "--device", settings.device,
           "--threads", str(settings.threads), *settings.path_args]
    if variant.classifies:
        cmd.append("--save_cls")
    return [*cmd, "--opts", *_variant_opts(settings, variant)]


def config_name(config: str) -> str:
    """The run name of a config: its file stem (the trainer and the tester name folders by it)."""
    return Path(config).stem if config.endswith((".yaml", ".yml")) else config


def challenge_accuracy(results: Path, result_format: str, labels: dict[str, np.ndarray]) -> dict:
    """Accuracy of the per-frame challenge predictions (``<seq>_cls.txt``) on labeled frames.

    ``labels`` maps sequence name -> (N,) class ids (IGNORE_INDEX = unlabeled). Frame 1 (the
    template) has no prediction and is left out. Also gives the accuracy of always predicting the
    most frequent class of these frames (the majority baseline) and per-class accuracy.
    """
    correct = total = 0
    per_class_correct = np.zeros(len(CLASS_NAMES), dtype=np.int64)
    per_class_total = np.zeros(len(CLASS_NAMES), dtype=np.int64)
    for seq, seq_labels in labels.items():
        path = sequence_files(results, seq, result_format).challenges
        if not path.is_file():
            raise FileNotFoundError(f"no challenge predictions for {seq}: {path} (test with --save_cls)")
        predicted, _ = read_challenges(path)
        if len(predicted) != len(seq_labels):
            raise ValueError(f"{path}: {len(predicted)} lines for {len(seq_labels)} frames")
        keep = (seq_labels != IGNORE_INDEX) & (predicted >= 0)
        keep[0] = False
        hits = predicted[keep] == seq_labels[keep]
        correct += int(hits.sum())
        total += int(keep.sum())
        np.add.at(per_class_total, seq_labels[keep], 1)
        np.add.at(per_class_correct, seq_labels[keep][hits], 1)
    if total == 0:
        return {"accuracy": float("nan"), "majority": float("nan"), "majority_class": None, "frames": 0,
                "per_class": {}}
    majority = int(per_class_total.argmax())
    return {
        "accuracy": correct / total,
        "majority": per_class_total[majority] / total,
        "majority_class": CLASS_NAMES[majority],
        "frames": total,
        "per_class": {CLASS_NAMES[k]: per_class_correct[k] / per_class_total[k]
                      for k in range(len(CLASS_NAMES)) if per_class_total[k]},
    }
