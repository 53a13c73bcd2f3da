"""Training objective: heatmaps, GIoU, focal loss, CE keep-rate schedule and the actor."""
from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import generalized_box_iou

from lib.config.hiptrack import load_config, resolve_experiment_config
from lib.models import build_model
from lib.train.actors.hiptrack_cls import HIPTrackActor, ce_keep_rate
from lib.utils.heatmap import gaussian_heatmaps, gaussian_radius
from lib.utils.losses import center_focal_loss, paired_giou


def reference_heatmap(box, grid, min_overlap=0.7):
    """Straightforward per-cell construction of the CenterNet target for one box."""
    x, y, w, h = [v * grid for v in box]
    cx, cy = round(x + w / 2), round(y + h / 2)
    r = int(max(gaussian_radius(torch.tensor([w, h]), min_overlap).item(), 0))
    sigma = (2 * r + 1) / 6
    out = torch.zeros(grid, grid)
    for j in range(grid):
        for i in range(grid):
            if abs(i - cx) <= r and abs(j - cy) <= r:
                out[j, i] = math.exp(-((i - cx) ** 2 + (j - cy) ** 2) / (2 * sigma ** 2))
    return out


@pytest.mark.parametrize("box", [(0.3, 0.3, 0.4, 0.4), (0.1, 0.6, 0.2, 0.3), (0.0, 0.0, 0.05, 0.9),
                                 (0.9, 0.9, 0.3, 0.3)])
def test_heatmap_matches_per_cell_reference(box):
    heat = gaussian_heatmaps(torch.tensor([box]), 16)[0]
    assert torch.allclose(heat, reference_heatmap(box, 16), atol=1e-6)


def test_heatmap_peak_is_one_at_rounded_centre():
    heat = gaussian_heatmaps(torch.tensor([[0.25, 0.25, 0.5, 0.5]]), 24)[0]
    assert heat.max() == 1.0 and heat.argmax().item() == 12 * 24 + 12
    assert (heat == 1).sum() == 1


def test_gaussian_radius_is_the_smallest_cornernet_solution():
    r = gaussian_radius(torch.tensor([[10.0, 10.0]]))
    assert r.item() == pytest.approx(2.7332, abs=1e-3)  # (-28 + sqrt(28^2 + 4 * 2.8 * 30)) / 2


def test_paired_giou_matches_torchvision():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(20, 4, generator=g)
    b = torch.rand(20, 4, generator=g)
    a = torch.cat([a[:, :2], a[:, :2] + a[:, 2:]], 1)
    b = torch.cat([b[:, :2], b[:, :2] + b[:, 2:]], 1)
    giou, iou = paired_giou(a, b)
    assert torch.allclose(giou, generalized_box_iou(a, b).diagonal(), atol=1e-6)
    assert ((iou >= 0) & (iou <= 1)).all()


def test_focal_loss_rewards_the_right_peak():
    target = gaussian_heatmaps(torch.tensor([[0.25, 0.25, 0.5, 0.5]]), 8)
    good = target.clamp(1e-4, 1 - 1e-4)
    bad = good.flip(-1).flip(-2).roll(3, -1)
    assert center_focal_loss(good, target) < center_focal_loss(bad, target)
    assert torch.isfinite(center_focal_loss(torch.full_like(target, 0.5), torch.zeros_like(target)))


def test_keep_rate_schedule():
    assert ce_keep_rate(0, 20, 80, 0.7) == 1.0
    assert ce_keep_rate(20, 20, 80, 0.7) == pytest.approx(1.0)
    assert ce_keep_rate(60, 20, 80, 0.7) == pytest.approx(0.85)
    assert ce_keep_rate(100, 20, 80, 0.7) == 0.7
    assert ce_keep_rate(0, 0, 0, 0.7) == 0.7


def batch_for(cfg, labels):
    g = torch.Generator().manual_seed(0)
    b, n = labels.shape
    t, s = cfg.DATA.TEMPLATE.SIZE, cfg.DATA.SEARCH.SIZE
    return {"template_images": torch.randn(b, 1, 3, t, t, generator=g),
            "template_anno": torch.tensor([0.25, 0.25, 0.5, 0.5]).repeat(b, 1, 1),
            "search_images": torch.randn(b, n, 3, s, s, generator=g),
            "search_anno": torch.tensor([0.3, 0.35, 0.2, 0.25]).repeat(b, n, 1),
            "search_cls_label": labels}


