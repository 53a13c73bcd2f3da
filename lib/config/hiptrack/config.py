"""HIPTrack configuration: documented defaults, loading, validation and experiment lookup.

A run builds its config as: defaults (below, every key commented) -> experiment YAML ->
``KEY=VALUE`` command-line options -> :func:`validate_config` -> frozen. Defaults are the
original HIPTrack ViT-B values (Cai et al., "HIPTrack: Visual Tracking with Historical
Prompts", CVPR 2024) unless a comment says otherwise.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from lib.challenges import CLASS_NAMES, NUM_CLASSES
from lib.config.node import (
    CfgNode,
    ConfigError,
    config_error,
    Key,
    LegacyKey,
    check_values,
    merge_dict,
    merge_opts,
    merge_yaml,
)

__all__ = [
    "EXPERIMENTS_DIR",
    "LEGACY_KEYS",
    "config_from_dict",
    "derive_unset_keys",
    "get_default_config",
    "load_config",
    "resolve_experiment_config",
    "validate_config",
]

# lib/config/hiptrack/config.py -> repository root is three levels above this package.
REPO_ROOT = Path(__file__).resolve().parents[3]
EXPERIMENTS_DIR = REPO_ROOT / "experiments"

FUSION_MODES = ("NONE", "ADD", "FILM", "GATE")  # see lib/models/layers/cls_head.py

_MODEL = {
    "PRETRAIN_FILE": Key("", "weights to start training from: a file path, or a name looked up in "
                             "$HIPTRACK_PRETRAINED_DIR, then pretrained/; empty = random init; "
                             "not used when testing"),
    "MAX_MEM": Key(150, "historical memory bank capacity in frames (tracking keeps the newest N)"),
    "HIDDEN_DIM": Key(768, "channels of the backbone features that the heads read; must equal the "
                           "embed dim of BACKBONE.TYPE (768 ViT-B, 1024 ViT-L, 64 vit_tiny_test_ce)"),
    "CLS_HEAD": {
        "ENABLED": Key(False, "add the maritime-challenge classification head (HIPTrack-CLS); "
                              "False = plain HIPTrack"),
        "NUM_CLASSES": Key(NUM_CLASSES, "challenge classes; must equal the vocabulary of lib/challenges.py "
                                        "(0 Occlusion ... 9 Normal)"),
        "MODE": Key("single", "single = one challenge per frame (the label rule of lib/challenges.py, softmax, "
                              "TRAIN.CLS_LOSS_TYPE); multi = every flagged challenge (multi-hot target, Normal = no "
                              "flag, independent sigmoids, binary cross-entropy)", choices=("single", "multi")),
        "HIDDEN_DIM": Key(512, "hidden width of the classification MLP"),
        "DROPOUT": Key(0.1, "dropout after the hidden layer of the classification MLP, in [0, 1)"),
        "FUSION": Key("NONE", "how the head's features condition the map the box head reads: NONE = boxes "
                              "exactly HIPTrack's; ADD = a projection added; FILM = (1 + tanh(gamma)) * map + beta; "
                              "GATE = 2 sigmoid(g) * map per channel; each starts as the identity (zero init); "
                              "old True / False read as ADD / NONE",
                      choices=FUSION_MODES, deprecated_values=((True, "ADD"), (False, "NONE"))),
        "INPUT": Key("tokens", "what the head reads: tokens = the mean of the backbone's search tokens; "
                               "tokens+stem = that and the pooled HIP memory-encoder stem of the search crop "
                               "(predicted box as mask; learns from scratch far faster; needs FUSION: NONE)",
                     choices=("tokens", "tokens+stem")),
    },
    "BACKBONE": {
        "TYPE": Key("vit_base_patch16_224_ce",
                    "backbone architecture (registered ViT with candidate elimination)",
                    choices=("vit_base_patch16_224_ce", "vit_large_patch16_224_ce", "vit_tiny_test_ce")),
        "STRIDE": Key(16, "patch size: pixels per token along each side"),
        "CE_LOC": Key([], "block indices (0-based, increasing) that apply candidate elimination; "
                          "empty = no elimination (shipped ViT-B configs: [3, 6, 9])", elem_type=int),
        "CE_KEEP_RATIO": Key([], "fraction of search tokens kept at each CE_LOC block, in (0, 1] "
                                 "(shipped ViT-B configs: [0.7, 0.7, 0.7])", elem_type=float),
        "CE_TEMPLATE_RANGE": Key("CTR_POINT", "template tokens that score search tokens for elimination: "
                                              "CTR_POINT = the template's centre token, ALL = every one",
                                 choices=("ALL", "CTR_POINT")),
    },
    "HEAD": {
        "NUM_CHANNELS": Key(256, "hidden channels of the center head"),
    },
    "HIP": {
        "KEY_DIM": Key(64, "channels of the historical memory keys"),
        "STEM_WIDTH": Key(64, "channels of the memory encoder's first stem stage (stages w, w, 2w, 4w); "
                              "64 = ResNet-18, as released checkpoints and ENCODER_PRETRAINED need; "
                              "smaller values make tiny CPU configs cheaper"),
        "ENCODER_PRETRAINED": Key("", "torchvision ResNet-18 ImageNet state dict for the memory-encoder "
                                      "stem, looked up like PRETRAIN_FILE (needs STEM_WIDTH 64); empty = "
                                      "random init; overwritten when PRETRAIN_FILE is a HIPTrack checkpoint"),
    },
}

_TRAIN = {
    "LR": Key(1e-4, "base learning rate (AdamW) of single-stage training; TWO_STAGE uses "
                    "STAGE1_LR / STAGE2_LR"),
    "WEIGHT_DECAY": Key(1e-4, "AdamW weight decay"),
    "EPOCH": Key(100, "number of training epochs (epochs are counted from 1)"),
    "LR_DROP_EPOCH": Key(80, "step scheduler: multiply the LR by SCHEDULER.DECAY_RATE "
                             "every this many epochs"),
    "BATCH_SIZE": Key(16, "training batch size per process"),
    "NUM_WORKER": Key(8, "data loader worker processes per training process; 0 = load in the main process"),
    "BACKBONE_MULTIPLIER": Key(0.1, "LR multiplier for backbone parameters when they are trained"),
    "GIOU_WEIGHT": Key(2.0, "weight of the GIoU box loss (the focal location loss has weight 1)"),
    "L1_WEIGHT": Key(5.0, "weight of the L1 box loss"),
    "FREEZE_BACKBONE": Key(True, "single stage: freeze the whole ViT backbone, as the original does"),
    "FREEZE_LAYERS": Key([], "ViT block indices kept frozen whenever the backbone trains "
                             "(block 0 also freezes the embeddings)", elem_type=int),
    "SEED": Key(42, "random seed of a run (the command line's --seed overrides it); "
                    "each rank uses seed + rank"),
    "SAVE_INTERVAL": Key(1, "write a checkpoint every this many epochs (the last epoch always)"),
    "KEEP_CHECKPOINTS": Key(0, "keep only the newest N epoch checkpoints; 0 = keep all"),
    "MAX_NONFINITE_STEPS": Key(10, "stop after this many consecutive NaN / inf losses (each is skipped)"),
    "PRINT_INTERVAL": Key(50, "log training statistics every this many iterations"),
    "VAL_EPOCH_INTERVAL": Key(20, "run validation every this many epochs"),
    "GRAD_CLIP_NORM": Key(0.1, "max gradient norm for clipping; 0 disables clipping"),
    "AMP": Key(False, "mixed-precision training: fp16 autocast + GradScaler on CUDA, bf16 autocast on CPU"),
    "AMP_AUTO": Key(False, "with AMP False: mixed precision only where it is fast (CUDA, or a CPU with native bf16 "
                           "kernels: AVX512-BF16 / AMX), fp32 elsewhere"),
    "CHANNELS_LAST": Key(True, "convolution weights (and so their activations) in channels-last layout while "
                               "training: faster convolutions on CPUs (oneDNN) and GPUs; same values up to float "
                               "rounding, checkpoints load either way"),
    "CE_START_EPOCH": Key(20, "epoch at which the candidate-elimination keep ratio starts to decrease"),
    "CE_WARM_EPOCH": Key(80, "epochs over which the keep ratio decreases from 1 to CE_KEEP_RATIO"),
    "DROP_PATH_RATE": Key(0.1, "stochastic depth rate of the ViT backbone (training only)"),
    "CLS_WEIGHT": Key(0.1, "weight of the classification loss in the total loss"),
    "CLS_LOSS_TYPE": Key("CE", "classification loss: CE, FOCAL or LABEL_SMOOTH (single-label mode; "
                               "MODEL.CLS_HEAD.MODE multi needs CE and trains binary cross-entropy)",
                         choices=("CE", "FOCAL", "LABEL_SMOOTH")),
    "CLS_FOCAL_ALPHA": Key(0.25, "FOCAL: scale of the focal loss"),
    "CLS_FOCAL_GAMMA": Key(2.0, "FOCAL: focusing exponent (0 = cross-entropy)"),
    "CLS_LABEL_SMOOTHING": Key(0.1, "LABEL_SMOOTH: probability mass spread over all classes"),
    "CLS_CLASS_WEIGHTS": Key([], "per-class loss weights (NUM_CLASSES entries); empty = all 1; "
                                 "single-label mode only (multi: CLS_POS_WEIGHT)",
                             elem_type=float),
    "CLS_POS_WEIGHT": Key([], "MODEL.CLS_HEAD.MODE multi: weight of the positive term of each class's "
                              "binary cross-entropy (NUM_CLASSES entries > 0, e.g. negatives / positives "
                              "to balance rare challenges); empty = all 1", elem_type=float),
    "CLS_SOFT_TARGETS": Key(False, "MODEL.CLS_HEAD.MODE multi: a flagged VLM challenge's target is its "
                                   "conf in [0, 1] instead of 1 (CV flags and Normal stay 0 / 1)"),
    "FREEZE_CLS_EPOCH": Key(-1, "freeze the classification head from this epoch on; -1 = never"),
    "TWO_STAGE": Key(False, "stage 1 trains the classification head, stage 2 fine-tunes everything "
                            "(needs MODEL.CLS_HEAD.ENABLED)"),
    "STAGE1_EPOCHS": Key(30, "TWO_STAGE: epochs of stage 1"),
    "STAGE1_LR": Key(1e-3, "TWO_STAGE: learning rate of stage 1"),
    "STAGE2_EPOCHS": Key(20, "TWO_STAGE: epochs of stage 2 (EPOCH must be STAGE1_EPOCHS + STAGE2_EPOCHS)"),
    "STAGE2_LR": Key(1e-5, "TWO_STAGE: learning rate of stage 2"),
    "FREEZE_BACKBONE_STAGE1": Key(True, "TWO_STAGE: in stage 1 freeze everything but the classification "
                                        "head; False also trains the backbone in stage 1"),
    "SCHEDULER": {
        "TYPE": Key("step", "LR scheduler: step (StepLR every LR_DROP_EPOCH) or Mstep (MultiStepLR)",
                    choices=("step", "Mstep")),
        "DECAY_RATE": Key(0.1, "step scheduler: LR multiplier applied every LR_DROP_EPOCH epochs"),
        "MILESTONES": Key([], "Mstep scheduler (required there): epochs at which the LR is multiplied "
                              "by GAMMA",
                          elem_type=int),
        "GAMMA": Key(0.1, "Mstep scheduler: LR multiplier at each milestone"),
    },
}


def _data_split(datasets: str, samples: int) -> dict[str, Key]:
    """Keys of a DATA.TRAIN / DATA.VAL split."""
    return {
        "DATASETS_NAME": Key([datasets], "datasets to sample sequences from (names: docs/data.md, "
                                         "Dataset names)"),
        "DATASETS_RATIO": Key([1.0], "relative sampling weight of each dataset "
                                     "(same length as DATASETS_NAME)"),
        "SAMPLE_PER_EPOCH": Key(samples, "samples drawn per epoch, over all processes together"),
        "CLS_ANN_DIR": Key("", "folder of challenge labels <dir>/<seq>/<seq>.jsonl; empty = unlabeled "
                               "(frames get the ignore label -100)"),
    }


def _crop(
    size: int, factor: float, center_jitter: float, scale_jitter: float, number: int, what: str
) -> dict[str, Key]:
    """Keys of a DATA.SEARCH / DATA.TEMPLATE crop."""
    return {
        "SIZE": Key(size, f"{what} crop side in pixels; a multiple of MODEL.BACKBONE.STRIDE; "
                          f"must equal TEST.{what.upper()}_SIZE"),
        "FACTOR": Key(factor, f"{what} crop side relative to sqrt(target w * h)"),
        "CENTER_JITTER": Key(center_jitter, f"{what} crop centre jitter (training augmentation)"),
        "SCALE_JITTER": Key(scale_jitter, f"{what} crop scale jitter (training augmentation)"),
        "NUMBER": Key(number, f"{what} frames per training sample"
                              + ("; the causal sampler needs exactly 1" if what == "template" else "")),
    }


_DATA = {
    "MEAN": Key([0.485, 0.456, 0.406], "RGB normalisation mean (ImageNet; training and tracking)"),
    "STD": Key([0.229, 0.224, 0.225], "RGB normalisation std (ImageNet; training and tracking)"),
    "MAX_SAMPLE_INTERVAL": Key(70, "max frame gap between consecutive sampled frames"),
    "MIN_SEQUENCE_LENGTH": Key(20, "sequences with fewer frames are never sampled (the original's rule; "
                                   "lower it for short generated sequences)"),
    # checked before epoch 1 (lib/dataset/check.py) so a broken sequence cannot crash a run hours in
    "ON_BAD_SEQUENCE": Key("skip", "a sequence broken on disk (frame folder or frame missing, annotation file "
                                   "short or missing, no usable box): skip = drop it with a warning and count "
                                   "it (Data/skipped_sequences); error = stop before training (exit 2)",
                           choices=("skip", "error")),
    "TRAIN": _data_split("GOT10K_train_full", 60000),
    "VAL": _data_split("GOT10K_official_val", 10000),
    "SEARCH": _crop(384, 5.0, 4.5, 0.5, 5, "search"),
    "TEMPLATE": _crop(192, 2.0, 0.0, 0.0, 1, "template"),
}

POLICY_SOURCES = ("predicted", "oracle")  # see lib/test/tracker/policies.py

_POLICY = {
    "SOURCE": Key("predicted", "what drives the policies: predicted = the head's (smoothed) probabilities "
                               "(hiptrack_cls tracker); oracle = the frame's ground-truth flags (tracking/test.py "
                               "--cls_ann_dir; unlabeled frames = no challenge)", choices=POLICY_SOURCES),
    "MEMORY_GATE": Key(False, "frames with a MEMORY_GATE_CLASSES challenge are not written to the historical "
                              "memory; a vetoed write goes to the next frame without one"),
    "MEMORY_GATE_CLASSES": Key(["Occlusion", "Partial Visibility", "Motion Blur"],
                               "challenge names (lib/challenges.py) that veto a memory write"),
    "MEMORY_GATE_THRESHOLD": Key(0.5, "a listed class vetoes when its probability is >= this, in [0, 1]"),
    "SEARCH_ADAPT": Key(False, "after a frame with a SEARCH_ADAPT_CLASSES challenge or a low score peak, crop "
                               "the next frame with TEST.SEARCH_FACTOR * SEARCH_ADAPT_FACTOR"),
    "SEARCH_ADAPT_CLASSES": Key(["Occlusion", "Motion Blur", "Scale Variation"],
                                "challenge names (lib/challenges.py) that grow the next search region"),
    "SEARCH_ADAPT_THRESHOLD": Key(0.5, "a listed class triggers when its probability is >= this, in [0, 1]"),
    "SEARCH_ADAPT_MIN_SCORE": Key(0.0, "also grow the next search region when the peak of the Hann-windowed "
                                       "score map is below this, in [0, 1]; 0 = do not use the score"),
    "SEARCH_ADAPT_FACTOR": Key(1.5, "multiplier (> 1) of TEST.SEARCH_FACTOR for a grown search region"),
    "DAMPING": Key(False, "on frames with a DAMPING_CLASSES challenge, penalise displacement and size changes "
                          "more (DAMPING_WINDOW_POWER, DAMPING_SIZE_RATE)"),
    "DAMPING_CLASSES": Key(["Background Clutter", "Low Contrast Object"],
                           "challenge names (lib/challenges.py) that damp the frame's box"),
    "DAMPING_THRESHOLD": Key(0.5, "a listed class triggers when its probability is >= this, in [0, 1]"),
    "DAMPING_WINDOW_POWER": Key(2.0, "damped frames weight the score map with the Hann window to this power (> 1)"),
    "DAMPING_SIZE_RATE": Key(0.5, "damped frames take w, h = rate * predicted + (1 - rate) * previous, rate in "
                                  "(0, 1]"),
}
# the policy switches and the class-list / threshold keys of each
_POLICY_CLASS_KEYS = (("MEMORY_GATE", "MEMORY_GATE_CLASSES", "MEMORY_GATE_THRESHOLD"),
                      ("SEARCH_ADAPT", "SEARCH_ADAPT_CLASSES", "SEARCH_ADAPT_THRESHOLD"),
                      ("DAMPING", "DAMPING_CLASSES", "DAMPING_THRESHOLD"))

_TEST = {
    "TEMPLATE_FACTOR": Key(2.0, "template crop side relative to sqrt(target w * h) at inference"),
    "TEMPLATE_SIZE": Key(0, "template crop side at inference; 0 = DATA.TEMPLATE.SIZE, the only other "
                            "legal value (the position embeddings are built for one size)"),
    "SEARCH_FACTOR": Key(5.0, "search crop side relative to sqrt(target w * h) at inference"),
    "SEARCH_SIZE": Key(0, "search crop side at inference; 0 = DATA.SEARCH.SIZE, the only other legal "
                          "value"),
    "EPOCH": Key(100, "checkpoint epoch tracking/test.py loads unless given --epoch or --checkpoint"),
    "UPDATE_INTERVAL": Key(20, "after warm-up, write a frame to the historical memory every N frames"),
    "WARMUP_FRAMES": Key(10, "frames 1..N read only the template memory, as the original"),
    "WARMUP_WRITE_FRAMES": Key([5, 10], "frames written to memory during warm-up, "
                                        "each in [1, WARMUP_FRAMES]"),
    "PRECISION": Key("fp32", "inference precision: fp32, or bf16 (conv / linear weights cast once, bf16 autocast); "
                             "bf16 is fast only on CPUs with AVX512-BF16 / AMX", choices=("fp32", "bf16")),
    "PACKED_LINEAR": Key(True, "on the CPU, linear layers of at least 256x256 weights run through oneDNN with "
                               "their weights packed once, in the tracker's own copy of the network (ViT-B "
                               "frames about 10 % faster; boxes equal up to float rounding); False: torch's linear"),
    "CLS_SMOOTHING": Key(0.0, "a in [0, 1): the policies read p_t = a * p_(t-1) + (1 - a) * raw_t of the head's "
                              "challenge probabilities; 0 = raw; <seq>_cls.txt keeps the raw ones"),
    "POLICY": _POLICY,
}

_TEST_SIZE_SOURCES = (("TEST.SEARCH_SIZE", "DATA.SEARCH.SIZE"), ("TEST.TEMPLATE_SIZE", "DATA.TEMPLATE.SIZE"))

_SCHEMA = {"MODEL": _MODEL, "TRAIN": _TRAIN, "DATA": _DATA, "TEST": _TEST}

_INERT = "inert in the original HIPTrack; the value is ignored"
_IGNORED = ("MODEL.EXTRA_MERGER", "MODEL.RETURN_INTER", "MODEL.RETURN_STAGES", "MODEL.BACKBONE.MID_PE",
            "MODEL.BACKBONE.MERGE_LAYER", "MODEL.BACKBONE.ADD_CLS_TOKEN", "MODEL.BACKBONE.CLS_TOKEN_USE_MODE",
            "TRAIN.DEEP_SUPERVISION", "TRAIN.TRAIN_CLS")


def _stem_features_to_input(stem_features: Any) -> Any:
    """``MODEL.CLS_HEAD.INPUT`` value of a legacy ``STEM_FEATURES`` bool; anything else passes through unchanged,
    so the check of ``INPUT`` refuses it."""
    if stem_features is True:
        return "tokens+stem"
    if stem_features is False:
        return "tokens"
    return stem_features


LEGACY_KEYS: dict[str, LegacyKey] = {
    **{key: LegacyKey("ignore", _INERT) for key in _IGNORED},
    "DATA.MAX_JUMP": LegacyKey("ignore", "the causal sampler uses DATA.MAX_SAMPLE_INTERVAL"),
    # keys of the original's configs that had exactly one working value
    "MODEL.NEW_HIP": LegacyKey("fixed", "HIPTrack without the historical prompt network is not implemented "
                                        "(the original crashes with False)", value=True),
    "MODEL.BACKBONE.CAT_MODE": LegacyKey("fixed", "template and search tokens are always joined directly",
                                         value="direct"),
    "MODEL.BACKBONE.SEP_SEG": LegacyKey("fixed", "separate segment embeddings are not implemented", value=False),
    "MODEL.HEAD.TYPE": LegacyKey("fixed", "the CENTER box head is the only head", value="CENTER"),
    "TRAIN.OPTIMIZER": LegacyKey("fixed", "AdamW is the only optimiser", value="ADAMW"),
    "DATA.SAMPLER_MODE": LegacyKey("fixed", "the causal sampler (template first, then increasing frame ids) is "
                                            "the only sampler", value="causal"),
    "MODEL.BOTTLENECK_DIM": LegacyKey(
        "error",
        "MODEL.BOTTLENECK_DIM was removed: the optional classification->box fusion now projects to the "
        "channel count of the map the box head reads (the backbone embed dim, 768 for ViT-B), so the "
        "256-vs-768 mismatch cannot happen. Delete the key; enable fusion with "
        "MODEL.CLS_HEAD.FUSION: ADD.",
    ),
    "MODEL.CLS_HEAD.STEM_FEATURES": LegacyKey(
        "renamed", "the head's input is one choice now: STEM_FEATURES True is INPUT: tokens+stem, False is "
                   "INPUT: tokens", new_key="MODEL.CLS_HEAD.INPUT", convert=_stem_features_to_input),
}


def get_default_config() -> CfgNode:
    """A fresh, unfrozen config holding the defaults (independent of every other call)."""
    return CfgNode(_SCHEMA, legacy_keys=LEGACY_KEYS)


def load_config(
    yaml_path: str | os.PathLike | None = None,
    opts: Sequence[str] | None = None,
    validate: bool = True,
) -> CfgNode:
    """Defaults -> YAML file -> ``KEY=VALUE`` options -> validation -> frozen config.

    One :class:`ConfigError` lists the problems of the file and of the options together.
    """
    cfg = get_default_config()
    problems: list[str] = []
    for merge, source in ((merge_yaml, yaml_path), (merge_opts, opts)):
        if not source:
            continue
        try:
            merge(cfg, source)
        except ConfigError as exc:
            problems.extend(exc.problems)
    if problems:
        raise config_error(problems)
    derive_unset_keys(cfg)
    if validate:
        validate_config(cfg)
    return cfg.freeze()


def derive_unset_keys(cfg: CfgNode) -> CfgNode:
    """Fill keys whose value 0 means "the same as another key" (the TEST crop sizes); returns ``cfg``."""
    for test_key, data_key in _TEST_SIZE_SOURCES:
        if _get(cfg, test_key) == 0:
            setattr(cfg.TEST, test_key.split(".")[1], _get(cfg, data_key))
    return cfg


def config_from_dict(
    data: Mapping[str, Any], source: str = "saved config", validate: bool = True
) -> CfgNode:
    """Rebuild a frozen config from :meth:`CfgNode.to_dict` output (e.g. stored in a checkpoint)."""
    cfg = derive_unset_keys(merge_dict(get_default_config(), data, source=source))
    if validate:
        validate_config(cfg)
    return cfg.freeze()


def resolve_experiment_config(name_or_path: str | os.PathLike, script: str = "hiptrack") -> Path:
    """Path of an experiment YAML: an existing file as is, else ``experiments/<script>/<name>.yaml``."""
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate
    if len(candidate.parts) > 1:  # clearly meant as a path, not an experiment name
        raise FileNotFoundError(f"config file '{candidate}' does not exist")
    name = candidate.name.removesuffix(".yaml")
    exp_dir = EXPERIMENTS_DIR / script
    path = exp_dir / f"{name}.yaml"
    if path.is_file():
        return path
    available = sorted(p.stem for p in exp_dir.glob("*.yaml"))
    raise FileNotFoundError(
        f"no experiment config '{name}' in '{exp_dir}'; available: {', '.join(available) or 'none'}"
    )


# -- validation ---------------------------------------------------------------------------
def validate_config(cfg: CfgNode) -> None:
    """Check types, choices and cross-field constraints; raise one error listing every problem."""
    errors = check_values(cfg)
    if not errors:  # cross-field checks assume well-typed values
        for check in (_check_model, _check_train, _check_data, _check_test):
            errors.extend(check(cfg))
    if errors:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(errors))


def _get(cfg: CfgNode, dotted: str) -> Any:
    """Value of a dotted key."""
    node: Any = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def _at_least(cfg: CfgNode, minimum: float, *keys: str) -> Iterator[str]:
    """Errors for keys whose value is below ``minimum``."""
    for key in keys:
        if _get(cfg, key) < minimum:
            yield f"{key} must be >= {minimum}, got {_get(cfg, key)}"


def _positive(cfg: CfgNode, *keys: str) -> Iterator[str]:
    """Errors for keys whose value is not strictly positive."""
    for key in keys:
        if not _get(cfg, key) > 0:
            yield f"{key} must be > 0, got {_get(cfg, key)}"


def _strictly_increasing(values: Sequence[float]) -> bool:
    return all(a < b for a, b in zip(values, values[1:]))


def _check_model(cfg: CfgNode) -> Iterator[str]:
    """Model switches that must stay fixed, sizes, and candidate elimination."""
    yield from _at_least(cfg, 1, "MODEL.MAX_MEM", "MODEL.BACKBONE.STRIDE", "MODEL.HEAD.NUM_CHANNELS",
                         "MODEL.HIP.KEY_DIM", "MODEL.HIP.STEM_WIDTH")
    if cfg.MODEL.HIP.ENCODER_PRETRAINED and cfg.MODEL.HIP.STEM_WIDTH != 64:
        yield (f"MODEL.HIP.ENCODER_PRETRAINED holds a ResNet-18 stem (width 64) but MODEL.HIP.STEM_WIDTH="
               f"{cfg.MODEL.HIP.STEM_WIDTH}: set STEM_WIDTH: 64 or ENCODER_PRETRAINED: ''")
    ce_loc, keep = cfg.MODEL.BACKBONE.CE_LOC, cfg.MODEL.BACKBONE.CE_KEEP_RATIO
    if len(ce_loc) != len(keep):
        yield (f"MODEL.BACKBONE.CE_LOC (length {len(ce_loc)}) and MODEL.BACKBONE.CE_KEEP_RATIO "
               f"(length {len(keep)}) must have the same length")
    if any(i < 0 for i in ce_loc) or not _strictly_increasing(ce_loc):
        yield f"MODEL.BACKBONE.CE_LOC must be non-negative and strictly increasing, got {ce_loc}"
    if not all(0 < r <= 1 for r in keep):
        yield f"MODEL.BACKBONE.CE_KEEP_RATIO entries must be in (0, 1], got {keep}"
    yield from _check_cls_head(cfg)


def _check_cls_head(cfg: CfgNode) -> Iterator[str]:
    """Classification head sizes and the options that need the head."""
    head = cfg.MODEL.CLS_HEAD
    yield from _at_least(cfg, 1, "MODEL.HIDDEN_DIM", "MODEL.CLS_HEAD.HIDDEN_DIM")
    if head.NUM_CLASSES != NUM_CLASSES:
        yield (f"MODEL.CLS_HEAD.NUM_CLASSES must be {NUM_CLASSES}, the challenge classes of lib/challenges.py "
               f"({', '.join(CLASS_NAMES)}); got {head.NUM_CLASSES}")
    if not 0 <= head.DROPOUT < 1:
        yield f"MODEL.CLS_HEAD.DROPOUT must be in [0, 1), got {head.DROPOUT}"
    reads_stem = head.INPUT == "tokens+stem"
    fusion = head.FUSION != "NONE"
    if fusion and reads_stem:
        yield (f"MODEL.CLS_HEAD.FUSION: {head.FUSION} and MODEL.CLS_HEAD.INPUT: tokens+stem exclude each other (the "
               "stem reads the predicted box, fusion changes it): set FUSION: NONE or INPUT: tokens")
    if not head.ENABLED:
        for key, on in (("MODEL.CLS_HEAD.FUSION", fusion), ("MODEL.CLS_HEAD.INPUT: tokens+stem", reads_stem),
                        ("TRAIN.TWO_STAGE", cfg.TRAIN.TWO_STAGE)):
            if on:
                yield f"{key} needs the classification head: set MODEL.CLS_HEAD.ENABLED: True"
    yield from _check_label_mode(cfg)


def _check_label_mode(cfg: CfgNode) -> Iterator[str]:
    """Loss keys that belong to one label mode: CLS_LOSS_TYPE / CLS_CLASS_WEIGHTS to single, the
    binary cross-entropy's CLS_POS_WEIGHT / CLS_SOFT_TARGETS to multi."""
    train = cfg.TRAIN
    if cfg.MODEL.CLS_HEAD.MODE == "multi":
        if train.CLS_LOSS_TYPE != "CE":
            yield (f"TRAIN.CLS_LOSS_TYPE: {train.CLS_LOSS_TYPE} is a single-label loss; MODEL.CLS_HEAD.MODE: multi "
                   "trains binary cross-entropy: set TRAIN.CLS_LOSS_TYPE: CE or MODEL.CLS_HEAD.MODE: single")
        if train.CLS_CLASS_WEIGHTS:
            yield ("TRAIN.CLS_CLASS_WEIGHTS weighs the single-label loss and is not used with MODEL.CLS_HEAD.MODE: "
                   "multi: set TRAIN.CLS_CLASS_WEIGHTS: [] (balance classes with TRAIN.CLS_POS_WEIGHT)")
    else:
        for key, on in (("TRAIN.CLS_POS_WEIGHT", bool(train.CLS_POS_WEIGHT)),
                        ("TRAIN.CLS_SOFT_TARGETS", train.CLS_SOFT_TARGETS)):
            if on:
                yield f"{key} needs MODEL.CLS_HEAD.MODE: multi (the single-label loss does not read it)"


