"""Rollouts, with each video through the vision tower once per step.

The published trainer encodes every video 24+ times per prompt (8 `generate` calls, then the video
repeated 8x for the policy and 8x again for the reference) and materialises full-sequence logits
(docs/published-format.md 6, items 2-4). Here, per prompt:
- the frozen vision tower runs once; its frame features serve the rollouts, the policy and the reference;
- the prompt embeddings (connector output included) are built once, each prompt runs through the
  language model once, and the G rollouts of every prompt come from one batched `generate` on copies
  of its cache (left padding lets several prompts share the call), each rollout drawn from its own
  seeded generator, so batching never changes what is sampled;
- log-probs are computed only at completion positions, with each prompt run once before its G
  completions (`tinyvideo.scoring`).
The G rollouts of a prompt are consecutive rows ("a group"), as `num_return_sequences` lays them out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

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


class RowSeededSampling(LogitsProcessor):
    """Sampling as an argmax: each row's (already warped) scores plus Gumbel noise from the row's own
    generator (the Gumbel-max trick), the last processor of a `do_sample=False` generation.

    The argmax of `scores - log(-log(u))`, u ~ U(0, 1), is a draw from softmax(scores). Row r's t-th token
    uses the t-th draw of generator r, so a row's tokens do not depend on which other rows share the call.
    """

    def __init__(self, seeds: Sequence[int]):
        self.seeds = list(seeds)
        self.generators: list[torch.Generator] | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.generators is None:
            self.generators = [torch.Generator(scores.device).manual_seed(seed) for seed in self.seeds]
        size, device = scores.shape[-1], scores.device
        uniform = torch.stack([torch.rand(size, generator=g, device=device) for g in self.generators])
        return scores - torch.log(-torch.log(uniform))


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
    """G sampled completions per prompt from one `generate` call: [B*G, Lc], new tokens only.

    Generation runs on the language model with the ready prompt embeddings, so neither the vision
    tower nor the connector runs again: each prompt but its last token (a text token, embedded by the
    language model itself) runs once and the G rollouts start from copies of its cache, instead of the
    prompt running G times. `seeds` holds one seed per prompt; rollout g of prompt b draws
    from its own generator (`rollout_seeds`, `RowSeededSampling`), so the same prompt and seed give the
    same rollouts whichever prompts share the call (up to rounding in the batched forward). Temperature,
    top-k and top-p shape the scores as in `generate`'s sampling. The model is put in eval mode for the
    call (the KV cache is off in train mode under activation checkpointing) and its mode restored
    afterwards. The video token is never sampled (the output head still has its row).
    """
    if len(seeds) != prompts.input_ids.shape[0]:
        raise ValueError(f"expected one seed per prompt ({prompts.input_ids.shape[0]}), got {len(seeds)}")
    processors = LogitsProcessorList()
    if temperature != 1.0:
        processors.append(TemperatureLogitsWarper(temperature))
    if top_k:
        processors.append(TopKLogitsWarper(top_k))
    if top_p < 1.0:
        processors.append(TopPLogitsWarper(top_p))
    processors.append(RowSeededSampling(rollout_seeds(seeds, num_generations)))
    mask = prompts.attention_mask
    training = model.training
    model.eval()
    try:
        # The prompts but their last token, once each; their cache is then copied for the G rollouts.
        cache = model.language_model(
            inputs_embeds=prompt_embeds[:, :-1].detach(),
            attention_mask=mask[:, :-1],
            position_ids=(mask[:, :-1].cumsum(1) - 1).clamp(min=0),
            use_cache=True,
            logits_to_keep=1,
        ).cache
        cache.batch_repeat_interleave(num_generations)
        output = model.language_model.generate(
            input_ids=prompts.input_ids.repeat_interleave(num_generations, 0),
            attention_mask=mask.repeat_interleave(num_generations, 0),
            cache=cache,
            do_sample=False,
            logits_processor=processors,
            max_new_tokens=max_completion_length,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            suppress_tokens=[model.config.video_token_id],
            use_cache=True,
        )
    finally:
        model.train(training)
    return output[:, prompts.input_ids.shape[1] :]
