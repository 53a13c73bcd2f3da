"""Ablation of the auxiliary task: train, test and evaluate model variants with the same seed and budget.

Variants (:data:`VARIANTS`):

* ``baseline``: plain HIPTrack (``MODEL.CLS_HEAD.ENABLED=False``), tested with the ``hiptrack`` tracker;
* ``multitask``: HIPTrack-CLS, the classification loss only regularises the shared backbone;
* ``fusion``: HIPTrack-CLS with ``MODEL.CLS_HEAD.FUSION=ADD`` (head features added before the box head;
  the head reads tokens only, ``INPUT=tokens``, since the stem input excludes fusion).

Each variant runs the project's own command-line entry points in a child process (``python -m
lib.train.run``, then ``python -m lib.test.run``: what ``tracking/train.py`` / ``tracking/test.py``
run), so an ablation exercises exactly what a user runs. While a variant trains, the epoch records
the trainer appends to its ``metrics.jsonl`` are echoed as progress lines, and the tested epoch's
record goes into the result. The results are then scored in this process with
:mod:`lib.test.analysis` (box metrics, and the challenge accuracy of the classification variants
against the JSONL labels). Everything a variant writes stays under ``<out_dir>/<variant>/``
(checkpoints, ``metrics.jsonl``, logs, TensorBoard, results, ``ablation.log`` with the output of
its child processes); :func:`run_ablation` writes ``<out_dir>/ablation.json`` and PNG plots in
``<out_dir>/plots/``; :func:`report_lines` gives the tables of
:mod:`lib.test.analysis.ablation_report` and the files written.

A variant whose checkpoint of the tested epoch exists is not trained again (unless
``AblationSettings.retrain``), and ``tracking/test.py`` skips sequences with results, so an
interrupted ablation resumes where it stopped.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml

from lib.config.hiptrack import config_from_dict, load_config, resolve_experiment_config
from lib.config.node import CfgNode
from lib.test import run as test_entry
from lib.test.analysis import evaluate_results, plot_per_challenge, plot_success
from lib.test.analysis.ablation_report import format_ablation, format_summary
from lib.test.analysis.challenges import challenge_accuracy, challenge_labels
from lib.test.evaluation.results import results_dir, test_dataset
from lib.utils.atomic import atomic_write_text
from lib.dataset.base import SequenceDataset
from lib.dataset.paths import DatasetPaths, add_path_arguments
from lib.dataset.registry import build_dataset
from lib.train import run as train_entry
from lib.train.trainer import config_differences
from lib.utils.records import JsonlError, json_safe
from lib.utils.runs import RunPaths, drop_metrics_after, epoch_checkpoints, read_metrics

logger = logging.getLogger(__name__)

# the entry points the children run with ``python -m`` (imported, so a rename fails here, not in a child)
TRAIN_MODULE = train_entry.__name__
TEST_MODULE = test_entry.__name__
CLS_TRACKER = "hiptrack_cls"  # the tracker that predicts challenges
POLL_SECONDS = 2.0            # how often a training child's metrics.jsonl is read for progress lines


@dataclass(frozen=True)
class Variant:
    """One model variant of the ablation."""
    name: str
    tracker: str                 # tracker name of lib.test.run (tracking/test.py)
    opts: tuple[str, ...]        # config overrides that make the variant
    description: str

    @property
    def classifies(self) -> bool:
        return self.tracker == CLS_TRACKER


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
}


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
    opts: tuple[str, ...] = ()           # further overrides for every variant
    epoch: int | None = None             # checkpoint epoch to test (default: TEST.EPOCH of the config)
    retrain: bool = False                # train even when the tested checkpoint exists
    extra_train_args: tuple[str, ...] = field(default_factory=tuple)


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


def _run(cmd: list[str], what: str, log_file: Path) -> float:
    """Run a child process, its output appended to ``log_file``; the wall seconds. Raises
    RuntimeError with the log's tail on failure."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    logger.info("%s: %s", what, " ".join(cmd))
    start = time.perf_counter()
    with open(log_file, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        with subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT) as child:
            code = child.wait()
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
    """The training command line of a variant (``python -m lib.train.run``)."""
    return [sys.executable, "-m", TRAIN_MODULE, "--script", "hiptrack", "--config", settings.config,
            "--save_dir", str(settings.out_dir / variant.name), "--mode", "single", "--seed", str(settings.seed),
            "--device", settings.device, "--no_val", *settings.path_args, *settings.extra_train_args,
            "--opts", *_variant_opts(settings, variant)]


