"""Does a vision tower see what the suite asks about? Linear probes on its frozen features.

For the tasks whose answers come from a fixed set and need more than one frame (`moving_direction`: up,
down, left, right; `counting`: 0-3 bounces), a linear classifier is fit on the train split's clips and
scored on the test split's, from four feature sets of the same 16 frames:

- `tower_tokens`: every patch token of every frame (what the connector receives), concatenated;
- `tower_pooled`: each frame's tokens averaged (where a patch was is lost);
- `random_tower_tokens`: the same tower architecture at its random initialisation (the control);
- `pixels`: the frames area-averaged to the tower's patch grid (no tower at all).

A tower that learnt something the language model needs scores above its random control; one that is
below the pixels loses information on the way. `majority` is the most frequent test answer's share.

And per patch (`patch_attributes`): the colour and the shape of the object centred in a patch, from that
patch's token of the layer the model reads (`tower`, `random_tower`) or its pixels, for every occupied patch
of every frame (a linear classifier fit on a quarter of the train split's clips, scored on the test split's).

    python benchmarks/vision_probe.py --tower runs/synth/vision/model --suite synth [--output JSON]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import SiglipVisionModel

from tinyvideo.data.synth import load_suite
from tinyvideo.processing import preprocess_frames
from tinyvideo.rows import read_json_rows
from tinyvideo.train.vision_attributes import patch_targets
from tinyvideo.video import read_frames

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("moving_direction", "counting")
FEATURES = ("tower_tokens", "tower_pooled", "random_tower_tokens", "pixels")


def split_rows(suite, split: str) -> list[dict]:
    """The split's questions of the probed tasks."""
    rows = read_json_rows(suite.root / suite.manifest["splits"][split]["annotations"])
    return [row.value for row in rows if row.value["task"] in TASKS]


def tokens_of(tower, pixels: torch.Tensor) -> torch.Tensor:
    """The patch tokens a tiny model's connector receives: the hidden state of layer -2, [T, patches, D]."""
    return tower(pixel_values=pixels, output_hidden_states=True).hidden_states[-2]


@torch.no_grad()
def features(rows: list[dict], suite, tower, random_tower, num_frames: int) -> dict[str, np.ndarray]:
    """Each feature set as an array [clips, features]."""
    grid = tower.config.image_size // tower.config.patch_size
    out = {name: [] for name in FEATURES}
    for row in rows:
        frames, _ = read_frames(suite.video_root / row["video"], num_frames=num_frames)
        pixels = preprocess_frames(frames, tower.config.image_size)  # [T, 3, S, S]
        tokens = tokens_of(tower, pixels)
        out["tower_tokens"].append(tokens.flatten())
        out["tower_pooled"].append(tokens.mean(1).flatten())
        out["random_tower_tokens"].append(tokens_of(random_tower, pixels).flatten())
        out["pixels"].append(F.adaptive_avg_pool2d(pixels, grid).flatten())
    return {name: torch.stack(values).numpy() for name, values in out.items()}


def probe_accuracy(train_x, train_y, test_x, test_y, steps: int, seed: int) -> float:
    """Percent of test clips a standardised multinomial logistic regression (AdamW, full batch, weight
    decay 1e-2) gets right after `steps` steps on the train clips."""
    torch.manual_seed(seed)
    x, xt = torch.tensor(train_x), torch.tensor(test_x)
    mean, std = x.mean(0), x.std(0) + 1e-6
    x, xt = (x - mean) / std, (xt - mean) / std
    classes = int(max(train_y.max(), test_y.max())) + 1
    linear = torch.nn.Linear(x.shape[1], classes)
    optimizer = torch.optim.AdamW(linear.parameters(), lr=1e-2, weight_decay=1e-2)
    y = torch.tensor(train_y)
    for _ in range(steps):
        optimizer.zero_grad()
        F.cross_entropy(linear(x), y).backward()
        optimizer.step()
    with torch.no_grad():
        return 100.0 * float((linear(xt).argmax(1) == torch.tensor(test_y)).float().mean())