def _check_train(cfg: CfgNode) -> Iterator[str]:
    """Optimisation, schedule and logging settings."""
    yield from _positive(cfg, "TRAIN.LR", "TRAIN.SCHEDULER.DECAY_RATE", "TRAIN.SCHEDULER.GAMMA")
    yield from _at_least(cfg, 0, "TRAIN.WEIGHT_DECAY", "TRAIN.NUM_WORKER", "TRAIN.BACKBONE_MULTIPLIER",
                         "TRAIN.GIOU_WEIGHT", "TRAIN.L1_WEIGHT", "TRAIN.GRAD_CLIP_NORM",
                         "TRAIN.CE_START_EPOCH", "TRAIN.CE_WARM_EPOCH", "TRAIN.DROP_PATH_RATE")
    yield from _at_least(cfg, 1, "TRAIN.EPOCH", "TRAIN.LR_DROP_EPOCH", "TRAIN.BATCH_SIZE",
                         "TRAIN.PRINT_INTERVAL", "TRAIN.VAL_EPOCH_INTERVAL", "TRAIN.SAVE_INTERVAL",
                         "TRAIN.MAX_NONFINITE_STEPS")
    yield from _at_least(cfg, 0, "TRAIN.KEEP_CHECKPOINTS", "TRAIN.SEED")
    if cfg.TRAIN.DROP_PATH_RATE >= 1:
        yield f"TRAIN.DROP_PATH_RATE must be < 1, got {cfg.TRAIN.DROP_PATH_RATE}"
    layers = cfg.TRAIN.FREEZE_LAYERS
    if any(i < 0 for i in layers) or len(set(layers)) != len(layers):
        yield f"TRAIN.FREEZE_LAYERS must hold distinct non-negative block indices, got {layers}"
    yield from _check_cls_training(cfg)
    milestones = cfg.TRAIN.SCHEDULER.MILESTONES
    if cfg.TRAIN.SCHEDULER.TYPE == "Mstep" and not milestones:
        yield "TRAIN.SCHEDULER.MILESTONES must be non-empty when TRAIN.SCHEDULER.TYPE is Mstep"
    if any(m < 1 for m in milestones) or not _strictly_increasing(milestones):
        yield f"TRAIN.SCHEDULER.MILESTONES must be positive and strictly increasing, got {milestones}"


