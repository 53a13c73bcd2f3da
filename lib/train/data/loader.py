"""Data loaders for training and validation: sampler + processing + a seeded torch DataLoader.

Batches are batch-first dicts: ``template_images`` (B, T, 3, Sz, Sz), ``template_anno`` (B, T, 4),
``search_images`` (B, N, 3, Sx, Sx), ``search_anno`` (B, N, 4), ``search_visible`` (B, N),
``search_cls_label`` (B, N), ``search_cls_multi_hot`` (B, N, K), ``frame_ids`` (B, 1 + N), and
lists of B strings ``dataset`` / ``sequence``.

Every sample is a function of (seed, epoch, index) only (see :mod:`lib.train.data.sampler`), the
shuffle order a function of (seed, epoch); so a run is reproducible for any number of workers
and ranks. Call :func:`set_epoch` before iterating each epoch.
"""
from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.utils.data
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

from lib.train.data.processing import TrackingProcessing
from lib.train.data.sampler import TrackingSampler
from lib.dataset.base import SequenceDataset

__all__ = ["EpochRandomSampler", "build_train_loader", "set_epoch"]


class EpochRandomSampler(RandomSampler):
    """RandomSampler whose permutation depends only on (seed, epoch), not on earlier epochs."""

    def __init__(self, data_source, seed: int) -> None:
        super().__init__(data_source, generator=torch.Generator())
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch``."""
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        self.generator.manual_seed(_derive_seed(self.seed, self.epoch))
        yield from super().__iter__()


class _WorkerInit:
    """Seeds python / numpy / torch in a worker from (seed, epoch, rank, worker id).

    The sampler does not use these generators (its randomness is per sample); this is for any
    library randomness in a worker. Also limits OpenCV to one thread per worker, so workers do
    not oversubscribe the cores.
    """

    def __init__(self, seed: int, rank: int) -> None:
        self.seed, self.rank = int(seed), int(rank)

    def __call__(self, worker_id: int) -> None:
        info = torch.utils.data.get_worker_info()
        epoch = info.dataset.epoch if info is not None and hasattr(info.dataset, "epoch") else 0
        state = np.random.SeedSequence([self.seed, epoch, self.rank, worker_id]).generate_state(2)
        random.seed(int(state[0]))
        np.random.seed(int(state[1]))
        torch.manual_seed(int(state[0]) << 32 | int(state[1]))
        cv2.setNumThreads(1)


def _worker_context() -> str:
    """``forkserver`` where the platform has it (Linux, macOS), else ``spawn``."""
    import multiprocessing
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def build_train_loader(
    cfg,
    datasets: Sequence[SequenceDataset],
    training: bool,
    seed: int,
    epoch_sampler_rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """DataLoader over a :class:`TrackingSampler` of ``DATA.TRAIN`` (or ``DATA.VAL``) datasets.

    ``datasets`` are the datasets named in ``DATA.<split>.DATASETS_NAME``, in that order. Batch
    size ``TRAIN.BATCH_SIZE``, ``TRAIN.NUM_WORKER`` persistent workers, ``drop_last`` and shuffle
    in training; a DistributedSampler for ``world_size > 1`` (``epoch_sampler_rank`` = rank).
    """
    split = cfg.DATA.TRAIN if training else cfg.DATA.VAL
    split_name = "DATA.TRAIN" if training else "DATA.VAL"
    names = [d.name for d in datasets]
    if names != list(split.DATASETS_NAME):
        raise ValueError(f"{split_name}.DATASETS_NAME is {list(split.DATASETS_NAME)} but the datasets "
                         f"given are {names} (same names, same order: the ratios are matched by position)")
    if cfg.DATA.TEMPLATE.NUMBER != 1:
        raise ValueError(f"DATA.TEMPLATE.NUMBER must be 1 for the causal sampler, got {cfg.DATA.TEMPLATE.NUMBER}")
    if not 0 <= epoch_sampler_rank < world_size:
        raise ValueError(f"rank {epoch_sampler_rank} is not in [0, world_size={world_size})")
    sampler_dataset = TrackingSampler(
        datasets=list(datasets),
        ratios=list(split.DATASETS_RATIO),
        samples_per_epoch=split.SAMPLE_PER_EPOCH,
        num_search=cfg.DATA.SEARCH.NUMBER,
        max_interval=cfg.DATA.MAX_SAMPLE_INTERVAL,
        min_sequence_length=cfg.DATA.MIN_SEQUENCE_LENGTH,
        processing=TrackingProcessing(cfg, training=training),
        seed=seed,
    )
    if world_size > 1:
        index_sampler = DistributedSampler(sampler_dataset, num_replicas=world_size, rank=epoch_sampler_rank,
                                           shuffle=training, seed=seed)
    elif training:
        index_sampler = EpochRandomSampler(sampler_dataset, seed=seed)
    else:
        index_sampler = SequentialSampler(sampler_dataset)
    num_workers = cfg.TRAIN.NUM_WORKER
    return DataLoader(
        sampler_dataset,
        batch_size=cfg.TRAIN.BATCH_SIZE,
        sampler=index_sampler,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        # forking a process whose OpenMP / OpenCV thread pools are running can deadlock the
        # workers (seen after tracking in the same process); forkserver starts them clean
        multiprocessing_context=_worker_context() if num_workers > 0 else None,
        drop_last=training,
        pin_memory=torch.cuda.is_available(),
        worker_init_fn=_WorkerInit(seed, epoch_sampler_rank) if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(_derive_seed(seed, epoch_sampler_rank)),
    )


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Select ``epoch`` in the loader's TrackingSampler and its index sampler (before iterating)."""
    loader.dataset.set_epoch(epoch)
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)


def _derive_seed(*values: int) -> int:
    """A 63-bit seed mixed from non-negative integers."""
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(1, np.uint64)[0] >> 1)
