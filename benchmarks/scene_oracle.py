"""Can a language model learn the suite's questions when it is given perfect perception as text?

Every question of the suite is asked about a written account of its clip instead of the video:
- `--describe frames`: every frame's visible objects, "t: colour shape x y, ..." (x, y: the centre on an
  8 x 8 grid), what a perfect vision tower and connector would hand over;
- `--describe caption`: the clip's caption (its first frame, its events in order, its last frame), the
  text the `pretrain` stage teaches the model to write.
The language model is trained on fresh train-split questions (seeds 1.. of the suite, never its test
split) and scored every `--eval-every` steps on the test split of seed 0 (280 questions, chance 22.9%) in
two ways: Option accuracy, the option letter with the highest next-token logit after the question with its
lettered options; Cloze accuracy, the option whose text (then ".") is the most likely reply to the bare
question with the short-answer instruction (sum of its tokens' log-probabilities). `--objective` says what
it is trained on: `letter` (cross-entropy of the letter), `answer` (the answer's text after the bare
question), or `both` (half of each batch each way). AdamW at `--lr` after a linear warm-up over the first
`--warmup-steps` (100), gradients clipped at norm 1; `--lora R` trains rank-R adapters on every Linear layer instead of
every weight, `--bf16` runs the matrix products in bfloat16 (CPU autocast). A model that stays at chance
here cannot answer from the video either, however well it sees.

    python benchmarks/scene_oracle.py --model runs/base/language/model --describe caption [--steps 2000]
    python benchmarks/scene_oracle.py --model $GGUF \
        --lora 16 --bf16 --objective answer --steps 50 --eval-every 50 --batch-size 8 --lr 3e-4 --warmup-steps 0
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from peft import LoraConfig, inject_adapter_in_model

from tinyvideo.data.synth import design_split
from tinyvideo.data.synth_formats import option_lines
from tinyvideo.data.synth_questions import Clip
from tinyvideo.data.synth_scenes import OBJECT, Scene
from tinyvideo.data.synth_text import caption
from tinyvideo.files import write_json
from tinyvideo.flags import positive_float, positive_int
from tinyvideo.processing import conversation_segments
from tinyvideo.prompts import question_with_instruction
from tinyvideo.scratch import load_language_model
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


def prompt_ids(tokenizer, clip: Clip, describe: str, mode: str = "option") -> list[int]:
    """The account and the question as a `qwen2_base` prompt: in `option` mode with its lettered options and
    the Option instruction, followed by whatever the reply holds before its letter (the next token is the
    letter); in `cloze` mode bare, with the short-answer instruction."""
    account = frame_lines(clip.scene) if describe == "frames" else caption(clip.scene)
    question = clip.question
    asked = f"{question.question}\n{option_lines(question.options)}" if mode == "option" else question.question
    told = account + "\n" + question_with_instruction(asked, mode)
    ids = tokenizer("".join(s.text for s in conversation_segments([{"from": "human", "value": told}])))["input_ids"]
    return ids + tokenizer(" A")["input_ids"][:-1] if mode == "option" else ids


def reply_ids(tokenizer, text: str) -> list[int]:
    """An answer's text as the reply to a Cloze prompt: " text." """
    return tokenizer(f" {text}.", add_special_tokens=False)["input_ids"]


