"""One command on one GPU: the full-size model's memory and speed, and our ways against the published ones.

The model is the published TinyLLaVA-Video architecture (`scratch.full_size_config`: SigLIP-so400m at
384 px, the group resampler with 512 visual tokens, Qwen2.5-3B; about 3.6B parameters) with random
weights in bfloat16, built on the GPU. Three measurements, each side by side in the same process:

1. Answering: 16 frames of 384x384 and 512 new tokens (greedy, no early stop), peak GPU memory and
   seconds, with SDPA attention and, when `flash_attn` is installed, flash-attention 2. Target: at most
   9 GiB at peak, so that a 16 GB card holds it.
2. One GRPO step (G=8 rollouts of 512 tokens for 1 prompt, reference model, loss and backward):
   ours (`benchmarks/grpo_step.py`'s `our_step`: the video through the vision tower once, one
   batched `generate`, completion-only log-probs) against the published way (its `published_step`:
   8 sequential `generate` calls, the vision tower per rollout, full-sequence logits); seconds and
   peak memory of each. Both without activation checkpointing: with it (as `configs/grpo_r1.yaml`
   has it) the published trainer generates in train mode, where transformers turns the KV cache off,
   so its rollouts would be slower still and the step would not fit in the time allowed.
3. Evaluation questions per second (`benchmarks/eval_throughput.py`'s fixture: 4-second 320x240
   clips, 3 questions each, 16 frames, 16 new tokens): the harness against the published loop.

The random weights make the answers meaningless; the costs are those of the real model. The tokenizer
is a small one (ids it lacks decode to nothing), which changes no cost on the GPU.

    python benchmarks/gpu_check.py [--output benchmarks/results/gpu_check.json]
    python benchmarks/gpu_check.py --tiny     # the same steps with the tiny model on the CPU, in seconds
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from eval_throughput import QUESTIONS_PER_VIDEO, harness_run, make_fixture, published_loop  # noqa: E402
from grpo_step import our_step, published_step  # noqa: E402

from tinyvideo.eval.settings import Settings  # noqa: E402
from tinyvideo.modeling import TinyVideoForConditionalGeneration  # noqa: E402
from tinyvideo.processing import TinyVideoProcessor, chat_prompt, preprocess_frames  # noqa: E402
from tinyvideo.scratch import build_tiny, full_size_config, train_tokenizer  # noqa: E402
from tinyvideo.train.grpo import grpo_prompt  # noqa: E402

QUESTION = "Which shape moves left?\nOptions:\nA. the red circle\nB. the blue square\nC. the green cross\nD. none"
MEMORY_TARGET_GIB = 9.0
# What each measurement takes: the sizes at full size, a few tokens and clips for the CPU check.
SIZES = {
    "full": {"frames": 16, "new_tokens": 512, "generations": 8, "eval_videos": 20, "eval_new_tokens": 16},
    "tiny": {"frames": 4, "new_tokens": 8, "generations": 2, "eval_videos": 2, "eval_new_tokens": 4},
}


def build(tiny: bool, device: torch.device, dtype: torch.dtype):
    """The model (random weights, `dtype`, on `device`, the vision tower frozen) and its processor."""
    if tiny:
        model, processor = build_tiny([QUESTION], seed=0)
        model.to(device=device, dtype=dtype)
    else:
        config = full_size_config()
        processor = TinyVideoProcessor.from_config(train_tokenizer([QUESTION], 512), config)
        default = torch.get_default_dtype()
        torch.manual_seed(0)
        try:
            torch.set_default_dtype(dtype)
            with torch.device(device):  # initialised where it runs: no full-size copy in host memory
                model = TinyVideoForConditionalGeneration(config)
        finally:
            torch.set_default_dtype(default)
    model.vision_tower.requires_grad_(False)
    return model, processor


class Meter:
    """Seconds and peak accelerator memory (GiB, None on the CPU) of the code in a `with` block."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: float = 0.0
        self.peak_gib: float | None = None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_gib = round(torch.cuda.max_memory_allocated(self.device) / 2**30, 2)
        self.seconds = round(time.perf_counter() - self.start, 3)

    def record(self) -> dict:
        return {"seconds": self.seconds, "peak_gib": self.peak_gib}


def video(frames: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (frames, 384, 384, 3), dtype=np.uint8)


