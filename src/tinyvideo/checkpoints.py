"""Published TinyLLaVA-Video / TinyLLaVA-Video-R1 checkpoints: load them offline, and export back to them.

A published folder holds `config.json` (`model_type: tinyllava`, the LLM and vision configs embedded
as diffs against `Qwen2Config` / `SiglipVisionConfig`), `model*.safetensors` (keys prefixed
`vision_tower._vision_tower.` and `connector._connector.`, `lm_head` absent because it is tied) and the
slow-tokenizer files. Its path fields name hub ids or the authors' disks; they are never followed.
See docs/published-format.md 1.2-1.3.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from tinyvideo.config import TinyVideoConfig
from tinyvideo.connectors import CONNECTORS
from tinyvideo.errors import InputError

PUBLISHED_PREFIXES = {"vision_tower.": "vision_tower._vision_tower.vision_model.", "connector.": "connector._connector."}
DEFAULT_DTYPE = torch.float32  # the published evaluation ran in float32 (docs/published-format.md 1.3)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}  # what --dtype names


class CheckpointError(InputError):
    """A checkpoint folder that cannot be loaded; the message says which file and what is wrong."""


def read_config_json(folder: str | os.PathLike) -> dict:
    """The folder's config.json as a dict; `CheckpointError` for a missing folder or file, or one that is not a JSON object."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(
            f"{folder}: no such model folder (models load from local folders only; nothing is downloaded)"
        )
    path = folder / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: a checkpoint folder needs config.json next to its weights")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from err
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path} holds a JSON {type(raw).__name__}, not the object of a model config")
    return raw


def checkpoint_config(folder: str | os.PathLike) -> TinyVideoConfig:
    """The config of a tinyvideo or published TinyLLaVA folder, checked before any model is built.

    Raises `CheckpointError` naming config.json when it is not one of the two formats, lacks the language
    model's or the vision tower's config, or holds values the model cannot take.
    """
    path = Path(folder) / "config.json"
    raw = read_config_json(folder)
    model_type = raw.get("model_type")
    if model_type not in ("tinyllava", TinyVideoConfig.model_type):
        raise CheckpointError(
            f"{path}: model_type {model_type!r} is neither {TinyVideoConfig.model_type!r} nor the published 'tinyllava'"
        )
    sections = [key for key in ("text_config", "vision_config") if not isinstance(raw.get(key), dict) or not raw[key]]
    if sections:
        raise CheckpointError(f"{path} lacks {' and '.join(sections)}: not a complete checkpoint config")
    try:
        if model_type == "tinyllava":
            return config_from_published(raw)
        return TinyVideoConfig.from_dict(raw)
    except (ValueError, TypeError, KeyError, StrictDataclassError) as err:  # the configs' own validators
        raise CheckpointError(f"{path}: {' '.join(str(err).split())}") from err


def config_from_published(published: dict) -> TinyVideoConfig:
    """Build our config from a published config.json dict, without any network access."""
    missing = [k for k in ("text_config", "vision_config", "connector_type") if not published.get(k)]
    if missing:
        raise CheckpointError(f"config.json lacks {', '.join(missing)}: not a complete TinyLLaVA-Video checkpoint config")
    text = {k: v for k, v in published["text_config"].items() if not k.startswith("_") and k != "architectures"}
    vision = {k: v for k, v in published["vision_config"].items() if k not in ("model_name_or_path", "model_name_or_path2")}
    vision = {k: v for k, v in vision.items() if not k.startswith("_")}
    return TinyVideoConfig(
        text_config=text,
        vision_config=vision,
        connector_type=published["connector_type"],
        num_queries=published.get("num_queries") or 512,
        group=published.get("group") or 1,
        num_resampler_layers=published.get("num_resampler_layers") or 3,
        vision_feature_layer=published.get("vision_feature_layer", -2),
        vision_feature_select_strategy=published.get("vision_feature_select_strategy", "patch"),
        model_max_length=published.get("tokenizer_model_max_length", 3072),
    )


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files of a checkpoint (its shards, when an index lists them); pickle files are refused."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return [folder / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    files = sorted(folder.glob("model*.safetensors"))
    if not files:
        pickled = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*/pytorch_model.bin"))
        hint = f" (found {', '.join(pickled)}: pickle files are never loaded; convert them to safetensors)" if pickled else ""
        raise CheckpointError(f"{folder} has no model*.safetensors weights{hint}")
    return files


