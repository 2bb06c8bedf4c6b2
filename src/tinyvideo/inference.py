"""Answer a question about a video: `tinyvideo infer` and its Python counterpart `answer_question`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tinyvideo.errors import InputError
from tinyvideo.eval.answers import HEDGED, OPTION_LINE, extract_answer, question_options
from tinyvideo.flags import add_frame_arguments, frame_sampling, non_negative_float, non_negative_int, positive_int

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Answer:
    """A response; in option/reason mode also the option read from it, how (`method`, see
    `tinyvideo.eval.answers.Extracted`), and its reasoning."""

    text: str
    letter: str | None = None
    reasoning: str | None = None
    method: str | None = None


def read_answer(text: str, question: str, mode: str | None) -> Answer:
    """The response with the option it chose, read against the options the question lists ("A. ..." lines)
    as evaluation reads it; only the text when no mode was asked or the question lists no options."""
    options = question_options(question)
    if mode is None or not options:
        return Answer(text)
    extracted = extract_answer(text, options)
    return Answer(text, extracted.letter, extracted.reasoning, extracted.method)


def require_question(question: str) -> None:
    """`InputError` for a question that is empty or only whitespace: the model would be asked nothing."""
    if not question.strip():
        raise InputError("the question is empty: ask something about the video (options on their own lines as 'A. ...')")


def question_prompt(processor, question: str, mode: str | None, num_frames: int) -> str:
    """The chat prompt for a question about a video of `num_frames` frames, fit to the model's length by
    shortening the question's own text, before or after its option lines, whichever is longer (see
    `TinyVideoProcessor.fit_prompt`); the option lines are never cut. `InputError` for an empty question."""
    require_question(question)
    options = list(OPTION_LINE.finditer(question))
    if options:
        before, after = question[: options[0].start()], question[options[-1].end() :]
        free_text = max(before.strip(), after.strip(), key=len)
    else:
        free_text = question.strip()
    return processor.fit_prompt(processor.chat_prompt(question, mode), free_text, [num_frames])


def answer_question(
    model, processor, frames, question: str, mode: str | None = None, max_new_tokens: int = 512, **generate_kwargs
) -> Answer:
    """Greedy unless sampling arguments are given; in option/reason mode also extract the chosen option.
    `InputError` for an empty question."""
    batch = processor(text=[question_prompt(processor, question, mode, len(frames))], videos=[frames]).to(model.device)
    generate_kwargs.setdefault("do_sample", False)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=max_new_tokens, **generate_kwargs)
    return read_answer(processor.decode(out[0, batch["input_ids"].shape[1] :]).strip(), question, mode)


def add_arguments(parser) -> None:
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


def run(args) -> int:
    """The question, the video and the flags are checked before the model is loaded."""
    from tinyvideo import TinyVideoForConditionalGeneration, TinyVideoProcessor
    from tinyvideo.video import read_frames

    require_question(args.question)
    num_frames, fps, max_frames = frame_sampling(args)
    frames, _ = read_frames(args.video, num_frames=num_frames, fps=fps, max_frames=max_frames)
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
