"""Text tables and summary lines of an ablation (baseline vs multi-task vs fusion variants), for one
seed and over several seeds (mean ± std, differences with paired-bootstrap intervals).

Every function takes ``{variant name: row}`` in run order, a row being anything with the
attributes of :class:`VariantRow` (the ablation pipeline's ``VariantResult``). Scores are shown as
fractions with three decimals; ``-`` stands for a missing or NaN value.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from lib.challenges import CLASS_NAMES
from lib.test.analysis.report import format_table
from lib.test.analysis.stats import DEFAULT_REPLICATES, DifferenceInterval, SeedSpread, compare_scores, seed_spread


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


# -- several seeds ----------------------------------------------------------------------------
SEED_METRICS = ("ao", "sr50", "sr75")
DIFFERENCE_METRICS = ("ao", "sr50", "sr75")


def seed_summary(runs: Mapping[int, Mapping[str, VariantRow]]) -> dict[str, dict[str, SeedSpread]]:
    """``{variant: {metric: SeedSpread}}`` over seeds of AO / SR0.5 / SR0.75, the challenge accuracy
    (raw and smoothed, when predicted) and the training minutes."""
    variants = list(next(iter(runs.values())))
    out = {}
    for name in variants:
        rows = [run[name] for run in runs.values()]
        spread = {m: seed_spread(np.array([r.scores.get(m, np.nan) for r in rows], dtype=float)) for m in SEED_METRICS}
        for key, field in (("accuracy", "accuracy"), ("smoothed", "smoothed_accuracy"), ("majority", "majority")):
            spread[key] = seed_spread(np.array([(r.challenge or {}).get(field, np.nan) for r in rows], dtype=float))
        minutes = [np.nan if r.train_seconds is None else r.train_seconds / 60 for r in rows]
        spread["train_minutes"] = seed_spread(np.array(minutes, dtype=float))
        out[name] = spread
    return out


def compare_pairs(runs: Mapping[int, Mapping[str, VariantRow]], pairs: Mapping[str, str],
                  replicates: int = DEFAULT_REPLICATES) -> dict[str, dict]:
    """``{variant: {"overall": {metric: DifferenceInterval}, "per_challenge": {class: DifferenceInterval}}}``
    for each ``variant: reference`` of ``pairs`` that both ran: variant minus reference with a paired
    bootstrap interval over test sequences (seeds paired); per challenge for AO."""
    seeds = list(runs)
    ran = runs[seeds[0]]
    out = {}
    for name, reference in pairs.items():
        if name not in ran or reference not in ran:
            continue
        scores = [runs[s][name].scores for s in seeds]
        base = [runs[s][reference].scores for s in seeds]
        classes = [c for c in CLASS_NAMES if c in base[0].get("per_challenge", {})]
        out[name] = {"overall": {m: compare_scores(scores, base, m, replicates=replicates) for m in DIFFERENCE_METRICS},
                     "per_challenge": {c: compare_scores(scores, base, "ao", c, replicates=replicates)
                                       for c in classes}}
    return out


def compare_to_reference(runs: Mapping[int, Mapping[str, VariantRow]], reference: str = "baseline",
                         replicates: int = DEFAULT_REPLICATES) -> dict[str, dict]:
    """Every other variant minus ``reference`` (:func:`compare_pairs`); empty when the reference did not run."""
    return compare_pairs(runs, {n: reference for n in next(iter(runs.values())) if n != reference}, replicates)


def _mean_std(spread: SeedSpread, fmt: str = ".3f") -> str:
    if spread.seeds == 0:
        return "-"
    if spread.seeds == 1:
        return format(spread.mean, fmt)
    return f"{format(spread.mean, fmt)} ± {format(spread.std, fmt)}"


def format_seed_table(summary: Mapping[str, Mapping[str, SeedSpread]]) -> str:
    """One row per variant: mean ± std over seeds of AO, SR0.5, SR0.75, challenge accuracy (raw and
    smoothed), the majority-class accuracy and the training minutes."""
    headers = ["Variant", "Seeds", "AO", "SR0.5", "SR0.75", "ClsAcc", "ClsAcc smoothed", "Majority", "Train min"]
    rows = [[name, str(s["ao"].seeds), *(_mean_std(s[m]) for m in SEED_METRICS), _mean_std(s["accuracy"]),
             _mean_std(s["smoothed"]), _mean_std(s["majority"]), _mean_std(s["train_minutes"], ".1f")]
            for name, s in summary.items()]
    return format_table(headers, rows)


def _interval(ci: DifferenceInterval) -> str:
    if math.isnan(ci.estimate):
        return "-"
    mark = " *" if ci.significant else ""
    return f"{ci.estimate:+.3f} [{ci.low:+.3f}, {ci.high:+.3f}]{mark}"


def per_seed_differences(runs: Mapping[int, Mapping[str, VariantRow]], name: str, reference: str,
                         metric: str = "ao") -> list[float]:
    """``metric`` of ``name`` minus that of ``reference`` on each seed, in seed order: whether a pooled
    difference holds on every seed or comes from one."""
    return [float(run[name].scores[metric]) - float(run[reference].scores[metric]) for run in runs.values()]


def _per_seed(differences: list[float]) -> str:
    return " / ".join(f"{d:+.3f}" for d in differences)


def format_difference_table(comparisons: Mapping[str, Mapping], reference: str = "baseline",
                            seed_differences: Mapping[str, list[float]] | None = None) -> str:
    """One row per variant: the difference to ``reference`` of AO, SR0.5 and SR0.75 with the 95%
    interval (``*`` marks an interval that excludes 0) and, given ``seed_differences``, ΔAO on each seed."""
    headers = ["Variant", "ΔAO [95% CI]", "ΔSR0.5 [95% CI]", "ΔSR0.75 [95% CI]"]
    rows = [[name, *(_interval(c["overall"][m]) for m in DIFFERENCE_METRICS)] for name, c in comparisons.items()]
    if seed_differences and len(next(iter(seed_differences.values()), [])) > 1:
        headers.append("ΔAO per seed")
        rows = [[*row, _per_seed(seed_differences[row[0]])] for row in rows]
    return format_table(headers, rows)


def compare_to_own_model(runs: Mapping[int, Mapping[str, VariantRow]], models: Mapping[str, str],
                         replicates: int = DEFAULT_REPLICATES) -> dict[str, dict]:
    """Each test-time variant minus the variant whose checkpoint it runs (``models``: ``{variant: model}``,
    :func:`compare_pairs`): the effect of the policy alone, training noise cancelled."""
    return compare_pairs(runs, models, replicates)


@dataclass(frozen=True)
class SeedComparisons:
    """The bootstrap comparisons of a multi-seed ablation, computed once for its report, JSON and plots."""
    reference: str
    replicates: int
    to_reference: dict[str, dict]   # compare_to_reference
    to_own_model: dict[str, dict]   # compare_to_own_model
    models: dict[str, str]          # {test-time variant: the variant whose checkpoint it runs}


def compare_seeds(runs: Mapping[int, Mapping[str, VariantRow]], reference: str = "baseline",
                  models: Mapping[str, str] | None = None, replicates: int = DEFAULT_REPLICATES) -> SeedComparisons:
    """Both comparison sets of an ablation's runs."""
    models = dict(models or {})
    return SeedComparisons(reference, replicates, compare_to_reference(runs, reference, replicates),
                           compare_to_own_model(runs, models, replicates), models)


