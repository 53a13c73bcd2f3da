"""Run a tracker over the sequences of a test dataset and write the result files.

A run is resumable: a sequence whose result files all exist is skipped (files are written
atomically, so an existing file is complete). A sequence that fails (unreadable frame, bad
annotation, an exception in the tracker) is reported and the others still run. With
``threads > 1`` the sequences are spread over worker processes (``forkserver``, else
``spawn``), each loading the network once and using its share of the CPU cores.

Frame 1 is the initialisation frame: its box is the given init box and its time the time of
``initialize``; times exclude reading the image. Workers get plain data only (:class:`RunSettings`,
:class:`SequenceJob`), never a network or a dataset object.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lib.config.hiptrack import load_config
from lib.test.evaluation.results import (SequenceResultFiles, got10k_zip_path, sequence_files, write_boxes,
                                         write_challenges, write_got10k_zip, write_times)
from lib.test.tracker import TRACKERS
from lib.test.tracker.hiptrack import HIPTrackTracker
from lib.dataset.image_loader import read_image
from lib.dataset.base import SequenceDataset

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSettings:
    """Everything a (worker) process needs to build the tracker: plain, picklable data."""
    tracker: str                  # key of lib.test.tracker.TRACKERS
    config_path: str              # experiment YAML
    opts: tuple[str, ...]         # KEY=VALUE config overrides
    checkpoint: str
    device: str = "cpu"
    save_cls: bool = False        # also write per-frame challenge predictions


@dataclass(frozen=True)
class SequenceJob:
    """One sequence to track: frame files, the init box and where its results go."""
    name: str
    frames: tuple[str, ...]
    init_box_xywh: tuple[float, float, float, float]
    files: SequenceResultFiles


@dataclass(frozen=True)
class SequenceOutcome:
    """What happened to one sequence: ``done``, ``skipped`` (results existed) or ``failed``."""
    name: str
    status: str
    frames: int = 0
    seconds: float = 0.0          # tracker time (initialize + track), image reading excluded
    error: str = ""


@dataclass
class RunSummary:
    """Outcomes of a run over a dataset."""
    results_dir: Path
    outcomes: list[SequenceOutcome] = field(default_factory=list)
    zip_path: Path | None = None

    def names(self, status: str) -> list[str]:
        """Sequence names with outcome ``status``."""
        return [o.name for o in self.outcomes if o.status == status]

    @property
    def failed(self) -> list[SequenceOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def line(self) -> str:
        """One-line summary: counts and the results folder."""
        text = (f"{len(self.names('done'))} sequences done, {len(self.names('skipped'))} skipped, "
                f"{len(self.failed)} failed; results in {self.results_dir}")
        if self.zip_path is not None:
            text += f"; server zip {self.zip_path}"
        return text


# ---------------------------------------------------------------------------- building the tracker
def build_tracker(settings: RunSettings) -> HIPTrackTracker:
    """The tracker of ``settings``: config (YAML + opts), network loaded strictly from the checkpoint."""
    try:
        tracker_cls = TRACKERS[settings.tracker]
    except KeyError:
        raise ValueError(f"unknown tracker {settings.tracker!r}; valid: {', '.join(TRACKERS)}") from None
    cfg = load_config(settings.config_path, opts=list(settings.opts))
    return tracker_cls.from_checkpoint(cfg, settings.checkpoint, settings.device, save_cls=settings.save_cls)


# ---------------------------------------------------------------------------- one sequence
def is_complete(files: SequenceResultFiles, save_cls: bool) -> bool:
    """True when every result file of a sequence exists (the challenge file only if asked for)."""
    needed = [files.boxes, files.times] + ([files.challenges] if save_cls else [])
    return all(p.is_file() for p in needed)


def make_jobs(dataset: SequenceDataset, names: Sequence[str], directory: Path,
              result_format: str) -> tuple[list[SequenceJob], list[SequenceOutcome]]:
    """Jobs for the sequences ``names`` of ``dataset``, plus failures of sequences that cannot be read."""
    ids = {dataset.sequence_name(i): i for i in range(len(dataset))}
    jobs, failed = [], []
    for name in names:
        try:
            seq_id = ids[name]
            info = dataset.sequence_info(seq_id)
            frames = tuple(str(dataset.frame_path(seq_id, f)) for f in range(len(info)))
            box = tuple(float(v) for v in info.bbox[0].tolist())
        except Exception as e:  # unreadable annotations or frame folder: report, go on with the others
            failed.append(SequenceOutcome(name, "failed", error=f"{type(e).__name__}: {e}"))
            continue
        jobs.append(SequenceJob(name, frames, box, sequence_files(directory, name, result_format)))
    return jobs, failed


def track_sequence(tracker: HIPTrackTracker, job: SequenceJob,
                   save_cls: bool) -> tuple[np.ndarray, list[float], list[int], np.ndarray]:
    """Track one sequence: (N, 4) boxes, N frame times, and N challenge ids / (N, K) probabilities."""
    boxes, times, cls_ids, probs = [], [], [], []
    num_classes = tracker.cfg.MODEL.CLS_HEAD.NUM_CLASSES
    for index, frame in enumerate(job.frames):
        image = read_image(frame)
        start = time.perf_counter()
        if index == 0:
            tracker.initialize(image, {"init_bbox": list(job.init_box_xywh)})
            out = {"target_bbox": list(job.init_box_xywh), "cls_id": -1, "cls_probs": [float("nan")] * num_classes}
        else:
            out = tracker.track(image, {})
        times.append(time.perf_counter() - start)
        boxes.append(out["target_bbox"])
        if save_cls:
            cls_ids.append(out["cls_id"])
            probs.append(out["cls_probs"])
    return np.asarray(boxes, dtype=np.float64), times, cls_ids, np.asarray(probs, dtype=np.float64)


def run_job(tracker: HIPTrackTracker, job: SequenceJob, save_cls: bool) -> SequenceOutcome:
    """Track a sequence and write its result files; any exception becomes a ``failed`` outcome."""
    try:
        boxes, times, cls_ids, probs = track_sequence(tracker, job, save_cls)
        write_times(job.files.times, times)
        if save_cls:
            write_challenges(job.files.challenges, cls_ids, probs)
        write_boxes(job.files.boxes, boxes)
    except Exception as e:
        return SequenceOutcome(job.name, "failed", error=f"{type(e).__name__}: {e}")
    return SequenceOutcome(job.name, "done", len(job.frames), float(sum(times)))


# ---------------------------------------------------------------------------- worker processes
_WORKER: dict = {}


def _init_worker(settings: RunSettings, torch_threads: int) -> None:
    torch.set_num_threads(torch_threads)
    _WORKER["tracker"] = build_tracker(settings)
    _WORKER["save_cls"] = settings.save_cls


def _run_in_worker(job: SequenceJob) -> SequenceOutcome:
    return run_job(_WORKER["tracker"], job, _WORKER["save_cls"])


def available_cores() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def process_context() -> multiprocessing.context.BaseContext:
    """``forkserver`` where available (no forked torch state), else ``spawn``."""
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


def _log_outcome(outcome: SequenceOutcome, index: int, total: int) -> None:
    if outcome.status == "done":
        fps = outcome.frames / outcome.seconds if outcome.seconds > 0 else float("inf")
        logger.info("[%d/%d] %s: %d frames, %.1f fps", index, total, outcome.name, outcome.frames, fps)
    else:
        logger.error("[%d/%d] %s failed: %s", index, total, outcome.name, outcome.error)


def run_jobs(settings: RunSettings, jobs: Sequence[SequenceJob], threads: int = 0,
             tracker: HIPTrackTracker | None = None) -> list[SequenceOutcome]:
    """Run ``jobs`` in this process (``threads`` 0 or 1) or over ``threads`` worker processes."""
    if not jobs:
        return []
    workers = min(threads, len(jobs))
    if workers <= 1:
        tracker = tracker or build_tracker(settings)
        outcomes = []
        for i, job in enumerate(jobs, start=1):
            outcomes.append(run_job(tracker, job, settings.save_cls))
            _log_outcome(outcomes[-1], i, len(jobs))
        return outcomes
    torch_threads = max(1, available_cores() // workers)
    logger.info("tracking %d sequences with %d worker processes, %d torch threads each",
                len(jobs), workers, torch_threads)
    outcomes: dict[str, SequenceOutcome] = {}
    with ProcessPoolExecutor(workers, mp_context=process_context(), initializer=_init_worker,
                             initargs=(settings, torch_threads)) as pool:
        futures = {pool.submit(_run_in_worker, job): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                outcome = future.result()
            except BrokenProcessPool as e:
                outcome = SequenceOutcome(job.name, "failed", error=f"worker process died: {e}")
            except Exception as e:
                outcome = SequenceOutcome(job.name, "failed", error=f"{type(e).__name__}: {e}")
            outcomes[job.name] = outcome
            _log_outcome(outcome, len(outcomes), len(jobs))
    return [outcomes[job.name] for job in jobs]


# ---------------------------------------------------------------------------- a whole dataset
def run_dataset(settings: RunSettings, dataset: SequenceDataset, directory: Path, result_format: str,
                sequences: Sequence[str] | None = None, threads: int = 0, write_zip: bool = False) -> RunSummary:
    """Track every sequence of ``dataset`` (or ``sequences``) that has no results yet in ``directory``.

    The tracker is built here first, so a bad checkpoint or config fails before any work starts.
    With ``write_zip`` (GOT-10k test) the server archive :func:`got10k_zip_path` is written once
    every sequence of the dataset has results.
    """
    all_names = [dataset.sequence_name(i) for i in range(len(dataset))]
    names = list(sequences) if sequences else all_names
    unknown = sorted(set(names) - set(all_names))
    if unknown:
        raise ValueError(f"{dataset.name} has no sequence {', '.join(unknown)}; its sequences are "
                         f"{', '.join(all_names[:10])}{', ...' if len(all_names) > 10 else ''}")
    tracker = build_tracker(settings)
    summary = RunSummary(Path(directory))
    todo = []
    for name in names:
        if is_complete(sequence_files(directory, name, result_format), settings.save_cls):
            summary.outcomes.append(SequenceOutcome(name, "skipped"))
        else:
            todo.append(name)
    if len(todo) < len(names):
        logger.info("skipping %d of %d sequences whose results exist in %s", len(names) - len(todo), len(names),
                    directory)
    jobs, unreadable = make_jobs(dataset, todo, Path(directory), result_format)
    for outcome in unreadable:
        logger.error("%s failed: %s", outcome.name, outcome.error)
    if threads > 1 and len(jobs) > 1:
        del tracker  # each worker loads its own
        tracker = None
    summary.outcomes += unreadable + run_jobs(settings, jobs, threads, tracker)
    order = {name: i for i, name in enumerate(names)}
    summary.outcomes.sort(key=lambda o: order[o.name])
    if write_zip:
        if all(is_complete(sequence_files(directory, n, result_format), False) for n in all_names):
            summary.zip_path = write_got10k_zip(directory, all_names)
            logger.info("wrote the GOT-10k server archive %s", summary.zip_path)
        else:
            logger.warning("not writing %s: not every sequence of %s has results yet",
                           got10k_zip_path(directory), dataset.name)
    return summary
