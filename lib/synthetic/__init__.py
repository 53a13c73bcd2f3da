"""Synthetic datasets generated on the fly: the project's embedded default data.

A deterministic generator of small MVTD / GOT-10k style video sequences with per-frame
maritime-challenge labels, so that training, tracking and evaluation can run end to end on a
CPU without downloading anything. Each sequence shows one target vessel (ship, boat, sailboat or
USV) in a distinctive colour, drawn as hull + superstructure polygons with shading and texture,
moving smoothly (constant velocity, slow curvature, bounces before it would leave the frame) over
animated water. The first frame is always a normal frame (it is the template).

Each sequence gets one to three scripted challenge events on disjoint frame ranges (see
:data:`EVENT_TYPES`; their order is the class order of the challenge head). Every event really
happens in the pixels, and the labels are computed from what was rendered:

* ``occlusion``: another (neutral-coloured) vessel crosses in front of the target; flagged on
  frames where it covers part of the target; ``cover.label`` drops, fully covered frames are absent.
* ``illu_change``: a global darkening, glare or colour-cast ramp.
* ``scale_variation``: the target approaches (or recedes) and its size changes beyond the rule.
* ``motion_blur``: the target speeds up and the frame is blurred along its motion.
* ``variance_appear``: the target turns (foreshortening, roll) and its shading changes.
* ``partial_visibility``: the target crosses the image border (``cut_by_image`` 1, box clipped).
* ``low_res``: the target shrinks below the low-resolution rule and the frame is pixelated.
* ``background_clutter``: distractor boats / buoys of the target's colour surround it.
* ``low_contrast``: the target's colours blend into the surrounding water.

The six "VLM" flags are 1 exactly on the frames where their effect is rendered. The three "CV"
flags follow the oracle rules of the maritime-label pipeline, computed on the written ground truth
and the decoded JPEG: ``scale_variation`` when sqrt(area / template area) < 0.7 or > 1.4,
``low_res`` when the shorter box side < 24 px or the area < 900 px², ``low_contrast`` when the
grey-level standard deviation in the box is below that of a 10-px ring around it divided by 1.1.
CV flags can therefore also fire during a VLM event that changes the box (e.g. a clipped box);
the label priority (first VLM flag wins) still gives that event's class.

Box convention: ``x, y, w, h`` in pixels (continuous coordinates, pixel ``i`` spans ``[i, i+1)``)
of the visible part of the target, clipped to the image; a frame where nothing of the target is
visible keeps the last visible box and has ``absence`` 1. ``cover.label`` bins the visible
fraction as GOT-10k does: 0 = none, 1 = (0, 15%], 2 = (15, 30%], ... 7 = (90, 100%), 8 = all.

Usage::

    generate_dataset("data/synthetic_maritime", sequences=40, frames=60, seed=0)
    # force the events of some sequences (0-based frames, end exclusive), e.g. in tests:
    generate_dataset(out, sequences=4, frames=30, events={"2-Boat": [Event("occlusion", 8, 20)]})
    seq = render_sequence(SequencePlan("1-Ship", "ship", (Event("low_res", 5, 15),), seed=1), 24)

The same arguments give byte-identical files with the same NumPy / OpenCV build (their float
kernels may round differently on other CPUs or versions).

Modules, each importing only those above it:

* :mod:`~lib.synthetic.labels`: event kinds, the record key order and the CV label rules (the vocabulary
  and the labelling rule are :mod:`lib.challenges`).
* :mod:`~lib.synthetic.plan`: sequence plans, scripted events, splits.
* :mod:`~lib.synthetic.drawing`: shared drawing primitives (HSV colours, smoothstep, line kernels).
* :mod:`~lib.synthetic.sprites`: vessel shapes, palettes, textured sprites, placement and compositing.
* :mod:`~lib.synthetic.water`: the animated water and sky background.
* :mod:`~lib.synthetic.render`: rendering one sequence (pose, path, event props, frames, labels).
* :mod:`~lib.synthetic.writer`: writing sequences and whole datasets to disk.
"""
from lib.synthetic.labels import (
    EVENT_TYPES,
    low_contrast_flag,
    low_res_flag,
    rms_contrast,
    scale_variation_flag,
)
from lib.synthetic.plan import OBJECT_CLASSES, Event, SequencePlan, plan_dataset, split_sizes
from lib.synthetic.render import SyntheticSequence, render_sequence
from lib.synthetic.writer import generate_dataset, write_sequence

__all__ = [
    "EVENT_TYPES", "OBJECT_CLASSES", "Event", "SequencePlan", "SyntheticSequence",
    "generate_dataset", "low_contrast_flag", "low_res_flag", "plan_dataset", "render_sequence",
    "rms_contrast", "scale_variation_flag", "split_sizes", "write_sequence",
]
