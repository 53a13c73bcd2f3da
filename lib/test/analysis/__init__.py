"""Scoring result files against ground truth (GOT-10k and LaSOT protocols), tables and plots.

    from lib.test.analysis import evaluate_tracker, format_comparison, plot_success
    result = evaluate_tracker(results_dir, "got10k_val", cls_ann_dir=labels_dir)  # or evaluate_results(dir, dataset, fmt)
    print(format_comparison({"mine": result}))
    plot_success({"mine": result}, Path("success.png"))
"""
from lib.test.analysis.evaluate import MissingResultsError, NoGroundTruthError, evaluate_results, evaluate_tracker
from lib.test.analysis.report import format_comparison, plot_per_challenge, plot_success

__all__ = ["MissingResultsError", "NoGroundTruthError", "evaluate_results", "evaluate_tracker", "format_comparison",
           "plot_per_challenge", "plot_success"]
