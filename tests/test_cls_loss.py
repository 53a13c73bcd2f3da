"""Challenge-classification loss and metrics (lib/utils/cls_loss.py)."""
from __future__ import annotations

import math
import types

import pytest
import torch
import torch.nn.functional as F

from lib.challenges import CLASS_NAMES, IGNORE_INDEX
from lib.utils.cls_loss import (
    ChallengeLoss,
    MultiLabelChallengeLoss,
    build_cls_loss,
    classification_accuracy,
    confusion_matrix,
    per_class_counts,
    top1_in_targets,
)

K = 10
LOSS_TYPES = ("CE", "FOCAL", "LABEL_SMOOTH")
WEIGHTS = [1.0, 2.0, 0.5, 0.0, 1.5, 1.0, 3.0, 0.25, 1.0, 0.75]


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """(12, K) float64 logits and labels with three ignored frames and one zero-weight class."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(12, K, generator=gen, dtype=torch.float64) * 2
    labels = torch.tensor([0, 3, IGNORE_INDEX, 9, 1, 6, IGNORE_INDEX, 2, 7, 4, IGNORE_INDEX, 6])
    return logits, labels


def test_class_names():
    assert len(CLASS_NAMES) == K and IGNORE_INDEX == -100
    assert CLASS_NAMES[0] == "Occlusion" and CLASS_NAMES[9] == "Normal"


@pytest.mark.parametrize("weights", [None, WEIGHTS], ids=["unweighted", "weighted"])
def test_ce_matches_torch(batch, weights):
    logits, labels = batch
    w = None if weights is None else torch.tensor(weights, dtype=torch.float64)
    expected = F.cross_entropy(logits, labels, weight=w, ignore_index=IGNORE_INDEX)
    loss = ChallengeLoss("CE", class_weights=weights)(logits, labels)
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("weights", [None, WEIGHTS], ids=["unweighted", "weighted"])
def test_label_smoothing_matches_torch(batch, weights):
    logits, labels = batch
    w = None if weights is None else torch.tensor(weights, dtype=torch.float64)
    expected = F.cross_entropy(logits, labels, weight=w, label_smoothing=0.2)
    loss = ChallengeLoss("LABEL_SMOOTH", class_weights=weights, label_smoothing=0.2)(logits, labels)
    torch.testing.assert_close(loss, expected)


def test_label_smoothing_with_weights_hand_computed(batch):
    """Pins torch's normalisation: smoothing mass on class c is weighted by w[c], / sum w[y_i]."""
    logits, labels = batch
    eps, w = 0.2, torch.tensor(WEIGHTS, dtype=torch.float64)
    log_p = logits.log_softmax(1)[labels != IGNORE_INDEX]
    y = labels[labels != IGNORE_INDEX]
    q = torch.full_like(log_p, eps / K) + (1 - eps) * F.one_hot(y, K)
    expected = -(w * q * log_p).sum() / w[y].sum()
    # The "obvious" alternative (whole frame loss weighted by w[y_i]) differs: it is not torch's.
    alternative = -(w[y, None] * q * log_p).sum() / w[y].sum()
    loss_fn = ChallengeLoss("LABEL_SMOOTH", class_weights=WEIGHTS, label_smoothing=eps)
    loss = loss_fn(logits, labels)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(F.cross_entropy(logits, labels, weight=w, label_smoothing=eps), loss)
    assert not torch.isclose(loss, alternative)


def test_focal_hand_computed():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.5], [1.0, 1.0, 1.0]], dtype=torch.float64)
    labels = torch.tensor([0, 2, IGNORE_INDEX])
    alpha, gamma, w = 0.25, 2.0, [1.0, 3.0, 2.0]

    def frame(row: list[float], y: int) -> float:
        p_t = math.exp(row[y]) / sum(math.exp(v) for v in row)
        return alpha * (1 - p_t) ** gamma * -math.log(p_t)

    rows = logits.tolist()
    unweighted = (frame(rows[0], 0) + frame(rows[1], 2)) / 2
    weighted = (1.0 * frame(rows[0], 0) + 2.0 * frame(rows[1], 2)) / (1.0 + 2.0)
    kwargs = {"num_classes": 3, "focal_alpha": alpha, "focal_gamma": gamma}
    loss = ChallengeLoss("FOCAL", **kwargs)(logits, labels)
    assert loss.item() == pytest.approx(unweighted, rel=1e-12)
    loss = ChallengeLoss("FOCAL", class_weights=w, **kwargs)(logits, labels)
    assert loss.item() == pytest.approx(weighted, rel=1e-12)


