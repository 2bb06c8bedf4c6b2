"""MLVU dev, multiple choice: seven tasks, four options, 3-minute to 2-hour videos; M-Avg.

Two packagings are read:
- the official one: `json/<n>_<task>.json` (`1_plotQA` ... `7_topic_reasoning`; items `video`,
  `question`, `candidates`, `answer` as text, `question_type`) with the videos in
  `video/<n>_<task>/<video>`;
- the Hugging Face re-pack used by lmms-eval (`sy1998/MLVU_dev`): a parquet with `video_name`,
  `question`, `candidates`, `answer` (text or letter), `task_type` and `question_id`.
Task names differ between the two (the file is "needle", the type "findNeedle" or "needleQA");
both map to the official file names. The same file name can occur in two task folders, so a video
is known by its full path. Prompt (docs/published-format.md 5.3): the question, then "(A) c" lines, in both
modes. Frames: PyAV path B, repeats dropped. M-Avg is the mean of the task accuracies (the official
scorer and lmms-eval), not the pooled accuracy VLMEvalKit reports.
"""

from __future__ import annotations

from pathlib import Path

from tinyvideo.answers import format_options
from tinyvideo.eval.benchmarks.common import (
    AnnotationError,
    Question,
    Sampling,
    find_one,
    first_existing,
    letter_of,
    lettered,
    read_parquet,
    require,
)
from tinyvideo.eval.report import Scoring
from tinyvideo.prompts import question_with_instruction
from tinyvideo.rows import read_json

FILES = {
    "plotQA": "1_plotQA",
    "needle": "2_needle",
    "ego": "3_ego",
    "count": "4_count",
    "order": "5_order",
    "anomaly_reco": "6_anomaly_reco",
    "topic_reasoning": "7_topic_reasoning",
}
ALIASES = {"findNeedle": "needle", "needleQA": "needle"}
SCORING = Scoring(breakdowns=("task",), headline="M-Avg", macro_over="task", orders={"task": tuple(FILES)})


def prompt(question: str, options: dict[str, str], mode: str) -> str:
    return question_with_instruction((question + "\n" + format_options(options, "paren")).rstrip(), mode)


def bare_question(question: str, options: dict[str, str]) -> str:
    """The question without option lines it may already carry (the re-pack is said to include them)."""
    if not options:
        return question
    letter, text = next(iter(options.items()))
    starts = {f"({letter}) {text}", f"{letter}. {text}", f"{letter}) {text}"}
    lines = question.split("\n")
    for index, line in enumerate(lines):
        if line.strip() in starts:
            kept = lines[:index]
            if kept and kept[-1].strip().rstrip(":").lower() in ("options", "option"):
                kept = kept[:-1]
            return "\n".join(kept).rstrip()
    return question


def _answer(answer, options: dict[str, str], where: str) -> str:
    answer = str(answer)
    if answer in options.values():
        return letter_of(answer, options, where)
    if answer.strip() in options:
        return answer.strip()
    raise AnnotationError(f"{where}: answer {answer!r} is neither a candidate nor an option letter")


def _question(root: Path, task: str, row: dict, name: str, question_id: str, where: str, mode: str) -> Question:
    options = lettered(row["candidates"], where)
    folders = [f"video/{FILES[task]}", f"MLVU/video/{FILES[task]}", FILES[task]] if task in FILES else []
    video = first_existing([root / folder / name for folder in folders] + [root / name, root / "video" / name])
    text = bare_question(str(row["question"]), options)
    return Question(
        id=question_id,
        video=str(video),
        prompt=prompt(text, options, mode),
        text=text,
        options=options,
        answer=_answer(row["answer"], options, where),
        categories={"task": task},
        sampling=Sampling("unique"),
    )


def load(root: Path, mode: str) -> list[Question]:
    official = {task: root / "json" / f"{stem}.json" for task, stem in FILES.items()}
    official = {task: path for task, path in official.items() if path.is_file()}
    questions = []
    for task, path in official.items():
        for number, row in enumerate(read_json(path)):
            where = f"{path}, item {number}"
            require(row, ("video", "question", "candidates", "answer"), where)
            questions.append(_question(root, task, row, str(row["video"]), f"{task}/{number}", where, mode))
    if official:
        return questions
    table = find_one(root, ["data/test-*.parquet", "**/test-*.parquet", "**/*.parquet"], "MLVU annotations (json/<n>_<task>.json or the parquet re-pack)")
    counts: dict[str, int] = {}
    for number, row in enumerate(read_parquet(table)):
        where = f"{table}, row {number}"
        require(row, ("video_name", "question", "candidates", "answer", "task_type"), where)
        task = ALIASES.get(str(row["task_type"]), str(row["task_type"]))
        counts[task] = counts.get(task, 0) + 1
        question_id = str(row.get("question_id") or f"{task}/{counts[task] - 1}")
        questions.append(_question(root, task, row, str(row["video_name"]), question_id, where, mode))
    return questions
