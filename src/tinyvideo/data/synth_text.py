"""Language written from a scene's event log: pretraining captions and cold-start reasoning.

Both are derived, never hand-written, so a caption or a chain of thought can only say what the frames
show. A caption follows the order a viewer would: what is there at the start, what changes, what is left
at the end; the reasoning states the answer's text, the one observation that settles it, and the text again.
"""

from __future__ import annotations

from tinyvideo.data.synth_questions import Question, listing
from tinyvideo.data.synth_scenes import FRAMES, Scene, where

CAPTION_PROMPTS = (
    "Describe the video.",
    "What happens in this video?",
    "Describe what the objects do in the video.",
    "Give a short description of the video.",
)


def shown_in(scene: Scene, frame: int) -> list[str]:
    """'a blue circle at the top left', for every object visible in `frame`."""
    return [f"a {t.colour[frame]} {t.shape} at the {where(t.x[frame], t.y[frame])}" for t in scene.tracks if t.visible(frame)]


def opening(scene: Scene) -> str:
    """What the first frame shows."""
    shown = shown_in(scene, 0)
    if not shown:
        return "The video starts with an empty background."
    return f"At the start the video shows {listing(shown)}."


def frame_caption(scene: Scene, frame: int) -> str:
    """What one frame shows, for pretraining a vision tower on frame-caption pairs."""
    shown = shown_in(scene, frame)
    return f"A frame with {listing(shown)}." if shown else "An empty frame."


def happenings(scene: Scene) -> list[str]:
    """One sentence per logged event, in the order they happen."""
    sentences = []
    for event in scene.events:
        track, frame = scene.tracks[event["object"]], event["frame"]
        kind = event["kind"]
        if kind == "appear":
            sentences.append(f"A {track.name(frame)} appears at the {where(track.x[frame], track.y[frame])}.")
        elif kind == "disappear":
            sentences.append(f"The {track.name(frame - 1)} disappears.")
        elif kind == "turn":
            sentences.append(f"The {event['from']} {track.shape} turns {event['to']}.")
        elif kind == "move":
            sentences.append(f"The {track.name(frame)} moves {event['direction']}.")
        elif kind == "bounce":
            sentences.append(f"The {track.name(frame)} bounces off the {event['edge']} edge.")
        elif kind == "hit":
            target = scene.tracks[event["target"]]
            sentences.append(f"The {track.name(frame)} hits the {target.name(frame)} and bounces back.")
    return sentences


def ending(scene: Scene) -> str:
    """What the last frame shows."""
    last = FRAMES - 1
    shown = [f"the {t.name(last)}" for t in scene.tracks if t.visible(last)]
    if not shown:
        return "At the end the background is empty."
    return f"At the end {listing(shown)} {'is' if len(shown) == 1 else 'are'} visible."


def caption(scene: Scene) -> str:
    return " ".join([opening(scene), *happenings(scene), ending(scene)])


def reasoning(question: Question, second_look: bool) -> str:
    """`<think>...</think> <answer>X</answer>` for a cold-start example: "The answer is <option text>.", the
    observation that settles it (after "Let me check again:" when `second_look`), the answer's text once more,
    its letter only in the answer tag.

    The answer's text comes first because the fine-tuned model names it best there: answering directly it is
    right 46-49% of the time, after evidence it wrote itself 34%. Its letter comes last, right after the text
    again, because a small model learns to name the letter of a stated answer (the 2026-12-01 base model 90.7%) long
    before it names the letter of one it has to work out (after the demo's fine-tuning then: Option 20.4%, chance
    22.9%); the shipped base model, after its questions step, names it 42.1% of the time, so the demo's cold start
    replays stated-answer rows beside these (`tinyvideo.demo.plan.COLDSTART_WITH_REPLAY`).
    Demo suite seed 0, cold starts from the same fine-tuned model, Reason mode on the 280 test questions: these
    worked answers 35.0% alone, 37.5-43.2% with fine-tuning rows replayed beside them (two draws of the rows); the
    evidence first, then "The answer is up.": 32.9% alone, 29.6% with the replay; a description of the clip first
    and "So the answer is A (up)." last, the letter before its text: 21.8%.
    """
    check = "Let me check again: " if second_look else ""
    evidence = question.evidence[0].lower() + question.evidence[1:] if second_look else question.evidence
    text = question.answer_text
    return f"<think>The answer is {text}. {check}{evidence} So the answer is {text}.</think> <answer>{question.answer}</answer>"
