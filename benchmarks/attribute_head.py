"""How often a vision tower's own attribute head reads a frame right: what the `words` and `object_words`
connectors hand to the language model.

For every frame of a suite split's scene rows (all 16 of each clip), from the head's most likely classes:
`colour` and `shape` on the patches where an object's centre lies (`vision_attributes.patch_targets`), `empty`
on the patches where none does (called "none"), and `frames` the share of frames read right throughout (every
patch's colour, and the shape of every occupied one). A wrong shape in one frame makes the connector's words
name another object there, and its events an object disappearing and another appearing.

    python benchmarks/attribute_head.py --tower runs/base/runs/vision/model --suite runs/base/synth [--output JSON]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from tinyvideo.train.vision_attributes import AttributeTower, SceneFramesDataset
from tinyvideo.vision_towers import read_attribute_head

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def head_accuracy(tower_folder: Path, suite: Path, split: str, clips: int | None) -> dict:
    """Percentages (see the module docstring) over the first `clips` scene rows of `split` (None: all)."""
    meaning, head = read_attribute_head(tower_folder)  # `InputError` for a tower without its head
    tower = AttributeTower.from_pretrained(tower_folder).eval()
    tower.attribute_head.load_state_dict(head)
    grid = tower.config.image_size // tower.config.patch_size
    rows = suite / "scenes" / f"{split}.jsonl"
    scenes = SceneFramesDataset(str(rows), str(suite / "videos"), tower.config.image_size, grid)
    colours, shapes = len(meaning["colour_classes"]), len(meaning["shape_classes"])
    counts = dict.fromkeys(("occupied", "colour", "shape", "empty", "empty_right", "frames", "frames_right"), 0)
    for index in range(len(scenes) if clips is None else min(clips, len(scenes))):
        item = scenes[index]
        logits = tower.attribute_logits(item["pixel_values"])  # [T, P, classes]
        colour, shape = logits[..., :colours].argmax(-1), logits[..., colours : colours + shapes].argmax(-1)
        occupied = item["colour"] > 0
        colour_right, shape_right = colour == item["colour"], shape == item["shape"]
        counts["occupied"] += int(occupied.sum())
        counts["colour"] += int(colour_right[occupied].sum())
        counts["shape"] += int(shape_right[occupied].sum())
        counts["empty"] += int((~occupied).sum())
        counts["empty_right"] += int(colour_right[~occupied].sum())
        counts["frames"] += occupied.shape[0]
        counts["frames_right"] += int((colour_right & (shape_right | ~occupied)).all(-1).sum())
    return {
        "colour": 100 * counts["colour"] / counts["occupied"],
        "shape": 100 * counts["shape"] / counts["occupied"],
        "empty": 100 * counts["empty_right"] / counts["empty"],
        "frames": 100 * counts["frames_right"] / counts["frames"],
        "occupied_patches": counts["occupied"],
        "frames_read": counts["frames"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tower", required=True, help="a tower folder with its attribute head (a `vision` run's model)")
    parser.add_argument("--suite", required=True, help="a synthetic suite folder (`tinyvideo synth`)")
    parser.add_argument("--split", default="test")
    parser.add_argument("--clips", type=int, default=200, help="scene rows read (0: all)")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "attribute_head.json"))
    args = parser.parse_args()
    tower = Path(args.tower)
    config = AttributeTower.config_class.from_pretrained(tower)
    report = {
        "tower": str(tower),
        "tower_config": {key: getattr(config, key) for key in ("image_size", "patch_size", "hidden_size", "num_hidden_layers")},
        "suite": args.suite,
        "split": args.split,
        **head_accuracy(tower, Path(args.suite), args.split, args.clips or None),
    }
    print(json.dumps(report, indent=1))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
