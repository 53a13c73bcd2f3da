"""Uncertainty of tracking scores: seed-to-seed spread and paired bootstrap intervals of differences.

One training run is one draw: the same config gives different scores with another seed or another
CPU's float rounding. So variants are compared over several seeds, and the difference to a reference
is given with a 95% confidence interval from a paired bootstrap over test sequences.

Scores that pool frames (GOT-10k AO = mean IoU over all scored frames, SR = share of frames with
IoU above a threshold, the same restricted to the frames of one challenge) are ratios of sums, so a
variant's results are kept per seed and per sequence as ``sums`` (e.g. the sum of IoUs) over
``counts`` (the scored frames). A bootstrap replicate draws the test sequences with replacement
(the sequence is the unit: frames of one video are not independent) and keeps each drawn sequence's
results of every seed together; the replicate's difference is the mean over seeds of
``score(variant) - score(reference)`` recomputed on the drawn sequences. Seeds are paired (seed s of
the variant against seed s of the reference) and so are sequences. The interval is the percentile
interval of the replicates; a difference is called significant when it excludes 0.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_REPLICATES = 10_000
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class SeedSpread:
    """Mean and sample standard deviation of one score over seeds (``std`` is nan for one seed)."""
    mean: float
    std: float
    seeds: int


@dataclass(frozen=True)
class DifferenceInterval:
    """A paired difference (variant - reference) with its bootstrap confidence interval."""
    estimate: float
    low: float
    high: float
    level: float
    sequences: int       # test sequences that hold scored frames
    seeds: int
    replicates: int      # bootstrap replicates with scored frames (fewer than drawn for rare classes)

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return bool(self.low > 0 or self.high < 0)


def seed_spread(values: np.ndarray) -> SeedSpread:
    """Mean and standard deviation (ddof 1) of per-seed scores; nan entries are not counted."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[~np.isnan(values)]
    if values.size == 0:
        return SeedSpread(float("nan"), float("nan"), 0)
    std = float(values.std(ddof=1)) if values.size > 1 else float("nan")
    return SeedSpread(float(values.mean()), std, int(values.size))


def pooled_score(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-seed pooled score ``sum_q sums / sum_q counts`` of ``(seeds, sequences)`` arrays (nan if no frame)."""
    sums, counts = _check_pair(sums, counts)
    total = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, sums.sum(axis=1) / np.where(total > 0, total, 1), np.nan)


def paired_bootstrap(variant_sums: np.ndarray, reference_sums: np.ndarray, counts: np.ndarray,
                     replicates: int = DEFAULT_REPLICATES, level: float = DEFAULT_LEVEL,
                     seed: int = 0) -> DifferenceInterval:
    """Difference of pooled scores (variant - reference) with a paired bootstrap interval over sequences.

    Args:
        variant_sums, reference_sums: ``(seeds, sequences)`` per-sequence sums (e.g. of IoUs) of the two
            variants; the same seed index and sequence index mean the same seed and test sequence.
        counts: ``(seeds, sequences)`` scored frames of each sequence (the same for both variants, which
            are scored on the same frames).
        replicates: bootstrap replicates drawn.
        level: coverage of the interval (0.95 gives the 2.5th and 97.5th percentiles).
        seed: seed of the resampling, so a report is reproducible.
    """
    variant_sums, counts = _check_pair(variant_sums, counts)
    reference_sums, _ = _check_pair(reference_sums, counts)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if replicates < 1:
        raise ValueError(f"replicates must be >= 1, got {replicates}")
    present = counts.sum(axis=0) > 0  # sequences without scored frames carry no information
    variant_sums, reference_sums, counts = variant_sums[:, present], reference_sums[:, present], counts[:, present]
    seeds, sequences = counts.shape
    estimate = float(np.mean(pooled_score(variant_sums, counts) - pooled_score(reference_sums, counts)))
    if sequences == 0:
        nan = float("nan")
        return DifferenceInterval(nan, nan, nan, level, 0, seeds, 0)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, sequences, size=(replicates, sequences))
    weights = np.zeros((replicates, sequences))
    np.add.at(weights, (np.arange(replicates)[:, None], draws), 1.0)  # times each sequence was drawn
    totals = weights @ counts.T                                      # (replicates, seeds)
    with np.errstate(invalid="ignore", divide="ignore"):
        differences = ((weights @ variant_sums.T) - (weights @ reference_sums.T)) / totals
    differences = np.nanmean(np.where(totals > 0, differences, np.nan), axis=1)
    differences = differences[~np.isnan(differences)]
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(differences, [tail, 100 - tail])
    return DifferenceInterval(estimate, float(low), float(high), level, sequences, seeds, int(differences.size))


def _check_pair(sums: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sums = np.atleast_2d(np.asarray(sums, dtype=np.float64))
    counts = np.atleast_2d(np.asarray(counts, dtype=np.float64))
    if sums.shape != counts.shape:
        raise ValueError(f"sums {sums.shape} and counts {counts.shape} must both be (seeds, sequences)")
    if np.any(counts < 0) or np.any(np.isnan(sums)):
        raise ValueError("counts must be >= 0 and sums must not be nan")
    return sums, counts


# -- from evaluate_results outputs ----------------------------------------------------------
def sequence_totals(scores_by_seed: Sequence[dict], metric: str, challenge: str | None = None,
                    sequences: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """``(sums, counts, sequence names)``, each array ``(seeds, sequences)``, of one pooled metric
    (``ao``, ``sr50`` or ``sr75``) from the ``per_sequence`` entries of
    :func:`lib.test.analysis.evaluate_results` outputs (one per seed), over all scored frames or only
    those of ``challenge`` (a class name). Sequences are those of the first seed unless given; a
    sequence without frames of the challenge counts 0 frames."""
    names = list(sequences if sequences is not None else scores_by_seed[0]["per_sequence"])
    sums = np.zeros((len(scores_by_seed), len(names)))
    counts = np.zeros_like(sums)
    for s, scores in enumerate(scores_by_seed):
        for q, name in enumerate(names):
            entry = scores["per_sequence"][name]
            if challenge is not None:
                entry = entry.get("per_challenge", {}).get(challenge)
                if entry is None:
                    continue
            counts[s, q] = entry["frames"]
            sums[s, q] = entry[metric] * entry["frames"] if entry["frames"] else 0.0
    return sums, counts, names


def compare_scores(variant_by_seed: Sequence[dict], reference_by_seed: Sequence[dict], metric: str = "ao",
                   challenge: str | None = None, replicates: int = DEFAULT_REPLICATES, seed: int = 0
                   ) -> DifferenceInterval:
    """Paired bootstrap of ``metric`` (variant - reference) from per-seed ``evaluate_results`` outputs of
    the same seeds (in the same order) and test sequences."""
    if len(variant_by_seed) != len(reference_by_seed) or not variant_by_seed:
        raise ValueError(f"need the same seeds of both variants, got {len(variant_by_seed)} and "
                         f"{len(reference_by_seed)} results")
    variant_sums, counts, names = sequence_totals(variant_by_seed, metric, challenge)
    reference_sums, reference_counts, _ = sequence_totals(reference_by_seed, metric, challenge, names)
    if not np.array_equal(counts, reference_counts):
        raise ValueError("the two variants were scored on different frames (other ground truth or labels?)")
    return paired_bootstrap(variant_sums, reference_sums, counts, replicates=replicates, seed=seed)
