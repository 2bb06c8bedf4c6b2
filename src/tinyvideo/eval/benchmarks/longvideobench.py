"""LongVideoBench validation: 1,337 questions with four or five options on videos of 8 s to an hour.

Two packagings are read (docs/published-format.md B.1):
- `lvb_val.json`: items `{id, video_id, video_path, subtitle_path, duration, duration_group, question,
  candidates, correct_choice (an index), question_category, topic_category, level, position,
  starting_timestamp_for_subtitles}`, videos in `videos/<video_path>`, subtitles in
  `subtitles/<subtitle_path>`;
- the Hugging Face parquet re-pack (`validation-00000-of-00001.parquet`, lmms-eval's): the same fields
  with `option0` ... `option4` instead of `candidates`, a question with four options padded with "N/A".
Scores: overall, by duration group (15, 60, 600, 3600 s) and by the 17 question categories.
Prompt (TinyLLaVA-Video's `eval_lvbench.py`, the benchmark's own layout less its "Question: "): the
question, "A. text" lines, the instruction; Reason mode puts "Options:" between, as for Video-MME.
With subtitles (`eval_lvbench_withsub.py`): "subtitles:", the frames and lines interleaved as the
benchmark defines it ("[image]" for a frame, the lines as they are), "\\nquestion: <image>\\n", then the
prompt; the chat template moves the placeholder to the front, as the published code does. A subtitle
file that cannot be read is logged and its questions are asked without subtitles. Frames: the
benchmark loader's stride over the annotation's duration; a frame's time is its presentation time
(the loader divides its index by the average rate: the same for a constant-rate video).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from tinyvideo.answers import format_options
from tinyvideo.eval.benchmarks.common import (
    AnnotationError,
    Question,
    Sampling,
    Subtitles,
    both_settings,
    find_one,
    first_existing,
    lettered,
    options_prompt,
    read_parquet,
    require,
)
from tinyvideo.eval.report import Scoring
from tinyvideo.eval.subtitles import Cue, SubtitleError, interleave, read_longvideobench
from tinyvideo.processing import PLACEHOLDER
from tinyvideo.rows import read_json

logger = logging.getLogger(__name__)

DURATION_GROUPS = ("15", "60", "600", "3600")
QUESTION_CATEGORIES = (
    "S2E", "S2O", "S2A", "E2O", "O2E", "T2E", "T2O", "T2A", "E3E", "O3O", "SSS", "SOS", "SAA", "T3E", "T3O", "TOS", "TAA",
)  # fmt: skip
SCORING = Scoring(
    breakdowns=("duration_group", "question_category"),
    orders={"duration_group": DURATION_GROUPS, "question_category": QUESTION_CATEGORIES},
)
FIELDS = ("id", "video_path", "duration", "duration_group", "question", "correct_choice", "question_category")
SUBTITLE_FIELDS = ("subtitle_path", "starting_timestamp_for_subtitles")
PADDING = "N/A"
FRAME_MARK = "[image]"


def interleaved(timestamps: Sequence[float], cues: Sequence[Cue]) -> str:
    """The text before the question with subtitles: the frames as "[image]" marks among the lines."""
    parts = (FRAME_MARK if isinstance(part, int) else part for part in interleave(timestamps, cues))
    return "subtitles:" + "".join(parts) + "\nquestion: " + PLACEHOLDER + "\n"


def parquet_options(row: dict, where: str) -> list[str]:
    """`option0` ... `option4` less the "N/A" (or null) padding at the end; `AnnotationError` when none is left."""
    options = [row.get(f"option{i}") for i in range(5)]
    while options and (options[-1] is None or str(options[-1]).strip() == PADDING):
        options.pop()
    if not options:
        raise AnnotationError(f"{where}: every option (option0 ... option4) is {PADDING!r}: the question cannot be asked")
    return options


def correct_letter(value, options: dict[str, str], where: str) -> str:
    """The letter of `correct_choice`, an index into the options."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or not 0 <= value < len(options):
        raise AnnotationError(f"{where}: correct_choice {value!r} is not an option index 0-{len(options) - 1}")
    return list(options)[int(value)]


def seconds(row: dict, key: str, where: str) -> float:
    """A row's time field in seconds; `AnnotationError` naming the row for anything but a number."""
    value = row[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value == value:
        raise AnnotationError(f"{where}: {key} {value!r} is not a number of seconds")
    return float(value)


def _group(value) -> str:
    """A duration group as its leaderboard names it: "600", whether the file has 600, 600.0 or "600"."""
    return str(int(value)) if isinstance(value, (int, float)) and value == int(value) else str(value)


class SubtitleFiles:
    """Reads each subtitle file once; a file that cannot be read is logged once and gives no lines."""

    def __init__(self, root: Path):
        self.root = root
        self.read: dict[tuple, Subtitles] = {}

    def __call__(self, row: dict, where: str) -> Subtitles:
        require(row, SUBTITLE_FIELDS, where)
        name = str(row["subtitle_path"])
        path = first_existing([self.root / "subtitles" / name, self.root / name])
        key = (path, seconds(row, "starting_timestamp_for_subtitles", where), seconds(row, "duration", where))
        if key not in self.read:
            try:
                cues = read_longvideobench(*key)
                self.read[key] = Subtitles(cues, "ok", interleaved)
            except SubtitleError as error:
                logger.warning("%s: its questions are asked without subtitles", error)
                self.read[key] = Subtitles((), error.reason, None)
        return self.read[key]


def load(root: Path, mode: str, subtitles: bool = False) -> list[Question]:
    annotations = root / "lvb_val.json"
    if annotations.is_file():
        rows = [(row, f"{annotations}, item {n}") for n, row in enumerate(read_json(annotations))]
    else:
        table = find_one(root, ["validation-*.parquet", "**/validation-*.parquet"], "LongVideoBench lvb_val.json or validation parquet")
        rows = [(row, f"{table}, row {n}") for n, row in enumerate(read_parquet(table))]
    subtitle_files = SubtitleFiles(root)
    questions = []
    for row, where in rows:
        require(row, FIELDS + (() if annotations.is_file() else ("option0",)), where)
        options = lettered(row["candidates"] if "candidates" in row else parquet_options(row, where), where)
        video = first_existing([root / "videos" / str(row["video_path"]), root / str(row["video_path"])])
        question = Question(
            id=str(row["id"]),
            video=str(video),
            prompt=options_prompt(str(row["question"]), format_options(options), mode),
            text=str(row["question"]),
            options=options,
            answer=correct_letter(row["correct_choice"], options, where),
            categories={"duration_group": _group(row["duration_group"]), "question_category": str(row["question_category"])},
            sampling=Sampling("stride", (0.0, seconds(row, "duration", where))),
        )
        questions += both_settings(question, subtitle_files(row, where)) if subtitles else [question]
    return questions
