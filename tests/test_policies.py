"""Challenge-aware tracking policies: smoothing, the memory gate, search adaptation, damping, the oracle
source, the policy log and the config checks (tiny models on generated videos)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import lib.test.tracker.hiptrack as tracker_module
from conftest import make_tiny_cfg
from lib.challenges import NUM_CLASSES, Challenge
from lib.config.hiptrack import load_config, resolve_experiment_config
from lib.config.node import ConfigError
from lib.dataset.paths import DatasetPaths
from lib.dataset.registry import build_dataset
from lib.models import build_model
from lib.models.hiptrack.vit_ce import ctr_point_mask
from lib.synthetic import generate_dataset
from lib.test.evaluation import runner
from lib.test.evaluation.results import read_policy_log, sequence_files, write_policy_log
from lib.test.run import oracle_labels_dir
from lib.test.tracker import HIPTrackCLSTracker, HIPTrackTracker
from lib.test.tracker.policies import (ChallengePolicies, ChallengeSmoother, FrameDecision, PolicyRecord,
                                       smooth_probabilities)
from lib.utils.cli import UsageError
from lib.utils.crop import clip_box, sample_target
from test_tracker import moving_square

ALL_POLICIES = ("TEST.POLICY.MEMORY_GATE=True", "TEST.POLICY.SEARCH_ADAPT=True", "TEST.POLICY.DAMPING=True")
ORACLE = "TEST.POLICY.SOURCE=oracle"
SEARCH_FACTOR = 5.0  # TEST.SEARCH_FACTOR of the tiny configs (the default)


def cls_cfg(*opts: str):
    return load_config(resolve_experiment_config("hiptrack_cls_tiny"), opts=list(opts))


def tiny_network(cfg):
    torch.manual_seed(0)
    return build_model(cfg, training=False).eval()


def flags(frames: int, marked: dict[int, tuple[Challenge, ...]]) -> list[list[float]]:
    """Oracle rows of ``frames`` frames: 1 for the classes ``marked[i]`` of frame i, else all 0."""
    rows = [[0.0] * NUM_CLASSES for _ in range(frames)]
    for i, classes in marked.items():
        for c in classes:
            rows[i][int(c)] = 1.0
    return rows


def run(tracker, images, box, oracle=None) -> list[dict]:
    """``track()`` results of frames 1.. (frame 0 initialises); ``oracle[i]`` is frame i's flag row."""
    tracker.initialize(images[0], {"init_bbox": box})
    return [tracker.track(img, {} if oracle is None else {"challenge_flags": oracle[i]})
            for i, img in enumerate(images) if i > 0]


def memory_events(results) -> list[str]:
    return [r["policy"].memory for r in results]


def reference_boxes(network, cfg, images, box) -> list[list[float]]:
    """Boxes of the tracker as it was before the policies (HIPTrackTracker.track of d45b67c, line by line)."""
    tracker = HIPTrackTracker(network, cfg)
    tracker.initialize(images[0], {"init_bbox": box})
    test, boxes = cfg.TEST, []
    for image in images[1:]:
        height, width = image.shape[:2]
        patch, resize_factor, _ = sample_target(image, tracker.prev_box_xywh, test.SEARCH_FACTOR, test.SEARCH_SIZE)
        out = network.track(tracker.video_state, tracker._to_tensor(patch))
        maps = {k: out[k].float() for k in ("score_map", "size_map", "offset_map")}
        pred = network.box_head.boxes_from_maps(tracker.window * maps["score_map"], maps["size_map"],
                                                maps["offset_map"])
        cx, cy, w, h = (pred[0] * test.SEARCH_SIZE / resize_factor).tolist()
        tracker.prev_box_xywh = clip_box(tracker._to_image(cx, cy, w, h, resize_factor), height, width, 10)
        boxes.append(tracker.prev_box_xywh)
    return boxes


def favour_class(network, challenge: Challenge) -> None:
    """Make the head predict ``challenge`` with probability ~1 on every frame."""
    with torch.no_grad():
        network.cls_head.classifier.weight.zero_()
        network.cls_head.classifier.bias.fill_(-10.0)
        network.cls_head.classifier.bias[int(challenge)] = 10.0


@pytest.fixture(scope="module")
def video():
    images, boxes = moving_square(frames=12)
    return images, boxes[0]


