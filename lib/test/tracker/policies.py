"""Challenge-aware tracking policies: test-time rules driven by each frame's challenge probabilities.

Three policies (``TEST.POLICY``), each off by default; with all of them off the tracker never builds a
:class:`PolicyRun` and tracks exactly as without this module:

* **memory gate** (``MEMORY_GATE``): a frame whose probability of a listed class is >= the threshold
  is not written to the historical memory; the due write stays pending and goes to the next frame that
  is not gated (see ``allow_write`` of :meth:`lib.models.hiptrack.hiptrack.HIPTrack.track`);
* **search adaptation** (``SEARCH_ADAPT``): after a frame with a listed class, or whose peak of the
  Hann-windowed score map is below ``SEARCH_ADAPT_MIN_SCORE``, the next frame is cropped with
  ``TEST.SEARCH_FACTOR * SEARCH_ADAPT_FACTOR``; after a clear frame with the normal factor again;
* **damping** (``DAMPING``): on a frame with a listed class the score map is weighted with the Hann
  window to ``DAMPING_WINDOW_POWER`` (a stronger penalty on displacement) and the new size is
  ``DAMPING_SIZE_RATE * predicted + (1 - rate) * previous``.

The probabilities are the classification head's (``SOURCE: predicted``), smoothed over frames by
``TEST.CLS_SMOOTHING`` (:class:`ChallengeSmoother`, the one home of the formula, also used offline by
:func:`smooth_probabilities`), or the frame's ground-truth flags (``SOURCE: oracle``, passed by the test
runner as ``info["challenge_flags"]``: 1 for every flagged class, all 0 on unlabeled frames), which
tells "the policy helps" apart from "the classifier is good enough to drive it".

The tracker consults a :class:`PolicyRun` at fixed points of a frame: :meth:`PolicyRun.begin_frame`
(the crop factor), :meth:`PolicyRun.allow_write` (the model's memory-write veto),
:meth:`PolicyRun.decide` (window power and size rate, before the box is decoded) and
:meth:`PolicyRun.end_frame` (the next crop factor and the frame's :class:`PolicyRecord` for
``<seq>_policy.txt``).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lib.challenges import CLASS_NAMES, NUM_CLASSES

PREDICTED = "predicted"
ORACLE = "oracle"

# what happened to the memory on a frame (column ``memory`` of <seq>_policy.txt)
MEMORY_WRITE = "write"      # the frame was written (scheduled, or a pending write carried over)
MEMORY_SKIP = "skip"        # a scheduled write was vetoed: it is now pending
MEMORY_PENDING = "pending"  # a pending write was vetoed again on an unscheduled frame
MEMORY_NONE = "-"           # no write was due


# ---------------------------------------------------------------------------- smoothing
class ChallengeSmoother:
    """Online exponential moving average of class probabilities: ``p_t = a * p_(t-1) + (1 - a) * raw_t``.

    The first frame with probabilities gives ``raw``; a row holding NaN (e.g. the template frame of
    ``<seq>_cls.txt``) is skipped: it comes back as NaN and leaves the state as it was.
    """

    def __init__(self, alpha: float) -> None:
        if not 0 <= alpha < 1:
            raise ValueError(f"smoothing factor must be in [0, 1), got {alpha}")
        self.alpha = float(alpha)
        self.state: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the past (a new video)."""
        self.state = None

    def update(self, raw: Sequence[float] | np.ndarray) -> np.ndarray:
        """The smoothed probabilities (K,) after a frame's raw probabilities ``raw`` (K,)."""
        raw = np.asarray(raw, dtype=np.float64)
        if np.isnan(raw).any():
            return np.full_like(raw, np.nan)
        self.state = raw.copy() if self.state is None else self.alpha * self.state + (1 - self.alpha) * raw
        return self.state.copy()


