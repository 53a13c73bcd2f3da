"""Scoring result files against ground truth (GOT-10k and LaSOT protocols), challenge accuracy,
tables and plots.

    from lib.test.analysis import evaluate_tracker, format_comparison, plot_success
    result = evaluate_tracker(results_dir, "got10k_val", cls_ann_dir=labels_dir)  # or evaluate_results(dir, dataset, fmt)
    print(format_comparison({"mine": result}))
    plot_success({"mine": result}, Path("success.png"))

``challenges.py`` scores ``--save_cls`` predictions against the challenge labels;
``ablation_report.py`` formats the tables of an ablation.
"""
from lib.test.analysis.ablation_report import format_ablation, format_summary
from lib.test.analysis.challenges import challenge_accuracy, challenge_labels
from lib.test.analysis.evaluate import MissingResultsError, NoGroundTruthError, evaluate_results, evaluate_tracker
from lib.test.analysis.report import format_comparison, plot_per_challenge, plot_success

__all__ = ["MissingResultsError", "NoGroundTruthError", "challenge_accuracy", "challenge_labels", "evaluate_results",
           "evaluate_tracker", "format_ablation", "format_comparison", "format_summary", "plot_per_challenge",
           "plot_success"]
