"""The challenge vocabulary and the one labelling rule (lib/challenges.py)."""
from __future__ import annotations

import zlib

import pytest

from lib.challenges import (CLASS_NAMES, CV_FLAGS, FLAG_CLASS, IGNORE_INDEX, NORMAL, NUM_CLASSES, VLM_PRIORITY,
                            Challenge, flagged_classes, primary_label)


def test_ids_names_and_flags_agree() -> None:
    assert NUM_CLASSES == 10 and len(Challenge) == 10 and IGNORE_INDEX == -100
    assert [CLASS_NAMES[c] for c in (Challenge.OCCLUSION, Challenge.LOW_CONTRAST_OBJECT, Challenge.NORMAL)] == [
        "Occlusion", "Low Contrast Object", "Normal"]
    assert NORMAL == 9 and NORMAL not in FLAG_CLASS.values()
    assert FLAG_CLASS == {"occlusion": 0, "illu_change": 1, "scale_variation": 2, "motion_blur": 3,
                          "variance_appear": 4, "partial_visibility": 5, "low_res": 6, "background_clutter": 7,
                          "low_contrast": 8}
    assert all(type(c) is int for _, c in VLM_PRIORITY + CV_FLAGS)


def test_vlm_flags_win_in_priority_order() -> None:
    flags = {"low_res": 1, "background_clutter": 1, "motion_blur": 1, "occlusion": 0}
    assert primary_label(flags, 0, "s", 1) == Challenge.MOTION_BLUR
    assert primary_label({**flags, "occlusion": True}, 0, "s", 1) == Challenge.OCCLUSION


def test_no_flag_is_normal_and_one_cv_flag_is_its_class() -> None:
    assert primary_label({}, 0, "s", 1) == NORMAL
    assert primary_label({"low_contrast": 1, "occlusion": 0}, 0, "s", 1) == Challenge.LOW_CONTRAST_OBJECT


@pytest.mark.parametrize("seed,sequence,frame", [(0, "1-Ship", 1), (42, "1-Ship", 7), (42, "Boat_3", "00000007.jpg")])
def test_several_cv_flags_pick_by_a_stable_hash(seed: int, sequence: str, frame: object) -> None:
    options = [Challenge.SCALE_VARIATION, Challenge.LOW_RESOLUTION, Challenge.LOW_CONTRAST_OBJECT]
    expected = options[zlib.crc32(f"{seed}\x1f{sequence}\x1f{frame}".encode()) % 3]
    assert primary_label({"scale_variation": 1, "low_res": 1, "low_contrast": 1}, seed, sequence, frame) == expected


def test_the_tie_break_depends_on_the_frame() -> None:
    flags = {"scale_variation": 1, "low_res": 1}
    picks = {primary_label(flags, 42, "s", frame) for frame in range(1, 40)}
    assert picks == {Challenge.SCALE_VARIATION, Challenge.LOW_RESOLUTION}


def test_flagged_classes_lists_every_flag_or_normal() -> None:
    assert flagged_classes({}) == [NORMAL]
    assert flagged_classes({"low_res": 1, "occlusion": 1, "illu_change": 0}) == [Challenge.OCCLUSION,
                                                                                   Challenge.LOW_RESOLUTION]