# ---------------------------------------------------------------------------- smoothing
def test_smoothing_by_hand_for_three_frames_online_equals_offline():
    raw = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    expected = [[1.0, 0.0], [0.8, 0.2], [0.64, 0.36]]  # p_t = 0.8 p_(t-1) + 0.2 raw_t, the first frame raw
    offline = smooth_probabilities(raw, 0.8)
    np.testing.assert_allclose(offline, expected, rtol=0, atol=1e-12)
    smoother = ChallengeSmoother(0.8)
    np.testing.assert_array_equal(np.stack([smoother.update(row) for row in raw]), offline)
    np.testing.assert_array_equal(smooth_probabilities(raw, 0.0), raw)  # 0 = off
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        ChallengeSmoother(1.0)


def test_smoothing_skips_nan_rows_and_keeps_their_state():
    nan = float("nan")
    raw = np.array([[nan, nan], [1.0, 0.0], [nan, nan], [0.0, 1.0]])
    smoothed = smooth_probabilities(raw, 0.5)
    assert np.isnan(smoothed[0]).all() and np.isnan(smoothed[2]).all()
    np.testing.assert_allclose(smoothed[[1, 3]], [[1.0, 0.0], [0.5, 0.5]])  # frame 3 smooths with frame 1
    smoother = ChallengeSmoother(0.5)
    np.testing.assert_array_equal(np.stack([smoother.update(row) for row in raw]), smoothed)
    smoother.reset()
    np.testing.assert_array_equal(smoother.update([0.0, 1.0]), [0.0, 1.0])


def test_policies_read_smoothed_probabilities_and_cls_probs_stay_raw(video, monkeypatch):
    cfg = cls_cfg("TEST.POLICY.DAMPING=True", "TEST.CLS_SMOOTHING=0.7")
    seen = []
    decide = ChallengePolicies.decide
    monkeypatch.setattr(ChallengePolicies, "decide", lambda self, p, s: seen.append(p) or decide(self, p, s))
    results = run(HIPTrackCLSTracker(tiny_network(cfg), cfg, predict_challenges=True), *video)
    raw = np.array([r["cls_probs"] for r in results])
    np.testing.assert_allclose(np.stack(seen), smooth_probabilities(raw, 0.7), rtol=0, atol=1e-6)
    assert not np.array_equal(np.stack(seen)[1:], raw[1:])


# ---------------------------------------------------------------------------- decisions and config
def test_decide_fires_each_policy_on_its_classes_and_threshold():
    policies = ChallengePolicies.from_config(cls_cfg(*ALL_POLICIES, "TEST.POLICY.SEARCH_ADAPT_MIN_SCORE=0.3"))
    clear = np.full(NUM_CLASSES, 0.1)

    def probs(challenge: Challenge, p: float) -> np.ndarray:
        out = clear.copy()
        out[int(challenge)] = p
        return out

    assert policies.decide(clear, 0.9) == FrameDecision()
    assert policies.decide(probs(Challenge.OCCLUSION, 0.5), 0.9) == FrameDecision(write_memory=False,
                                                                                  next_search_scale=1.5)
    assert policies.decide(probs(Challenge.OCCLUSION, 0.49), 0.9) == FrameDecision()
    assert policies.decide(probs(Challenge.PARTIAL_VISIBILITY, 0.7), 0.9) == FrameDecision(write_memory=False)
    assert policies.decide(probs(Challenge.SCALE_VARIATION, 0.7), 0.9) == FrameDecision(next_search_scale=1.5)
    assert policies.decide(probs(Challenge.BACKGROUND_CLUTTER, 0.6), 0.9) == FrameDecision(window_power=2.0,
                                                                                           size_rate=0.5)
    assert policies.decide(clear, 0.29).next_search_scale == 1.5  # low score peak
    assert policies.decide(clear, 0.3).next_search_scale == 1.0
    off = ChallengePolicies.from_config(cls_cfg())
    assert not off.active and not off.needs_predictions and off.decide(probs(Challenge.OCCLUSION, 1.0), 0) == \
        FrameDecision()


