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

from tinyvideo.processing import pack_videos
from tinyvideo.scoring import token_positions


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


class RowSeededSampling:
    """One token per row, drawn from softmax(scores) with the row's own generator: the argmax of the scores
    plus Gumbel noise, -log(-log(u)) with u ~ U(0, 1) (the Gumbel-max trick).

    A row draws once per token it samples, so its tokens depend on its seed and its own scores only, not
    on the other rows of the batch nor on when they finish.
    """

    def __init__(self, seeds: Sequence[int], device: torch.device | str = "cpu"):
        self.generators = [torch.Generator(device).manual_seed(seed) for seed in seeds]

    def __call__(self, scores: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """The tokens [N] for `scores` [N, V] (-inf where a token may not be drawn) of the rows `rows` [N]."""
        size, device = scores.shape[-1], scores.device
        generators = [self.generators[row] for row in rows.tolist()]
        uniform = torch.stack([torch.rand(size, generator=generator, device=device) for generator in generators])
        return (scores - torch.log(-torch.log(uniform))).argmax(-1)


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

    Decoding runs on the language model with the ready prompt embeddings, so neither the vision tower
    nor the connector runs again. Each prompt runs once and its G rollouts start from copies of its
    cache. A rollout leaves the batch when it samples EOS, so the batch shrinks as rollouts end instead
    of carrying the finished ones to the longest (`generate` cannot drop rows; here one `generate` ran
    to 91-138 tokens for rollouts of 55-63 on average). `seeds` holds one seed per prompt; rollout g of
    prompt b draws from its own generator (`rollout_seeds`, `RowSeededSampling`), so the same prompt and
    seed give the same rollout whichever prompts share the call (up to rounding in the batched
    forward). Temperature, top-k and top-p shape the scores as in `generate`'s sampling; the video token
    is never sampled (the output head still has its row). The model is put in eval mode for the call
    (the KV cache is off in train mode under activation checkpointing) and its mode restored afterwards.
    """
    if len(seeds) != prompts.input_ids.shape[0]:
        raise ValueError(f"expected one seed per prompt ({prompts.input_ids.shape[0]}), got {len(seeds)}")
    if max_completion_length < 1:
        raise ValueError(f"max_completion_length must be at least 1, got {max_completion_length}")
    warpers = LogitsProcessorList()
    if temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(temperature))
    if top_k:
        warpers.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p))
    language_model = model.language_model
    mask = prompts.attention_mask.repeat_interleave(num_generations, 0)
    rows = torch.arange(mask.shape[0], device=mask.device)  # the rollouts still decoding
    sample = RowSeededSampling(rollout_seeds(seeds, num_generations), mask.device)
    pad = pad_token_id if pad_token_id is not None else (eos_token_id or 0)
    tokens = torch.full((len(rows), max_completion_length), pad, dtype=torch.long, device=mask.device)
    positions = prompts.attention_mask.sum(1, keepdim=True).repeat_interleave(num_generations, 0)
    training = model.training
    model.eval()
    try:
        output = language_model(
            inputs_embeds=prompt_embeds.detach(),
            attention_mask=prompts.attention_mask,
            position_ids=token_positions(prompts.attention_mask),
            use_cache=True,
            logits_to_keep=1,
        )
        cache, logits = output.cache, output.logits[:, -1].repeat_interleave(num_generations, 0)
        cache.batch_repeat_interleave(num_generations)
        for step in range(max_completion_length):
            scores = logits.float()
            scores[:, model.config.video_token_id] = -float("inf")
            chosen = sample(warpers(None, scores), rows)
            tokens[rows, step] = chosen
            going = chosen != eos_token_id if eos_token_id is not None else torch.ones_like(chosen, dtype=torch.bool)
            if step + 1 == max_completion_length or not going.any():
                return tokens[:, : step + 1]
            if not going.all():
                rows, chosen, mask, positions = rows[going], chosen[going], mask[going], positions[going]
                cache.batch_select_indices(going.nonzero().squeeze(1))
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
            step_inputs = {"input_ids": chosen[:, None], "attention_mask": mask, "position_ids": positions + step}
            logits = language_model(**step_inputs, cache=cache, use_cache=True).logits[:, -1]
    finally:
        model.train(training)
