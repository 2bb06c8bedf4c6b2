"""Video-MME (without subtitles): 900 videos, three four-option questions each.

Annotation: the Hugging Face parquet (`videomme/test-00000-of-00001.parquet`) with `videoID` (the video's
file stem), `question_id`, `duration`, `domain`, `sub_category`, `task_type`, `question`, `options`
(already "A. ..."-prefixed) and the letter `answer`. Videos: `data/<videoID>.mp4` as the published
scripts expect, or `video/` (VLMEvalKit) or `videomme/data/` (lmms-eval), `.mp4`, `.MP4` or `.mkv`.
Prompts (compat-spec 5.1): Option mode lists the options under the question; Reason mode puts an
"Options:" line between them. Frames: PyAV path B, repeats dropped.
"""

from __future__ import annotations

from pathlib import Path

from tinyvideo.eval.answers import option_texts
from tinyvideo.eval.benchmarks.common import (
    AnnotationError,
    Question,
    Sampling,
    answer_letter,
    find_one,
    first_existing,
    option_list,
    options_prompt,
    read_parquet,
    require,
)
from tinyvideo.eval.report import Scoring

DURATIONS = ("short", "medium", "long")
SCORING = Scoring(
    breakdowns=("duration", "domain", "sub_category", "task_type"),
    orders={"duration": DURATIONS},
)
VIDEO_FOLDERS = ("data", "video", "videos", "videomme/data", ".")
SUFFIXES = (".mp4", ".MP4", ".mkv", ".webm")
FIELDS = ("videoID", "question_id", "duration", "question", "options", "answer")


def prompt(question: str, options: list[str], mode: str) -> str:
    return options_prompt(question, "\n".join(options), mode)


def load(root: Path, mode: str, duration: str = "all") -> list[Question]:
    if duration != "all" and duration not in DURATIONS:
        raise ValueError(f"duration must be one of {DURATIONS} or 'all', got {duration!r}")
    table = find_one(root, ["videomme/test-*.parquet", "test-*.parquet", "**/test-*.parquet"], "Video-MME parquet")
    questions = []
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
        questions.append(
            Question(
                id=str(row["question_id"]),
                video=str(video),
                prompt=prompt(row["question"], options, mode),
                text=str(row["question"]),
                options=option_texts(options),
                answer=answer_letter(row["answer"], option_texts(options), where),
                categories={k: str(row.get(k, "")) for k in SCORING.breakdowns},
                sampling=Sampling("unique"),
            )
        )
    return questions
