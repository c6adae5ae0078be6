"""Tests for prefwrap.reward.loss: the noisy Bradley-Terry model, stable at any return gap."""

from __future__ import annotations

import math

import pytest
import torch

from prefwrap.reward.loss import preference_log_probs, preference_loss


def test_probability_is_the_noisy_bradley_terry_formula() -> None:
    delta = torch.linspace(-6, 6, 25, dtype=torch.float64)
    log_left, log_right = preference_log_probs(delta, torch.zeros_like(delta), noise=0.1)
    expected = 0.9 * torch.sigmoid(delta) + 0.05
    torch.testing.assert_close(log_left.exp(), expected)
    torch.testing.assert_close(log_right.exp(), 1 - expected)


def test_without_noise_it_is_plain_bradley_terry() -> None:
    delta = torch.tensor([-2.0, 0.0, 3.0])
    log_left, _ = preference_log_probs(delta, torch.zeros(3), noise=0.0)
    torch.testing.assert_close(log_left.exp(), torch.sigmoid(delta))


@pytest.mark.parametrize("gap", [1e4, -1e4])
def test_finite_loss_and_gradients_at_huge_gaps(gap: float) -> None:
    left = torch.tensor([gap, gap, gap], requires_grad=True)
    right = torch.zeros(3, requires_grad=True)
    targets = torch.tensor([1.0, 0.0, 0.5])
    loss = preference_loss(left, right, targets)
    loss.sum().backward()
    assert torch.isfinite(loss).all()
    assert torch.isfinite(left.grad).all() and torch.isfinite(right.grad).all()
    # A confident answer costs at most -log(noise / 2): the noise floor bounds it.
    right_answer, wrong_answer = (0, 1) if gap > 0 else (1, 0)
    assert loss[right_answer].item() == pytest.approx(-math.log(0.95), rel=1e-4)
    assert loss[wrong_answer].item() == pytest.approx(-math.log(0.05), rel=1e-4)


def test_gradient_pushes_the_preferred_return_up() -> None:
    left = torch.tensor([0.3, 0.3], requires_grad=True)
    right = torch.tensor([-0.2, -0.2], requires_grad=True)
    preference_loss(left, right, torch.tensor([1.0, 0.0])).sum().backward()
    assert left.grad[0] < 0 < right.grad[0]  # left preferred: raise R_left, lower R_right
    assert left.grad[1] > 0 > right.grad[1]  # right preferred


def test_equal_target_is_minimised_at_equal_returns() -> None:
    deltas = torch.linspace(-3, 3, 61)
    losses = preference_loss(deltas, torch.zeros_like(deltas), torch.full_like(deltas, 0.5))
    assert deltas[losses.argmin()].item() == pytest.approx(0.0, abs=1e-6)
    assert losses[30].item() == pytest.approx(math.log(2.0), rel=1e-5)  # cross-entropy of 0.5 vs 0.5
    zero = torch.zeros(1, requires_grad=True)
    preference_loss(zero, torch.zeros(1), torch.tensor([0.5])).sum().backward()
    assert zero.grad.item() == pytest.approx(0.0, abs=1e-7)


def test_shapes_are_kept_and_noise_is_validated() -> None:
    loss = preference_loss(torch.zeros(3, 4), torch.ones(3, 4), torch.ones(3, 4))
    assert loss.shape == (3, 4)
    for noise in (-0.1, 1.0):
        with pytest.raises(ValueError, match="noise"):
            preference_log_probs(torch.zeros(1), torch.zeros(1), noise=noise)
