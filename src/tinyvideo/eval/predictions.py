"""The predictions file: one JSON line per answered question, appended and flushed batch by batch, so a
rerun resumes where a crash left off (a line cut off by the crash is dropped)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from tinyvideo.eval.benchmarks.common import Question
from tinyvideo.eval.report import ANSWERED
from tinyvideo.files import write_text

logger = logging.getLogger(__name__)


def record_of(question: Question, status: str, frames: dict, subtitles: str | None = None, **answer) -> dict:
    """One line of the predictions file; `subtitles` (the state of the question's subtitles) only when it has some."""
    letter = answer.get("letter")
    return {
        "id": question.id,
        "status": status,
        "answer": question.answer,
        "letter": letter,
        "correct": letter == question.answer,
        "method": answer.get("method"),
        "response": answer.get("response"),
        "new_tokens": answer.get("new_tokens"),
        "categories": question.categories,
        "video": question.video,
        "frames": frames,
        "prompt": question.prompt,
        **({"subtitles": subtitles} if subtitles is not None else {}),
        **({"scores": answer["scores"]} if "scores" in answer else {}),
    }


def read_predictions(path: Path) -> list[dict]:
    """The records of a predictions file; a line cut off by a crash is skipped."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    return _parse(lines, path)


def _parse(lines: Sequence[str], path: Path) -> list[dict]:
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            logger.warning("%s: skipping an incomplete line (the run that wrote it was interrupted)", path)
    return records


def resume(path: Path) -> set[str]:
    """Ids already answered in `path`; the file is rewritten without cut-off lines, repeats and unread videos."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    kept: dict[str, dict] = {}
    for record in _parse(lines, path):
        if record.get("status") in ANSWERED:
            kept.setdefault(record["id"], record)
    if len(kept) != len(lines):
        write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept.values()))
    return set(kept)


def append(path: Path, records: Iterable[dict]) -> None:
    """Append and flush to disk: what is written survives a kill of the process."""
    with open(path, "a", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def predictions_path(output: Path, shard: tuple[int, int] | None) -> Path:
    return output / ("predictions.jsonl" if shard is None else f"predictions-{shard[0]}-of-{shard[1]}.jsonl")
