"""Ablation of the auxiliary task: train, test and evaluate model variants over seeds, same budget.

Trained variants (:data:`VARIANTS`):

* ``baseline``: plain HIPTrack (``MODEL.CLS_HEAD.ENABLED=False``), tested with the ``hiptrack`` tracker;
* ``multitask``: HIPTrack-CLS, the classification loss only regularises the shared backbone;
* ``multilabel``: the same with the multi-label head (``MODEL.CLS_HEAD.MODE=multi``);
* ``fusion`` / ``film`` / ``channel_gate``: HIPTrack-CLS whose head features condition the box head's
  input (``MODEL.CLS_HEAD.FUSION`` ADD / FILM / GATE; the head reads tokens only, ``INPUT=tokens``, since
  the stem input excludes fusion).

Test-time variants reuse the checkpoint of a trained one (``Variant.model``) with challenge-aware
tracking policies (``TEST.POLICY.*``) driven by the head's predictions (``multitask+...``) or, as an
oracle, by the ground-truth flags (``oracle+...``): the oracle separates "the policy helps" from "the
classifier is good enough to drive it". A policy's threshold is chosen on the validation split
(``AblationSettings.val_dataset``) by AO, never on the test split; so is the factor of the temporal
smoothing of challenge predictions (by accuracy; raw and smoothed accuracy are both reported).

Every variant runs once per training seed (``AblationSettings.seeds``) under ``<out_dir>/seed<s>/``;
the report gives mean ± std over seeds and, for each variant's difference to the baseline, a 95%
interval from a paired bootstrap over test sequences (:mod:`lib.test.analysis.stats`), overall and
per challenge. ``ablation.json`` keeps every seed's per-sequence scores so that anyone can recompute.

Each variant runs the project's own command-line entry points in a child process (``python -m
lib.train.run``, then ``python -m lib.test.run``: what ``tracking/train.py`` / ``tracking/test.py``
run), so an ablation exercises exactly what a user runs. While a variant trains, the epoch records
the trainer appends to its ``metrics.jsonl`` are echoed as progress lines, and the tested epoch's
record goes into the result. The results are then scored in this process with
:mod:`lib.test.analysis` (box metrics, and the challenge accuracy of the classification variants
against the JSONL labels). Everything a variant writes stays under ``<out_dir>/seed<s>/<variant>/``
(checkpoints, ``metrics.jsonl``, logs, TensorBoard, results, validation runs under ``val/``,
``ablation.log`` with the output of its child processes); :func:`run_ablation` writes ``<out_dir>/ablation.json`` and PNG plots in
``<out_dir>/plots/``; :func:`report_lines` gives the tables of
:mod:`lib.test.analysis.ablation_report` and the files written.

Every training of every seed runs before the test runs; on the CPU several at once (one per core by
default, ``AblationSettings.jobs``), each child with its share of the cores: a small model does not keep
two threads busy, so side by side they get through more samples (:func:`train_variants`).

A variant whose checkpoint of the tested epoch exists is not trained again (unless
``AblationSettings.retrain``), and ``tracking/test.py`` skips sequences with results, so an
interrupted ablation resumes where it stopped.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
import yaml

from lib.config.hiptrack import config_from_dict, load_config, resolve_experiment_config
from lib.config.node import CfgNode
from lib.test import run as test_entry
from lib.test.analysis import evaluate_results, plot_per_challenge, plot_success
from lib.test.analysis.ablation_report import (SeedComparisons, compare_seeds, format_ablation, format_seeds_report,
                                               format_summary, seed_summary)
from lib.test.analysis.challenges import (challenge_accuracy, challenge_labels, challenge_multi_hot, choose_smoothing,
                                          multilabel_scores, read_predictions, smoothed_accuracy)
from lib.test.analysis.policy_activity import policy_activity
from lib.test.analysis.report import plot_differences
from lib.test.evaluation.provenance import CheckpointRecord, clear_results, results_conflict
from lib.test.evaluation.results import results_dir, test_dataset
from lib.utils.atomic import atomic_write_text
from lib.dataset.base import SequenceDataset
from lib.dataset.paths import DatasetPaths, add_path_arguments
from lib.dataset.registry import build_dataset
from lib.train import run as train_entry
from lib.train.trainer import config_differences
from lib.utils.records import JsonlError, json_safe
from lib.utils.runs import RunPaths, drop_metrics_after, epoch_checkpoints, read_metrics
from lib.utils.runtime import available_cores

logger = logging.getLogger(__name__)

# the entry points the children run with ``python -m`` (imported, so a rename fails here, not in a child)
TRAIN_MODULE = train_entry.__name__
TEST_MODULE = test_entry.__name__
CLS_TRACKER = "hiptrack_cls"  # the tracker that predicts challenges
POLL_SECONDS = 2.0            # how often a training child's metrics.jsonl is read for progress lines


@dataclass(frozen=True)
class Variant:
    """One variant of the ablation: a trained model, or a test-time setting of another variant's model."""
    name: str
    tracker: str                 # tracker name of lib.test.run (tracking/test.py)
    opts: tuple[str, ...]        # config overrides that make the variant (training and testing)
    description: str
    model: str | None = None     # test-time variant: tests the checkpoint this variant trained
    tune: tuple[str, tuple] | None = None  # (config key, candidates): chosen on the validation split by AO
    oracle: bool = False         # driven by ground-truth challenge flags, not by the head's predictions

    @property
    def classifies(self) -> bool:
        """Predicts challenges (the head's predictions are saved and scored)."""
        return self.tracker == CLS_TRACKER and not self.oracle

    @property
    def trains(self) -> bool:
        return self.model is None


