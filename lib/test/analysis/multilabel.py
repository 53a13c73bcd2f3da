"""Multi-label challenge metrics for the result analysis: per-class AP, mAP and macro-F1 at tuned thresholds.

The functions live in :mod:`lib.utils.multilabel_metrics` (training logs the same numbers); they are
re-exported here so the analysis keeps one import path.
"""
from lib.utils.multilabel_metrics import (average_precision, best_thresholds, f1_scores, macro_f1,
                                          mean_average_precision, per_class_ap)

__all__ = ["average_precision", "best_thresholds", "f1_scores", "macro_f1", "mean_average_precision", "per_class_ap"]
