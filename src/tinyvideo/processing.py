"""Processor: chat templates, placeholder expansion, training labels and frame preprocessing.

Prompts use the published placeholder text `<image>` for a video. The processor tokenizes the text
between placeholders exactly as the published code does (each chunk on its own, docs/published-format.md 3.1) and
puts `num_visual_tokens` copies of the model's video token where each placeholder was, so every
sequence length is known before the model runs.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import AutoTokenizer, BatchFeature

from tinyvideo import checkpoints
from tinyvideo.config import IGNORE_INDEX, TinyVideoConfig
from tinyvideo.errors import InputError
from tinyvideo.prompts import END_OF_TURN, SYSTEM, question_with_instruction
from tinyvideo.rows import read_json
from tinyvideo.video import FrameSampling
from tinyvideo.vision_towers import HALF, FrameTransform, frame_transform

logger = logging.getLogger(__name__)

PLACEHOLDER = "<image>"
PROCESSOR_FILE = "processor_config.json"
SHORTENED = " [...] "  # stands for the middle of a question's text cut to fit model_max_length

@dataclass(frozen=True)
class Segment:
    text: str
    supervised: bool


CHAT_FORMATS = ("qwen2_base", "tokenizer")  # how a model's conversations are written (its processor keeps one)
TEMPLATES = ("chat", *CHAT_FORMATS, "pretrain")  # "chat": the processor's own chat format


def conversation_segments(messages: Sequence[dict], template: str = "qwen2_base", tokenizer=None) -> list[Segment]:
    """A conversation as text segments, each marked supervised (trained on) or not.

    `messages` are LLaVA-style `{"from": "human"|"gpt", "value": ...}` turns; a final human turn without
    an answer (or an answer of None) gives the generation prompt. `template` is `qwen2_base` (the published
    text template, ending with "ASSISTANT:"), `tokenizer` (the chat template of `tokenizer`, for language
    models of other families) or `pretrain` (captions only). Raises ValueError for turns out of order, an
    unknown template, or a tokenizer without a usable chat template.
    """
    turns = list(messages)
    if turns and turns[0].get("from") != "human":
        turns = turns[1:]
    questions = [t.get("value") for t in turns[0::2]]
    answers = [t.get("value") for t in turns[1::2]] + [None] * (len(turns[0::2]) - len(turns[1::2]))
    if any(t.get("from") != "human" for t in turns[0::2]) or any(t.get("from") != "gpt" for t in turns[1::2]):
        raise ValueError("conversation turns must alternate human, gpt, human, ...")
    if not questions or not isinstance(questions[0], str):
        raise ValueError("conversation has no human turn")
    if template == "pretrain":
        # The human text is discarded; the caption follows the video and ends with a newline, no eos.
        caption = answers[0]
        if caption is None:
            return [Segment(PLACEHOLDER, False)]
        return [Segment(PLACEHOLDER, False), Segment(caption + "\n", True)]
    if PLACEHOLDER in questions[0]:
        questions[0] = (PLACEHOLDER + "\n" + questions[0].replace(PLACEHOLDER, "").strip()).strip()
    if template == "tokenizer":
        return _tokenizer_template_segments(questions, answers, tokenizer)
    if template != "qwen2_base":
        raise ValueError(f"unknown template {template!r}; expected one of {', '.join(TEMPLATES[1:])}")
    segments = [Segment(SYSTEM, False)]
    for question, answer in zip(questions, answers):
        segments.append(Segment(f"USER: {question} ASSISTANT:", False))
        if answer is None:
            break
        segments.append(Segment(f" {answer}{END_OF_TURN}", True))
    return segments


def _tokenizer_template_segments(questions: list[str], answers: list[str | None], tokenizer) -> list[Segment]:
    """The turns written by the tokenizer's chat template: each answer, with the end-of-turn text the
    template puts after it, is the text the conversation gains when the answer is added to its prompt."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ValueError("the 'tokenizer' template needs a tokenizer with a chat template")
    chat, segments, written = [], [], ""
    for question, answer in zip(questions, answers):
        chat.append({"role": "user", "content": question})
        prompt = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        segments.append(Segment(_continuation(prompt, written), False))
        if answer is None:
            break
        chat.append({"role": "assistant", "content": answer})
        written = tokenizer.apply_chat_template(chat, tokenize=False)
        segments.append(Segment(_continuation(written, prompt), True))
    return segments


