"""Reason-mode evaluation: answers leaving the batch as they end, against `generate` decoding every row to the longest.

A batch of `generate` decodes every question until its longest answer stops; `tinyvideo.decoding.decode`
drops each answer from the batch (and its cache rows) at its end of sequence. The gain depends on how much
the answers' lengths vary: the demo's cold start answers greedily in 52 tokens on average, 69 at most, so
little is dropped (1.06x on 128 questions, 2 cores, most of the time going to the 600-token prompts); GRPO's
sampled rollouts vary far more (3 steps of its recipe: 118.7 s -> 88.6 s). Both ways run the whole harness
(frame decoding, vision tower, prompts) on the same questions in the same process, alternately, `--repeats`
times; the best time of each is kept. Greedy answers must agree: the script reports how many differ (a batch
that shrinks rounds differently, so near-ties may flip).

    python benchmarks/reason_decoding.py --model runs/coldstart/model --data synth [--limit 128] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from tinyvideo import TinyVideoForConditionalGeneration, TinyVideoProcessor
from tinyvideo.eval import answering
from tinyvideo.eval.harness import evaluate
from tinyvideo.eval.predictions import read_predictions
from tinyvideo.eval.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def decode_with_generate(model, prompt_embeds, attention_mask, max_new_tokens, choose, *, warpers, eos_token_id, pad_token_id):
    """`decode`'s greedy answers from `generate`: every row decodes until the last one ends."""
    return model.language_model.generate(
        inputs_embeds=prompt_embeds, attention_mask=attention_mask, do_sample=False, max_new_tokens=max_new_tokens,
        eos_token_id=eos_token_id, pad_token_id=pad_token_id, suppress_tokens=[model.config.video_token_id],
    )


def timed_run(settings, model, processor, batch_size, output: Path) -> tuple[float, list[dict]]:
    begin = time.perf_counter()
    evaluate(settings, output, model, processor, batch_size=batch_size)
    return time.perf_counter() - begin, read_predictions(output / "predictions.jsonl")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a trained model folder (answers of varied length)")
    parser.add_argument("--data", required=True, help="a synthetic suite folder")
    parser.add_argument("--limit", type=int, default=128, help="test questions")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=192)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "reason_decoding.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = Settings("synth", args.data, args.model, mode="reason", frames=args.frames, limit=args.limit,
                        max_new_tokens=args.max_new_tokens)
    model = TinyVideoForConditionalGeneration.from_pretrained(args.model).eval()
    processor = TinyVideoProcessor.from_pretrained(args.model)
    ours, generated = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            seconds, ours_rows = timed_run(settings, model, processor, args.batch_size, Path(tmp) / f"ours-{repeat}")
            ours.append(seconds)
            answering.decode, kept = decode_with_generate, answering.decode
            try:
                seconds, generated_rows = timed_run(settings, model, processor, args.batch_size, Path(tmp) / f"gen-{repeat}")
            finally:
                answering.decode = kept
            generated.append(seconds)
            print(json.dumps({"ours_s": ours[-1], "generate_s": generated[-1]}), flush=True)
    responses = {row["id"]: row["response"] for row in generated_rows}
    differing = sum(row["response"] != responses[row["id"]] for row in ours_rows)
    tokens = [row["new_tokens"] for row in ours_rows]
    result = {
        "benchmark": "reason_decoding",
        "model": args.model,
        "questions": len(ours_rows),
        "batch_size": args.batch_size,
        "frames": args.frames,
        "max_new_tokens": args.max_new_tokens,
        "answer_tokens": {"mean": round(sum(tokens) / len(tokens), 1), "max": max(tokens)},
        "ours_s": round(min(ours), 2),
        "generate_s": round(min(generated), 2),
        "speedup": round(min(generated) / min(ours), 2),
        "responses_differing": differing,
        "accuracy_ours": round(100 * sum(r["correct"] for r in ours_rows) / len(ours_rows), 1),
        "accuracy_generate": round(100 * sum(r["correct"] for r in generated_rows) / len(generated_rows), 1),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
    }
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
