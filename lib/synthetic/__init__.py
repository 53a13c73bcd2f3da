"""Synthetic datasets generated on the fly: the project's embedded default data."""
from lib.synthetic.labels import (
    CHALLENGE_NAMES,
    EVENT_TYPES,
    low_contrast_flag,
    low_res_flag,
    primary_class,
    rms_contrast,
    scale_variation_flag,
)
from lib.synthetic.maritime import SyntheticSequence, generate_dataset, render_sequence, write_sequence
from lib.synthetic.plan import OBJECT_CLASSES, Event, SequencePlan, plan_dataset, split_sizes

__all__ = [
    "CHALLENGE_NAMES", "EVENT_TYPES", "OBJECT_CLASSES", "Event", "SequencePlan", "SyntheticSequence",
    "generate_dataset", "low_contrast_flag", "low_res_flag", "plan_dataset", "primary_class", "render_sequence",
    "rms_contrast", "scale_variation_flag", "split_sizes", "write_sequence",
]
