"""Video-MME without and with subtitles: 900 videos, three four-option questions each.

Annotation: the Hugging Face parquet (`videomme/test-00000-of-00001.parquet`) with `videoID` (the video's
file stem), `question_id`, `duration`, `domain`, `sub_category`, `task_type`, `question`, `options`
(already "A. ..."-prefixed) and the letter `answer`. Videos: `data/<videoID>.mp4` as the published
scripts expect, or `video/` (VLMEvalKit) or `videomme/data/` (lmms-eval), `.mp4`, `.MP4` or `.mkv`.
Prompts (docs/published-format.md 5.1): Option mode lists the options under the question; Reason mode puts an
"Options:" line between them. Frames: PyAV path B, repeats dropped.
With subtitles (`subtitle/<videoID>.srt`), each question is asked both ways and reported side by side;
the subtitled prompt starts as lmms-eval's does: "This video's subtitles are listed below: \n", the lines
showing at the sampled frames' times (one a line, `<font>` tags removed), "\n"; a video without a
subtitle file (some short and medium ones) gets "No subtitles available" instead.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from tinyvideo.answers import option_texts
from tinyvideo.eval.benchmarks.common import (
    AnnotationError,
    Question,
    Sampling,
    Subtitles,
    answer_letter,
    both_settings,
    find_one,
    first_existing,
    option_list,
    options_prompt,
    read_parquet,
    require,
)
from tinyvideo.eval.report import Scoring
from tinyvideo.eval.subtitles import Cue, SubtitleError, lines_at, read_srt

logger = logging.getLogger(__name__)

DURATIONS = ("short", "medium", "long")
SCORING = Scoring(
    breakdowns=("duration", "domain", "sub_category", "task_type"),
    orders={"duration": DURATIONS},
)
VIDEO_FOLDERS = ("data", "video", "videos", "videomme/data", ".")
SUFFIXES = (".mp4", ".MP4", ".mkv", ".webm")
FIELDS = ("videoID", "question_id", "duration", "question", "options", "answer")
SUBTITLE_FOLDERS = ("subtitle", "subtitles", "videomme/subtitle")
SUBTITLES_HEADER = "This video's subtitles are listed below: \n"
NO_SUBTITLES = "No subtitles available"


def listed(timestamps: Sequence[float], cues: Sequence[Cue]) -> str:
    """The text before the question: the subtitle lines showing at the sampled frames."""
    return SUBTITLES_HEADER + "\n".join(lines_at(timestamps, cues)) + "\n"


def none_available(timestamps: Sequence[float], cues: Sequence[Cue]) -> str:
    return SUBTITLES_HEADER + NO_SUBTITLES + "\n"


def subtitles_of(root: Path, stem: str) -> Subtitles:
    """A video's subtitle track; a missing file is the benchmark's "No subtitles available" (`load` logs how
    many videos have none), a file that cannot be read is logged and treated the same."""
    path = first_existing(root / folder / f"{stem}.srt" for folder in SUBTITLE_FOLDERS)
    try:
        return Subtitles(read_srt(path), "ok", listed)
    except SubtitleError as error:
        if error.reason != "missing":
            logger.warning("%s: its questions get %r", error, NO_SUBTITLES)
        return Subtitles((), error.reason, none_available)


def prompt(question: str, options: list[str], mode: str) -> str:
    return options_prompt(question, "\n".join(options), mode)


def load(root: Path, mode: str, duration: str = "all", subtitles: bool = False) -> list[Question]:
    if duration != "all" and duration not in DURATIONS:
        raise ValueError(f"duration must be one of {DURATIONS} or 'all', got {duration!r}")
    table = find_one(root, ["videomme/test-*.parquet", "test-*.parquet", "**/test-*.parquet"], "Video-MME parquet")
    questions = []
    tracks: dict[str, Subtitles] = {}
    for number, row in enumerate(read_parquet(table)):
        where = f"{table}, row {number}"
        require(row, FIELDS, where)
        if duration != "all" and row["duration"] != duration:
            continue
        options = option_list(row["options"], where)
        if len(options) != 4:
            raise AnnotationError(f"{where}: expected 4 options, got {len(options)}")
        stem = str(row["videoID"])
        video = first_existing(root / folder / f"{stem}{suffix}" for folder in VIDEO_FOLDERS for suffix in SUFFIXES)
        question = Question(
            id=str(row["question_id"]),
            video=str(video),
            prompt=prompt(row["question"], options, mode),
            text=str(row["question"]),
            options=option_texts(options),
            answer=answer_letter(row["answer"], option_texts(options), where),
            categories={k: str(row.get(k, "")) for k in SCORING.breakdowns},
            sampling=Sampling("unique"),
        )
        if subtitles and stem not in tracks:
            tracks[stem] = subtitles_of(root, stem)
        questions += both_settings(question, tracks[stem]) if subtitles else [question]
    missing = sum(track.status == "missing" for track in tracks.values())
    if missing:
        logger.warning(
            "%d of %d videos have no subtitle file (%s/<videoID>.srt): their questions get %r",
            missing, len(tracks), SUBTITLE_FOLDERS[0], NO_SUBTITLES,
        )
    return questions