def test_command(settings: AblationSettings, variant: Variant) -> list[str]:
    """The test command line of a variant (``python -m lib.test.run``; challenge predictions saved
    when it has a head)."""
    cmd = [sys.executable, "-m", TEST_MODULE, variant.tracker, settings.config, "--dataset", settings.test_dataset,
           "--save_dir", str(settings.out_dir / variant.name), "--device", settings.device,
           "--threads", str(settings.threads), *settings.path_args]
    if variant.classifies:
        cmd.append("--save_cls")
    return [*cmd, "--opts", *_variant_opts(settings, variant)]


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
    challenge: dict | None       # challenge_accuracy output; None without a head or without labels
    train_metrics: dict | None = None  # the tested epoch's train stats from metrics.jsonl (None: no record)

    @property
    def classifies(self) -> bool:
        return self.tracker == CLS_TRACKER


@dataclass
class AblationResult:
    """Every variant of one ablation, in run order, and the files written."""
    settings: dict
    variants: dict[str, VariantResult]
    json_path: Path | None = None
    plots: list[Path] = field(default_factory=list)


def select_variants(names: Sequence[str] | None) -> list[Variant]:
    """The :data:`VARIANTS` of ``names`` (all when ``None``); unknown or repeated names are a ValueError."""
    names = list(VARIANTS) if names is None else list(names)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variant(s) {', '.join(map(repr, unknown))}; valid: {', '.join(VARIANTS)}")
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"give each variant once (at least one), got {names}")
    return [VARIANTS[n] for n in names]


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


def _train(settings: AblationSettings, variant: Variant, cfg: CfgNode, log_file: Path) -> tuple[float | None, bool]:
    """Train unless the tested checkpoint exists; ``(seconds, skipped)``. Training from scratch (or
    on from an earlier epoch of an interrupted run) removes the variant's stale test results."""
    epoch = cfg.TEST.EPOCH
    run_paths = RunPaths(settings.out_dir / variant.name, config_name(settings.config))
    checkpoint, time_file = run_paths.checkpoint(epoch), _train_time_file(settings, variant)
    if checkpoint.is_file() and not settings.retrain:
        _note(log_file, f"{variant.name}: training skipped, {checkpoint} exists (pass --retrain to train again)")
        changes = _config_changes(run_paths.checkpoint_dir, cfg)
        if changes:
            logger.warning("%s: the existing checkpoint was trained with a different config (%s); pass --retrain "
                           "to train with this one", variant.name, "; ".join(changes))
        seconds = json.loads(time_file.read_text(encoding="utf-8"))["seconds"] if time_file.is_file() else None
        return seconds, True
    cmd = train_command(settings, variant)
    earlier = [(e, path) for e, path in epoch_checkpoints(run_paths.checkpoint_dir) if e < epoch]
    start_epoch = 0
    if earlier and not settings.retrain:  # an interrupted run: continue it exactly
        start_epoch, resume_from = earlier[-1]
        _note(log_file, f"{variant.name}: continuing training from {resume_from}")
        cmd = [*cmd[:cmd.index("--opts")], "--resume", str(resume_from), *cmd[cmd.index("--opts"):]]
    stale = results_dir(settings.out_dir / variant.name, variant.tracker, config_name(settings.config),
                        settings.test_dataset)
    if stale.exists():
        _note(log_file, f"{variant.name}: removing test results of the previous checkpoint: {stale}")
        shutil.rmtree(stale)
    # the trainer drops these records itself when it starts; dropping them first keeps them out of
    # the progress lines
    drop_metrics_after(run_paths.metrics_file, start_epoch)
    what = f"{variant.name}: training"
    with echo_epochs(what, run_paths.metrics_file, after_epoch=start_epoch):
        seconds = _run(cmd, what, log_file)
    atomic_write_text(time_file, json.dumps({"seconds": seconds, "epoch": epoch}) + "\n")
    return seconds, False


def _check_inputs(settings: AblationSettings, variants: Sequence[Variant]) -> tuple[SequenceDataset, dict]:
    """Fail before any child runs: configs, test dataset name, dataset roots, label folder.
    Returns the test ground truth (with labels) and ``{variant name: config}``."""
    spec = test_dataset(settings.test_dataset)
    if not spec.has_ground_truth:
        raise ValueError(f"{settings.test_dataset} has no public ground truth, so an ablation cannot score it")
    if settings.cls_ann_dir is not None and not Path(settings.cls_ann_dir).is_dir():
        raise FileNotFoundError(f"challenge label folder {settings.cls_ann_dir} not found (--cls_ann_dir)")
    configs = {v.name: variant_config(settings, v) for v in variants}
    for name, cfg in configs.items():
        if cfg.TEST.EPOCH > cfg.TRAIN.EPOCH:
            raise ValueError(f"{name}: the tested epoch {cfg.TEST.EPOCH} (TEST.EPOCH / --epoch) is beyond "
                             f"TRAIN.EPOCH {cfg.TRAIN.EPOCH}, so training never writes its checkpoint")
    paths = dataset_paths(settings.path_args)
    for name in dict.fromkeys(n for cfg in configs.values() for n in cfg.DATA.TRAIN.DATASETS_NAME):
        build_dataset(name, paths)
    ground_truth = build_dataset(spec.registry_name, paths, cls_ann_dir=settings.cls_ann_dir,
                                 label_seed=settings.seed)  # the training targets' seed: same tie-breaks
    return ground_truth, configs