def _continuation(text: str, prefix: str) -> str:
    if not text.startswith(prefix):
        raise ValueError(
            "the tokenizer's chat template writes a conversation's start differently once it goes on, "
            "so the answers' tokens cannot be told apart; use the qwen2_base template"
        )
    return text[len(prefix) :]


def chat_prompt(question: str, mode: str | None = None, template: str = "qwen2_base", tokenizer=None) -> str:
    """The generation prompt for one question about one video: `qwen2_base` (the published models'), or
    the chat template of `tokenizer` with `template="tokenizer"`."""
    if PLACEHOLDER not in question:
        question = PLACEHOLDER + "\n" + question
    question = question_with_instruction(question, mode)
    return "".join(s.text for s in conversation_segments([{"from": "human", "value": question}], template, tokenizer))


def preprocess_frames(frames, transform: FrameTransform | int) -> torch.Tensor:
    """uint8 RGB frames [T,H,W,3] (array, tensor or list of PIL images) -> float32 [T,3,S,S] by the vision
    tower's image processing. An int S is SigLIP's: a bicubic squash to S x S (no crop, no padding),
    /255, then (x - 0.5) / 0.5, bit-identical to the published pipeline (docs/published-format.md 2.1).
    Raises `ValueError` for frames of another shape or dtype.
    """
    if isinstance(transform, int):
        transform = FrameTransform(transform)
    if isinstance(frames, Image.Image):
        frames = [frames]
    if isinstance(frames, (list, tuple)):
        frames = np.stack([np.asarray(f.convert("RGB")) if isinstance(f, Image.Image) else np.asarray(f) for f in frames])
    frames = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T,H,W,3] RGB; got shape {tuple(frames.shape)}")
    if frames.shape[0] == 0:
        raise ValueError("a video of zero frames cannot be processed")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (0..255); got {frames.dtype}")
    return transform(frames)


