"""`tinyvideo train vision`: the contrastive loss, a run that learns and is resumable, and a tiny model that
sees through the tower it wrote."""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, SiglipVisionModel

from media import corrupt_frames, make_indexed_video
from safetensors.torch import load_file
from tinyvideo.cli import main
from tinyvideo.demo.plan import SCRATCH_RECIPES as RECIPES
from tinyvideo.processing import preprocess_frames
from tinyvideo.scratch import build_tiny
from tinyvideo.train.common import load_config, load_model_and_processor
from tinyvideo.train.runs import FINAL_MODEL, last_complete_checkpoint
from tinyvideo.train.sft import SFTConfig
from tinyvideo.train.vision import FrameCaptionDataset, FrameCaptionModel, VisionConfig, contrastive_loss, read_rows, train
from tinyvideo.train.vision_attributes import tower_config
from tinyvideo.video import read_frames, write_video

COLOURS = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 240), "yellow": (235, 215, 40)}


def test_contrastive_loss_both_ways_with_repeated_captions_as_shared_positives():
    logits = torch.tensor([[2.0, 0.0, 1.0], [0.5, 1.0, 0.0], [1.0, 0.0, 3.0]])
    ids = torch.tensor([[5, 6], [7, 8], [5, 6]])  # captions 0 and 2 are the same text
    targets = torch.tensor([[0.5, 0.0, 0.5], [0.0, 1.0, 0.0], [0.5, 0.0, 0.5]])
    by_hand = 0.0
    for matrix in (logits, logits.T):
        log_p = matrix - matrix.logsumexp(-1, keepdim=True)
        by_hand += -(targets * log_p).sum(-1).mean() / 2
    assert contrastive_loss(logits, ids).item() == pytest.approx(by_hand.item(), abs=1e-6)
    distinct = torch.tensor([[1], [2], [3]])
    assert contrastive_loss(torch.eye(3) * 50, distinct).item() < 1e-6
    assert contrastive_loss(torch.zeros(3, 3), distinct).item() == pytest.approx(math.log(3), abs=1e-6)


@pytest.fixture(scope="module")
def frames_data(tmp_path_factory) -> Path:
    """Clips of one coloured square on black; each frame's caption names its colour. One row is malformed,
    one names a missing video."""
    root = tmp_path_factory.mktemp("frames")
    rows = []
    for i in range(24):
        colour = list(COLOURS)[i % len(COLOURS)]
        clip = np.zeros((4, 32, 32, 3), np.uint8)
        clip[:, 8:24, 8:24] = COLOURS[colour]
        write_video(root / f"{i}.mp4", clip, fps=4)
        rows.append({"video": f"{i}.mp4", "frames": [{"index": t, "caption": f"a {colour} square"} for t in (0, 3)]})
    rows.append({"video": "missing.mp4", "frames": [{"index": 0, "caption": "a red square"}]})
    rows.append({"video": "0.mp4", "frames": "not a list"})
    (root / "frames.json").write_text(json.dumps(rows))
    return root


def recipe(data: Path, out: Path, steps: int, **extra) -> VisionConfig:
    settings = {
        "learning_rate": 5e-3,
        "data_path": str(data / "frames.json"),
        "output_dir": str(out),
        "image_size": 32,
        "patch_size": 8,
        "vision_hidden_size": 32,
        "vision_layers": 2,
        "text_hidden_size": 32,
        "text_layers": 1,
        "vocab_size": 300,
        "max_steps": steps,
        "per_device_train_batch_size": 8,
        "save_strategy": "steps",
        "save_steps": steps // 2,
        "logging_steps": 1,
        "report_to": "none",
        "seed": 0,
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
        **extra,
    }
    overrides = [item for key, value in settings.items() for item in (f"--{key}", str(value))]
    return load_config(VisionConfig, None, overrides)


