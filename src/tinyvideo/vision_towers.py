"""The vision towers a model can use: SigLIP (the published models'), CLIP and DINOv2.

A tower is known by its config's exact `model_type`. Each one says which tokens sit before its patch
tokens and how its image processor prepares a frame:
- SigLIP (`siglip_vision_model`): no class token, yet the 'patch' strategy drops token 0, as the
  published models were trained (docs/published-format.md 1.4); frames squashed to S x S, mean = std = 0.5.
- CLIP (`clip_vision_model`): a class token, dropped; the shorter side resized to S, a centre crop of
  S x S, OpenAI's mean and std; the encoder reads the embeddings through `pre_layrnorm`.
- DINOv2 (`dinov2`, and `dinov2_with_registers`): a class token and, where the checkpoint has them,
  register tokens after it, all dropped; the shorter side resized to 256/224 S, a centre crop of S x S,
  ImageNet's mean and std. Its checkpoints hold position embeddings for 518-pixel images and
  interpolate them, so the frame side S comes from the image processor (224), not the config.
Features are the hidden state after `vision_feature_layer` (-2: the input of the last layer, no final
norm), as TinyLLaVA's towers take them. Resizing is bicubic throughout (PIL's, as the processors do).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from PIL import Image
from torch import nn
from transformers import (
    AutoConfig,
    CLIPVisionModel,
    Dinov2Model,
    Dinov2WithRegistersModel,
    PreTrainedConfig,
    PreTrainedModel,
    SiglipVisionModel,
)

from tinyvideo.errors import InputError

HALF = (0.5, 0.5, 0.5)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PREPROCESSOR_FILE = "preprocessor_config.json"
# Beside a tower trained with the vision stage's `attributes` objective: its linear attribute head's weights
# (`weight` [classes, Dv], `bias` [classes]) and what the head's outputs mean (`read_attribute_head`).
ATTRIBUTE_HEAD_WEIGHTS = "attribute_head.safetensors"
ATTRIBUTE_HEAD_CONFIG = "attribute_head.json"


@dataclass(frozen=True)
class FrameTransform:
    """How a frame becomes a tower's pixels: bicubic resize (to `size` x `size`, or the shorter side to
    `shortest_edge` then a centre crop of `size` x `size`), /255, then (x - mean) / std per channel."""

    size: int
    shortest_edge: int | None = None
    mean: tuple[float, float, float] = HALF
    std: tuple[float, float, float] = HALF

    def __call__(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 RGB frames [T, H, W, 3] -> float32 [T, 3, size, size]."""
        resized = np.stack([np.asarray(self.resize(Image.fromarray(frame))) for frame in frames])
        mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        pixels = (resized.astype(np.float32) / 255.0 - mean) / std
        return torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy())

    def resize(self, image: Image.Image) -> Image.Image:
        if self.shortest_edge is None:
            return image.resize((self.size, self.size), Image.BICUBIC)
        width, height = image.size
        short, long = sorted((width, height))
        scaled = (self.shortest_edge, int(self.shortest_edge * long / short))
        image = image.resize(scaled if width <= height else scaled[::-1], Image.BICUBIC)
        left, top = (image.width - self.size) // 2, (image.height - self.size) // 2
        return image.crop((left, top, left + self.size, top + self.size))


@dataclass(frozen=True)
class TowerKind:
    """A family of towers: its model class, the tokens before its patches, its image processor's defaults
    (`crop_ratio`: shortest edge / crop side, None for a squash)."""

    model_class: type[PreTrainedModel]
    class_tokens: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop_ratio: float | None


KINDS = {
    "siglip_vision_model": TowerKind(SiglipVisionModel, 0, HALF, HALF, None),
    "clip_vision_model": TowerKind(CLIPVisionModel, 1, CLIP_MEAN, CLIP_STD, 1.0),
    "dinov2": TowerKind(Dinov2Model, 1, IMAGENET_MEAN, IMAGENET_STD, 256 / 224),
    "dinov2_with_registers": TowerKind(Dinov2WithRegistersModel, 1, IMAGENET_MEAN, IMAGENET_STD, 256 / 224),
}
# Frame side of the image processors when a tower's folder has none (DINOv2 checkpoints say 518).
DEFAULT_FRAME_SIZE = {"dinov2": 224, "dinov2_with_registers": 224}


def kind_of(vision_config: PreTrainedConfig) -> TowerKind:
    """The tower family of a vision config; `ValueError` for a model type tinyvideo cannot use."""
    model_type = getattr(vision_config, "model_type", None)
    if model_type not in KINDS:
        raise ValueError(f"unknown vision tower model_type {model_type!r}; expected one of {', '.join(KINDS)}")
    return KINDS[model_type]


def build_vision_tower(vision_config: PreTrainedConfig) -> PreTrainedModel:
    """A freshly initialised tower of the config's family."""
    return kind_of(vision_config).model_class(vision_config)


def leading_tokens(vision_config: PreTrainedConfig) -> int:
    """Tokens before the patch tokens: the class token and DINOv2's register tokens."""
    return kind_of(vision_config).class_tokens + getattr(vision_config, "num_register_tokens", 0)


def dropped_tokens(vision_config: PreTrainedConfig) -> int:
    """Tokens the 'patch' strategy drops from the front: the leading ones; for SigLIP, which has none,
    its first patch (the published quirk)."""
    return max(1, leading_tokens(vision_config))