def pack_videos(videos: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """One tensor per video [T_i, ...] -> the model's video form: the frames [sum T_i, ...] and `video_num_frames` [V]."""
    return torch.cat(list(videos)), torch.tensor([len(video) for video in videos], dtype=torch.long)


def recorded_sampling(num_frames: int | None = None, fps: float | None = None, max_frames: int | None = None) -> FrameSampling:
    """The `FrameSampling` a processor config records, the default (16 frames) where it records none."""
    return FrameSampling() if num_frames is None and fps is None else FrameSampling(num_frames, fps, max_frames)


def trained_frame_sampling(folder: str | os.PathLike) -> FrameSampling:
    """The frame sampling the model in `folder` was trained with, read from its processor config without loading
    the tokenizer; the default (16 frames) for a folder that records none (a published TinyLLaVA checkpoint)."""
    path = Path(folder) / PROCESSOR_FILE
    settings = read_json(path) if path.is_file() else {}
    return recorded_sampling(*(settings.get(key) for key in ("num_frames", "fps", "max_frames")))


class TinyVideoProcessor:
    """Turns prompts and videos into model inputs; builds prompts and training labels.

    The number of visual tokens of a video is `tokens_per_video + tokens_per_frame * num_frames`
    (one of the two is zero, depending on the connector). Frames are prepared as the vision tower's
    image processor does (`frame_transform`: SigLIP's squash by default; a shortest-edge resize and
    centre crop when `shortest_edge` is set; then `image_mean` and `image_std`). `chat_format` is how the
    model's conversations are written: `qwen2_base` (the published models, and folders saved without the
    setting) or `tokenizer` (the tokenizer's own chat template). `num_frames`, `fps` and `max_frames` are the
    frame sampling the model was trained with (`FrameSampling`; a training stage records its own), which
    `infer`, `eval` and `serve` use unless told otherwise; all None where none was recorded (the published
    models): `frame_sampling` is then the default, 16 frames.
    """

    def __init__(
        self,
        tokenizer,
        image_size: int = 384,
        video_token_id: int = 151935,
        tokens_per_video: int = 512,
        tokens_per_frame: int = 0,
        model_max_length: int = 3072,
        shortest_edge: int | None = None,
        image_mean: Sequence[float] = HALF,
        image_std: Sequence[float] = HALF,
        chat_format: str = "qwen2_base",
        num_frames: int | None = None,
        fps: float | None = None,
        max_frames: int | None = None,
    ):
        if chat_format not in CHAT_FORMATS:
            raise ValueError(f"chat_format must be one of {', '.join(CHAT_FORMATS)}; got {chat_format!r}")
        if chat_format == "tokenizer" and not getattr(tokenizer, "chat_template", None):
            raise ValueError("chat_format 'tokenizer' needs a tokenizer with a chat template")
        if video_token_id < len(tokenizer):
            raise ValueError(
                f"video_token_id {video_token_id} is a real token of the tokenizer (size {len(tokenizer)}); "
                "it must be a spare embedding row above the vocabulary"
            )
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.video_token_id = video_token_id
        self.tokens_per_video = tokens_per_video
        self.tokens_per_frame = tokens_per_frame
        self.model_max_length = model_max_length
        self.shortest_edge = shortest_edge
        self.image_mean = tuple(image_mean)
        self.image_std = tuple(image_std)
        self.chat_format = chat_format
        self.frame_sampling = recorded_sampling(num_frames, fps, max_frames)

    @property
    def frame_transform(self) -> FrameTransform:
        return FrameTransform(self.image_size, self.shortest_edge, self.image_mean, self.image_std)

    # ---- construction and persistence ---------------------------------------------------------------

    @classmethod
    def from_config(
        cls, tokenizer, config: TinyVideoConfig, vision_tower_dir=None, chat_format: str = "qwen2_base"
    ) -> TinyVideoProcessor:
        """The processor of a model of `config`; frames prepared by the image processor in
        `vision_tower_dir` when given (its preprocessor_config.json), else by its tower family's defaults."""
        per_frame = config.num_visual_tokens(1) - config.num_visual_tokens(0)
        transform = frame_transform(config.vision_config, config.image_size, vision_tower_dir)
        return cls(
            tokenizer,
            image_size=config.image_size,
            shortest_edge=transform.shortest_edge,
            image_mean=transform.mean,
            image_std=transform.std,
            video_token_id=config.video_token_id,
            tokens_per_video=config.num_visual_tokens(0),
            tokens_per_frame=per_frame,
            model_max_length=config.model_max_length,
            chat_format=chat_format,
        )

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, **kwargs) -> TinyVideoProcessor:
        """Load from a tinyvideo folder, or derive from a published TinyLLaVA folder's config.json."""
        folder = Path(folder)
        config = checkpoints.checkpoint_config(folder)
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True, config=config)
        except (OSError, ValueError) as err:
            raise checkpoints.CheckpointError(f"{folder}: cannot load the tokenizer files ({err})") from err
        settings_file = folder / PROCESSOR_FILE
        if settings_file.is_file():
            settings = read_json(settings_file)
            settings.pop("processor_class", None)
            return cls(tokenizer, **{**settings, **kwargs})
        processor = cls.from_config(tokenizer, config)
        for key, value in kwargs.items():
            setattr(processor, key, value)
        return processor

    def to_dict(self) -> dict:
        return {
            "processor_class": type(self).__name__,
            "image_size": self.image_size,
            "video_token_id": self.video_token_id,
            "tokens_per_video": self.tokens_per_video,
            "tokens_per_frame": self.tokens_per_frame,
            "model_max_length": self.model_max_length,
            "shortest_edge": self.shortest_edge,
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
            "chat_format": self.chat_format,
            "num_frames": self.frame_sampling.num_frames,
            "fps": self.frame_sampling.fps,
            "max_frames": self.frame_sampling.max_frames,
        }

    def save_pretrained(self, folder: str | os.PathLike) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(folder)
        (folder / PROCESSOR_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    # ---- tokens -------------------------------------------------------------------------------------

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id

    def num_visual_tokens(self, num_frames: int) -> int:
        return self.tokens_per_video + self.tokens_per_frame * num_frames

    def tokenize(self, text: str, frame_counts: Sequence[int]) -> list[int]:
        """Token ids of `text`, each `<image>` replaced by that video's run of video tokens."""
        chunks = text.split(PLACEHOLDER)
        if len(chunks) - 1 != len(frame_counts):
            raise ValueError(
                f"the text has {len(chunks) - 1} {PLACEHOLDER} placeholder(s) but {len(frame_counts)} video(s) "
                "were given for it"
            )
        ids: list[int] = []
        for index, chunk in enumerate(chunks):
            if index:
                ids += [self.video_token_id] * self.num_visual_tokens(frame_counts[index - 1])
            if chunk:
                ids += self.tokenizer(chunk, add_special_tokens=False).input_ids
        return ids

    def chat_prompt(self, question: str, mode: str | None = None) -> str:
        """The generation prompt for one question about one video, in the model's chat format."""
        return chat_prompt(question, mode, self.chat_format, self.tokenizer)

    def reply_text(self, answer: str) -> str:
        """The text `answer` takes after a generation prompt in the model's chat format, its end of turn
        included (" answer<|endoftext|>" in `qwen2_base`): what a scored answer's tokens are."""
        turns = [{"from": "human", "value": "?"}, {"from": "gpt", "value": answer}]
        return conversation_segments(turns, self.chat_format, self.tokenizer)[-1].text

    def encode_conversation(
        self, messages: Sequence[dict], num_frames: int | None, template: str = "chat"
    ) -> dict[str, list[int]]:
        """input_ids and labels for training: only answers (and their closing eos) are supervised.
        `template` is one of `TEMPLATES`; `chat`, the model's own chat format."""
        template = self.chat_format if template == "chat" else template
        segments = conversation_segments(messages, template, self.tokenizer)
        placeholders = sum(s.text.count(PLACEHOLDER) for s in segments)
        if placeholders > 1:
            raise ValueError(f"a training conversation may hold one {PLACEHOLDER} placeholder; found {placeholders}")
        if placeholders and num_frames is None:
            raise ValueError(f"the conversation has a {PLACEHOLDER} placeholder but no video")
        if not placeholders and num_frames is not None:
            raise ValueError(f"a video was given but the conversation has no {PLACEHOLDER} placeholder")
        input_ids: list[int] = []
        labels: list[int] = []
        for segment in segments:
            ids = self.tokenize(segment.text, [num_frames] * segment.text.count(PLACEHOLDER))
            input_ids += ids
            labels += [i if segment.supervised and i != self.video_token_id else IGNORE_INDEX for i in ids]
        return self.truncate({"input_ids": input_ids, "labels": labels})

    def fit_prompt(self, prompt: str, free_text: str, frame_counts: Sequence[int]) -> str:
        """`prompt` itself when its tokens fit `model_max_length`; otherwise the prompt with the middle of
        `free_text` (the question's own words, which the prompt holds verbatim) replaced by `SHORTENED`,
        with a warning. The instruction, the options and the turn markers are never cut: a model given a
        prompt cut at its end would go on writing the question. Raises `InputError` when the prompt does
        not fit even with `free_text` gone (too many visual tokens, or no free text to shorten).
        """
        excess = len(self.tokenize(prompt, frame_counts)) - self.model_max_length
        if excess <= 0:
            return prompt
        text_ids = self.tokenizer(free_text, add_special_tokens=False).input_ids if free_text in prompt else []
        keep = len(text_ids) - excess
        while keep > 0:
            head, tail = text_ids[: (keep + 1) // 2], text_ids[len(text_ids) - keep // 2 :]
            shortened = self.tokenizer.decode(head) + SHORTENED + self.tokenizer.decode(tail)
            fitted = prompt.replace(free_text, shortened, 1)
            over = len(self.tokenize(fitted, frame_counts)) - self.model_max_length
            if over <= 0:
                logger.warning(
                    "prompt over model_max_length %d: the question's text shortened from %d to %d tokens in the middle",
                    self.model_max_length, len(text_ids), keep,
                )
                return fitted
            keep -= over
        raise InputError(
            f"the prompt is {excess} tokens over model_max_length {self.model_max_length} and shortening the "
            "question's text cannot make it fit: use fewer frames, or a model with a longer model_max_length"
        )

    def truncate(self, example: dict[str, list[int]]) -> dict[str, list[int]]:
        """Cut to `model_max_length` before the model (never inside the visual tokens), with a warning."""
        ids = example["input_ids"]
        if len(ids) <= self.model_max_length:
            return example
        video_positions = [i for i, t in enumerate(ids) if t == self.video_token_id]
        if video_positions and video_positions[-1] >= self.model_max_length:
            raise ValueError(
                f"sequence of {len(ids)} tokens is longer than model_max_length {self.model_max_length} and the cut "
                "would fall inside the video tokens: shorten the text or raise model_max_length"
            )
        logger.warning("sequence of %d tokens truncated to model_max_length %d", len(ids), self.model_max_length)
        return {key: value[: self.model_max_length] for key, value in example.items()}

    def pad(self, examples: Sequence[dict[str, list[int]]], padding_side: str = "right") -> dict[str, torch.Tensor]:
        """Pad input_ids (and labels, if present) into a batch with an attention mask.

        Right by default, for training batches and scored continuations; prompts that `generate`
        continues need `padding_side="left"`.
        """
        if padding_side not in ("left", "right"):
            raise ValueError("padding_side must be 'left' or 'right'")
        width = max(len(e["input_ids"]) for e in examples)
        fills = {"input_ids": self.pad_token_id, "labels": IGNORE_INDEX}
        batch = {key: [] for key in examples[0]}
        batch["attention_mask"] = []
        for example in examples:
            gap = width - len(example["input_ids"])
            for key, values in example.items():
                padding = [fills.get(key, 0)] * gap
                batch[key].append(padding + values if padding_side == "left" else values + padding)
            mask = [0] * gap, [1] * len(example["input_ids"])
            batch["attention_mask"].append(mask[0] + mask[1] if padding_side == "left" else mask[1] + mask[0])
        return {key: torch.tensor(values, dtype=torch.long) for key, values in batch.items()}

    # ---- videos -------------------------------------------------------------------------------------

    def preprocess_videos(self, videos: Sequence) -> tuple[torch.Tensor, torch.Tensor]:
        """Videos (uint8 frames, or already preprocessed float tensors [T,3,S,S]) -> the model's video form:
        `pixel_values_videos` [sum T_i,3,S,S] and `video_num_frames` [V]."""
        pixels = [
            v if isinstance(v, torch.Tensor) and v.is_floating_point() else preprocess_frames(v, self.frame_transform)
            for v in videos
        ]
        for video in pixels:
            if video.ndim != 4 or video.shape[0] == 0 or tuple(video.shape[1:]) != (3, self.image_size, self.image_size):
                raise ValueError(
                    f"a preprocessed video must be [T>0, 3, {self.image_size}, {self.image_size}]; got {tuple(video.shape)}"
                )
        return pack_videos(pixels)

    def __call__(
        self,
        text: str | Sequence[str],
        videos: Sequence | torch.Tensor | None = None,
        padding_side: str = "left",
        return_tensors: str | None = "pt",
    ) -> BatchFeature:
        """Prompts (one `<image>` per video, videos given in placeholder order) -> generation inputs.

        `videos` is a list of uint8 frame arrays [T,H,W,3] (or PIL image lists), or float pixel values
        [V,T,3,S,S]. Returns `input_ids` and `attention_mask` [B,L], plus `pixel_values_videos` [sum T_i,3,S,S]
        (the videos' frames one after another) and `video_num_frames` [V] when there are videos. Prompts are
        left-padded, so each row's last token is its own and a batched `generate` answers every prompt as it would
        alone; training examples, whose labels follow the prompt, are padded by `pad` (right by default).
        """
        texts = [text] if isinstance(text, str) else list(text)
        if videos is None:
            videos = []
        elif isinstance(videos, torch.Tensor) and videos.ndim == 5:
            videos = list(videos.unbind(0))
        elif isinstance(videos, (np.ndarray, torch.Tensor)):
            videos = [videos]
        videos = list(videos)
        wanted = sum(t.count(PLACEHOLDER) for t in texts)
        if wanted != len(videos):
            raise ValueError(f"the prompts have {wanted} {PLACEHOLDER} placeholder(s) but {len(videos)} video(s) were given")
        data: dict[str, torch.Tensor] = {}
        if videos:
            data["pixel_values_videos"], data["video_num_frames"] = self.preprocess_videos(videos)
        counts = data["video_num_frames"].tolist() if videos else []
        examples = []
        for sample in texts:
            used = sample.count(PLACEHOLDER)
            examples.append(self.truncate({"input_ids": self.tokenize(sample, counts[:used])}))
            counts = counts[used:]
        data = {**self.pad(examples, padding_side), **data}
        return BatchFeature(data, tensor_type=return_tensors)

    def batch_decode(self, ids, **kwargs) -> list[str]:
        return self.tokenizer.batch_decode(ids, **{"skip_special_tokens": True, **kwargs})

    def decode(self, ids, **kwargs) -> str:
        return self.tokenizer.decode(ids, **{"skip_special_tokens": True, **kwargs})