def _check_cls_training(cfg: CfgNode) -> Iterator[str]:
    """Classification loss settings and the two-stage schedule."""
    train = cfg.TRAIN
    yield from _at_least(cfg, 0, "TRAIN.CLS_WEIGHT", "TRAIN.CLS_FOCAL_GAMMA")
    yield from _positive(cfg, "TRAIN.CLS_FOCAL_ALPHA")
    if not 0 <= train.CLS_LABEL_SMOOTHING < 1:
        yield f"TRAIN.CLS_LABEL_SMOOTHING must be in [0, 1), got {train.CLS_LABEL_SMOOTHING}"
    weights = train.CLS_CLASS_WEIGHTS
    if weights and len(weights) != cfg.MODEL.CLS_HEAD.NUM_CLASSES:
        yield (f"TRAIN.CLS_CLASS_WEIGHTS has {len(weights)} entries, MODEL.CLS_HEAD.NUM_CLASSES is "
               f"{cfg.MODEL.CLS_HEAD.NUM_CLASSES}")
    if weights and (any(w < 0 for w in weights) or sum(weights) <= 0):
        yield f"TRAIN.CLS_CLASS_WEIGHTS must be non-negative with a positive sum, got {weights}"
    pos_weight = train.CLS_POS_WEIGHT
    if pos_weight and len(pos_weight) != cfg.MODEL.CLS_HEAD.NUM_CLASSES:
        yield (f"TRAIN.CLS_POS_WEIGHT has {len(pos_weight)} entries, MODEL.CLS_HEAD.NUM_CLASSES is "
               f"{cfg.MODEL.CLS_HEAD.NUM_CLASSES}")
    if not all(math.isfinite(w) and w > 0 for w in pos_weight):
        yield f"TRAIN.CLS_POS_WEIGHT entries must be finite and > 0, got {pos_weight}"
    if train.FREEZE_CLS_EPOCH == 0 or train.FREEZE_CLS_EPOCH < -1:
        yield f"TRAIN.FREEZE_CLS_EPOCH must be -1 (never) or an epoch >= 1, got {train.FREEZE_CLS_EPOCH}"
    if train.TWO_STAGE:
        yield from _at_least(cfg, 1, "TRAIN.STAGE1_EPOCHS", "TRAIN.STAGE2_EPOCHS")
        yield from _positive(cfg, "TRAIN.STAGE1_LR", "TRAIN.STAGE2_LR")
        if train.EPOCH != train.STAGE1_EPOCHS + train.STAGE2_EPOCHS:
            yield (f"TRAIN.EPOCH ({train.EPOCH}) must equal TRAIN.STAGE1_EPOCHS + TRAIN.STAGE2_EPOCHS "
                   f"({train.STAGE1_EPOCHS} + {train.STAGE2_EPOCHS}) when TRAIN.TWO_STAGE is True")