def test_a_run_learns_colours_and_a_tiny_model_sees_through_its_tower(frames_data, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="tinyvideo"):
        final = train(recipe(frames_data, tmp_path / "run", steps=60))
    assert final == tmp_path / "run" / FINAL_MODEL
    assert "2 of 26 data rows skipped (1 malformed, 1 with a missing or unusable video or text)" in caplog.text
    # It tells the colours apart, in the tokens a video model reads: each clip's first frame is nearest to
    # its own colour's caption (both towers and the tokenizer are in the last checkpoint).
    checkpoint = last_complete_checkpoint(tmp_path / "run")
    towers, tokenizer = FrameCaptionModel.from_pretrained(checkpoint), AutoTokenizer.from_pretrained(checkpoint)
    captions = [f"a {colour} square" for colour in COLOURS]
    ids = tokenizer(captions, padding="max_length", max_length=48, return_tensors="pt")["input_ids"]
    frames = np.stack([read_frames(frames_data / f"{i}.mp4", indices=[0])[0][0] for i in range(24)])
    with torch.no_grad():
        logits = towers.similarity(preprocess_frames(frames, 32), ids)
    assert logits.argmax(-1).tolist() == [i % len(COLOURS) for i in range(24)]

    # The final folder is the vision tower alone: it loads as a plain SigLIP vision model, no weight left over.
    tower, loading = SiglipVisionModel.from_pretrained(final, output_loading_info=True)
    assert json.loads((final / "config.json").read_text())["architectures"] == ["SiglipVisionModel"]
    assert all(not keys for keys in loading.values()), loading
    assert all(torch.equal(value, towers.vision_model.state_dict()[name]) for name, value in tower.state_dict().items())
    overrides = ["--model_name_or_path", "tiny", "--vision_tower_path", str(final), "--output_dir", str(tmp_path / "x")]
    model, processor = load_model_and_processor(load_config(SFTConfig, None, [*overrides, "--data_path", "unused.json"]))
    assert processor.image_size == 32 and model.config.vision_config.hidden_size == 32
    expected = tower.state_dict()
    assert all(torch.equal(value, expected[name]) for name, value in model.vision_tower.state_dict().items())


def test_a_row_whose_captioned_frames_cannot_be_decoded_is_skipped(tmp_path, caplog):
    """A nearby frame standing in for a captioned one would pair the caption with another picture."""
    corrupt_frames(make_indexed_video(tmp_path / "damaged.mp4", 60, 25, gop=25), range(25, 50))
    make_indexed_video(tmp_path / "sound.mp4", 60, 25, gop=25)
    rows = [
        {"video": "damaged.mp4", "frames": [{"index": 10, "caption": "ten"}, {"index": 27, "caption": "twenty-seven"}]},
        {"video": "sound.mp4", "frames": [{"index": 10, "caption": "ten"}, {"index": 27, "caption": "twenty-seven"}]},
    ]
    (tmp_path / "frames.json").write_text(json.dumps(rows))
    item = FrameCaptionDataset(str(tmp_path / "frames.json"), None, image_size=32)[0]
    assert item["skipped"] == [0] and len(item["pixel_values"]) == len(item["captions"]) == 2
    assert "frames [27] cannot be decoded" in caplog.text


def test_rows_must_name_a_video_and_captioned_frames(frames_data, tmp_path):
    rows, dropped = read_rows(frames_data / "frames.json")
    assert len(rows) == 25 and dropped == [25]
    (tmp_path / "bad.json").write_text(json.dumps([{"video": "a.mp4", "frames": [{"index": "0", "caption": "x"}]}]))
    with pytest.raises(ValueError, match="no usable rows"):
        read_rows(tmp_path / "bad.json")


def test_the_synthetic_suite_recipe_loads_and_matches_the_pretraining_stage():
    config = load_config(VisionConfig, str(RECIPES / "vision.yaml"), [])
    pretrain = load_config(SFTConfig, str(RECIPES / "pretrain.yaml"), ["--model_name_or_path", "tiny"])
    assert config.objective == "attributes" and config.data_path == "synth/scenes/train.jsonl"
    assert pretrain.vision_tower_path == f"{config.output_dir}/{FINAL_MODEL}"


