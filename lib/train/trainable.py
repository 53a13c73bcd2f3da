"""Which parameters train: explicit, from config, per epoch.

Upstream HIPTrack freezes the whole ViT and trains the rest. An auxiliary classification loss can
only shape the shared features if the backbone trains, so this is configurable:

* single stage: the backbone trains unless ``TRAIN.FREEZE_BACKBONE`` (blocks listed in
  ``TRAIN.FREEZE_LAYERS`` stay frozen; block 0 also freezes the patch and position embeddings);
  everything else trains.
* ``TRAIN.TWO_STAGE``: stage 1 (the first ``STAGE1_EPOCHS`` epochs) trains the classification head
  only, plus the backbone when ``FREEZE_BACKBONE_STAGE1`` is False; stage 2 trains everything
  (``FREEZE_LAYERS`` still apply).
* ``TRAIN.FREEZE_CLS_EPOCH``: the classification head is frozen from that epoch on.

Frozen BatchNorm layers must not keep updating their running statistics, so training mode is
entered through :func:`enter_train_mode`, which keeps fully frozen BatchNorm layers in eval mode.
Epochs are 1-based, as in the original trainer.
"""
from __future__ import annotations

from torch import nn

EMBEDDING_PARAMS = ("patch_embed.", "pos_embed", "cls_token", "temporal_pos_embed")


def training_stage(cfg, epoch: int) -> int:
    """0 for single-stage training, else 1 or 2."""
    if not cfg.TRAIN.TWO_STAGE:
        return 0
    return 1 if epoch <= cfg.TRAIN.STAGE1_EPOCHS else 2


def stage_first_epoch(cfg, stage: int) -> int:
    """First (1-based) epoch of ``stage``: 1 for stages 0 and 1, ``STAGE1_EPOCHS + 1`` for stage 2."""
    return cfg.TRAIN.STAGE1_EPOCHS + 1 if stage == 2 else 1


def stage_learning_rate(cfg, stage: int) -> float:
    """Base learning rate of a stage (``TRAIN.LR`` for single-stage training)."""
    return {0: cfg.TRAIN.LR, 1: cfg.TRAIN.STAGE1_LR, 2: cfg.TRAIN.STAGE2_LR}[stage]


def _backbone_param_trains(name: str, frozen_blocks: set[int]) -> bool:
    if name.startswith("blocks."):
        return int(name.split(".")[1]) not in frozen_blocks
    if name.startswith(EMBEDDING_PARAMS):
        return 0 not in frozen_blocks
    return True  # final norm


def set_trainable(model: nn.Module, cfg, epoch: int) -> None:
    """Set ``requires_grad`` of every parameter for ``epoch`` according to the config."""
    stage = training_stage(cfg, epoch)
    train = cfg.TRAIN
    backbone_trains = {0: not train.FREEZE_BACKBONE, 1: not train.FREEZE_BACKBONE_STAGE1, 2: True}[stage]
    frozen_blocks = set(train.FREEZE_LAYERS)
    cls_trains = train.FREEZE_CLS_EPOCH == -1 or epoch < train.FREEZE_CLS_EPOCH
    for name, child in model.named_children():
        for param_name, param in child.named_parameters():
            if name == "backbone":
                trains = backbone_trains and _backbone_param_trains(param_name, frozen_blocks)
            elif name == "cls_head":
                trains = cls_trains
            else:
                trains = stage != 1
            param.requires_grad_(trains)


def trainable_names(model: nn.Module) -> frozenset[str]:
    """Names of the parameters that currently require gradients."""
    return frozenset(name for name, p in model.named_parameters() if p.requires_grad)


def enter_train_mode(model: nn.Module) -> None:
    """``model.train()``, but BatchNorm layers whose parameters are all frozen stay in eval mode."""
    model.train()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters())
            if params and not any(p.requires_grad for p in params):
                module.eval()


def trainable_summary(model: nn.Module) -> dict[str, tuple[int, int]]:
    """(trainable, total) parameter counts per top-level module."""
    summary = {}
    for name, child in model.named_children():
        params = list(child.parameters())
        summary[name] = (sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params))
    return summary
