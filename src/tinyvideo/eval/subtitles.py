"""Subtitle tracks and the lines a prompt gets at the sampled frames.

Two benchmarks give subtitles, each its own way (docs/published-format.md B.1):
- LongVideoBench: one JSON list per video in one of two schemas, `{"start": "HH:MM:SS.fff", "end": ...,
  "line": ...}` or `{"timestamp": [s, e], "text": ...}` with `e` null for "until the end"; both on a
  clock that starts `starting_timestamp_for_subtitles` seconds before the video. Its prompt interleaves
  frames and lines (:func:`interleave`).
- Video-MME: `.srt` files whose text is wrapped in `<font ...>` tags; its prompt lists the lines showing
  at the sampled frames' times (:func:`lines_at`).
Times here are seconds on the video's clock (its first frame at 0).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tinyvideo.errors import InputError

_CLOCK = re.compile(r"^\s*(\d+):([0-5]?\d):(\d+(?:[.,]\d*)?)\s*$")
_SRT_TIMES = re.compile(r"(\d+:\d+:\d+[.,]\d+)\s*-->\s*(\d+:\d+:\d+[.,]\d+)")
_TAG = re.compile(r"<[^>]+>")


class SubtitleError(InputError):
    """A subtitle file that is missing, empty, in no known schema, or with a line that ends before it starts;
    `reason` says which in a word or two ("missing", "empty", "unknown schema", "end before start")."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Cue:
    """One subtitle line: shown from `start` to `end` (seconds on the video's clock)."""

    start: float
    end: float
    text: str


def clock_seconds(text: str) -> float:
    """'HH:MM:SS.fff' (or SRT's 'HH:MM:SS,fff') in seconds; `ValueError` for anything else."""
    match = _CLOCK.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not an HH:MM:SS.fff time")
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds.replace(",", "."))


def _checked(cues: list[Cue], path: Path) -> tuple[Cue, ...]:
    if not cues:
        raise SubtitleError(f"{path}: the subtitle file holds no lines", "empty")
    for number, cue in enumerate(cues):
        if cue.end < cue.start:
            raise SubtitleError(
                f"{path}, line {number}: it ends ({cue.end:g} s) before it starts ({cue.start:g} s)", "end before start"
            )
    return tuple(cues)


def read_longvideobench(path: str | Path, offset: float, duration: float) -> tuple[Cue, ...]:
    """A LongVideoBench subtitle file (either schema) on the video's clock: `offset` (the row's
    `starting_timestamp_for_subtitles`) is taken off every time, and a null end is the video's end,
    `duration`. (The benchmark's loader takes the offset off that end too, which puts it before the
    line's start whenever the offset is larger than the video; it also reads an integer end as null.)
    Raises `SubtitleError`."""
    path = Path(path)
    if not path.is_file():
        raise SubtitleError(f"{path}: no such subtitle file", "missing")
    try:
        text = path.read_text(encoding="utf-8")
        items = json.loads(text) if text.strip() else []
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SubtitleError(f"{path}: not JSON ({error})", "unknown schema") from None
    if not isinstance(items, list):
        raise SubtitleError(
            f"{path}: expected a JSON list of subtitle lines, got {type(items).__name__}", "unknown schema"
        )
    cues = []
    for number, item in enumerate(items):
        try:
            if isinstance(item, dict) and {"start", "end", "line"} <= item.keys():
                start, end = clock_seconds(item["start"]) - offset, clock_seconds(item["end"]) - offset
                text = item["line"]
            elif isinstance(item, dict) and {"timestamp", "text"} <= item.keys() and len(item["timestamp"]) == 2:
                first, last = item["timestamp"]
                start = float(first) - offset
                end = duration if last is None else float(last) - offset
                text = item["text"]
            else:
                raise ValueError("in neither schema ({start, end, line} or {timestamp: [s, e], text})")
            if not isinstance(text, str):
                raise ValueError(f"the line's text is {type(text).__name__}, not a string")
        except (TypeError, ValueError) as error:
            raise SubtitleError(f"{path}, line {number}: {error}", "unknown schema") from None
        cues.append(Cue(start, end, text))
    return _checked(cues, path)


def read_srt(path: str | Path) -> tuple[Cue, ...]:
    """An `.srt` file's lines, formatting tags (`<font ...>`) removed. Raises `SubtitleError`."""
    path = Path(path)
    if not path.is_file():
        raise SubtitleError(f"{path}: no such subtitle file", "missing")
    text = path.read_text(encoding="utf-8-sig", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    cues = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.split("\n")
        for index, line in enumerate(lines):
            match = _SRT_TIMES.search(line)
            if match:
                words = " ".join(_TAG.sub("", rest).strip() for rest in lines[index + 1 :]).strip()
                cues.append(Cue(clock_seconds(match.group(1)), clock_seconds(match.group(2)), words))
                break
    if text.strip() and not cues:
        raise SubtitleError(f"{path}: no 'HH:MM:SS,fff --> HH:MM:SS,fff' line: not an SRT file", "unknown schema")
    return _checked(cues, path)


def interleave(timestamps: Sequence[float], cues: Sequence[Cue]) -> list[int | str]:
    """LongVideoBench's interleaving: frame indices and subtitle texts in prompt order.

    Each line, in file order, goes after the last frame whose time is at or before its midpoint, and
    only if a frame falls strictly inside it (a line shorter than a second counts as the second
    around its midpoint); the frames left over come last.
    """
    order: list[int | str] = []
    shown = 0
    for cue in cues:
        middle = (cue.start + cue.end) / 2
        while shown < len(timestamps) and timestamps[shown] <= middle:
            order.append(shown)
            shown += 1
        start, end = (cue.start, cue.end) if cue.end - cue.start >= 1 else (middle - 0.5, middle + 0.5)
        if any(start < t < end for t in timestamps):
            order.append(cue.text)
    return order + list(range(shown, len(timestamps)))


def lines_at(timestamps: Sequence[float], cues: Sequence[Cue]) -> list[str]:
    """Video-MME's subtitle lines: each line showing at some sampled frame's time (start <= t < end), once,
    in the order they are shown."""
    return [cue.text for cue in cues if cue.text and any(cue.start <= t < cue.end for t in timestamps)]
