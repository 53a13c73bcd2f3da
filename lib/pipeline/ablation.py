"""Ablation of the auxiliary task: train, test and evaluate model variants with the same seed and budget.

Variants (:data:`VARIANTS`):

* ``baseline``: plain HIPTrack (``MODEL.CLS_HEAD.ENABLED=False``), tested with the ``hiptrack`` tracker;
* ``multitask``: HIPTrack-CLS, the classification loss only regularises the shared backbone;
* ``fusion``: HIPTrack-CLS with ``MODEL.CLS_HEAD.FUSION=True`` (head features added before the box head;
  ``STEM_FEATURES`` is switched off, the two exclude each other).

Each variant runs the project's own command-line scripts in a child process (``tracking/train.py``,
then ``tracking/test.py``), so an ablation exercises exactly what a user runs; the results are then
scored in this process with :mod:`lib.test.analysis` and the challenge predictions of the
classification variants are compared with the JSONL labels. Everything a variant writes stays
under ``<out_dir>/<variant>/`` (checkpoints, logs, TensorBoard, results, ``ablation.log`` with the
output of its child processes); :func:`run_ablation` writes ``<out_dir>/ablation.json`` and PNG
plots in ``<out_dir>/plots/``, and :func:`format_ablation` gives the comparison tables.

A variant whose checkpoint of the tested epoch exists is not trained again (unless
``AblationSettings.retrain``), and ``tracking/test.py`` skips sequences with results, so an
interrupted ablation resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml

from lib.challenges import CLASS_NAMES, IGNORE_INDEX
from lib.config.hiptrack import config_from_dict, load_config, resolve_experiment_config
from lib.config.node import CfgNode
from lib.test.analysis import evaluate_results, plot_per_challenge, plot_success
from lib.test.analysis.report import format_table
from lib.test.evaluation.results import read_challenges, results_dir, sequence_files, test_dataset
from lib.utils.atomic import atomic_write_text
from lib.dataset.base import SequenceDataset
from lib.dataset.paths import DatasetPaths, add_path_arguments
from lib.dataset.registry import build_dataset
from lib.train.trainer import config_differences
from lib.utils.runs import RunPaths, epoch_checkpoints

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = REPO_ROOT / "tracking" / "train.py"
TEST_SCRIPT = REPO_ROOT / "tracking" / "test.py"
CLS_TRACKER = "hiptrack_cls"  # the tracker that predicts challenges


@dataclass(frozen=True)
class Variant:
    """One model variant of the ablation."""
    name: str
    tracker: str                 # tracker name of tracking/test.py
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
    "multitask": Variant("multitask", "hiptrack_cls", ("MODEL.CLS_HEAD.ENABLED=True", "MODEL.CLS_HEAD.FUSION=False"),
                         "shared backbone + challenge head (auxiliary loss only)"),
    "fusion": Variant("fusion", "hiptrack_cls", ("MODEL.CLS_HEAD.ENABLED=True", "MODEL.CLS_HEAD.FUSION=True",
                                                "MODEL.CLS_HEAD.INPUT=tokens"),
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
    retrain: bool = False                # train even when the tested checkpoint exists
    extra_train_args: tuple[str, ...] = field(default_factory=tuple)


# the trainer's per-epoch summary line, echoed (shortened) so a long run shows progress
_EPOCH_LINE = re.compile(r"\[train\] (epoch \d+):.*")
_EPOCH_STATS = ("Loss/total", "IoU", "Accuracy")


def _progress_line(line: str) -> str | None:
    """``epoch 8: Loss/total 5.51, IoU 0.423, Accuracy 0.351`` from a trainer epoch summary, else None."""
    match = _EPOCH_LINE.search(line)
    if match is None:
        return None
    stats = [m.group(0) for key in _EPOCH_STATS
             if (m := re.search(rf"(?<![\w/]){re.escape(key)} [-+0-9.einfa]+", line))]
    return f"{match.group(1)}: {', '.join(stats)}"


def _run(cmd: list[str], what: str, log_file: Path) -> float:
    """Run a child process, its output appended to ``log_file`` (epoch summaries also logged here);
    raise with the log's tail on failure."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    logger.info("%s: %s", what, " ".join(cmd))
    start = time.perf_counter()
    with open(log_file, "a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        log.flush()
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace") as child:
            for line in child.stdout:
                log.write(line)
                progress = _progress_line(line)
                if progress:
                    log.flush()
                    logger.info("%s: %s", what, progress)
        code = child.returncode
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


def challenge_labels(dataset: SequenceDataset) -> dict[str, np.ndarray]:
    """``{sequence name: (N,) class ids}`` of a dataset built with challenge labels."""
    return {info.name: info.cls_label.numpy() for info in map(dataset.sequence_info, range(len(dataset)))}


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
    earlier = [path for e, path in epoch_checkpoints(run_paths.checkpoint_dir) if e < epoch]
    if earlier and not settings.retrain:  # an interrupted run: continue it exactly
        _note(log_file, f"{variant.name}: continuing training from {earlier[-1]}")
        cmd = [*cmd[:cmd.index("--opts")], "--resume", str(earlier[-1]), *cmd[cmd.index("--opts"):]]
    stale = results_dir(settings.out_dir / variant.name, variant.tracker, config_name(settings.config),
                        settings.test_dataset)
    if stale.exists():
        _note(log_file, f"{variant.name}: removing test results of the previous checkpoint: {stale}")
        shutil.rmtree(stale)
    seconds = _run(cmd, f"{variant.name}: training", log_file)
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
    checkpoint = RunPaths(settings.out_dir / variant.name, param).checkpoint(cfg.TEST.EPOCH)
    return VariantResult(variant.name, variant.tracker, variant.description, str(checkpoint), str(results),
                         str(log_file), train_seconds, skipped, test_seconds, scores, challenge)


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


def _json_safe(value):
    """JSON-ready copy: paths as text, non-finite floats as null (strict JSON has no NaN)."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_json(result: AblationResult, path: Path) -> Path:
    """``{"settings", "variants": {name: VariantResult fields}, "plots"}`` written atomically."""
    data = {"settings": result.settings, "variants": {n: asdict(v) for n, v in result.variants.items()},
            "plots": [str(p) for p in result.plots]}
    return atomic_write_text(path, json.dumps(_json_safe(data), indent=2) + "\n")


def write_plots(result: AblationResult, plot_dir: Path) -> list[Path]:
    """Success plot and (with labels) per-challenge AO bars of every variant, as PNG files."""
    scores = {name: v.scores for name, v in result.variants.items()}
    dataset = result.settings.get("test_dataset", "")
    written = [plot_success(scores, plot_dir / "success_plot.png", title=f"Success plot: {dataset}")]
    per_challenge = plot_per_challenge(scores, plot_dir / "per_challenge_ao.png", title=f"AO per challenge: {dataset}")
    return written + ([per_challenge] if per_challenge is not None else [])


# -- tables ---------------------------------------------------------------------------------
def _score(value: float | None, fmt: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)


def _train_minutes(v: VariantResult) -> str:
    if v.train_seconds is None:
        return "-"
    return f"{v.train_seconds / 60:.1f}" + ("*" if v.train_skipped else "")


def format_overall_table(variants: Mapping[str, VariantResult]) -> str:
    """One row per variant: AO, SR0.5, SR0.75, AUC (fractions), FPS, challenge accuracy and the
    majority-class accuracy of the same frames (``-`` without a head), training minutes (``*``: the
    checkpoint existed; the time is that of the run that wrote it)."""
    headers = ["Variant", "AO", "SR0.5", "SR0.75", "AUC", "FPS", "ClsAcc", "Majority", "Train min"]
    rows = []
    for name, v in variants.items():
        cls = v.challenge or {}
        rows.append([name, *(_score(v.scores.get(k)) for k in ("ao", "sr50", "sr75", "auc")),
                     _score(v.scores.get("fps"), ".1f"), _score(cls.get("accuracy")), _score(cls.get("majority")),
                     _train_minutes(v)])
    return format_table(headers, rows)


def format_challenge_table(variants: Mapping[str, VariantResult], reference: str = "baseline") -> str:
    """One row per challenge class: frame count, AO of each variant and, when ``reference`` is one of
    them, each other variant's AO minus the reference's. Empty without challenge labels."""
    classes = [c for c in CLASS_NAMES if any(c in v.scores.get("per_challenge", {}) for v in variants.values())]
    if not classes:
        return ""
    others = [n for n in variants if n != reference] if reference in variants else []
    headers = ["Challenge", "Frames", *(f"{n} AO" for n in variants), *(f"Δ {n}" for n in others)]
    rows = []
    for c in classes:
        ao = {n: v.scores["per_challenge"].get(c, {}).get("ao") for n, v in variants.items()}
        frames = max(v.scores["per_challenge"].get(c, {}).get("frames", 0) for v in variants.values())
        deltas = [_delta(ao[n], ao[reference]) for n in others]
        rows.append([c, str(frames), *(_score(ao[n]) for n in variants), *deltas])
    return format_table(headers, rows)


def _delta(value: float | None, reference: float | None) -> str:
    if value is None or reference is None or math.isnan(value) or math.isnan(reference):
        return "-"
    return f"{value - reference:+.3f}"


def format_summary(variants: Mapping[str, VariantResult], reference: str = "baseline") -> list[str]:
    """One line per classifying variant: its AO against the reference's, and its challenge
    accuracy against the majority-class accuracy (``multitask`` is called "auxiliary task")."""
    lines = []
    base = variants.get(reference)
    for name, v in variants.items():
        if not v.classifies:
            continue
        label = "auxiliary task" if name == "multitask" else name
        line = f"{label}: AO {_score(v.scores.get('ao'))}"
        if base is not None:
            line += (f" vs {reference} {_score(base.scores.get('ao'))} "
                     f"(Δ {_delta(v.scores.get('ao'), base.scores.get('ao'))})")
        if v.challenge is not None:
            line += (f"; challenge accuracy {_score(v.challenge['accuracy'])} vs majority-class "
                     f"{_score(v.challenge['majority'])}")
        else:
            line += "; challenge accuracy - (no challenge labels)"
        lines.append(line)
    return lines


def format_ablation(result: AblationResult | Mapping[str, VariantResult]) -> str:
    """The overall table, then (with labels) the per-challenge table, as printed by the scripts."""
    variants = result.variants if isinstance(result, AblationResult) else result
    parts = ["Overall (GOT-10k AO / SR, LaSOT-style AUC: fractions; FPS; challenge accuracy on labelled frames)",
             format_overall_table(variants)]
    if any(v.train_skipped for v in variants.values()):
        parts.append("* training skipped (checkpoint existed): time of the run that wrote it")
    challenges = format_challenge_table(variants)
    if challenges:
        parts += ["", "Per challenge (AO; Δ: variant minus baseline)", challenges]
    return "\n".join(parts)


def report_lines(result) -> list[str]:
    """What the ablation and quick-start CLIs print: the tables, the summary and the files written."""
    return [format_ablation(result), "", *format_summary(result.variants),
            *(f"wrote {path}" for path in [*result.plots, result.json_path])]


# what the ablation CLIs report as bad input (exit 2: config and dataset errors are ValueErrors); a
# RuntimeError is a failed step (exit 1)
INPUT_ERRORS = (ValueError, FileNotFoundError)


def exit_code_of(error: Exception) -> int:
    """A CLI's exit code for ``error``: 2 bad input, 1 a failed step."""
    return 2 if isinstance(error, INPUT_ERRORS) else 1