def smooth_probabilities(probs: np.ndarray, alpha: float) -> np.ndarray:
    """(N, K) probabilities of consecutive frames smoothed as the tracker does online (NaN rows stay NaN)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probabilities must be (N, K), got shape {probs.shape}")
    smoother = ChallengeSmoother(alpha)
    return np.stack([smoother.update(row) for row in probs]) if len(probs) else probs.copy()


# ---------------------------------------------------------------------------- decisions
@dataclass(frozen=True)
class ClassTrigger:
    """Fires on a frame whose probability of any of ``classes`` (ids) is >= ``threshold``."""
    classes: tuple[int, ...]
    threshold: float

    @classmethod
    def from_names(cls, names: Sequence[str], threshold: float) -> ClassTrigger:
        """The trigger of challenge names of :data:`lib.challenges.CLASS_NAMES`."""
        unknown = [n for n in names if n not in CLASS_NAMES]
        if unknown:
            raise ValueError(f"unknown challenge names {unknown}; valid: {', '.join(CLASS_NAMES)}")
        return cls(tuple(CLASS_NAMES.index(n) for n in names), float(threshold))

    def fires(self, probs: np.ndarray) -> bool:
        """True when a listed class reaches the threshold in ``probs`` (K,)."""
        return any(probs[c] >= self.threshold for c in self.classes)


@dataclass(frozen=True)
class FrameDecision:
    """What the policies do on one frame (the defaults: nothing)."""
    write_memory: bool = True        # False: the memory gate vetoes writing this frame
    window_power: float = 1.0        # exponent of the Hann window on this frame's score map
    size_rate: float = 1.0           # new w, h = rate * predicted + (1 - rate) * previous
    next_search_scale: float = 1.0   # the next frame is cropped with TEST.SEARCH_FACTOR times this


NO_POLICY = FrameDecision()


@dataclass(frozen=True)
class ChallengePolicies:
    """The policies of a config (``TEST.POLICY``); a trigger of None is a policy that is off."""
    source: str = PREDICTED
    memory_gate: ClassTrigger | None = None
    search_adapt: ClassTrigger | None = None
    search_adapt_min_score: float = 0.0
    search_adapt_factor: float = 1.5
    damping: ClassTrigger | None = None
    damping_window_power: float = 2.0
    damping_size_rate: float = 0.5

    @classmethod
    def from_config(cls, cfg) -> ChallengePolicies:
        """The policies of ``cfg.TEST.POLICY`` (validated by the config)."""
        p = cfg.TEST.POLICY

        def trigger(switch: bool, names: Sequence[str], threshold: float) -> ClassTrigger | None:
            return ClassTrigger.from_names(names, threshold) if switch else None

        return cls(source=p.SOURCE,
                   memory_gate=trigger(p.MEMORY_GATE, p.MEMORY_GATE_CLASSES, p.MEMORY_GATE_THRESHOLD),
                   search_adapt=trigger(p.SEARCH_ADAPT, p.SEARCH_ADAPT_CLASSES, p.SEARCH_ADAPT_THRESHOLD),
                   search_adapt_min_score=p.SEARCH_ADAPT_MIN_SCORE, search_adapt_factor=p.SEARCH_ADAPT_FACTOR,
                   damping=trigger(p.DAMPING, p.DAMPING_CLASSES, p.DAMPING_THRESHOLD),
                   damping_window_power=p.DAMPING_WINDOW_POWER, damping_size_rate=p.DAMPING_SIZE_RATE)

    @property
    def active(self) -> bool:
        """True when any policy is on."""
        return any(t is not None for t in (self.memory_gate, self.search_adapt, self.damping))

    @property
    def needs_predictions(self) -> bool:
        """True when the policies read the classification head (on, with SOURCE predicted)."""
        return self.active and self.source == PREDICTED

    @property
    def uses_oracle(self) -> bool:
        """True when the policies read the ground-truth flags of each frame (on, with SOURCE oracle)."""
        return self.active and self.source == ORACLE

    def decide(self, probs: np.ndarray, score_peak: float) -> FrameDecision:
        """The decision of a frame from its challenge probabilities (K,) and the peak of its windowed score map."""
        damped = self.damping is not None and self.damping.fires(probs)
        return FrameDecision(
            write_memory=self.memory_gate is None or not self.memory_gate.fires(probs),
            window_power=self.damping_window_power if damped else 1.0,
            size_rate=self.damping_size_rate if damped else 1.0,
            next_search_scale=self.search_adapt_factor if self._grows_search(probs, score_peak) else 1.0)

    def _grows_search(self, probs: np.ndarray, score_peak: float) -> bool:
        if self.search_adapt is None:
            return False
        low_score = self.search_adapt_min_score > 0 and score_peak < self.search_adapt_min_score
        return low_score or self.search_adapt.fires(probs)


# ---------------------------------------------------------------------------- helpers of the tracker
def oracle_flags(info: dict, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """The ground-truth challenge flags (K,) of a frame from the tracker's ``info["challenge_flags"]``."""
    if "challenge_flags" not in info:
        raise ValueError("TEST.POLICY.SOURCE oracle needs the frame's ground-truth challenge flags in "
                         "info['challenge_flags'] (tracking/test.py passes them when given --cls_ann_dir)")
    flags = np.asarray(info["challenge_flags"], dtype=np.float64)
    if flags.shape != (num_classes,):
        raise ValueError(f"info['challenge_flags'] must hold {num_classes} values, got shape {flags.shape}")
    return flags


