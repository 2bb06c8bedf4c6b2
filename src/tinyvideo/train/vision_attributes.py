"""The vision stage's `attributes` objective: a tiny SigLIP tower learns what is where in every frame from the
synthetic suite's scene files (`scenes/train.jsonl`), the way detection and segmentation heads teach a
backbone, at toy scale.

The frame is cut into the tower's patch grid. For every patch of every frame the tower's layer-`feature_layer`
token (the one a video model reads) is trained, through one linear head, to give: the colour and the shape of
the object whose centre lies in that patch ("none" for an empty patch; where two centres share a patch, the
object drawn last, the one on top), and where in the patch that centre is (x, y in [0, 1], a squared error
on occupied patches). The pretrain stage takes the tower alone; the head is saved beside it
(`ATTRIBUTE_HEAD_WEIGHTS`, with what its outputs mean in `ATTRIBUTE_HEAD_CONFIG`) for the `words` connector.

Measured on the small suite (`benchmarks/vision_probe.py`: linear probes on the frozen patch tokens of the
test split's frames, the shape and colour of every occupied patch): this objective's tower
(`tinyvideo/recipes/synth/vision.yaml`) 84.5% shape, 99.4% colour; the captions-contrastive tower 51.1 / 99.4; the
same architecture at random 43.4 / 96.6; the patch's pixels 48.7 / 99.1.

Data: the suite's scene rows `{"video": path, "objects": [{"shape", "x": [...], "y": [...], "colour":
[...]}]}`, one entry per frame in `x`, `y` (top-left corner, pixels of the suite's `SIZE`-pixel frames) and
`colour` (null while the object is not visible); frame t of the row is frame t of its video.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from transformers import SiglipVisionConfig, SiglipVisionModel, Trainer, set_seed

from tinyvideo.data.row_dataset import RowDataset
from tinyvideo.data.synth_scenes import COLOURS, OBJECT, SHAPES, SIZE, where
from tinyvideo.files import write_json
from tinyvideo.processing import preprocess_frames
from tinyvideo.rows import read_usable_rows
from tinyvideo.train.common import require_folder, save_vision_tower, tower_image_processor
from tinyvideo.train.runs import SkippedRowsTally, train_and_save
from tinyvideo.video import read_exact_frames
from tinyvideo.vision_towers import ATTRIBUTE_HEAD_CONFIG, ATTRIBUTE_HEAD_WEIGHTS


COLOUR_CLASSES = ("none", *COLOURS)
SHAPE_CLASSES = ("none", *SHAPES)
OFFSET_WEIGHT = 10.0  # the offset error (a fraction of a patch, squared) is small next to the two cross-entropies


def _is_pixel(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= SIZE - OBJECT


def scene_row_problem(row) -> str | None:
    """Why a row is not a usable scene row, or None: every object a known shape with one x, y and colour per
    frame, the same number of frames for all, and while visible its top-left corner a whole pixel inside
    the frame (0 .. SIZE - OBJECT), as the suite draws them."""
    if not (isinstance(row, dict) and isinstance(row.get("video"), str)):
        return "no 'video' path"
    objects = row.get("objects")
    if not (isinstance(objects, list) and objects):
        return "no 'objects' list"
    frames = set()
    for k, obj in enumerate(objects):
        if not (isinstance(obj, dict) and obj.get("shape") in SHAPES):
            return f"object {k}: 'shape' must be one of {', '.join(SHAPES)}"
        tracks = [obj.get(key) for key in ("x", "y", "colour")]
        if not all(isinstance(track, list) and track for track in tracks) or len({len(t) for t in tracks}) > 1:
            return f"object {k}: 'x', 'y' and 'colour' must be lists with one entry per frame each"
        frames.add(len(obj["colour"]))
        for t, (x, y, colour) in enumerate(zip(*tracks)):
            if colour is not None and colour not in COLOURS:
                return f"object {k}, frame {t}: unknown colour {colour!r} (one of {', '.join(COLOURS)}, or null)"
            if colour is not None and not (_is_pixel(x) and _is_pixel(y)):
                return f"object {k}, frame {t}: x, y must be whole pixels in [0, {SIZE - OBJECT}] (its top-left corner); got {x!r}, {y!r}"
    if len(frames) > 1:
        return f"the objects track different numbers of frames ({sorted(frames)})"
    return None


def read_scene_rows(path: str | Path) -> tuple[list[dict], list[int]]:
    """The scene rows with a video and objects tracked over the same frames, and the indices of the others
    (logged with their file and line). Raises `InputError` when no row is usable."""
    return read_usable_rows(
        path,
        scene_row_problem,
        lambda index, row: {"row": index, "where": row.where, "video": row.value["video"], "objects": row.value["objects"]},
        what="scene rows",
        hint="frame-caption rows are for objective: contrastive",
    )


def centre_patch(x: float, y: float, grid: int) -> tuple[int, tuple[float, float]]:
    """The patch (row major, of a `grid` x `grid` frame) holding the centre of an object whose top-left corner
    is (x, y) in the suite's pixels, and where in that patch the centre lies (x, y in [0, 1])."""
    cell = SIZE / grid
    x, y = (x + OBJECT / 2) / cell, (y + OBJECT / 2) / cell
    column, row = min(int(x), grid - 1), min(int(y), grid - 1)
    return row * grid + column, (x - column, y - row)


