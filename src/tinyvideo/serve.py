"""The web page of `tinyvideo serve`: it answers questions about a video, the reasoning shown as it is written.

    tinyvideo serve --model DIR [--samples SUITE] [--port 7860] [--host 127.0.0.1]

The page (Gradio, an optional dependency: `pip install gradio`) takes an uploaded video or one of the
sample clips of a generated synthetic suite, a question and a mode. `generate` runs in a worker thread
and hands its text to the page through `TextIteratorStreamer`, so a Reason-mode answer appears token
by token. Requests are served one at a time: there is one model, and a CPU or GPU answers faster
alone than shared.

Bad input gets a message, never a stack trace: uploads above `--max-upload-mb` are refused by the
server before they are stored, a video longer than `--max-duration` is refused once its frame count
and rate are known (before any frame is decoded; a video whose timestamps cannot tell its frames apart
has no known length and is bounded by its size alone), and an unreadable file is named with the reason.
The server binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from threading import Thread

import numpy as np
import torch
from transformers import TextIteratorStreamer

from tinyvideo.answers import extract_answer, question_options
from tinyvideo.data.synth import load_suite
from tinyvideo.inference import question_prompt
from tinyvideo.video import VideoDecodeError, read_frames, uniform_indices

MODES = ("option", "reason")
SAMPLES_PER_TASK = 1


class VideoRejected(ValueError):
    """A video the server will not answer about; the message is shown to the user as it is."""


@dataclass(frozen=True)
class Limits:
    """What the server accepts, and how much the model sees and writes per question."""

    max_upload_mb: float = 50.0
    max_duration: float = 600.0
    num_frames: int = 16
    max_new_tokens: int = 512


@dataclass(frozen=True)
class Sample:
    """A clip offered on the page, with a question about it."""

    video: Path
    question: str


def load_frames(path: str | Path | None, limits: Limits) -> np.ndarray:
    """The frames the model sees, or `VideoRejected` saying what is wrong with the file."""
    if path is None:
        raise VideoRejected("No video: upload one or pick a sample.")
    path = Path(path)
    size_mb = path.stat().st_size / 2**20 if path.is_file() else 0.0
    if size_mb > limits.max_upload_mb:
        raise VideoRejected(f"{path.name} is {size_mb:.1f} MB; videos up to {limits.max_upload_mb:g} MB are accepted.")

    def choose(total: int, rate: float | None):
        if rate is not None and total / rate > limits.max_duration:
            raise VideoRejected(
                f"{path.name} lasts {total / rate:.0f} s; videos up to {limits.max_duration:g} s are accepted."
            )
        return uniform_indices(total, limits.num_frames)

    try:
        frames, _ = read_frames(path, indices=choose)
    except VideoRejected:
        raise
    except (VideoDecodeError, ValueError) as error:
        reason = str(error).removeprefix(f"{path}: ")  # the server's temporary path means nothing to the user
        raise VideoRejected(f"{path.name} cannot be read as a video: {reason}.") from error
    return frames


def stream_answer(model, processor, frames, question: str, mode: str, max_new_tokens: int) -> Iterator[str]:
    """The response so far, after each new piece of text; greedy, as `tinyvideo.inference.answer_question`."""
    batch = processor(text=[question_prompt(processor, question, mode, len(frames))], videos=[frames]).to(model.device)
    streamer = TextIteratorStreamer(processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
    failure: list[BaseException] = []

    def generate() -> None:
        try:
            with torch.no_grad():
                model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, streamer=streamer)
        except BaseException as error:  # handed to the caller's thread below
            failure.append(error)
            streamer.end()

    worker = Thread(target=generate, daemon=True)
    worker.start()
    text = ""
    for piece in streamer:
        text += piece
        yield text.strip()
    worker.join()
    if failure:
        raise failure[0]


def answer_line(response: str, question: str, mode: str) -> str:
    """The chosen option with its text when the question lists options ("A. ..." lines), else the response.

    The option is read against the options' texts, as `tinyvideo infer` and evaluation read it.
    """
    options = question_options(question)
    if not options:
        return response
    extracted = extract_answer(response, options)
    if extracted.hedged:
        return f"the {mode}-mode response names more than one option"
    if extracted.letter is None:
        return f"no option could be read from the {mode}-mode response"
    return f"{extracted.letter}. {options[extracted.letter]}"


def load_samples(root: Path) -> dict[str, Sample]:
    """The first test clip of each task of a generated suite, with its question and options."""
    suite = load_suite(root)
    samples, per_task = {}, {}
    for record in suite.records("test"):
        task = record["task"]
        if per_task.get(task, 0) < SAMPLES_PER_TASK:
            per_task[task] = per_task.get(task, 0) + 1
            options = "\n".join(f"{letter}. {text}" for letter, text in zip("ABCDEFGH", record["options"]))
            samples[f"{task}: {record['id']}"] = Sample(suite.video_root / record["video"], f"{record['question']}\n{options}")
    return samples


def build_app(model, processor, samples: dict[str, Sample] | None = None, limits: Limits = Limits()):
    """The page as a `gradio.Blocks`; `launch` it, or mount it in a FastAPI app."""
    import gradio as gr

    samples = samples or {}

    def respond(video, question: str, mode: str):
        if not question or not question.strip():
            raise gr.Error("Type a question; list options on their own lines as 'A. ...' for an option answer.")
        try:
            frames = load_frames(video, limits)
        except VideoRejected as error:
            raise gr.Error(str(error)) from None
        response = ""
        for response in stream_answer(model, processor, frames, question, mode, limits.max_new_tokens):
            yield response, ""
        yield response, answer_line(response, question, mode)

    def pick(name: str | None):
        sample = samples.get(name)
        return (None, "") if sample is None else (str(sample.video), sample.question)

    with gr.Blocks(title="tinyvideo", analytics_enabled=False) as app:
        gr.Markdown(
            "## tinyvideo\nAsk a question about a video. List the options on their own lines (`A. ...`); "
            "Option mode answers with a letter, Reason mode thinks aloud first. "
            f"Videos up to {limits.max_upload_mb:g} MB and {limits.max_duration:g} s; "
            f"the model sees {limits.num_frames} frames spread over the whole clip."
        )
        with gr.Row():
            with gr.Column():
                video = gr.Video(label="video", sources=["upload"], height=320, elem_id="video")
                if samples:
                    sample = gr.Dropdown(list(samples), value=None, label="or pick a sample clip", elem_id="sample")
                question = gr.Textbox(label="question", lines=5, elem_id="question")
                mode = gr.Radio(list(MODES), value="reason", label="mode", elem_id="mode")
                ask = gr.Button("Ask", variant="primary", elem_id="ask")
            with gr.Column():
                response = gr.Textbox(label="model output", lines=12, interactive=False, elem_id="response")
                answer = gr.Textbox(label="answer", interactive=False, elem_id="answer")
        if samples:
            sample.change(pick, sample, [video, question])
        ask.click(respond, [video, question, mode], [response, answer])
    return app


def launch(app, host: str, port: int | None, limits: Limits, samples: dict[str, Sample], block: bool = True):
    """Start the server; `block=False` returns once it listens (for tests)."""
    folders = sorted({str(s.video.parent.resolve()) for s in samples.values()})
    return app.queue(default_concurrency_limit=1).launch(
        server_name=host,
        server_port=port,
        max_file_size=f"{int(limits.max_upload_mb * 1024)}kb",
        allowed_paths=folders,
        prevent_thread_lock=not block,
        share=False,
        quiet=not block,
    )
