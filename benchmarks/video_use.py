"""Does a model use the video? Its loss on LLaVA-style data with each row's own video against the loss with
another row's video (the batch's videos rotated by one), overall and per answer word.

A model that ignores its visual tokens scores the same both ways; the per-word table shows what the video
tells it (on the synthetic suite's captions: colours, how many objects, which events).

    python benchmarks/video_use.py --model runs/synth/pretrain/model --data synth/train/captions.json \\
        --video-root synth/videos --template pretrain [--rows 256] [--output JSON]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from tinyvideo import TinyVideoForConditionalGeneration, TinyVideoProcessor
from tinyvideo.data.llava import LlavaCollator, LlavaDataset

ROOT = Path(__file__).resolve().parents[1]


def token_losses(model, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token losses [B, L-1] and the labels they score (-100 where nothing is scored)."""
    with torch.no_grad():
        logits = model(**batch).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    return F.cross_entropy(logits.transpose(1, 2), labels.clamp(min=0), reduction="none"), labels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True, help="LLaVA-style json rows with a video each")
    parser.add_argument("--video-root", required=True)
    parser.add_argument("--template", default="pretrain", choices=["pretrain", "qwen2_base"])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--min-count", type=int, default=20, help="words seen fewer times are left out of the table")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "video_use.json"))
    args = parser.parse_args()

    model = TinyVideoForConditionalGeneration.from_pretrained(args.model).eval()
    processor = TinyVideoProcessor.from_pretrained(args.model)
    sampling = SimpleNamespace(num_frames=args.frames, fps=None, max_frames=None)
    dataset = LlavaDataset(args.data, args.video_root, processor, sampling, template=args.template)
    collate = LlavaCollator(processor)
    totals = {"own": 0.0, "other": 0.0}
    gains: dict[str, list[float]] = defaultdict(list)
    scored = 0
    for start in range(0, min(args.rows, len(dataset)), args.batch_size):
        batch = collate([dataset[i] for i in range(start, min(start + args.batch_size, args.rows, len(dataset)))])
        batch.pop("skipped_rows")
        own, labels = token_losses(model, batch)
        pixels, counts = batch["pixel_values_videos"], batch["video_num_frames"]  # the last video moves to the front
        other, _ = token_losses(
            model, {**batch, "pixel_values_videos": pixels.roll(int(counts[-1]), 0), "video_num_frames": counts.roll(1)}
        )
        mask = labels != -100
        totals["own"] += own[mask].sum().item()
        totals["other"] += other[mask].sum().item()
        scored += int(mask.sum())
        for row, position in mask.nonzero().tolist():
            word = processor.tokenizer.decode([int(labels[row, position])])
            gains[word].append(other[row, position].item() - own[row, position].item())
    words = sorted(
        ({"token": w, "gain_nats": sum(v) / len(v), "count": len(v)} for w, v in gains.items() if len(v) >= args.min_count),
        key=lambda item: -item["gain_nats"],
    )
    report = {
        "benchmark": "video_use",
        "model": args.model,
        "data": args.data,
        "rows": min(args.rows, len(dataset)),
        "scored_tokens": scored,
        "loss_own_video": totals["own"] / scored,
        "loss_other_video": totals["other"] / scored,
        "words": words,
    }
    print(f"loss with its own video {report['loss_own_video']:.4f}, with another row's {report['loss_other_video']:.4f}")
    for item in words[:15]:
        print(f"{item['token']!r:16} {item['gain_nats']:7.3f} nats cheaper with its own video (n={item['count']})")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
