"""Does a captioning model see? Captions it writes for the synthetic suite's test clips, scored against what
the clips show: with each clip's own video, and with another clip's (the control: what it writes blind).

The model (after the `pretrain` stage, or a base model) writes a caption for each test clip, greedily, in the
template it was trained with (`--template`). Each caption is scored against the clip's ground truth (its scene row): the share of the
objects of the first frame ("a cyan cross") that its opening sentence names, the share of openings
written exactly, and the share of the clip's events ("The cyan cross moves right.") written word for
word. A model that ignores the video writes the same caption for every clip and scores the same both ways.

    python benchmarks/caption_accuracy.py --model runs/synth/pretrain/model --suite synth [--clips 140]
    python benchmarks/caption_accuracy.py --model demo/runs/base/model --suite runs/base/synth --template chat --frames 8
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import torch

from tinyvideo import TinyVideoForConditionalGeneration, TinyVideoProcessor
from tinyvideo.data.synth import load_suite
from tinyvideo.data.synth_scenes import Scene
from tinyvideo.data.synth_text import CAPTION_PROMPTS, happenings, opening
from tinyvideo.files import write_json
from tinyvideo.flags import positive_int
from tinyvideo.video import read_frames

ROOT = Path(__file__).resolve().parents[1]
OBJECT_NAME = re.compile(r"\ban? (\w+ \w+) at the\b")  # "a cyan cross at the top left" -> "cyan cross"


def caption_scores(caption: str, scene: Scene) -> dict[str, int]:
    """Counts for one written caption: first-frame objects named in its opening (of how many), the opening
    written exactly, and events written word for word (of how many)."""
    first = opening(scene)
    written_opening = caption.split(". ")[0] + "."
    objects = OBJECT_NAME.findall(first)
    events = happenings(scene)
    return {
        "objects_named": sum(name in OBJECT_NAME.findall(written_opening) for name in objects),
        "objects": len(objects),
        "openings_exact": int(written_opening == first),
        "events_written": sum(event in caption for event in events),
        "events": len(events),
    }


@torch.no_grad()
def write_captions(model, processor, videos: list, batch_size: int, max_new_tokens: int, template: str) -> list[str]:
    """Greedy captions, one per video ([T,H,W,3] uint8 frames), up to the caption's closing newline.
    `template`: `pretrain` (the video alone) or `chat` (the suite's first caption request, in the model's
    chat format)."""
    prompt = "<image>" if template == "pretrain" else processor.chat_prompt(CAPTION_PROMPTS[0])
    captions = []
    for start in range(0, len(videos), batch_size):
        chunk = videos[start : start + batch_size]
        batch = processor(text=[prompt] * len(chunk), videos=chunk)
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
        width = batch["input_ids"].shape[1]
        captions += [processor.decode(row[width:]).split("\n")[0].strip() for row in out]
    return captions


def summary(counts: list[dict[str, int]]) -> dict[str, float]:
    total = {key: sum(c[key] for c in counts) for key in counts[0]}
    return {
        "objects_named": 100.0 * total["objects_named"] / max(total["objects"], 1),
        "openings_exact": 100.0 * total["openings_exact"] / len(counts),
        "events_written": 100.0 * total["events_written"] / max(total["events"], 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a tinyvideo model folder trained to caption (the pretrain stage's)")
    parser.add_argument("--suite", required=True, help="a synthetic suite folder (tinyvideo synth)")
    parser.add_argument("--clips", type=positive_int, default=140, help="the first N test clips")
    parser.add_argument("--frames", type=positive_int, default=16)
    parser.add_argument("--batch-size", type=positive_int, default=35)
    parser.add_argument("--max-new-tokens", type=positive_int, default=96)
    parser.add_argument("--template", choices=("pretrain", "chat"), default="pretrain", help="how the model was trained to caption")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "caption_accuracy.json"))
    args = parser.parse_args()

    suite = load_suite(args.suite)
    records = suite.records("test")[: args.clips]
    scenes = suite.scenes("test")
    model = TinyVideoForConditionalGeneration.from_pretrained(args.model).eval()
    processor = TinyVideoProcessor.from_pretrained(args.model)
    videos = [read_frames(suite.video_root / r["video"], num_frames=args.frames)[0] for r in records]
    report = {"benchmark": "caption_accuracy", "model": args.model, "suite": args.suite, "clips": len(records), "template": args.template}
    for name, shown in (("own_video", videos), ("other_video", videos[1:] + videos[:1])):
        captions = write_captions(model, processor, shown, args.batch_size, args.max_new_tokens, args.template)
        report[name] = summary([caption_scores(c, scenes[r["id"]]) for c, r in zip(captions, records, strict=True)])
        report[name]["distinct_captions"] = len(set(captions))
        report[name]["examples"] = [{"truth": opening(scenes[r["id"]]), "written": c} for c, r in zip(captions[:3], records)]
        print(name, {k: v for k, v in report[name].items() if k != "examples"})
    output = Path(args.output)
    write_json(output, report)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
