"""What every training stage shares: configuration loading, where the model comes from, what trains
and how the final model is written.

LoRA adapters are injected into the model in place (`peft.inject_adapter_in_model`) rather than wrapping
it in a `PeftModel`: the model stays a `TinyVideoForConditionalGeneration`, so the Trainer's checkpoints
hold every trainable weight (a fully tuned connector next to a LoRA language model included) and resume
exactly; `save_model` folds the adapters into plain weights for the final folder.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
import yaml
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from peft.tuners.lora import LoraLayer
from peft.utils import CONFIG_NAME
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import HfArgumentParser, SiglipImageProcessorPil, SiglipVisionModel

from tinyvideo.config import FEATURE_SELECT_STRATEGIES
from tinyvideo.errors import InputError
from tinyvideo.files import usual_permissions, write_text
from tinyvideo.modeling import TinyVideoForConditionalGeneration
from tinyvideo.processing import TinyVideoProcessor
from tinyvideo.rows import read_json_rows, read_text
from tinyvideo.scratch import TINY_TOWERS, assemble, build_tiny, replace_connector
from tinyvideo.video import FrameSampling
from tinyvideo.vision_towers import input_modules

logger = logging.getLogger(__name__)

# `linear`: the Linear layers LoRA would adapt, in full (embeddings, norms and the output head frozen): a change a
# shipped adapter holds exactly at full rank and approximately at a lower one (`base_model.extract_adapter`).
TUNE_TYPES = ("frozen", "full", "lora", "linear")
VISION_TUNE_TYPES = (*TUNE_TYPES, "partial")
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# The least value of every numeric training setting, tinyvideo's and the Trainer's, in one table that
# `check_ranges` applies to each stage's config; the settings in `POSITIVE` must be greater than 0.
MINIMUMS = {
    # model source and frames (ModelArguments)
    "num_queries": 1, "group": 1, "num_resampler_layers": 1, "model_max_length": 1, "image_size": 1,
    "tiny_vocab_size": 1, "tiny_hidden_size": 1, "tiny_num_layers": 1, "tiny_vision_hidden_size": 1,
    "tiny_vision_layers": 1, "tiny_patch_size": 1, "vision_tower_from_layer": 0, "lora_r": 1, "lora_dropout": 0,
    "num_frames": 1, "max_frames": 1,
    # GRPO
    "num_generations": 2, "max_completion_length": 1, "top_k": 0, "beta": 0, "epsilon": 0, "epsilon_high": 0,
    "num_iterations": 1, "advantage_noise_std": 0, "log_completions_steps": 0,
    # vision and language pretraining
    "patch_size": 1, "vision_hidden_size": 1, "vision_layers": 1, "text_hidden_size": 1, "text_layers": 1,
    "vocab_size": 1, "max_caption_tokens": 1, "suite_seed": 0, "pool_per_task": 1, "single_word_steps": 0,
    "eval_per_task": 0, "tokenizer_per_task": 1, "hidden_size": 1, "num_layers": 1, "caption_rows": 0,
    # the Trainer's own, where a typo breaks the run far from the flag (an empty batch, a negative rate)
    "per_device_train_batch_size": 1, "per_device_eval_batch_size": 1, "gradient_accumulation_steps": 1,
    "learning_rate": 0, "weight_decay": 0, "num_train_epochs": 0, "warmup_steps": 0,
    "dataloader_num_workers": 0, "seed": 0, "max_steps": -1, "max_grad_norm": 0,
}
POSITIVE = frozenset({"fps", "lora_alpha", "temperature", "top_p"})


def _post_init_next(config, part: type) -> None:
    """Run the `__post_init__` that comes after `part`'s in `config`'s class order (the config parts and the
    Trainer's arguments are parsed together as one dataclass)."""
    following = getattr(super(part, config), "__post_init__", None)  # None past the last part with one
    if following is not None:
        following()


def _check_choices(config, choices: dict[str, tuple[str, ...]]) -> None:
    for name, allowed in choices.items():
        if getattr(config, name) not in allowed:
            raise InputError(f"{name} must be one of {', '.join(allowed)}; got {getattr(config, name)!r}")


@dataclass
class ModelSource:
    """Where the model comes from, one of:
    - `model_name_or_path`: a tinyvideo or published TinyLLaVA-Video(-R1) folder, or the word `tiny` for a
      freshly initialised tiny model whose tokenizer is fit on the texts of `tokenizer_corpus` (text files,
      one example a line, or LLaVA-style json files, every conversation turn);
    - `language_model_path` + `vision_tower_path`: Hugging Face folders of a causal LM (any decoder-only
      family) and a vision tower (SigLIP, CLIP or DINOv2) joined by a new connector (a GGUF language model:
      `tinyvideo init`);
    - `tiny` + `vision_tower_path`: a tiny language model from scratch with that tower (for example
      one from `tinyvideo train vision`); the tower's folder sets its sizes and the frame size.
      Without it, a tiny tower of the `tiny_vision_tower` family.
    The connector settings (`connector_type`, `num_queries`, `group`, `num_resampler_layers`,
    `model_max_length`, `vision_feature_select_strategy`), `language_model_layers` and the `tiny_*` sizes apply
    only to new models; a folder keeps its own, unless `new_connector` gives it a new connector of
    `connector_type`, `num_queries`, `group` and `num_resampler_layers` (`scratch.replace_connector`: a connectors
    ablation from a trained model).
    """

    model_name_or_path: str | None = field(default=None, metadata={"help": "checkpoint folder, or 'tiny'"})
    language_model_path: str | None = field(default=None, metadata={"help": "causal LM folder for a new model"})
    vision_tower_path: str | None = field(
        default=None,
        metadata={"help": "SigLIP, CLIP or DINOv2 folder for a new model (with language_model_path, or 'tiny')"},
    )
    connector_type: str = field(default="group", metadata={"help": "group | naive | image | mlp | words (new models)"})
    num_queries: int = field(default=512, metadata={"help": "visual tokens per video (new models)"})
    group: int = field(default=16, metadata={"help": "groups of the group resampler (new models)"})
    num_resampler_layers: int = field(default=3, metadata={"help": "resampler depth (new connectors)"})
    new_connector: bool = field(
        default=False, metadata={"help": "with a model folder: replace its connector by a new one of the settings above"}
    )
    model_max_length: int = field(default=3072, metadata={"help": "token limit of a sequence (new models)"})
    vision_feature_select_strategy: str = field(
        default="patch",
        metadata={"help": "patch | cls_patch (new models): patch drops the leading token, a SigLIP tower's first "
                  "patch, as the published models do; cls_patch keeps every token"},
    )
    language_model_layers: list[int] | None = field(
        default=None,
        metadata={"help": "indices of the language model's decoder layers to keep, in order (assembled models; "
                  "layer pruning: fewer layers, faster steps); default: all"},
    )
    image_size: int = field(default=32, metadata={"help": "frame side in pixels (tiny models)"})
    tokenizer_corpus: list[str] | None = field(
        default=None, metadata={"help": "text or LLaVA json files whose texts fit the tiny tokenizer"}
    )
    tiny_vocab_size: int = field(default=512, metadata={"help": "BPE vocabulary size of the tiny tokenizer"})
    tiny_hidden_size: int = field(default=64, metadata={"help": "language model width (tiny models)"})
    tiny_num_layers: int = field(default=2, metadata={"help": "language model depth (tiny models)"})
    tiny_vision_hidden_size: int = field(default=48, metadata={"help": "vision tower width (tiny models)"})
    tiny_vision_layers: int = field(default=3, metadata={"help": "vision tower depth (tiny models)"})
    tiny_patch_size: int = field(default=8, metadata={"help": "vision patch side (tiny models)"})
    tiny_vision_tower: str = field(
        default="siglip", metadata={"help": f"vision tower family of tiny models: {' | '.join(TINY_TOWERS)}"}
    )

    def __post_init__(self):
        check_ranges(self)
        _check_choices(
            self, {"vision_feature_select_strategy": FEATURE_SELECT_STRATEGIES, "tiny_vision_tower": TINY_TOWERS}
        )
        tiny = self.model_name_or_path == "tiny"
        if self.language_model_path is not None and self.vision_tower_path is None:
            raise InputError("a new model needs both language_model_path and vision_tower_path")
        if self.vision_tower_path is not None and self.language_model_path is None and not tiny:
            raise InputError("vision_tower_path needs language_model_path, or model_name_or_path 'tiny'")
        if (self.language_model_path is not None) == (self.model_name_or_path is not None):
            raise InputError("give model_name_or_path (a folder or 'tiny'), or language_model_path + vision_tower_path")
        if self.new_connector and (tiny or self.model_name_or_path is None):
            raise InputError("new_connector replaces the connector of a model folder: give it as model_name_or_path")
        if tiny and Path(self.model_name_or_path).exists():
            raise InputError(
                "model_name_or_path 'tiny' asks for a new tiny model, but ./tiny exists too: write ./tiny to start "
                "from that folder, or run from another folder for a new model"
            )
        _post_init_next(self, ModelSource)


@dataclass
class Tuning:
    """What trains: per component frozen, in full or with LoRA adapters (the vision tower also `partial`:
    its layers from `vision_tower_from_layer` on), and the adapters' settings."""

    tune_language_model: str = field(default="full", metadata={"help": "frozen | full | lora | linear"})
    tune_vision_tower: str = field(default="frozen", metadata={"help": "frozen | full | lora | partial"})
    tune_connector: str = field(default="full", metadata={"help": "frozen | full | lora"})
    vision_tower_from_layer: int = field(
        default=10, metadata={"help": "first trained vision layer for 'partial'"}
    )
    lora_r: int = field(default=64, metadata={"help": "rank of the LoRA adapters"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scale numerator (scale = alpha / r)"})
    lora_dropout: float = field(default=0.05, metadata={"help": "dropout on the LoRA input"})
    lora_target_modules: list[str] | None = field(
        default=None, metadata={"help": "names of Linear layers to adapt (e.g. q_proj v_proj); default: all"}
    )

    def __post_init__(self):
        check_ranges(self)
        _check_choices(
            self,
            {"tune_language_model": TUNE_TYPES, "tune_connector": TUNE_TYPES, "tune_vision_tower": VISION_TUNE_TYPES},
        )
        _post_init_next(self, Tuning)


@dataclass
class DataArguments:
    """Which frames of each video (`num_frames` spread uniformly, or `fps` capped at `max_frames`: a
    `FrameSampling.from_config`) and where the rows and their videos are."""

    num_frames: int = field(default=16, metadata={"help": "frames spread uniformly over each video"})
    fps: float | None = field(
        default=None, metadata={"help": "sample at this rate instead of num_frames"}
    )
    max_frames: int | None = field(default=None, metadata={"help": "cap on frames when sampling by fps"})

    data_path: str | None = field(default=None, metadata={"help": "LLaVA-style json (or jsonl) annotations"})
    video_root: str | None = field(
        default=None, metadata={"help": "folder the rows' video/image paths are relative to"}
    )

    def __post_init__(self):
        check_ranges(self)
        FrameSampling.from_config(self)  # refuses max_frames without fps
        _post_init_next(self, DataArguments)


@dataclass
class ModelArguments(ModelSource, Tuning, DataArguments):
    """The parts every model-training stage's config is made of (`ModelSource`, `Tuning`, `DataArguments`),
    parsed together with the stage's Trainer arguments from one YAML recipe and the command line."""


def check_ranges(config) -> None:
    """Refuse a numeric setting that is not finite, or below its least value in `MINIMUMS` (or not above
    0, for `POSITIVE`); unset (None) settings pass. Raises `InputError` naming the setting."""
    for item in fields(config):
        value = getattr(config, item.name, None)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            raise InputError(f"{item.name} must be a finite number; got {value}")
        if item.name in POSITIVE and not value > 0:
            raise InputError(f"{item.name} must be greater than 0; got {value}")
        if item.name in MINIMUMS and not value >= MINIMUMS[item.name]:
            raise InputError(f"{item.name} must be at least {MINIMUMS[item.name]}; got {value}")


def require_folder(path: str | os.PathLike | None, setting: str) -> None:
    """`InputError` unless `path` is None or an existing folder: checked before a model loads."""
    if path is not None and not Path(path).is_dir():
        raise InputError(f"{setting} {path}: no such folder")


def _refuse(message: str):
    raise InputError(message)


def bf16_is_native(use_cpu: bool) -> bool:
    """Whether this machine multiplies bfloat16 matrices in hardware: a CUDA GPU with bf16 (unless `use_cpu`), or a
    CPU with AVX512-BF16 or AMX. Elsewhere torch's bfloat16 products are emulated: a 2048 x 2048 product took 63 s
    against 0.24 s in float32 on an AVX2-only CPU (AMD EPYC, 2 cores, torch 2.13)."""
    if torch.cuda.is_available() and not use_cpu:
        return torch.cuda.is_bf16_supported()
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


@functools.cache
def warn_float32_instead() -> None:
    """Once a process: the demo loads its recipes again for every evaluation."""
    logger.warning("bf16: no bfloat16 hardware here (AVX512-BF16, AMX or a bf16 GPU), so float32 instead")


def load_config(config_class, path: str | None, overrides: list[str]):
    """A `config_class` instance from a YAML file, then `--key value` overrides (argparse syntax).

    YAML values become the parser's defaults, so overrides parse exactly like command-line flags:
    `--bf16 true`, `--lora_target_modules q_proj v_proj`, `--fps 1`. A `bf16: true` on a machine without bfloat16
    hardware (`bf16_is_native`) becomes float32, with a warning (once): the recipes ask for bf16 autocast for speed.
    """
    parser = HfArgumentParser(config_class)
    parser.error = _refuse  # one line naming the setting, not the usage of every TrainingArguments field
    values = {}
    if path is not None:
        try:
            values = yaml.safe_load(read_text(path)) or {}
        except yaml.YAMLError as err:
            raise InputError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from err
        if not isinstance(values, dict):
            raise InputError(f"{path}: expected a YAML mapping of settings, found a {type(values).__name__}")
        known = {f.name for f in fields(config_class)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"{path}: unknown settings {unknown} for {config_class.__name__}")
    parser.set_defaults(**values)
    settings = vars(parser.parse_args(list(overrides)))
    if settings.get("bf16") and not bf16_is_native(settings["use_cpu"]):
        warn_float32_instead()
        settings["bf16"] = False
    return config_class(**settings)


def require_joined_processes(config) -> None:
    """`InputError` when a launcher started several processes (its `WORLD_SIZE`) but the Trainer's
    distributed state holds fewer: on a machine without GPUs a process joins the others only with
    `use_cpu`, and otherwise each would train alone and write the same output folder."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > config.world_size:
        raise InputError(
            f"launched as {launched} processes, but the run holds {config.world_size}: without GPUs set use_cpu: true "
            "(--use_cpu true) so that they train together over gloo"
        )


# ---- model ------------------------------------------------------------------------------------------


def load_model_and_processor(
    args: ModelSource, seed: int = 0
) -> tuple[TinyVideoForConditionalGeneration, TinyVideoProcessor]:
    """The model and processor `args` name, in float32 (mixed precision is the Trainer's); a new tiny model's
    weights are drawn with `seed`."""
    if args.language_model_path is not None:
        return assemble(
            args.language_model_path,
            args.vision_tower_path,
            connector_type=args.connector_type,
            num_queries=args.num_queries,
            group=args.group,
            num_resampler_layers=args.num_resampler_layers,
            model_max_length=args.model_max_length,
            vision_feature_select_strategy=args.vision_feature_select_strategy,
            language_model_layers=args.language_model_layers,
        )
    if args.model_name_or_path == "tiny":
        return build_tiny(
            corpus_texts(args.tokenizer_corpus or ()),
            vocab_size=args.tiny_vocab_size,
            seed=seed,
            connector_type=args.connector_type,
            image_size=args.image_size,
            patch_size=args.tiny_patch_size,
            num_queries=args.num_queries,
            group=args.group,
            hidden_size=args.tiny_hidden_size,
            num_layers=args.tiny_num_layers,
            vision_hidden_size=args.tiny_vision_hidden_size,
            vision_layers=args.tiny_vision_layers,
            vision_tower=args.tiny_vision_tower,
            model_max_length=args.model_max_length,
            vision_feature_select_strategy=args.vision_feature_select_strategy,
            vision_tower_path=args.vision_tower_path,
        )
    folder = Path(args.model_name_or_path)
    if not folder.is_dir():
        raise InputError(f"model_name_or_path {folder} is not a folder (or the word 'tiny')")
    model = TinyVideoForConditionalGeneration.from_pretrained(folder, dtype=torch.float32)
    processor = TinyVideoProcessor.from_pretrained(folder)
    if args.new_connector:
        settings = {key: getattr(args, key) for key in ("num_queries", "group", "num_resampler_layers")}
        replace_connector(model, processor, args.connector_type, seed=seed, **settings)
    return model, processor


def corpus_texts(paths) -> list[str]:
    """Texts to fit a tokenizer on: the lines of text files, the turns of LLaVA json (list or jsonl) files."""
    texts = []
    for path in map(Path, paths):
        if path.suffix in (".json", ".jsonl"):
            texts += conversation_texts([row.value for row in read_json_rows(path) if row.error is None])
        else:
            texts += read_text(path).splitlines()
    return texts


def conversation_texts(rows: list[dict]) -> list[str]:
    """Every turn's text of LLaVA-style rows (`conversations: [{from, value}, ...]`)."""
    rows = [row for row in rows if isinstance(row, dict) and isinstance(row.get("conversations"), list)]
    turns = [turn for row in rows for turn in row["conversations"]]
    return [turn["value"] for turn in turns if isinstance(turn, dict) and isinstance(turn.get("value"), str)]


def _keep_eval(module: nn.Module, mode: bool = True) -> nn.Module:
    """Stand-in for `train()` on frozen parts: `Trainer` calls `model.train()` every step."""
    return module


def _freeze(module: nn.Module) -> None:
    module.requires_grad_(False)
    module.eval()
    module.train = _keep_eval.__get__(module)


def _trainable_parts(model, args) -> dict[str, tuple[list[nn.Module], str]]:
    """Component -> (modules that take part, tune type)."""
    layers = model.used_vision_layers()  # the rest get no gradient, and trainable unused weights break DDP
    vision_parts = [*input_modules(model.vision_tower), *layers]
    if args.tune_vision_tower == "partial":
        vision_parts, vision_tune = list(layers[args.vision_tower_from_layer :]), "full"
    else:
        vision_tune = args.tune_vision_tower
    return {
        "language_model": ([model.language_model], args.tune_language_model),
        "vision_tower": (vision_parts, vision_tune),
        "connector": ([model.connector], args.tune_connector),
    }


def linear_layers(model, modules: list[nn.Module]) -> list[str]:
    """Full names of the Linear layers under `modules`, whatever the model family calls them, never the
    output head (the vocabulary-sized layer, often tied to the input embeddings)."""
    names = {id(m): n for n, m in model.named_modules()}
    head = model.get_output_embeddings()
    return [
        f"{names[id(module)]}.{sub_name}".rstrip(".")
        for module in modules
        for sub_name, sub in module.named_modules()
        if isinstance(sub, nn.Linear) and sub is not head
    ]


def lora_config(model, args) -> LoraConfig | None:
    """The LoRA settings for the components tuned with `lora`, or None when none is. `lora_target_modules`
    picks Linear layers by their last name; `InputError` when it picks none of a component's."""
    wanted = args.lora_target_modules
    targets = []
    for component, (modules, tune) in _trainable_parts(model, args).items():
        if tune != "lora":
            continue
        layers = linear_layers(model, modules)
        picked = [name for name in layers if wanted is None or name.rsplit(".", 1)[-1] in wanted]
        if not picked:
            known = sorted({name.rsplit(".", 1)[-1] for name in layers})
            raise InputError(
                f"lora_target_modules {' '.join(wanted)} name no Linear layer of the {component}; its layers are "
                f"named {', '.join(known)}"
            )
        targets += picked
    if not targets:
        return None
    return LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout, target_modules=targets)


def apply_tuning(model, args: Tuning):
    """Set what trains: everything frozen first, then per component full weights or LoRA adapters.

    Frozen parts stay in eval mode; the vision tower counts as frozen unless some of it trains.
    """
    model.requires_grad_(False)
    config = lora_config(model, args)
    if config is not None:
        inject_adapter_in_model(config, model)  # the new lora_A/B weights are the only trainable ones
    for modules, tune in _trainable_parts(model, args).values():
        if tune == "full":
            for module in modules:
                module.requires_grad_(True)
        elif tune == "linear":
            for name in linear_layers(model, modules):
                model.get_submodule(name).requires_grad_(True)
    for part in (model.vision_tower, model.connector, model.language_model):
        if not any(p.requires_grad for p in part.parameters()):
            _freeze(part)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    share = 100 * trainable / max(total, 1)
    logger.info("trainable parameters: %s of %s (%.2f%%)", f"{trainable:,}", f"{total:,}", share)
    return model


def load_for_training(config: ModelArguments) -> tuple[TinyVideoForConditionalGeneration, TinyVideoProcessor]:
    """A stage's model, with what trains set (`apply_tuning`), and its processor. `config`: the stage's config
    (`ModelArguments` parsed together with the Trainer's `TrainingArguments`). The processor records the
    stage's frame sampling, so the checkpoints it saves are evaluated and served with the frames they learnt on."""
    model, processor = load_model_and_processor(config, seed=config.seed)
    processor.frame_sampling = FrameSampling.from_config(config)
    apply_tuning(model, config)
    if config.activation_checkpointing and (config.activation_checkpointing_kwargs or {}).get("use_reentrant"):
        # Reentrant checkpointing drops the gradient when no input of a block needs one (frozen embeddings).
        model.enable_input_require_grads()
    return model, processor


# ---- saving -----------------------------------------------------------------------------------------


def merged_state_dict(model, state_dict: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The model's weights with every LoRA adapter folded in, under the plain (adapter-free) names.

    `state_dict` is the full state dict when the caller gathered it (e.g. from ZeRO-3 shards); the live
    model is left untouched, so training can go on after a save.
    """
    state = dict(model.state_dict() if state_dict is None else state_dict)
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        weight = state.pop(f"{name}.base_layer.weight")
        for adapter in module.lora_A:
            a = state.pop(f"{name}.lora_A.{adapter}.weight")
            b = state.pop(f"{name}.lora_B.{adapter}.weight")
            delta = (b.float() @ a.float()) * module.scaling[adapter]
            weight = (weight.float() + delta.to(weight.device)).to(weight.dtype)
        state[f"{name}.weight"] = weight
        if f"{name}.base_layer.bias" in state:
            state[f"{name}.bias"] = state.pop(f"{name}.base_layer.bias")
    return state


def _replace_folder(build, out_dir: str | os.PathLike) -> Path:
    """Run `build(tmp)` on a temporary sibling folder, then move it to `out_dir` by renames: readers see the
    old folder or the complete new one, never a half-written one."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        build(tmp)
        usual_permissions(tmp)
        old = None
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def save_model(model, processor, out_dir: str | os.PathLike, state_dict=None) -> Path:
    """Write a folder that `TinyVideoForConditionalGeneration.from_pretrained` loads: LoRA merged, processor
    files included, atomically. Call it on one process; `state_dict` is for weights gathered elsewhere."""
    merged = merged_state_dict(model, state_dict)

    def build(tmp: Path) -> None:
        model.save_pretrained(tmp, state_dict=merged)
        processor.save_pretrained(tmp)

    return _replace_folder(build, out_dir)


def tower_image_processor(image_size: int) -> SiglipImageProcessorPil:
    """The image processor of a tower trained on `preprocess_frames` output, exactly: a bicubic squash to
    `image_size` x `image_size`, then (x / 255 - 0.5) / 0.5."""
    return SiglipImageProcessorPil(size={"height": image_size, "width": image_size})


def save_vision_tower(model, processor, out_dir: str | os.PathLike, state_dict=None, write_beside=None) -> Path:
    """Write the SigLIP vision model inside `model` (a two-tower SigLIP, or a vision model with a training
    head of its own) as a plain `SiglipVisionModel` folder, with `processor`'s files, atomically: a folder
    that loads as a vision tower with no weight left over. The rest of `model` stays in the run's
    checkpoints, but for what `write_beside(folder)` writes into the folder in its own files. Call it on one
    process; `state_dict` is for weights gathered elsewhere."""
    state = model.state_dict() if state_dict is None else state_dict
    tower = SiglipVisionModel(copy.deepcopy(getattr(model.config, "vision_config", model.config)))
    prefix = "vision_model." if isinstance(getattr(model, "vision_model", None), SiglipVisionModel) else ""
    tower.load_state_dict({name: state[prefix + name] for name in tower.state_dict()})

    def build(tmp: Path) -> None:
        tower.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        if write_beside is not None:
            write_beside(tmp)

    return _replace_folder(build, out_dir)


def save_adapter(model, out_dir: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
    """Only the LoRA weights and their settings (small), for sharing or for `load_adapter`; stored in
    `dtype` when given (float16 halves the files), else as they are."""
    if not _has_lora(model):
        raise ValueError("the model has no LoRA adapters to save")
    settings = model.peft_config["default"]

    def build(tmp: Path) -> None:
        settings.save_pretrained(tmp)
        # peft lists a set of target modules in hash order: sorted, the same adapter writes the same file
        saved = json.loads((tmp / CONFIG_NAME).read_text(encoding="utf-8"))
        if isinstance(saved.get("target_modules"), list):
            saved["target_modules"] = sorted(saved["target_modules"])
            write_text(tmp / CONFIG_NAME, json.dumps(saved, indent=2, sort_keys=True))
        weights = {k: v.to(dtype or v.dtype).contiguous() for k, v in get_peft_model_state_dict(model).items()}
        save_file(weights, tmp / ADAPTER_WEIGHTS)

    return _replace_folder(build, out_dir)


def load_adapter(model, folder: str | os.PathLike):
    """Inject the adapters saved by `save_adapter` into a model of the same architecture, on exactly the layers
    whose weights the folder holds: the saved `target_modules` are name suffixes (peft shortens a long list), which
    layers of another part can also end with (a deeper vision tower's "1.self_attn.q_proj")."""
    folder = Path(folder)
    weights = load_file(folder / ADAPTER_WEIGHTS)
    config = LoraConfig.from_pretrained(folder)
    config.target_modules = "|".join(sorted({re.escape(key.split(".lora_")[0]) for key in weights}))  # matched whole
    inject_adapter_in_model(config, model)
    result = set_peft_model_state_dict(model, weights)
    missing = [k for k in result.missing_keys if "lora_" in k]
    if missing:
        raise ValueError(f"{folder}: adapter weights missing for {missing[:3]}...")
    return model


def _has_lora(model) -> bool:
    return any(isinstance(m, LoraLayer) for m in model.modules())