def reply_logprobs(model, tokenizer, prompts: list[list[int]], replies: list[list[int]]) -> torch.Tensor:
    """Sum of log p(reply token | prompt, earlier reply tokens) per row [N]; only the replies' logits are computed."""
    width = max(map(len, replies))
    batch = left_padded(tokenizer, [p + r for p, r in zip(prompts, replies, strict=True)])
    logits = model(**batch, logits_to_keep=width + 1).logits[:, :-1].float()
    ids = batch["input_ids"][:, -width:]
    logprobs = logits.log_softmax(-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    in_reply = torch.arange(width) >= width - torch.tensor([len(r) for r in replies]).unsqueeze(1)
    return (logprobs * in_reply).sum(1)


def by_task(hits: list[tuple[str, bool]]) -> dict[str, float]:
    tasks = sorted({task for task, _ in hits})
    return {"all": 100.0 * float(np.mean([h for _, h in hits])), **{t: 100.0 * float(np.mean([h for u, h in hits if u == t])) for t in tasks}}


@torch.no_grad()
def option_accuracy(model, tokenizer, clips: list[Clip], describe: str, letters: torch.Tensor) -> dict[str, float]:
    hits = []
    for start in range(0, len(clips), 32):
        chunk = clips[start : start + 32]
        logits = next_token_logits(model, left_padded(tokenizer, [prompt_ids(tokenizer, c, describe) for c in chunk]))[:, letters]
        for clip, row in zip(chunk, logits, strict=True):
            hits.append((clip.question.task, int(row[: len(clip.question.options)].argmax()) == clip.question.answer_index))
    return by_task(hits)


@torch.no_grad()
def cloze_accuracy(model, tokenizer, clips: list[Clip], describe: str) -> dict[str, float]:
    hits = []
    for start in range(0, len(clips), 8):
        chunk = clips[start : start + 8]
        counts = [len(c.question.options) for c in chunk]
        prompts = [prompt_ids(tokenizer, c, describe, "cloze") for c, n in zip(chunk, counts) for _ in range(n)]
        replies = [reply_ids(tokenizer, text) for c in chunk for text in c.question.options]
        scores = reply_logprobs(model, tokenizer, prompts, replies).split(counts)
        hits += [(c.question.task, int(s.argmax()) == c.question.answer_index) for c, s in zip(chunk, scores, strict=True)]
    return by_task(hits)


def training_loss(model, tokenizer, clips: list[Clip], describe: str, objective: str, letters: torch.Tensor) -> torch.Tensor:
    """Mean over the batch: the letter's cross-entropy, or the answer text's negative log-likelihood (`both`:
    the first half of the clips one way, the rest the other)."""
    half = {"letter": 0, "answer": len(clips), "both": len(clips) // 2}[objective]
    loss = torch.zeros(())
    if half:
        prompts = [prompt_ids(tokenizer, c, describe, "cloze") for c in clips[:half]]
        replies = [reply_ids(tokenizer, c.question.answer_text) for c in clips[:half]]
        loss = loss - reply_logprobs(model, tokenizer, prompts, replies).sum()
    if half < len(clips):
        batch = left_padded(tokenizer, [prompt_ids(tokenizer, c, describe) for c in clips[half:]])
        targets = letters[[c.question.answer_index for c in clips[half:]]]
        loss = loss + F.cross_entropy(next_token_logits(model, batch).float(), targets, reduction="sum")
    return loss / len(clips)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a causal language model folder with its tokenizer, or a .gguf file")
    parser.add_argument("--describe", choices=("frames", "caption"), default="caption")
    parser.add_argument("--steps", type=positive_int, default=2000)
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--lr", type=positive_float, default=5e-4)
    parser.add_argument("--train-seeds", type=positive_int, default=20, help="train-split clips of seeds 1..N (1,960 each)")
    parser.add_argument("--eval-every", type=positive_int, default=250)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup-steps", type=int, default=100, help="linear warm-up of the learning rate (0: none)")
    parser.add_argument("--objective", choices=("letter", "answer", "both"), default="letter")
    parser.add_argument("--lora", type=int, default=0, help="rank of LoRA adapters on every Linear layer (0: train every weight)")
    parser.add_argument("--bf16", action="store_true", help="bfloat16 matrix products (CPU autocast)")
    parser.add_argument("--output", default=None, help="default: benchmarks/results/scene_oracle_<describe>_<objective>.json")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    model, tokenizer = load_language_model(args.model, dtype=torch.float32)
    if args.lora:
        inject_adapter_in_model(LoraConfig(r=args.lora, lora_alpha=2 * args.lora, target_modules="all-linear"), model)
        for name, weight in model.named_parameters():
            weight.requires_grad_("lora_" in name)
    trained = [weight for weight in model.parameters() if weight.requires_grad]
    letters = letter_token_ids(tokenizer)
    train = [clip for seed in range(1, args.train_seeds + 1) for clip in design_split(seed, "train", 280)]
    test = design_split(0, "test", 40)
    optimizer = torch.optim.AdamW(trained, lr=args.lr, weight_decay=0.0)
    warmup = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / max(args.warmup_steps, 1)))
    rng = np.random.default_rng(args.seed)
    started, curve = time.perf_counter(), []
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            model.eval()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                scores = {"option": option_accuracy(model, tokenizer, test, args.describe, letters),
                          "cloze": cloze_accuracy(model, tokenizer, test, args.describe)}
            model.train()
            curve.append({"step": step, "seconds": round(time.perf_counter() - started, 1), **scores})
            print(step, {mode: round(cell["all"], 1) for mode, cell in scores.items()}, flush=True)
        if step == args.steps:
            break
        clips = [train[i] for i in rng.integers(len(train), size=args.batch_size)]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = training_loss(model, tokenizer, clips, args.describe, args.objective, letters)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        warmup.step()

    output = Path(args.output or ROOT / "benchmarks" / "results" / f"scene_oracle_{args.describe}_{args.objective}.json")
    report = {"benchmark": "scene_oracle", "model": args.model, "settings": vars(args), "chance": 22.857142857142858,
              "test_questions": len(test), "curve": curve}
    write_json(output, report)
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
