"""Training rows that each become one example, made inside the DataLoader workers.

A row that fails there (a missing or corrupt video, a conversation the template rejects, a sequence too
long) is logged with its file and line and replaced by the next good row, so every batch keeps its size,
a resumed run sees the same batches, and the run goes on. The indices of the replaced rows travel with
the example (`skipped`), for the trainer to count (`tinyvideo.train.runs.SkippedRowsTally`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from tinyvideo.errors import InputError
from tinyvideo.video import VideoDecodeError

logger = logging.getLogger(__name__)

MAX_CONSECUTIVE_BAD_ROWS = 100


class RowDataset(torch.utils.data.Dataset):
    """`rows` are dicts with their index in the file (`row`) and their place for messages (`where`), as
    `tinyvideo.rows.read_usable_rows` keeps them; `malformed_rows` are the indices it dropped; `source` is
    the file; the rows' videos are relative to `video_root`. Subclasses define `encode(row)`."""

    def __init__(self, rows, malformed_rows: list[int], source: str | Path, video_root: str | Path):
        self.rows, self.malformed_rows = rows, malformed_rows
        self.source = str(source)
        self.video_root = Path(video_root)

    def __len__(self) -> int:
        return len(self.rows)

    def encode(self, row: dict) -> dict:
        """One row as an example; raises `VideoDecodeError`, `ValueError` or `OSError` for a row that cannot be used."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict:
        skipped = []
        for attempt in range(min(len(self.rows), MAX_CONSECUTIVE_BAD_ROWS)):
            row = self.rows[(index + attempt) % len(self.rows)]
            try:
                return {**self.encode(row), "skipped": skipped}
            except (VideoDecodeError, ValueError, OSError) as err:
                logger.warning("%s skipped: %s", row["where"], err)
                skipped.append(row["row"])
        raise InputError(
            f"{self.source}: {len(skipped)} rows in a row from {index} are unusable (is video_root {self.video_root} right?)"
        )