_POLICY_THRESHOLDS = (0.3, 0.5, 0.7)  # candidates of a policy's trigger threshold, tried on the validation split
_POLICIES = {  # policy -> (the switch, its threshold key, what it does)
    "memory_gate": ("TEST.POLICY.MEMORY_GATE", "TEST.POLICY.MEMORY_GATE_THRESHOLD",
                    "frames predicted Occlusion / Partial Visibility / Motion Blur are not written to memory"),
    "search_adapt": ("TEST.POLICY.SEARCH_ADAPT", "TEST.POLICY.SEARCH_ADAPT_THRESHOLD",
                     "a larger search region after Occlusion / Motion Blur / Scale Variation or a low peak"),
    "damping": ("TEST.POLICY.DAMPING", "TEST.POLICY.DAMPING_THRESHOLD",
                "stronger window penalty and smoother size under Background Clutter / Low Contrast"),
}


def _policy_variants() -> dict[str, Variant]:
    """``multitask+<policy>`` (predicted challenges, threshold tuned on validation) and ``oracle+<policy>``
    (ground-truth flags) for every policy, all on the multitask checkpoint."""
    out = {}
    for policy, (switch, threshold, what) in _POLICIES.items():
        out[f"multitask+{policy}"] = Variant(f"multitask+{policy}", CLS_TRACKER, (f"{switch}=True",),
                                             f"multitask, {what}", model="multitask",
                                             tune=(threshold, _POLICY_THRESHOLDS))
        out[f"oracle+{policy}"] = Variant(f"oracle+{policy}", CLS_TRACKER,
                                          (f"{switch}=True", "TEST.POLICY.SOURCE=oracle"),
                                          "multitask, the same policy driven by the ground-truth flags",
                                          model="multitask", oracle=True)
    return out


VARIANTS: dict[str, Variant] = {
    # two-stage training only exists for the head, so a two-stage config's baseline trains in one stage
    "baseline": Variant("baseline", "hiptrack", ("MODEL.CLS_HEAD.ENABLED=False", "MODEL.CLS_HEAD.INPUT=tokens",
                                                 "TRAIN.TWO_STAGE=False"),
                        "HIPTrack, no classification head"),
    "multitask": Variant("multitask", "hiptrack_cls", ("MODEL.CLS_HEAD.ENABLED=True", "MODEL.CLS_HEAD.FUSION=NONE"),
                         "shared backbone + challenge head (auxiliary loss only)"),
    "fusion": Variant("fusion", "hiptrack_cls", ("MODEL.CLS_HEAD.ENABLED=True", "MODEL.CLS_HEAD.FUSION=ADD",
                                                "MODEL.CLS_HEAD.INPUT=tokens"),
                      "challenge head features also added before the box head"),
    "film": Variant("film", "hiptrack_cls", ("MODEL.CLS_HEAD.ENABLED=True", "MODEL.CLS_HEAD.FUSION=FILM",
                                            "MODEL.CLS_HEAD.INPUT=tokens"),
                    "challenge head features modulate the box head's input (FiLM)"),
    "channel_gate": Variant("channel_gate", "hiptrack_cls", ("MODEL.CLS_HEAD.ENABLED=True",
                                                            "MODEL.CLS_HEAD.FUSION=GATE", "MODEL.CLS_HEAD.INPUT=tokens"),
                            "challenge head features gate the box head's input channels"),
    "multilabel": Variant("multilabel", "hiptrack_cls", ("MODEL.CLS_HEAD.ENABLED=True", "MODEL.CLS_HEAD.FUSION=NONE",
                                                        "MODEL.CLS_HEAD.MODE=multi"),
                          "multi-label challenge head (every flag of a frame, sigmoids, BCE)"),
    **_policy_variants(),
}
DEFAULT_VARIANTS = ("baseline", "multitask", "fusion")


@dataclass
class AblationSettings:
    """What every variant shares: config, data, seed, device and where results go."""
    config: str                          # experiment name or YAML path
    train_dataset_opts: tuple[str, ...]  # e.g. DATA.TRAIN.DATASETS_NAME=[SYNTHETIC_train]
    test_dataset: str                    # a lib.test.run (tracking/test.py) --dataset name
    out_dir: Path
    cls_ann_dir: Path | None = None      # JSONL challenge labels (training targets and the per-challenge table)
    path_args: tuple[str, ...] = ()      # --dataset_dir / --data_dir / --paths of both scripts
    seed: int = 42
    device: str = "cpu"
    threads: int = 0                     # lib.test.run --threads
    jobs: int = 0                        # trainings at once (0: auto, see training_jobs)
    opts: tuple[str, ...] = ()           # further overrides for every variant
    epoch: int | None = None             # checkpoint epoch to test (default: TEST.EPOCH of the config)
    retrain: bool = False                # train even when the tested checkpoint exists
    extra_train_args: tuple[str, ...] = field(default_factory=tuple)
    seeds: tuple[int, ...] = ()          # training seeds, one run of every variant each (empty: ``seed`` only)
    val_dataset: str | None = None       # lib.test.run dataset of the validation split (tuning); None: no tuning

    @property
    def seed_list(self) -> tuple[int, ...]:
        return tuple(self.seeds) or (self.seed,)


# the stats of a metrics.jsonl record echoed while a variant trains, so a long run shows progress
_EPOCH_STATS = ("Loss/total", "IoU", "Accuracy")


def progress_line(record: dict) -> str:
    """``epoch 8: Loss/total 5.5100, IoU 0.4230, Accuracy 0.3510`` of a ``metrics.jsonl`` record
    (stats that are missing or null, i.e. NaN, are left out, as in the trainer's log line)."""
    train = record.get("train", {})
    stats = [f"{key} {train[key]:.4f}" for key in _EPOCH_STATS if train.get(key) is not None]
    return f"epoch {record['epoch']}: {', '.join(stats)}"


def _echo_new_records(what: str, metrics_file: Path, last_epoch: int) -> int:
    """Log a progress line for each record of an epoch after ``last_epoch``; the last epoch echoed.
    Raises JsonlError for a malformed file."""
    try:
        records = read_metrics(metrics_file)
    except FileNotFoundError:  # the child has not finished its first epoch
        return last_epoch
    for record in records:
        if record["epoch"] > last_epoch:
            logger.info("%s: %s", what, progress_line(record))
            last_epoch = record["epoch"]
    return last_epoch


