"""The commands' numeric flags: argparse `type=` validators that refuse a value out of range (nan and inf
included) when it is parsed, and the frame-sampling flags `infer` and `eval` share."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from tinyvideo.errors import InputError
from tinyvideo.video import FrameSampling

DEFAULT_FRAMES = FrameSampling.num_frames


def _number(convert: Callable[[str], float], least: float, above: bool = False, most: float | None = None):
    """An argparse `type=` that parses with `convert` and refuses values outside the range (and nan, inf)."""
    kind = "a whole number" if convert is int else "a number"
    bounds = f"greater than {least}" if above else f"at least {least}"
    if most is not None:
        bounds += f" and at most {most}"

    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind} {bounds}, got {text!r}") from None
        if not math.isfinite(value) or value < least or (above and value == least) or (most is not None and value > most):
            raise argparse.ArgumentTypeError(f"must be {kind} {bounds}, got {text!r}")
        return value

    parse.__name__ = f"{kind} {bounds}"
    return parse


positive_int = _number(int, 1)
non_negative_int = _number(int, 0)
positive_float = _number(float, 0, above=True)
non_negative_float = _number(float, 0)
port_number = _number(int, 0, most=65535)


def add_frame_arguments(parser: argparse.ArgumentParser) -> None:
    """`--frames N` or `--fps F` (with an optional `--max-frames` cap), as `infer` and `eval` take them."""
    frames = parser.add_mutually_exclusive_group()
    frames.add_argument(
        "--frames",
        type=positive_int,
        help=f"number of uniformly sampled frames (default: as the model was trained, else {DEFAULT_FRAMES})",
    )
    frames.add_argument("--fps", type=positive_float, help="sample this many frames per second of video instead")
    parser.add_argument("--max-frames", type=positive_int, help="cap on the frame count with --fps")


def frame_sampling(args: argparse.Namespace, default: FrameSampling) -> FrameSampling:
    """The `FrameSampling` the flags of `add_frame_arguments` ask for, `default` (the model's own, see
    `tinyvideo.processing.trained_frame_sampling`) when they ask for none; `InputError` for `--max-frames`
    without `--fps`."""
    if args.frames is None and args.fps is None:
        if args.max_frames is not None:
            raise InputError("max_frames caps fps sampling: give --fps with --max-frames")
        return default
    return FrameSampling(args.frames, args.fps, args.max_frames)
