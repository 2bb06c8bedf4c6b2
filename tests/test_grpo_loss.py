"""GRPO's arithmetic equals the published formulas (docs/published-format.md 4.4) and TRL's loss types, on hand-built cases."""

from __future__ import annotations

import math

import pytest
import torch

from tinyvideo.scoring import token_logprobs
from tinyvideo.train.grpo_loss import (
    completion_mask,
    group_advantages,
    k3_kl,
    policy_loss,
    zero_std_fraction,
)

EOS = 0


def test_completion_mask_keeps_the_first_eos_and_nothing_after():
    ids = torch.tensor(
        [
            [5, 6, EOS, 7, EOS],  # eos inside: kept, the rest dropped
            [5, 6, 7, 8, 9],  # no eos: the whole row
            [EOS, 5, 6, 7, 8],  # eos first: just it
            [5, 6, 7, 8, EOS],  # eos last
        ]
    )
    expected = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
    assert torch.equal(completion_mask(ids, EOS), expected)


def published_advantages(rewards: list[float], group: int) -> list[float]:
    """Step 8 by hand: (r - mean) / (unbiased std + 1e-4), per group."""
    out = []
    for start in range(0, len(rewards), group):
        chunk = rewards[start : start + group]
        mean = sum(chunk) / group
        std = math.sqrt(sum((r - mean) ** 2 for r in chunk) / (group - 1))
        out += [(r - mean) / (std + 1e-4) for r in chunk]
    return out


def test_group_advantages_are_the_published_ones_without_noise():
    rewards = [2.0, -2.0, 1.5, -0.5, -2.0, -2.0, -2.0, -2.0]  # a mixed group, then a group with no spread
    advantages = group_advantages(torch.tensor(rewards, dtype=torch.float64), 4, noise_std=0.0)
    assert advantages.tolist() == pytest.approx(published_advantages(rewards, 4), abs=1e-12)
    assert advantages[4:].abs().max() == 0  # no spread, no signal
    assert zero_std_fraction(torch.tensor(rewards), 4) == 0.5


def test_batch_and_none_scaling():
    rewards = torch.tensor([1.0, 2.0, 3.0, 10.0, 10.0, 16.0], dtype=torch.float64)
    centred = torch.tensor([-1.0, 0.0, 1.0, -2.0, -2.0, 4.0], dtype=torch.float64)
    assert torch.allclose(group_advantages(rewards, 3, "none"), centred)
    assert torch.allclose(group_advantages(rewards, 3, "batch"), centred / (rewards.std() + 1e-4))
    with pytest.raises(ValueError):
        group_advantages(rewards, 4)


def test_advantage_noise_is_normal_with_the_given_std_and_seeded():
    rewards = torch.zeros(40_000)  # every group without spread: the advantages are the noise itself
    noisy = group_advantages(rewards, 8, noise_std=0.02, generator=torch.Generator().manual_seed(3))
    assert abs(noisy.mean().item()) < 1e-3
    assert noisy.std().item() == pytest.approx(0.02, rel=0.02)
    again = group_advantages(rewards, 8, noise_std=0.02, generator=torch.Generator().manual_seed(3))
    assert torch.equal(noisy, again)


def test_k3_kl_and_its_clamp():
    logp = torch.tensor([-1.0, -2.0, -0.1, -200.0])
    ref = torch.tensor([-1.0, -1.5, -0.3, -0.1])
    delta = ref - logp
    expected = torch.exp(delta) - delta - 1
    expected[3] = 100.0  # exp(199.9) is clamped to the published bound
    assert torch.allclose(k3_kl(logp, ref), expected)
    assert (k3_kl(logp, ref) >= 0).all()


