"""Where the challenge-aware tracking policies acted: the share of frames, overall and per challenge.

Read from the ``<seq>_policy.txt`` logs a policy run writes beside its results, next to the labels of
the same frames, so the per-challenge table can show whether a gain or a loss comes from frames on which
a policy changed something. A frame counts as acted on when its memory write was vetoed (``skip`` or
``pending``), it was cropped with more than the normal search factor, or its window or size update was
damped.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lib.test.analysis.challenges import ClassShares
from lib.test.evaluation.results import read_policy_log, sequence_files

VETOED = ("skip", "pending")


def acted(row: dict, search_factor: float) -> bool:
    """Whether a policy changed anything on the frame of one policy-log row."""
    return (row["memory"] in VETOED or row["search_factor"] > search_factor * (1 + 1e-6)
            or row["window_power"] > 1 + 1e-6 or row["size_rate"] < 1 - 1e-6)


def policy_activity(results: Path, result_format: str, labels: dict[str, np.ndarray], search_factor: float) -> dict:
    """``{"overall": share, "frames": n, "per_challenge": {class: share}}`` of the frames after the first on
    which a policy acted (per challenge over the labeled frames of that class); ``search_factor`` is the
    normal ``TEST.SEARCH_FACTOR``. Raises FileNotFoundError naming a missing log."""
    acted_frames = total = 0
    per_class = ClassShares()
    for seq, seq_labels in labels.items():
        path = sequence_files(results, seq, result_format).policy
        if not path.is_file():
            raise FileNotFoundError(f"no policy log for {seq}: {path}")
        rows = read_policy_log(path)[1:]  # frame 1 is the template
        flags = np.array([acted(r, search_factor) for r in rows], dtype=bool)
        frame_labels = np.asarray(seq_labels)[1:len(rows) + 1]
        acted_frames += int(flags.sum())
        total += len(rows)
        per_class.add(frame_labels, flags)
    return {"overall": acted_frames / total if total else float("nan"), "frames": total,
            "per_challenge": per_class.shares()}
