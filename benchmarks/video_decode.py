"""Frame sampling speed: ``read_frames`` against the two naive ways, measured side by side.

Naive ways:
- ``decode_all``: decode and convert every frame to RGB, then pick the sampled ones (what the published
  pytorchvideo/decord path does, minus holding the whole clip in memory);
- ``sequential``: decode forward from the start, converting only the sampled frames, and stop at the
  last sampled index (lmms-eval's default PyAV reader).

Two H.264 test videos with the frame index painted in are generated once and cached: 20 minutes of
640x360 at 30 fps with a 150-frame GOP, and 5 minutes of 1280x720 at 30 fps with a 250-frame GOP.
Every method's frames are checked against the painted indices before its time is recorded. All
methods use the same decoder thread count, runs are interleaved, and times are medians of wall and
CPU seconds; on a shared machine the CPU-time ratios are the steadier figures.

    python benchmarks/video_decode.py [--cache DIR] [--output JSON] [--repeats N] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from media import make_indexed_video, read_indices  # noqa: E402

from tinyvideo.video import read_frames, uniform_indices  # noqa: E402

VIDEOS = {
    "long360": dict(num_frames=20 * 60 * 30, fps=30, size=(640, 360), gop=150, bframes=2),
    "hd720": dict(num_frames=5 * 60 * 30, fps=30, size=(1280, 720), gop=250, bframes=3),
}
SAMPLINGS = [("8", 8), ("16", 16), ("32", 32), ("64", 64), ("1fps", None)]


def naive_frames(path: Path, indices: np.ndarray, convert_all: bool, threads: int) -> np.ndarray:
    """Decode from the first frame, counting frames, until the last wanted index."""
    wanted = set(indices.tolist())
    picked = {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type, stream.thread_count = "AUTO", threads
        for k, frame in enumerate(container.decode(stream)):
            if convert_all or k in wanted:
                rgb = frame.to_ndarray(format="rgb24")
                if k in wanted:
                    picked[k] = rgb
            if not convert_all and k >= indices[-1]:
                break
    return np.stack([picked[k] for k in indices])


def measure(methods: dict[str, tuple[Callable[[], np.ndarray], int]]) -> tuple[dict, dict]:
    """Median wall and CPU seconds of each method, runs interleaved so that changing load hits all alike.

    ``methods`` maps a name to ``(function, runs)``. Returns the times and each method's last result.
    """
    walls: dict[str, list[float]] = {name: [] for name in methods}
    cpus: dict[str, list[float]] = {name: [] for name in methods}
    results = {}
    for run in range(max(runs for _, runs in methods.values())):
        for name, (fn, runs) in methods.items():
            if run < runs:
                wall, cpu = time.perf_counter(), time.process_time()
                results[name] = fn()
                walls[name].append(time.perf_counter() - wall)
                cpus[name].append(time.process_time() - cpu)
    times = {
        name: {"wall_s": round(statistics.median(walls[name]), 3), "cpu_s": round(statistics.median(cpus[name]), 3)}
        for name in methods
    }
    return times, results


def check(name: str, frames: np.ndarray, indices: np.ndarray) -> None:
    got = read_indices(frames)
    if got != indices.tolist():
        raise AssertionError(f"{name} returned frames {got[:8]}... instead of {indices[:8].tolist()}...")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=ROOT / "outputs" / "video_decode", help="generated videos")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "video_decode.json")
    parser.add_argument("--repeats", type=int, default=3, help="runs of read_frames and sequential per case")
    parser.add_argument("--decode-all-repeats", type=int, default=1, help="runs of decode_all (the slowest) per case")
    parser.add_argument("--threads", type=int, default=1, help="decoder threads, the same for every method")
    args = parser.parse_args()

    results = []
    for name, spec in VIDEOS.items():
        path = args.cache / f"{name}.mp4"
        if not path.exists():
            print(f"generating {path} ...", flush=True)
            begin = time.perf_counter()
            options = {k: v for k, v in spec.items() if k != "num_frames"}
            make_indexed_video(path.with_suffix(".partial.mp4"), spec["num_frames"], **options).rename(path)
            print(f"  {time.perf_counter() - begin:.0f} s", flush=True)
        total = spec["num_frames"]
        for label, num in SAMPLINGS:
            kwargs = {"num_frames": num} if num else {"fps": 1.0}
            indices = uniform_indices(total, num or total // 30)
            times, outputs = measure({
                "read_frames": (lambda: read_frames(path, threads=args.threads, **kwargs)[0], args.repeats),
                "sequential": (lambda: naive_frames(path, indices, False, args.threads), args.repeats),
                "decode_all": (lambda: naive_frames(path, indices, True, args.threads), args.decode_all_repeats),
            })
            for method, frames in outputs.items():
                check(method, frames, indices)
            row = {"video": name, "sampling": label, "frames": len(indices), **times}
            for clock in ("wall_s", "cpu_s"):
                ours = times["read_frames"][clock]
                fastest = min(times["sequential"][clock], times["decode_all"][clock])
                row[f"speedup_{clock[:-2]}"] = {
                    "vs_decode_all": round(times["decode_all"][clock] / ours, 2),
                    "vs_sequential": round(times["sequential"][clock] / ours, 2),
                    "vs_fastest_naive": round(fastest / ours, 2),
                }
            results.append(row)
            print(json.dumps(row), flush=True)
            write_report(args, results)
    print(f"wrote {args.output}")


def write_report(args: argparse.Namespace, results: list[dict]) -> None:
    """Rewritten after every case, atomically, so an interrupted run keeps what it measured."""
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
        "backend": f"pyav {av.__version__}",
        "runs": {"read_frames": args.repeats, "sequential": args.repeats, "decode_all": args.decode_all_repeats},
        "threads": args.threads,
        "videos": VIDEOS,
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    partial = args.output.with_suffix(".partial")
    partial.write_text(json.dumps(report, indent=2) + "\n")
    partial.replace(args.output)


if __name__ == "__main__":
    main()