@pytest.mark.parametrize("weights", [None, WEIGHTS], ids=["unweighted", "weighted"])
def test_focal_gamma0_alpha1_is_ce(batch, weights):
    logits, labels = batch
    focal = ChallengeLoss("FOCAL", class_weights=weights, focal_alpha=1.0, focal_gamma=0.0)
    ce = ChallengeLoss("CE", class_weights=weights)
    torch.testing.assert_close(focal(logits, labels), ce(logits, labels))


def test_focal_down_weights_easy_examples():
    easy = torch.tensor([[6.0, 0.0, 0.0, 0.0]])
    hard = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    label = torch.tensor([0])
    focal = ChallengeLoss("FOCAL", num_classes=4, focal_alpha=1.0, focal_gamma=2.0)
    ce = ChallengeLoss("CE", num_classes=4)
    easy_ratio = focal(easy, label) / ce(easy, label)
    hard_ratio = focal(hard, label) / ce(hard, label)
    assert easy_ratio < 1e-4  # (1 - p_t)^2 with p_t ~ 0.993
    assert easy_ratio < hard_ratio < 1.0


def test_torch_ce_is_nan_without_labels():
    """Why ChallengeLoss special-cases empty batches: torch divides 0 by 0."""
    logits = torch.randn(4, K)
    assert torch.isnan(F.cross_entropy(logits, torch.full((4,), IGNORE_INDEX)))
    assert torch.isnan(F.cross_entropy(logits[:0], torch.zeros(0, dtype=torch.long)))


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
@pytest.mark.parametrize("weights", [None, WEIGHTS], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("n", [0, 5], ids=["empty", "all_ignored"])
def test_no_labels_gives_exact_zero_and_zero_grads(loss_type, weights, n):
    logits = torch.randn(n, K, requires_grad=True)
    labels = torch.full((n,), IGNORE_INDEX)
    loss = ChallengeLoss(loss_type, class_weights=weights)(logits, labels)
    assert loss.item() == 0.0 and loss.requires_grad and loss.dim() == 0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_only_zero_weight_classes_gives_zero(loss_type):
    """Labeled frames whose classes all weigh 0 carry no signal: 0, not NaN / inf as in torch."""
    logits = torch.randn(3, K, requires_grad=True)
    labels = torch.tensor([3, IGNORE_INDEX, 3])  # WEIGHTS[3] == 0
    loss = ChallengeLoss(loss_type, class_weights=WEIGHTS)(logits, labels)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_mixed_batch_grads_only_on_labeled_rows(loss_type, batch):
    logits, labels = batch
    logits = logits.clone().requires_grad_()
    ChallengeLoss(loss_type)(logits, labels).backward()
    ignored = labels == IGNORE_INDEX
    assert torch.equal(logits.grad[ignored], torch.zeros_like(logits.grad[ignored]))
    assert (logits.grad[~ignored].abs().sum(1) > 0).all()


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_bf16_logits_under_autocast(loss_type, batch):
    _, labels = batch
    head = torch.nn.Linear(8, K)
    features = torch.randn(len(labels), 8)
    loss_fn = ChallengeLoss(loss_type, class_weights=WEIGHTS)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(features)
        loss = loss_fn(logits, labels)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    torch.testing.assert_close(loss, loss_fn(logits.detach().float(), labels))
    loss.backward()
    assert torch.isfinite(head.weight.grad).all() and head.weight.grad.abs().sum() > 0


def test_class_weights_buffer_moves_with_to():
    loss_fn = ChallengeLoss(class_weights=WEIGHTS)
    assert "class_weights" in dict(loss_fn.named_buffers())
    assert list(loss_fn.parameters()) == []
    assert "class_weights" in loss_fn.state_dict()
    loss_fn = loss_fn.to("meta")
    assert loss_fn.class_weights.device.type == "meta"
    assert ChallengeLoss().class_weights is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"loss_type": "ce"}, r"TRAIN\.CLS_LOSS_TYPE.*CE, FOCAL, LABEL_SMOOTH"),
        ({"class_weights": [1.0] * 9}, r"TRAIN\.CLS_CLASS_WEIGHTS.*10 entries"),
        ({"class_weights": [1.0] * 9 + [-1.0]}, r"TRAIN\.CLS_CLASS_WEIGHTS.*>= 0"),
        ({"class_weights": [0.0] * 10}, r"TRAIN\.CLS_CLASS_WEIGHTS.*positive sum"),
        ({"focal_gamma": -1.0}, r"TRAIN\.CLS_FOCAL_GAMMA"),
        ({"label_smoothing": 1.5}, r"TRAIN\.CLS_LABEL_SMOOTHING"),
    ],
)
def test_constructor_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ChallengeLoss(**kwargs)


