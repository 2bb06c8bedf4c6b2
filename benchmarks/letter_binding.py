"""Can a language model name the letter of an answer it is told? Multiple-choice symbol binding, text only.

Option mode needs two skills: knowing the answer, and naming its option's letter. On the synthetic suite a
tiny model trained from scratch gains the first (Cloze mode shows it) and not the second. This benchmark
measures the second alone. Each row is one of the suite's questions with its lettered options and the
Option-mode instruction, followed by "The answer is <option text>.", in the `qwen2_base` chat template; the
model must reply with that option's letter. No video and no knowledge is needed, only matching the stated
answer to its option line and copying the letter in front of it, which a pretrained language model does
without training.

The language model is trained on such rows from the suite's train split (the letter's cross-entropy over
the whole vocabulary, as supervised fine-tuning has it) and scored on the test split, per task, every
`--eval-every` steps; accuracy at step 0 is the model as loaded. The splits are the suite's own for `--seed`
(0, the suite's default; `--train-per-task` beyond the small scale's 280 draws further questions of the same split).

    python benchmarks/letter_binding.py [--layers 4 --hidden 128]   # a new tiny model, as the suite's recipes build
    python benchmarks/letter_binding.py --model runs/synth/pretrain/model --steps 0   # a trained model as is
    python benchmarks/letter_binding.py --model runs/base/language/model --steps 0   # a base language model as is
    python benchmarks/letter_binding.py --model runs/smollm2/base --lora-r 16 --batch-size 8 --lr 1e-3   # LoRA

`--rows reading` asks instead about the clip's caption, the answer not stated (`synth_formats.reading_question`):
reading comprehension, what a model needs before it answers the same question from the video:

    python benchmarks/letter_binding.py --model runs/base/smollm2-words/model --rows reading --chat-format tokenizer --steps 0
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from peft import LoraConfig, inject_adapter_in_model
from transformers import AutoTokenizer, Qwen2ForCausalLM

from tinyvideo import TinyVideoForConditionalGeneration, TinyVideoProcessor
from tinyvideo.data.synth import design_split
from tinyvideo.data.synth_formats import reading_question
from tinyvideo.data.synth_questions import Clip, Question
from tinyvideo.processing import CHAT_FORMATS
from tinyvideo.scratch import spare_rows, tiny_config, train_tokenizer
from tinyvideo.train.language import (
    binding_accuracy,
    binding_prompt,
    left_padded,
    letter_token_ids,
    next_token_logits,
    prompt_ids,
)

ROOT = Path(__file__).resolve().parents[1]


def split_clips(seed: int, split: str, per_task: int) -> list[Clip]:
    """The clips of the suite's `split` with this seed (no video rendered): `per_task` of every task."""
    return design_split(seed, split, per_task)


def asked(clips: list[Clip], rows: str) -> list[Question | str]:
    """What each row asks: the question with its answer stated (`told`), or about the clip's caption (`reading`)."""
    return [reading_question(c) if rows == "reading" else c.question for c in clips]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a tinyvideo model folder (its language model and tokenizer); default: a new tiny one")
    parser.add_argument("--layers", type=int, default=4, help="depth of a new tiny language model")
    parser.add_argument("--hidden", type=int, default=128, help="width of a new tiny language model")
    parser.add_argument(
        "--letters-apart", action="store_true", help="a new model's tokenizer keeps ' A' as ' ' + 'A' (as the base model's)"
    )
    parser.add_argument("--train-per-task", type=int, default=430, help="training questions per task (3,010 in all)")
    parser.add_argument("--test-per-task", type=int, default=40, help="the small scale's test split: 280 in all")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--chat-format", default="qwen2_base", choices=CHAT_FORMATS, help="the prompts' template: qwen2_base or the tokenizer's"
    )
    parser.add_argument(
        "--lora-r", type=int, default=0, help="train LoRA adapters of this rank (alpha 2r) on every Linear layer, not all weights"
    )
    parser.add_argument(
        "--rows", choices=("told", "reading"), default="told", help="the answer stated (told) or the clip's caption given (reading)"
    )
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "letter_binding.json"))
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    train_clips, test_clips = split_clips(args.seed, "train", args.train_per_task), split_clips(args.seed, "test", args.test_per_task)
    train, test = [c.question for c in train_clips], [c.question for c in test_clips]
    language_model_only = args.model and json.loads((Path(args.model) / "config.json").read_text())["model_type"] == "qwen2"
    if language_model_only:
        model, tokenizer = Qwen2ForCausalLM.from_pretrained(args.model), AutoTokenizer.from_pretrained(args.model)
    elif args.model:
        model = TinyVideoForConditionalGeneration.from_pretrained(args.model).language_model
        tokenizer = TinyVideoProcessor.from_pretrained(args.model).tokenizer
    else:
        texts = [binding_prompt(q) + f" {q.answer}" for q in train]
        tokenizer = train_tokenizer(texts, vocab_size=1024, letters_apart=args.letters_apart)
        config = tiny_config(spare_rows(tokenizer), tokenizer.eos_token_id, hidden_size=args.hidden, num_layers=args.layers)
        model = Qwen2ForCausalLM(config.text_config)
    if args.lora_r:
        model.requires_grad_(False)
        inject_adapter_in_model(LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r, target_modules="all-linear"), model)
    model.to(args.device).train()
    prompts = [prompt_ids(tokenizer, a, args.chat_format) for a in asked(train_clips, args.rows)]
    letters = letter_token_ids(tokenizer, args.chat_format).to(args.device)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=args.lr, weight_decay=0.0)
    rng = np.random.default_rng(args.seed)
    test_asked = asked(test_clips, args.rows)
    score = lambda: binding_accuracy(model, tokenizer, test, chat_format=args.chat_format, asked=test_asked)  # noqa: E731
    curve = [{"step": 0, "seconds": 0.0, **score()}]
    started = time.perf_counter()
    for step in range(1, args.steps + 1):
        rows = rng.choice(len(train), args.batch_size, replace=False)
        inputs = left_padded(tokenizer, [prompts[i] for i in rows])
        logits = next_token_logits(model, {k: v.to(args.device) for k, v in inputs.items()})
        answers = torch.tensor([train[i].answer_index for i in rows], device=args.device)
        loss = F.cross_entropy(logits, letters[answers])  # over the whole vocabulary, as SFT
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        optimizer.zero_grad()
        if step % args.eval_every == 0 or step == args.steps:
            point = {"step": step, "seconds": round(time.perf_counter() - started, 1), "loss": loss.item()}
            curve.append({**point, **score()})
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in curve[-1].items()}), flush=True)
    result = {
        "model": args.model or f"new tiny Qwen2, {args.layers} layers, width {args.hidden}",
        "parameters": sum(p.numel() for p in model.parameters()),
        "trained_parameters": sum(p.numel() for p in trained),
        "settings": {k: v for k, v in vars(args).items() if k not in ("output", "model")},
        "train_questions": len(train),
        "test_questions": len(test),
        "chance": 100.0 * np.mean([1 / len(q.options) for q in test]),
        "curve": curve,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