@contextlib.contextmanager
def echo_epochs(what: str, metrics_file: Path, after_epoch: int = 0) -> Iterator[None]:
    """While the block runs (a training child), poll ``metrics_file`` every :data:`POLL_SECONDS`
    and log a progress line per new epoch record after ``after_epoch``; once more at the end."""
    stop = threading.Event()

    def follow() -> None:
        last_epoch = after_epoch
        while True:
            stopping = stop.wait(POLL_SECONDS)
            try:
                last_epoch = _echo_new_records(what, metrics_file, last_epoch)
            except JsonlError as e:  # progress only: the training child decides whether the run is fine
                logger.warning("%s: no more progress lines: %s", what, e)
                return
            if stopping:
                return

    thread = threading.Thread(target=follow, name=f"progress of {what}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _run(cmd: list[str], what: str, log_file: Path, env: dict[str, str] | None = None) -> float:
    """Run a child process (environment ``env``, default this one's), its output appended to ``log_file``;
    the wall seconds. Raises RuntimeError with the log's tail on failure."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    logger.info("%s: %s", what, " ".join(cmd))
    start = time.perf_counter()
    with open(log_file, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        with subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env) as child:
            code = child.wait()
    seconds = time.perf_counter() - start
    if code != 0:
        tail = "".join(log_file.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)[-25:])
        raise RuntimeError(f"{what} failed with exit code {code} (full output in {log_file}):\n{tail}")
    return seconds


def _variant_opts(settings: AblationSettings, variant: Variant) -> list[str]:
    """Config overrides of a variant: a test-time variant's are its model's plus its own."""
    model_opts = VARIANTS[variant.model].opts if variant.model else ()
    opts = [*settings.train_dataset_opts, *model_opts, *variant.opts, *settings.opts]
    if settings.cls_ann_dir is not None:
        opts.append(f"DATA.TRAIN.CLS_ANN_DIR={settings.cls_ann_dir}")
    if settings.epoch is not None:
        opts.append(f"TEST.EPOCH={settings.epoch}")
    return opts


def train_command(settings: AblationSettings, variant: Variant) -> list[str]:
    """The training command line of a variant (``python -m lib.train.run``)."""
    return [sys.executable, "-m", TRAIN_MODULE, "--script", "hiptrack", "--config", settings.config,
            "--save_dir", str(settings.out_dir / variant.name), "--mode", "single", "--seed", str(settings.seed),
            "--device", settings.device, "--no_val", "--debug", *settings.path_args, *settings.extra_train_args,
            "--opts", *_variant_opts(settings, variant)]


def test_command(settings: AblationSettings, variant: Variant, dataset: str | None = None,
                 save_dir: Path | None = None, extra_opts: Sequence[str] = ()) -> list[str]:
    """The test command line of a variant (``python -m lib.test.run``; challenge predictions saved
    when it predicts them; a test-time variant loads its model's checkpoint) on ``dataset`` (default the
    test split) into ``save_dir`` (default the variant's folder), always naming the checkpoint."""
    cmd = [sys.executable, "-m", TEST_MODULE, variant.tracker, settings.config,
           "--dataset", dataset or settings.test_dataset, "--save_dir", str(save_dir or settings.out_dir / variant.name),
           "--device", settings.device, "--threads", str(settings.threads), "--debug", *settings.path_args]
    if variant.classifies:
        cmd.append("--save_cls")
    cmd += ["--checkpoint", str(model_checkpoint(settings, variant))]  # also when the results go elsewhere
    if variant.oracle:  # the policies read the ground-truth flags of each frame
        cmd += ["--cls_ann_dir", str(settings.cls_ann_dir)]
    return [*cmd, "--opts", *_variant_opts(settings, variant), *extra_opts]


def model_checkpoint(settings: AblationSettings, variant: Variant) -> Path:
    """The checkpoint a variant tests: the tested epoch of its own training run or of its model's."""
    model = variant.model or variant.name
    epoch = variant_config(settings, VARIANTS[model]).TEST.EPOCH
    return RunPaths(settings.out_dir / model, config_name(settings.config)).checkpoint(epoch)


def config_name(config: str) -> str:
    """The run name of a config: its file stem (the trainer and the tester name folders by it)."""
    return Path(config).stem if config.endswith((".yaml", ".yml")) else config


# -- running --------------------------------------------------------------------------------
@dataclass
class VariantResult:
    """What one variant of an ablation produced (scores are fractions in [0, 1])."""
    name: str
    tracker: str
    description: str
    checkpoint: str
    results_dir: str
    log_file: str
    train_seconds: float | None  # None: training skipped and no earlier time recorded
    train_skipped: bool          # the checkpoint already existed (the time is the earlier run's)
    test_seconds: float
    scores: dict                 # lib.test.analysis.evaluate_results output
    challenge: dict | None       # challenge_accuracy output (+ smoothed accuracy, multi-label scores); None
                                 # without predictions or labels
    train_metrics: dict | None = None  # the tested epoch's train stats from metrics.jsonl (None: no record)
    seed: int | None = None            # the training seed of this run
    tuning: dict | None = None         # {"key", "candidates": {value: validation AO}, "chosen"} of a tuned variant
    policy_activity: dict | None = None  # share of frames a policy acted on, overall and per challenge

    @property
    def classifies(self) -> bool:
        return self.tracker == CLS_TRACKER


@dataclass
class AblationResult:
    """Every variant of one ablation per training seed (``{seed: {variant: result}}``, run order) and the
    files written."""
    settings: dict
    runs: dict[int, dict[str, VariantResult]]
    json_path: Path | None = None
    plots: list[Path] = field(default_factory=list)

    @property
    def variants(self) -> dict[str, VariantResult]:
        """The first seed's results (the whole result when one seed ran)."""
        return next(iter(self.runs.values()))

    @cached_property
    def comparisons(self) -> SeedComparisons:
        """The bootstrap comparisons to the baseline and of the test-time variants to their model, computed
        once for the report, ablation.json and the plots."""
        models = {n: VARIANTS[n].model for n in self.variants if n in VARIANTS and VARIANTS[n].model}
        return compare_seeds(self.runs, models=models)


def select_variants(names: Sequence[str] | None) -> list[Variant]:
    """The :data:`VARIANTS` of ``names`` (default :data:`DEFAULT_VARIANTS`), trained variants first and the
    models that test-time variants need added; unknown or repeated names are a ValueError."""
    names = list(DEFAULT_VARIANTS) if names is None else list(names)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(map(repr, unknown))}; valid: {', '.join(VARIANTS)}")
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"give each variant once (at least one), got {names}")
    needed = [VARIANTS[n].model for n in names if VARIANTS[n].model and VARIANTS[n].model not in names]
    names = list(dict.fromkeys(needed)) + names
    return [VARIANTS[n] for n in names if VARIANTS[n].trains] + [VARIANTS[n] for n in names if not VARIANTS[n].trains]


