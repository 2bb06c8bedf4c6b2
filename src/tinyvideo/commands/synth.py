"""`tinyvideo synth`: generate the synthetic video-reasoning suite."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tinyvideo.data.synth import MANIFEST, SCALES, generate_suite
from tinyvideo.flags import non_negative_int, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", required=True, type=Path, help="folder to write the suite to (new, empty, or a previous suite)"
    )
    parser.add_argument(
        "--seed", type=non_negative_int, default=0, help="random seed; the same seed gives the same files (default 0)"
    )
    parser.add_argument(
        "--scale",
        choices=list(SCALES),
        default="small",
        help="smoke: seconds, for tests; small (default): a demo a tiny model learns in minutes; full: larger",
    )
    parser.add_argument(
        "--preview", action="store_true", help="also write preview.png, one row of frames and text per task"
    )
    parser.add_argument("--workers", type=positive_int, default=None, help="encoding threads (default: one per core, at most 8)")


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    suite = generate_suite(args.out, seed=args.seed, scale=args.scale, preview=args.preview, workers=args.workers)
    counts = ", ".join(f"{n} {split}" for split, n in suite.manifest["counts"].items())
    seconds = time.perf_counter() - started
    print(f"wrote {counts} clips to {suite.root} in {seconds:.1f} s; layout in {suite.root / MANIFEST}")
    if args.preview:
        print(f"preview: {suite.path('preview')}")
    return 0