@pytest.mark.parametrize("bad", [10, -1, 42])
def test_invalid_label_raises_naming_value(bad):
    labels = torch.tensor([0, bad, IGNORE_INDEX])
    with pytest.raises(ValueError, match=rf"label {bad} is outside \[0, 10\)"):
        ChallengeLoss()(torch.randn(3, K), labels)


@pytest.mark.parametrize(
    "logits_shape, labels_shape", [((4, K), (3,)), ((4, K), (4, 1)), ((4, 7), (4,)), ((K,), (1,))]
)
def test_shape_mismatch_raises(logits_shape, labels_shape):
    with pytest.raises(ValueError, match="shape"):
        ChallengeLoss()(torch.randn(logits_shape), torch.zeros(labels_shape, dtype=torch.long))


def test_float_labels_raise():
    with pytest.raises(TypeError, match="integer"):
        ChallengeLoss()(torch.randn(2, K), torch.zeros(2))


@pytest.fixture
def predictions() -> tuple[torch.Tensor, torch.Tensor]:
    """3 classes; predictions 0, 1, 1, 2, 2, 0 (+ 2 ignored) against labels 0, 1, 0, 2, 1, 0."""
    pred = torch.tensor([0, 1, 1, 2, 2, 0, 1, 2])
    logits = F.one_hot(pred, 3).float() * 5
    labels = torch.tensor([0, 1, 0, 2, 1, 0, IGNORE_INDEX, IGNORE_INDEX])
    return logits, labels


def test_classification_accuracy(predictions):
    logits, labels = predictions
    assert classification_accuracy(logits, labels) == (4, 6)
    correct, labeled = classification_accuracy(logits, torch.full((8,), IGNORE_INDEX))
    assert (correct, labeled) == (0, 0) and isinstance(correct, int)


def test_per_class_counts(predictions):
    correct, total = per_class_counts(*predictions, num_classes=3)
    assert correct.dtype == total.dtype == torch.long
    assert correct.tolist() == [2, 1, 1] and total.tolist() == [3, 2, 1]


def test_confusion_matrix(predictions):
    matrix = confusion_matrix(*predictions, num_classes=3)
    assert matrix.dtype == torch.long
    assert matrix.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    empty = confusion_matrix(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long), num_classes=3)
    assert torch.equal(empty, torch.zeros(3, 3, dtype=torch.long))


def test_metrics_reject_invalid_labels(predictions):
    logits, _ = predictions
    with pytest.raises(ValueError, match="label 3"):
        confusion_matrix(logits, torch.tensor([0, 1, 3, 0, 0, 0, 0, 0]), num_classes=3)


