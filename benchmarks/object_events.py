"""Does the `words` connector tell what happens? Its event words scored against the suite's ground truth.

A tower trained with the `attributes` objective sees one frame at a time; the `words` connector follows each
object by its colour and shape into the frames before and after (`tinyvideo.connectors.object_events`) and
adds the words "moves right", "appears", "disappears", "turns" ... to the object's patch token. This
benchmark runs the tower's attribute head on the test split's clips (the frames a model samples) and, for
every object visible in a sampled frame, compares the weights at the patch holding its centre with what the
scene row says happened:

- moves <direction>: between the sampled frames before and after, the object moved at least `MOVED` pixels
  that way (in the suite's 64-pixel frames);
- appears / disappears: it is hidden in the sampled frame before / after;
- turns: its colour differs in the sampled frame before.

A weight above 0.5 counts as said. `recall`: the share of true events said; `false_alarms`: the share of
object-frames without the event where it is said. `moving_direction_votes`: for each `moving_direction`
question, the direction with the most weight at the patches of the asked object (colour and shape
probabilities times the direction weights, summed over frames and patches), scored against the answer: how
much of the task the event words alone carry.

    python benchmarks/object_events.py --tower src/tinyvideo/base_models/smollm2-words/vision_tower --suite synth
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

import torch
from transformers import SiglipVisionModel

from tinyvideo.connectors import WordsConnector, object_events
from tinyvideo.data.synth import load_suite
from tinyvideo.data.synth_scenes import DIRECTIONS
from tinyvideo.files import write_json
from tinyvideo.flags import positive_int
from tinyvideo.processing import preprocess_frames
from tinyvideo.train.vision_attributes import AttributeTower, centre_patch
from tinyvideo.video import read_frames
from tinyvideo.vision_towers import read_attribute_head

ROOT = Path(__file__).resolve().parents[1]
MOVED = 4  # pixels between the sampled frames around a frame that count as a move
ASKED = re.compile(r"the (\w+) (\w+) move\?$")  # "Which direction does the cyan cross move?"


def true_events(track, frames: list[int]) -> list[set[str] | None]:
    """Per sampled frame where the object is visible (else None), the event words that hold there."""
    events = []
    for k, t in enumerate(frames):
        if track.colour[t] is None:
            events.append(None)
            continue
        said = set()
        if k > 0 and track.colour[frames[k - 1]] is None:
            said.add("appears")
        elif k > 0 and track.colour[frames[k - 1]] != track.colour[t]:
            said.add("turns")
        if k + 1 < len(frames) and track.colour[frames[k + 1]] is None:
            said.add("disappears")
        before, after = frames[max(k - 1, 0)], frames[min(k + 1, len(frames) - 1)]
        moved = (track.x[after] - track.x[before], track.y[after] - track.y[before])
        for direction, (dx, dy) in DIRECTIONS.items():
            if dx * moved[0] + dy * moved[1] >= MOVED:
                said.add(f"moves {direction}")
        events.append(said)
    return events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tower", required=True, help="a tower folder with its attribute head (tinyvideo train vision --objective attributes)")
    parser.add_argument("--suite", required=True, help="a synthetic suite folder (tinyvideo synth)")
    parser.add_argument("--frames", type=positive_int, default=8, help="frames sampled per clip, as the model samples them")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "object_events.json"))
    args = parser.parse_args()

    meaning, head = read_attribute_head(args.tower)
    colours, shapes, grid = meaning["colour_classes"], meaning["shape_classes"], meaning["grid"]
    tower = SiglipVisionModel.from_pretrained(args.tower).eval()
    suite = load_suite(args.suite)
    scenes = suite.scenes("test")
    said, missed, alarms, quiet = Counter(), Counter(), Counter(), Counter()
    votes_right = votes = 0
    for record in suite.records("test"):
        scene = scenes[record["id"]]
        frames, info = read_frames(suite.video_root / record["video"], num_frames=args.frames)
        with torch.no_grad():
            hidden = tower(pixel_values=preprocess_frames(frames, tower.config.image_size), output_hidden_states=True)
            logits = hidden.hidden_states[AttributeTower.feature_layer] @ head["weight"].T + head["bias"]
        colour = logits[None, ..., : len(colours)].softmax(-1)
        shape = logits[None, ..., len(colours) : len(colours) + len(shapes)].softmax(-1)
        weights = object_events(colour, shape)[0]  # [T, P, events]
        for track in scene.tracks:
            for k, (t, truth) in enumerate(zip(info.indices, true_events(track, list(info.indices)), strict=True)):
                if truth is None:
                    continue
                at = weights[k, centre_patch(track.x[t], track.y[t], grid)[0]]
                for word, weight in zip(WordsConnector.EVENT_WORDS, at.tolist(), strict=True):
                    hit = weight > 0.5
                    if word in truth:
                        said[word] += hit
                        missed[word] += not hit
                    else:
                        alarms[word] += hit
                        quiet[word] += not hit
        asked = ASKED.search(record["question"]) if record["task"] == "moving_direction" else None
        if asked is not None:
            where = (colour[0, ..., colours.index(asked[1])] * shape[0, ..., shapes.index(asked[2])])[..., None]
            totals = (where * weights[..., :4]).sum((0, 1))
            votes_right += WordsConnector.EVENT_WORDS[int(totals.argmax())] == f"moves {record['answer_text']}"
            votes += 1
    report = {
        "benchmark": "object_events",
        "tower": args.tower,
        "suite": args.suite,
        "frames": args.frames,
        "events": {
            word: {
                "recall": 100.0 * said[word] / max(said[word] + missed[word], 1),
                "true": said[word] + missed[word],
                "false_alarms": 100.0 * alarms[word] / max(alarms[word] + quiet[word], 1),
            }
            for word in WordsConnector.EVENT_WORDS
        },
        "moving_direction_votes": 100.0 * votes_right / max(votes, 1),
        "moving_direction_questions": votes,
    }
    for word, score in report["events"].items():
        print(f"{word:12s} recall {score['recall']:5.1f}% of {score['true']:4d}  false alarms {score['false_alarms']:4.1f}%")
    print(f"moving_direction from the event words alone: {report['moving_direction_votes']:.1f}% of {votes}")
    write_json(Path(args.output), report)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