def format_challenge_differences(comparisons: Mapping[str, Mapping]) -> str:
    """One row per challenge and variant: the test sequences with frames of the challenge and the AO
    difference with its 95% interval."""
    headers = ["Challenge", "Variant", "Sequences", "ΔAO [95% CI]"]
    rows = []
    classes = [c for c in CLASS_NAMES if any(c in v["per_challenge"] for v in comparisons.values())]
    for c in classes:
        for name, comp in comparisons.items():
            ci = comp["per_challenge"].get(c)
            if ci is not None:
                rows.append([c, name, str(ci.sequences), _interval(ci)])
    return format_table(headers, rows) if rows else ""


def format_policy_activity(runs: Mapping[int, Mapping[str, object]]) -> str:
    """One row per challenge, a column per policy variant: the share of that challenge's frames on which
    the policy acted (mean over seeds), so a per-challenge difference can be traced to the policy."""
    variants = [n for n, v in next(iter(runs.values())).items() if getattr(v, "policy_activity", None)]
    if not variants:
        return ""
    def share(name: str, key: str | None) -> str:
        values = [(run[name].policy_activity["overall"] if key is None
                   else run[name].policy_activity["per_challenge"].get(key, np.nan)) for run in runs.values()]
        return _score(float(np.nanmean(values)) if not np.all(np.isnan(values)) else None, ".2f")
    classes = [c for c in CLASS_NAMES
               if any(c in run[n].policy_activity["per_challenge"] for run in runs.values() for n in variants)]
    rows = [["all frames", *(share(n, None) for n in variants)]] + [[c, *(share(n, c) for n in variants)]
                                                                    for c in classes]
    return format_table(["Challenge", *variants], rows)