def patch_targets(objects: list[dict], grid: int) -> dict[str, torch.Tensor]:
    """Per frame and patch (row-major, as the tower's tokens): `colour` and `shape` class indices [T, grid^2]
    (0: none) and the centre's place in its patch `offset` [T, grid^2, 2] (x, y in [0, 1]; 0 where empty)."""
    frames = len(objects[0]["x"])
    colour = torch.zeros(frames, grid * grid, dtype=torch.long)
    shape = torch.zeros_like(colour)
    offset = torch.zeros(frames, grid * grid, 2)
    for obj in objects:  # later objects are drawn on top, so they win a shared patch
        for t, name in enumerate(obj["colour"]):
            if name is None:
                continue
            patch, place = centre_patch(obj["x"][t], obj["y"][t], grid)
            colour[t, patch] = COLOUR_CLASSES.index(name)
            shape[t, patch] = SHAPE_CLASSES.index(obj["shape"])
            offset[t, patch] = torch.tensor(place)
    return {"colour": colour, "shape": shape, "offset": offset}


class SceneFramesDataset(RowDataset):
    """Each item is one scene's frames, decoded and preprocessed, with their patch targets."""

    def __init__(self, data_path: str, video_root: str | None, image_size: int, grid: int):
        super().__init__(*read_scene_rows(data_path), data_path, video_root if video_root is not None else Path(data_path).parent)
        self.image_size = image_size
        self.grid = grid

    def encode(self, row: dict) -> dict:
        targets = patch_targets(row["objects"], self.grid)
        frames = read_exact_frames(self.video_root / row["video"], list(range(len(targets["colour"]))))
        return {"pixel_values": preprocess_frames(frames, self.image_size), **targets}


def collate(items: list[dict]) -> dict:
    keys = ("pixel_values", "colour", "shape", "offset")
    return {
        **{key: torch.cat([item[key] for item in items]) for key in keys},
        "skipped_rows": [row for item in items for row in item["skipped"]],
    }