def _check_data(cfg: CfgNode) -> Iterator[str]:
    """Normalisation, dataset lists and crop geometry."""
    for key in ("DATA.MEAN", "DATA.STD"):
        if len(_get(cfg, key)) != 3:
            yield f"{key} must have 3 entries (RGB), got {_get(cfg, key)}"
    if not all(s > 0 for s in cfg.DATA.STD):
        yield f"DATA.STD entries must be > 0, got {cfg.DATA.STD}"
    yield from _at_least(cfg, 1, "DATA.MAX_SAMPLE_INTERVAL", "DATA.MIN_SEQUENCE_LENGTH")
    for split in ("TRAIN", "VAL"):
        yield from _check_split(cfg, split)
    stride = cfg.MODEL.BACKBONE.STRIDE
    for crop in ("SEARCH", "TEMPLATE"):
        prefix = f"DATA.{crop}"
        yield from _at_least(cfg, 1, f"{prefix}.NUMBER")
        yield from _positive(cfg, f"{prefix}.SIZE", f"{prefix}.FACTOR")
        yield from _at_least(cfg, 0, f"{prefix}.CENTER_JITTER", f"{prefix}.SCALE_JITTER")
        yield from _multiple_of_stride(cfg, f"{prefix}.SIZE", stride)


def _check_split(cfg: CfgNode, split: str) -> Iterator[str]:
    """One DATA.TRAIN / DATA.VAL split: names, matching ratios, sample count."""
    prefix = f"DATA.{split}"
    names, ratios = _get(cfg, f"{prefix}.DATASETS_NAME"), _get(cfg, f"{prefix}.DATASETS_RATIO")
    if not names:
        yield f"{prefix}.DATASETS_NAME must name at least one dataset"
    if len(names) != len(ratios):
        yield (f"{prefix}.DATASETS_NAME (length {len(names)}) and {prefix}.DATASETS_RATIO "
               f"(length {len(ratios)}) must have the same length")
    if any(r < 0 for r in ratios) or (ratios and sum(ratios) <= 0):
        yield f"{prefix}.DATASETS_RATIO must be non-negative with a positive sum, got {ratios}"
    yield from _at_least(cfg, 1, f"{prefix}.SAMPLE_PER_EPOCH")


