"""Bradley-Terry preference loss over segment returns, robust to a fraction of random answers."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def preference_log_probs(
    return_left: torch.Tensor, return_right: torch.Tensor, noise: float = 0.1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log P[left preferred] and log P[right preferred] under a noisy Bradley-Terry model.

    ``P[left] = (1 - noise) * sigmoid(R_left - R_right) + noise / 2``: the labeler answers at random
    with probability ``noise`` (the paper assumes 10%), which bounds the loss of a confident mistake.
    Computed in log space (``logaddexp`` of ``logsigmoid``) so large return gaps stay finite.

    Args:
        return_left: Predicted returns of the left segments, any shape.
        return_right: Same shape as ``return_left``.
        noise: Probability of a uniformly random answer, in ``[0, 1)``.

    Returns:
        ``(log_p_left, log_p_right)``, each of the input shape.
    """
    if not 0.0 <= noise < 1.0:
        raise ValueError(f"noise must be in [0, 1), got {noise}")
    delta = return_left - return_right
    if noise == 0.0:
        return F.logsigmoid(delta), F.logsigmoid(-delta)
    log_floor = torch.full_like(delta, math.log(noise / 2))
    log_keep = math.log(1.0 - noise)
    return (
        torch.logaddexp(log_floor, log_keep + F.logsigmoid(delta)),
        torch.logaddexp(log_floor, log_keep + F.logsigmoid(-delta)),
    )


def preference_loss(
    return_left: torch.Tensor, return_right: torch.Tensor, target: torch.Tensor, noise: float = 0.1
) -> torch.Tensor:
    """Cross-entropy between the target P[left] (1, 0 or 0.5 for equal) and the model, per pair."""
    log_p_left, log_p_right = preference_log_probs(return_left, return_right, noise)
    return -(target * log_p_left + (1.0 - target) * log_p_right)
