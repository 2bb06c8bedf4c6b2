"""The vision stage's `attributes` objective: patch targets as the scene says, a run on the suite's scene rows
that learns, and a tower folder the pretrain stage takes."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import SiglipVisionModel

from tinyvideo.data.synth import generate_suite
from tinyvideo.data.synth_scenes import OBJECT
from tinyvideo.errors import InputError
from tinyvideo.train.common import load_config
from tinyvideo.train.vision import VisionConfig, train
from tinyvideo.train.vision_attributes import (
    COLOUR_CLASSES,
    SHAPE_CLASSES,
    AttributeTower,
    SceneFramesDataset,
    attribute_loss,
    patch_targets,
    read_scene_rows,
)
from tinyvideo.train.runs import last_complete_checkpoint
from tinyvideo.vision_towers import load_vision_tower, read_attribute_head


def test_patch_targets_put_each_centre_in_its_patch_and_the_top_object_wins():
    # 64 px frames, a 4 x 4 grid of 16 px patches; objects are OBJECT (14) px squares given by their top-left.
    objects = [
        {"shape": "circle", "x": [0, 50, 0], "y": [0, 50, 0], "colour": ["red", "blue", None]},
        {"shape": "cross", "x": [33, 33, 1], "y": [1, 1, 1], "colour": ["green", "green", "cyan"]},
        {"shape": "square", "x": [34, 60, 60], "y": [2, 60, 60], "colour": ["yellow", None, None]},  # on top of the cross
    ]
    targets = patch_targets(objects, grid=4)
    colour, shape, offset = targets["colour"], targets["shape"], targets["offset"]
    assert colour.shape == shape.shape == (3, 16) and offset.shape == (3, 16, 2)
    # frame 0: the circle's centre (7, 7) -> patch 0 at (7/16, 7/16); the square's (41, 9) shares patch 2 with the cross's
    assert colour[0, 0] == COLOUR_CLASSES.index("red") and shape[0, 0] == SHAPE_CLASSES.index("circle")
    assert offset[0, 0].tolist() == pytest.approx([7 / 16, 7 / 16])
    assert colour[0, 2] == COLOUR_CLASSES.index("yellow") and shape[0, 2] == SHAPE_CLASSES.index("square")
    assert offset[0, 2].tolist() == pytest.approx([(34 + OBJECT / 2) / 16 - 2, (2 + OBJECT / 2) / 16])
    assert int((colour[0] > 0).sum()) == 2
    # frame 1: the circle's centre (57, 57) -> the last patch; the cross alone in patch 2
    assert colour[1, 15] == COLOUR_CLASSES.index("blue") and shape[1, 2] == SHAPE_CLASSES.index("cross")
    assert offset[1, 15].tolist() == pytest.approx([57 / 16 - 3, 57 / 16 - 3])
    # frame 2: an invisible object leaves its patch empty; only the cyan cross is there
    assert colour[2].nonzero().flatten().tolist() == [0] and colour[2, 0] == COLOUR_CLASSES.index("cyan")
    assert offset[2, 1:].abs().sum() == 0


def test_the_loss_is_the_two_cross_entropies_plus_the_weighted_offset_error():
    logits = torch.zeros(1, 2, len(COLOUR_CLASSES) + len(SHAPE_CLASSES) + 2)
    colour, shape = torch.tensor([[1, 0]]), torch.tensor([[2, 0]])
    offset = torch.tensor([[[0.25, 1.0], [0.0, 0.0]]])
    uniform = torch.log(torch.tensor(float(len(COLOUR_CLASSES)))) + torch.log(torch.tensor(float(len(SHAPE_CLASSES))))
    by_hand = uniform + 10.0 * ((0.5 - 0.25) ** 2 + (0.5 - 1.0) ** 2) / 2  # sigmoid(0) = 0.5, on the occupied patch only
    assert attribute_loss(logits, colour, shape, offset).item() == pytest.approx(by_hand.item(), abs=1e-5)


def circle(**changes) -> dict:
    return {"shape": "circle", "x": [1, 2], "y": [1, 2], "colour": ["red", None], **changes}


@pytest.mark.parametrize(
    "row, problem",
    [
        ({"objects": [circle()]}, "no 'video' path"),
        ({"video": "v.mp4", "objects": []}, "no 'objects' list"),
        ({"video": "v.mp4", "objects": [circle(shape="star")]}, "object 0: 'shape' must be one of"),
        ({"video": "v.mp4", "objects": [circle(y=[1])]}, "one entry per frame each"),
        ({"video": "v.mp4", "objects": [circle(colour=["mauve", None])]}, "unknown colour 'mauve'"),
        ({"video": "v.mp4", "objects": [circle(x=["a", 2])]}, "object 0, frame 0: x, y must be whole pixels in [0, 50]"),
        ({"video": "v.mp4", "objects": [circle(x=[None, 2])]}, "frame 0: x, y must be whole pixels"),
        ({"video": "v.mp4", "objects": [circle(x=[-30, 2])]}, "frame 0: x, y must be whole pixels"),
        ({"video": "v.mp4", "objects": [circle(y=[1, 51], colour=["red", "red"])]}, "frame 1: x, y must be whole pixels"),
        ({"video": "v.mp4", "objects": [circle(x=[True, 2])]}, "frame 0: x, y must be whole pixels"),
        ({"video": "v.mp4", "objects": [circle(), circle(x=[1], y=[1], colour=["red"])]}, "different numbers of frames ([1, 2])"),
    ],
)
def test_a_row_that_is_not_a_scene_is_skipped_with_its_line_and_why(tmp_path, caplog, row, problem):
    good = {"video": "a.mp4", "objects": [circle(x=[0, 50], colour=["red", None]), circle(x=[None, 3], colour=[None, "blue"])]}
    path = tmp_path / "scenes.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
    rows, dropped = read_scene_rows(path)
    assert [r["video"] for r in rows] == ["a.mp4"] and dropped == [1]
    assert "scenes.jsonl line 2 skipped: " in caplog.text and problem in caplog.text


def test_a_file_without_a_usable_scene_row_is_refused_with_a_hint(tmp_path):
    path = tmp_path / "frames.json"
    path.write_text(json.dumps([{"video": "a.mp4", "frames": [{"index": 0, "caption": "a red circle"}]}]))
    with pytest.raises(InputError, match="no usable scene rows .frame-caption rows are for objective: contrastive"):
        read_scene_rows(path)


def test_the_frame_must_divide_into_whole_patches():
    with pytest.raises(InputError, match=r"image_size \(30\) must be a multiple of patch_size \(8\)"):
        load_config(VisionConfig, None, ["--data_path", "x.jsonl", "--image_size", "30", "--patch_size", "8"])


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    return generate_suite(tmp_path_factory.mktemp("suite"), scale="smoke")


def test_a_run_learns_what_is_where_and_the_pretrain_stage_takes_its_tower(suite, tmp_path):
    scenes = suite.path("splits", "train", "scenes")
    settings = [
        "--objective", "attributes", "--data_path", str(scenes), "--video_root", str(suite.video_root),
        "--output_dir", str(tmp_path / "run"), "--image_size", "32", "--patch_size", "8",
        "--vision_hidden_size", "32", "--vision_layers", "2", "--max_steps", "80", "--learning_rate", "5e-3",
        "--per_device_train_batch_size", "4", "--save_steps", "40", "--logging_steps", "80", "--report_to", "none",
        "--dataloader_num_workers", "0", "--disable_tqdm", "true",
    ]  # fmt: skip
    config = load_config(VisionConfig, None, settings)
    dataset = SceneFramesDataset(str(scenes), str(suite.video_root), 32, grid=4)
    item = dataset[0]
    assert item["pixel_values"].shape == (16, 3, 32, 32) and item["colour"].shape == (16, 16)

    torch.manual_seed(0)
    untrained = AttributeTower(AttributeTower.config_class(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                                           num_attention_heads=4, image_size=32, patch_size=8))
    batch = {k: item[k] for k in ("colour", "shape", "offset")}
    before = attribute_loss(untrained.attribute_logits(item["pixel_values"]), **batch).item()

    folder = train(config)
    tower = load_vision_tower(folder)
    trained = AttributeTower.from_pretrained(last_complete_checkpoint(tmp_path / "run"))  # the head is in the checkpoints
    assert all(torch.equal(p, tower.state_dict()[k]) for k, p in trained.state_dict().items() if k in tower.state_dict())
    # The final folder is the tower alone: a plain SigLIP vision model, no weight left over when it loads.
    _, loading = SiglipVisionModel.from_pretrained(folder, output_loading_info=True)
    assert all(not keys for keys in loading.values()), loading
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["SiglipVisionModel"]
    # The head is saved beside it, with what it means, for the words connector.
    meaning, head = read_attribute_head(folder)
    assert torch.equal(head["weight"], trained.attribute_head.weight) and torch.equal(head["bias"], trained.attribute_head.bias)
    assert (meaning["colour_classes"], meaning["shape_classes"]) == (list(COLOUR_CLASSES), list(SHAPE_CLASSES))
    assert meaning["grid"] == 4 and len(meaning["patch_places"]) == 16
    with torch.no_grad():
        logits = trained.attribute_logits(item["pixel_values"])
    assert attribute_loss(logits, **batch).item() < before / 2
    occupied = batch["colour"] > 0
    colour_hits = (logits[..., : len(COLOUR_CLASSES)].argmax(-1) == batch["colour"])[occupied].float().mean()
    assert colour_hits > 0.5  # 6 colours: chance is 1/6 on an occupied patch
    assert (folder / "preprocessor_config.json").is_file()
