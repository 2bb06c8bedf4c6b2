"""Reading annotation files: a JSON document, or rows from a JSON list or a JSONL file.

Every reader in the project goes through here, so that a bad file or line is reported the same way
everywhere: one line that names the file and the line (or list item) where the problem is.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tinyvideo.errors import InputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Row:
    """One row of an annotation file: where it is, for messages ("data.jsonl line 7", "data.json item 3",
    items counted from 0 as the rows' indices are), and its parsed value, or why its line is not JSON."""

    where: str
    value: object = None
    error: str | None = None


def read_text(path: str | os.PathLike) -> str:
    """A file's UTF-8 text; `InputError` naming the file when it is missing or not text."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None


def _parse(text: str, path: Path):
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        ends_early = err.pos >= len(text.rstrip()) or err.msg.startswith("Unterminated string")  # hit the end
        reason = "the file ends before the JSON does (cut short?)" if ends_early else err.msg
        raise InputError(f"{path} line {err.lineno}: not valid JSON ({reason})") from None


def _is_one_document(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def read_json(path: str | os.PathLike):
    """A whole JSON document. Raises `InputError` naming the file and the line where it stops being JSON."""
    return _parse(read_text(path), Path(path))


def read_json_rows(path: str | os.PathLike) -> list[Row]:
    """The rows of a JSON list, or of a JSONL file (one JSON value per line; blank lines skipped).

    A JSONL line that is not JSON becomes a `Row` with its `error`: whether to skip it (training) or to
    refuse the file (evaluation) is the caller's choice. A JSON list that does not parse (a file cut short)
    and a file that is one JSON object over several lines raise `InputError`.
    """
    path = Path(path)
    text = read_text(path)
    if text.lstrip().startswith("["):
        return [Row(f"{path} item {index}", value) for index, value in enumerate(_parse(text, path))]
    lines = [(number, line) for number, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if len(lines) > 1 and _is_one_document(text):
        raise InputError(f"{path}: one JSON value over {len(lines)} lines; expected a JSON list or one object per line")
    rows = []
    for number, line in lines:
        try:
            rows.append(Row(f"{path} line {number}", json.loads(line)))
        except json.JSONDecodeError as err:
            rows.append(Row(f"{path} line {number}", error=f"not valid JSON ({err.msg} at column {err.colno})"))
    return rows


def read_json_values(path: str | os.PathLike) -> list:
    """The values of a JSON list or JSONL file that must be whole; `InputError` naming the first line that is
    not JSON."""
    rows = read_json_rows(path)
    for row in rows:
        if row.error is not None:
            raise InputError(f"{row.where}: {row.error}")
    return [row.value for row in rows]


def read_usable_rows(
    path: str | os.PathLike,
    problem: Callable[[object], str | None],
    keep: Callable[[int, Row], dict],
    what: str = "rows",
    hint: str | None = None,
) -> tuple[list[dict], list[int]]:
    """The rows of a JSON list or JSONL file in which `problem` finds nothing wrong, each as `keep(index, row)`,
    and the indices of the others (a line that is not JSON included), each logged with its file, line and
    problem. Raises `InputError` ("no usable `what`", then the `hint`) when no row is usable."""
    path = Path(path)
    raw = read_json_rows(path)
    kept, dropped = [], []
    for index, row in enumerate(raw):
        why = row.error or problem(row.value)
        if why is None:
            kept.append(keep(index, row))
        else:
            logger.warning("%s skipped: %s", row.where, why)
            dropped.append(index)
    if dropped:
        logger.warning("%s: %d of %d rows skipped as malformed", path, len(dropped), len(raw))
    if not kept:
        raise InputError(f"{path}: no usable {what}" + (f" ({hint})" if hint else ""))
    return kept, dropped
