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

    Each prompt's embeddings are repeated for its G rollouts (their gradients add up, as if the
    connector had run G times) and followed by the completions' token embeddings. Positions count
    real tokens only, as in generation, so a left-padded prompt sees the positions it was sampled
    with. Only the last Lc + 1 hidden states reach the output head. `forward` is the module to call
    (a DDP/DeepSpeed wrapper of `model` during training); `model` is used for its embedding table.
    """
    width = completion_ids.shape[1]
    embeds = torch.cat(
        [prompt_embeds.repeat_interleave(num_generations, 0), model.get_input_embeddings()(completion_ids)], dim=1
    )
    mask = torch.cat([prompt_mask.repeat_interleave(num_generations, 0), torch.ones_like(completion_ids)], dim=1)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    output = (forward or model)(
        inputs_embeds=embeds, attention_mask=mask, position_ids=positions, logits_to_keep=width + 1, use_cache=False
    )
    return token_logprobs(output.logits[:, :-1], completion_ids, temperature)