def _multiple_of_stride(cfg: CfgNode, key: str, stride: int) -> Iterator[str]:
    if stride > 0 and _get(cfg, key) % stride:
        yield f"{key} ({_get(cfg, key)}) must be a multiple of MODEL.BACKBONE.STRIDE ({stride})"


def _check_test(cfg: CfgNode) -> Iterator[str]:
    """Inference geometry (must match training), the memory update schedule and the tracking policies."""
    yield from _positive(cfg, "TEST.TEMPLATE_FACTOR", "TEST.SEARCH_FACTOR")
    yield from _at_least(cfg, 1, "TEST.EPOCH", "TEST.UPDATE_INTERVAL")
    yield from _at_least(cfg, 0, "TEST.WARMUP_FRAMES")
    for test_key, data_key in _TEST_SIZE_SOURCES:
        if _get(cfg, test_key) == 0:  # derived by load_config / config_from_dict
            continue
        yield from _multiple_of_stride(cfg, test_key, cfg.MODEL.BACKBONE.STRIDE)
        if _get(cfg, test_key) != _get(cfg, data_key):
            yield (f"{test_key} ({_get(cfg, test_key)}) must equal {data_key} ({_get(cfg, data_key)}): "
                   "the position embeddings are built for one size")
    writes, warmup = cfg.TEST.WARMUP_WRITE_FRAMES, cfg.TEST.WARMUP_FRAMES
    if not all(1 <= f <= warmup for f in writes) or not _strictly_increasing(writes):
        yield (f"TEST.WARMUP_WRITE_FRAMES entries must be strictly increasing and in "
               f"[1, TEST.WARMUP_FRAMES={warmup}], got {writes}")
    yield from _check_policies(cfg)


