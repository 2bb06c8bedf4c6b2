"""A contact sheet of the suite: one row per task, a sample clip's frames and its question, options, answer.

It is the quickest way for a person to check that the tasks are visible at the resolution the model
gets, and that the text matches what the frames show.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from tinyvideo.data.synth_questions import LETTERS, Clip
from tinyvideo.data.synth_scenes import FRAMES, SIZE, render
from tinyvideo.files import atomic_write

ZOOM = 2
GAP = 4
TEXT_WIDTH = 560


def write_preview(path: Path, clips: list[Clip]) -> Path:
    """Draw the first clip of each task (in the order given) and save a PNG."""
    samples: dict[str, Clip] = {}
    for clip in clips:
        samples.setdefault(clip.question.task, clip)
    font = ImageFont.load_default(size=14)
    bold = ImageFont.load_default(size=16)
    cell = SIZE * ZOOM + GAP
    strip = FRAMES * cell
    row_height = cell + 2 * GAP + 20
    sheet = Image.new("RGB", (strip + TEXT_WIDTH + 2 * GAP, row_height * len(samples) + GAP), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (task, clip) in enumerate(samples.items()):
        top = r * row_height + GAP
        draw.text((GAP, top), f"{task}   ({clip.video})", fill="black", font=bold)
        for t, frame in enumerate(render(clip.scene)):
            image = Image.fromarray(frame).resize((SIZE * ZOOM, SIZE * ZOOM), Image.NEAREST)
            sheet.paste(image, (GAP + t * cell, top + 22))
        q = clip.question
        lines = textwrap.wrap(q.question, 70)
        lines += [("* " if LETTERS[i] == q.answer else "  ") + f"{LETTERS[i]}. {o}" for i, o in enumerate(q.options)]
        lines.append(f"answer: {q.answer}")
        draw.multiline_text((strip + 2 * GAP, top + 22), "\n".join(lines), fill="black", font=font, spacing=2)
    return atomic_write(Path(path), lambda tmp: sheet.save(tmp, format="PNG"))