def answer(model, processor, sizes: dict, device: torch.device) -> dict:
    """Seconds and peak memory to answer one question about a video, per attention implementation."""
    batch = processor(text=[chat_prompt(QUESTION)], videos=[video(sizes["frames"])]).to(device)
    kinds = ["sdpa"] + (["flash_attention_2"] if device.type == "cuda" and importlib.util.find_spec("flash_attn") else [])
    results = {}
    model.eval()
    for kind in kinds:
        model.set_attn_implementation(kind)
        with torch.inference_mode():
            model.generate(**batch, max_new_tokens=2, do_sample=False)  # warm-up: kernels chosen, caches made
            with Meter(device) as meter:
                output = model.generate(
                    **batch, max_new_tokens=sizes["new_tokens"], min_new_tokens=sizes["new_tokens"], do_sample=False
                )
        new = output.shape[1] - batch["input_ids"].shape[1]
        results[kind] = {**meter.record(), "new_tokens": new, "tokens_per_second": round(new / meter.seconds, 1)}
        if meter.peak_gib is not None:
            results[kind]["within_target"] = meter.peak_gib <= MEMORY_TARGET_GIB
    model.set_attn_implementation("sdpa")
    return {"frames": sizes["frames"], "frame_size": processor.image_size, "prompt_tokens": batch["input_ids"].shape[1], **results}


def grpo(model, processor, sizes: dict, device: torch.device) -> dict:
    """One GRPO step for one prompt, ours against the published way."""
    model.train()
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    args = SimpleNamespace(device=device, generations=sizes["generations"], new_tokens=sizes["new_tokens"], seed=0)
    videos = [preprocess_frames(video(sizes["frames"], seed=1), processor.image_size)]
    prompt_ids = [processor.tokenize(grpo_prompt(QUESTION, processor), [sizes["frames"]])]
    solutions = ["<answer>A</answer>"] * sizes["generations"]
    with Meter(device) as ours_meter:
        ours, (completions, advantages) = our_step(model, reference, processor, videos, prompt_ids, solutions, args)
    model.zero_grad(set_to_none=True)
    with Meter(device) as published_meter:
        published = published_step(
            model, reference, processor, videos, prompt_ids, solutions, args, completions, advantages
        )
    model.zero_grad(set_to_none=True)
    del reference
    return {
        "generations": sizes["generations"],
        "completion_tokens": sizes["new_tokens"],
        "ours": {**ours_meter.record(), "rollout_seconds": round(ours["rollout_s"], 3), "rollout_tokens": ours["rollout_tokens"]},
        "published": {
            **published_meter.record(), "rollout_seconds": round(published["rollout_s"], 3),
            "rollout_tokens": published["rollout_tokens"],
        },
        "speedup": round(published_meter.seconds / ours_meter.seconds, 2),
        "loss_ours": ours["loss"],
        "loss_published_on_our_rollouts": published["loss"],
    }


def evaluation(model, processor, sizes: dict, device: torch.device) -> dict:
    """Questions per second, the harness (batches of 8) against the published loop (one at a time)."""
    model.eval()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as folder:
        data = make_fixture(Path(folder), videos=sizes["eval_videos"])
        settings = Settings("synth", str(data), "random weights", frames=16, max_new_tokens=sizes["eval_new_tokens"])
        questions = sizes["eval_videos"] * QUESTIONS_PER_VIDEO
        with Meter(device) as loop_meter:
            loop = published_loop(model, processor, settings)
        with Meter(device) as harness_meter:
            harness = harness_run(model, processor, settings, batch_size=8, workers=2)
    rate = lambda meter: round(questions / meter.seconds, 2)  # noqa: E731
    return {
        "questions": questions,
        "published_loop": {**loop_meter.record(), "questions_per_second": rate(loop_meter)},
        "harness": {**harness_meter.record(), "questions_per_second": rate(harness_meter)},
        "speedup": round(loop_meter.seconds / harness_meter.seconds, 2),
        "identical_greedy_answers": loop == harness,
    }


def run(tiny: bool, device: torch.device) -> dict:
    """Every measurement, as the JSON report holds them."""
    begin = time.perf_counter()
    dtype = torch.float32 if tiny else torch.bfloat16
    model, processor = build(tiny, device, dtype)
    sizes = SIZES["tiny" if tiny else "full"]
    report = {
        "machine": f"{platform.machine()}, {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}, "
        f"torch {torch.__version__}",
        "model": {"size": "tiny" if tiny else "full", "parameters": sum(p.numel() for p in model.parameters()), "dtype": str(dtype)},
        "memory_target_gib": MEMORY_TARGET_GIB,
        "answer": answer(model, processor, sizes, device),
        "grpo_step": grpo(model, processor, sizes, device),
        "evaluation": evaluation(model, processor, sizes, device),
    }
    report["total_seconds"] = round(time.perf_counter() - begin, 1)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="the tiny model on the CPU: checks the script itself")
    parser.add_argument("--device", help="default: cuda (cpu with --tiny)")
    parser.add_argument("--output", type=Path, help="default: benchmarks/results/gpu_check.json (gpu_check-tiny.json)")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cpu" if args.tiny else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU, or with --tiny on the CPU")
    output = args.output or ROOT / "benchmarks" / "results" / ("gpu_check-tiny.json" if args.tiny else "gpu_check.json")
    report = run(args.tiny, device)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
