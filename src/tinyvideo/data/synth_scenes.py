"""Scenes of the synthetic suite: coloured shapes on a plain background, their per-frame tracks and an event log.

A scene is pure data (tracks plus events), so the same object serves three readers: the renderer that
draws the frames, the question families that decide what is true, and the text writers that turn the
event log into captions and reasoning. Keeping the truth in one place is what makes every answer
checkable against the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FRAMES = 16
SIZE = 64
FPS = 8.0
OBJECT = 14  # object side in pixels: big enough for a 64 px vision tower to see
LIMIT = SIZE - OBJECT  # largest top-left coordinate that keeps an object inside the frame
BACKGROUND = (30, 30, 30)
# Six well-separated hues, so a colour survives H.264's 4:2:0 chroma subsampling without ambiguity.
COLOURS = {
    "red": (230, 40, 40),
    "yellow": (235, 215, 30),
    "green": (40, 190, 60),
    "cyan": (40, 205, 215),
    "blue": (50, 90, 240),
    "purple": (175, 65, 230),
}
SHAPES = ("circle", "square", "triangle", "cross")
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


class NoRoom(RuntimeError):
    """Raised when a random layout leaves no space for another object; the designer draws again."""


def _shape_masks(n: int) -> dict[str, np.ndarray]:
    """Boolean n x n masks, drawn once; the renderer only copies them."""
    yy, xx = np.mgrid[0:n, 0:n] + 0.5
    c = n / 2
    arm = n / 6
    return {
        "circle": (xx - c) ** 2 + (yy - c) ** 2 <= c * c,
        "square": np.ones((n, n), bool),
        "triangle": np.abs(xx - c) <= yy / 2,
        "cross": (np.abs(xx - c) <= arm) | (np.abs(yy - c) <= arm),
    }


MASKS = _shape_masks(OBJECT)


@dataclass
class Track:
    """One object: its shape and, per frame, top-left position and colour (None while not visible)."""

    shape: str
    x: list[int]
    y: list[int]
    colour: list[str | None]

    def name(self, frame: int | None = None) -> str:
        """How the text refers to the object: colour and shape, colour at `frame` (default: first seen)."""
        colours = [c for c in self.colour if c is not None]
        colour = self.colour[frame] if frame is not None and self.colour[frame] else colours[0]
        return f"{colour} {self.shape}"

    def visible(self, frame: int) -> bool:
        return self.colour[frame] is not None


@dataclass
class Scene:
    """Tracks plus the ground-truth event log (frame-ordered dicts: kind, frame, object index, details)."""

    tracks: list[Track] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)

    def add(self, shape: str, colour: str, x, y, visible=None, colour_by_frame=None) -> int:
        """Add an object; `x`, `y` are a number (static) or one value per frame. Returns its index."""
        xs = np.broadcast_to(np.rint(np.asarray(x, float)), (FRAMES,)).astype(int).tolist()
        ys = np.broadcast_to(np.rint(np.asarray(y, float)), (FRAMES,)).astype(int).tolist()
        colours = list(colour_by_frame) if colour_by_frame is not None else [colour] * FRAMES
        if visible is not None:
            colours = [c if v else None for c, v in zip(colours, visible, strict=True)]
        self.tracks.append(Track(shape, xs, ys, colours))
        return len(self.tracks) - 1

    def log(self, kind: str, frame: int, obj: int, **details) -> None:
        self.events.append({"kind": kind, "frame": int(frame), "object": obj, **details})
        self.events.sort(key=lambda e: e["frame"])

    def to_dict(self) -> dict:
        return {
            "objects": [{"shape": t.shape, "x": t.x, "y": t.y, "colour": t.colour} for t in self.tracks],
            "events": self.events,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Scene:
        tracks = [Track(o["shape"], o["x"], o["y"], o["colour"]) for o in data["objects"]]
        return cls(tracks, list(data["events"]))


def render(scene: Scene) -> np.ndarray:
    """Draw the scene as uint8 frames [FRAMES, SIZE, SIZE, 3]; later objects are drawn on top.

    Designers keep every object inside the frame (top-left corners in [0, LIMIT]), so no clipping."""
    frames = np.empty((FRAMES, SIZE, SIZE, 3), np.uint8)
    frames[:] = BACKGROUND
    for track in scene.tracks:
        mask = MASKS[track.shape]
        for t, colour in enumerate(track.colour):
            if colour is not None:
                x, y = track.x[t], track.y[t]
                frames[t, y : y + OBJECT, x : x + OBJECT][mask] = COLOURS[colour]
    return frames


def where(x: int, y: int) -> str:
    """Coarse place words for an object's centre ("top left", "centre"), as captions and reasoning use them."""
    cx, cy = x + OBJECT // 2, y + OBJECT // 2
    vertical = "top" if cy < 24 else "bottom" if cy > 40 else ""
    horizontal = "left" if cx < 24 else "right" if cx > 40 else ""
    return " ".join(p for p in (vertical, horizontal) if p) or "centre"


def overlaps(box, boxes, gap: int = 3) -> bool:
    """Whether `box` (x0, y0, x1, y1) comes within `gap` px of any of `boxes`."""
    return any(
        not (box[0] >= b[2] + gap or b[0] >= box[2] + gap or box[1] >= b[3] + gap or b[1] >= box[3] + gap)
        for b in boxes
    )


def free_spot(rng: np.random.Generator, taken: list[tuple[int, int, int, int]]) -> tuple[int, int]:
    """A top-left corner whose object box stays clear of every box in `taken` (then reserved)."""
    for _ in range(300):
        x, y = (int(v) for v in rng.integers(1, LIMIT, size=2))
        box = (x, y, x + OBJECT, y + OBJECT)
        if not overlaps(box, taken):
            taken.append(box)
            return x, y
    raise NoRoom("no free spot left in the frame")


def path_box(track_x, track_y) -> tuple[int, int, int, int]:
    """The box a moving object sweeps over the whole clip."""
    return min(track_x), min(track_y), max(track_x) + OBJECT, max(track_y) + OBJECT


def distinct_objects(rng: np.random.Generator, n: int, exclude=()) -> list[tuple[str, str]]:
    """`n` different (colour, shape) pairs, none in `exclude`: every object keeps a unique name."""
    pool = [(c, s) for c in COLOURS for s in SHAPES if (c, s) not in set(exclude)]
    picks = rng.choice(len(pool), size=n, replace=False)
    return [pool[i] for i in picks]
