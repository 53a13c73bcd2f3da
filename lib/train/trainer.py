"""The training loop: optimiser, schedule, stages, checkpoints, exact resume, logging.

The actor turns a batch into ``(loss, stats)``; the trainer owns everything around it (the
actor / trainer split of pytracking). Epochs are 1-based. A checkpoint is written at the end of
an epoch and holds plain data only (weights, optimiser, scheduler, scaler, epoch, stage, RNG
states, the config as a dict), so ``--resume`` continues exactly: with a fixed seed on CPU an
interrupted-and-resumed run logs the same losses as an uninterrupted one.
"""
from __future__ import annotations

import logging
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from lib.train.trainable import enter_train_mode, set_trainable, stage_first_epoch, stage_learning_rate, \
    trainable_names, trainable_summary, training_stage
from lib.train.metrics import EpochMetrics
from lib.utils.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from lib.utils.records import append_jsonl
from lib.utils.precision import cpu_has_fast_bf16
from lib.utils.runs import RunPaths, drop_metrics_after, epoch_checkpoints

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Process group facts of this process (single process: rank 0 of 1)."""
    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def rng_state() -> dict:
    """Python, NumPy and torch RNG states as plain data."""
    np_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                       "has_gauss": int(np_state[3]), "gauss": float(np_state[4])}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_as_tuple(state["python"]))
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resolve_amp(amp: bool, amp_auto: bool, device: torch.device) -> bool:
    """Whether a run trains in mixed precision: always with ``TRAIN.AMP``; with ``TRAIN.AMP_AUTO``
    where it is fast (CUDA, or a CPU with native bf16 kernels: :func:`cpu_has_fast_bf16`)."""
    if amp:
        return True
    return bool(amp_auto) and (device.type == "cuda" or (device.type == "cpu" and cpu_has_fast_bf16()))


class NonFiniteLossError(RuntimeError):
    """Too many consecutive training steps with a NaN / inf loss or gradient norm."""


def config_differences(old: dict, new: dict) -> list[str]:
    """``KEY (old -> new)`` for every key of two nested config dicts whose values differ, sorted."""
    old, new = _flatten(old), _flatten(new)
    return [f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in sorted(old.keys() | new.keys())
            if old.get(k) != new.get(k)]


def _flatten(tree: dict, prefix: str = "") -> dict:
    """``{"TRAIN.LR": 1e-4, ...}`` from a nested config dict."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _is_number(value) -> bool:
    """A float or int epoch stat (the ``Data/`` counts are ints; bools are not numbers here)."""
    return isinstance(value, (float, int)) and not isinstance(value, bool)


def _format_stat(value: float | int) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _stats_record(stats: dict) -> dict:
    """Epoch stats as plain data: every number the log and TensorBoard show (NaN included, written
    as null), the confusion matrix as nested lists (rows true class, columns predicted)."""
    record = {k: v for k, v in stats.items() if _is_number(v)}
    if "confusion" in stats:
        record["confusion"] = stats["confusion"].tolist()
    return record


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


