"""What a benchmark adapter hands the harness, and the small pieces every adapter needs.

An adapter reads a benchmark's own files in their native layout and turns each row into a
:class:`Question`: the prompt text exactly as the published evaluation wrote it for the chosen mode,
the options, the gold letter, the fields the leaderboard groups scores by, and the benchmark's frame
rule. Everything else (decoding, batching, answering, scoring) is the harness's job, so adapters stay
a page long and share nothing but this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from tinyvideo.answers import LETTERS
from tinyvideo.errors import InputError
from tinyvideo.eval.subtitles import Cue
from tinyvideo.prompts import question_with_instruction
from tinyvideo.video import FrameSampling, segment_centre_indices, uniform_indices

# Frame rules of the published evaluations (docs/published-format.md 2.2):
#   "uniform": linspace over the whole video, repeats kept (pytorchvideo path A; MMVU, NExT-QA, synth);
#   "unique": the same linspace with repeats dropped, so a short video gives fewer frames (PyAV path B;
#             Video-MME, MLVU);
#   "segment_centre": centres of equal segments inside `bound` (MVBench, path C);
#   "stride": every int(int(duration * fps) / N)-th frame from the first, `duration` being the end of
#             `bound` as the annotation gives it (LongVideoBench's loader).
FRAME_RULES = ("uniform", "unique", "segment_centre", "stride")
WITH_SUBTITLES = "w/ subs"
WITHOUT_SUBTITLES = "w/o subs"


class AnnotationError(InputError):
    """A benchmark file or row that does not have the shape its benchmark publishes."""


@dataclass(frozen=True)
class Sampling:
    """Which frames a question's video gives: the benchmark's rule and, for MVBench and LongVideoBench, a
    time window (seconds)."""

    rule: str = "uniform"
    bound: tuple[float, float] | None = None

    def __post_init__(self):
        if self.rule not in FRAME_RULES:
            raise ValueError(f"unknown frame rule {self.rule!r}; expected one of {FRAME_RULES}")

    def chooser(self, folder: bool, frames: int | None, fps: float | None = None, max_frames: int | None = None):
        """The index rule `(total_frames, fps) -> indices` that `read_frames` applies to the video.

        The frame count is the `FrameSampling(frames, fps, max_frames)`'s for the whole video, as the
        published scripts count it. In MVBench's rule a JPEG-frame folder
        numbers its files from 1 (docs/published-format.md 2.2 C); the indices returned are 0-based either way.
        A video whose timestamps cannot tell frames apart has no rate (None): the rules that count in
        seconds (`fps`, MVBench's segments) raise `ValueError` for it.
        """
        sampling = FrameSampling(frames, fps, max_frames)

        def choose(total: int, rate: float | None) -> np.ndarray:
            if rate is None and (sampling.fps is not None or self.rule in ("segment_centre", "stride")):
                raise ValueError("the video's timestamps cannot tell its frames apart, so its frame rate is unknown")
            count = sampling.count(total, rate)
            if self.rule == "segment_centre":
                if folder:
                    return segment_centre_indices(self.bound, rate, total, first_idx=1, num=count) - 1
                return segment_centre_indices(self.bound, rate, total - 1, first_idx=0, num=count)
            if self.rule == "stride":
                step = int(int(self.bound[1] * rate) / count)
                return np.minimum(np.arange(count) * step, total - 1)
            indices = uniform_indices(total, count)
            return np.unique(indices) if self.rule == "unique" else indices

        return choose


@dataclass(frozen=True)
class Subtitles:
    """A question's subtitle track and how its benchmark places the lines in the prompt.

    `status` is "ok" or why there are no lines (the file is missing, empty, unreadable...); `place`
    makes the text that goes before the question's prompt from the sampled frames' times (seconds) and
    the lines, or is None to ask without subtitles (LongVideoBench with a bad file).
    """

    cues: tuple[Cue, ...] = ()
    status: str = "ok"
    place: Callable[[Sequence[float], Sequence[Cue]], str] | None = None


@dataclass(frozen=True)
class Question:
    """One multiple-choice question, ready to prompt.

    `prompt` is the user text (question, options, mode instruction) without the chat template;
    `text` is the question alone, as asked (Cloze mode asks it without the options); `options` maps each letter to its text; `categories` holds the grouping fields of the
    benchmark's leaderboard (for example duration, domain and task type for Video-MME). A question asked
    with `subtitles` gets its final prompt once its frames' times are known (`at_frames`).
    """

    id: str
    video: str
    prompt: str
    text: str
    options: dict[str, str]
    answer: str
    categories: dict[str, str] = field(default_factory=dict)
    sampling: Sampling = Sampling()
    subtitles: Subtitles | None = None

    def __post_init__(self):
        if self.answer not in self.options:
            raise AnnotationError(f"question {self.id}: answer {self.answer!r} is not one of {sorted(self.options)}")

    def at_frames(self, timestamps: Sequence[float] | None) -> tuple[Question, str | None]:
        """The question as asked with frames sampled at `timestamps` (seconds; None when the video's
        timestamps are unknown), and the state of its subtitles (None for a question without any)."""
        if self.subtitles is None:
            return self, None
        if self.subtitles.place is None:
            return self, self.subtitles.status
        if timestamps is None:
            return self, "no frame times"
        placed = self.subtitles.place(list(timestamps), self.subtitles.cues)
        return replace(self, prompt=placed + self.prompt), self.subtitles.status


def both_settings(question: Question, subtitles: Subtitles) -> list[Question]:
    """The question without and with its subtitles, for a run that reports the two side by side: the
    second's id ends in "/subs", and each carries its setting in the `subtitles` category."""
    return [
        replace(question, categories={**question.categories, "subtitles": WITHOUT_SUBTITLES}),
        replace(
            question,
            id=f"{question.id}/subs",
            categories={**question.categories, "subtitles": WITH_SUBTITLES},
            subtitles=subtitles,
        ),
    ]


def option_list(value, where: str) -> list[str]:
    """A row's options as a list of texts; `AnnotationError` for anything else: a string (which would
    split into one option per character), an empty list, a list of lists, more options than letters."""
    if not isinstance(value, (list, tuple)) or not value:
        raise AnnotationError(f"{where}: options must be a non-empty list of texts, got {value!r:.80}")
    if not all(isinstance(text, (str, int, float)) and not isinstance(text, bool) for text in value):
        raise AnnotationError(f"{where}: every option must be a text, got {value!r:.80}")
    if len(value) > len(LETTERS):
        raise AnnotationError(f"{where}: {len(value)} options are more than there are letters")
    return [str(text) for text in value]


def lettered(value, where: str) -> dict[str, str]:
    """Options A, B, C, ... for a row's list of option texts (checked by `option_list`)."""
    return {LETTERS[i]: text for i, text in enumerate(option_list(value, where))}


def answer_letter(answer, options: dict[str, str], where: str) -> str:
    """The row's answer as one of its option letters; `AnnotationError` naming the row when it is none of them."""
    letter = str(answer).strip()
    if letter not in options:
        raise AnnotationError(f"{where}: answer {answer!r} is not one of the option letters {', '.join(options)}")
    return letter


def options_prompt(question: str, option_lines: str, mode: str) -> str:
    """The question, its option lines and the mode instruction, the layout of Video-MME's published prompts.

    Option mode (TinyLLaVA-Video) puts the options right under the question; Reason mode
    (TinyLLaVA-Video-R1, and its training data) puts an "Options:" line between them.
    """
    header = "\nOptions:\n" if mode == "reason" else "\n"
    return question_with_instruction(question + header + option_lines, mode)


def letter_of(answer_text: str, options: dict[str, str], where: str) -> str:
    """The letter whose option text is the given answer (MVBench and MLVU store answers as text)."""
    for letter, text in options.items():
        if text == answer_text:
            return letter
    raise AnnotationError(f"{where}: answer {answer_text!r} is not among the candidates {list(options.values())}")


def first_existing(candidates: Iterable[Path]) -> Path:
    """The first candidate path that exists, else the first one (reported later as a missing video)."""
    candidates = list(candidates)
    return next((path for path in candidates if path.exists()), candidates[0])


def read_parquet(path: Path) -> list[dict]:
    import pandas as pd

    return [{k: _plain(v) for k, v in row.items()} for row in pd.read_parquet(path).to_dict(orient="records")]


def _plain(value):
    """numpy arrays and scalars from parquet as Python lists and numbers."""
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def require(row: dict, keys: Sequence[str], where: str) -> None:
    """`AnnotationError` naming the row unless it is an object with every one of `keys`."""
    if not isinstance(row, dict):
        raise AnnotationError(f"{where}: expected a JSON object, got {row!r:.80}")
    missing = [key for key in keys if key not in row]
    if missing:
        raise AnnotationError(f"{where}: missing field(s) {missing}; the row has {sorted(row)}")


def find_one(root: Path, patterns: Sequence[str], what: str) -> Path:
    """The annotation file under `root` matching the first pattern that matches anything."""
    for pattern in patterns:
        found = sorted(root.glob(pattern))
        if found:
            return found[0]
    raise AnnotationError(f"{root}: no {what} found (looked for {', '.join(patterns)})")
