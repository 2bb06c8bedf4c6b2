"""Rollouts, with each video through the vision tower once per step.

The published trainer encodes every video 24+ times per prompt (8 `generate` calls, then the video
repeated 8x for the policy and 8x again for the reference) and materialises full-sequence logits
(docs/published-format.md 6, items 2-4). Here, per prompt:
- the frozen vision tower runs once; its frame features serve the rollouts, the policy and the reference;
- the prompt embeddings (connector output included) are built once and the G rollouts of every prompt
  come from one batched `generate` on them (left padding lets several prompts share the call);
- log-probs are computed only at completion positions (`tinyvideo.scoring`).
The G rollouts of a prompt are consecutive rows ("a group"), as `num_return_sequences` lays them out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

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


@torch.no_grad()
def sample_completions(
    model,
    prompts: Prompts,
    prompt_embeds: torch.Tensor,
    num_generations: int,
    max_completion_length: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int | None = 50,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> torch.Tensor:
    """G sampled completions per prompt from one `generate` call: [B*G, Lc], new tokens only.

    Generation runs on the language model with the ready prompt embeddings, so neither the vision
    tower nor the connector runs again; `num_return_sequences` expands the embeddings, not the video.
    The model is put in eval mode for the call (the KV cache is off in train mode under activation
    checkpointing) and its mode restored afterwards. The video token is never sampled (the output head
    still has its row). Sampling uses the global RNG: seed it to reproduce.
    """
    training = model.training
    model.eval()
    try:
        output = model.language_model.generate(
            input_ids=prompts.input_ids,
            inputs_embeds=prompt_embeds.detach(),
            attention_mask=prompts.attention_mask,
            do_sample=True,
            num_return_sequences=num_generations,
            max_new_tokens=max_completion_length,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k or None,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            suppress_tokens=[model.config.video_token_id],
            use_cache=True,
        )
    finally:
        model.train(training)
    return output[:, prompts.input_ids.shape[1] :]
