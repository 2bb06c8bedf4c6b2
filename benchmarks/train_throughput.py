"""Supervised training speed and peak memory, with each engine setting against the naive way, side by side.

The naive way decodes the videos in the training process (`dataloader_num_workers: 0`) and keeps every
activation (no checkpointing) in float32. Each variant changes one thing:
- `workers`: videos decoded in 2 DataLoader workers while the model trains;
- `checkpointing`: activation checkpointing (recomputes the decoder blocks in the backward pass);
- `bf16`: bfloat16 autocast (float32 on a machine without bfloat16 hardware: each result says which ran).
Every variant runs in a fresh process, so peak memory (the CUDA allocator's peak on a GPU, the process's
peak resident set on a CPU) belongs to that variant alone. Samples/s is timed over the steps after the
first `--warmup` ones.

    python benchmarks/train_throughput.py --suite synth [--config src/tinyvideo/recipes/synth/finetune.yaml] [--steps 20]

Without `--suite`, a few toy clips are generated in a temporary folder. The model is the recipe's
(`src/tinyvideo/recipes/synth/pretrain.yaml` by default: a tiny model built from scratch around an untrained vision
tower of the `src/tinyvideo/recipes/synth/vision.yaml` shape; speed does not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "src" / "tinyvideo" / "recipes" / "synth"
VARIANTS = {
    "naive": [],
    "workers": ["--dataloader_num_workers", "2"],
    "checkpointing": ["--activation_checkpointing", "true"],
    "bf16": ["--bf16", "true"],
}


class StepClock(TrainerCallback):
    """Wall time of every optimizer step, data loading included."""

    def __init__(self):
        self.ends: list[float] = []
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


def measure(config_path: str, overrides: list[str], warmup: int) -> dict:
    """Train for the configured steps in this process; samples/s after warm-up and peak memory."""
    from tinyvideo.data.llava import LlavaCollator, LlavaDataset
    from tinyvideo.train.common import load_config, load_for_training
    from tinyvideo.train.sft import SFTConfig, SFTTrainer

    config = load_config(SFTConfig, config_path, overrides)
    model, processor = load_for_training(config)
    dataset = LlavaDataset(config.data_path, config.video_root, processor, config, template=config.template)
    clock = StepClock()
    trainer = SFTTrainer(
        model=model, args=config, train_dataset=dataset, data_collator=LlavaCollator(processor), callbacks=[clock]
    )
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    timed = clock.ends[warmup:]
    samples = (len(timed) - 1) * config.per_device_train_batch_size * config.gradient_accumulation_steps
    if torch.cuda.is_available():
        peak, kind = torch.cuda.max_memory_allocated(), "cuda_allocated"
    else:
        peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "cpu_max_rss"
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # the largest DataLoader worker
    return {
        "samples_per_s": samples / (timed[-1] - timed[0]),
        "bf16": config.bf16,  # false where the machine has no bfloat16 hardware (`bf16_is_native`), even when asked
        "peak_memory_mib": peak / 2**20,
        "memory_kind": kind,
        "worker_peak_rss_mib": workers / 2**20,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def toy_suite(folder: Path) -> tuple[Path, Path]:
    """Sixty-four 16-frame clips of a moving square, captioned; returns (json, video root)."""
    import numpy as np

    from tinyvideo.video import write_video

    rows = []
    for index in range(64):
        frames = np.zeros((16, 64, 64, 3), np.uint8)
        for t in range(16):
            x = (index + 3 * t) % 48
            frames[t, 20:36, x : x + 16] = (255, 64 * (index % 4), 0)
        write_video(folder / f"{index}.mp4", frames, fps=8, preset="ultrafast")
        turns = [{"from": "human", "value": "<image>\nDescribe the video."}, {"from": "gpt", "value": f"A square moves right, clip {index}."}]
        rows.append({"video": f"{index}.mp4", "conversations": turns})
    path = folder / "captions.json"
    path.write_text(json.dumps(rows))
    return path, folder


def vision_tower(folder: Path) -> Path:
    """An untrained tower of the vision recipe's shape, saved where `--vision_tower_path` can read it."""
    from tinyvideo.train.common import load_config
    from tinyvideo.train.vision import VisionConfig, build_towers

    recipe = load_config(VisionConfig, str(RECIPES / "vision.yaml"), ["--output_dir", str(folder)])
    build_towers(recipe, vocab_rows=recipe.vocab_size, pad_token_id=0).save_pretrained(folder)
    return folder


def write_report(report: dict, output: str | Path) -> None:
    """The report as indented JSON at `output`, written whole (through a `.partial` file) or not at all."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".partial")
    partial.write_text(json.dumps(report, indent=2) + "\n")
    os.replace(partial, output)
    print(f"wrote {output}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(RECIPES / "pretrain.yaml"))
    parser.add_argument("--suite", help="a generated synthetic suite; its captions are the data (default: toy clips)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "train_throughput.json"))
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # internal: run one variant, print its JSON
    args, extra = parser.parse_known_args()
    if args.measure:
        print("RESULT " + json.dumps(measure(args.config, json.loads(args.measure), args.warmup)))
        return 0

    with tempfile.TemporaryDirectory() as scratch:
        if args.suite:
            data, videos = Path(args.suite) / "train" / "captions.json", Path(args.suite) / "videos"
        else:
            data, videos = toy_suite(Path(scratch))
        common = [
            "--data_path", str(data), "--video_root", str(videos), "--output_dir", str(Path(scratch) / "out"),
            "--template", "pretrain", "--max_steps", str(args.steps), "--per_device_train_batch_size", str(args.batch_size),
            "--save_strategy", "no", "--logging_steps", str(args.steps), "--report_to", "none",
            "--tokenizer_corpus", str(data), "--dataloader_num_workers", "0", "--use_cpu", str(not torch.cuda.is_available()),
            "--vision_tower_path", str(vision_tower(Path(scratch) / "vision")),
            *extra,
        ]  # fmt: skip
        results = {}
        for name in args.variants:
            command = [sys.executable, __file__, "--config", args.config, "--warmup", str(args.warmup)]
            command += ["--measure", json.dumps(common + VARIANTS[name])]
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(done.stderr[-2000:], file=sys.stderr)
                raise SystemExit(f"variant {name} failed")
            results[name] = json.loads(line[len("RESULT ") :])
    base = results.get("naive")
    for name, result in results.items():
        if base is not None:
            result["speed_vs_naive"] = result["samples_per_s"] / base["samples_per_s"]
            result["memory_vs_naive"] = result["peak_memory_mib"] / base["peak_memory_mib"]
        ratios = f"  x{result['speed_vs_naive']:.2f} speed, x{result['memory_vs_naive']:.2f} memory" if base else ""
        print(f"{name:14s} {result['samples_per_s']:8.2f} samples/s  {result['peak_memory_mib']:9.1f} MiB{ratios}")

    report = {
        "benchmark": "train_throughput",
        "config": os.path.relpath(args.config, ROOT),
        "data": "synthetic suite captions" if args.suite else "toy clips",
        "steps": args.steps,
        "warmup_steps": args.warmup,
        "batch_size": args.batch_size,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "results": results,
    }
    write_report(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
