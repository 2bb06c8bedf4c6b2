"""Log-probabilities of given completions under the model: what GRPO trains on and what Cloze-mode
evaluation ranks the options by."""

from __future__ import annotations

import torch


def token_logprobs(logits: torch.Tensor, token_ids: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log p(token) for logits [N, L, V] and ids [N, L], in float32, one row at a time.

    The logits are divided by the sampling temperature first, so these are the log-probs of the
    distribution the rollouts were drawn from. Going row by row holds one row's log-softmax at a time
    instead of the whole batch's [N, L, V] copy.
    """
    rows = []
    for row_logits, row_ids in zip(logits, token_ids):
        row = torch.log_softmax(row_logits.float() / temperature, dim=-1)
        rows.append(row.gather(-1, row_ids.unsqueeze(-1)).squeeze(-1))
    return torch.stack(rows)


def token_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids [B, L] that count a left-padded row's real tokens only (padding at 0), as generation does."""
    return (attention_mask.cumsum(1) - 1).clamp(min=0)


# The attention implementations that take a custom 4D mask (sdpa a boolean one, eager an additive one).
SHARED_PROMPT_ATTENTION = ("sdpa", "eager")


def completion_logprobs(
    model,
    prompt_embeds: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    num_generations: int,
    temperature: float = 1.0,
    forward=None,
) -> torch.Tensor:
    """log p(completion token | video, prompt, earlier tokens) for every completion position: [B*G, Lc].

    `prompt_embeds` [B, Lp, D] are left-padded (`prompt_mask` [B, Lp]); `completion_ids` [B*G, Lc] hold G
    completions per prompt, in prompt order. Positions count real tokens only, as in generation, so a
    left-padded prompt sees the positions it was sampled with. Only the positions that predict a
    completion token reach the output head. `forward` is the module to call (a DDP/DeepSpeed wrapper of
    `model` during training); `model` is used for its embedding table and configuration.

    Where the language model's attention takes a custom mask (sdpa, eager), each prompt runs once, its G
    completions after it in the same row (`shared_prompt_layout`): a GRPO prompt of ~600 tokens
    (512 of them video) then passes through the model once instead of G times. Otherwise (flash
    attention) the prompt is repeated for each completion. Either way a prompt's gradient is the sum
    over its completions.
    """
    attention = model.language_model.config._attn_implementation
    inputs = (model, forward or model, prompt_embeds, prompt_mask, completion_ids, num_generations)
    if attention in SHARED_PROMPT_ATTENTION:
        logits = _shared_prompt_logits(*inputs, attention)
    else:
        logits = _repeated_prompt_logits(*inputs)
    return token_logprobs(logits, completion_ids, temperature)


def _repeated_prompt_logits(model, forward, prompt_embeds, prompt_mask, completion_ids, num_generations):
    width = completion_ids.shape[1]
    embeds = torch.cat(
        [prompt_embeds.repeat_interleave(num_generations, 0), model.get_input_embeddings()(completion_ids)], dim=1
    )
    mask = torch.cat([prompt_mask.repeat_interleave(num_generations, 0), torch.ones_like(completion_ids)], dim=1)
    positions = token_positions(mask)
    output = forward(
        inputs_embeds=embeds, attention_mask=mask, position_ids=positions, logits_to_keep=width + 1, use_cache=False
    )
    return output.logits[:, :-1]


def shared_prompt_layout(prompt_mask: torch.Tensor, num_generations: int, width: int):
    """Where a prompt and its G completions of `width` tokens sit in one row of Lp + G * width tokens.

    Returns the position ids [B, L], the attention mask [B, 1, L, L] (True: may attend; a completion
    token sees the prompt's real tokens and its own completion's earlier tokens, never another
    completion; a padding token sees only itself, so no row of the mask is empty) and the indices of
    the L positions whose logits predict the completion tokens: the prompt's last token (each
    completion's first token), then each completion's first `width - 1` tokens.
    """
    batch, prompt_length = prompt_mask.shape
    device = prompt_mask.device
    offsets = torch.arange(width, device=device).repeat(num_generations)
    positions = torch.cat([token_positions(prompt_mask), prompt_mask.sum(1, keepdim=True) + offsets], 1)
    segment = torch.cat(
        [
            torch.zeros(prompt_length, dtype=torch.long, device=device),
            torch.arange(1, num_generations + 1, device=device).repeat_interleave(width),
        ]
    )
    length = segment.numel()
    index = torch.arange(length, device=device)
    visible = ((segment[None, :] == 0) | (segment[None, :] == segment[:, None])) & (index[None, :] <= index[:, None])
    real = torch.cat([prompt_mask.bool(), prompt_mask.new_ones(batch, num_generations * width, dtype=torch.bool)], 1)
    mask = (visible[None] & real[:, None, :]) | torch.eye(length, dtype=torch.bool, device=device)
    starts = prompt_length + width * torch.arange(num_generations, device=device)
    following = (starts[:, None] + torch.arange(width - 1, device=device)).flatten()
    keep = torch.cat([index.new_tensor([prompt_length - 1]), following])
    return positions, mask[:, None], keep


def _shared_prompt_logits(model, forward, prompt_embeds, prompt_mask, completion_ids, num_generations, attention):
    batch, width = prompt_mask.shape[0], completion_ids.shape[1]
    completions = model.get_input_embeddings()(completion_ids).reshape(batch, num_generations * width, -1)
    embeds = torch.cat([prompt_embeds, completions.to(prompt_embeds.dtype)], dim=1)
    positions, mask, keep = shared_prompt_layout(prompt_mask, num_generations, width)
    if attention == "eager":  # an additive mask
        blocked = torch.finfo(embeds.dtype).min
        mask = torch.zeros(mask.shape, dtype=embeds.dtype, device=mask.device).masked_fill(~mask, blocked)
    logits = forward(
        inputs_embeds=embeds, attention_mask=mask, position_ids=positions, logits_to_keep=keep, use_cache=False
    ).logits
    first = logits[:, :1].unsqueeze(1).expand(-1, num_generations, -1, -1)  # [B, G, 1, V]
    rest = logits[:, 1:].reshape(batch, num_generations, width - 1, -1)
    return torch.cat([first, rest], dim=2).flatten(0, 1)
