"""`tinyvideo init`: a new model, tiny from scratch or a language model and a vision tower joined by a new
connector, written to a folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from tinyvideo.config import FEATURE_SELECT_STRATEGIES
from tinyvideo.connectors import CONNECTORS
from tinyvideo.errors import InputError
from tinyvideo.flags import non_negative_int, positive_int
from tinyvideo.processing import CHAT_FORMATS
from tinyvideo.rows import read_text
from tinyvideo.scratch import TINY_TOWERS, assemble, build_tiny, tiny_config, tiny_tower_family, words_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder to write the new model to (new or empty)")
    parser.add_argument("--overwrite", action="store_true", help="replace what the --out folder holds")
    parser.add_argument(
        "--language-model", help="a causal LM folder (Hugging Face format, or holding --gguf-file); default: a new tiny one"
    )
    parser.add_argument("--gguf-file", help="the GGUF file in the --language-model folder to read the model from")
    parser.add_argument(
        "--language-model-layers",
        nargs="+",
        type=non_negative_int,
        help="with --language-model: keep only these of its decoder layers, by index, in order (layer pruning)",
    )
    parser.add_argument(
        "--chat-format", choices=CHAT_FORMATS, help="with --language-model: default qwen2_base for Qwen models, else the tokenizer's"
    )
    parser.add_argument("--connector", default="group", choices=list(CONNECTORS))
    parser.add_argument("--image-size", type=positive_int, default=32, help="frame side of a new tiny vision tower")
    parser.add_argument("--num-queries", type=positive_int, default=16)
    parser.add_argument("--group", type=positive_int, default=4)
    parser.add_argument(
        "--vision-feature-select-strategy",
        default="patch",
        choices=FEATURE_SELECT_STRATEGIES,
        help="tower tokens the connector reads: patch drops the leading token (a SigLIP tower's first patch, as the "
        "published models do); cls_patch keeps every token",
    )
    parser.add_argument("--model-max-length", type=positive_int, default=3072, help="token limit (with --language-model)")
    parser.add_argument("--texts", help="optional text file (one example a line) to fit the tokenizer's merges on")
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument(
        "--vision-tower",
        default="siglip",
        help=f"a tiny tower of a family ({', '.join(TINY_TOWERS)}; tiny: siglip), or a pretrained tower's folder (SigLIP, CLIP, DINOv2)",
    )


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.overwrite and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} already exists and is not empty: choose another --out, or pass --overwrite to replace it")
    if args.language_model is None and (args.gguf_file or args.chat_format or args.language_model_layers):
        raise InputError("--gguf-file, --chat-format and --language-model-layers apply to a --language-model")
    family = tiny_tower_family(args.vision_tower)
    if family is None and not Path(args.vision_tower).is_dir():
        raise InputError(f"--vision-tower {args.vision_tower}: neither a tiny tower ({', '.join(TINY_TOWERS)}) nor a folder")
    words = words_settings(args.connector, args.vision_tower)
    try:
        tiny_config(1, 0, args.connector, args.image_size, num_queries=args.num_queries, group=args.group, **words)
    except ValueError as error:  # the config's own checks, e.g. num_queries divisible by group
        raise InputError(str(error)) from error
    connector = {
        "connector_type": args.connector,
        "num_queries": args.num_queries,
        "group": args.group,
        "vision_feature_select_strategy": args.vision_feature_select_strategy,
    }
    if args.language_model is not None:
        model, processor = assemble(
            args.language_model,
            args.vision_tower,
            gguf_file=args.gguf_file,
            chat_format=args.chat_format,
            image_size=args.image_size,
            model_max_length=args.model_max_length,
            seed=args.seed,
            language_model_layers=args.language_model_layers,
            **connector,
        )
    else:
        texts = read_text(args.texts).splitlines() if args.texts else ()
        tower = {"vision_tower": family} if family else {"vision_tower_path": args.vision_tower}
        model, processor = build_tiny(texts, seed=args.seed, image_size=args.image_size, **tower, **connector)
    model.save_pretrained(args.out)
    processor.save_pretrained(args.out)
    count = sum(p.numel() for p in model.parameters())
    print(f"wrote a new {args.connector} model ({model.config.vision_config.model_type} tower) with {count:,} parameters to {args.out}")
    return 0