class Trainer:
    """Runs epochs of training (and validation) for a HIPTrack(-CLS) model and its actor."""

    def __init__(self, cfg, model: nn.Module, actor, train_loader, val_loader, paths: RunPaths,
                 device: torch.device, dist_info: DistInfo = DistInfo(), set_loader_epoch=None) -> None:
        self.cfg = cfg
        self.model = model.to(device)
        if cfg.TRAIN.CHANNELS_LAST:  # in place: the parameters stay the same objects
            self.model.to(memory_format=torch.channels_last)
        self.actor = actor
        self.train_loader, self.val_loader = train_loader, val_loader
        self.paths = paths
        self.device = device
        self.dist = dist_info
        self.set_loader_epoch = set_loader_epoch or (lambda loader, epoch: None)
        self.epoch = 0
        self.stage: int | None = None
        self.optimizer = None
        self.scheduler = None
        self.nonfinite_in_a_row = 0
        self.nonfinite_total = 0
        self.use_amp = resolve_amp(cfg.TRAIN.AMP, cfg.TRAIN.AMP_AUTO, device)
        # fp16 needs loss scaling; CPU autocast uses bf16, which does not
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and device.type == "cuda")
        self.writers: dict = {}  # opened by fit: building a trainer (and resuming) writes nothing
        if self.use_amp and device.type == "cpu" and dist_info.is_main and not cpu_has_fast_bf16():
            logger.warning("TRAIN.AMP on a CPU without bf16 instructions (AVX512-BF16 / AMX): bf16 convolutions and "
                           "matrix products fall back to slow kernels, so training is several times slower than "
                           "fp32; set TRAIN.AMP False")
        if dist_info.is_main:
            how = "fp32"
            if self.use_amp:
                how = "fp16 autocast + loss scaling" if device.type == "cuda" else "bf16 autocast"
            why = "TRAIN.AMP" if cfg.TRAIN.AMP else "TRAIN.AMP_AUTO" if cfg.TRAIN.AMP_AUTO else "TRAIN.AMP False"
            logger.info("training precision: %s (%s, %s%s)", how, why, device.type,
                        f", native bf16: {'yes' if cpu_has_fast_bf16() else 'no'}" if device.type == "cpu" else "")

    # ------------------------------------------------------------------ setup
    def _tensorboard_writers(self) -> dict:
        from torch.utils.tensorboard import SummaryWriter
        return {split: SummaryWriter(str(self.paths.tensorboard_dir / split)) for split in ("train", "val")}

    def _trainable_parameters(self) -> tuple[list, list]:
        backbone, rest = [], []
        for name, p in self._bare_model.named_parameters():
            if p.requires_grad:
                (backbone if name.startswith("backbone.") else rest).append(p)
        return backbone, rest

    def _enter_stage(self, stage: int, epoch: int) -> None:
        """Rebuild the optimiser / scheduler for ``stage``, then set the trainable parts for ``epoch``.

        The optimiser holds the parameters trainable at the stage's first epoch, whatever ``epoch``
        is: a run resumed in the middle of a stage (e.g. after FREEZE_CLS_EPOCH froze the head)
        rebuilds the same parameter groups as the run that wrote the checkpoint.
        """
        set_trainable(self._bare_model, self.cfg, stage_first_epoch(self.cfg, stage))
        train = self.cfg.TRAIN
        lr = stage_learning_rate(self.cfg, stage)
        backbone, rest = self._trainable_parameters()
        groups = [{"params": rest, "lr": lr, "name": "heads"}]
        if backbone:
            groups.append({"params": backbone, "lr": lr * train.BACKBONE_MULTIPLIER, "name": "backbone"})
        self.optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=train.WEIGHT_DECAY)
        if train.SCHEDULER.TYPE == "Mstep":
            self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, list(train.SCHEDULER.MILESTONES),
                                                                  gamma=train.SCHEDULER.GAMMA)
        else:
            self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, train.LR_DROP_EPOCH,
                                                             gamma=train.SCHEDULER.DECAY_RATE)
        self.stage = stage
        set_trainable(self._bare_model, self.cfg, epoch)
        self._wrap_ddp()
        if self.dist.is_main:
            what = {0: "single stage", 1: "stage 1 (classification head)", 2: "stage 2 (everything)"}[stage]
            logger.info("%s from epoch %d: lr %g (backbone x%g), optimiser rebuilt", what, epoch, lr,
                        train.BACKBONE_MULTIPLIER)
            for name, (n_train, n_total) in trainable_summary(self._bare_model).items():
                logger.info("  %-20s trainable %12s / %12s", name, f"{n_train:,}", f"{n_total:,}")

    @property
    def _bare_model(self) -> nn.Module:
        return self.model.module if isinstance(self.model, DistributedDataParallel) else self.model

    def _wrap_ddp(self) -> None:
        """(Re)wrap in DDP: the set of parameters that need gradients changes between stages."""
        if not self.dist.enabled:
            return
        bare = self._bare_model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        self.model = DistributedDataParallel(bare, device_ids=device_ids, find_unused_parameters=True)
        self.actor.net = self.model

    # ------------------------------------------------------------------ checkpoints
    def _rng_states(self) -> list[dict]:
        """RNG states of every rank, rank order (call on all ranks)."""
        state = rng_state()
        if not self.dist.enabled:
            return [state]
        gathered: list = [None] * self.dist.world_size
        dist.all_gather_object(gathered, state)
        return gathered

    def save(self, epoch: int) -> Path | None:
        """Write the checkpoint of ``epoch`` (rank 0); every rank must call this (RNG states are gathered)."""
        rng_ranks = self._rng_states()
        if not self.dist.is_main:
            return None
        payload = {
            "net": self._bare_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "stage": self.stage,
            "nonfinite_total": self.nonfinite_total,
            "rng": rng_ranks[0],
            "rng_ranks": rng_ranks,
            "world_size": self.dist.world_size,
            "config": self.cfg.to_dict(),
            "net_type": type(self._bare_model).__name__,
        }
        path = save_checkpoint(payload, self.paths.checkpoint(epoch))
        logger.info("saved %s", path)
        keep = self.cfg.TRAIN.KEEP_CHECKPOINTS
        if keep:
            for _, old in epoch_checkpoints(self.paths.checkpoint_dir)[:-keep]:
                old.unlink(missing_ok=True)
        return path

    def resume(self, checkpoint: str | Path) -> None:
        """Continue from a checkpoint file, or from the newest one when ``checkpoint == 'latest'``.

        Reads, checks and applies the checkpoint in memory and writes nothing, so a failed resume
        (``CheckpointError``: unreadable, not a training checkpoint, weights of another model) leaves
        the run's files as they were.
        """
        if str(checkpoint) == "latest":
            found = epoch_checkpoints(self.paths.checkpoint_dir)
            if not found:
                logger.info("--resume latest: no checkpoint in %s, starting from epoch 1", self.paths.checkpoint_dir)
                return
            checkpoint = found[-1][1]
        state = read_checkpoint(checkpoint)
        missing = [k for k in ("net", "optimizer", "scheduler", "epoch", "stage", "rng") if k not in state]
        if missing:
            raise CheckpointError(f"{checkpoint} is not a training checkpoint of this code (missing {missing}); "
                                  "to start from its weights use MODEL.PRETRAIN_FILE")
        try:
            self._bare_model.load_state_dict(state["net"])
        except RuntimeError as e:  # missing / unexpected keys, other shapes: a checkpoint of another config
            raise CheckpointError(f"{checkpoint} does not fit the model of this config: "
                                  f"{' '.join(str(e).split())[:300]}") from e
        epoch = state["epoch"]
        self._enter_stage(state["stage"], epoch)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.nonfinite_total = state.get("nonfinite_total", 0)
        set_rng_state(self._rank_rng(state, checkpoint))
        self._warn_config_changes(state.get("config", {}), checkpoint)
        self.epoch = epoch
        logger.info("resumed from %s (epoch %d done)", checkpoint, epoch)

    def _rank_rng(self, state: dict, checkpoint) -> dict:
        """This rank's RNG state from a checkpoint (rank 0's when the world size changed)."""
        ranks = state.get("rng_ranks") or [state["rng"]]
        if len(ranks) == self.dist.world_size:
            return ranks[self.dist.rank]
        if self.dist.is_main:
            logger.warning("%s was written by %d process(es), this run has %d: every rank continues with rank 0's "
                           "RNG state, so the run is not an exact continuation", checkpoint, len(ranks),
                           self.dist.world_size)
        return ranks[0]

    def _warn_config_changes(self, saved: dict, checkpoint) -> None:
        """Log the config keys whose values differ from the checkpoint's (TRAIN.EPOCH usually does)."""
        if not self.dist.is_main or not saved:
            return
        changed = config_differences(saved, self.cfg.to_dict())
        if changed:
            logger.warning("config differs from %s in: %s", checkpoint, ", ".join(changed))

    # ------------------------------------------------------------------ loop
    def fit(self) -> None:
        """Train from ``self.epoch + 1`` to ``TRAIN.EPOCH``."""
        train = self.cfg.TRAIN
        self._forget_later_metrics()
        if self.dist.is_main:
            self.writers = self._tensorboard_writers()
        try:
            for epoch in range(self.epoch + 1, train.EPOCH + 1):
                start = time.perf_counter()
                stage = training_stage(self.cfg, epoch)
                if stage != self.stage:
                    self._enter_stage(stage, epoch)
                else:  # FREEZE_CLS_EPOCH can change the trainable set within a stage
                    before = trainable_names(self._bare_model)
                    set_trainable(self._bare_model, self.cfg, epoch)
                    if trainable_names(self._bare_model) != before:
                        self._wrap_ddp()  # DDP must not see requires_grad change under it
                        if self.dist.is_main:
                            logger.info("epoch %d: trainable parameters changed (TRAIN.FREEZE_CLS_EPOCH)", epoch)
                lrs = {f"LearningRate/{g.get('name', i)}": g["lr"] for i, g in enumerate(self.optimizer.param_groups)}
                counts_before = self._epoch_counts()
                stats = self.train_epoch(epoch)
                self.scheduler.step()
                self._log_epoch("train", epoch, {**stats, **lrs})
                val_stats = None
                if self.val_loader is not None and epoch % train.VAL_EPOCH_INTERVAL == 0:
                    val_stats = self.validate(epoch)
                    self._log_epoch("val", epoch, val_stats)
                counts = self._counts_since(counts_before)
                # before the checkpoint: a crash in between leaves a record the resume drops, never
                # a checkpoint without its record
                self._write_metrics(self.epoch_record(epoch, time.perf_counter() - start, lrs, stats, val_stats,
                                                      counts))
                self.epoch = epoch
                if epoch % train.SAVE_INTERVAL == 0 or epoch == train.EPOCH:
                    self.save(epoch)
        finally:
            for writer in self.writers.values():
                writer.close()

    # ------------------------------------------------------------------ metrics.jsonl
    def _forget_later_metrics(self) -> None:
        """Drop records of epochs after the one this run starts from (rank 0): an interrupted run
        may have written some that no checkpoint holds, and a fresh run starts an empty file."""
        if not self.dist.is_main:
            return
        dropped = drop_metrics_after(self.paths.metrics_file, self.epoch)
        if dropped:
            logger.info("%s: dropped %d record(s) of epochs after %d", self.paths.metrics_file, dropped, self.epoch)

    def _epoch_counts(self) -> dict[str, int]:
        """Running totals of skipped steps and of samples the train sampler drew again."""
        sampler = getattr(self.train_loader, "dataset", None)
        return {"nonfinite_steps": self.nonfinite_total,
                "unreadable_samples": int(getattr(sampler, "read_errors", 0)),
                "rejected_samples": int(getattr(sampler, "rejected", 0))}

    def _counts_since(self, before: dict[str, int]) -> dict[str, int]:
        """This epoch's counts, summed over ranks (each rank samples its own share; every rank
        skips the same non-finite steps, so those are taken once). Call on every rank."""
        now = self._epoch_counts()
        counts = {k: now[k] - before[k] for k in now}
        if self.dist.enabled:
            sampled = torch.tensor([counts["unreadable_samples"], counts["rejected_samples"]], dtype=torch.int64,
                                   device=self.device)
            dist.all_reduce(sampled)
            counts["unreadable_samples"], counts["rejected_samples"] = sampled.tolist()
        return counts

    def epoch_record(self, epoch: int, seconds: float, lrs: dict, train_stats: dict, val_stats: dict | None,
                     counts: dict[str, int]) -> dict:
        """The ``metrics.jsonl`` record of an epoch: ``epoch``, ``stage`` (0: single stage),
        ``seconds`` (wall time of training and validation), ``lr`` per parameter group, the counts,
        ``train`` (and ``val`` when it ran) stats as logged, with the confusion matrix as lists and
        the split's ``Data/skipped_sequences`` / ``Data/unreadable_frames`` counts."""
        record = {"epoch": epoch, "stage": self.stage, "seconds": round(seconds, 3),
                  "lr": {key.removeprefix("LearningRate/"): lr for key, lr in lrs.items()}, **counts,
                  "train": _stats_record(train_stats)}
        if val_stats is not None:
            record["val"] = _stats_record(val_stats)
        return record

    def _write_metrics(self, record: dict) -> None:
        if self.dist.is_main:
            append_jsonl(self.paths.metrics_file, record)

    def _autocast(self):
        dtype = torch.float16 if self.device.type == "cuda" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype, enabled=self.use_amp)

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _all_ranks_finite(self, loss: torch.Tensor) -> bool:
        finite = torch.tensor(float(torch.isfinite(loss).all()), device=self.device)
        if self.dist.enabled:
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)  # every rank skips the same step
        return bool(finite.item())

    # ------------------------------------------------------------------ data counts
    @staticmethod
    def _sampler_of(loader):
        """The TrackingSampler behind a loader (None for loaders of other datasets)."""
        return getattr(loader, "dataset", None)

    def _unreadable_frames(self, loader) -> int:
        """Running total of failed frame reads of a loader's sampler (this rank's workers)."""
        return int(getattr(self._sampler_of(loader), "unreadable_frames", 0))

    def _data_counts(self, loader, frames_before: int) -> dict[str, int]:
        """``Data/skipped_sequences``: sequences of the loader's datasets dropped by the check
        before epoch 1 (``DATA.ON_BAD_SEQUENCE: skip``); ``Data/unreadable_frames``: frame reads
        that failed since ``frames_before`` (missing, corrupt or truncated files; all ranks).
        Call on every rank."""
        datasets = getattr(self._sampler_of(loader), "datasets", [])
        skipped = sum(len(getattr(d, "skipped_sequences", ())) for d in datasets)
        frames = self._unreadable_frames(loader) - frames_before
        if self.dist.enabled:
            total = torch.tensor([frames], dtype=torch.int64, device=self.device)
            dist.all_reduce(total)
            frames = int(total.item())
        return {"Data/skipped_sequences": skipped, "Data/unreadable_frames": frames}

    # ------------------------------------------------------------------ epochs
    def train_epoch(self, epoch: int) -> dict:
        """One epoch of training; its statistics (averages over ranks) and data counts."""
        enter_train_mode(self.model)
        self.set_loader_epoch(self.train_loader, epoch)
        frames_before = self._unreadable_frames(self.train_loader)
        metrics = self._epoch_metrics()
        params = [p for p in self.model.parameters() if p.requires_grad]
        progress = self._progress(len(self.train_loader), epoch)
        start = time.perf_counter()
        for it, batch in enumerate(self.train_loader, start=1):
            batch = self._to_device(batch)
            with self._autocast():
                loss, stats = self.actor(batch, epoch)
            self.optimizer.zero_grad(set_to_none=True)
            if not self._all_ranks_finite(loss):
                self._count_nonfinite(epoch, it, "loss")
                continue
            self.scaler.scale(loss).backward()
            if self.cfg.TRAIN.GRAD_CLIP_NORM > 0:
                self.scaler.unscale_(self.optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.TRAIN.GRAD_CLIP_NORM)
                # with loss scaling the scaler skips such steps itself and lowers its scale
                if not self.scaler.is_enabled() and not torch.isfinite(grad_norm):
                    self.optimizer.zero_grad(set_to_none=True)
                    self._count_nonfinite(epoch, it, "gradient")
                    continue
            self.nonfinite_in_a_row = 0
            self.scaler.step(self.optimizer)
            self.scaler.update()
            metrics.update(stats, batch["search_images"].shape[0])
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{stats['Loss/total']:.3f}", refresh=False)
            if self.dist.is_main and (it % self.cfg.TRAIN.PRINT_INTERVAL == 0 or it == len(self.train_loader)):
                rate = it * batch["search_images"].shape[0] * self.dist.world_size / (time.perf_counter() - start)
                logger.info("[train] epoch %d it %d/%d, %.1f samples/s, %s", epoch, it, len(self.train_loader),
                            rate, metrics.summary())
        if progress is not None:
            progress.close()
        counts = self._data_counts(self.train_loader, frames_before)
        return {**metrics.reduce(self.dist.enabled, self.device), **counts}

    def _epoch_metrics(self) -> EpochMetrics:
        """Empty statistics of an epoch for the head's label mode (MODEL.CLS_HEAD.MODE)."""
        head = self.cfg.MODEL.CLS_HEAD
        return EpochMetrics(head.NUM_CLASSES, multi_label=head.MODE == "multi")

    def _count_nonfinite(self, epoch: int, it: int, what: str = "loss") -> None:
        """Count a skipped step; raise NonFiniteLossError after TRAIN.MAX_NONFINITE_STEPS in a row."""
        self.nonfinite_in_a_row += 1
        self.nonfinite_total += 1
        if self.dist.is_main:
            logger.warning("non-finite %s at epoch %d iteration %d: step skipped (%d in a row, %d in total)",
                           what, epoch, it, self.nonfinite_in_a_row, self.nonfinite_total)
        if self.nonfinite_in_a_row >= self.cfg.TRAIN.MAX_NONFINITE_STEPS:
            raise NonFiniteLossError(
                f"{self.nonfinite_in_a_row} consecutive non-finite losses / gradients, the last at epoch {epoch} "
                f"iteration {it}: stopping (TRAIN.MAX_NONFINITE_STEPS). Lower the learning rate or check the data.")

    @torch.no_grad()
    def validate(self, epoch: int) -> dict:
        """Validation statistics of an epoch (averages over ranks) and data counts."""
        model = self._bare_model
        model.eval()
        self.set_loader_epoch(self.val_loader, epoch)
        frames_before = self._unreadable_frames(self.val_loader)
        metrics = self._epoch_metrics()
        for batch in self.val_loader:  # the actor asks the network for challenges when it has the head
            batch = self._to_device(batch)
            with self._autocast():
                _, stats = self.actor.compute_losses(self.actor.forward(batch, epoch), batch)
            metrics.update(stats, batch["search_images"].shape[0])
        counts = self._data_counts(self.val_loader, frames_before)
        return {**metrics.reduce(self.dist.enabled, self.device), **counts}

    def _progress(self, total: int, epoch: int):
        if not (self.dist.is_main and sys.stderr.isatty()):
            return None
        from tqdm import tqdm
        return tqdm(total=total, desc=f"epoch {epoch}", leave=False)

    def _log_epoch(self, split: str, epoch: int, stats: dict) -> None:
        if not self.dist.is_main:
            return
        scalars = {k: v for k, v in stats.items() if _is_number(v) and not math.isnan(v)}
        logger.info("[%s] epoch %d: %s", split, epoch, ", ".join(f"{k} {_format_stat(v)}" for k, v in scalars.items()))
        writer = self.writers.get(split)
        if writer is None:
            return
        for key, value in scalars.items():
            writer.add_scalar(key, value, epoch)
        if "confusion" in stats:
            from lib.train.metrics import render_confusion_matrix
            writer.add_image("ConfusionMatrix", render_confusion_matrix(stats["confusion"]), epoch, dataformats="HWC")
        writer.flush()
