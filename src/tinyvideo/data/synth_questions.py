"""Task families of the synthetic suite: each designs a scene around a chosen answer, then asks about it.

The answer comes first. A family receives which answer value to realise (a direction, a count, a
question variant) and which letter the correct option goes under; callers cycle both evenly, so
answers and letters are uniform per task and a model that reads only the text sits at chance.
Distractors come from the same answer space and, where they name objects or events, from the same
random draw as the true ones, so no wording gives the real one away.

No single frame answers `moving_direction` or `counting` (one frame holds no motion); the last
frame alone does not answer `appearance_order`, `event_order` or `collision` either. `state_change`
and `existence_end` need the right frame (first or last) but not the order of frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tinyvideo.data.synth_scenes import (
    COLOURS,
    DIRECTIONS,
    FRAMES,
    LIMIT,
    OBJECT,
    SHAPES,
    NoRoom,
    Scene,
    distinct_objects,
    free_spot,
    overlaps,
    path_box,
    where,
)

LETTERS = "ABCDE"
T = np.arange(FRAMES)


@dataclass
class Question:
    """A multiple-choice question; `evidence` is the event-log sentence that settles it."""

    task: str
    question: str
    options: list[str]
    answer: str
    evidence: str

    @property
    def answer_index(self) -> int:
        return LETTERS.index(self.answer)

    @property
    def answer_text(self) -> str:
        return self.options[self.answer_index]


@dataclass
class Clip:
    """One video of the suite and its question; `video` is relative to the suite's video root."""

    id: str
    split: str
    video: str
    scene: Scene
    question: Question


@dataclass(frozen=True)
class Family:
    """A task: how many options it offers, how many answer values are cycled, and its scene designer."""

    name: str
    n_options: int
    n_values: int
    design: Callable[[np.random.Generator, int, int], tuple[Scene, Question]]
    summary: str