@pytest.mark.parametrize("opt, message", [
    ("TEST.CLS_SMOOTHING=1.0", r"TEST.CLS_SMOOTHING must be in \[0, 1\)"),
    ("TEST.POLICY.MEMORY_GATE_CLASSES=[Occlusion, Fog]", r"TEST.POLICY.MEMORY_GATE_CLASSES .*'Fog'.*Motion Blur"),
    ("TEST.POLICY.DAMPING_CLASSES=[background clutter]", r"TEST.POLICY.DAMPING_CLASSES .*'background clutter'"),
    ("TEST.POLICY.SEARCH_ADAPT_THRESHOLD=1.5", r"TEST.POLICY.SEARCH_ADAPT_THRESHOLD must be in \[0, 1\]"),
    ("TEST.POLICY.SEARCH_ADAPT_MIN_SCORE=-0.1", r"TEST.POLICY.SEARCH_ADAPT_MIN_SCORE must be in \[0, 1\]"),
    ("TEST.POLICY.SEARCH_ADAPT_FACTOR=1.0", r"TEST.POLICY.SEARCH_ADAPT_FACTOR must be > 1"),
    ("TEST.POLICY.DAMPING_WINDOW_POWER=0.5", r"TEST.POLICY.DAMPING_WINDOW_POWER must be > 1"),
    ("TEST.POLICY.DAMPING_SIZE_RATE=0", r"TEST.POLICY.DAMPING_SIZE_RATE must be in \(0, 1\]"),
    ("TEST.POLICY.SOURCE=ground_truth", r"TEST.POLICY.SOURCE.*not one of \['predicted', 'oracle'\]"),
])
def test_bad_policy_values_are_config_errors_naming_the_key(opt, message):
    with pytest.raises(ConfigError, match=message):
        cls_cfg(opt)


def test_config_checks_between_policy_keys():
    with pytest.raises(ConfigError, match="TEST.POLICY.MEMORY_GATE_CLASSES must name at least one"):
        cls_cfg("TEST.POLICY.MEMORY_GATE=True", "TEST.POLICY.MEMORY_GATE_CLASSES=[]")
    cls_cfg("TEST.POLICY.SEARCH_ADAPT=True", "TEST.POLICY.SEARCH_ADAPT_CLASSES=[]",
            "TEST.POLICY.SEARCH_ADAPT_MIN_SCORE=0.3")  # adaptation on the score alone
    with pytest.raises(ConfigError, match=r"SOURCE predicted .*TEST.POLICY.DAMPING.*MODEL.CLS_HEAD.ENABLED.*oracle"):
        make_tiny_cfg("TEST.POLICY.DAMPING=True")
    make_tiny_cfg("TEST.POLICY.DAMPING=True", ORACLE)  # the ground truth needs no head


# ---------------------------------------------------------------------------- everything off / never firing
def test_everything_off_tracks_exactly_as_before(video):
    cfg = make_tiny_cfg()
    network = tiny_network(cfg)
    expected = reference_boxes(network, cfg, *video)
    tracker = HIPTrackTracker(network, cfg)
    results = run(tracker, *video)
    assert [r["target_bbox"] for r in results] == expected
    assert tracker.policy_run is None and all(set(r) == {"target_bbox"} for r in results)


@pytest.mark.parametrize("source", ["oracle", "predicted"])
def test_policies_that_never_fire_change_nothing(video, source):
    images, box = video
    cfg = cls_cfg()
    network = tiny_network(cfg)
    plain = [r["target_bbox"] for r in run(HIPTrackCLSTracker(network, cfg), images, box)]
    opts = [*ALL_POLICIES, f"TEST.POLICY.SOURCE={source}"]
    if source == "predicted":  # thresholds no probability reaches
        opts += [f"TEST.POLICY.{p}_THRESHOLD=1.0" for p in ("MEMORY_GATE", "SEARCH_ADAPT", "DAMPING")]
    tracker = HIPTrackCLSTracker(network, cls_cfg(*opts))
    results = run(tracker, images, box, flags(len(images), {}))
    assert [r["target_bbox"] for r in results] == plain
    writes = [i for i, r in enumerate(results, start=1) if r["policy"].memory == "write"]
    assert writes == [2, 4, 5, 10] and set(memory_events(results)) == {"write", "-"}  # the schedule alone
    assert {(r["policy"].search_factor, r["policy"].window_power, r["policy"].size_rate) for r in results} == \
        {(SEARCH_FACTOR, 1.0, 1.0)}


