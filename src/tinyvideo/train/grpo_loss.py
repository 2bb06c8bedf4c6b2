"""GRPO's arithmetic: completion masks, advantages, the k3 KL estimate and the policy loss.

Plain tensor functions with no model and no trainer, so each one can be checked by hand against the
published formula (docs/published-format.md 4.4, steps 4-9). Names and loss types follow TRL's GRPOTrainer:

- `grpo`: each completion's token mean, then the mean over completions (the published loss);
- `bnpo`: the mean over all completion tokens of the batch;
- `dr_grpo`: the token sum over completions x `max_completion_length` (Dr. GRPO's constant normaliser);
- `dapo`: the token sum over the completion tokens of every process's batch (DAPO's token-level mean).
"""

from __future__ import annotations

import torch

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
SCALE_REWARDS = ("group", "batch", "none")
STD_EPS = 1e-4  # added to the reward std, as published and in TRL
KL_CLAMP = 100.0  # the published trainer clamps the k3 estimate to [-100, 100]


def completion_mask(completion_ids: torch.Tensor, eos_token_id: int) -> torch.Tensor:
    """1 up to and including each row's first eos, 0 after it; a row without eos is kept whole."""
    is_eos = completion_ids == eos_token_id
    length = completion_ids.shape[1]
    first_eos = torch.where(is_eos.any(1), is_eos.int().argmax(1), length)
    positions = torch.arange(length, device=completion_ids.device)
    return (positions[None, :] <= first_eos[:, None]).long()


def group_advantages(
    rewards: torch.Tensor,
    num_generations: int,
    scale_rewards: str = "group",
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Rewards of consecutive groups of `num_generations` rollouts of one prompt -> advantages.

    Each reward minus its group's mean, divided by (std + 1e-4): the group's std (`group`, published),
    the whole batch's (`batch`), or not divided (`none`). `torch.std` is the unbiased (N-1) one, as
    published. The published trainer then adds N(0, noise_std^2) noise (noise_std 0.02), which keeps
    a gradient on groups whose rollouts all earned the same reward.
    """
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"unknown scale_rewards {scale_rewards!r}; expected one of {SCALE_REWARDS}")
    if rewards.ndim != 1 or rewards.numel() % num_generations:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {num_generations}")
    groups = rewards.view(-1, num_generations)
    advantages = groups - groups.mean(1, keepdim=True)
    if scale_rewards == "group":
        advantages = advantages / (groups.std(1, keepdim=True) + STD_EPS)
    elif scale_rewards == "batch":
        advantages = advantages / (rewards.std() + STD_EPS)
    advantages = advantages.reshape(-1)
    if noise_std:
        noise = torch.randn(advantages.shape, generator=generator, dtype=advantages.dtype)
        advantages = advantages + noise.to(advantages.device) * noise_std
    return advantages


def zero_std_fraction(rewards: torch.Tensor, num_generations: int) -> float:
    """The fraction of groups whose rollouts all earned the same reward: no signal without the noise."""
    spread = rewards.view(-1, num_generations).std(1)
    return torch.isclose(spread, torch.zeros_like(spread)).float().mean().item()


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL(policy || reference) by the k3 estimator exp(d) - d - 1, d = ref - policy, clamped."""
    delta = ref_logp - logp
    return (torch.exp(delta) - delta - 1).clamp(-KL_CLAMP, KL_CLAMP)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


def policy_loss(
    logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    old_logp: torch.Tensor | None = None,
    ref_logp: torch.Tensor | None = None,
    beta: float = 0.0,
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    loss_type: str = "grpo",
    max_completion_length: int | None = None,
    num_items: float | torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The clipped GRPO objective, negated, aggregated by `loss_type`; with its KL and clip statistics.

    Per token: -min(ratio * A, clip(ratio, 1 - epsilon, 1 + epsilon_high) * A) + beta * KL, where
    ratio = exp(logp - old_logp). Without `old_logp` (one update per batch of rollouts, as published)
    the old policy is the current one detached: ratio is identically 1, nothing is clipped, and the
    loss is the published -(exp(logp - logp.detach()) * A - beta * KL). `num_items` is the `dapo`
    normaliser (completion tokens over every process / number of processes); it defaults to this
    batch's token count.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; expected one of {LOSS_TYPES}")
    mask = mask.to(logp.dtype)
    old_logp = logp.detach() if old_logp is None else old_logp
    epsilon_high = epsilon if epsilon_high is None else epsilon_high
    ratio = torch.exp(logp - old_logp)
    clipped_ratio = ratio.clamp(1 - epsilon, 1 + epsilon_high)
    adv = advantages.unsqueeze(1)
    per_token = -torch.min(ratio * adv, clipped_ratio * adv)
    stats: dict[str, torch.Tensor] = {}
    if beta and ref_logp is not None:
        kl = k3_kl(logp, ref_logp)
        per_token = per_token + beta * kl
        stats["kl"] = masked_mean(kl.detach(), mask)
    low = ((ratio < 1 - epsilon) & (adv < 0)).to(mask.dtype)
    high = ((ratio > 1 + epsilon_high) & (adv > 0)).to(mask.dtype)
    stats["clip_ratio/low_mean"] = masked_mean(low, mask)
    stats["clip_ratio/high_mean"] = masked_mean(high, mask)
    stats["clip_ratio/region_mean"] = masked_mean(low + high, mask)

    token_sum = per_token * mask
    if loss_type == "grpo":
        loss = (token_sum.sum(1) / mask.sum(1).clamp(min=1)).mean()
    elif loss_type == "bnpo":
        loss = token_sum.sum() / mask.sum().clamp(min=1)
    elif loss_type == "dr_grpo":
        if max_completion_length is None:
            raise ValueError("loss_type 'dr_grpo' needs max_completion_length")
        loss = token_sum.sum() / (logp.shape[0] * max_completion_length)
    else:
        loss = token_sum.sum() / (mask.sum().clamp(min=1) if num_items is None else num_items)
    return loss, stats
