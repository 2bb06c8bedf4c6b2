"""`benchmarks/gpu_check.py`: the one-command GPU check runs as is, checked on the CPU with `--tiny`, and
builds the full-size model it measures on a GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import gpu_check  # noqa: E402


def test_tiny_run_writes_every_measurement(tmp_path):
    output = tmp_path / "check.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_check.py"), "--tiny", "--output", str(output)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(output.read_text())
    sizes = gpu_check.SIZES["tiny"]
    assert report["model"]["size"] == "tiny" and report["answer"]["sdpa"]["new_tokens"] == sizes["new_tokens"]
    step = report["grpo_step"]
    for way in ("ours", "published"):
        assert step[way]["seconds"] > 0 and step[way]["rollout_tokens"] > 0
    assert abs(step["loss_ours"] - step["loss_published_on_our_rollouts"]) < 1e-5  # the same loss on the same rollouts
    evaluation = report["evaluation"]
    assert evaluation["questions"] == sizes["eval_videos"] * 3 and evaluation["identical_greedy_answers"]
    assert evaluation["harness"]["questions_per_second"] > 0 and evaluation["published_loop"]["questions_per_second"] > 0


def test_the_full_size_model_is_the_published_architecture_in_bfloat16():
    model, processor = gpu_check.build(False, torch.device("meta"), torch.bfloat16)
    assert 3.6e9 < sum(p.numel() for p in model.parameters()) < 3.65e9
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not any(p.requires_grad for p in model.vision_tower.parameters())
    batch = processor(text=[gpu_check.chat_prompt(gpu_check.QUESTION)], videos=[gpu_check.video(16)])
    assert batch["pixel_values_videos"].shape[-3:] == (3, 384, 384)
    assert int((batch["input_ids"] == model.config.video_token_id).sum()) == 512