def test_token_logprobs_gather_the_log_softmax_at_the_tokens():
    logits = torch.randn(3, 5, 11, generator=torch.Generator().manual_seed(0))
    ids = torch.randint(0, 11, (3, 5), generator=torch.Generator().manual_seed(1))
    expected = torch.log_softmax(logits / 0.7, -1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    assert torch.allclose(token_logprobs(logits, ids, temperature=0.7), expected)


@pytest.fixture
def case():
    """Three completions of different lengths, with policy, reference, advantages and mask."""
    g = torch.Generator().manual_seed(0)
    logp = (-torch.rand(3, 4, generator=g, dtype=torch.float64) * 3).requires_grad_()
    ref = -torch.rand(3, 4, generator=g, dtype=torch.float64) * 3
    advantages = torch.tensor([1.2, -0.4, -0.8], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    return logp, ref, advantages, mask


def per_token_published(logp, ref, advantages, beta):
    """Step 9 by hand: -(exp(logp - logp.detach()) * A - beta * kl), kl the clamped k3 estimate."""
    delta = ref - logp
    kl = (torch.exp(delta) - delta - 1).clamp(-100, 100)
    return -(torch.exp(logp - logp.detach()) * advantages[:, None] - beta * kl)


def test_grpo_loss_value_and_gradient_equal_the_published_per_sequence_mean(case):
    logp, ref, advantages, mask = case
    per_token = per_token_published(logp, ref, advantages, beta=0.01)
    expected = sum((per_token[i] * mask[i]).sum() / mask[i].sum() for i in range(3)) / 3
    (expected_grad,) = torch.autograd.grad(expected, logp)

    loss, stats = policy_loss(logp, advantages, mask, ref_logp=ref, beta=0.01, loss_type="grpo")
    (grad,) = torch.autograd.grad(loss, logp)
    assert loss.item() == pytest.approx(expected.item(), abs=1e-12)
    assert torch.allclose(grad, expected_grad, atol=1e-12)
    assert stats["clip_ratio/region_mean"] == 0  # one update per batch: the ratio is 1, nothing clips
    kl = k3_kl(logp.detach(), ref)
    assert stats["kl"].item() == pytest.approx(((kl * mask).sum() / mask.sum()).item())


@pytest.mark.parametrize("loss_type", ["bnpo", "dapo", "dr_grpo"])
def test_token_level_loss_types(case, loss_type):
    logp, ref, advantages, mask = case
    per_token = per_token_published(logp, ref, advantages, beta=0.04)
    total = (per_token * mask).sum()
    normaliser = {"bnpo": mask.sum(), "dapo": 5.5, "dr_grpo": 3 * 16}[loss_type]
    loss, _ = policy_loss(
        logp, advantages, mask, ref_logp=ref, beta=0.04, loss_type=loss_type, max_completion_length=16, num_items=5.5
    )
    assert loss.item() == pytest.approx((total / normaliser).item(), abs=1e-12)


def test_dapo_defaults_to_this_batch_token_count(case):
    logp, _, advantages, mask = case
    dapo, _ = policy_loss(logp, advantages, mask, loss_type="dapo")
    bnpo, _ = policy_loss(logp, advantages, mask, loss_type="bnpo")
    assert dapo.item() == pytest.approx(bnpo.item())


def test_beta_zero_ignores_the_reference(case):
    logp, ref, advantages, mask = case
    with_ref, stats = policy_loss(logp, advantages, mask, ref_logp=ref, beta=0.0)
    without, _ = policy_loss(logp, advantages, mask)
    assert with_ref.item() == without.item() and "kl" not in stats


def test_ratio_clipping_with_old_logprobs():
    """With reused rollouts (num_iterations > 1) a ratio outside [1 - eps, 1 + eps_high] stops the gradient
    in the direction the advantage pushes, and is counted."""
    old = torch.zeros(2, 2, dtype=torch.float64)
    logp = torch.log(torch.tensor([[1.5, 1.1], [0.5, 0.9]], dtype=torch.float64)).requires_grad_()
    advantages = torch.tensor([1.0, -1.0], dtype=torch.float64)
    mask = torch.ones(2, 2)
    loss, stats = policy_loss(logp, advantages, mask, old_logp=old, epsilon=0.2, epsilon_high=0.28, loss_type="bnpo")
    (grad,) = torch.autograd.grad(loss, logp)
    # ratios 1.5 (A>0, above 1.28: clipped), 1.1 (inside), 0.5 (A<0, below 0.8: clipped), 0.9 (inside)
    assert grad[0, 0] == 0 and grad[1, 0] == 0
    assert grad[0, 1] != 0 and grad[1, 1] != 0
    assert stats["clip_ratio/high_mean"].item() == 0.25
    assert stats["clip_ratio/low_mean"].item() == 0.25
    assert stats["clip_ratio/region_mean"].item() == 0.5
    # min(r*A, clip(r)*A) per token: 1.28, 1.1, -0.8, -0.9; negated, token mean
    assert loss.item() == pytest.approx(-(1.28 + 1.1 - 0.8 - 0.9) / 4)


def test_unknown_loss_type_is_refused(case):
    logp, _, advantages, mask = case
    with pytest.raises(ValueError, match="loss_type"):
        policy_loss(logp, advantages, mask, loss_type="ppo")
