"""Challenge-classification loss and metrics for the HIPTrack-CLS auxiliary head.

Every search frame carries a challenge label in ``0..K-1`` (see :data:`CLASS_NAMES`) or
:data:`IGNORE_INDEX` when it is unlabeled. All losses average over labeled frames only and,
unlike ``F.cross_entropy``, return an exact, graph-connected ``0.0`` for a batch without labeled
frames: torch gives NaN there (0 / 0), which would poison the weights of one DDP rank and make
the ranks diverge.

``MODEL.CLS_HEAD.MODE: single`` trains :class:`ChallengeLoss` on the class id of each frame;
``multi`` trains :class:`MultiLabelChallengeLoss` (binary cross-entropy per class) on the frame's
multi-hot (or soft) target vector. :func:`build_cls_loss` picks one from the config.

Focal loss: Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lib.challenges import IGNORE_INDEX, NUM_CLASSES

LOSS_TYPES = ("CE", "FOCAL", "LABEL_SMOOTH")


def _check_inputs(logits: Tensor, labels: Tensor, num_classes: int, ignore_index: int) -> None:
    """Raise on shapes other than logits (N, K) / labels (N,) or labels outside [0, K)."""
    if logits.dim() != 2 or logits.shape[1] != num_classes:
        raise ValueError(f"logits must have shape (N, {num_classes}), got {tuple(logits.shape)}")
    if labels.shape != logits.shape[:1]:
        raise ValueError(
            f"labels must have shape (N,) = ({logits.shape[0]},) to match logits "
            f"{tuple(logits.shape)}, got {tuple(labels.shape)}"
        )
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor of class indices, got {labels.dtype}")
    bad = labels[(labels != ignore_index) & ((labels < 0) | (labels >= num_classes))]
    if bad.numel():
        raise ValueError(
            f"label {bad[0].item()} is outside [0, {num_classes}) and is not the ignore index "
            f"{ignore_index}"
        )


class ChallengeLoss(nn.Module):
    """Classification loss over labeled frames: ``CE``, ``FOCAL`` or ``LABEL_SMOOTH``.

    With per-class weights ``w`` the loss is ``sum_i w[y_i] l_i / sum_i w[y_i]`` over labeled
    frames ``i``, as in ``F.cross_entropy``. ``LABEL_SMOOTH`` matches ``F.cross_entropy(...,
    label_smoothing=eps, weight=w)`` exactly, whose per-frame numerator is
    ``sum_c w[c] q_ic (-log p_ic)`` with ``q_i = (1 - eps) onehot(y_i) + eps / K``: the smoothing
    mass on class ``c`` is weighted by ``w[c]``, not by the frame's true-class weight, and the
    sum is still divided by ``sum_i w[y_i]``. ``FOCAL`` is ``alpha (1 - p_t)^gamma (-log p_t)``
    per frame (``alpha`` a scalar); ``gamma = 0, alpha = 1`` is plain CE.

    If no frame is labeled (or all labeled frames have weight 0) the loss is exactly 0.0 with
    all-zero gradients. The computation runs in at least float32, also under autocast.
    """

    class_weights: Tensor | None

    def __init__(
        self,
        loss_type: str = "CE",
        num_classes: int = NUM_CLASSES,
        class_weights: Sequence[float] | None = None,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        label_smoothing: float = 0.1,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        if loss_type not in LOSS_TYPES:
            raise ValueError(
                f"TRAIN.CLS_LOSS_TYPE must be one of {', '.join(LOSS_TYPES)}, got {loss_type!r}"
            )
        if num_classes < 1:
            raise ValueError(f"MODEL.CLS_HEAD.NUM_CLASSES must be positive, got {num_classes}")
        if focal_gamma < 0:
            raise ValueError(f"TRAIN.CLS_FOCAL_GAMMA must be >= 0, got {focal_gamma}")
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"TRAIN.CLS_LABEL_SMOOTHING must be in [0, 1], got {label_smoothing}")
        self.loss_type = loss_type
        self.num_classes = num_classes
        self.focal_alpha = float(focal_alpha)
        self.focal_gamma = float(focal_gamma)
        self.label_smoothing = float(label_smoothing)
        self.ignore_index = ignore_index
        weights = None
        if class_weights is not None:
            weights = torch.as_tensor(list(class_weights), dtype=torch.float32)
            if weights.shape != (num_classes,):
                raise ValueError(
                    f"TRAIN.CLS_CLASS_WEIGHTS must have {num_classes} entries (one per class), "
                    f"got {weights.numel()}"
                )
            if not torch.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
                raise ValueError(
                    "TRAIN.CLS_CLASS_WEIGHTS must be finite and >= 0 with a positive sum, "
                    f"got {list(class_weights)}"
                )
        # A buffer, not a parameter: follows .to(device) and lands in the state dict, never trained.
        self.register_buffer("class_weights", weights)

    def extra_repr(self) -> str:
        return f"loss_type={self.loss_type!r}, num_classes={self.num_classes}"

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        """logits (N, K), labels (N,) class indices or ``ignore_index`` -> scalar loss."""
        _check_inputs(logits, labels, self.num_classes, self.ignore_index)
        dtype = torch.promote_types(logits.dtype, torch.float32)
        # autocast would otherwise be free to run parts of this in bf16 / fp16.
        with torch.autocast(device_type=logits.device.type, enabled=False):
            log_probs = logits.to(dtype).log_softmax(dim=1)  # (N, K)
            labeled = labels != self.ignore_index
            # Ignored frames gather class 0 so indexing stays valid; they are masked out below.
            targets = torch.where(labeled, labels, torch.zeros_like(labels)).long()
            nll = -log_probs.gather(1, targets[:, None]).squeeze(1)  # (N,)
            if self.class_weights is None:
                weights = torch.ones(self.num_classes, dtype=dtype, device=logits.device)
            else:
                weights = self.class_weights.to(dtype)
            sample_weights = weights[targets]  # (N,)

            if self.loss_type == "CE":
                numer = sample_weights * nll
            elif self.loss_type == "LABEL_SMOOTH":
                eps = self.label_smoothing
                smooth = -(log_probs * weights).sum(dim=1)  # torch's weighting, see class docstring
                numer = (1.0 - eps) * sample_weights * nll + (eps / self.num_classes) * smooth
            else:
                # 1 - p_t via expm1 keeps precision for confident frames; the floor keeps the
                # gradient of (1 - p_t)^gamma finite at p_t == 1 when 0 < gamma < 1.
                one_minus_pt = (-torch.expm1(-nll)).clamp_min(torch.finfo(dtype).tiny)
                numer = sample_weights * self.focal_alpha * one_minus_pt.pow(self.focal_gamma) * nll

            # where(), not multiplication: masked entries contribute exactly 0 to value and grad.
            numer = torch.where(labeled, numer, torch.zeros_like(numer)).sum()
            denom = torch.where(labeled, sample_weights, torch.zeros_like(sample_weights)).sum()
            loss = numer / denom.clamp_min(torch.finfo(dtype).tiny)
            # No labeled weight: exactly 0.0, still in the graph so backward gives zero grads and
            # every DDP rank runs the same backward.
            return torch.where(denom > 0, loss, torch.zeros_like(loss))


def _check_targets(logits: Tensor, targets: Tensor, labels: Tensor, num_classes: int) -> None:
    """Raise unless targets (N, K) are floats in [0, 1] beside logits (N, K) and labels (N,)."""
    if logits.dim() != 2 or logits.shape[1] != num_classes:
        raise ValueError(f"logits must have shape (N, {num_classes}), got {tuple(logits.shape)}")
    if targets.shape != logits.shape:
        raise ValueError(f"targets must have the shape of logits {tuple(logits.shape)}, got {tuple(targets.shape)}")
    if not targets.is_floating_point():
        raise TypeError(f"targets must be a float tensor of per-class values in [0, 1], got {targets.dtype}")
    if labels.shape != logits.shape[:1]:
        raise ValueError(f"labels must have shape (N,) = ({logits.shape[0]},), got {tuple(labels.shape)}")
    if not ((targets >= 0) & (targets <= 1)).all():  # also refuses NaN
        raise ValueError("targets must be in [0, 1]")


class MultiLabelChallengeLoss(nn.Module):
    """Binary cross-entropy with logits per class, for ``MODEL.CLS_HEAD.MODE: multi``.

    The target of a frame is its multi-hot vector (every flagged challenge, or Normal alone), or
    with soft targets the VLM confidences (see ``lib/dataset/challenge_labels.py``). The loss is
    the mean of ``-[w_c t log s(x) + (1 - t) log(1 - s(x))]`` over the labeled frames and all K
    classes (``w`` = ``pos_weight``, 1 without it), which is ``F.binary_cross_entropy_with_logits``
    with ``reduction="mean"`` on the labeled rows. Frames whose label is ``ignore_index`` are
    skipped; without a labeled frame the loss is exactly 0.0 with all-zero gradients. The
    computation runs in at least float32, also under autocast.
    """

    pos_weight: Tensor | None

    def __init__(self, num_classes: int = NUM_CLASSES, pos_weight: Sequence[float] | None = None,
                 ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"MODEL.CLS_HEAD.NUM_CLASSES must be positive, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        weights = None
        if pos_weight is not None:
            weights = torch.as_tensor(list(pos_weight), dtype=torch.float32)
            if weights.shape != (num_classes,):
                raise ValueError(f"TRAIN.CLS_POS_WEIGHT must have {num_classes} entries (one per class), "
                                 f"got {weights.numel()}")
            if not torch.isfinite(weights).all() or (weights <= 0).any():
                raise ValueError(f"TRAIN.CLS_POS_WEIGHT entries must be finite and > 0, got {list(pos_weight)}")
        # A buffer, as ChallengeLoss.class_weights: follows .to(device), never trained.
        self.register_buffer("pos_weight", weights)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, pos_weight={self.pos_weight is not None}"

    def forward(self, logits: Tensor, targets: Tensor, labels: Tensor) -> Tensor:
        """logits (N, K), targets (N, K) in [0, 1], labels (N,) (``ignore_index`` = unlabeled) -> scalar loss."""
        _check_targets(logits, targets, labels, self.num_classes)
        dtype = torch.promote_types(logits.dtype, torch.float32)
        with torch.autocast(device_type=logits.device.type, enabled=False):
            pos_weight = None if self.pos_weight is None else self.pos_weight.to(dtype)
            per_entry = F.binary_cross_entropy_with_logits(logits.to(dtype), targets.to(dtype),
                                                           pos_weight=pos_weight, reduction="none")  # (N, K)
            labeled = (labels != self.ignore_index)[:, None].expand_as(per_entry)
            # where(), not multiplication: unlabeled frames add exactly 0 to value and gradient.
            total = torch.where(labeled, per_entry, torch.zeros_like(per_entry)).sum()
            count = labeled.sum()
            loss = total / count.clamp_min(1).to(dtype)
            # No labeled frame: exactly 0.0, still in the graph (see the module docstring).
            return torch.where(count > 0, loss, torch.zeros_like(loss))


def build_cls_loss(cfg) -> ChallengeLoss | MultiLabelChallengeLoss:
    """The loss of ``cfg.MODEL.CLS_HEAD.MODE``: :class:`ChallengeLoss` from ``cfg.TRAIN.CLS_*`` in the
    single-label mode, :class:`MultiLabelChallengeLoss` with ``TRAIN.CLS_POS_WEIGHT`` in the multi-label mode."""
    train = cfg.TRAIN
    num_classes = cfg.MODEL.CLS_HEAD.NUM_CLASSES
    # a config object without MODE (written before the key existed) is single-label
    if getattr(cfg.MODEL.CLS_HEAD, "MODE", "single") == "multi":
        if train.CLS_LOSS_TYPE != "CE":
            raise ValueError(f"MODEL.CLS_HEAD.MODE: multi trains with binary cross-entropy; TRAIN.CLS_LOSS_TYPE "
                             f"must be CE, got {train.CLS_LOSS_TYPE}")
        return MultiLabelChallengeLoss(num_classes, pos_weight=list(train.CLS_POS_WEIGHT) or None)
    weights = list(train.CLS_CLASS_WEIGHTS)
    return ChallengeLoss(
        loss_type=train.CLS_LOSS_TYPE,
        num_classes=num_classes,
        class_weights=weights or None,  # empty list in the config means unweighted
        focal_alpha=train.CLS_FOCAL_ALPHA,
        focal_gamma=train.CLS_FOCAL_GAMMA,
        label_smoothing=train.CLS_LABEL_SMOOTHING,
    )


@torch.no_grad()
def confusion_matrix(
    logits: Tensor, labels: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """(K, K) long counts, rows = true class, columns = argmax prediction; unlabeled ignored."""
    _check_inputs(logits, labels, num_classes, ignore_index)
    labeled = labels != ignore_index
    true = labels[labeled].long()
    pred = logits[labeled].argmax(dim=1)
    counts = torch.bincount(true * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def per_class_counts(
    logits: Tensor, labels: Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> tuple[Tensor, Tensor]:
    """(correct, total) per true class, long tensors of shape (K,); unlabeled ignored."""
    matrix = confusion_matrix(logits, labels, num_classes, ignore_index)
    return matrix.diagonal().clone(), matrix.sum(dim=1)


@torch.no_grad()
def classification_accuracy(
    logits: Tensor, labels: Tensor, ignore_index: int = IGNORE_INDEX
) -> tuple[int, int]:
    """(correct, labeled) counts over labeled frames, to be summed across batches and ranks."""
    _check_inputs(logits, labels, logits.shape[-1], ignore_index)
    labeled = labels != ignore_index
    correct = (logits[labeled].argmax(dim=1) == labels[labeled]).sum()
    return int(correct), int(labeled.sum())


@torch.no_grad()
def top1_in_targets(logits: Tensor, targets: Tensor, labels: Tensor,
                    ignore_index: int = IGNORE_INDEX) -> tuple[int, int]:
    """(correct, labeled) counts of the multi-label mode: a labeled frame is correct when its top-1 class
    is one of its targets (target > 0). logits and targets (N, K), labels (N,)."""
    _check_targets(logits, targets, labels, logits.shape[-1])
    labeled = labels != ignore_index
    top1 = logits[labeled].argmax(dim=1, keepdim=True)
    correct = (targets[labeled].gather(1, top1) > 0).sum()
    return int(correct), int(labeled.sum())
