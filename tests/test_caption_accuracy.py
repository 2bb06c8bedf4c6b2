"""`benchmarks/caption_accuracy.py`'s scoring: a caption is scored against the clip it describes."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import caption_accuracy  # noqa: E402

from tinyvideo.data.synth import design_split
from tinyvideo.data.synth_text import caption, happenings, opening
from tinyvideo.data.synth_questions import listing


def test_the_true_caption_scores_everything_and_another_clips_less():
    scenes = [clip.scene for clip in design_split(0, "test", 8)]
    shown = [s for s in scenes if opening(s).startswith("At the start")]
    for scene in shown:
        counts = caption_accuracy.caption_scores(caption(scene), scene)
        assert counts["objects_named"] == counts["objects"] >= 1 and counts["openings_exact"] == 1
        assert counts["events_written"] == counts["events"] == len(happenings(scene))
    mixed = [caption_accuracy.caption_scores(caption(other), scene) for scene, other in zip(shown, shown[1:] + shown[:1])]
    score = caption_accuracy.summary(mixed)
    assert score["openings_exact"] == 0 and score["objects_named"] < 50 and score["events_written"] < 50


def test_objects_are_counted_from_the_opening_only_and_in_any_order():
    scene = next(c.scene for c in design_split(0, "test", 8) if len(opening(c.scene).split(", ")) >= 2)
    first = opening(scene)
    names = caption_accuracy.OBJECT_NAME.findall(first)
    reordered = "At the start the video shows " + listing([f"a {n} at the top" for n in reversed(names)]) + "."
    counts = caption_accuracy.caption_scores(reordered + " " + " ".join(happenings(scene)), scene)
    assert counts["objects_named"] == len(names) and counts["openings_exact"] == 0
    only_later = caption_accuracy.caption_scores("The video starts with an empty background. " + first, scene)
    assert only_later["objects_named"] == 0
