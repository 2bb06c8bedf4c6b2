"""`tinyvideo serve`: the web page that answers questions about a video (`tinyvideo.serve`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tinyvideo.checkpoints import DTYPES
from tinyvideo.flags import port_number, positive_float, positive_int
from tinyvideo.modeling import TinyVideoForConditionalGeneration
from tinyvideo.processing import TinyVideoProcessor
from tinyvideo.serve import Limits, build_app, launch, load_samples


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="checkpoint folder (tinyvideo or published TinyLLaVA format)")
    parser.add_argument("--samples", type=Path, help="a generated synthetic suite whose test clips are offered as samples")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=port_number, default=7860)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps, ...")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32")
    parser.add_argument(
        "--frames",
        type=positive_int,
        help=f"frames sampled uniformly from each video (default: as the model was trained, else {Limits.num_frames})",
    )
    parser.add_argument("--max-new-tokens", type=positive_int, default=Limits.max_new_tokens)
    parser.add_argument("--max-upload-mb", type=positive_float, default=Limits.max_upload_mb, help="largest accepted upload")
    parser.add_argument("--max-duration", type=positive_float, default=Limits.max_duration, help="longest accepted video, seconds")


def run(args: argparse.Namespace) -> int:
    try:
        import gradio  # noqa: F401
    except ImportError:
        print("tinyvideo serve needs gradio: pip install gradio", file=sys.stderr)
        return 2
    samples = load_samples(args.samples) if args.samples else {}
    processor = TinyVideoProcessor.from_pretrained(args.model)
    model = TinyVideoForConditionalGeneration.from_pretrained(args.model, dtype=DTYPES[args.dtype])
    model.to(args.device).eval()
    frames = args.frames or processor.frame_sampling.num_frames or Limits.num_frames  # the page samples a count, not a rate
    limits = Limits(args.max_upload_mb, args.max_duration, frames, args.max_new_tokens)
    launch(build_app(model, processor, samples, limits), args.host, args.port, limits, samples)
    return 0