def run_variant(settings: AblationSettings, variant: Variant, cfg: CfgNode, ground_truth: SequenceDataset,
                labels: dict[str, np.ndarray] | None) -> VariantResult:
    """Train (or reuse the checkpoint), test and score one variant."""
    log_file = settings.out_dir / variant.name / "ablation.log"
    _note(log_file, f"{variant.name} ({variant.description}): {time.strftime('%Y-%m-%d %H:%M:%S')}")
    train_seconds, skipped = _train(settings, variant, cfg, log_file)
    test_seconds = _run(test_command(settings, variant), f"{variant.name}: testing", log_file)
    param = config_name(settings.config)
    results = results_dir(settings.out_dir / variant.name, variant.tracker, param, settings.test_dataset)
    result_format = test_dataset(settings.test_dataset).result_format
    scores = evaluate_results(results, ground_truth, result_format)
    challenge = challenge_accuracy(results, result_format, labels) if variant.classifies and labels else None
    run_paths = RunPaths(settings.out_dir / variant.name, param)
    return VariantResult(variant.name, variant.tracker, variant.description, str(run_paths.checkpoint(cfg.TEST.EPOCH)),
                         str(results), str(log_file), train_seconds, skipped, test_seconds, scores, challenge,
                         train_stats_of_epoch(run_paths.metrics_file, cfg.TEST.EPOCH))


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


def run_ablation(settings: AblationSettings, variants: Sequence[str] | None = None) -> AblationResult:
    """Train, test and score each variant (default: all of :data:`VARIANTS`) in turn; write
    ``<out_dir>/ablation.json`` and the plots of ``<out_dir>/plots/``.

    Raises ValueError / FileNotFoundError (bad variant, config, dataset or label folder, before any
    training) and RuntimeError naming the variant, the step and its log when a child process fails.
    """
    chosen = select_variants(variants)
    ground_truth, configs = _check_inputs(settings, chosen)
    labels = challenge_labels(ground_truth) if settings.cls_ann_dir is not None else None
    done = {v.name: run_variant(settings, v, configs[v.name], ground_truth, labels) for v in chosen}
    result = AblationResult(_settings_record(settings, chosen), done)
    result.plots = write_plots(result, settings.out_dir / "plots")
    result.json_path = write_json(result, settings.out_dir / "ablation.json")
    return result


def _settings_record(settings: AblationSettings, variants: Sequence[Variant]) -> dict:
    record = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()}
    return {**record, "variants": [v.name for v in variants]}


def write_json(result: AblationResult, path: Path) -> Path:
    """``{"settings", "variants": {name: VariantResult fields}, "plots"}`` written atomically."""
    data = {"settings": result.settings, "variants": {n: asdict(v) for n, v in result.variants.items()},
            "plots": [str(p) for p in result.plots]}
    return atomic_write_text(path, json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")


def write_plots(result: AblationResult, plot_dir: Path) -> list[Path]:
    """Success plot and (with labels) per-challenge AO bars of every variant, as PNG files."""
    scores = {name: v.scores for name, v in result.variants.items()}
    dataset = result.settings.get("test_dataset", "")
    written = [plot_success(scores, plot_dir / "success_plot.png", title=f"Success plot: {dataset}")]
    per_challenge = plot_per_challenge(scores, plot_dir / "per_challenge_ao.png", title=f"AO per challenge: {dataset}")
    return written + ([per_challenge] if per_challenge is not None else [])


def report_lines(result: AblationResult) -> list[str]:
    """What the ablation and quick-start CLIs print: the tables, the summary and the files written."""
    return [format_ablation(result.variants), "", *format_summary(result.variants),
            *(f"wrote {path}" for path in [*result.plots, result.json_path])]


# what the ablation CLIs report as bad input (exit 2: config and dataset errors are ValueErrors); a
# RuntimeError is a failed step (exit 1)
INPUT_ERRORS = (ValueError, FileNotFoundError)


def exit_code_of(error: Exception) -> int:
    """A CLI's exit code for ``error``: 2 bad input, 1 a failed step."""
    return 2 if isinstance(error, INPUT_ERRORS) else 1
