"""`tinyvideo base`: build a pretrained base model from nothing (resumable), in the form tinyvideo ships."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tinyvideo.data.synth import SCALES
from tinyvideo.flags import non_negative_int
from tinyvideo.train.base_model import BASE_SEED, DEFAULT, LANGUAGE_MODELS, build


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/base"), help="folder for its suite and runs (default runs/base); a rerun resumes")
    parser.add_argument("--name", choices=list(LANGUAGE_MODELS), default=DEFAULT, help=f"which base model (default {DEFAULT})")
    parser.add_argument(
        "--seed", type=non_negative_int, default=BASE_SEED, help=f"seed of its suite and runs (default {BASE_SEED}: no demo's suite)"
    )
    parser.add_argument("--scale", choices=list(SCALES), default="small", help="its suite's scale (default small)")
    parser.add_argument(
        "--into",
        type=Path,
        help="folder to pack the shipped files into (default OUT/NAME; src/tinyvideo/base_models/NAME replaces the shipped one)",
    )


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    folder = build(args.out, args.name, args.seed, args.scale, args.into)
    print(f"base model {args.name} packed into {folder} ({time.perf_counter() - started:.0f} s)")
    return 0