def _cfg(loss_type: str, weights: list[float]) -> types.SimpleNamespace:
    train = types.SimpleNamespace(
        CLS_LOSS_TYPE=loss_type,
        CLS_FOCAL_ALPHA=0.5,
        CLS_FOCAL_GAMMA=1.5,
        CLS_LABEL_SMOOTHING=0.05,
        CLS_CLASS_WEIGHTS=weights,
    )
    model = types.SimpleNamespace(CLS_HEAD=types.SimpleNamespace(NUM_CLASSES=4))
    return types.SimpleNamespace(TRAIN=train, MODEL=model)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_build_cls_loss(loss_type):
    loss_fn = build_cls_loss(_cfg(loss_type, []))
    assert loss_fn.loss_type == loss_type and loss_fn.num_classes == 4
    assert loss_fn.class_weights is None
    assert (loss_fn.focal_alpha, loss_fn.focal_gamma, loss_fn.label_smoothing) == (0.5, 1.5, 0.05)
    assert loss_fn(torch.randn(3, 4), torch.tensor([0, 3, IGNORE_INDEX])).isfinite()
    weighted = build_cls_loss(_cfg(loss_type, [1.0, 2.0, 0.5, 1.0]))
    assert weighted.class_weights.tolist() == [1.0, 2.0, 0.5, 1.0]


def test_build_cls_loss_rejects_bad_type():
    with pytest.raises(ValueError, match=r"TRAIN\.CLS_LOSS_TYPE"):
        build_cls_loss(_cfg("HINGE", []))


