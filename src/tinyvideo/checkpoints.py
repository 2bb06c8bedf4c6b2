"""Published TinyLLaVA-Video / TinyLLaVA-Video-R1 checkpoints: load them offline, and export back to them.

A published folder holds `config.json` (`model_type: tinyllava`, the LLM and vision configs embedded
as diffs against `Qwen2Config` / `SiglipVisionConfig`), `model*.safetensors` (keys prefixed
`vision_tower._vision_tower.` and `connector._connector.`, `lm_head` absent because it is tied) and the
slow-tokenizer files. Its path fields name hub ids or the authors' disks; they are never followed.
See compat-spec 1.2-1.3.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from tinyvideo.config import TinyVideoConfig
from tinyvideo.errors import InputError

# Published names of our connectors; `mlp` is written as `mlp{depth}x_gelu`.
PUBLISHED_CONNECTOR_NAMES = {"group": "groupresampler", "naive": "naiveresampler", "image": "resampler"}
PUBLISHED_PREFIXES = {"vision_tower.": "vision_tower._vision_tower.vision_model.", "connector.": "connector._connector."}
DEFAULT_DTYPE = torch.float32  # the published evaluation ran in float32 (compat-spec 1.3)


class CheckpointError(InputError):
    """A checkpoint folder that cannot be loaded; the message says which file and what is wrong."""


def read_config_json(folder: str | os.PathLike) -> dict:
    path = Path(folder) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: a checkpoint folder needs config.json next to its weights")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path} is not valid JSON: {err}") from err


def is_published_checkpoint(folder) -> bool:
    return Path(folder).is_dir() and read_config_json(folder).get("model_type") == "tinyllava"


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


def check_weights_present(folder: Path) -> None:
    if not (list(folder.glob("model*.safetensors")) or (folder / "model.safetensors.index.json").is_file()):
        pickled = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*/pytorch_model.bin"))
        hint = f" (found {', '.join(pickled)}: pickle files are never loaded; convert them to safetensors)" if pickled else ""
        raise CheckpointError(f"{folder} has no model*.safetensors weights{hint}")


def published_loading_plan(folder) -> tuple[TinyVideoConfig, dict[str, str]]:
    """The config and the weight-name mapping with which `from_pretrained` reads a published folder."""
    folder = Path(folder)
    config = config_from_published(read_config_json(folder))
    check_weights_present(folder)
    key_mapping = {"^" + published.replace(".", r"\."): ours for ours, published in PUBLISHED_PREFIXES.items()}
    return config, key_mapping


def published_config(config: TinyVideoConfig) -> dict:
    """Our config as a published `tinyllava` config.json dict."""
    connector = PUBLISHED_CONNECTOR_NAMES.get(config.connector_type, f"mlp{config.mlp_depth}x_gelu")
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
    """Write `model` (and its tokenizer) as a published-format TinyLLaVA folder."""
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
    config = published_config(model.config)
    config["torch_dtype"] = str(model.dtype).removeprefix("torch.")
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    eos = processor.tokenizer.eos_token_id
    generation = {"bos_token_id": eos, "eos_token_id": eos, "use_cache": False}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    processor.tokenizer.save_pretrained(out)
    return out


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="tinyvideo or published checkpoint folder")
    parser.add_argument("--out", required=True, help="folder to write")
    parser.add_argument("--format", choices=["tinyllava"], default="tinyllava", help="output format")


def run(args) -> int:
    from tinyvideo.modeling import TinyVideoForConditionalGeneration
    from tinyvideo.processing import TinyVideoProcessor

    model = TinyVideoForConditionalGeneration.from_pretrained(args.model)
    processor = TinyVideoProcessor.from_pretrained(args.model)
    print(export_published(model, processor, args.out))
    return 0