def balanced(rng: np.random.Generator, k: int, n: int) -> list[int]:
    """`n` values in range(k), in shuffled blocks of one of each: counts differ by at most one."""
    blocks = [rng.permutation(k) for _ in range(-(-n // k))]
    return [int(v) for v in np.concatenate(blocks)[:n]] if blocks else []


def _ask(task, question, correct, distractors, letter, rng, evidence) -> Question:
    """Shuffle the distractors and put the correct option under `letter` (an index)."""
    others = [distractors[i] for i in rng.permutation(len(distractors))]
    options = others[:letter] + [correct] + others[letter:]
    return Question(task, question, options, LETTERS[letter], evidence)


def _line(rng, direction: str, speed: float):
    """Per-frame (x, y) of an object moving straight at `speed` px/frame, inside the frame throughout."""
    dx, dy = DIRECTIONS[direction]
    travel = speed * (FRAMES - 1)
    along = rng.uniform(1, LIMIT - 1 - travel) + speed * T
    along = along if dx + dy > 0 else LIMIT - along
    cross = np.full(FRAMES, rng.integers(1, LIMIT))
    return (along, cross) if dx else (cross, along)


def listing(names: list[str]) -> str:
    """'a, b and c': how the text joins several names."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def moving_direction(rng, value, letter):
    direction = list(DIRECTIONS)[value]
    (colour, shape), *others = distinct_objects(rng, 1 + int(rng.integers(1, 3)))
    scene = Scene()
    x, y = _line(rng, direction, rng.uniform(2.4, 3.2))
    target = scene.add(shape, colour, x, y)
    scene.log("move", 0, target, direction=direction)
    taken = [path_box(scene.tracks[target].x, scene.tracks[target].y)]
    opposite = {"left": "right", "right": "left", "up": "down", "down": "up"}[direction]
    for other_colour, other_shape in others:
        if rng.random() < 0.5:
            for _ in range(50):
                ox, oy = _line(rng, opposite, rng.uniform(2.4, 3.2))
                box = path_box(np.rint(ox).astype(int), np.rint(oy).astype(int))
                if not overlaps(box, taken):
                    taken.append(box)
                    scene.log("move", 0, scene.add(other_shape, other_colour, ox, oy), direction=opposite)
                    break
            else:
                scene.add(other_shape, other_colour, *free_spot(rng, taken))
        else:
            scene.add(other_shape, other_colour, *free_spot(rng, taken))
    track = scene.tracks[target]
    evidence = (
        f"The {colour} {shape} is at the {where(track.x[0], track.y[0])} in the first frame and at the "
        f"{where(track.x[-1], track.y[-1])} in the last frame, so it moves {direction}."
    )
    distractors = [d for d in DIRECTIONS if d != direction]
    question = f"Which direction does the {colour} {shape} move?"
    return scene, _ask("moving_direction", question, direction, distractors, letter, rng, evidence)


def appearance_order(rng, value, letter):
    objects = distinct_objects(rng, 4)
    times = int(rng.integers(1, 3)) + np.cumsum([0, *rng.integers(2, 4, size=3)])
    scene, taken = Scene(), []
    for (colour, shape), start in zip(objects, times, strict=True):
        scene.log("appear", start, scene.add(shape, colour, *free_spot(rng, taken), visible=T >= start))
    names = [f"{c} {s}" for c, s in objects]
    which = ("first", "last")[value]
    correct = names[0] if which == "first" else names[-1]
    evidence = (
        f"The {names[0]} appears first, then the {names[1]}, then the {names[2]}, and the {names[3]} appears last."
    )
    question = f"Which object appears {which}?"
    return scene, _ask(
        "appearance_order",
        question,
        f"the {correct}",
        [f"the {n}" for n in names if n != correct],
        letter,
        rng,
        evidence,
    )


def _event_phrase(colour, shape, kind, to=None) -> str:
    verb = {"appear": "appears", "disappear": "disappears", "turn": f"turns {to}"}[kind]
    return f"the {colour} {shape} {verb}"


def event_order(rng, value, letter):
    relation, anchor = [("after", 0), ("after", 1), ("before", 1), ("before", 2)][value]
    # Six events drawn alike; three happen, three are distractors, so the text cannot tell them apart.
    objects = distinct_objects(rng, 6)
    used = set(objects)
    events = []
    for colour, shape in objects:
        kind, to = str(rng.choice(["appear", "disappear", "turn"])), None
        if kind == "turn":
            free = [c for c in COLOURS if c != colour and (c, shape) not in used]
            if free:
                to = str(rng.choice(free))
                used.add((to, shape))
            else:
                kind = "appear"
        events.append((colour, shape, kind, to))
    real, fake = events[:3], events[3:]
    times = int(rng.integers(2, 5)) + np.cumsum([0, *rng.integers(3, 5, size=2)])
    scene, taken = Scene(), []
    for (colour, shape, kind, to), when in zip(real, times, strict=True):
        spot = free_spot(rng, taken)
        if kind == "turn":
            obj = scene.add(shape, colour, *spot, colour_by_frame=[colour if t < when else to for t in T])
            scene.log("turn", when, obj, **{"from": colour, "to": to})
        else:
            obj = scene.add(shape, colour, *spot, visible=(T >= when) if kind == "appear" else (T < when))
            scene.log(kind, when, obj)
    if rng.random() < 0.5:
        ((colour, shape),) = distinct_objects(rng, 1, exclude=used)
        scene.add(shape, colour, *free_spot(rng, taken))
    phrases = [_event_phrase(*e) for e in real]
    target = anchor + 1 if relation == "after" else anchor - 1
    spare = ({0, 1, 2} - {anchor, target}).pop()
    evidence = (
        f"First {phrases[0]}, then {phrases[1]}, and last {phrases[2]}. "
        f"Right {relation} {phrases[anchor]}, {phrases[target]}."
    )
    question = f"What happens right {relation} {phrases[anchor]}?"
    distractors = [phrases[spare]] + [_event_phrase(*e) for e in fake]
    return scene, _ask("event_order", question, phrases[target], distractors, letter, rng, evidence)


def counting(rng, value, letter):
    bounces = value
    span = LIMIT  # walls at 0 and LIMIT: the object touches the frame edge when it bounces
    for _ in range(10_000):
        speed = rng.uniform(max(2.0, bounces * span / (FRAMES - 1)), (bounces + 1) * span / (FRAMES - 1) + 1.0)
        unfolded = rng.uniform(0, span) + speed * T
        position = span - np.abs(np.mod(unfolded, 2 * span) - span)
        since_last = unfolded[-1] - bounces * span
        # Every bounce must show as a reversal (no stall at the wall) and the clip must not end touching a wall.
        visible = bounces == 0 or (since_last >= speed and span - unfolded[0] >= speed)
        moving = np.abs(np.diff(np.rint(position))).min() >= 2
        if int(unfolded[-1] // span) == bounces and visible and moving and span - since_last >= 3:
            break
    else:
        raise RuntimeError("could not place a bouncing object")
    direction = str(rng.choice(list(DIRECTIONS)))
    dx, dy = DIRECTIONS[direction]
    along = position if dx + dy > 0 else span - position
    cross = np.full(FRAMES, rng.integers(1, LIMIT))
    x, y = (along, cross) if dx else (cross, along)
    (colour, shape), *others = distinct_objects(rng, 1 + int(rng.random() < 0.7))
    scene = Scene()
    obj = scene.add(shape, colour, x, y)
    scene.log("move", 0, obj, direction=direction)
    far, near = {
        "right": ("right", "left"),
        "left": ("left", "right"),
        "down": ("bottom", "top"),
        "up": ("top", "bottom"),
    }[direction]
    walls = []
    for m in range(1, bounces + 1):
        walls.append(far if m % 2 else near)
        scene.log("bounce", int(np.ceil((m * span - unfolded[0]) / speed)), obj, edge=walls[-1])
    taken = [path_box(scene.tracks[obj].x, scene.tracks[obj].y)]
    for other_colour, other_shape in others:
        scene.add(other_shape, other_colour, *free_spot(rng, taken))
    name = f"{colour} {shape}"
    if bounces:
        steps = ", then ".join(f"off the {w} edge" for w in walls)
        evidence = f"Counting them: the {name} bounces {steps}. That is {bounces} bounce{'s' * (bounces > 1)}."
    else:
        evidence = f"The {name} never reaches an edge of the frame, so it bounces 0 times."
    question = f"How many times does the {name} bounce off an edge of the frame?"
    options = [str(n) for n in range(4)]
    return scene, _ask(
        "counting", question, str(bounces), [o for o in options if o != str(bounces)], letter, rng, evidence
    )


def state_change(rng, value, letter):
    shapes = [str(s) for s in rng.permutation(SHAPES)[: 1 + int(rng.integers(1, 3))]]
    before, after = (str(c) for c in rng.choice(list(COLOURS), 2, replace=False))
    when = int(rng.integers(5, 11))
    scene, taken = Scene(), []
    obj = scene.add(
        shapes[0], before, *free_spot(rng, taken), colour_by_frame=[before if t < when else after for t in T]
    )
    scene.log("turn", when, obj, **{"from": before, "to": after})
    for shape in shapes[1:]:
        scene.add(shape, str(rng.choice(list(COLOURS))), *free_spot(rng, taken))
    shape = shapes[0]
    evidence = (
        f"At the start the {shape} is {before}. Partway through it turns {after} and stays {after} until the end."
    )
    if value == 0:
        question, correct, other = f"What colour does the {shape} turn into?", after, before
    else:
        question, correct, other = f"What colour is the {shape} at the beginning of the video?", before, after
    rest = [str(c) for c in rng.permutation([c for c in COLOURS if c not in (before, after)])[:3]]
    return scene, _ask("state_change", question, correct, [other, *rest], letter, rng, evidence)


def existence_end(rng, value, letter):
    objects = distinct_objects(rng, 4)
    scene, taken = Scene(), []
    # Object 0 is the odd one out: the only survivor (value 0) or the only one gone (value 1).
    for i, (colour, shape) in enumerate(objects):
        start = int(rng.integers(1, 6)) if rng.random() < 0.4 else 0
        leaves = (i != 0) if value == 0 else (i == 0)
        end = int(rng.integers(start + 3, FRAMES - 2)) if leaves else FRAMES
        obj = scene.add(shape, colour, *free_spot(rng, taken), visible=(T >= start) & (T < end))
        if start:
            scene.log("appear", start, obj)
        if leaves:
            scene.log("disappear", end, obj)
    names = [f"{c} {s}" for c, s in objects]
    if value == 0:
        question = "Which object is still visible at the end of the video?"
        evidence = (
            f"The {listing(names[1:])} all disappear before the end, while the {names[0]} stays until the last frame."
        )
    else:
        question = "Which object is no longer visible at the end of the video?"
        others = listing(names[1:])
        evidence = f"The {names[0]} disappears before the end, while the {others} are still there in the last frame."
    return scene, _ask(
        "existence_end", question, f"the {names[0]}", [f"the {n}" for n in names[1:]], letter, rng, evidence
    )


def collision(rng, value, letter):
    del value  # one answer value: the struck object, drawn at random
    objects = distinct_objects(rng, 6)  # mover, struck object, two bystanders, two absent objects
    # At these speeds and contact frames there is always room: the mover starts at or after the near
    # edge, returns no further than it, and the struck object sits inside the far edge.
    speed, hit = rng.uniform(2.5, 3.5), int(rng.integers(6, 10))
    start = rng.uniform(max(0.0, speed * (FRAMES - 1 - 2 * hit)), LIMIT - speed * hit - OBJECT)
    along = np.where(T <= hit, start + speed * T, start + speed * (2 * hit - T))
    contact = int(np.rint(start + speed * hit))
    direction = str(rng.choice(list(DIRECTIONS)))
    dx, dy = DIRECTIONS[direction]
    struck_along = contact + OBJECT
    if dx + dy < 0:
        along, struck_along = LIMIT - np.rint(along), LIMIT - struck_along
    cross = int(rng.integers(1, LIMIT))
    struck_cross = int(np.clip(cross + rng.integers(-3, 4), 1, LIMIT - 1))
    scene = Scene()
    (mc, ms), (tc, ts) = objects[:2]
    if dx:
        mover, struck = scene.add(ms, mc, along, cross), scene.add(ts, tc, struck_along, struck_cross)
    else:
        mover, struck = scene.add(ms, mc, cross, along), scene.add(ts, tc, struck_cross, struck_along)
    scene.log("move", 0, mover, direction=direction)
    scene.log("hit", hit, mover, target=struck)
    taken = [
        path_box(scene.tracks[mover].x, scene.tracks[mover].y),
        path_box(scene.tracks[struck].x, scene.tracks[struck].y),
    ]
    for colour, shape in objects[2:4]:
        scene.add(shape, colour, *free_spot(rng, taken))
    names = [f"{c} {s}" for c, s in objects]
    evidence = f"The {names[0]} moves {direction} toward the {names[1]}, touches it and then moves back the other way."
    question = f"Why does the {names[0]} bounce back?"
    options = [f"it hits the {n}" for n in names[1:]]
    return scene, _ask("collision", question, options[0], options[1:], letter, rng, evidence)


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("moving_direction", 4, 4, moving_direction, "which way a named object moves"),
        Family("appearance_order", 4, 2, appearance_order, "which object appears first or last"),
        Family("event_order", 5, 4, event_order, "what happens right after or right before an event"),
        Family("counting", 4, 4, counting, "how many times an object bounces off the frame's edges"),
        Family("state_change", 5, 2, state_change, "an object's colour before or after it changes"),
        Family("existence_end", 4, 2, existence_end, "which object is (no longer) visible at the end"),
        Family("collision", 5, 1, collision, "which object a moving object hits"),
    )
}


def design(family: Family, rng: np.random.Generator, value: int, letter: int) -> tuple[Scene, Question]:
    """Run a family's designer, drawing again (from the same generator, so still deterministic) when crowded."""
    for _ in range(100):
        try:
            return family.design(rng, value, letter)
        except NoRoom:
            continue
    raise NoRoom(f"{family.name}: no layout found in 100 draws")


def presence_probe(scene: Scene, rng, n_options: int, letter: int) -> Question:
    """'Which of these objects appears?': a second question about any clip (benchmarks that ask several)."""
    seen = {(c, t.shape) for t in scene.tracks for c in t.colour if c is not None}
    track = scene.tracks[int(rng.integers(len(scene.tracks)))]
    name = track.name()
    absent = [f"the {c} {s}" for c, s in distinct_objects(rng, n_options - 1, exclude=seen)]
    evidence = f"The {name} is in the video; the other objects never appear."
    return _ask(
        "presence", "Which of these objects appears in the video?", f"the {name}", absent, letter, rng, evidence
    )


def count_probe(scene: Scene, rng, n_options: int, letter: int) -> Question:
    """'How many objects?': a counting question about any clip, options 1..n_options."""
    n = len(scene.tracks)
    names = listing([f"the {t.name()}" for t in scene.tracks])
    evidence = f"The video shows {names}: {n} object{'s' * (n > 1)} in all."
    options = [str(i) for i in range(1, n_options + 1)]
    return _ask(
        "object_count",
        "How many different objects appear in the video?",
        str(n),
        [o for o in options if o != str(n)],
        letter,
        rng,
        evidence,
    )
