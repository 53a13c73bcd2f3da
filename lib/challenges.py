"""The maritime challenge vocabulary: one home for class names and ids, flag keys and the labelling rule.

Every search frame is labelled with one of ten challenge classes (ids 0..9, :class:`Challenge`).
Per-frame annotations (JSONL, see ``lib/dataset/challenge_labels.py``) carry binary flags from two
sources: a vision-language model (``vlm_response``: occlusion, motion blur, illumination change,
partial visibility, variance in appearance, background clutter) and classical measurements
(``cv_response``: scale variation, low resolution, low contrast). The single-label target of a
frame is decided by :func:`primary_label`:

1. the first VLM flag set, in the order of :data:`VLM_PRIORITY`;
2. else one of the CV flags set; with several set the choice is a stable hash of
   ``(seed, sequence, frame)`` (``zlib.crc32``), the same in every process, worker and order;
3. else Normal.

The multi-label target (:func:`flagged_classes`) is every class whose flag is set, or Normal alone.
Frames without an annotation get :data:`IGNORE_INDEX`, which every loss and metric skips.
Datasets, losses, metrics, the synthetic generator and the analysis all import from here.
"""
from __future__ import annotations

import zlib
from collections.abc import Hashable, Mapping
from enum import IntEnum


class Challenge(IntEnum):
    """Challenge class ids (the order of the classification head's logits)."""
    OCCLUSION = 0
    ILLUMINATION_CHANGE = 1
    SCALE_VARIATION = 2
    MOTION_BLUR = 3
    VARIANCE_IN_APPEARANCE = 4
    PARTIAL_VISIBILITY = 5
    LOW_RESOLUTION = 6
    BACKGROUND_CLUTTER = 7
    LOW_CONTRAST_OBJECT = 8
    NORMAL = 9


CLASS_NAMES: tuple[str, ...] = (  # display names, index = class id
    "Occlusion",
    "Illumination Change",
    "Scale Variation",
    "Motion Blur",
    "Variance in Appearance",
    "Partial Visibility",
    "Low Resolution",
    "Background Clutter",
    "Low Contrast Object",
    "Normal",
)
NUM_CLASSES = len(CLASS_NAMES)
NORMAL = int(Challenge.NORMAL)
IGNORE_INDEX = -100  # label of a frame without an annotation: skipped by losses and metrics

# (VLM flag key, class id) in priority order: the first flag set decides the label
VLM_PRIORITY: tuple[tuple[str, int], ...] = tuple((key, int(c)) for key, c in (
    ("occlusion", Challenge.OCCLUSION),
    ("motion_blur", Challenge.MOTION_BLUR),
    ("illu_change", Challenge.ILLUMINATION_CHANGE),
    ("partial_visibility", Challenge.PARTIAL_VISIBILITY),
    ("variance_appear", Challenge.VARIANCE_IN_APPEARANCE),
    ("background_clutter", Challenge.BACKGROUND_CLUTTER),
))
# (CV flag key, class id): with several set, one of them is picked by a seeded hash
CV_FLAGS: tuple[tuple[str, int], ...] = tuple((key, int(c)) for key, c in (
    ("scale_variation", Challenge.SCALE_VARIATION),
    ("low_res", Challenge.LOW_RESOLUTION),
    ("low_contrast", Challenge.LOW_CONTRAST_OBJECT),
))
# annotation flag key -> class id (Normal has no flag: it is the absence of every flag)
FLAG_CLASS: dict[str, int] = dict(VLM_PRIORITY + CV_FLAGS)

# The tie-break seed when none is given: TRAIN.SEED's default, so evaluation, the annotation check
# and the synthetic generator pick the same class as a training run with the default seed.
DEFAULT_LABEL_SEED = 42

assert sorted(FLAG_CLASS.values()) == [c for c in Challenge if c != Challenge.NORMAL]


def primary_label(flags: Mapping[str, bool], seed: int, sequence: str, frame_key: Hashable) -> int:
    """Single challenge class id of a frame from its flags (key -> set or not; missing keys are unset).

    ``frame_key`` identifies the frame within ``sequence`` for the CV tie-break (the JSONL
    ``frame_id``, or ``frame_file`` when there is no id).
    """
    for key, class_id in VLM_PRIORITY:
        if flags.get(key):
            return class_id
    cv = [class_id for key, class_id in CV_FLAGS if flags.get(key)]
    if not cv:
        return NORMAL
    if len(cv) == 1:
        return cv[0]
    digest = zlib.crc32(f"{seed}\x1f{sequence}\x1f{frame_key}".encode("utf-8"))
    return cv[digest % len(cv)]


def flagged_classes(flags: Mapping[str, bool]) -> list[int]:
    """Class ids of every flag set (VLM priority order, then CV order), or ``[NORMAL]`` if none is."""
    return [class_id for key, class_id in VLM_PRIORITY + CV_FLAGS if flags.get(key)] or [NORMAL]