def format_seeds_report(runs: Mapping[int, Mapping[str, VariantRow]], reference: str = "baseline",
                        replicates: int = DEFAULT_REPLICATES, models: Mapping[str, str] | None = None,
                        comparisons: SeedComparisons | None = None) -> list[str]:
    """The multi-seed tables as printed by the scripts: summary over seeds, differences to the reference
    with paired-bootstrap intervals (overall with ΔAO per seed, and per challenge), and the test-time
    variants against their own checkpoint's variant (``models``: ``{variant: model}``). ``comparisons``
    already computed (:func:`compare_seeds`) replace ``reference``, ``replicates`` and ``models``."""
    seeds = list(runs)
    first = next(iter(runs.values()))
    sequences = next(iter(first.values())).scores.get("sequences", 0)
    lines = [f"Over {len(seeds)} seed(s) ({', '.join(map(str, seeds))}): mean ± std (std needs 2+ seeds)",
             format_seed_table(seed_summary(runs))]
    comparisons = comparisons or compare_seeds(runs, reference, models, replicates)
    reference, to_reference = comparisons.reference, comparisons.to_reference
    if to_reference:
        seed_differences = {n: per_seed_differences(runs, n, reference) for n in to_reference}
        lines += ["", f"Difference to {reference}: estimate [95% interval], paired bootstrap over {sequences} test "
                      f"sequences (seeds paired, {comparisons.replicates} replicates); * = the interval excludes 0",
                  format_difference_table(to_reference, reference, seed_differences)]
        if len(seeds) > 1:
            lines.append("The interval resamples test sequences with the seeds held fixed: a difference whose sign "
                         "changes between seeds is not an effect, whatever its interval.")
        per_challenge = format_challenge_differences(to_reference)
        if per_challenge:
            lines += ["", "Per challenge (AO difference; Sequences: test sequences with frames of the challenge)",
                      per_challenge]
        own = comparisons.to_own_model
        if own:
            lines += ["", "Test-time variants against the checkpoint they run on (the policy's own effect; "
                          "same intervals)",
                      format_difference_table(own, seed_differences={
                          n: per_seed_differences(runs, n, comparisons.models[n]) for n in own})]
        activity = format_policy_activity(runs)
        if activity:
            lines += ["", "Share of frames on which the policy acted (mean over seeds)", activity]
        if len(seeds) == 1:
            lines.append("One seed: the intervals cover the choice of test sequences, not training noise; "
                         "run several seeds (--seeds) before reading a difference as an effect.")
    return lines