def key_mapping(config_json: dict) -> dict[str, str] | None:
    """The weight-name mapping `from_pretrained` applies: the published prefixes to ours, or none."""
    if config_json.get("model_type") != "tinyllava":
        return None
    return {"^" + re.escape(published): ours for ours, published in PUBLISHED_PREFIXES.items()}


def check_weights(folder: str | os.PathLike, expected: dict[str, tuple[int, ...]], mapping: dict[str, str] | None) -> None:
    """Compare the weight files' tensor names and shapes (read from their headers, nothing loaded) with
    `expected`, the model's; `CheckpointError` when a weight is missing or has another shape."""
    folder = Path(folder)
    found = {}
    for file in weight_files(folder):
        try:
            with safe_open(file, "pt") as weights:
                for name in weights.keys():
                    ours = name
                    for pattern, replacement in (mapping or {}).items():
                        ours = re.sub(pattern, replacement, ours)
                    found[ours] = tuple(weights.get_slice(name).get_shape())
        except SafetensorError as error:
            raise CheckpointError(f"{file}: not a readable safetensors file ({error})") from error
    missing = [name for name in expected if name not in found]
    if missing:
        shown = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
        raise CheckpointError(
            f"{folder}: the weights lack {len(missing)} of the {len(expected)} tensors of the model config.json "
            f"describes ({shown}); every weight must be in the checkpoint"
        )
    for name, shape in expected.items():
        if found[name] != shape:
            raise CheckpointError(f"{folder}: {name} has shape {list(found[name])}, but config.json describes {list(shape)}")


def published_config(config: TinyVideoConfig) -> dict:
    """Our config as a published `tinyllava` config.json dict."""
    connector = CONNECTORS[config.connector_type].published_name(config)
    text = config.text_config.to_diff_dict()
    vision = config.vision_config.to_diff_dict()
    text.pop("transformers_version", None)
    vision.pop("transformers_version", None)
    return {
        "architectures": ["TinyLlavaForConditionalGeneration"],
        "model_type": "tinyllava",
        "connector_type": connector,
        "group": config.group,
        "num_queries": config.num_queries,
        "num_resampler_layers": config.num_resampler_layers,
        "hidden_size": config.text_config.hidden_size,
        "vocab_size": config.text_config.vocab_size,
        "vision_hidden_size": config.vision_config.hidden_size,
        "vision_feature_layer": config.vision_feature_layer,
        "vision_feature_select_strategy": config.vision_feature_select_strategy,
        "image_aspect_ratio": "square",
        "ignore_index": -100,
        "image_token_index": -200,
        "pad_token": "<|endoftext|>",
        "tokenizer_model_max_length": config.model_max_length,
        "tokenizer_padding_side": "right",
        "tokenizer_use_fast": False,
        "use_cache": True,
        "text_config": text,
        "vision_config": vision,
    }


def export_published(model, processor, out_dir: str | os.PathLike) -> Path:
    """Write `model` (and its tokenizer) as a published-format TinyLLaVA folder; `CheckpointError` for a
    model whose vision tower is not SigLIP, the only tower the published checkpoints have, and `InputError`
    for a connector no published model has; nothing is written then."""
    if model.config.vision_config.model_type != "siglip_vision_model":
        raise CheckpointError(
            f"the published TinyLLaVA format is written for SigLIP towers only; this model's tower is "
            f"{model.config.vision_config.model_type!r}: keep it in tinyvideo's format (save_pretrained)"
        )
    config = published_config(model.config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tied = model.config.tie_word_embeddings
    state = {}
    for name, tensor in model.state_dict().items():
        if tied and name == "language_model.lm_head.weight":
            continue
        for ours, published in PUBLISHED_PREFIXES.items():
            if name.startswith(ours):
                name = published + name[len(ours) :]
                break
        state[name] = tensor.detach().contiguous().cpu()
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config["torch_dtype"] = str(model.dtype).removeprefix("torch.")
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    eos = processor.tokenizer.eos_token_id
    generation = {"bos_token_id": eos, "eos_token_id": eos, "use_cache": False}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    processor.tokenizer.save_pretrained(out)
    return out