def dataset_paths(path_args: Sequence[str]) -> DatasetPaths:
    """The :class:`DatasetPaths` the child scripts build from the same ``--dataset_dir`` / ``--paths`` /
    ``--data_dir`` arguments (parsed by the same parser, so both sides agree)."""
    parser = argparse.ArgumentParser(add_help=False)
    add_path_arguments(parser)
    args = parser.parse_args(list(path_args))
    return DatasetPaths.from_env(args.dataset_dir, args.paths, args.data_dir)


def variant_config(settings: AblationSettings, variant: Variant) -> CfgNode:
    """The resolved config a variant trains and tests with (validated here, before any child runs)."""
    return load_config(resolve_experiment_config(settings.config), opts=_variant_opts(settings, variant))


def _note(log_file: Path, message: str) -> None:
    """Log ``message`` and append it to the variant's ablation log (beside its children's output)."""
    logger.info("%s", message)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "a", encoding="utf-8") as log:
        log.write(f"# {message}\n")


def _config_changes(checkpoint_dir: Path, cfg: CfgNode) -> list[str]:
    """Training keys whose value differs from the ``config.yaml`` the trainer wrote beside the
    checkpoints (``TEST.*`` only affects testing, e.g. a checkpoint epoch chosen with --epoch)."""
    saved_file = checkpoint_dir / "config.yaml"
    if not saved_file.is_file():
        return []
    try:
        saved_cfg = config_from_dict(yaml.safe_load(saved_file.read_text(encoding="utf-8")), source=str(saved_file),
                                     validate=False)
    except (ValueError, yaml.YAMLError) as e:  # written by other code: say so, do not stop the ablation
        return [f"{saved_file} cannot be compared: {e}"]
    return config_differences(_without_test(saved_cfg.to_dict()), _without_test(cfg.to_dict()))


def _without_test(tree: dict) -> dict:
    return {k: v for k, v in tree.items() if k != "TEST"}


def _train_time_file(settings: AblationSettings, variant: Variant) -> Path:
    return settings.out_dir / variant.name / "train_time.json"


def _train(settings: AblationSettings, variant: Variant, cfg: CfgNode, log_file: Path, label: str | None = None,
           jobs: int = 1) -> tuple[float | None, bool]:
    """Train unless the tested checkpoint exists; ``(seconds, skipped)``. Training from scratch (or
    on from an earlier epoch of an interrupted run) removes the variant's stale test results.
    ``label`` names the run in progress lines (default the variant); ``jobs``: trainings running at once,
    which share the cores (:func:`child_threads`)."""
    epoch = cfg.TEST.EPOCH
    label = label or variant.name
    run_paths = RunPaths(settings.out_dir / variant.name, config_name(settings.config))
    checkpoint, time_file = run_paths.checkpoint(epoch), _train_time_file(settings, variant)
    if not _needs_training(settings, variant, cfg):
        _note(log_file, f"{label}: training skipped, {checkpoint} exists (pass --retrain to train again)")
        changes = _config_changes(run_paths.checkpoint_dir, cfg)
        if changes:
            logger.warning("%s: the existing checkpoint was trained with a different config (%s); pass --retrain "
                           "to train with this one", variant.name, "; ".join(changes))
        seconds = json.loads(time_file.read_text(encoding="utf-8"))["seconds"] if time_file.is_file() else None
        return seconds, True
    cmd = train_command(settings, variant)
    found = epoch_checkpoints(run_paths.checkpoint_dir)
    earlier = [(e, path) for e, path in found if e < epoch]
    start_epoch = 0
    if earlier and not settings.retrain:  # an interrupted run: continue it exactly
        start_epoch, resume_from = earlier[-1]
        _note(log_file, f"{label}: continuing training from {resume_from}")
        cmd = [*cmd[:cmd.index("--opts")], "--resume", str(resume_from), *cmd[cmd.index("--opts"):]]
    elif found:  # training again from scratch: the trainer refuses to mix in the old run's checkpoints
        _note(log_file, f"{label}: training from scratch, replacing the checkpoints in "
                        f"{run_paths.checkpoint_dir}")
        cmd = [*cmd[:cmd.index("--opts")], "--overwrite", *cmd[cmd.index("--opts"):]]
    stale = results_dir(settings.out_dir / variant.name, variant.tracker, config_name(settings.config),
                        settings.test_dataset)
    if stale.exists():
        _note(log_file, f"{label}: removing test results of the previous checkpoint: {stale}")
        shutil.rmtree(stale)
    # the trainer drops these records itself when it starts; dropping them first keeps them out of
    # the progress lines
    drop_metrics_after(run_paths.metrics_file, start_epoch)
    what = f"{label}: training"
    threads = child_threads(jobs)
    env = None if threads is None else {**os.environ, **{name: str(threads) for name in THREAD_VARIABLES}}
    with echo_epochs(what, run_paths.metrics_file, after_epoch=start_epoch):
        seconds = _run(cmd, what, log_file, env)
    atomic_write_text(time_file, json.dumps({"seconds": seconds, "epoch": epoch, "jobs": jobs}) + "\n")
    return seconds, False


