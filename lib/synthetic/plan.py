"""Event planning of the synthetic dataset: which sequences, vessel classes, splits and scripted events.

A :class:`SequencePlan` says what to render (name, vessel class, challenge events on disjoint frame
ranges, seed of every detail); :func:`plan_dataset` deals them out deterministically from a seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from lib.synthetic.labels import EVENT_TYPES

OBJECT_CLASSES: tuple[str, ...] = ("ship", "boat", "sailboat", "usv")
_TITLES = {"ship": "Ship", "boat": "Boat", "sailboat": "Sailboat", "usv": "USV"}


@dataclass(frozen=True)
class Event:
    """A scripted challenge over frames ``start .. end - 1`` (0-based frame indices)."""
    kind: str
    start: int
    end: int

    def __post_init__(self) -> None:
        if self.kind not in EVENT_TYPES:
            raise ValueError(f"unknown event kind {self.kind!r}; choose from {', '.join(EVENT_TYPES)}")
        if not 0 <= self.start < self.end:
            raise ValueError(f"event {self.kind} needs 0 <= start < end, got {self.start}..{self.end}")


@dataclass(frozen=True)
class SequencePlan:
    """What to render: the name, the vessel class, the events and the seed of all details."""
    name: str
    object_class: str
    events: tuple[Event, ...]
    seed: int

    def __post_init__(self) -> None:
        if self.object_class not in OBJECT_CLASSES:
            raise ValueError(f"unknown object class {self.object_class!r}; choose from {', '.join(OBJECT_CLASSES)}")
        kinds = [e.kind for e in self.events]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"sequence {self.name}: each event kind may appear once, got {kinds}")
        spans = sorted((e.start, e.end) for e in self.events)
        for (_, end0), (start1, _) in zip(spans, spans[1:]):
            if start1 < end0:
                raise ValueError(f"sequence {self.name}: events overlap: {self.events}")


def sequence_name(index: int, object_class: str) -> str:
    """MVTD-style name ``<index>-<Class>`` (1-based index), e.g. ``3-Sailboat``."""
    return f"{index}-{_TITLES[object_class]}"


def split_sizes(sequences: int, test_fraction: float) -> tuple[int, int]:
    """(train, test) counts: test gets round(N * fraction), at least 1 when N >= 2 and fraction > 0."""
    if sequences < 2 or test_fraction <= 0:
        return sequences, 0
    n_test = min(sequences - 1, max(1, int(math.floor(sequences * test_fraction + 0.5))))
    return sequences - n_test, n_test


def _sequence_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _schedule(rng: np.random.Generator, frames: int, n_events: int) -> list[tuple[int, int]]:
    """Disjoint (start, end) ranges: none before frame 2, at least 3 frames apart."""
    first, gap = 2, 3
    len_min = max(4, min(8, frames // 6))
    len_max = max(len_min, min(20, frames // 3))
    while n_events > 0 and n_events * len_min > frames - first - gap * (n_events - 1):
        n_events -= 1
    if n_events == 0:
        return []
    avail = frames - first - gap * (n_events - 1)
    lengths = rng.integers(len_min, len_max + 1, n_events)
    if lengths.sum() > avail:
        lengths = np.maximum(len_min, (lengths * avail) // lengths.sum())
        while lengths.sum() > avail:
            lengths[int(np.argmax(lengths))] -= 1
    slack = int(avail - lengths.sum())
    cuts = np.sort(rng.integers(0, slack + 1, n_events))
    spans, pos = [], first
    for i, length in enumerate(lengths):
        start = pos + int(cuts[i]) - (int(cuts[i - 1]) if i else 0)
        spans.append((start, start + int(length)))
        pos = start + int(length) + gap
    return spans


def plan_dataset(sequences: int, frames: int, seed: int, test_fraction: float = 0.25, *, first_index: int = 1,
                 split: str | None = None) -> list[tuple[SequencePlan, str]]:
    """Plans and splits (``"train"`` / ``"test"``) of every sequence, in name order.

    With ``split`` every sequence goes to that split (e.g. a validation split planned with its own seed);
    ``first_index`` numbers the sequences (``<index>-<Class>``), so such a split can follow the others
    without a name clash. Vessel classes cycle ship, boat, sailboat, USV. Event kinds are dealt from shuffled decks of
    all nine kinds, so their counts stay balanced over the dataset; a sequence gets 1-3 distinct
    kinds (mostly 3) on disjoint 8-20 frame ranges (shorter for short sequences).
    """
    check_dataset_counts(sequences, frames, test_fraction)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5EED]))
    _, n_test = split_sizes(sequences, test_fraction)
    test_ids = set(int(i) for i in rng.permutation(sequences)[:n_test])
    deck: list[str] = []
    plans = []
    for i in range(sequences):
        index = first_index + i
        object_class = OBJECT_CLASSES[(index - 1) % len(OBJECT_CLASSES)]
        spans = _schedule(rng, frames, int(rng.choice([1, 2, 3], p=[0.1, 0.3, 0.6])))
        kinds: list[str] = []
        while len(kinds) < len(spans):
            if not deck:
                deck = [EVENT_TYPES[j] for j in rng.permutation(len(EVENT_TYPES))]
            pick = next((k for k in deck if k not in kinds), None)
            if pick is None:
                deck.extend(EVENT_TYPES[j] for j in rng.permutation(len(EVENT_TYPES)))
                continue
            deck.remove(pick)
            kinds.append(pick)
        events = tuple(Event(k, s, e) for k, (s, e) in zip(kinds, spans))
        plan = SequencePlan(sequence_name(index, object_class), object_class, events, _sequence_seed(seed, index))
        plans.append((plan, split or ("test" if i in test_ids else "train")))
    return plans


def check_dataset_counts(sequences: int, frames: int, test_fraction: float) -> None:
    """Raise ``ValueError`` unless the sequence and frame counts and the test fraction are usable."""
    if int(sequences) != sequences or sequences < 1:
        raise ValueError(f"sequences must be an integer >= 1, got {sequences}")
    if int(frames) != frames or frames < 2:
        raise ValueError(f"frames must be an integer >= 2, got {frames}")
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")


def check_plan(plan: SequencePlan, frames: int) -> None:
    """Raise ``ValueError`` unless every event of ``plan`` fits in ``frames`` frames after the template frame."""
    if frames < 2:
        raise ValueError(f"frames must be >= 2, got {frames}")
    for e in plan.events:
        if e.end > frames:
            raise ValueError(f"sequence {plan.name}: event {e.kind} ends at {e.end} > {frames} frames")
        if e.start < 1:
            raise ValueError(f"sequence {plan.name}: event {e.kind} starts at frame 0, the template frame")

