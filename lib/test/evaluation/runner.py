"""Run a tracker over the sequences of a test dataset and write the result files.

A run is resumable: a sequence whose result files all exist is skipped (files are written
atomically, so an existing file is complete). A sequence that fails (unreadable frame, bad
annotation, an exception in the tracker) is reported and the others still run. With
``threads > 1`` the sequences are spread over worker processes (``forkserver``, else
``spawn``), each loading the network once and using its share of the CPU cores.

Frame 1 is the initialisation frame: its box is the given init box and its time the time of
``initialize``; times exclude reading the image. Workers get plain data only (:class:`RunSettings`,
:class:`SequenceJob`), never a network or a dataset object.

Within a sequence, progress is shown by :class:`FrameProgress`: a tqdm bar in this process when
stderr is a terminal, else (and always in workers) a log line with frames/s and ETA every
``RunSettings.progress_every`` frames or :data:`PROGRESS_SECONDS`.

With a challenge-aware policy on (``TEST.POLICY``) every sequence also gets its policy log
``<seq>_policy.txt`` (part of a complete result), and with ``TEST.POLICY.SOURCE: oracle`` -- and only
then -- the tracker gets each frame's ground-truth challenge flags as ``info["challenge_flags"]``.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from lib.config.hiptrack import load_config
from lib.test.evaluation.results import (SequenceResultFiles, got10k_zip_path, sequence_files, write_boxes,
                                         write_challenges, write_got10k_zip, write_policy_log, write_times)
from lib.test.tracker import TRACKERS
from lib.test.tracker.hiptrack import HIPTrackTracker
from lib.test.tracker.policies import PolicyRecord
from lib.dataset.image_loader import read_image
from lib.dataset.base import SequenceDataset, SequenceInfo
from lib.utils.runtime import available_cores

logger = logging.getLogger(__name__)

PROGRESS_FRAMES = 500     # default frames between two progress lines within a sequence
PROGRESS_SECONDS = 30.0   # and at least one line this often (a slow tracker, huge frames)


@dataclass(frozen=True)
class RunSettings:
    """Everything a (worker) process needs to build the tracker: plain, picklable data."""
    tracker: str                  # key of lib.test.tracker.TRACKERS
    config_path: str              # experiment YAML
    opts: tuple[str, ...]         # KEY=VALUE config overrides
    checkpoint: str
    device: str = "cpu"
    save_cls: bool = False        # also write per-frame challenge predictions
    progress_every: int = PROGRESS_FRAMES  # a progress line every N frames of a sequence (0: none)


@dataclass(frozen=True)
class SequenceJob:
    """One sequence to track: frame files, the init box and where its results go."""
    name: str
    frames: tuple[str, ...]
    init_box_xywh: tuple[float, float, float, float]
    files: SequenceResultFiles
    challenge_flags: tuple[tuple[float, ...], ...] | None = None  # per frame, ground truth for oracle policies


@dataclass
class TrackedSequence:
    """What tracking one sequence produced, one entry per frame (frame 1 included)."""
    boxes: np.ndarray                   # (N, 4) x, y, w, h
    times: list[float]                  # seconds
    cls_ids: list[int]                  # with save_cls: predicted class (-1 for frame 1)
    probs: np.ndarray                   # with save_cls: (N, K) raw class probabilities (NaN for frame 1)
    policy: list[PolicyRecord | None]   # with a policy on: what acted (None for frame 1)


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
def is_complete(files: SequenceResultFiles, save_cls: bool, policy_log: bool = False) -> bool:
    """True when every result file of a sequence exists (the challenge file and the policy log only if
    they are written)."""
    needed = [files.boxes, files.times]
    needed += [files.challenges] if save_cls else []
    needed += [files.policy] if policy_log else []
    return all(p.is_file() for p in needed)


def make_jobs(dataset: SequenceDataset, names: Sequence[str], directory: Path, result_format: str,
              with_challenge_flags: bool = False) -> tuple[list[SequenceJob], list[SequenceOutcome]]:
    """Jobs for the sequences ``names`` of ``dataset``, plus failures of sequences that cannot be read.
    ``with_challenge_flags``: the jobs carry every frame's ground-truth challenge flags (oracle policies)."""
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
        flags = challenge_flags(info) if with_challenge_flags else None
        jobs.append(SequenceJob(name, frames, box, sequence_files(directory, name, result_format), flags))
    return jobs, failed


