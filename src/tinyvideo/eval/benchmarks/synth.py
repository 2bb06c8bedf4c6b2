"""The project's synthetic video-reasoning suite, one split (test by default).

Annotation: the split's jsonl named in the suite's `suite.json` (`annotations/<split>.jsonl`), or
any jsonl given directly, one record per clip: `id, video, task, question, options` (a list of
texts) and the letter `answer`. `video` is relative to the suite's video root (`videos/`).
Prompts are the suite's training prompts: Option mode as its QA data ("A. text" lines under the
question), Reason mode as its GRPO `problem` (an "Options:" line), with the instruction on a new
line as every published evaluation does. Frames: uniform, repeats kept.
"""

from __future__ import annotations

from pathlib import Path

from tinyvideo.answers import format_options
from tinyvideo.eval.benchmarks.common import (
    AnnotationError,
    Question,
    Sampling,
    answer_letter,
    first_existing,
    lettered,
    options_prompt,
    require,
)
from tinyvideo.eval.report import Scoring
from tinyvideo.rows import read_json, read_json_rows

SCORING = Scoring(breakdowns=("task",))


def sources(data: Path, split: str) -> tuple[Path, list[Path]]:
    """The split's annotation file and the folders its video paths may be relative to.

    A generated suite says where both are in its `suite.json`; without one, `annotations/<split>.jsonl`
    or `<split>.jsonl` is looked for, or `data` is the jsonl itself.
    """
    manifest = data / "suite.json"
    if manifest.is_file():
        suite = read_json(manifest)
        try:
            return data / suite["splits"][split]["annotations"], [data / suite["video_root"]]
        except KeyError:
            raise AnnotationError(f"{manifest}: no split {split!r} with annotations and no video_root") from None
    if data.is_file():
        return data, [data.parent, data.parent.parent, data.parent.parent / "videos"]
    for candidate in (data / "annotations" / f"{split}.jsonl", data / f"{split}.jsonl"):
        if candidate.is_file():
            return candidate, [data / "videos", data, candidate.parent]
    raise AnnotationError(f"{data}: no suite.json, annotations/{split}.jsonl or {split}.jsonl for the synthetic suite")


def load(data: Path, mode: str, split: str = "test") -> list[Question]:
    path, roots = sources(data, split)
    questions = []
    for record in read_json_rows(path):
        where, row = record.where, record.value
        if record.error is not None:
            raise AnnotationError(f"{where}: {record.error}")
        require(row, ("id", "video", "task", "question", "options", "answer"), where)
        options = lettered(row["options"], where)
        questions.append(
            Question(
                id=str(row["id"]),
                video=str(first_existing(root / row["video"] for root in roots)),
                prompt=options_prompt(str(row["question"]), format_options(options, "dot"), mode),
                text=str(row["question"]),
                options=options,
                answer=answer_letter(row["answer"], options, where),
                categories={"task": str(row["task"])},
                sampling=Sampling("uniform"),
            )
        )
    return questions
