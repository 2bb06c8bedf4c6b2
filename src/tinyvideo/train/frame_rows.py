"""Rows that each name a video, decoded for training one at a time; a bad row is replaced by the next good
one, so batches keep their size."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from tinyvideo.errors import InputError
from tinyvideo.video import VideoDecodeError, read_frames

logger = logging.getLogger(__name__)

MAX_CONSECUTIVE_BAD_ROWS = 100


class FrameRowsDataset(torch.utils.data.Dataset):
    """Rows that each name a video; an item is one row's `encode`d frames. A row whose video fails is logged
    and replaced by the next good one (its index travels in `skipped`), so batches keep their size."""

    def __init__(self, rows: list[dict], malformed_rows: list[int], video_root: str | Path, image_size: int):
        self.rows, self.malformed_rows = rows, malformed_rows
        self.video_root = Path(video_root)
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.rows)

    def encode(self, row: dict) -> dict:
        """One row's training inputs; raises `VideoDecodeError` / `ValueError` / `OSError` for a bad row."""
        raise NotImplementedError

    def __getitem__(self, i: int) -> dict:
        skipped = []
        for offset in range(min(len(self.rows), MAX_CONSECUTIVE_BAD_ROWS)):
            row = self.rows[(i + offset) % len(self.rows)]
            try:
                return {**self.encode(row), "skipped": skipped}
            except (VideoDecodeError, ValueError, OSError) as err:
                logger.warning("%s skipped: %s", row["where"], err)
                skipped.append(row["row"])
        raise InputError(f"{len(skipped)} rows in a row failed to decode, from row {i}: is video_root ({self.video_root}) right?")


def read_exact_frames(path: Path, indices: list[int]):
    """The frames at `indices`, or `VideoDecodeError` when any of them cannot be decoded: another frame in
    its place would pair that frame with the wrong target."""
    frames, info = read_frames(path, indices=indices)
    if info.damaged:
        lost = [t for t, i in zip(info.targets, info.indices) if t != i] + list(info.missing)
        raise VideoDecodeError(f"{path}: frames {lost} cannot be decoded")
    return frames
