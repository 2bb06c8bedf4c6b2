"""One GRPO step, our way against the published way: same model, same prompts, same completions.

The published trainer (docs/published-format.md 4.4 and 6, items 2-4), per prompt: G sequential `generate` calls,
each running the vision tower and the connector again; then the video repeated G times through the
vision tower for the policy forward and again for the reference forward, both with full-sequence
logits. Several prompts per device are not supported there, so it takes one step per prompt.

Ours: every video through the vision tower once, the connector once per prompt, the G rollouts of
all prompts from one batched `generate` that starts from copies of each prompt's cache, and log-probs
for completion tokens only, each prompt run once before its G completions (`tinyvideo.scoring`).

Both ways run in the same process, alternately, `--repeats` times; the median of each is kept. To
compare the losses, the published loss is computed on *our* completions with *our* advantages (its
own rollouts are timed, then set aside), so the two losses and their gradients must agree; the
script checks that. The model is the synthetic suite's tiny architecture with random weights; the
reference is a copy with slightly different weights, so the KL term is not zero.

    python benchmarks/grpo_step.py [--prompts 2] [--generations 8] [--new-tokens 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from tinyvideo.processing import pack_videos
from tinyvideo.processing import preprocess_frames
from tinyvideo.scoring import completion_logprobs, token_logprobs
from tinyvideo.scratch import build_tiny
from tinyvideo.train.grpo import grpo_prompt
from tinyvideo.train.grpo_loss import completion_mask, group_advantages, policy_loss
from tinyvideo.train.grpo_rollouts import prompt_batch, prompt_embeddings, sample_completions
from tinyvideo.train.rewards import accuracy_reward, combine_rewards, format_reward

ROOT = Path(__file__).resolve().parents[1]
# The synthetic suite's model (src/tinyvideo/recipes/synth/pretrain.yaml).
TINY = dict(
    image_size=64, patch_size=8, vision_hidden_size=64, vision_layers=3,
    hidden_size=128, num_layers=4, num_queries=32, group=8,
)
QUESTION = "Which shape moves left?\nOptions:\nA. the red circle\nB. the blue square\nC. the green cross\nD. none"
BETA = 0.01


def setup(args):
    model, processor = build_tiny([QUESTION], seed=0, **TINY)
    model.to(args.device)
    model.vision_tower.requires_grad_(False)  # frozen in GRPO: policy and reference share its features
    reference = copy.deepcopy(model).eval().requires_grad_(False)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # the policy a few updates away from the reference
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=generator).to(p.device) * 1e-3)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (args.frames, 96, 96, 3), dtype=np.uint8) for _ in range(args.prompts)]
    videos = [preprocess_frames(clip, TINY["image_size"]) for clip in frames]
    prompt_ids = [processor.tokenize(grpo_prompt(QUESTION, processor), [args.frames]) for _ in range(args.prompts)]
    solutions = ["<answer>A</answer>"] * (args.prompts * args.generations)
    return model, reference, processor, videos, prompt_ids, solutions


def advantages_of(processor, completions, solutions, group, seed):
    texts = processor.batch_decode(completions)
    rewards = combine_rewards([accuracy_reward(texts, solutions), format_reward(texts)], "r1")
    return group_advantages(torch.tensor(rewards), group, noise_std=0.02, generator=torch.Generator().manual_seed(seed))


def our_step(model, reference, processor, videos, prompt_ids, solutions, args):
    """Rollouts, rewards, reference and policy log-probs, loss and backward, as `GRPOTrainer` does them."""
    eos = processor.tokenizer.eos_token_id
    begin = time.perf_counter()
    prompts = prompt_batch(model, processor, prompt_ids, [v.to(args.device) for v in videos])
    embeds = prompt_embeddings(model, prompts)
    completions = sample_completions(
        model, prompts, embeds, args.generations, args.new_tokens,
        seeds=[args.seed + index for index in range(len(prompt_ids))], eos_token_id=eos, pad_token_id=eos,
    )
    rollout_s = time.perf_counter() - begin
    advantages = advantages_of(processor, completions, solutions, args.generations, args.seed)
    mask = completion_mask(completions, eos)
    with torch.no_grad():
        ref_logp = completion_logprobs(
            reference, prompt_embeddings(reference, prompts), prompts.attention_mask, completions, args.generations
        )
    logp = completion_logprobs(model, embeds, prompts.attention_mask, completions, args.generations)
    loss, _ = policy_loss(logp, advantages.to(logp.device), mask, ref_logp=ref_logp, beta=BETA, loss_type="grpo")
    loss.backward()
    total_s = time.perf_counter() - begin
    result = {"rollout_s": rollout_s, "total_s": total_s, "loss": loss.item(), "rollout_tokens": int(mask.sum())}
    return result, (completions, advantages)


def published_step(model, reference, processor, videos, prompt_ids, solutions, args, completions, advantages):
    """The published trainer, one prompt at a time; its loss on `completions` (ours) for comparison."""
    eos = processor.tokenizer.eos_token_id
    group = args.generations
    begin = time.perf_counter()
    total_loss, rollout_s, rollout_tokens = 0.0, 0.0, 0
    for index, (video, ids) in enumerate(zip(videos, prompt_ids)):
        video = video.to(args.device)
        prompt = torch.tensor([ids], device=args.device)
        started = time.perf_counter()
        own = []
        torch.manual_seed(args.seed + index)
        for _ in range(group):  # 8 sequential generate calls, each encoding the video again
            features = model.encode_frames(video)
            output = model.generate(
                input_ids=prompt, frame_features=features, do_sample=True, max_new_tokens=args.new_tokens,
                top_k=50, eos_token_id=eos, pad_token_id=eos,
            )
            own.append(output[0, prompt.shape[1] :])
        own = torch.nn.utils.rnn.pad_sequence(own, batch_first=True, padding_value=eos)  # the published right padding
        rollout_s += time.perf_counter() - started
        rollout_tokens += int(completion_mask(own, eos).sum())
        rows = completions[index * group : (index + 1) * group]
        width = rows.shape[1]
        texts = processor.batch_decode(rows)  # the published trainer scores its rollouts here
        combine_rewards([accuracy_reward(texts, solutions[:group]), format_reward(texts)], "r1")
        mask = completion_mask(rows, eos)
        full = torch.cat([prompt.repeat(group, 1), rows], dim=1)
        repeated = dict(zip(("pixel_values_videos", "video_num_frames"), pack_videos([video] * group)))
        logits = model(input_ids=full, **repeated).logits  # the video G times through the vision tower; full-sequence logits
        logp = token_logprobs(logits[:, :-1][:, -width:], rows)
        with torch.no_grad():
            ref_logits = reference(input_ids=full, **repeated).logits
            ref_logp = token_logprobs(ref_logits[:, :-1][:, -width:], rows)
        delta = ref_logp - logp
        kl = (torch.exp(delta) - delta - 1).clamp(-100, 100)
        adv = advantages[index * group : (index + 1) * group].to(logp.device).unsqueeze(1)
        per_token = -(torch.exp(logp - logp.detach()) * adv - BETA * kl)
        loss = ((per_token * mask).sum(1) / mask.sum(1)).mean()
        (loss / len(videos)).backward()  # one published step per prompt; averaged like our batch
        total_loss += loss.item() / len(videos)
    total_s = time.perf_counter() - begin
    return {"rollout_s": rollout_s, "total_s": total_s, "loss": total_loss, "rollout_tokens": rollout_tokens}


def gradients(model) -> torch.Tensor:
    grads = [p.grad.flatten() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    return torch.cat(grads).double().cpu()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=2, help="prompts per step on the device")
    parser.add_argument("--generations", type=int, default=8, help="rollouts per prompt (G)")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64, help="max_completion_length")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "grpo_step.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, reference, processor, videos, prompt_ids, solutions = setup(args)
    ours_runs, published_runs, checks = [], [], []
    for _ in range(args.repeats):
        ours, (completions, advantages) = our_step(model, reference, processor, videos, prompt_ids, solutions, args)
        our_grad = gradients(model)
        published = published_step(
            model, reference, processor, videos, prompt_ids, solutions, args, completions, advantages
        )
        published_grad = gradients(model)
        ours_runs.append(ours)
        published_runs.append(published)
        checks.append({
            "loss_ours": ours["loss"],
            "loss_published": published["loss"],
            "loss_abs_diff": abs(ours["loss"] - published["loss"]),
            "grad_max_abs_diff": (our_grad - published_grad).abs().max().item(),
            "grad_max_abs": published_grad.abs().max().item(),
        })
        print(json.dumps({"ours": ours, "published": published, "check": checks[-1]}), flush=True)

    for check in checks:
        if check["loss_abs_diff"] > 1e-5 * max(1.0, abs(check["loss_published"])):
            raise AssertionError(f"losses differ on the same rollouts: {check}")
        if check["grad_max_abs_diff"] > 1e-4 * max(check["grad_max_abs"], 1e-6):
            raise AssertionError(f"gradients differ on the same rollouts: {check}")

    def median(runs, key):
        return statistics.median(run[key] for run in runs)

    summary = {
        key: {"ours_s": round(median(ours_runs, key), 3), "published_s": round(median(published_runs, key), 3),
              "speedup": round(median(published_runs, key) / median(ours_runs, key), 2)}
        for key in ("rollout_s", "total_s")
    }
    summary["scoring_and_update_s"] = {
        "ours_s": round(median(ours_runs, "total_s") - median(ours_runs, "rollout_s"), 3),
        "published_s": round(median(published_runs, "total_s") - median(published_runs, "rollout_s"), 3),
    }
    summary["scoring_and_update_s"]["speedup"] = round(
        summary["scoring_and_update_s"]["published_s"] / summary["scoring_and_update_s"]["ours_s"], 2
    )
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {args.device}, "
        f"torch threads {torch.get_num_threads()}",
        "model": {**TINY, "parameters": sum(p.numel() for p in model.parameters())},
        "settings": {k: v for k, v in vars(args).items() if k not in ("output",)},
        "step": summary,
        "same_rollouts_check": checks,
        "runs": {"ours": ours_runs, "published": published_runs},
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
