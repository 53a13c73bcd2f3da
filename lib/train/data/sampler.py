"""Causal clip sampler: one template frame and ``num_search`` later (or earlier) search frames.

Re-implements the HIPTrack ``TrackingSampler`` in ``causal`` mode:

* a dataset is chosen with probability proportional to its ratio, then a sequence uniformly
  among those that qualify: more than ``2 * (num_search + 1)`` visible frames (the original's
  rule), at least ``min_sequence_length`` frames (20, as the original) and at least one run of
  ``num_search + 1`` visible frames whose consecutive gaps are at most ``max_interval`` (so a clip
  always exists; the original could loop forever on such a sequence). Image datasets
  (``is_video_sequence() == False``) skip these checks.
* a visible base frame, then ``num_search`` strictly increasing visible frames, each at most
  ``max_interval`` frames after the previous one and capped so the remaining frames still fit.
  The base frame is drawn uniformly among the visible frames that start such a clip (the
  original drew it from ``[0, len - max_interval)``, which favours the start of a video and, for
  sequences shorter than the interval, shrinks the interval until that range is non-empty).
* with probability 0.5 the clip is reversed: template = the last frame, search = the others in
  reverse order; otherwise template = the base frame, search = the following frames in order.
* image datasets repeat their single image (frame 0) for the template and every search frame.

Reproducibility: sample ``index`` of epoch ``e`` uses only ``np.random.default_rng([seed, e,
index])``, so it does not depend on worker count, worker id, rank or loading order. The epoch
lives in shared memory, so :meth:`TrackingSampler.set_epoch` in the main process also reaches
persistent data-loader workers (call it before iterating the epoch, as for DistributedSampler).

Failures: an unreadable frame (:class:`ImageReadError`: missing, corrupt or truncated, the file
named in a warning) or a sample rejected by the processing makes the sampler draw again from the
same random stream. Over all worker processes ``unreadable_frames`` counts the frame reads that
failed (every frame of a clip is tried, so a clip with two bad frames counts two), ``read_errors``
the samples drawn again because of them and ``rejected`` those the processing rejected. After
``max_tries`` failures in a row it raises RuntimeError. Any other exception propagates: it is a bug
or a broken dataset, not bad luck.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.utils.data

from lib.dataset.image_loader import ImageReadError, read_image
from lib.train.data.processing import TrackingProcessing
from lib.dataset.base import SequenceDataset, SequenceInfo

__all__ = ["Clip", "TrackingSampler"]

logger = logging.getLogger(__name__)

_COUNTER_SLOTS = 64      # per-process counter slots (slot 0: main process, 1..: data-loader workers)
_READ_ERRORS, _REJECTED, _UNREADABLE_FRAMES = 0, 1, 2
_WARNED_READS = 10       # the first unreadable frames are each named in a warning, later every 100th
_SEQUENCE_DRAWS = 1000   # uniform sequence draws before listing a dataset's qualifying sequences


@dataclass
class Clip:
    """Frame ids of one training sample (before loading)."""
    dataset_index: int
    seq_id: int
    template_ids: list[int]
    search_ids: list[int]


class TrackingSampler(torch.utils.data.Dataset):
    """Map-style dataset of ``samples_per_epoch`` random clips, processed into network inputs.

    Each item is the :class:`TrackingProcessing` dict plus ``dataset`` (name), ``sequence``
    (name) and ``frame_ids`` (1 + num_search,) long: template id first, then search ids.
    """

    def __init__(
        self,
        datasets: list[SequenceDataset],
        ratios: list[float],
        samples_per_epoch: int,
        num_search: int,
        max_interval: int,
        processing: TrackingProcessing,
        seed: int = 0,
        reader: Callable = read_image,
        max_tries: int = 100,
        min_sequence_length: int = 20,
    ) -> None:
        if not datasets:
            raise ValueError("TrackingSampler needs at least one dataset")
        if len(ratios) != len(datasets):
            raise ValueError(f"{len(datasets)} datasets but {len(ratios)} ratios")
        ratios_arr = np.asarray(ratios, dtype=np.float64)
        if (ratios_arr < 0).any() or not ratios_arr.sum() > 0:
            raise ValueError(f"ratios must be non-negative with a positive sum, got {list(ratios)}")
        for dataset, ratio in zip(datasets, ratios):
            if ratio > 0 and len(dataset) == 0:
                raise ValueError(f"dataset '{dataset.name}' has no sequences but ratio {ratio}")
        if samples_per_epoch < 1 or num_search < 1 or max_interval < 1 or max_tries < 1:
            raise ValueError("samples_per_epoch, num_search, max_interval and max_tries must be >= 1")
        self.datasets = list(datasets)
        self.probabilities = ratios_arr / ratios_arr.sum()
        self.samples_per_epoch = int(samples_per_epoch)
        self.num_search = int(num_search)
        self.max_interval = int(max_interval)
        self.processing = processing
        self.seed = int(seed)
        self.reader = reader
        self.max_tries = int(max_tries)
        self.min_sequence_length = int(min_sequence_length)
        # Shared memory: visible to (persistent) workers after fork or spawn.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._counters = torch.zeros(_COUNTER_SLOTS, 3, dtype=torch.int64).share_memory_()
        # Per-process caches of deterministic facts (safe: they do not change the random stream).
        self._qualifies: list[dict[int, bool]] = [{} for _ in self.datasets]
        self._qualifying: list[np.ndarray | None] = [None for _ in self.datasets]

    # -- epoch and counters -----------------------------------------------------------------
    def __len__(self) -> int:
        return self.samples_per_epoch

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose samples ``__getitem__`` returns (also in running workers)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        """Current epoch."""
        return int(self._epoch)

    @property
    def read_errors(self) -> int:
        """Samples redrawn because a frame could not be read (all processes)."""
        return int(self._counters[:, _READ_ERRORS].sum())

    @property
    def unreadable_frames(self) -> int:
        """Frame reads that failed: missing, corrupt or truncated image files (all processes)."""
        return int(self._counters[:, _UNREADABLE_FRAMES].sum())

    @property
    def rejected(self) -> int:
        """Samples redrawn because the processing rejected them (all processes)."""
        return int(self._counters[:, _REJECTED].sum())

    def _count(self, which: int) -> int:
        """Increment a counter in this process's slot; returns the new total over all processes."""
        info = torch.utils.data.get_worker_info()
        slot = 0 if info is None else 1 + info.id % (_COUNTER_SLOTS - 1)
        self._counters[slot, which] += 1
        return int(self._counters[:, which].sum())

    # -- sampling ---------------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.samples_per_epoch:
            raise IndexError(f"sample index {index} out of range [0, {self.samples_per_epoch})")
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        last_error = "none"
        for _ in range(self.max_tries):
            clip = self.sample_clip(rng)
            dataset = self.datasets[clip.dataset_index]
            frame_ids = clip.template_ids + clip.search_ids
            unique_ids = sorted(set(frame_ids))
            failed: list[ImageReadError] = []
            try:
                frames, info = dataset.get_frames(clip.seq_id, unique_ids, _Collecting(self.reader, failed))
            except ImageReadError as error:  # a dataset that reads frames its own way
                failed.append(error)
            if failed:
                last_error = f"unreadable frame: {failed[0]}"
                self._count(_READ_ERRORS)
                self._report_unreadable(dataset.name, failed)
                continue
            by_id = dict(zip(unique_ids, frames))
            sample = self._process(clip, [by_id[f] for f in frame_ids], info, rng)
            if sample is None:
                last_error = (f"processing rejected {dataset.name}/{info.name} frames {frame_ids} "
                              "(target outside its crop or crop too small)")
                self._count(_REJECTED)
                continue
            sample["dataset"] = dataset.name
            sample["sequence"] = info.name
            sample["frame_ids"] = torch.tensor(frame_ids, dtype=torch.long)
            return sample
        raise RuntimeError(f"no valid sample for index {index} (epoch {self.epoch}) after "
                           f"{self.max_tries} tries; last error: {last_error}")

    def _report_unreadable(self, dataset: str, failed: list[ImageReadError]) -> None:
        """Count the failed reads of a sample; warn about the first few (each names its file)."""
        for error in failed:
            total = self._count(_UNREADABLE_FRAMES)
            if total <= _WARNED_READS or total % 100 == 0:
                logger.warning("skipping a sample of %s: %s (%d unreadable frame(s) so far)", dataset, error, total)

    def _process(self, clip: Clip, frames: list[np.ndarray], info: SequenceInfo,
                 rng: np.random.Generator) -> dict | None:
        """Run the processing on loaded frames, with per-search-frame visibility and labels."""
        num_t = len(clip.template_ids)
        t_ids = torch.tensor(clip.template_ids, dtype=torch.long)
        s_ids = torch.tensor(clip.search_ids, dtype=torch.long)
        return self.processing(
            frames[:num_t], info.bbox[t_ids], frames[num_t:], info.bbox[s_ids], rng,
            search_visible=info.visible[s_ids],
            search_cls_label=info.cls_label[s_ids],
            search_cls_multi_hot=info.cls_multi_hot[s_ids],
        )

    def sample_clip(self, rng: np.random.Generator) -> Clip:
        """Choose dataset, sequence and frame ids (no image is read)."""
        dataset_index = int(rng.choice(len(self.datasets), p=self.probabilities))
        dataset = self.datasets[dataset_index]
        seq_id = self._sample_sequence(dataset_index, rng)
        if not dataset.is_video_sequence():
            return Clip(dataset_index, seq_id, [0], [0] * self.num_search)
        visible = np.asarray(dataset.sequence_info(seq_id).visible, dtype=bool)
        ids = self._sample_causal_ids(visible, rng)
        if rng.random() < 0.5:
            return Clip(dataset_index, seq_id, [ids[-1]], ids[-2::-1])
        return Clip(dataset_index, seq_id, [ids[0]], ids[1:])

    def _sample_sequence(self, dataset_index: int, rng: np.random.Generator) -> int:
        """A uniformly drawn qualifying sequence of a dataset."""
        dataset = self.datasets[dataset_index]
        if not dataset.is_video_sequence():
            return int(rng.integers(len(dataset)))
        # Draw uniformly until a qualifying sequence comes up (a pure function of the random
        # stream: the per-process caches only make the checks cheaper). Only if none of the draws
        # qualifies, fall back to the list of qualifying sequences.
        for seq_id in rng.integers(len(dataset), size=_SEQUENCE_DRAWS).tolist():
            if self._sequence_qualifies(dataset_index, seq_id):
                return seq_id
        qualifying = self._qualifying[dataset_index]
        if qualifying is None:
            qualifying = np.array([s for s in range(len(dataset)) if self._sequence_qualifies(dataset_index, s)],
                                  dtype=np.int64)
            self._qualifying[dataset_index] = qualifying
        if len(qualifying) == 0:
            raise ValueError(
                f"dataset '{dataset.name}' has no sequence with more than {2 * (self.num_search + 1)} "
                f"visible frames, at least {self.min_sequence_length} frames and {self.num_search + 1} "
                f"visible frames at most {self.max_interval} apart; lower DATA.MIN_SEQUENCE_LENGTH or "
                "DATA.SEARCH.NUMBER, or drop the dataset")
        return int(qualifying[rng.integers(len(qualifying))])

    def _sequence_qualifies(self, dataset_index: int, seq_id: int) -> bool:
        cache = self._qualifies[dataset_index]
        if seq_id not in cache:
            info = self.datasets[dataset_index].sequence_info(seq_id)
            visible = np.asarray(info.visible, dtype=bool)
            cache[seq_id] = bool(
                len(visible) >= self.min_sequence_length
                and visible.sum() > 2 * (self.num_search + 1)
                and _run_lengths(np.flatnonzero(visible), self.max_interval).max(initial=0) >= self.num_search + 1
            )
        return cache[seq_id]

    def _sample_causal_ids(self, visible: np.ndarray, rng: np.random.Generator) -> list[int]:
        """Base frame + ``num_search`` increasing visible frame ids, gaps <= max_interval."""
        vis = np.flatnonzero(visible)
        reach = _run_lengths(vis, self.max_interval)  # frames usable from position i onwards
        need = self.num_search + 1
        starts = np.flatnonzero(reach >= need)
        if len(starts) == 0:
            raise ValueError(f"sequence has no {need} visible frames at most {self.max_interval} apart")
        pos = int(starts[rng.integers(len(starts))])
        positions = [pos]
        for k in range(1, need):
            remaining = need - k  # frames still to place, this one included
            last = pos + reach[pos] - 1  # last position of this run of close visible frames
            hi = min(int(np.searchsorted(vis, vis[pos] + self.max_interval, side="right")) - 1,
                     last - (remaining - 1))
            pos = int(rng.integers(pos + 1, hi + 1))
            positions.append(pos)
        return [int(vis[p]) for p in positions]


class _Collecting:
    """A frame reader that records an ImageReadError and returns None instead of raising, so every
    frame of a clip is tried and each unreadable one is counted (the sample is then drawn again)."""

    def __init__(self, reader: Callable, failed: list[ImageReadError]) -> None:
        self.reader, self.failed = reader, failed

    def __call__(self, path) -> np.ndarray | None:
        try:
            return self.reader(path)
        except ImageReadError as error:
            self.failed.append(error)
            return None


def _run_lengths(vis: np.ndarray, max_interval: int) -> np.ndarray:
    """For sorted frame ids ``vis``: how many of them, from position i on, follow each other
    with gaps <= ``max_interval`` (i itself included)."""
    if len(vis) == 0:
        return np.zeros(0, dtype=np.int64)
    breaks = np.flatnonzero(np.diff(vis) > max_interval)         # run ends at these positions
    run_end = np.append(breaks, len(vis) - 1)                    # last position of every run
    run_of = np.searchsorted(run_end, np.arange(len(vis)))       # run index of every position
    return run_end[run_of] - np.arange(len(vis)) + 1