def powered_window(window: torch.Tensor, power: float) -> torch.Tensor:
    """The Hann window raised to ``power`` (the window itself for power 1, so undamped frames are unchanged)."""
    return window if power == 1 else window ** power


def blend_size(w: float, h: float, previous_w: float, previous_h: float, rate: float) -> tuple[float, float]:
    """``rate * (w, h) + (1 - rate) * previous`` (exactly ``(w, h)`` for rate 1)."""
    if rate == 1:
        return w, h
    return rate * w + (1 - rate) * previous_w, rate * h + (1 - rate) * previous_h


@dataclass(frozen=True)
class PolicyRecord:
    """What acted on one tracked frame: a line of ``<seq>_policy.txt``."""
    memory: str            # MEMORY_WRITE, MEMORY_SKIP, MEMORY_PENDING or MEMORY_NONE
    search_factor: float   # crop factor this frame was cropped with
    window_power: float    # exponent of the Hann window on its score map (1 = the normal window)
    size_rate: float       # weight of the predicted size against the previous one (1 = the prediction)
    score_peak: float      # peak of the Hann-windowed score map (what SEARCH_ADAPT_MIN_SCORE compares)


class PolicyRun:
    """The policies over one video: smoothing state, the next crop factor, and the current frame's decision.

    Per frame: :meth:`begin_frame`, then the network runs with :meth:`allow_write` as its write veto, then
    :meth:`decide` and :meth:`end_frame`. A frame is decided once, from the network's outputs, when first
    asked (by the veto when a write is due, else by the tracker), so the smoother sees every frame once.
    """

    def __init__(self, policies: ChallengePolicies, smoothing: float, search_factor: float,
                 window: torch.Tensor) -> None:
        self.policies = policies
        # ground-truth flags are used as they are: smoothing is for the head's noisy probabilities
        self.smoother = ChallengeSmoother(smoothing if policies.source == PREDICTED else 0.0)
        self.base_search_factor = float(search_factor)
        self.search_factor = float(search_factor)  # crop factor of the next frame
        self.window = window
        self._read: Callable[[dict], np.ndarray] | None = None
        self._decision: FrameDecision | None = None
        self._score_peak = math.nan
        self._write_asked = self._write_allowed = False

    def begin_frame(self, info: dict, predicted: Callable[[dict], torch.Tensor | np.ndarray]) -> float:
        """Start a frame; returns the factor to crop it with. ``predicted(out)`` gives the head's (K,)
        probabilities from the network outputs (not called with SOURCE oracle, which reads ``info``)."""
        if self.policies.source == ORACLE:
            flags = oracle_flags(info)
            self._read = lambda out: flags
        else:
            self._read = lambda out: _to_numpy(predicted(out))
        self._decision = None
        self._score_peak = math.nan
        self._write_asked = self._write_allowed = False
        return self.search_factor

    def allow_write(self, out: dict) -> bool:
        """The model's ``allow_write``: may this frame, whose write is due, go to the memory?"""
        self._write_asked = True
        self._write_allowed = self.decide(out).write_memory
        return self._write_allowed

    def decide(self, out: dict) -> FrameDecision:
        """The decision of the current frame from the network outputs ``out`` (computed once per frame)."""
        if self._decision is None:
            if self._read is None:
                raise RuntimeError("call begin_frame() before decide()")
            probs = self.smoother.update(self._read(out))
            self._score_peak = float((self.window * out["score_map"].float()).max())
            self._decision = self.policies.decide(probs, self._score_peak)
        return self._decision

    def end_frame(self, write_scheduled: bool) -> PolicyRecord:
        """Finish the decided frame (``write_scheduled``: its memory write was scheduled): set the next crop
        factor and return what acted on it."""
        if self._decision is None:
            raise RuntimeError("call decide() before end_frame()")
        decision, factor = self._decision, self.search_factor
        self.search_factor = self.base_search_factor * decision.next_search_scale
        self._read = None
        return PolicyRecord(self._memory_event(write_scheduled), factor, decision.window_power,
                            decision.size_rate, self._score_peak)

    def _memory_event(self, write_scheduled: bool) -> str:
        if not self._write_asked:
            return MEMORY_NONE
        if self._write_allowed:
            return MEMORY_WRITE
        return MEMORY_SKIP if write_scheduled else MEMORY_PENDING


def _to_numpy(probs: torch.Tensor | np.ndarray) -> np.ndarray:
    """Probabilities (K,) as float64 numpy."""
    if isinstance(probs, torch.Tensor):
        probs = probs.detach().float().cpu().numpy()
    return np.asarray(probs, dtype=np.float64)