@pytest.mark.parametrize("language_model", ["tiny", "folder"])
def test_the_synthetic_suite_pretraining_builds_a_connector_that_reads_every_patch(language_model, tmp_path):
    """The vision stage trains every patch of its 4x4 grid; the model the pretraining recipe builds around
    that tower (a new tiny language model, or a base one as `tinyvideo demo --language-model` gives) reads
    them all, where the published strategy would drop the top-left one."""
    vision = load_config(VisionConfig, str(RECIPES / "vision.yaml"), [])
    torch.manual_seed(0)
    SiglipVisionModel(tower_config(vision)).save_pretrained(tmp_path / "tower")
    source = ["--model_name_or_path", "tiny"]
    if language_model == "folder":
        base, base_processor = build_tiny(["what colour is the square"])
        base.language_model.save_pretrained(tmp_path / "language")
        base_processor.tokenizer.save_pretrained(tmp_path / "language")
        source = ["--language_model_path", str(tmp_path / "language")]
    overrides = [*source, "--vision_tower_path", str(tmp_path / "tower"), "--output_dir", str(tmp_path / "run")]
    model, processor = load_model_and_processor(load_config(SFTConfig, str(RECIPES / "pretrain.yaml"), overrides))
    grid = (vision.image_size // vision.patch_size) ** 2
    assert grid == 16 and model.config.vision_feature_select_strategy == "cls_patch"
    frames = preprocess_frames(np.zeros((2, vision.image_size, vision.image_size, 3), np.uint8), processor.image_size)
    with torch.no_grad():
        assert model.encode_frames(frames).shape == (2, grid, vision.vision_hidden_size)
    assert model.config.tokens_per_frame == grid


def test_a_finished_run_trains_no_more_and_says_so(frames_data, tmp_path, caplog):
    """25 rows in batches of 8 make 4 steps an epoch: the run's 6 steps end inside its second epoch, where
    the Trainer, resumed, would take one step more before it checks the step count."""
    final = train(recipe(frames_data, tmp_path / "run", steps=6))
    folders, weights = sorted(p.name for p in (tmp_path / "run").iterdir()), (final / "model.safetensors").read_bytes()
    with caplog.at_level(logging.INFO, logger="tinyvideo"):
        assert train(recipe(frames_data, tmp_path / "run", steps=6)) == final
    assert "the run is finished" in caplog.text and "resuming from" not in caplog.text
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == folders and "checkpoint-7" not in folders
    assert (final / "model.safetensors").read_bytes() == weights
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tinyvideo"):
        train(recipe(frames_data, tmp_path / "run", steps=8, save_steps=4))  # more steps: it goes on
    assert "resuming from" in caplog.text and (tmp_path / "run" / "checkpoint-8").is_dir()


def test_a_run_killed_after_its_last_checkpoint_writes_that_checkpoint_as_its_model(frames_data, tmp_path, caplog):
    """Killed after its step-6 checkpoint, before its final model: the rerun writes the model of step 6, the
    Trainer's one more step (`test_a_finished_run_trains_no_more_and_says_so`) not taken."""
    final = train(recipe(frames_data, tmp_path / "run", steps=6))
    expected = load_file(final / "model.safetensors")
    shutil.rmtree(final)
    folders = sorted(p.name for p in (tmp_path / "run").iterdir())
    with caplog.at_level(logging.INFO, logger="tinyvideo"):
        assert train(recipe(frames_data, tmp_path / "run", steps=6)) == final
    assert "writing the final model from" in caplog.text
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted([*folders, final.name])
    written = load_file(final / "model.safetensors")
    assert written.keys() == expected.keys() and all(torch.equal(written[k], expected[k]) for k in expected)


def test_a_rerun_with_other_sizes_is_refused_in_one_line(frames_data, tmp_path, capsys):
    config = recipe(frames_data, tmp_path / "run", steps=2)
    train(config)
    capsys.readouterr()
    argv = ["train", "vision", "--output_dir", str(tmp_path / "run"), "--data_path", config.data_path, "--max_steps", "2",
            "--image_size", "32", "--patch_size", "8", "--vision_hidden_size", "64", "--vision_layers", "2",
            "--text_hidden_size", "32", "--text_layers", "1", "--vocab_size", "300", "--report_to", "none"]  # fmt: skip
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert f"{tmp_path / 'run'} holds a different run (vision_hidden_size 32 there, 64 now)" in error
    assert len(error.splitlines()) == 1
