"""`tinyvideo export`: write a checkpoint back in the published TinyLLaVA format."""

from __future__ import annotations

import argparse

from tinyvideo.checkpoints import export_published
from tinyvideo.modeling import TinyVideoForConditionalGeneration
from tinyvideo.processing import TinyVideoProcessor


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="tinyvideo or published checkpoint folder")
    parser.add_argument("--out", required=True, help="folder to write")
    parser.add_argument("--format", choices=["tinyllava"], default="tinyllava", help="output format")


def run(args: argparse.Namespace) -> int:
    model = TinyVideoForConditionalGeneration.from_pretrained(args.model)
    processor = TinyVideoProcessor.from_pretrained(args.model)
    print(export_published(model, processor, args.out))
    return 0