def challenge_flags(info: SequenceInfo) -> tuple[tuple[float, ...], ...]:
    """Every frame's ground-truth challenge flags (1 per flagged class; all 0 on an unlabeled frame)."""
    if not info.meta.get("cls_labels_found", True):
        logger.warning("%s has no challenge labels: the oracle policies see no challenge in it", info.name)
    return tuple(tuple(float(v) for v in row) for row in info.cls_multi_hot.tolist())


def frame_info(job: SequenceJob, index: int) -> dict:
    """The ``info`` of ``tracker.track`` for frame ``index``: its ground-truth flags when the job has them."""
    return {} if job.challenge_flags is None else {"challenge_flags": list(job.challenge_flags[index])}


def format_duration(seconds: float) -> str:
    """``1h02m``, ``6m45s`` or ``12s``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class FrameProgress:
    """Progress within one sequence (LaSOT has sequences of 10,000+ frames): a tqdm bar when asked
    (``bar``: in this process, stderr a terminal), else a log line with frames/s and ETA every
    ``every`` frames or :data:`PROGRESS_SECONDS`, whichever comes first (``every`` 0: silent)."""

    def __init__(self, name: str, total: int, every: int, bar: bool = False) -> None:
        self.name, self.total, self.every = name, total, every
        self.start = self.last_time = time.perf_counter()
        self.last_frame = 0
        self.bar = None
        if bar and every > 0:
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=name, unit="frame", leave=False)

    def update(self, done: int) -> None:
        """``done`` frames of the sequence are tracked."""
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            return
        now = time.perf_counter()
        due = done - self.last_frame >= self.every or now - self.last_time >= PROGRESS_SECONDS
        if self.every <= 0 or done >= self.total or not due:
            return
        rate = done / max(now - self.start, 1e-9)
        logger.info("%s: frame %d/%d, %.1f frames/s, ETA %s", self.name, done, self.total, rate,
                    format_duration((self.total - done) / rate))
        self.last_frame, self.last_time = done, now

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def track_sequence(tracker: HIPTrackTracker, job: SequenceJob, save_cls: bool,
                   progress: FrameProgress | None = None) -> TrackedSequence:
    """Track one sequence: boxes, frame times, challenge predictions (``save_cls``) and what the policies did."""
    boxes, times, cls_ids, probs, policy = [], [], [], [], []
    num_classes = tracker.cfg.MODEL.CLS_HEAD.NUM_CLASSES
    for index, frame in enumerate(job.frames):
        image = read_image(frame)
        start = time.perf_counter()
        if index == 0:
            tracker.initialize(image, {"init_bbox": list(job.init_box_xywh)})
            out = {"target_bbox": list(job.init_box_xywh), "cls_id": -1, "cls_probs": [float("nan")] * num_classes}
        else:
            out = tracker.track(image, frame_info(job, index))
        times.append(time.perf_counter() - start)
        boxes.append(out["target_bbox"])
        policy.append(out.get("policy"))
        if save_cls:
            cls_ids.append(out["cls_id"])
            probs.append(out["cls_probs"])
        if progress is not None:
            progress.update(index + 1)
    return TrackedSequence(np.asarray(boxes, dtype=np.float64), times, cls_ids, np.asarray(probs, dtype=np.float64),
                           policy)


def run_job(tracker: HIPTrackTracker, job: SequenceJob, save_cls: bool, progress_every: int = 0,
            bar: bool = False) -> SequenceOutcome:
    """Track a sequence and write its result files; any exception becomes a ``failed`` outcome.
    Progress within the sequence: :class:`FrameProgress` (``bar``: a tqdm bar)."""
    progress = FrameProgress(job.name, len(job.frames), progress_every, bar)
    try:
        tracked = track_sequence(tracker, job, save_cls, progress)
        write_times(job.files.times, tracked.times)
        if save_cls:
            write_challenges(job.files.challenges, tracked.cls_ids, tracked.probs)
        if tracker.policies.active:
            write_policy_log(job.files.policy, tracked.policy)
        write_boxes(job.files.boxes, tracked.boxes)
    except Exception as e:
        return SequenceOutcome(job.name, "failed", error=f"{type(e).__name__}: {e}")
    finally:
        progress.close()
    return SequenceOutcome(job.name, "done", len(job.frames), float(sum(tracked.times)))


# ---------------------------------------------------------------------------- worker processes
_WORKER: dict = {}


def _init_worker(settings: RunSettings, torch_threads: int, log_level: int = logging.INFO) -> None:
    # a fresh process (forkserver / spawn) logs nothing until told how; its stderr is the parent's
    logging.basicConfig(level=log_level, format=f"%(levelname)s %(name)s [worker {os.getpid()}]: %(message)s")
    torch.set_num_threads(torch_threads)
    _WORKER["tracker"] = build_tracker(settings)
    _WORKER["settings"] = settings


def _run_in_worker(job: SequenceJob) -> SequenceOutcome:
    settings = _WORKER["settings"]
    return run_job(_WORKER["tracker"], job, settings.save_cls, settings.progress_every)  # lines, never a bar


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
        bar = sys.stderr.isatty()
        for i, job in enumerate(jobs, start=1):
            outcomes.append(run_job(tracker, job, settings.save_cls, settings.progress_every, bar))
            _log_outcome(outcomes[-1], i, len(jobs))
        return outcomes
    torch_threads = max(1, available_cores() // workers)
    logger.info("tracking %d sequences with %d worker processes, %d torch threads each",
                len(jobs), workers, torch_threads)
    outcomes: dict[str, SequenceOutcome] = {}
    with ProcessPoolExecutor(workers, mp_context=process_context(), initializer=_init_worker,
                             initargs=(settings, torch_threads, logging.getLogger().getEffectiveLevel())) as pool:
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
                sequences: Sequence[str] | None = None, threads: int = 0, write_zip: bool = False,
                on_start: Callable[[], None] | None = None) -> RunSummary:
    """Track every sequence of ``dataset`` (or ``sequences``) that has no results yet in ``directory``.

    The tracker is built here first, so a bad checkpoint or config fails before any work starts
    (a ``ValueError`` for an unknown sequence or a checkpoint that does not fit the tracker);
    ``on_start`` is called once that is done, before existing results are looked for. With
    ``write_zip`` (GOT-10k test) the server archive :func:`got10k_zip_path` is written once every
    sequence of the dataset has results.
    """
    all_names = [dataset.sequence_name(i) for i in range(len(dataset))]
    names = list(sequences) if sequences else all_names
    unknown = sorted(set(names) - set(all_names))
    if unknown:
        raise ValueError(f"{dataset.name} has no sequence {', '.join(unknown)}; its sequences are "
                         f"{', '.join(all_names[:10])}{', ...' if len(all_names) > 10 else ''}")
    tracker = build_tracker(settings)
    if on_start is not None:  # before results are looked for: the caller may clear the folder
        on_start()
    policies = tracker.policies
    summary = RunSummary(Path(directory))
    todo = []
    for name in names:
        if is_complete(sequence_files(directory, name, result_format), settings.save_cls, policies.active):
            summary.outcomes.append(SequenceOutcome(name, "skipped"))
        else:
            todo.append(name)
    if len(todo) < len(names):
        logger.info("skipping %d of %d sequences whose results exist in %s", len(names) - len(todo), len(names),
                    directory)
    jobs, unreadable = make_jobs(dataset, todo, Path(directory), result_format, policies.uses_oracle)
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