def tower_tokens(vision_config: PreTrainedConfig, frame_size: int) -> int:
    """Tokens the tower gives a frame of `frame_size` pixels: its patches and the leading tokens."""
    return (frame_size // vision_config.patch_size) ** 2 + leading_tokens(vision_config)


def input_modules(tower: PreTrainedModel) -> list[nn.Module]:
    """The modules before the encoder layers: the embeddings, and CLIP's `pre_layrnorm`."""
    return [tower.embeddings, tower.pre_layrnorm] if isinstance(tower, CLIPVisionModel) else [tower.embeddings]


def embed(tower: PreTrainedModel, pixel_values: torch.Tensor) -> torch.Tensor:
    """The tower's input to its first encoder layer."""
    hidden = pixel_values
    for module in input_modules(tower):
        hidden = module(hidden)
    return hidden


def encoder_layers(tower: PreTrainedModel) -> nn.ModuleList:
    """The tower's encoder layers (DINOv2 names them `layer`)."""
    encoder = tower.encoder
    return encoder.layers if hasattr(encoder, "layers") else encoder.layer


def vision_config_of(folder: str | Path) -> PreTrainedConfig:
    """The vision config in a tower's folder: a vision model's, or the vision half of a two-tower
    (SigLIP or CLIP) folder. Raises `InputError` when the folder holds no tower tinyvideo can use."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder}: no config.json; a vision tower folder is a Hugging Face model folder")
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    config = getattr(config, "vision_config", None) or config
    if config.model_type not in KINDS:
        raise InputError(f"{folder}: a {config.model_type!r} model is not a vision tower tinyvideo can use ({', '.join(KINDS)})")
    return config


def load_vision_tower(folder: str | Path, dtype=None) -> PreTrainedModel:
    """A pretrained tower from a local folder (see `vision_config_of`); nothing is downloaded. Raises
    `InputError` when the folder lacks any of the tower's weights (a whole tinyvideo model folder, say):
    those would be left at their random initialisation."""
    config = vision_config_of(folder)
    tower, loading = kind_of(config).model_class.from_pretrained(
        folder, config=config, local_files_only=True, dtype=dtype, output_loading_info=True
    )
    missing = sorted(loading["missing_keys"])
    if missing:
        raise InputError(
            f"{folder}: {len(missing)} of the {config.model_type} tower's weights are not in this folder (e.g. {missing[0]}); "
            "a vision tower folder holds a vision model (or a two-tower SigLIP / CLIP model), not a whole tinyvideo model"
        )
    return tower


def frame_size_of(vision_config: PreTrainedConfig, folder: str | Path | None = None) -> int:
    """The side of the frames the tower sees: its folder's image processor crop or size, else the
    family's default, else the config's image size."""
    processor = _processor_settings(folder)
    size = processor.get("crop_size") if processor.get("do_center_crop", True) else None
    size = size or processor.get("size") or {}
    if "height" in size:
        return int(size["height"])
    return DEFAULT_FRAME_SIZE.get(vision_config.model_type, vision_config.image_size)


def frame_transform(vision_config: PreTrainedConfig, frame_size: int, folder: str | Path | None = None) -> FrameTransform:
    """The tower's frame preprocessing for frames of `frame_size`: its folder's `preprocessor_config.json`
    where there is one (its size, crop, mean and std), else its family's defaults."""
    kind = kind_of(vision_config)
    processor = _processor_settings(folder)
    shortest = (processor.get("size") or {}).get("shortest_edge")
    if not processor:
        shortest = None if kind.crop_ratio is None else round(frame_size * kind.crop_ratio)
    return FrameTransform(
        size=frame_size,
        shortest_edge=shortest,
        mean=tuple(processor.get("image_mean", kind.mean)),
        std=tuple(processor.get("image_std", kind.std)),
    )


def _processor_settings(folder: str | Path | None) -> dict:
    path = Path(folder) / PREPROCESSOR_FILE if folder is not None else None
    if path is None or not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: not a JSON image processor config ({error})") from None


def read_attribute_head(folder: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """What a tower's attribute head means and its weights, from `ATTRIBUTE_HEAD_CONFIG` and
    `ATTRIBUTE_HEAD_WEIGHTS` in `folder`. The meaning: `colour_classes` and `shape_classes` (each led by
    "none", an empty patch), the patch `grid` side and `patch_places`, the place words of each patch (row
    major); the head's outputs are the colour classes' logits, the shape classes', then 2 offsets. Raises
    `InputError` when the folder has no head or a malformed one."""
    folder = Path(folder)
    config_file = folder / ATTRIBUTE_HEAD_CONFIG
    if not config_file.is_file():
        raise InputError(
            f"connector_type words needs a vision tower trained with the attributes objective "
            f"(no {ATTRIBUTE_HEAD_CONFIG} in {folder})"
        )
    try:
        meaning = json.loads(config_file.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise InputError(f"{config_file}: not valid JSON ({error})") from error
    keys = ("colour_classes", "shape_classes", "patch_places")
    if not isinstance(meaning, dict) or not all(
        isinstance(meaning.get(key), list) and meaning[key] and all(isinstance(w, str) for w in meaning[key]) for key in keys
    ):
        raise InputError(f"{config_file}: expected lists of words {', '.join(keys)}")
    if not (folder / ATTRIBUTE_HEAD_WEIGHTS).is_file():
        raise InputError(f"{folder}: {ATTRIBUTE_HEAD_CONFIG} but no {ATTRIBUTE_HEAD_WEIGHTS} beside it")
    return meaning, load_file(folder / ATTRIBUTE_HEAD_WEIGHTS)
