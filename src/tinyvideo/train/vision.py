"""Vision tower pretraining for models built from scratch: a tiny SigLIP tower learns to see from
frame-caption pairs before any language model looks through it.

    tinyvideo train vision --config src/tinyvideo/recipes/synth/vision.yaml [--key value ...]

The published models start from a pretrained SigLIP. A tiny model built from scratch has no such tower,
and through a random one the language model learns nothing about the video: on the synthetic suite the
captioning loss with the right video and with another clip's video stayed equal (to 4 decimals after 240
steps, the tower frozen or trained along). This stage makes the tower the way SigLIP and CLIP towers are
made, at toy scale, with one of two objectives (`objective`):

- `contrastive`: the vision tower and a small text tower learn a shared embedding of frames and their
  captions with the contrastive loss (both directions, in-batch negatives; captions that are the same text
  count as positives of each other). With its tower the captioning stage ends at a loss of 0.569 with the
  right video against 0.785 with another clip's; but linear probes find little more in its patch tokens than
  in a random tower's (`benchmarks/vision_probe.py`: an object's shape 51.1% against 43.4%).
- `attributes` (`tinyvideo/recipes/synth/vision.yaml`): the colour, shape and place of the object in every patch of
  every frame, from the synthetic suite's scene rows (`tinyvideo.train.vision_attributes`, where the
  probes' numbers are).

Contrastive data: a json list (or jsonl) of rows `{"video": path, "frames": [{"index": i, "caption": text}, ...]}`;
every listed frame is one pair, and the frames of a row are decoded together. The tokenizer is fit on the
captions. Checkpoints and resume work as in the other stages; the checkpoints hold both towers (and the
tokenizer), `output_dir/model` the vision tower alone, a plain SigLIP vision model folder with its image
processor, which a `tiny` model takes through `vision_tower_path`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import SiglipConfig, SiglipModel, Trainer, TrainingArguments, set_seed

from tinyvideo.data.row_dataset import RowDataset
from tinyvideo.errors import InputError
from tinyvideo.processing import preprocess_frames
from tinyvideo.rows import read_usable_rows
from tinyvideo.scratch import train_tokenizer
from tinyvideo.train import vision_attributes
from tinyvideo.train.common import check_ranges, require_folder, save_vision_tower, tower_image_processor
from tinyvideo.train.runs import SkippedRowsTally, train_and_save
from tinyvideo.video import read_exact_frames


OBJECTIVES = ("contrastive", "attributes")


@dataclass
class VisionConfig(TrainingArguments):
    """The objective and its data, the tower sizes (the text tower's for `contrastive` only), and the
    Trainer's settings. `per_device_train_batch_size` counts rows (videos); a batch holds all their listed frames."""

    objective: str = field(
        default="contrastive",
        metadata={"help": "contrastive: frames and their captions; attributes: what is where, from the synthetic suite's scene rows"},
    )
    data_path: str | None = field(
        default=None, metadata={"help": "json(l) rows: video, frames [{index, caption}] (contrastive) or scene rows (attributes)"}
    )
    video_root: str | None = field(default=None, metadata={"help": "folder the rows' video paths are relative to"})
    image_size: int = field(default=32, metadata={"help": "frame side in pixels"})
    patch_size: int = field(default=8, metadata={"help": "vision patch side"})
    vision_hidden_size: int = field(default=64, metadata={"help": "vision tower width"})
    vision_layers: int = field(default=3, metadata={"help": "vision tower depth"})
    text_hidden_size: int = field(default=64, metadata={"help": "text tower width (only used in this stage)"})
    text_layers: int = field(default=2, metadata={"help": "text tower depth"})
    vocab_size: int = field(default=512, metadata={"help": "BPE vocabulary fit on the captions"})
    max_caption_tokens: int = field(default=48, metadata={"help": "captions are padded or cut to this length"})
    remove_unused_columns: bool = field(default=False, metadata={"help": "the collator needs every column"})

    def __post_init__(self):
        check_ranges(self)
        if self.objective not in OBJECTIVES:
            raise InputError(f"objective must be one of {', '.join(OBJECTIVES)}; got {self.objective!r}")
        if self.data_path is None:
            raise InputError("data_path is required: json rows of video and captioned frames, or scene rows")
        if self.image_size % self.patch_size:
            raise InputError(f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})")
        super().__post_init__()


def _row_problem(row) -> str | None:
    frames = row.get("frames") if isinstance(row, dict) else None
    if not (isinstance(row, dict) and isinstance(row.get("video"), str) and isinstance(frames, list) and frames) or not all(
        isinstance(f, dict) and isinstance(f.get("index"), int) and isinstance(f.get("caption"), str) for f in frames
    ):
        return "not {video: str, frames: [{index: int, caption: str}]}"
    return None


def read_rows(path: str | Path) -> tuple[list[dict], list[int]]:
    """The rows with a video path and at least one {index, caption} frame, and the indices of the others
    (logged with their file and line). Raises `InputError` when no row is usable."""
    return read_usable_rows(
        path,
        _row_problem,
        lambda index, row: {"row": index, "where": row.where, "video": row.value["video"], "frames": row.value["frames"]},
    )