@pytest.fixture
def cls_cfg():
    return load_config(resolve_experiment_config("hiptrack_cls_tiny"))


def test_actor_loss_and_stats(cls_cfg):
    torch.manual_seed(0)
    net = build_model(cls_cfg, training=True).train()
    actor = HIPTrackActor(net, cls_cfg)
    labels = torch.tensor([[0, 3, 9, -100, 5], [1, -100, 2, 2, 7]])
    loss, stats = actor(batch_for(cls_cfg, labels), epoch=1)
    loss.backward()
    assert torch.isfinite(loss)
    assert set(stats) >= {"Loss/total", "Loss/giou", "Loss/l1", "Loss/location", "Loss/classification", "IoU",
                          "Accuracy"}
    assert stats["cls_labeled"] == 8
    expected = (cls_cfg.TRAIN.GIOU_WEIGHT * stats["Loss/giou"] + cls_cfg.TRAIN.L1_WEIGHT * stats["Loss/l1"]
                + stats["Loss/location"] + cls_cfg.TRAIN.CLS_WEIGHT * stats["Loss/classification"])
    assert stats["Loss/total"] == pytest.approx(expected, rel=1e-5)
    assert net.cls_head.classifier.weight.grad.abs().sum() > 0


def test_actor_with_no_labels_adds_exactly_zero(cls_cfg):
    torch.manual_seed(0)
    net = build_model(cls_cfg, training=True).train()
    loss, stats = HIPTrackActor(net, cls_cfg)(batch_for(cls_cfg, torch.full((2, 5), -100)), epoch=1)
    loss.backward()
    assert stats["Loss/classification"] == 0.0 and "Accuracy" not in stats
    assert net.cls_head.classifier.weight.grad.abs().sum() == 0
    assert stats["Loss/total"] == pytest.approx(2.0 * stats["Loss/giou"] + 5.0 * stats["Loss/l1"]
                                                + stats["Loss/location"], rel=1e-5)


def test_actor_plain_model_has_no_classification_stats():
    cfg = load_config(resolve_experiment_config("hiptrack_tiny"))
    net = build_model(cfg, training=True).train()
    loss, stats = HIPTrackActor(net, cfg)(batch_for(cfg, torch.zeros(2, 5, dtype=torch.long)), epoch=1)
    assert "Loss/classification" not in stats and torch.isfinite(loss)


def test_actor_asks_for_challenges_in_validation_too(cls_cfg):
    torch.manual_seed(0)
    net = build_model(cls_cfg, training=True).eval()
    with torch.no_grad():
        outputs = HIPTrackActor(net, cls_cfg).forward(batch_for(cls_cfg, torch.zeros(2, 5, dtype=torch.long)), 1)
    assert all(out["cls_logits"].shape == (2, cls_cfg.MODEL.CLS_HEAD.NUM_CLASSES) for out in outputs)


# ---------------------------------------------------------------------- multi-label mode
@pytest.fixture
def multi_cfg():
    return load_config(resolve_experiment_config("hiptrack_cls_tiny"), opts=["MODEL.CLS_HEAD.MODE=multi"])


def weighted_total(train, stats: dict) -> float:
    """The total loss the config's weights make of the stats' parts."""
    return (train.GIOU_WEIGHT * stats["Loss/giou"] + train.L1_WEIGHT * stats["Loss/l1"] + stats["Loss/location"]
            + train.CLS_WEIGHT * stats["Loss/classification"])


def multi_hot_batch(cfg, labels):
    """batch_for with a (B, N, K) multi-hot target: frame (b, n) flags class labels[b, n] and class 2; soft 0.4
    on class 6 of frame (0, 0); zeros where unlabeled."""
    batch = batch_for(cfg, labels)
    targets = torch.zeros(*labels.shape, 10)
    keep = labels != -100
    targets[keep] = torch.nn.functional.one_hot(labels[keep], 10).float()
    targets[..., 2] = torch.where(keep, 1.0, 0.0)
    targets[0, 0, 6] = 0.4
    batch["search_cls_multi_hot"] = targets
    return batch


