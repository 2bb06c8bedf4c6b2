"""Answering a question about a video, from Python (`answer_question`) and for `tinyvideo infer` and the web page."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tinyvideo.answers import OPTION_LINE, extract_answer, question_options
from tinyvideo.errors import InputError


@dataclass
class Answer:
    """A response; in option/reason mode also the option read from it, how (`method`, see
    `tinyvideo.answers.Extracted`), and its reasoning."""

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
