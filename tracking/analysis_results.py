"""Score tracking results against ground truth and compare runs side by side.

    python tracking/analysis_results.py --dataset got10k_val --tracker hiptrack:hiptrack_cls
    python tracking/analysis_results.py --dataset synthetic_test --dataset_dir synthetic=data/synthetic_maritime \\
        --cls_ann_dir data/synthetic_maritime/cls_annotations \\
        --tracker hiptrack:hiptrack_cls:multi-task --tracker hiptrack:hiptrack:baseline \\
        --results_dir /elsewhere/tracking_results/hiptrack/ep100/synthetic_test:ep100

``--tracker NAME:PARAM[:LABEL]`` reads ``<save_dir>/test/tracking_results/NAME/PARAM/<dataset>/``;
``--results_dir DIR[:LABEL]`` reads any such folder. Both repeat; the label (default
``NAME/PARAM`` or the folder name) names the run in the tables and plots. Prints an overall table
(GOT-10k AO / SR0.5 / SR0.75 by the official protocol, LaSOT-style AUC / precision / normalised
precision, FPS) and, with ``--cls_ann_dir``, a per-challenge table; writes PNG plots.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from lib.test.analysis import evaluate_results, format_comparison, plot_per_challenge, plot_success
from lib.test.analysis.evaluate import SERVER_HINTS
from lib.test.evaluation.results import TEST_DATASETS, results_dir, test_dataset
from lib.dataset.paths import DatasetPaths, add_path_arguments
from lib.dataset.registry import build_dataset
from lib.utils.cli import CliRun, UsageError, add_debug_argument, run_cli

logger = logging.getLogger("analysis_results")


def parse_tracker(value: str) -> tuple[str, str, str]:
    """``NAME:PARAM[:LABEL]`` -> ``(name, param, label)``; the label defaults to ``NAME/PARAM``."""
    parts = value.split(":")
    if len(parts) not in (2, 3) or not all(p.strip() for p in parts):
        raise argparse.ArgumentTypeError(f"expected NAME:PARAM or NAME:PARAM:LABEL, got {value!r}")
    name, param = parts[0].strip(), parts[1].strip()
    return name, param, parts[2].strip() if len(parts) == 3 else f"{name}/{param}"


def parse_results_dir(value: str) -> tuple[Path, str]:
    """``DIR[:LABEL]`` -> ``(dir, label)``; text after the last ``:`` is a label unless it holds a
    ``/``. The label defaults to the folder's parent names ``tracker/param``."""
    head, sep, tail = value.rpartition(":")
    if sep and head and tail and "/" not in tail:
        path, label = Path(head).expanduser(), tail
    else:
        path, label = Path(value).expanduser(), ""
    if not label:
        label = "/".join(path.resolve().parts[-3:-1]) or path.name
    return path, label


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--dataset", required=True, choices=list(TEST_DATASETS), help="test dataset name")
    parser.add_argument("--tracker", action="append", default=[], type=parse_tracker, metavar="NAME:PARAM[:LABEL]",
                        help="results under <save_dir>/test/tracking_results/NAME/PARAM/<dataset>; repeatable")
    parser.add_argument("--results_dir", action="append", default=[], type=parse_results_dir,
                        metavar="DIR[:LABEL]", help="a results folder given directly; repeatable")
    parser.add_argument("--save_dir", default="./output", type=Path, help="output root of tracking/test.py (./output)")
    parser.add_argument("--cls_ann_dir", default=None, type=Path, metavar="DIR",
                        help="JSONL challenge labels (<DIR>/<seq>/<seq>.jsonl): adds the per-challenge table")
    parser.add_argument("--skip_missing", action="store_true",
                        help="score the sequences that have results (warn about the others) instead of failing")
    parser.add_argument("--plot_dir", default=None, type=Path,
                        help="where the PNG plots go (default <save_dir>/test/analysis/<dataset>)")
    parser.add_argument("--no_plot", action="store_true", help="write no plots")
    parser.add_argument("--json", default=None, type=Path, metavar="FILE", help="also write all scores as JSON")
    parser.add_argument("--verbose", action="store_true", help="log progress (INFO)")
    add_path_arguments(parser)
    add_debug_argument(parser)
    return parser


def collect_runs(args: argparse.Namespace) -> dict[str, Path]:
    """``{label: results folder}`` of every ``--tracker`` and ``--results_dir``, labels unique."""
    runs: dict[str, Path] = {}
    entries = [(label, results_dir(args.save_dir, name, param, args.dataset)) for name, param, label in args.tracker]
    entries += [(label, path) for path, label in args.results_dir]
    for label, path in entries:
        if label in runs:
            raise ValueError(f"two runs are labelled {label!r}: give them distinct labels (NAME:PARAM:LABEL, DIR:LABEL)")
        runs[label] = path
    return runs


def main(argv: list[str] | None = None) -> int:
    """Run the analysis; returns the exit code (2 on bad input)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.tracker and not args.results_dir:
        parser.error("give at least one --tracker NAME:PARAM or --results_dir DIR")
    # until the scores are computed everything checks the input: missing or malformed results are the user's
    return run_cli(lambda run: analyse(args, run), debug=args.debug, user_errors=(ValueError, OSError))


def analyse(args: argparse.Namespace, run: CliRun) -> int:
    """Score every run, then print the tables and write the plots (and JSON)."""
    spec = test_dataset(args.dataset)
    if not spec.has_ground_truth:
        raise UsageError(f"{args.dataset} has no public ground truth beyond the first frame, so it cannot be scored "
                         f"locally; {SERVER_HINTS.get(args.dataset, 'submit the results to its evaluation server')}")
    runs = collect_runs(args)
    paths = DatasetPaths.from_env(args.dataset_dir, args.paths, args.data_dir)
    dataset = build_dataset(spec.registry_name, paths, cls_ann_dir=args.cls_ann_dir)
    results = {}
    for label, folder in runs.items():
        if not folder.is_dir():
            raise FileNotFoundError(f"results folder of {label!r} not found: {folder}")
        logger.info("scoring %s (%s)", label, folder)
        results[label] = evaluate_results(folder, dataset, spec.result_format, skip_missing=args.skip_missing)
    run.start()

    written = []
    if not args.no_plot:
        plot_dir = args.plot_dir or args.save_dir / "test" / "analysis" / args.dataset
        written.append(plot_success(results, plot_dir / "success_plot.png", title=f"Success plot: {args.dataset}"))
        challenge_plot = plot_per_challenge(results, plot_dir / "per_challenge_ao.png",
                                            title=f"AO per challenge: {args.dataset}")
        if challenge_plot is not None:
            written.append(challenge_plot)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"dataset": args.dataset, "results": results}, indent=2), encoding="utf-8")
        written.append(args.json)
    print(f"{args.dataset}: {len(dataset)} sequences")
    print(format_comparison(results))
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