# the thread-count variables torch's CPU kernels (OpenMP, MKL) read when a child process starts
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def child_threads(jobs: int) -> int | None:
    """CPU threads of each of ``jobs`` training children running at once: the cores divided between
    them; None for a single child (it keeps torch's default, or the caller's OMP_NUM_THREADS)."""
    return None if jobs <= 1 else max(1, available_cores() // jobs)


def add_jobs_argument(parser: argparse.ArgumentParser) -> None:
    """``--jobs N`` of the scripts that run an ablation (checked: >= 0)."""
    def non_negative(text: str) -> int:
        value = int(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
        return value

    parser.add_argument("--jobs", type=non_negative, default=0, metavar="N",
                        help="trainings run at once, each with its share of the CPU cores (default 0: one per core "
                             "on the CPU, one at a time on a GPU); batch, steps and seeds do not depend on it")


def training_jobs(settings: AblationSettings, pending: int) -> int:
    """How many of ``pending`` trainings run at once: ``settings.jobs`` when given; else on the CPU one
    per core (a small model keeps a core busy on its own: two single-thread quick-start trainings on 2
    cores got through 1.65x the samples of one training on both), and one at a time on a GPU (or a
    device name torch does not know, which the training child then reports)."""
    if settings.jobs > 0:
        return max(1, min(settings.jobs, pending))
    try:
        on_cpu = torch.device(settings.device).type == "cpu"
    except RuntimeError:
        on_cpu = False
    return max(1, min(available_cores(), pending)) if on_cpu else 1


def _test(settings: AblationSettings, variant: Variant, what: str, log_file: Path, dataset: str | None = None,
          save_dir: Path | None = None, extra_opts: Sequence[str] = ()) -> float:
    """Run a variant's test command (:func:`test_command`); the wall seconds. Results in its folder of
    another checkpoint (its model was trained again since) are removed first, as ``tracking/test.py``
    refuses to mix them with the new checkpoint's; results of this checkpoint are kept and skipped."""
    folder = _results_of(settings, variant, dataset or settings.test_dataset, save_dir)
    checkpoint = model_checkpoint(settings, variant)
    if checkpoint.is_file():
        stale = results_conflict(folder, CheckpointRecord.of(checkpoint))
        if stale is not None:
            _note(log_file, f"{variant.name}: removing {folder}: it {stale}")
            clear_results(folder)
    return _run(test_command(settings, variant, dataset, save_dir, extra_opts), what, log_file)


def _check_inputs(settings: AblationSettings, variants: Sequence[Variant]
                  ) -> tuple[SequenceDataset, SequenceDataset | None, dict]:
    """Fail before any child runs: configs, dataset names, dataset roots, label folder.
    Returns the test and validation ground truth (with labels) and ``{variant name: config}``."""
    spec = test_dataset(settings.test_dataset)
    if not spec.has_ground_truth:
        raise ValueError(f"{settings.test_dataset} has no public ground truth, so an ablation cannot score it")
    val_spec = test_dataset(settings.val_dataset) if settings.val_dataset else None
    if val_spec is not None and not val_spec.has_ground_truth:
        raise ValueError(f"{settings.val_dataset} has no public ground truth: it cannot be a validation split")
    if settings.cls_ann_dir is not None and not Path(settings.cls_ann_dir).is_dir():
        raise FileNotFoundError(f"challenge label folder {settings.cls_ann_dir} not found (--cls_ann_dir)")
    if any(v.oracle for v in variants) and settings.cls_ann_dir is None:
        raise ValueError("oracle variants need the challenge labels of the test sequences (--cls_ann_dir)")
    configs = {v.name: variant_config(settings, v) for v in variants}
    for name, cfg in configs.items():
        if cfg.TEST.EPOCH > cfg.TRAIN.EPOCH:
            raise ValueError(f"{name}: the tested epoch {cfg.TEST.EPOCH} (TEST.EPOCH / --epoch) is beyond "
                             f"TRAIN.EPOCH {cfg.TRAIN.EPOCH}, so training never writes its checkpoint")
    paths = dataset_paths(settings.path_args)
    for name in dict.fromkeys(n for cfg in configs.values() for n in cfg.DATA.TRAIN.DATASETS_NAME):
        build_dataset(name, paths)
    # labels with the base seed's tie-breaks for every seed, so per-challenge scores pair across seeds
    ground_truth = build_dataset(spec.registry_name, paths, cls_ann_dir=settings.cls_ann_dir, label_seed=settings.seed)
    validation = (build_dataset(val_spec.registry_name, paths, cls_ann_dir=settings.cls_ann_dir,
                                label_seed=settings.seed) if val_spec is not None else None)
    return ground_truth, validation, configs


@dataclass
class _Truth:
    """Ground truth of one split for scoring: boxes, and challenge labels when there are label files."""
    dataset: SequenceDataset
    name: str                              # lib.test.run dataset name
    labels: dict[str, np.ndarray] | None   # sequence -> (N,) class ids
    multi_hot: dict[str, np.ndarray] | None

    @classmethod
    def of(cls, dataset: SequenceDataset | None, name: str | None, labelled: bool) -> _Truth | None:
        if dataset is None:
            return None
        return cls(dataset, name, challenge_labels(dataset) if labelled else None,
                   challenge_multi_hot(dataset) if labelled else None)


def _results_of(settings: AblationSettings, variant: Variant, dataset: str, save_dir: Path | None = None) -> Path:
    return results_dir(save_dir or settings.out_dir / variant.name, variant.tracker, config_name(settings.config),
                       dataset)


def _tune_on_validation(settings: AblationSettings, variant: Variant, validation: _Truth, log_file: Path
                        ) -> tuple[tuple[str, ...], dict, Path]:
    """Test every candidate of ``variant.tune`` on the validation split and keep the best by AO (ties: the
    first); returns the chosen override, the tuning record and the chosen run's results folder."""
    key, candidates = variant.tune
    fmt = test_dataset(validation.name).result_format
    val_ao, folders = {}, {}
    for value in candidates:
        save_dir = settings.out_dir / variant.name / "val" / f"{key}={value}"
        _test(settings, variant, f"{variant.name}: validation {key}={value}", log_file, validation.name, save_dir,
              [f"{key}={value}"])
        folders[value] = _results_of(settings, variant, validation.name, save_dir)
        val_ao[value] = evaluate_results(folders[value], validation.dataset, fmt)["ao"]
    chosen = max(candidates, key=lambda v: val_ao[v])  # max keeps the first of equal values
    _note(log_file, f"{variant.name}: {key}={chosen} chosen on {validation.name} (AO "
                    + ", ".join(f"{v}: {ao:.3f}" for v, ao in val_ao.items()) + ")")
    return (f"{key}={chosen}",), {"key": key, "candidates": val_ao, "chosen": chosen}, folders[chosen]


def _validation_predictions(settings: AblationSettings, variant: Variant, validation: _Truth, log_file: Path,
                            tuned_results: Path | None, chosen: Sequence[str]) -> dict[str, np.ndarray]:
    """The variant's challenge probabilities on the validation split (a tuning run's, else one more run)."""
    results = tuned_results
    if results is None:
        save_dir = settings.out_dir / variant.name / "val" / "predictions"
        _test(settings, variant, f"{variant.name}: validation", log_file, validation.name, save_dir, chosen)
        results = _results_of(settings, variant, validation.name, save_dir)
    return read_predictions(results, test_dataset(validation.name).result_format, list(validation.labels))


def _challenge_scores(variant: Variant, cfg: CfgNode, results: Path, truth: _Truth,
                      validation_probs: dict[str, np.ndarray] | None, validation: _Truth | None) -> dict | None:
    """Accuracy (raw and smoothed with the factor best on validation), majority baseline and, in the
    multi-label mode, AP / mAP / macro-F1 at thresholds picked on validation."""
    if not variant.classifies or truth.labels is None:
        return None
    fmt = test_dataset(truth.name).result_format
    scores = challenge_accuracy(results, fmt, truth.labels)
    probs = read_predictions(results, fmt, list(truth.labels))
    if validation_probs is not None:
        alpha, tried = choose_smoothing(validation_probs, validation.labels)
        scores.update(smoothing=alpha, smoothing_candidates=tried,
                      smoothed_accuracy=smoothed_accuracy(probs, truth.labels, alpha))
    if cfg.MODEL.CLS_HEAD.MODE == "multi":
        thresholds = (multilabel_scores(validation_probs, validation.multi_hot, validation.labels)["thresholds"]
                      if validation_probs is not None else None)
        scores["multilabel"] = multilabel_scores(probs, truth.multi_hot, truth.labels, thresholds)
        scores["multilabel"]["thresholds"] = thresholds  # the validation thresholds, not the test-best ones
    return scores


def run_variant(settings: AblationSettings, variant: Variant, cfg: CfgNode, truth: _Truth,
                validation: _Truth | None = None, trained: tuple[float | None, bool] | None = None) -> VariantResult:
    """Train (or reuse the checkpoint; test-time variants use their model's), tune on the validation
    split, test and score one variant for ``settings.seed``. ``trained``: the ``(seconds, skipped)`` of
    its training when :func:`train_variants` ran it already."""
    log_file = _log_file(settings, variant)
    _note(log_file, f"{variant.name} ({variant.description}), seed {settings.seed}: "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
    if not variant.trains:
        train_seconds, skipped = None, False
    else:
        train_seconds, skipped = trained or _train(settings, variant, cfg, log_file)
    chosen, tuning, tuned_results = (), None, None
    if variant.tune and validation is not None:
        chosen, tuning, tuned_results = _tune_on_validation(settings, variant, validation, log_file)
    test_seconds = _test(settings, variant, f"{variant.name}: testing", log_file, extra_opts=chosen)
    results = _results_of(settings, variant, settings.test_dataset)
    scores = evaluate_results(results, truth.dataset, test_dataset(settings.test_dataset).result_format)
    validation_probs = None
    if variant.classifies and validation is not None and validation.labels is not None:
        validation_probs = _validation_predictions(settings, variant, validation, log_file, tuned_results, chosen)
    challenge = _challenge_scores(variant, cfg, results, truth, validation_probs, validation)
    activity = None
    if _runs_a_policy(cfg) and truth.labels is not None:
        activity = policy_activity(results, test_dataset(settings.test_dataset).result_format, truth.labels,
                                   cfg.TEST.SEARCH_FACTOR)
    run_paths = RunPaths(settings.out_dir / (variant.model or variant.name), config_name(settings.config))
    return VariantResult(variant.name, variant.tracker, variant.description, str(model_checkpoint(settings, variant)),
                         str(results), str(log_file), train_seconds, skipped, test_seconds, scores, challenge,
                         train_stats_of_epoch(run_paths.metrics_file, cfg.TEST.EPOCH), settings.seed, tuning,
                         activity)


def _runs_a_policy(cfg: CfgNode) -> bool:
    policy = cfg.TEST.POLICY
    return bool(policy.MEMORY_GATE or policy.SEARCH_ADAPT or policy.DAMPING)


def train_stats_of_epoch(metrics_file: Path, epoch: int) -> dict | None:
    """``{"epoch", "Loss/total", "IoU", "Accuracy", ...}``: the train stats of ``epoch``'s record in a
    ``metrics.jsonl`` (confusion matrix left out); None without that record (e.g. a checkpoint
    trained before the file existed) or when the file cannot be read (a warning says why)."""
    try:
        records = read_metrics(metrics_file)
    except FileNotFoundError:
        return None
    except JsonlError as e:
        logger.warning("no training summary: %s", e)
        return None
    record = next((r for r in reversed(records) if r["epoch"] == epoch), None)
    if record is None:
        return None
    return {"epoch": epoch, **{k: v for k, v in record.get("train", {}).items() if k != "confusion"}}


def run_ablation(settings: AblationSettings, variants: Sequence[str] | None = None,
                 on_start: Callable[[], None] | None = None) -> AblationResult:
    """Train, test and score each variant (default :data:`DEFAULT_VARIANTS`) for every seed of
    ``settings.seed_list``, in ``<out_dir>/seed<s>/``; write ``<out_dir>/ablation.json`` and the plots of
    ``<out_dir>/plots/``.

    Raises ValueError / FileNotFoundError (bad variant, config, dataset or label folder, before any
    training; ``on_start`` is called once they are checked) and RuntimeError naming the variant, the
    step and its log when a child process fails.
    """
    chosen = select_variants(variants)
    test_truth, val_truth, configs = _check_inputs(settings, chosen)
    if on_start is not None:
        on_start()
    labelled = settings.cls_ann_dir is not None
    truth = _Truth.of(test_truth, settings.test_dataset, labelled)
    validation = _Truth.of(val_truth, settings.val_dataset, labelled)
    logger.info("%s", plan_summary(settings, chosen, configs))
    # every training first (several at once where cores allow): a test-time variant then tests its model's
    # new checkpoint (results recorded for an earlier checkpoint are cleared before each test run, see _test)
    trained = train_variants(settings, chosen, configs)
    runs = {}
    for seed in settings.seed_list:
        seed_settings = replace(settings, seed=seed, out_dir=seed_dir(settings, seed))
        runs[seed] = {v.name: run_variant(seed_settings, v, configs[v.name], truth, validation,
                                          trained.get((seed, v.name))) for v in chosen}
    result = AblationResult(_settings_record(settings, chosen), runs)
    result.plots = write_plots(result, settings.out_dir / "plots")
    result.json_path = write_json(result, settings.out_dir / "ablation.json")
    return result


def _log_file(settings: AblationSettings, variant: Variant) -> Path:
    """The variant's ablation log (its children's output and the pipeline's notes)."""
    return settings.out_dir / variant.name / "ablation.log"


def _needs_training(settings: AblationSettings, variant: Variant, cfg: CfgNode) -> bool:
    """Whether :func:`_train` will train: ``retrain``, or no checkpoint of the tested epoch yet."""
    checkpoint = RunPaths(settings.out_dir / variant.name, config_name(settings.config)).checkpoint(cfg.TEST.EPOCH)
    return settings.retrain or not checkpoint.is_file()


def _training_runs(settings: AblationSettings, variants: Sequence[Variant]
                   ) -> list[tuple[AblationSettings, Variant]]:
    """Every (seed's settings, trained variant) of the ablation, seed by seed."""
    return [(replace(settings, seed=seed, out_dir=seed_dir(settings, seed)), variant)
            for seed in settings.seed_list for variant in variants if variant.trains]


def _pending_trainings(runs: Sequence[tuple[AblationSettings, Variant]], configs: dict[str, CfgNode]) -> int:
    """How many of ``runs`` (:func:`_training_runs`) will train rather than reuse a checkpoint."""
    return sum(_needs_training(s, v, configs[v.name]) for s, v in runs)


def train_variants(settings: AblationSettings, variants: Sequence[Variant], configs: dict[str, CfgNode]
                   ) -> dict[tuple[int, str], tuple[float | None, bool]]:
    """Train every trained variant of every seed (those whose checkpoint exists are skipped);
    ``{(seed, variant name): (seconds, skipped)}``. Up to :func:`training_jobs` trainings run at once,
    each in its own child process with its share of the cores. After a failure no further training
    starts; the ones running finish (their checkpoints are kept), then the first failure is raised."""
    runs = _training_runs(settings, variants)
    jobs = training_jobs(settings, _pending_trainings(runs, configs))
    if jobs > 1:
        logger.info("training %d at a time, %d CPU thread(s) each", jobs, child_threads(jobs))
    several_seeds = len(settings.seed_list) > 1
    stop = threading.Event()  # set by the first failure: nothing new starts

    def train(run_settings: AblationSettings, variant: Variant) -> tuple[float | None, bool] | None:
        if stop.is_set():
            return None
        log_file = _log_file(run_settings, variant)
        _note(log_file, f"{variant.name} ({variant.description}), seed {run_settings.seed}: training, "
                        f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
        label = f"{variant.name} (seed {run_settings.seed})" if several_seeds else variant.name
        try:
            return _train(run_settings, variant, configs[variant.name], log_file, label, jobs)
        except BaseException:
            stop.set()
            raise

    done: dict[tuple[int, str], tuple[float | None, bool]] = {}
    failures: list[BaseException] = []
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="training") as pool:
        futures = {pool.submit(train, s, v): (s.seed, v.name) for s, v in runs}
        try:
            for future in as_completed(futures):
                try:
                    outcome = future.result()
                except Exception as e:  # noqa: BLE001 - collected, the first is raised below
                    failures.append(e)
                    continue
                if outcome is not None:
                    done[futures[future]] = outcome
        except BaseException:  # Ctrl-C: start nothing more (the running children get the signal too)
            stop.set()
            raise
    if failures:
        if len(failures) > 1:
            logger.error("%d trainings failed; the first is reported", len(failures))
        raise failures[0]
    return done


def seed_dir(settings: AblationSettings, seed: int) -> Path:
    """Where the runs of one training seed go."""
    return settings.out_dir / f"seed{seed}"


# a recorded figure, printed as such when no run in the output folder tells the pace of this machine
RECORDED_TRAINING = ("6.1 min (baseline) / 7.1 min (multitask) per quick-start training (36 x 400 samples), the two "
                     "side by side with one thread each, on a 2-core AMD EPYC, 2026-12-05")


def plan_summary(settings: AblationSettings, variants: Sequence[Variant], configs: dict[str, CfgNode]) -> str:
    """What an ablation will run, printed before it starts: trainings, test runs and a time estimate from
    earlier trainings of this config in the output folder (else the recorded figure, named as such)."""
    seeds = settings.seed_list
    trained = [v for v in variants if v.trains]
    samples = {v.name: configs[v.name].TRAIN.EPOCH * configs[v.name].DATA.TRAIN.SAMPLE_PER_EPOCH for v in trained}
    tuned = sum(len(v.tune[1]) for v in variants if v.tune) if settings.val_dataset else 0
    predicted = sum(v.classifies and not v.tune for v in variants) if settings.val_dataset else 0
    lines = [f"plan: {len(seeds)} seed(s) x ({len(trained)} trainings of {', '.join(f'{n} {s} samples' for n, s in samples.items())}"
             f" + {len(variants)} test runs + {tuned + predicted} validation runs)"]
    pending = _pending_trainings(_training_runs(settings, variants), configs)
    jobs = training_jobs(settings, pending)
    if jobs > 1:
        lines.append(f"{pending} trainings to run, {jobs} at a time with {child_threads(jobs)} CPU thread(s) each")
    records = [json.loads(f.read_text(encoding="utf-8")) for f in settings.out_dir.glob("seed*/*/train_time.json")]
    alike = [r["seconds"] for r in records if r.get("jobs", 1) == jobs]  # trainings at once change the pace
    if alike:
        minutes = sum(alike) / len(alike) / 60 * -(-pending // jobs)
        lines.append(f"about {minutes:.0f} min of training at the pace of the {len(alike)} earlier training(s) "
                     f"in {settings.out_dir} run {jobs} at a time, plus testing")
    else:
        lines.append(f"no earlier run here to time with {jobs} training(s) at a time; recorded elsewhere: "
                     f"{RECORDED_TRAINING} ({pending} trainings)")
    return "; ".join(lines)


def _settings_record(settings: AblationSettings, variants: Sequence[Variant]) -> dict:
    record = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()}
    return {**record, "seeds": list(settings.seed_list), "variants": [v.name for v in variants]}


def _interval_record(ci) -> dict:
    return {"estimate": ci.estimate, "low": ci.low, "high": ci.high, "level": ci.level, "significant": ci.significant,
            "sequences": ci.sequences, "seeds": ci.seeds}


def _comparison_record(comparison: dict) -> dict:
    return {part: {k: _interval_record(ci) for k, ci in comparison[part].items()} for part in ("overall", "per_challenge")}


def write_json(result: AblationResult, path: Path) -> Path:
    """``{"settings", "runs": {seed: {name: VariantResult fields}}, "summary": {name: {metric: {mean, std,
    seeds}}}, "comparisons": {name: {"overall": {metric: interval}, "per_challenge": {class: interval}}},
    "own_model_comparisons": {test-time variant: {"model", "overall", "per_challenge"}}, "plots"}`` written
    atomically; each run's ``scores.per_sequence`` holds the per-sequence scores."""
    comparisons = result.comparisons
    data = {"settings": result.settings,
            "runs": {str(seed): {n: asdict(v) for n, v in run.items()} for seed, run in result.runs.items()},
            "summary": {n: {m: asdict(s) for m, s in spread.items()} for n, spread in seed_summary(result.runs).items()},
            "comparisons": {n: _comparison_record(c) for n, c in comparisons.to_reference.items()},
            "own_model_comparisons": {n: {"model": comparisons.models[n], **_comparison_record(c)}
                                      for n, c in comparisons.to_own_model.items()},
            "plots": [str(p) for p in result.plots]}
    return atomic_write_text(path, json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")


def _mean_scores(rows: Sequence[VariantResult]) -> dict:
    """Scores of one variant averaged over seeds: AO / AUC, the success curve and per-challenge AO."""
    first = rows[0].scores
    mean = {k: float(np.mean([r.scores[k] for r in rows])) for k in ("ao", "auc")}
    mean["success_curve"] = {"thresholds": first["success_curve"]["thresholds"],
                             "success": np.mean([r.scores["success_curve"]["success"] for r in rows], axis=0).tolist()}
    classes = first.get("per_challenge", {})
    mean["per_challenge"] = {c: {"ao": float(np.mean([r.scores["per_challenge"][c]["ao"] for r in rows]))}
                             for c in classes}
    return mean


def write_plots(result: AblationResult, plot_dir: Path) -> list[Path]:
    """Success plot (mean curve over seeds), per-challenge AO bars (mean, std over seeds as error bars)
    and the differences to the baseline with their 95% intervals, as PNG files."""
    names = list(result.variants)
    rows = {n: [run[n] for run in result.runs.values()] for n in names}
    scores = {n: _mean_scores(r) for n, r in rows.items()}
    errors = None
    if len(result.runs) > 1:
        errors = {n: {c: float(np.std([x.scores["per_challenge"][c]["ao"] for x in r], ddof=1))
                      for c in scores[n]["per_challenge"]} for n, r in rows.items()}
    dataset = result.settings.get("test_dataset", "")
    seeds = f" ({len(result.runs)} seeds)" if len(result.runs) > 1 else ""
    written = [plot_success(scores, plot_dir / "success_plot.png", title=f"Success plot: {dataset}{seeds}")]
    per_challenge = plot_per_challenge(scores, plot_dir / "per_challenge_ao.png",
                                       title=f"AO per challenge: {dataset}{seeds}", errors=errors)
    intervals = {n: {"overall AO": c["overall"]["ao"], **c["per_challenge"]}
                 for n, c in result.comparisons.to_reference.items()}
    differences = plot_differences(intervals, plot_dir / "differences.png")
    return written + [p for p in (per_challenge, differences) if p is not None]


def report_lines(result: AblationResult) -> list[str]:
    """What the ablation and quick-start CLIs print: the tables (one seed in detail, then every seed
    with intervals), the summary and the files written."""
    lines = [format_ablation(result.variants), "", *format_summary(result.variants), ""] if len(result.runs) == 1 else []
    return [*lines, *format_seeds_report(result.runs, comparisons=result.comparisons), "",
            *(f"wrote {path}" for path in [*result.plots, result.json_path])]


# what the ablation CLIs report as bad input when raised before the children start (exit 2: config
# and dataset errors are ValueErrors); anything after, e.g. a RuntimeError of a failed step, exits 1
INPUT_ERRORS = (ValueError, FileNotFoundError)
