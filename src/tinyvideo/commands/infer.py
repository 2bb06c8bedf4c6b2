"""`tinyvideo infer`: answer a question about a video."""

from __future__ import annotations

import argparse

import torch

from tinyvideo.answers import HEDGED
from tinyvideo.checkpoints import DTYPES
from tinyvideo.flags import add_frame_arguments, frame_sampling, non_negative_float, non_negative_int, positive_int
from tinyvideo.inference import answer_question, require_question
from tinyvideo.modeling import TinyVideoForConditionalGeneration
from tinyvideo.processing import TinyVideoProcessor, trained_frame_sampling
from tinyvideo.video import read_frames


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint folder (tinyvideo or published TinyLLaVA format)")
    parser.add_argument("--video", required=True, help="video file, folder of frames, or image")
    parser.add_argument("--question", required=True, help="the question; list options on their own lines as 'A. ...'")
    parser.add_argument("--mode", choices=["option", "reason"], help="append the Option or Reason instruction")
    add_frame_arguments(parser)
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps, ...")
    parser.add_argument("--max-new-tokens", type=positive_int, default=512)
    parser.add_argument("--temperature", type=non_negative_float, default=0.0, help="0 = greedy")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed for sampling")


def run(args: argparse.Namespace) -> int:
    """The question, the video and the flags are checked before the model is loaded."""
    require_question(args.question)
    rule = frame_sampling(args, trained_frame_sampling(args.model))
    frames, _ = read_frames(args.video, rule.num_frames, rule.fps, rule.max_frames)
    processor = TinyVideoProcessor.from_pretrained(args.model)
    model = TinyVideoForConditionalGeneration.from_pretrained(args.model, dtype=DTYPES[args.dtype]).to(args.device)
    model.eval()
    sampling = {}
    if args.temperature > 0:
        torch.manual_seed(args.seed)
        sampling = {"do_sample": True, "temperature": args.temperature}
    result = answer_question(model, processor, frames, args.question, args.mode, args.max_new_tokens, **sampling)
    if args.mode == "reason" and result.reasoning is not None:
        print(f"reasoning: {result.reasoning}")
    print(f"answer: {result.text}")
    if args.mode is not None:
        reason = "the answer names more than one option" if result.method == HEDGED else "no option could be read"
        print(f"option: {result.letter or f'none ({reason})'}")
    return 0