@torch.no_grad()
def patch_features(suite, split: str, tower, random_tower, every: int) -> dict[str, np.ndarray]:
    """Every occupied patch of the split's frames (every `every`-th clip): features of the three kinds
    [patches, D] and the targets `colour`, `shape` (class indices, 1-based as `patch_targets` gives them)."""
    grid = tower.config.image_size // tower.config.patch_size
    rows = [row.value for row in read_json_rows(suite.root / suite.manifest["splits"][split]["scenes"])][::every]
    out = {name: [] for name in ("tower", "random_tower", "pixels", "colour", "shape")}
    for row in rows:
        targets = patch_targets(row["objects"], grid)
        frames, _ = read_frames(suite.video_root / row["video"], indices=list(range(len(targets["colour"]))))
        pixels = preprocess_frames(frames, tower.config.image_size)
        occupied = targets["colour"] > 0
        for name, model in (("tower", tower), ("random_tower", random_tower)):
            out[name].append(tokens_of(model, pixels)[occupied])
        patch = tower.config.patch_size
        out["pixels"].append(F.unfold(pixels, patch, stride=patch).transpose(1, 2)[occupied])
        out["colour"].append(targets["colour"][occupied])
        out["shape"].append(targets["shape"][occupied])
    return {name: torch.cat(values).numpy() for name, values in out.items()}


def patch_attribute_results(suite, tower, random_tower, steps: int, seed: int) -> dict:
    train, test = patch_features(suite, "train", tower, random_tower, 4), patch_features(suite, "test", tower, random_tower, 1)
    results = {"train_patches": len(train["colour"]), "test_patches": len(test["colour"])}
    for attribute in ("colour", "shape"):
        results[attribute] = {
            "majority": 100.0 * float(np.bincount(test[attribute]).max() / len(test[attribute])),
            **{
                name: probe_accuracy(train[name], train[attribute], test[name], test[attribute], steps, seed)
                for name in ("tower", "random_tower", "pixels")
            },
        }
        print(attribute, {k: round(v, 1) for k, v in results[attribute].items()})
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tower", required=True, help="a SigLIP vision tower folder (e.g. the `vision` stage's model)")
    parser.add_argument("--suite", required=True, help="a synthetic suite folder (`tinyvideo synth`)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--steps", type=int, default=300, help="probe optimisation steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "vision_probe.json"))
    args = parser.parse_args()

    suite = load_suite(args.suite)
    tower = SiglipVisionModel.from_pretrained(args.tower, local_files_only=True).eval()
    torch.manual_seed(args.seed)
    random_tower = SiglipVisionModel(tower.config).eval()
    train_rows, test_rows = split_rows(suite, "train"), split_rows(suite, "test")
    train_x = features(train_rows, suite, tower, random_tower, args.frames)
    test_x = features(test_rows, suite, tower, random_tower, args.frames)

    results = {}
    for task in TASKS:
        answers = sorted({r["answer_text"] for r in train_rows if r["task"] == task})
        train_at = np.array([r["task"] == task for r in train_rows])
        test_at = np.array([r["task"] == task for r in test_rows])
        train_y = np.array([answers.index(r["answer_text"]) for r in train_rows if r["task"] == task])
        test_y = np.array([answers.index(r["answer_text"]) for r in test_rows if r["task"] == task])
        results[task] = {
            "answers": answers,
            "train_clips": int(train_at.sum()),
            "test_clips": int(test_at.sum()),
            "majority": 100.0 * float(np.bincount(test_y).max() / len(test_y)),
            **{
                name: probe_accuracy(train_x[name][train_at], train_y, test_x[name][test_at], test_y, args.steps, args.seed)
                for name in FEATURES
            },
        }
        print(task, {k: round(v, 1) for k, v in results[task].items() if isinstance(v, float)})
    report = {"benchmark": "vision_probe", "tower": args.tower, "suite": args.suite, "frames": args.frames,
              "image_size": tower.config.image_size, "patch_size": tower.config.patch_size, "results": results,
              "patch_attributes": patch_attribute_results(suite, tower, random_tower, args.steps, args.seed)}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
