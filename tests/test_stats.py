"""Seed spread and the paired bootstrap (lib/test/analysis/stats.py) on constructed scores with known answers."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lib.test.analysis.stats import paired_bootstrap, pooled_score, seed_spread


def test_seed_spread() -> None:
    spread = seed_spread(np.array([0.5, 0.6, 0.7]))
    assert spread.mean == pytest.approx(0.6) and spread.std == pytest.approx(0.1) and spread.seeds == 3
    one = seed_spread(np.array([0.4, np.nan]))
    assert one.mean == 0.4 and math.isnan(one.std) and one.seeds == 1


def test_pooled_score_weights_frames() -> None:
    sums = np.array([[9.0, 0.0], [1.0, 1.0]])
    counts = np.array([[10.0, 90.0], [0.0, 0.0]])
    score = pooled_score(sums, counts)
    assert score[0] == pytest.approx(0.09) and math.isnan(score[1])


def test_a_constant_gain_has_a_zero_width_interval() -> None:
    rng = np.random.default_rng(1)
    counts = rng.integers(5, 50, size=(3, 30)).astype(float)
    reference = rng.uniform(0, 1, size=counts.shape) * counts
    result = paired_bootstrap(reference + 0.1 * counts, reference, counts, replicates=500)
    assert result.estimate == pytest.approx(0.1)
    assert result.low == pytest.approx(0.1) and result.high == pytest.approx(0.1)
    assert result.significant and result.sequences == 30 and result.seeds == 3 and result.replicates == 500


def test_seeds_are_averaged_pairwise() -> None:
    counts = np.full((2, 10), 4.0)
    reference = np.full((2, 10), 2.0)
    variant = reference + np.array([[0.1], [0.3]]) * counts
    result = paired_bootstrap(variant, reference, counts, replicates=200)
    assert result.estimate == pytest.approx(0.2) and result.low == pytest.approx(0.2)


def test_symmetric_differences_are_not_significant() -> None:
    counts = np.ones((1, 40))
    reference = np.full((1, 40), 0.5)
    variant = reference + np.where(np.arange(40) % 2 == 0, 0.2, -0.2)
    result = paired_bootstrap(variant, reference, counts)
    assert result.estimate == pytest.approx(0.0, abs=1e-12)
    assert result.low < 0 < result.high and not result.significant


def test_interval_matches_the_normal_approximation() -> None:
    n, mu, sigma = 400, 0.05, 0.2
    diffs = np.random.default_rng(7).normal(mu, sigma, size=n)
    counts = np.ones((1, n))
    result = paired_bootstrap(diffs[None, :], np.zeros((1, n)), counts, replicates=20_000, seed=3)
    half_width = 1.96 * diffs.std(ddof=1) / math.sqrt(n)
    assert result.estimate == pytest.approx(diffs.mean())
    assert (result.high - result.low) / 2 == pytest.approx(half_width, rel=0.05)
    assert (result.low + result.high) / 2 == pytest.approx(diffs.mean(), abs=0.1 * half_width)


def test_the_sequence_is_the_resampling_unit() -> None:
    # one long sequence carries the whole gain: drawing it or not swings the difference widely
    counts = np.array([[1000.0] + [10.0] * 9])
    reference = np.zeros_like(counts)
    variant = np.zeros_like(counts)
    variant[0, 0] = 1000.0 * 0.5
    result = paired_bootstrap(variant, reference, counts, replicates=2000)
    assert result.estimate == pytest.approx(500 / 1090)
    # a third of the replicates miss the long sequence ((9/10)^10): the interval reaches 0
    assert result.low == 0.0 and 0.45 < result.high < 0.5 and not result.significant


def test_sequences_without_frames_are_left_out_and_nothing_gives_nan() -> None:
    counts = np.array([[0.0, 5.0, 5.0]])
    result = paired_bootstrap(np.array([[0.0, 5.0, 5.0]]), np.array([[0.0, 0.0, 5.0]]), counts, replicates=100)
    assert result.sequences == 2 and result.estimate == pytest.approx(0.5)
    empty = paired_bootstrap(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros((2, 3)))
    assert empty.sequences == 0 and math.isnan(empty.estimate) and not empty.significant


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="seeds, sequences"):
        paired_bootstrap(np.zeros((2, 3)), np.zeros((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="level"):
        paired_bootstrap(np.zeros((1, 3)), np.zeros((1, 3)), np.ones((1, 3)), level=1.5)


def _scores(per_sequence: dict) -> dict:
    return {"per_sequence": per_sequence}


def test_sequence_totals_and_compare_scores_from_evaluate_outputs() -> None:
    from lib.test.analysis.stats import compare_scores, sequence_totals
    ref = _scores({"a": {"ao": 0.5, "sr50": 0.5, "frames": 10, "per_challenge": {"Occlusion": {"ao": 0.2, "frames": 4}}},
                   "b": {"ao": 0.4, "sr50": 0.0, "frames": 30, "per_challenge": {}}})
    var = _scores({"a": {"ao": 0.6, "sr50": 0.5, "frames": 10, "per_challenge": {"Occlusion": {"ao": 0.7, "frames": 4}}},
                   "b": {"ao": 0.5, "sr50": 0.0, "frames": 30, "per_challenge": {}}})
    sums, counts, names = sequence_totals([var, var], "ao")
    assert names == ["a", "b"] and counts.tolist() == [[10, 30], [10, 30]] and sums[0].tolist() == pytest.approx([6, 15])
    sums, counts, _ = sequence_totals([ref], "ao", "Occlusion")
    assert counts.tolist() == [[4, 0]] and sums[0].tolist() == pytest.approx([0.8, 0.0])
    overall = compare_scores([var], [ref], "ao", replicates=200)
    assert overall.estimate == pytest.approx(0.1) and overall.low == pytest.approx(0.1) and overall.significant
    occlusion = compare_scores([var], [ref], "ao", "Occlusion", replicates=200)
    assert occlusion.estimate == pytest.approx(0.5) and occlusion.sequences == 1
    with pytest.raises(ValueError, match="same seeds"):
        compare_scores([var, var], [ref], "ao")
