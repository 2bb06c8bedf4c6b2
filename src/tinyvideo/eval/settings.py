"""What decides an evaluation's answers (`Settings`), the benchmarks' adapters, and the questions they load."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from tinyvideo.answers import format_options
from tinyvideo.errors import InputError
from tinyvideo.eval.benchmarks import longvideobench, mlvu, mmvu, mvbench, nextqa, synth, videomme
from tinyvideo.eval.benchmarks.common import WITH_SUBTITLES, AnnotationError, Question, Sampling
from tinyvideo.prompts import question_with_instruction
from tinyvideo.video import FrameSampling


BENCHMARKS = {
    "videomme": videomme,
    "longvideobench": longvideobench,
    "mvbench": mvbench,
    "mlvu": mlvu,
    "mmvu": mmvu,
    "nextqa": nextqa,
    "synth": synth,
}
# Adapter options and the benchmarks that take them.
ADAPTER_OPTIONS = {"duration": ("videomme",), "split": ("nextqa", "synth"), "subtitles": ("videomme", "longvideobench")}
MODES = ("option", "reason", "cloze")
# Controls: the model answers each question with the video of another question ("shuffled-video"), or
# with only the last of its sampled frames, repeated ("last-frame"). Scored as usual, they show how much
# of an accuracy the video gives: a model that uses the video falls to chance under the first, and on
# questions about change over time under the second.
CONTROLS = ("shuffled-video", "last-frame")


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything that decides the answers; a predictions file is only ever resumed under the same settings.
    `frames`, `fps` and `max_frames` are a `FrameSampling`'s `num_frames`, `fps` and `max_frames`."""

    benchmark: str
    data: str
    model: str
    mode: str = "option"
    frames: int | None = 16
    fps: float | None = None
    max_frames: int | None = None
    duration: str = "all"
    split: str = "test"
    subtitles: bool = False
    limit: int | None = None
    temperature: float = 0.0
    seed: int | None = None
    max_new_tokens: int = 1024
    dtype: str = "float32"
    control: str | None = None
    cloze_options: bool = False  # Cloze mode with the lettered options listed under the question

    def __post_init__(self):
        if self.benchmark not in BENCHMARKS:
            raise InputError(f"unknown benchmark {self.benchmark!r}; expected one of {sorted(BENCHMARKS)}")
        defaults = {f.name: f.default for f in dataclasses.fields(self) if f.name in ADAPTER_OPTIONS}
        changed = {name: getattr(self, name) for name, default in defaults.items() if getattr(self, name) != default}
        refuse_unused_options(self.benchmark, changed)
        if self.mode not in MODES:
            raise InputError(f"mode must be one of {', '.join(MODES)}; got {self.mode!r}")
        if self.cloze_options and self.mode != "cloze":
            raise InputError(f"cloze_options lists the options in the Cloze prompt: it needs mode cloze, not {self.mode}")
        if self.control is not None and self.control not in CONTROLS:
            raise InputError(f"control must be one of {', '.join(CONTROLS)}; got {self.control!r}")
        FrameSampling(self.frames, self.fps, self.max_frames)  # refuses a bad frame setting
        if self.temperature > 0 and self.seed is None:
            raise InputError("sampling (temperature > 0) needs a seed, so that the run can be repeated")
        if self.limit is not None and self.limit < 1:
            raise InputError(f"limit must be at least 1, got {self.limit}")
        if self.max_new_tokens < (0 if self.mode == "cloze" else 1):  # Cloze mode generates nothing
            raise InputError(f"max_new_tokens must be at least 1 for {self.mode} mode, got {self.max_new_tokens}")
        if not self.temperature >= 0:
            raise InputError(f"temperature must be at least 0, got {self.temperature}")


def refuse_unused_options(benchmark: str, given: dict) -> None:
    """`InputError` for an adapter option (`ADAPTER_OPTIONS`) given to a benchmark that does not take it:
    it would be ignored, and the run would not be what was asked for."""
    for name, value in given.items():
        if benchmark not in ADAPTER_OPTIONS[name]:
            users = ", ".join(ADAPTER_OPTIONS[name])
            flag = f"--{name}" if value is True else f"--{name} {value}"
            raise InputError(f"{benchmark} takes no {flag}: --{name} is for {users}")


def load_questions(settings: Settings) -> list[Question]:
    """The benchmark's questions in its files' order, `limit` applied (`first_questions`); ids must be
    unique. In Cloze mode the prompt is the question with the short-answer instruction, its lettered options
    between them with `cloze_options`."""
    adapter = BENCHMARKS[settings.benchmark]
    options = {name: getattr(settings, name) for name, users in ADAPTER_OPTIONS.items() if settings.benchmark in users}
    questions = adapter.load(Path(settings.data), "option" if settings.mode == "cloze" else settings.mode, **options)
    if settings.mode == "cloze":
        questions = [dataclasses.replace(q, prompt=cloze_prompt(q, settings.cloze_options)) for q in questions]
    seen: set[str] = set()
    for question in questions:
        if question.id in seen:
            raise AnnotationError(f"{settings.benchmark}: question id {question.id!r} occurs twice in {settings.data}")
        seen.add(question.id)
    questions = first_questions(questions, settings.limit)
    return with_videos_shifted(questions) if settings.control == "shuffled-video" else questions


def cloze_prompt(question: Question, options_listed: bool) -> str:
    """The question and the short-answer instruction; with `options_listed`, the "A. text" lines between them.
    Listed, the options' texts are scored where a multiple-choice prompt shows them: a model that finds the
    answer in the bare prompt but not here does not read the video when options are listed."""
    text = question.text + ("\n" + format_options(question.options, "dot") if options_listed else "")
    return question_with_instruction(text, "cloze")


def with_videos_shifted(questions: Sequence[Question]) -> list[Question]:
    """Each question about the next distinct video of the list (the last about the first), with the frame
    rule of that video's first question: every question gets another video, and every video is still used.
    `InputError` when the questions are about fewer than two videos."""
    rules: dict[str, Sampling] = {}
    for question in questions:
        rules.setdefault(question.video, question.sampling)
    videos = list(rules)
    if len(videos) < 2:
        raise InputError(f"the shuffled-video control needs questions about at least two videos; these have {len(videos)}")
    following = dict(zip(videos, videos[1:] + videos[:1], strict=True))
    return [dataclasses.replace(q, video=following[q.video], sampling=rules[following[q.video]]) for q in questions]


def first_questions(questions: Sequence[Question], limit: int | None) -> list[Question]:
    """The first `limit` questions (all when None), each with its setting with subtitles where it is asked
    both ways (which follows it, see `both_settings`): `limit` counts questions, not prompts."""
    kept, counted = [], 0
    for question in questions:
        counted += question.categories.get("subtitles") != WITH_SUBTITLES
        if limit is not None and counted > limit:
            break
        kept.append(question)
    return kept


def shard_of(questions: Sequence[Question], index: int, count: int) -> list[Question]:
    """Every `count`-th video from the `index`-th, with all of its questions: a video is decoded in one shard only."""
    videos = list(dict.fromkeys(q.video for q in questions))
    mine = set(videos[index::count])
    return [q for q in questions if q.video in mine]
