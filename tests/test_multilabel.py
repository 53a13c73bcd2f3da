"""Multi-label metrics (lib/test/analysis/multilabel.py) against values computed by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from lib.test.analysis.multilabel import (average_precision, best_thresholds, f1_scores, macro_f1,
                                          mean_average_precision, per_class_ap)


def test_average_precision_by_hand() -> None:
    # ranked: 0.9 (+), 0.8 (-), 0.7 (+), 0.1 (-): precision at the positives 1/1 and 2/3
    assert average_precision(np.array([0.9, 0.8, 0.7, 0.1]), np.array([1, 0, 1, 0])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([0.2, 0.9]), np.array([1, 0])) == pytest.approx(0.5)
    assert average_precision(np.array([0.3, 0.2]), np.array([1, 1])) == pytest.approx(1.0)
    assert math.isnan(average_precision(np.array([0.3, 0.2]), np.array([0, 0])))


def test_tied_scores_are_one_operating_point() -> None:
    # all tied: one point with precision 1/2 and recall 1
    assert average_precision(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(0.5)


def test_map_skips_classes_without_positives() -> None:
    probs = np.array([[0.9, 0.1, 0.4], [0.2, 0.7, 0.3], [0.6, 0.8, 0.2]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]])
    ap = per_class_ap(probs, targets)
    assert ap[0] == pytest.approx(1.0) and ap[1] == pytest.approx(0.5) and math.isnan(ap[2])
    assert mean_average_precision(probs, targets) == pytest.approx(0.75)


def test_f1_by_hand() -> None:
    probs = np.array([[0.9, 0.2], [0.6, 0.7], [0.4, 0.1], [0.1, 0.3]])
    targets = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
    # class 0 at 0.5: TP 1 (row 0), FP 1 (row 1), FN 1 (row 2) -> 2/4; class 1 at 0.5: TP 1 -> 1
    np.testing.assert_allclose(f1_scores(probs, targets, np.array([0.5, 0.5])), [0.5, 1.0])
    assert macro_f1(probs, targets, np.array([0.5, 0.5])) == pytest.approx(0.75)
    # class 0 at 0.4: TP 2, FP 1 -> 4/5
    assert f1_scores(probs, targets, np.array([0.4, 0.5]))[0] == pytest.approx(0.8)


def test_best_thresholds_maximise_f1_and_keep_the_default_without_positives() -> None:
    probs = np.array([[0.9, 0.2, 0.5], [0.6, 0.7, 0.4], [0.4, 0.1, 0.3], [0.1, 0.3, 0.2]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]])
    thresholds = best_thresholds(probs, targets, default=0.5)
    np.testing.assert_allclose(thresholds, [0.4, 0.7, 0.5])
    assert macro_f1(probs, targets, thresholds) == pytest.approx((0.8 + 1.0) / 2)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="frames, classes"):
        per_class_ap(np.zeros((3, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="0 or 1"):
        macro_f1(np.zeros((2, 2)), np.full((2, 2), 0.5), np.full(2, 0.5))


def test_analysis_reexports_the_training_metrics() -> None:
    # one implementation: training (lib.utils) and the analysis (lib.test) must report the same numbers
    import lib.test.analysis.multilabel as analysis
    import lib.utils.multilabel_metrics as shared
    for name in analysis.__all__:
        assert getattr(analysis, name) is getattr(shared, name)