def _check_policies(cfg: CfgNode) -> Iterator[str]:
    """Challenge-aware tracking policies: class names, thresholds, factors, and the head they read."""
    policy = cfg.TEST.POLICY
    if not 0 <= cfg.TEST.CLS_SMOOTHING < 1:
        yield f"TEST.CLS_SMOOTHING must be in [0, 1), got {cfg.TEST.CLS_SMOOTHING}"
    for switch, classes_key, threshold_key in _POLICY_CLASS_KEYS:
        classes = policy[classes_key]
        unknown = [name for name in classes if name not in CLASS_NAMES]
        if unknown:
            yield (f"TEST.POLICY.{classes_key} has unknown challenge names {unknown}; valid names (lib/challenges.py): "
                   f"{', '.join(CLASS_NAMES)}")
        if not 0 <= policy[threshold_key] <= 1:
            yield f"TEST.POLICY.{threshold_key} must be in [0, 1], got {policy[threshold_key]}"
        score_only = switch == "SEARCH_ADAPT" and policy.SEARCH_ADAPT_MIN_SCORE > 0
        if policy[switch] and not classes and not score_only:
            yield f"TEST.POLICY.{classes_key} must name at least one challenge when TEST.POLICY.{switch} is True"
    if not 0 <= policy.SEARCH_ADAPT_MIN_SCORE <= 1:
        yield f"TEST.POLICY.SEARCH_ADAPT_MIN_SCORE must be in [0, 1], got {policy.SEARCH_ADAPT_MIN_SCORE}"
    for key in ("SEARCH_ADAPT_FACTOR", "DAMPING_WINDOW_POWER"):
        if not policy[key] > 1:
            yield f"TEST.POLICY.{key} must be > 1, got {policy[key]}"
    if not 0 < policy.DAMPING_SIZE_RATE <= 1:
        yield f"TEST.POLICY.DAMPING_SIZE_RATE must be in (0, 1], got {policy.DAMPING_SIZE_RATE}"
    enabled = [f"TEST.POLICY.{switch}" for switch, _, _ in _POLICY_CLASS_KEYS if policy[switch]]
    if enabled and policy.SOURCE == "predicted" and not cfg.MODEL.CLS_HEAD.ENABLED:
        yield (f"TEST.POLICY.SOURCE predicted (the source of {', '.join(enabled)}) reads the classification "
               "head: set MODEL.CLS_HEAD.ENABLED: True (hiptrack_cls tracker) or TEST.POLICY.SOURCE: oracle")