def test_focal_saturated_frame_has_finite_grads():
    """p_t == 1 in float32: d(1 - p_t)^gamma is infinite for gamma < 1 without the floor."""
    logits = torch.tensor([[200.0, 0.0, 0.0], [0.0, 1.0, 0.0]], requires_grad=True)
    loss = ChallengeLoss("FOCAL", num_classes=3, focal_gamma=0.5)(logits, torch.tensor([0, 2]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


# ---------------------------------------------------------------------- multi-label (MODE: multi)
POS_WEIGHT = [1.0, 2.0, 0.5, 3.0, 1.0, 1.0, 4.0, 1.0, 0.25, 1.0]


@pytest.fixture
def multi_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(6, K) float64 logits, soft / multi-hot targets and labels with two unlabeled frames."""
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(6, K, generator=gen, dtype=torch.float64) * 2
    targets = torch.zeros(6, K, dtype=torch.float64)
    targets[0, [0, 2]] = 1.0
    targets[1, 9] = 1.0
    targets[3, [3, 6]] = torch.tensor([0.7, 1.0], dtype=torch.float64)  # a soft VLM target and a CV flag
    targets[4, 1] = 0.4
    targets[5, 9] = 1.0
    labels = torch.tensor([0, 9, IGNORE_INDEX, 3, 1, IGNORE_INDEX])
    return logits, targets, labels


@pytest.mark.parametrize("pos_weight", [None, POS_WEIGHT], ids=["plain", "pos_weight"])
def test_multilabel_loss_matches_torch_bce_on_labeled_rows(multi_batch, pos_weight):
    logits, targets, labels = multi_batch
    keep = labels != IGNORE_INDEX
    weight = None if pos_weight is None else torch.tensor(pos_weight, dtype=torch.float64)
    expected = F.binary_cross_entropy_with_logits(logits[keep], targets[keep], pos_weight=weight)
    loss = MultiLabelChallengeLoss(pos_weight=pos_weight)(logits, targets, labels)
    torch.testing.assert_close(loss, expected)


def test_multilabel_loss_by_hand_with_pos_weight():
    # one labeled frame, two classes: -[w t log s(x) + (1 - t) log(1 - s(x))] averaged over the 2 entries
    logits = torch.tensor([[0.5, -1.0], [3.0, 3.0]], dtype=torch.float64)
    targets = torch.tensor([[1.0, 0.3], [0.0, 0.0]], dtype=torch.float64)
    s = torch.sigmoid(logits[0])
    by_hand = (-(2.0 * math.log(s[0])) - (3.0 * 0.3 * math.log(s[1]) + 0.7 * math.log(1 - s[1]))) / 2
    loss = MultiLabelChallengeLoss(num_classes=2, pos_weight=[2.0, 3.0])(logits, targets, torch.tensor([1, -100]))
    assert loss.item() == pytest.approx(by_hand, rel=1e-12)


@pytest.mark.parametrize("pos_weight", [None, POS_WEIGHT], ids=["plain", "pos_weight"])
@pytest.mark.parametrize("n", [0, 5], ids=["empty", "all_ignored"])
def test_multilabel_no_labels_gives_exact_zero_and_zero_grads(pos_weight, n):
    logits = torch.randn(n, K, requires_grad=True)
    targets = torch.rand(n, K)
    loss = MultiLabelChallengeLoss(pos_weight=pos_weight)(logits, targets, torch.full((n,), IGNORE_INDEX))
    assert loss.item() == 0.0 and loss.requires_grad and loss.dim() == 0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_multilabel_grads_only_on_labeled_rows(multi_batch):
    logits, targets, labels = multi_batch
    logits = logits.clone().requires_grad_()
    MultiLabelChallengeLoss()(logits, targets, labels).backward()
    ignored = labels == IGNORE_INDEX
    assert torch.equal(logits.grad[ignored], torch.zeros_like(logits.grad[ignored]))
    assert (logits.grad[~ignored].abs().sum(1) > 0).all()


def test_multilabel_bf16_logits_under_autocast(multi_batch):
    _, targets, labels = multi_batch
    head = torch.nn.Linear(8, K)
    features = torch.randn(len(labels), 8)
    loss_fn = MultiLabelChallengeLoss(pos_weight=POS_WEIGHT)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = head(features)
        loss = loss_fn(logits, targets.float(), labels)
    assert logits.dtype == torch.bfloat16 and loss.dtype == torch.float32
    torch.testing.assert_close(loss, loss_fn(logits.detach().float(), targets.float(), labels))
    loss.backward()
    assert torch.isfinite(head.weight.grad).all() and head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kwargs, match", [
    ({"pos_weight": [1.0] * 9}, r"TRAIN\.CLS_POS_WEIGHT must have 10 entries"),
    ({"pos_weight": [1.0] * 9 + [0.0]}, r"TRAIN\.CLS_POS_WEIGHT entries must be finite and > 0"),
    ({"pos_weight": [1.0] * 9 + [float("inf")]}, r"TRAIN\.CLS_POS_WEIGHT entries must be finite and > 0"),
])
def test_multilabel_constructor_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MultiLabelChallengeLoss(**kwargs)


def test_multilabel_input_validation(multi_batch):
    logits, targets, labels = multi_batch
    loss_fn = MultiLabelChallengeLoss()
    with pytest.raises(ValueError, match="targets must have the shape of logits"):
        loss_fn(logits, targets[:, :3], labels)
    with pytest.raises(ValueError, match=r"targets must be in \[0, 1\]"):
        loss_fn(logits, targets * 2, labels)
    with pytest.raises(TypeError, match="float tensor"):
        loss_fn(logits, targets.long(), labels)
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\)"):
        loss_fn(logits, targets, labels[:3])


def _multi_cfg(loss_type: str = "CE", pos_weight: list[float] | None = None) -> types.SimpleNamespace:
    cfg = _cfg(loss_type, [])
    cfg.TRAIN.CLS_POS_WEIGHT = pos_weight or []
    cfg.MODEL.CLS_HEAD.MODE = "multi"
    return cfg


def test_build_cls_loss_multi_mode():
    loss_fn = build_cls_loss(_multi_cfg())
    assert isinstance(loss_fn, MultiLabelChallengeLoss) and loss_fn.num_classes == 4 and loss_fn.pos_weight is None
    weighted = build_cls_loss(_multi_cfg(pos_weight=[1.0, 2.0, 0.5, 1.0]))
    assert weighted.pos_weight.tolist() == [1.0, 2.0, 0.5, 1.0]
    with pytest.raises(ValueError, match=r"MODEL\.CLS_HEAD\.MODE: multi.*TRAIN\.CLS_LOSS_TYPE must be CE"):
        build_cls_loss(_multi_cfg("FOCAL"))


def test_top1_in_targets_counts_labeled_frames_whose_top_class_is_flagged():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 0.0, 5.0], [9.0, 0.0, 0.0]])
    targets = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.6], [1.0, 0.0, 0.0]])
    # frame 0: top 0 flagged; frame 1: top 1 not flagged; frame 2: top 2 soft 0.6 counts; frame 3 unlabeled
    assert top1_in_targets(logits, targets, torch.tensor([0, 0, 2, IGNORE_INDEX])) == (2, 3)
    assert top1_in_targets(logits, targets, torch.full((4,), IGNORE_INDEX)) == (0, 0)