def test_actor_multi_label_loss_is_bce_of_labeled_frames(multi_cfg):
    import torch.nn.functional as F
    torch.manual_seed(0)
    net = build_model(multi_cfg, training=True).train()
    actor = HIPTrackActor(net, multi_cfg)
    labels = torch.tensor([[0, 3, 9, -100, 5], [1, -100, 2, 2, 7]])
    batch = multi_hot_batch(multi_cfg, labels)
    outputs = actor.forward(batch, epoch=1)
    loss, stats = actor.compute_losses(outputs, batch)
    loss.backward()
    logits = torch.cat([out["cls_logits"] for out in outputs]).detach()  # frame-major (N * B, K)
    targets = batch["search_cls_multi_hot"].transpose(0, 1).reshape(-1, 10)
    keep = labels.transpose(0, 1).reshape(-1) != -100
    expected = F.binary_cross_entropy_with_logits(logits[keep], targets[keep])
    assert stats["Loss/classification"] == pytest.approx(expected.item(), rel=1e-5)
    assert stats["cls_labeled"] == 8 and "cls_confusion" not in stats
    top1 = logits[keep].argmax(1)
    assert stats["cls_correct"] == int((targets[keep].gather(1, top1[:, None]) > 0).sum())
    assert stats["Accuracy"] == stats["cls_correct"] / 8
    torch.testing.assert_close(stats["cls_scores"], torch.sigmoid(logits[keep]))
    assert torch.equal(stats["cls_positives"], targets[keep] > 0)
    assert stats["Loss/total"] == pytest.approx(weighted_total(multi_cfg.TRAIN, stats), rel=1e-5)
    assert net.cls_head.classifier.weight.grad.abs().sum() > 0


def test_actor_multi_label_without_labels_adds_exactly_zero(multi_cfg):
    torch.manual_seed(0)
    net = build_model(multi_cfg, training=True).train()
    batch = multi_hot_batch(multi_cfg, torch.full((2, 5), -100))
    loss, stats = HIPTrackActor(net, multi_cfg)(batch, epoch=1)
    loss.backward()
    assert stats["Loss/classification"] == 0.0 and "Accuracy" not in stats and stats["cls_scores"].shape == (0, 10)
    assert net.cls_head.classifier.weight.grad.abs().sum() == 0


def test_epoch_metrics_multi_label_by_hand():
    from lib.train.metrics import EpochMetrics
    metrics = EpochMetrics(3, multi_label=True)
    # class 0 ranked + - +: AP (1 + 2/3) / 2; class 1 all negative: no AP; class 2 ranked + -: AP 1
    batches = [(torch.tensor([[0.9, 0.2, 0.8], [0.6, 0.7, 0.1]]), torch.tensor([[1, 0, 1], [0, 0, 0]])),
               (torch.tensor([[0.3, 0.1, 0.05]]), torch.tensor([[1, 0, 0]]))]
    for scores, positives in batches:
        metrics.update({"Loss/classification": 0.5, "cls_correct": 1, "cls_labeled": len(scores),
                        "cls_scores": scores, "cls_positives": positives.bool()}, batch_size=1)
    out = metrics.reduce(distributed=False, device=torch.device("cpu"))
    assert out["AP/Occlusion"] == pytest.approx((1 + 2 / 3) / 2) and out["AP/Scale Variation"] == 1.0
    assert "AP/Illumination Change" not in out
    assert out["mAP"] == pytest.approx(((1 + 2 / 3) / 2 + 1) / 2)
    # at 0.5: class 0 predicts frames 1, 2 (TP 1 of 2 positives) -> F1 2/4; class 2 TP 1 of 1 -> F1 1
    assert out["MacroF1"] == pytest.approx((0.5 + 1.0) / 2)
    assert out["Accuracy"] == pytest.approx(2 / 3) and out["labeled_frames"] == 3.0
    assert "confusion" not in out and not any(k.startswith("Accuracy/") for k in out)
    assert "Accuracy" in metrics.summary() and "mAP" not in metrics.summary()
