"""Text tables and success plots of :func:`lib.test.analysis.evaluate.evaluate_results` outputs.

Every function takes ``{label: evaluate_results(...) output}`` (insertion order = row / column
order). Tables show scores in percent (the dicts hold fractions).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from lib.challenges import CLASS_NAMES

OVERALL_COLUMNS = (  # (header, key, is a score in [0, 1])
    ("AO", "ao", True),
    ("SR0.5", "sr50", True),
    ("SR0.75", "sr75", True),
    ("AUC", "auc", True),
    ("Prec", "precision", True),
    ("NormPrec", "norm_precision", True),
    ("FPS", "fps", False),
    ("Seqs", "sequences", False),
    ("Frames", "frames", False),
)


def _cell(value: float | int | None, percent: bool) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if percent:
        return f"{100.0 * value:.1f}"
    return f"{value:.1f}" if isinstance(value, float) else str(value)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def format_overall(results: Mapping[str, dict]) -> str:
    """One row per label: GOT-10k AO / SR (%), LaSOT-style AUC / precisions (%), FPS, counts."""
    headers = ["Tracker", *(h for h, _, _ in OVERALL_COLUMNS)]
    rows = [[label, *(_cell(r.get(key), pct) for _, key, pct in OVERALL_COLUMNS)] for label, r in results.items()]
    return format_table(headers, rows)


def format_per_challenge(results: Mapping[str, dict]) -> str:
    """One row per challenge class, ``AO`` and ``SR0.5`` (%) of each label side by side, with the
    frame count (one column when every label scored the same frames). Empty without labels."""
    classes = [c for c in CLASS_NAMES if any(c in r.get("per_challenge", {}) for r in results.values())]
    if not classes:
        return ""
    counts = {label: [r["per_challenge"].get(c, {}).get("frames", 0) for c in classes] for label, r in results.items()}
    shared = len({tuple(v) for v in counts.values()}) == 1
    headers = ["Challenge"] + (["Frames"] if shared else [])
    for label in results:
        headers += [f"{label} AO", f"{label} SR0.5"] + ([] if shared else [f"{label} frames"])
    rows = []
    for i, name in enumerate(classes):
        row = [name] + ([str(next(iter(counts.values()))[i])] if shared else [])
        for label, r in results.items():
            entry = r["per_challenge"].get(name, {})
            row += [_cell(entry.get("ao"), True), _cell(entry.get("sr50"), True)]
            if not shared:
                row.append(str(counts[label][i]))
        rows.append(row)
    return format_table(headers, rows)


def format_comparison(results: Mapping[str, dict]) -> str:
    """The overall table, then (when any label has challenge labels) the per-challenge table."""
    if not results:
        raise ValueError("no results to compare")
    parts = ["Overall (AO / SR: GOT-10k protocol; AUC / Prec@20px / NormPrec@0.20: LaSOT protocol; %)",
             format_overall(results)]
    challenges = format_per_challenge(results)
    if challenges:
        parts += ["", "Per challenge (GOT-10k protocol, frames of each class; %)", challenges]
    return "\n".join(parts)


def plot_success(results: Mapping[str, dict], path: str | Path, title: str = "Success plot") -> Path:
    """Write a PNG of the LaSOT-style success curves (``"success_curve"``), the legend sorted by
    AUC, and return its path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not results:
        raise ValueError("no results to plot")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.0, 4.5), dpi=100)
    try:
        for label, r in sorted(results.items(), key=lambda item: -item[1]["auc"]):
            curve = r["success_curve"]
            ax.plot(curve["thresholds"], curve["success"], linewidth=2, label=f"[{100 * r['auc']:.1f}] {label}")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="Overlap threshold", ylabel="Success rate", title=title)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", title="AUC")
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


def plot_per_challenge(results: Mapping[str, dict], path: str | Path, title: str = "AO per challenge",
                       errors: Mapping[str, Mapping[str, float]] | None = None) -> Path | None:
    """Write a PNG bar chart of the per-challenge AO of each label, with ``errors[label][class]`` as
    error bars when given (e.g. the standard deviation over seeds); ``None`` (nothing written) when no
    label has challenge labels."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = [c for c in CLASS_NAMES if any(c in r.get("per_challenge", {}) for r in results.values())]
    if not classes:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width = 0.8 / max(len(results), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(classes) + 2), 4.5), dpi=100)
    try:
        for k, (label, r) in enumerate(results.items()):
            values = [r["per_challenge"].get(c, {}).get("ao", float("nan")) for c in classes]
            yerr = [errors[label].get(c, 0.0) for c in classes] if errors and label in errors else None
            ax.bar([i + k * width for i in range(len(classes))], values, width=width, label=label, yerr=yerr,
                   capsize=2 if yerr else 0)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(classes))], classes, rotation=30, ha="right")
        ax.set(ylim=(0, 1), ylabel="AO", title=title)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path


def plot_differences(intervals: Mapping[str, Mapping[str, object]], path: str | Path,
                     title: str = "Difference to the baseline (95% interval)") -> Path | None:
    """Write a PNG of differences with their intervals: ``{variant: {row label: DifferenceInterval}}``, one
    panel per variant, a row per label (e.g. "overall AO" and each challenge), a vertical line at 0;
    intervals that exclude 0 are drawn darker. ``None`` when there is nothing to draw."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = [v for v, rows in intervals.items() if rows]
    if not variants:
        return None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = max(len(intervals[v]) for v in variants)
    fig, axes = plt.subplots(1, len(variants), figsize=(3.2 * len(variants) + 1.5, 0.32 * rows + 1.4), dpi=100,
                             sharey=True, squeeze=False)
    try:
        for ax, variant in zip(axes[0], variants):
            labels = list(intervals[variant])
            for y, label in enumerate(labels):
                ci = intervals[variant][label]
                if ci.estimate != ci.estimate:  # nan: no frames
                    continue
                colour = "tab:blue" if ci.significant else "tab:gray"
                # the percentile interval need not contain the full-sample estimate (rounding, skewed replicates)
                below, above = max(ci.estimate - ci.low, 0.0), max(ci.high - ci.estimate, 0.0)
                ax.errorbar([ci.estimate], [y], xerr=[[below], [above]], fmt="o", color=colour, capsize=3)
            ax.axvline(0.0, color="black", linewidth=0.8)
            ax.set_yticks(range(len(labels)), labels)
            ax.invert_yaxis()
            ax.set(title=variant, xlabel="difference")
            ax.grid(axis="x", alpha=0.3)
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return path
