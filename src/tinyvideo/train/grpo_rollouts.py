"""Rollouts, with each video through the vision tower once per step.

The published trainer encodes every video 24+ times per prompt (8 `generate` calls, then the video
repeated 8x for the policy and 8x again for the reference) and materialises full-sequence logits
(docs/published-format.md 6, items 2-4). Here, per prompt:
- the frozen vision tower runs once; its frame features serve the rollouts, the policy and the reference;
- the prompt embeddings (connector output included) are built once, each prompt runs through the
  language model once, and the G rollouts of every prompt are decoded together from copies of its
  cache (left padding lets several prompts share the batch), each rollout drawn from its own seeded
  generator, so batching never changes what is sampled, and leaving the batch when it ends;
- log-probs are computed only at completion positions, with each prompt run once before its G
  completions (`tinyvideo.scoring`).
The G rollouts of a prompt are consecutive rows ("a group"), as `generate`'s `num_return_sequences` lays them out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from tinyvideo.decoding import RowSeededSampling, decode
from tinyvideo.processing import pack_videos


@dataclass
class Prompts:
    """A batch of prompts: left-padded token ids with their video placeholders expanded, and the frame
    features of each prompt's video, one video after another in row order."""

    input_ids: torch.Tensor  # [B, Lp]
    attention_mask: torch.Tensor  # [B, Lp]
    frame_features: torch.Tensor  # [sum T_i, P, Dv]
    video_num_frames: torch.Tensor  # [B]


def prompt_batch(model, processor, prompt_ids: list[list[int]], videos: list[torch.Tensor]) -> Prompts:
    """Pad the prompts on the left and run the vision tower once over all their frames.

    `videos` are preprocessed pixel values [T, 3, S, S], one per prompt. The features are computed
    without gradient: the vision tower is frozen in GRPO (when it trains, `prompt_embeddings` is
    given fresh features with gradient instead).
    """
    padded = processor.pad([{"input_ids": ids} for ids in prompt_ids], padding_side="left")
    pixels, counts = pack_videos(videos)
    with torch.no_grad():
        features = model.encode_frames(pixels)
    return Prompts(padded["input_ids"].to(model.device), padded["attention_mask"].to(model.device), features, counts)


def prompt_embeddings(model, prompts: Prompts, frame_features: torch.Tensor | None = None) -> torch.Tensor:
    """Token embeddings of the prompts with each prompt's own video spliced in: [B, Lp, D]."""
    features = prompts.frame_features if frame_features is None else frame_features
    return model.embed_inputs(prompts.input_ids, video_num_frames=prompts.video_num_frames, frame_features=features)


def select_prompts(prompts: Prompts, start: int, stop: int) -> Prompts:
    """Prompts `start` to `stop - 1` as a batch of their own: their frame features, and only the padding
    columns one of them needs (the batch `prompt_batch` builds for them alone)."""
    frames = prompts.video_num_frames.tolist()
    mask = prompts.attention_mask[start:stop]
    first_used = int(mask.any(0).nonzero()[0])
    return Prompts(
        prompts.input_ids[start:stop, first_used:],
        mask[:, first_used:],
        prompts.frame_features[sum(frames[:start]) : sum(frames[:stop])],
        prompts.video_num_frames[start:stop],
    )


def rollout_seeds(prompt_seeds: Sequence[int], num_generations: int) -> list[int]:
    """The seed of each rollout, G per prompt in prompt order: from the prompt's seed and the rollout's index."""
    return [
        int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
        for seed in prompt_seeds
        for index in range(num_generations)
    ]


@torch.no_grad()
def sample_completions(
    model,
    prompts: Prompts,
    prompt_embeds: torch.Tensor,
    num_generations: int,
    max_completion_length: int,
    *,
    seeds: Sequence[int],
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int | None = 50,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> torch.Tensor:
    """G sampled completions per prompt: [B*G, Lc], new tokens only, `pad_token_id` after a row's EOS.

    Decoded by `tinyvideo.decoding.decode` from the ready prompt embeddings: each prompt runs once, its
    G rollouts start from copies of its cache and leave the batch at their EOS (one `generate` ran to
    91-138 tokens for rollouts of 55-63 on average). `seeds` holds one seed per prompt; rollout g of
    prompt b draws from its own generator (`rollout_seeds`, `RowSeededSampling`), so the same prompt and
    seed give the same rollout whichever prompts share the call (up to rounding in the batched
    forward). Temperature, top-k and top-p shape the scores as in `generate`'s sampling. Raises
    `ValueError` for a seed count other than B or `max_completion_length` < 1.
    """
    if len(seeds) != prompts.input_ids.shape[0]:
        raise ValueError(f"expected one seed per prompt ({prompts.input_ids.shape[0]}), got {len(seeds)}")
    warpers = LogitsProcessorList()
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    sample = RowSeededSampling(rollout_seeds(seeds, num_generations), prompts.input_ids.device)
    return decode(
        model, prompt_embeds, prompts.attention_mask, max_completion_length, sample, copies=num_generations,
        warpers=warpers, eos_token_id=eos_token_id, pad_token_id=pad_token_id,
    )
