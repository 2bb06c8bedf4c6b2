"""NExT-QA, multiple choice: five options, questions typed causal (CW, CH), temporal (TN, TC) or descriptive.

Annotation: the official CSV (`test.csv` or `val.csv`; columns `video, frame_count, width, height,
question, answer, qid, type, a0..a4`) or lmms-eval's parquet (`MC/test-*.parquet`, same columns).
`video` is a numeric id and `answer` an index 0-4. Videos: `NExTVideo/<folder>/<video>.mp4`
through `map_vid_vidorID.json`, or flattened to `NExTVideo/<video>.mp4`. TP is scored as TN, and the
official groups are reported: Acc_C = CW+CH, Acc_T = TN+TC, Acc_D = DC+DL+DO. TinyLLaVA published
no NExT-QA evaluation, so the prompt follows lmms-eval's ("A. a0" lines under the question) in
Option mode and the R1 training data's "Options:" line in Reason mode. Frames: uniform, repeats kept.
"""

from __future__ import annotations

import csv
from pathlib import Path

from tinyvideo.answers import format_options
from tinyvideo.eval.benchmarks.common import (
    AnnotationError,
    Question,
    Sampling,
    find_one,
    first_existing,
    lettered,
    options_prompt,
    read_parquet,
    require,
)
from tinyvideo.eval.report import Scoring
from tinyvideo.rows import read_json

TYPES = ("CW", "CH", "TN", "TC", "DC", "DL", "DO")
MERGED = {"TP": "TN"}
SCORING = Scoring(
    breakdowns=("type",),
    groups={"type": {"Acc_C": ("CW", "CH"), "Acc_T": ("TN", "TC"), "Acc_D": ("DC", "DL", "DO")}},
    orders={"type": TYPES},
)
FIELDS = ("video", "question", "answer", "qid", "type", "a0", "a1", "a2", "a3", "a4")


def prompt(question: str, options: dict[str, str], mode: str) -> str:
    return options_prompt(question, format_options(options, "dot"), mode)


def read_rows(root: Path, split: str) -> tuple[list[dict], Path]:
    table = find_one(root, [f"{split}.csv", f"**/{split}.csv", f"MC/{split}-*.parquet", f"**/{split}-*.parquet"], f"NExT-QA {split} annotations")
    if table.suffix == ".csv":
        with open(table, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f)), table
    return read_parquet(table), table


def load(root: Path, mode: str, split: str = "test") -> list[Question]:
    rows, table = read_rows(root, split)
    mapping_file = root / "map_vid_vidorID.json"
    folders = read_json(mapping_file) if mapping_file.is_file() else {}
    questions = []
    for number, row in enumerate(rows):
        where = f"{table}, row {number}"
        require(row, FIELDS, where)
        video_id = str(row["video"])
        options = lettered([row[f"a{i}"] for i in range(5)], where)
        index = str(row["answer"]).strip()
        if not index.isdigit() or not 0 <= int(index) < len(options):
            raise AnnotationError(f"{where}: answer {row['answer']!r} is not an option index 0-4")
        index = int(index)
        kind = MERGED.get(str(row["type"]), str(row["type"]))
        relative = folders.get(video_id, video_id)
        video = first_existing(
            [root / "NExTVideo" / f"{relative}.mp4", root / "NExTVideo" / f"{video_id}.mp4", root / "videos" / f"{video_id}.mp4"]
        )
        questions.append(
            Question(
                id=f"{video_id}_{row['qid']}",
                video=str(video),
                prompt=prompt(str(row["question"]), options, mode),
                text=str(row["question"]),
                options=options,
                answer="ABCDE"[index],
                categories={"type": kind},
                sampling=Sampling("uniform"),
            )
        )
    return questions