# ---------------------------------------------------------------------------- memory gate
def tiny_frames(cfg, frames: int):
    g = torch.Generator().manual_seed(0)
    t, s = cfg.DATA.TEMPLATE.SIZE, cfg.DATA.SEARCH.SIZE
    return (torch.randn(1, 3, t, t, generator=g), torch.tensor([[0.25, 0.25, 0.5, 0.5]]), ctr_point_mask(t // 16, 1),
            [torch.randn(1, 3, s, s, generator=g) for _ in range(frames)])


def track_with_veto(model, inputs, veto: set[int] | None):
    """Per frame: outputs, bank size; and the frames whose write was asked about (``veto`` None: no callback)."""
    template, box, mask, search = inputs
    state = model.start_tracking(template, box, mask)
    asked = []

    def allow_write(out: dict) -> bool:
        asked.append(state.frame_index)
        return state.frame_index not in veto

    outs, sizes = [], []
    for x in search:
        outs.append(model.track(state, x, allow_write=None if veto is None else allow_write))
        sizes.append(len(state.memory))
    return outs, sizes, asked


def test_model_keeps_a_vetoed_write_pending_until_an_allowed_frame():
    cfg = make_tiny_cfg()  # writes at 2, 4 (warm-up 1..4), then 5, 10
    model = tiny_network(cfg)
    inputs = tiny_frames(cfg, 11)
    plain, plain_sizes, _ = track_with_veto(model, inputs, None)
    assert plain_sizes == [0, 1, 1, 2, 3, 3, 3, 3, 3, 4, 4]
    gated, sizes, asked = track_with_veto(model, inputs, {2, 5, 6})
    # 2 vetoed -> 3 written (unscheduled); 5 vetoed and 6 too -> 7 written; 10 as scheduled
    assert sizes == [0, 0, 1, 2, 2, 2, 3, 3, 3, 4, 4]
    assert asked == [2, 3, 4, 5, 6, 7, 10]
    for a, b in zip(plain[:4], gated[:4]):  # the warm-up reads the template memory whatever was written
        assert torch.equal(a["pred_boxes"], b["pred_boxes"]) and torch.equal(a["score_map"], b["score_map"])
    allowed, allowed_sizes, _ = track_with_veto(model, inputs, set())
    assert allowed_sizes == plain_sizes
    assert all(torch.equal(a["pred_boxes"], b["pred_boxes"]) for a, b in zip(plain, allowed))


def test_tracker_memory_gate_follows_oracle_flags(video):
    images, box = video
    cfg = make_tiny_cfg(ORACLE, "TEST.POLICY.MEMORY_GATE=True")
    tracker = HIPTrackTracker(tiny_network(cfg), cfg)  # the plain tracker runs oracle policies
    oracle = flags(len(images), {4: (Challenge.OCCLUSION,), 5: (Challenge.MOTION_BLUR,),
                                 6: (Challenge.PARTIAL_VISIBILITY,), 8: (Challenge.NORMAL,)})
    results = run(tracker, images, box, oracle)
    assert memory_events(results) == ["-", "write", "-", "skip", "skip", "pending", "write", "-", "-", "write", "-"]
    assert len(tracker.video_state.memory) == 3  # 2, 7, 10 (ungated: 2, 4, 5, 10)
    with pytest.raises(ValueError, match="challenge_flags"):
        tracker.track(images[1], {})


def test_tracker_memory_gate_on_predictions_never_writes_while_occlusion_is_predicted(video, monkeypatch):
    images, box = video
    cfg = cls_cfg("TEST.POLICY.MEMORY_GATE=True")
    network = tiny_network(cfg)
    favour_class(network, Challenge.OCCLUSION)
    head_runs = []
    network.cls_head.projection.register_forward_hook(lambda *a: head_runs.append(1))
    tracker = HIPTrackCLSTracker(network, cfg)  # no --save_cls: the policies alone make the head run
    results = run(tracker, images, box)
    assert len(head_runs) == len(images) - 1 and all("cls_id" not in r for r in results)
    assert memory_events(results) == ["-", "skip", "pending", "skip", "skip", "pending", "pending", "pending",
                                      "pending", "skip", "pending"]
    assert len(tracker.video_state.memory) == 0 and tracker.video_state.write_pending


# ---------------------------------------------------------------------------- search adaptation
@pytest.fixture
def crop_factors(monkeypatch):
    """The factor of every search crop the tracker takes (a spy on its ``sample_target``)."""
    factors = []

    def spy(image, box, factor, size):
        factors.append(factor)
        return sample_target(image, box, factor, size)

    monkeypatch.setattr(tracker_module, "sample_target", spy)
    return factors


def test_search_region_grows_after_a_trigger_and_returns_after_a_clear_frame(video, crop_factors):
    images, box = video
    cfg = make_tiny_cfg(ORACLE, "TEST.POLICY.SEARCH_ADAPT=True")
    oracle = flags(len(images), {3: (Challenge.MOTION_BLUR,), 6: (Challenge.SCALE_VARIATION,),
                                 7: (Challenge.OCCLUSION, Challenge.LOW_RESOLUTION)})
    results = run(HIPTrackTracker(tiny_network(cfg), cfg), images, box, oracle)
    grown = SEARCH_FACTOR * 1.5
    expected = [SEARCH_FACTOR] * 3 + [grown] + [SEARCH_FACTOR] * 2 + [grown, grown] + [SEARCH_FACTOR] * 3
    assert crop_factors[1:] == expected  # crop_factors[0] is the template crop
    assert [r["policy"].search_factor for r in results] == expected


def test_search_region_grows_after_a_low_score_peak(video, crop_factors):
    images, box = video
    cfg = make_tiny_cfg(ORACLE, "TEST.POLICY.SEARCH_ADAPT=True", "TEST.POLICY.SEARCH_ADAPT_CLASSES=[]",
                        "TEST.POLICY.SEARCH_ADAPT_MIN_SCORE=1.0", "TEST.POLICY.SEARCH_ADAPT_FACTOR=2.0")
    results = run(HIPTrackTracker(tiny_network(cfg), cfg), images, box, flags(len(images), {}))
    assert all(r["policy"].score_peak < 1.0 for r in results)
    assert crop_factors[1:] == [SEARCH_FACTOR] + [2 * SEARCH_FACTOR] * (len(images) - 2)


# ---------------------------------------------------------------------------- damping
def test_damping_sharpens_the_window_and_smooths_the_size_only_on_triggering_frames(video, monkeypatch):
    images, box = video
    cfg = make_tiny_cfg(ORACLE, "TEST.POLICY.DAMPING=True", "TEST.POLICY.DAMPING_WINDOW_POWER=3.0",
                        "TEST.POLICY.DAMPING_SIZE_RATE=0.25")
    network = tiny_network(cfg)
    tracker = HIPTrackTracker(network, cfg)
    seen = {"score": [], "response": [], "pred": [], "resize": [], "unclipped": []}
    track, decode = network.track, network.box_head.boxes_from_maps
    decoding_in_tracker = []  # the box head decodes inside the network too: record the tracker's decoding only

    def spy_track(*args, **kwargs):
        out = track(*args, **kwargs)
        seen["score"].append(out["score_map"].float())
        decoding_in_tracker.append(True)
        return out

    def spy_decode(response, size_map, offset_map):
        pred = decode(response, size_map, offset_map)
        if decoding_in_tracker:
            decoding_in_tracker.pop()
            seen["response"].append(response)
            seen["pred"].append(pred)
        return pred

    def spy_crop(image, box, factor, size):
        patch, resize, padding = sample_target(image, box, factor, size)
        seen["resize"].append(resize)
        return patch, resize, padding

    def spy_clip(box, height, width, margin):
        seen["unclipped"].append(box)
        return clip_box(box, height, width, margin)

    monkeypatch.setattr(network, "track", spy_track)
    monkeypatch.setattr(network.box_head, "boxes_from_maps", spy_decode)
    monkeypatch.setattr(tracker_module, "sample_target", spy_crop)
    monkeypatch.setattr(tracker_module, "clip_box", spy_clip)
    damped = {3: (Challenge.BACKGROUND_CLUTTER,), 6: (Challenge.LOW_CONTRAST_OBJECT, Challenge.MOTION_BLUR)}
    results = run(tracker, images, box, flags(len(images), damped))
    previous = [box] + [r["target_bbox"] for r in results[:-1]]
    for t, result in enumerate(results, start=1):
        is_damped = t in damped
        power, rate = (3.0, 0.25) if is_damped else (1.0, 1.0)
        assert (result["policy"].window_power, result["policy"].size_rate) == (power, rate)
        assert torch.equal(seen["response"][t - 1], tracker.window ** power * seen["score"][t - 1])
        pred_wh = (seen["pred"][t - 1][0, 2:] * cfg.TEST.SEARCH_SIZE / seen["resize"][t]).tolist()
        expected_wh = [rate * p + (1 - rate) * q for p, q in zip(pred_wh, previous[t - 1][2:])]
        assert seen["unclipped"][t - 1][2:] == pytest.approx(expected_wh, rel=1e-6)


def test_damping_on_predictions_acts_on_every_frame_the_head_calls_cluttered(video):
    images, box = video
    cfg = cls_cfg("TEST.POLICY.DAMPING=True")
    network = tiny_network(cfg)
    undamped = [r["target_bbox"] for r in run(HIPTrackCLSTracker(network, cls_cfg()), images, box)]
    favour_class(network, Challenge.LOW_CONTRAST_OBJECT)
    results = run(HIPTrackCLSTracker(network, cfg), images, box)
    assert {(r["policy"].window_power, r["policy"].size_rate) for r in results} == {(2.0, 0.5)}
    assert [r["target_bbox"] for r in results] != undamped  # FUSION NONE: only the policy changed the boxes


# ---------------------------------------------------------------------------- trackers
def test_plain_tracker_refuses_policies_on_predictions():
    cfg = cls_cfg("TEST.POLICY.MEMORY_GATE=True")
    with pytest.raises(ValueError, match="hiptrack_cls tracker.*SOURCE=oracle"):
        HIPTrackTracker(tiny_network(cfg), cfg)
    oracle_cfg = cls_cfg("TEST.POLICY.MEMORY_GATE=True", ORACLE)
    assert HIPTrackTracker(tiny_network(oracle_cfg), oracle_cfg).policies.uses_oracle


def test_oracle_needs_cls_ann_dir(tmp_path):
    with pytest.raises(UsageError, match="--cls_ann_dir"):  # exit 2 with one error line in tracking/test.py
        oracle_labels_dir(make_tiny_cfg(ORACLE, "TEST.POLICY.DAMPING=True"), None)
    with pytest.raises(UsageError, match="is not a folder"):
        oracle_labels_dir(make_tiny_cfg(ORACLE, "TEST.POLICY.DAMPING=True"), tmp_path / "missing")
    assert oracle_labels_dir(make_tiny_cfg(ORACLE, "TEST.POLICY.DAMPING=True"), tmp_path) == tmp_path
    assert oracle_labels_dir(make_tiny_cfg(ORACLE), tmp_path) is None  # no policy on: labels unused


# ---------------------------------------------------------------------------- runner and policy log
@pytest.fixture(scope="module")
def labelled_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "data"
    generate_dataset(root, sequences=4, frames=12, seed=0, test_fraction=0.5)
    return build_dataset("SYNTHETIC_test", DatasetPaths.from_env([f"synthetic={root}"]),
                         cls_ann_dir=root / "cls_annotations")


def run_recorded(monkeypatch, dataset, directory: Path, *opts: str, sequences: list[str] | None = None):
    """``run_dataset`` with a HIPTrack-CLS tracker of ``opts`` (over ``sequences``, default all), recording every
    ``info`` it is given."""
    cfg = cls_cfg(*opts)
    tracker = HIPTrackCLSTracker(tiny_network(cfg), cfg)
    infos = []
    track = tracker.track
    monkeypatch.setattr(tracker, "track", lambda image, info=None: infos.append(info) or track(image, info))
    monkeypatch.setattr(runner, "build_tracker", lambda settings: tracker)
    settings = runner.RunSettings("hiptrack_cls", "unused.yaml", (), "unused.pth")
    summary = runner.run_dataset(settings, dataset, directory, "got10k", sequences)
    return summary, infos


def test_runner_passes_ground_truth_only_to_oracle_policies(labelled_dataset, tmp_path, monkeypatch):
    runs = {"off": (), "predicted": ("TEST.POLICY.MEMORY_GATE=True",), "oracle_without_policy": (ORACLE,)}
    for name, opts in runs.items():
        _, infos = run_recorded(monkeypatch, labelled_dataset, tmp_path / name, *opts, sequences=["4-USV"])
        assert len(infos) == 11 and all(info == {} for info in infos), name
    _, infos = run_recorded(monkeypatch, labelled_dataset, tmp_path / "oracle", ORACLE, "TEST.POLICY.MEMORY_GATE=True")
    truth = [row for i in range(len(labelled_dataset))
             for row in labelled_dataset.sequence_info(i).cls_multi_hot[1:].tolist()]
    assert [info["challenge_flags"] for info in infos] == truth
    assert not any((tmp_path / "off").rglob("*_policy.txt"))


def test_policy_log_follows_the_oracle_flags_and_is_resumable(labelled_dataset, tmp_path, monkeypatch):
    opts = (ORACLE, *ALL_POLICIES)
    summary, _ = run_recorded(monkeypatch, labelled_dataset, tmp_path, *opts)
    assert summary.names("done") == ["2-Boat", "4-USV"]
    logs = {name: read_policy_log(sequence_files(tmp_path, name, "got10k").policy) for name in summary.names("done")}
    # 4-USV: Motion Blur on frames 5-8 (1-based) gates the writes of 5 and 6 and grows the crop of 6-9
    usv = logs["4-USV"]
    assert [row["frame"] for row in usv] == list(range(1, 13))
    assert [row["memory"] for row in usv] == ["-", "-", "write", "-", "skip", "skip", "pending", "pending", "write",
                                              "-", "write", "-"]
    assert [row["search_factor"] for row in usv[1:]] == [5.0] * 4 + [7.5] * 4 + [5.0] * 3
    assert np.isnan([usv[0][k] for k in ("search_factor", "window_power", "size_rate", "score_peak")]).all()
    # 2-Boat: Background Clutter on frames 8-11 damps those frames only
    assert [(row["window_power"], row["size_rate"]) for row in logs["2-Boat"][1:]] == \
        [(1.0, 1.0)] * 6 + [(2.0, 0.5)] * 4 + [(1.0, 1.0)]

    files = sequence_files(tmp_path, "4-USV", "got10k")
    files.policy.unlink()  # a missing policy log makes the results incomplete
    summary, _ = run_recorded(monkeypatch, labelled_dataset, tmp_path, *opts)
    assert summary.names("skipped") == ["2-Boat"] and summary.names("done") == ["4-USV"]
    assert [row["memory"] for row in read_policy_log(files.policy)] == [row["memory"] for row in usv]


def test_policy_log_rejects_a_bad_header(tmp_path):
    path = write_policy_log(tmp_path / "a_policy.txt", [None, PolicyRecord("write", 5.0, 1.0, 1.0, 0.25)])
    assert path.read_text().splitlines() == ["frame,memory,search_factor,window_power,size_rate,score_peak",
                                             "1,-,nan,nan,nan,nan", "2,write,5.00000,1.00000,1.00000,0.25000"]
    path.write_text("frame,memory\n1,-\n")
    with pytest.raises(ValueError, match="header"):
        read_policy_log(path)


def test_save_cls_writes_raw_probabilities_whatever_the_smoothing(labelled_dataset, tmp_path, monkeypatch):
    texts = []
    for smoothing in (0.0, 0.9):  # a gate that never fires: same boxes, so the same head outputs
        cfg = cls_cfg("TEST.POLICY.MEMORY_GATE=True", "TEST.POLICY.MEMORY_GATE_THRESHOLD=1.0",
                      f"TEST.CLS_SMOOTHING={smoothing}")
        tracker = HIPTrackCLSTracker(tiny_network(cfg), cfg, predict_challenges=True)
        monkeypatch.setattr(runner, "build_tracker", lambda settings: tracker)
        settings = runner.RunSettings("hiptrack_cls", "unused.yaml", (), "unused.pth", save_cls=True)
        runner.run_dataset(settings, labelled_dataset, tmp_path / str(smoothing), "got10k", sequences=["2-Boat"])
        files = sequence_files(tmp_path / str(smoothing), "2-Boat", "got10k")
        texts.append(files.challenges.read_text())
        assert len(read_policy_log(files.policy)) == len(texts[-1].splitlines())
    assert texts[0] == texts[1]