class AttributeTower(SiglipVisionModel):
    """A SigLIP vision tower with a linear attribute head on its layer-`feature_layer` patch tokens. The
    run's checkpoints hold both; its final folder the tower, the head beside it (`save_tower_and_head`)."""

    feature_layer = -2

    def __init__(self, config: SiglipVisionConfig):
        super().__init__(config)
        self.attribute_head = nn.Linear(config.hidden_size, len(COLOUR_CLASSES) + len(SHAPE_CLASSES) + 2)
        self.post_init()

    def attribute_logits(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Frames [N, 3, S, S] -> [N, patches, colours + shapes + 2]."""
        hidden = self(pixel_values=pixel_values, output_hidden_states=True).hidden_states[self.feature_layer]
        return self.attribute_head(hidden)


def attribute_loss(logits: torch.Tensor, colour: torch.Tensor, shape: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Colour and shape cross-entropy over every patch, plus `OFFSET_WEIGHT` x the squared error of the
    sigmoid offsets on occupied patches. logits [N, P, K]; colour, shape [N, P]; offset [N, P, 2]."""
    colours, shapes = len(COLOUR_CLASSES), len(SHAPE_CLASSES)
    loss = F.cross_entropy(logits[..., :colours].flatten(0, 1), colour.flatten())
    loss = loss + F.cross_entropy(logits[..., colours : colours + shapes].flatten(0, 1), shape.flatten())
    occupied = colour > 0
    if occupied.any():
        loss = loss + OFFSET_WEIGHT * F.mse_loss(logits[..., colours + shapes :][occupied].sigmoid(), offset[occupied])
    return loss


class AttributeTrainer(SkippedRowsTally, Trainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        logits = model.attribute_logits(inputs["pixel_values"])
        loss = attribute_loss(logits, inputs["colour"], inputs["shape"], inputs["offset"])
        return (loss, {"logits": logits}) if return_outputs else loss


def patch_places(grid: int) -> list[str]:
    """The place words (`where`) of an object centred on each patch of a `grid` x `grid` frame, row major."""
    cell = SIZE / grid
    centres = [round((k + 0.5) * cell) - OBJECT // 2 for k in range(grid)]
    return [where(x, y) for y in centres for x in centres]


def save_tower_and_head(model: AttributeTower, processor, out_dir, state_dict=None) -> Path:
    """`save_vision_tower`, with the attribute head beside the tower: its weights (`ATTRIBUTE_HEAD_WEIGHTS`)
    and what its outputs mean (`ATTRIBUTE_HEAD_CONFIG`: class names, grid side, each patch's place words)."""
    state = model.state_dict() if state_dict is None else state_dict
    head = {name: state[f"attribute_head.{name}"].detach().cpu().contiguous() for name in ("weight", "bias")}
    grid = model.config.image_size // model.config.patch_size
    meaning = {"colour_classes": COLOUR_CLASSES, "shape_classes": SHAPE_CLASSES, "grid": grid, "patch_places": patch_places(grid)}

    def write_head(folder: Path) -> None:
        save_file(head, folder / ATTRIBUTE_HEAD_WEIGHTS)
        write_json(folder / ATTRIBUTE_HEAD_CONFIG, meaning)

    return save_vision_tower(model, processor, out_dir, state_dict, write_beside=write_head)


def tower_config(config) -> SiglipVisionConfig:
    """The config of the tower the stage trains (`config`: the vision stage's `VisionConfig`)."""
    return SiglipVisionConfig(
        hidden_size=config.vision_hidden_size,
        intermediate_size=config.vision_hidden_size * 2,
        num_hidden_layers=config.vision_layers,
        num_attention_heads=4,
        image_size=config.image_size,
        patch_size=config.patch_size,
    )


def train(config) -> Path:
    """Train the tower on scene rows (`config`: the vision stage's `VisionConfig`) and return its folder: a
    plain SigLIP vision model with its image processor, and the attribute head beside it (`save_tower_and_head`)."""
    set_seed(config.seed)
    require_folder(config.video_root, "video_root")
    grid = config.image_size // config.patch_size
    dataset = SceneFramesDataset(config.data_path, config.video_root, config.image_size, grid)
    tower = AttributeTower(tower_config(config))
    trainer = AttributeTrainer(model=tower, args=config, train_dataset=dataset, data_collator=collate)
    return train_and_save(trainer, tower_image_processor(config.image_size), dataset, save=save_tower_and_head)
