"""Can a language model learn the suite's questions when it is given perfect perception as text?

Every question of the suite is asked about a written account of its clip instead of the video:
- `--describe frames`: every frame's visible objects, "t: colour shape x y, ..." (x, y: the centre on an
  8 x 8 grid), what a perfect vision tower and connector would hand over;
- `--describe caption`: the clip's caption (its first frame, its events in order, its last frame), the
  text the `pretrain` stage teaches the model to write.
The language model is trained on the letter of fresh train-split questions (seeds 1.. of the suite, never
its test split) and scored every `--eval-every` steps on the test split of seed 0 (280 questions, chance
22.9%): the answer is the option letter with the highest next-token logit. AdamW at `--lr` after a linear
warm-up over the first 100 steps, gradients clipped at norm 1. A model that stays at chance
here cannot answer from the video either, however well it sees.

    python benchmarks/scene_oracle.py --model runs/base/language/model --describe caption [--steps 2000]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer

from tinyvideo.data.synth import design_split
from tinyvideo.data.synth_formats import option_lines
from tinyvideo.data.synth_questions import Clip
from tinyvideo.data.synth_scenes import OBJECT, Scene
from tinyvideo.data.synth_text import caption
from tinyvideo.flags import positive_float, positive_int
from tinyvideo.processing import conversation_segments
from tinyvideo.prompts import question_with_instruction
from tinyvideo.train.language import left_padded, letter_token_ids, next_token_logits

ROOT = Path(__file__).resolve().parents[1]
GRID_STEP = 8  # pixels of the 64-pixel frame per grid cell


def frame_lines(scene: Scene) -> str:
    """One line per frame: its visible objects with their centres on the grid."""
    lines = []
    for t in range(len(scene.tracks[0].x)):
        seen = [
            f"{track.colour[t]} {track.shape} {(track.x[t] + OBJECT // 2) // GRID_STEP} {(track.y[t] + OBJECT // 2) // GRID_STEP}"
            for track in scene.tracks
            if track.colour[t] is not None
        ]
        lines.append(f"{t}: " + (", ".join(seen) or "nothing"))
    return "\n".join(lines)


def prompt_ids(tokenizer, clip: Clip, describe: str) -> list[int]:
    """The account, the question with its options and the Option instruction, as a `qwen2_base` prompt,
    followed by whatever the reply holds before its letter: the next token is the letter."""
    account = frame_lines(clip.scene) if describe == "frames" else caption(clip.scene)
    question = clip.question
    told = account + "\n" + question_with_instruction(f"{question.question}\n{option_lines(question.options)}", "option")
    prompt = "".join(s.text for s in conversation_segments([{"from": "human", "value": told}]))
    return tokenizer(prompt)["input_ids"] + tokenizer(" A")["input_ids"][:-1]


@torch.no_grad()
def accuracy(model, tokenizer, clips: list[Clip], rows: list[list[int]], letters: torch.Tensor) -> dict[str, float]:
    model.eval()
    hits = []
    for start in range(0, len(clips), 64):
        logits = next_token_logits(model, left_padded(tokenizer, rows[start : start + 64]))[:, letters]
        for clip, row in zip(clips[start : start + 64], logits, strict=True):
            hits.append((clip.question.task, int(row[: len(clip.question.options)].argmax()) == clip.question.answer_index))
    model.train()
    tasks = sorted({task for task, _ in hits})
    return {"all": 100.0 * float(np.mean([h for _, h in hits])), **{t: 100.0 * float(np.mean([h for u, h in hits if u == t])) for t in tasks}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a causal language model folder with its tokenizer")
    parser.add_argument("--describe", choices=("frames", "caption"), default="caption")
    parser.add_argument("--steps", type=positive_int, default=2000)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--lr", type=positive_float, default=5e-4)
    parser.add_argument("--train-seeds", type=positive_int, default=20, help="train-split clips of seeds 1..N (1,960 each)")
    parser.add_argument("--eval-every", type=positive_int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="default: benchmarks/results/scene_oracle_<describe>.json")
    args = parser.parse_args()

    if not (Path(args.model) / "config.json").is_file():
        parser.error(f"{args.model}: no config.json; --model is a causal language model folder with its tokenizer")
    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(args.model, local_files_only=True, dtype=torch.float32)
    letters = letter_token_ids(tokenizer)
    train = [clip for seed in range(1, args.train_seeds + 1) for clip in design_split(seed, "train", 280)]
    test = design_split(0, "test", 40)
    test_rows = [prompt_ids(tokenizer, clip, args.describe) for clip in test]
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / 100))
    rng = np.random.default_rng(args.seed)
    started, curve = time.perf_counter(), []
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            scores = accuracy(model, tokenizer, test, test_rows, letters)
            curve.append({"step": step, "seconds": round(time.perf_counter() - started, 1), **scores})
            print(step, {k: round(v, 1) for k, v in scores.items()}, flush=True)
        if step == args.steps:
            break
        picks = rng.integers(len(train), size=args.batch_size)
        batch = left_padded(tokenizer, [prompt_ids(tokenizer, train[i], args.describe) for i in picks])
        targets = letters[[train[i].question.answer_index for i in picks]]
        loss = F.cross_entropy(next_token_logits(model, batch), targets)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        warmup.step()

    output = Path(args.output or ROOT / "benchmarks" / "results" / f"scene_oracle_{args.describe}.json")
    report = {"benchmark": "scene_oracle", "model": args.model, "settings": vars(args), "chance": 22.857142857142858,
              "test_questions": len(test), "curve": curve}
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