class FrameCaptionDataset(RowDataset):
    """Each item is one row's captioned frames, decoded and preprocessed, with their captions."""

    def __init__(self, data_path: str, video_root: str | None, image_size: int):
        super().__init__(*read_rows(data_path), data_path, video_root if video_root is not None else Path(data_path).parent)
        self.image_size = image_size

    def captions(self) -> list[str]:
        return [frame["caption"] for row in self.rows for frame in row["frames"]]

    def encode(self, row: dict) -> dict:
        frames = read_exact_frames(self.video_root / row["video"], [f["index"] for f in row["frames"]])
        return {"pixel_values": preprocess_frames(frames, self.image_size), "captions": [f["caption"] for f in row["frames"]]}


class FrameCaptionCollator:
    def __init__(self, tokenizer, max_tokens: int):
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens

    def __call__(self, items: list[dict]) -> dict:
        captions = [caption for item in items for caption in item["captions"]]
        # SigLIP's text tower pools the last position, so every caption is padded to the same length.
        ids = self.tokenizer(captions, padding="max_length", max_length=self.max_tokens, truncation=True, return_tensors="pt")
        return {
            "pixel_values": torch.cat([item["pixel_values"] for item in items]),
            "input_ids": ids["input_ids"],
            "skipped_rows": [row for item in items for row in item["skipped"]],
        }


def contrastive_loss(logits_per_image: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Cross-entropy both ways over the batch; identical captions share the probability of being right."""
    same = (input_ids[:, None, :] == input_ids[None, :, :]).all(-1).float()
    targets = same / same.sum(-1, keepdim=True)
    return (F.cross_entropy(logits_per_image, targets) + F.cross_entropy(logits_per_image.T, targets)) / 2


class FrameCaptionModel(SiglipModel):
    """SigLIP's two towers, with a frame embedded where a video model reads the vision tower: the mean of
    the layer-`feature_layer` patch tokens, all of them (SigLIP has no class token, and the suite's models
    read every patch: `vision_feature_select_strategy: cls_patch`), projected.

    SigLIP's own image embedding (its attention-pooling head over the last layer) is never used by a video
    model, and a tower trained through it may keep what matters in tokens the connector does not see at
    first: a new resampler starts out averaging the patch tokens, so those averages are what is trained.
    Measured on the synthetic suite after the captioning stage: seeing the right video made colour words
    0.2-0.65 nats cheaper with a tower trained this way, 0.01 with one trained through the head.
    """

    feature_layer = -2

    def __init__(self, config: SiglipConfig):
        super().__init__(config)
        self.frame_projection = nn.Linear(config.vision_config.hidden_size, config.text_config.projection_size)
        self.post_init()
        with torch.no_grad():  # SigLIP's starting temperature (logits = 10 x cosine similarity)
            self.logit_scale.fill_(math.log(10.0))

    def similarity(self, pixel_values: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Scaled cosine similarities [frames, captions]."""
        hidden = self.vision_model(pixel_values, output_hidden_states=True).hidden_states[self.feature_layer]
        frames = F.normalize(self.frame_projection(hidden.mean(1)), dim=-1)
        captions = F.normalize(self.text_model(input_ids=input_ids).pooler_output, dim=-1)
        return frames @ captions.T * self.logit_scale.exp()


class VisionTrainer(SkippedRowsTally, Trainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        logits = model.similarity(inputs["pixel_values"], inputs["input_ids"])
        loss = contrastive_loss(logits, inputs["input_ids"])
        return (loss, {"logits": logits}) if return_outputs else loss


def build_towers(config: VisionConfig, vocab_rows: int, pad_token_id: int) -> FrameCaptionModel:
    siglip = SiglipConfig(
        text_config={
            "vocab_size": vocab_rows,
            "hidden_size": config.text_hidden_size,
            "intermediate_size": config.text_hidden_size * 2,
            "num_hidden_layers": config.text_layers,
            "num_attention_heads": 4,
            "max_position_embeddings": config.max_caption_tokens,
            "projection_size": config.vision_hidden_size,
            "pad_token_id": pad_token_id,
            "bos_token_id": pad_token_id,
            "eos_token_id": pad_token_id,
        },
        # The same shape as the tiny models' towers (`tinyvideo.scratch.tiny_config`).
        vision_config={
            "hidden_size": config.vision_hidden_size,
            "intermediate_size": config.vision_hidden_size * 2,
            "num_hidden_layers": config.vision_layers,
            "num_attention_heads": 4,
            "image_size": config.image_size,
            "patch_size": config.patch_size,
        },
    )
    return FrameCaptionModel(siglip)


def train(config: VisionConfig) -> Path:
    """Train the tower with the configured objective and return the final SigLIP vision model folder."""
    if config.objective == "attributes":
        return vision_attributes.train(config)
    set_seed(config.seed)
    require_folder(config.video_root, "video_root")
    dataset = FrameCaptionDataset(config.data_path, config.video_root, config.image_size)
    tokenizer = train_tokenizer(dataset.captions(), config.vocab_size)
    model = build_towers(config, len(tokenizer), tokenizer.pad_token_id)
    trainer = VisionTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        data_collator=FrameCaptionCollator(tokenizer, config.max_caption_tokens),
        processing_class=tokenizer,
    )
    return train_and_save(trainer, tower_image_processor(config.image_size), dataset, save=save_vision_tower)
