"""Text tables and summary lines of an ablation (baseline vs multi-task vs fusion variants).

Every function takes ``{variant name: row}`` in run order, a row being anything with the
attributes of :class:`VariantRow` (the ablation pipeline's ``VariantResult``). Scores are shown as
fractions with three decimals; ``-`` stands for a missing or NaN value.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Protocol

from lib.challenges import CLASS_NAMES
from lib.test.analysis.report import format_table


class VariantRow(Protocol):
    """What the tables read of one variant."""
    scores: dict                 # lib.test.analysis.evaluate_results output
    challenge: dict | None       # lib.test.analysis.challenges.challenge_accuracy output, or None
    train_seconds: float | None  # None: not known
    train_skipped: bool          # the checkpoint existed: the time is that of the run that wrote it

    @property
    def classifies(self) -> bool:
        """Whether the variant predicts challenges (has the classification head)."""


def _score(value: float | None, fmt: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return format(value, fmt)


def _train_minutes(v: VariantRow) -> str:
    if v.train_seconds is None:
        return "-"
    return f"{v.train_seconds / 60:.1f}" + ("*" if v.train_skipped else "")


def _delta(value: float | None, reference: float | None) -> str:
    if value is None or reference is None or math.isnan(value) or math.isnan(reference):
        return "-"
    return f"{value - reference:+.3f}"


def format_overall_table(variants: Mapping[str, VariantRow]) -> str:
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


def format_challenge_table(variants: Mapping[str, VariantRow], reference: str = "baseline") -> str:
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


def format_summary(variants: Mapping[str, VariantRow], reference: str = "baseline") -> list[str]:
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


def format_ablation(variants: Mapping[str, VariantRow]) -> str:
    """The overall table, then (with labels) the per-challenge table, as printed by the scripts."""
    parts = ["Overall (GOT-10k AO / SR, LaSOT-style AUC: fractions; FPS; challenge accuracy on labelled frames)",
             format_overall_table(variants)]
    if any(v.train_skipped for v in variants.values()):
        parts.append("* training skipped (checkpoint existed): time of the run that wrote it")
    challenges = format_challenge_table(variants)
    if challenges:
        parts += ["", "Per challenge (AO; Δ: variant minus baseline)", challenges]
    return "\n".join(parts)
