"""LLaVA-style training data: row checks, published label masking, frame sampling, bad rows skipped."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from tinyvideo.config import IGNORE_INDEX
from tinyvideo.data.llava import LlavaCollator, LlavaDataset, read_rows
from tinyvideo.processing import END_OF_TURN
from tinyvideo.scratch import build_tiny
from tinyvideo.video import write_video

COLOURS = {"red": (255, 0, 0), "blue": (0, 0, 255)}


def write_toy_data(root: Path, count: int = 8, frames: int = 8) -> Path:
    """`count` short clips of a red or blue square and a QA json about its colour; returns the json path."""
    (root / "videos").mkdir(parents=True, exist_ok=True)
    rows = []
    for index in range(count):
        colour = list(COLOURS)[index % 2]
        clip = np.zeros((frames, 32, 32, 3), np.uint8)
        clip[:, 8:24, 8:24] = COLOURS[colour]
        write_video(root / "videos" / f"{index}.mp4", clip, fps=8, preset="ultrafast")
        question = {"from": "human", "value": "<image>\nWhat colour is the square?"}
        rows.append({"id": index, "video": f"{index}.mp4", "conversations": [question, {"from": "gpt", "value": colour}]})
    path = root / "qa.json"
    path.write_text(json.dumps(rows))
    return path


@pytest.fixture(scope="module")
def processor():
    return build_tiny(["What colour is the square? red blue"], num_queries=8, group=4)[1]


def sampling(num_frames=4, fps=None, max_frames=None):
    return SimpleNamespace(num_frames=num_frames, fps=fps, max_frames=max_frames)


def test_malformed_rows_are_dropped_and_counted(tmp_path):
    good = {"video": "a.mp4", "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]}
    rows = [
        {**good, "id": 1},
        {**good, "id": "two"},  # ids of mixed types still load
        {"video": "a.mp4"},
        {"video": "a.mp4", "conversations": "not a list"},
        {"video": "a.mp4", "conversations": [{"from": "human"}]},
        {**good, "image": "b.png"},
        "not an object",
    ]
    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    dataset, dropped = read_rows(path)
    assert dropped == [2, 3, 4, 5, 6]
    assert dataset["row"] == [0, 1]
    assert dataset[0]["media"] == "a.mp4"


def test_labels_follow_the_published_masks(tmp_path, processor):
    data = write_toy_data(tmp_path, count=2)
    finetune = LlavaDataset(data, tmp_path / "videos", processor, sampling(num_frames=4))
    example = finetune[0]
    supervised = [t for t, label in zip(example["input_ids"], example["labels"]) if label != IGNORE_INDEX]
    assert processor.tokenizer.decode(supervised) == " red" + END_OF_TURN
    assert example["pixel_values"].shape == (4, 3, 32, 32)
    assert example["input_ids"].count(processor.video_token_id) == processor.num_visual_tokens(4)

    pretrain = LlavaDataset(data, tmp_path / "videos", processor, sampling(num_frames=4), template="pretrain")
    example = pretrain[1]
    supervised = [t for t, label in zip(example["input_ids"], example["labels"]) if label != IGNORE_INDEX]
    assert processor.tokenizer.decode(supervised) == "blue\n"  # the human text is dropped, no eos
    assert example["input_ids"][: processor.num_visual_tokens(4)] == [processor.video_token_id] * processor.num_visual_tokens(4)


def test_fps_sampling_and_still_images(tmp_path, processor):
    data = write_toy_data(tmp_path, count=1, frames=16)  # 2 s at 8 fps
    by_fps = LlavaDataset(data, tmp_path / "videos", processor, sampling(fps=2.0, max_frames=3))
    assert len(by_fps[0]["pixel_values"]) == 3  # 4 frames at 2 fps, capped at 3

    Image.fromarray(np.full((20, 30, 3), 200, np.uint8)).save(tmp_path / "still.png")
    row = {"image": "still.png", "conversations": [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]}
    (tmp_path / "image.json").write_text(json.dumps([row]))
    images = LlavaDataset(tmp_path / "image.json", tmp_path, processor, sampling(num_frames=16))
    assert len(images[0]["pixel_values"]) == 1  # a still image is one frame, not 16 copies


def test_unusable_rows_are_replaced_by_the_next_and_reported(tmp_path, processor):
    data = write_toy_data(tmp_path, count=3)
    (tmp_path / "videos" / "1.mp4").write_bytes(b"not a video")
    rows = json.loads(data.read_text())
    rows.insert(0, {**rows[0], "video": "missing.mp4"})
    rows.append({**rows[0], "conversations": [{"from": "gpt", "value": "answer first"}, {"from": "human", "value": "q"}]})
    data.write_text(json.dumps(rows))
    dataset = LlavaDataset(data, tmp_path / "videos", processor, sampling(num_frames=4))
    items = [dataset[i] for i in range(len(dataset))]
    # a missing video, a corrupt one, a conversation without a human question: each gives the next good row
    assert [item["row"] for item in items] == [1, 1, 3, 3, 1]
    assert [item["skipped"] for item in items] == [[0], [], [2], [], [4, 0]]

    batch = LlavaCollator(processor)(items[:3])
    assert batch["skipped_rows"] == [0, 2]
    assert batch["pixel_values_videos"].shape == (3 * 4, 3, 32, 32)
    assert batch["video_num_frames"].tolist() == [4, 4, 4]
    widths = batch["attention_mask"].sum(1)
    assert (batch["labels"][torch.arange(3), widths - 1] == processor.tokenizer.eos_token_id).all()


def test_an_image_too_large_to_decode_is_skipped_like_any_unusable_row(tmp_path, processor, monkeypatch, caplog):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow's limit, lowered: 64 x 48 becomes a bomb
    Image.new("RGB", (64, 48)).save(tmp_path / "bomb.png")
    Image.new("RGB", (20, 20)).save(tmp_path / "small.png")
    turns = [{"from": "human", "value": "<image>\nq"}, {"from": "gpt", "value": "a"}]
    (tmp_path / "rows.json").write_text(json.dumps([{"image": "bomb.png", "conversations": turns},
                                                    {"image": "small.png", "conversations": turns}]))
    dataset = LlavaDataset(tmp_path / "rows.json", tmp_path, processor, sampling())
    assert dataset[0]["row"] == 1 and dataset[0]["skipped"] == [0]
    assert "rows.json item 0 skipped" in caplog.text and "DecompressionBombError" in caplog.text
