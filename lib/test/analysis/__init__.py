"""Scoring result files against ground truth (GOT-10k and LaSOT protocols), tables and plots.

    from lib.test.analysis import evaluate_results, format_comparison, plot_success
    result = evaluate_results(results_dir, dataset, "got10k")
    print(format_comparison({"mine": result}))
    plot_success({"mine": result}, Path("success.png"))
"""
from lib.test.analysis.evaluate import MissingResultsError, evaluate_results
from lib.test.analysis.report import format_comparison, plot_per_challenge, plot_success

__all__ = ["MissingResultsError", "evaluate_results", "format_comparison", "plot_per_challenge", "plot_success"]
