"""Rollouts from a DeepSpeed ZeRO-3 engine on the CPU, run under `accelerate launch` (2 processes, gloo):
how often DeepSpeed fetches a module's weights while `sample_completions` generates 4 and 8 tokens,
with and without `gathered_for_generation`, the rollouts against those of the same model unsharded
(same seed), and whether training goes on afterwards. One JSON file per process.

    python zero3_generation.py OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import deepspeed
import numpy as np
import torch
from deepspeed.runtime.zero.partitioned_param_coordinator import PartitionedParameterCoordinator

from tinyvideo.processing import preprocess_frames
from tinyvideo.scratch import build_tiny
from tinyvideo.train.grpo_rollouts import prompt_batch, prompt_embeddings, sample_completions
from tinyvideo.train.grpo_trainer import gathered_for_generation

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "deepspeed" / "zero3.json"


def filled(config: dict, values: dict) -> dict:
    """The DeepSpeed file with its "auto" values replaced, as the Trainer would for this run."""
    return {
        key: filled(value, values) if isinstance(value, dict) else values[key] if value == "auto" else value
        for key, value in config.items()
    }


def main(out: Path) -> None:
    deepspeed.init_distributed(dist_backend="gloo")
    model, processor = build_tiny(["what colour is the circle at the end of the video"], seed=0)
    whole = build_tiny(["what colour is the circle at the end of the video"], seed=0)[0].eval()
    width = model.config.hidden_size
    values = {
        "train_micro_batch_size_per_gpu": 1, "train_batch_size": 2, "gradient_accumulation_steps": 1,
        "gradient_clipping": 1.0, "enabled": False, "reduce_bucket_size": width * width,
        "stage3_prefetch_bucket_size": int(0.9 * width * width),
        "stage3_param_persistence_threshold": 0,  # every weight sharded, however small (the tiny model's all are)
    }
    config = {**filled(json.loads(CONFIG.read_text()), values), "zero_allow_untested_optimizer": True}
    engine, *_ = deepspeed.initialize(model=model, optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3), config=config)
    policy = engine.module

    fetches = []
    fetch = PartitionedParameterCoordinator.fetch_sub_module
    PartitionedParameterCoordinator.fetch_sub_module = lambda self, *a, **k: fetches.append(1) or fetch(self, *a, **k)

    frames = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    prompt = processor.tokenize("<image>\nwhat colour is the circle", [4])
    videos = [preprocess_frames(frames, processor.image_size)]

    def rollouts(model, tokens: int) -> list[list[int]]:
        prompts = prompt_batch(model, processor, [prompt], videos)
        embeds = prompt_embeddings(model, prompts).detach()
        fetches.clear()
        with gathered_for_generation(engine) if model is engine.module and gathered else torch.no_grad():
            return sample_completions(model, prompts, embeds, 2, tokens, seeds=[0], eos_token_id=None, pad_token_id=0).tolist()

    report = {"sharded": all(p.numel() == 0 for p in policy.parameters())}
    for gathered in (False, True):
        for tokens in (4, 8):
            ids = rollouts(policy, tokens)
            report[f"{'gathered' if gathered else 'hooks'}/{tokens}"] = {"fetches": len(fetches), "ids": ids}
    report["whole"] = {tokens: rollouts(whole, tokens) for tokens in (4, 8)}
    report["sharded_after"] = all(p.numel() == 0 for p in policy.parameters())
    fetches.clear()
    loss = engine(input_ids=torch.tensor([prompt]), pixel_values_videos=videos[0], labels=torch.tensor([prompt])).loss
    engine.backward(loss)
    engine.step()
    report["training_fetches"] = len(fetches)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank-{engine.global_rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
