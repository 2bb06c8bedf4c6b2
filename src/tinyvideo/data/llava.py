"""LLaVA-style supervised data: a json list (or jsonl) of rows with a `video` or `image` path and
`conversations` (docs/published-format.md 3.7), turned into model inputs inside the DataLoader workers.

Rows are checked for shape when the file is read and kept in a `datasets.Dataset` (Arrow memory, which
forked workers share without copying). A row that still fails later is replaced by the next good row
(`tinyvideo.data.row_dataset`); the indices of such rows travel with the batch (`skipped_rows`).
"""

from __future__ import annotations

import os
from pathlib import Path

import datasets

from tinyvideo.data.row_dataset import RowDataset
from tinyvideo.processing import preprocess_frames
from tinyvideo.rows import Row, read_usable_rows
from tinyvideo.video import FrameSampling, load_video


def _row_problem(row) -> str | None:
    """Why a row cannot be a training example, or None."""
    if not isinstance(row, dict):
        return "not a json object"
    turns = row.get("conversations")
    if not isinstance(turns, list) or not turns:
        return "no 'conversations' list"
    for turn in turns:
        if not (isinstance(turn, dict) and isinstance(turn.get("from"), str) and isinstance(turn.get("value"), str)):
            return "a turn is not {'from': str, 'value': str}"
    media = [row.get(key) for key in ("video", "image") if row.get(key) is not None]
    if len(media) > 1:
        return "has both 'video' and 'image'"
    if media and not isinstance(media[0], str):
        return "'video'/'image' is not a path"
    return None


def read_rows(path: str | os.PathLike) -> tuple[datasets.Dataset, list[int]]:
    """The well-formed rows of a json list or jsonl file as a Dataset (`row`, `where`, `media`,
    `conversations`), and the indices of the malformed rows (a line that is not JSON included), which
    are logged with their file and line and left out.

    Only the fields training uses are kept, normalised, so rows with extra or inconsistently typed
    fields (ids that are sometimes numbers) still load. Raises `InputError` when no row is usable.
    """
    kept, dropped = read_usable_rows(path, _row_problem, _training_fields)
    return datasets.Dataset.from_list(kept), dropped


def _training_fields(index: int, row: Row) -> dict:
    return {
        "row": index,
        "where": row.where,
        "media": row.value.get("video") or row.value.get("image"),
        "conversations": [{"from": t["from"], "value": t["value"]} for t in row.value["conversations"]],
    }


class LlavaDataset(RowDataset):
    """Conversations about videos -> {input_ids, labels, pixel_values [T,3,S,S] or None, row, skipped}.

    `sampling` carries `num_frames` / `fps` / `max_frames` as a training config does (`FrameSampling.from_config`);
    `template` is one of `processing.TEMPLATES`: `chat` (the model's chat format, answers supervised) or
    `pretrain` (captions supervised), for example; `rows` is what
    `read_rows(data_path)` returned, when the caller has read the file already.
    """

    def __init__(self, data_path, video_root, processor, sampling, template: str = "chat", rows=None):
        super().__init__(*(rows or read_rows(data_path)), data_path, video_root if video_root is not None else Path(data_path).parent)
        self.processor = processor
        self.sampling = FrameSampling.from_config(sampling)
        self.template = template

    def encode(self, row: dict) -> dict:
        pixels = None
        if row["media"] is not None:
            frames = load_video(self.video_root / row["media"], self.sampling)
            pixels = preprocess_frames(frames, self.processor.frame_transform)
        num_frames = None if pixels is None else len(pixels)
        example = self.processor.encode_conversation(row["conversations"], num_frames, self.template)
        if all(label < 0 for label in example["labels"]):
            raise ValueError("nothing to learn: every label is masked (answer cut off by model_max_length?)")
        return {**example, "pixel_values": pixels, "row": row["row"]}


class LlavaCollator:
    """Pads token ids and labels (right side); the videos' frames one after another, with their counts."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, examples: list[dict]) -> dict:
        batch = self.processor.pad([{"input_ids": e["input_ids"], "labels": e["labels"]} for e in examples])
        videos = [e["pixel_values"] for e in examples if e["pixel_values"] is not None]
        if videos:
            batch["pixel_values_videos"], batch["video_num_frames"] = self.processor.preprocess_videos(videos)
        batch["skipped_rows"] = [row for e in examples for row in e["skipped"]]
        return batch
