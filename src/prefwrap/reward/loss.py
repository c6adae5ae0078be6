"""Preference losses over segment returns, robust to a fraction of random answers.

Pairs use the Bradley-Terry model (Bradley & Terry 1952), as Christiano et al. (2017). Rankings of
``K`` segments use its generalisation, the Plackett-Luce model (Luce 1959; Plackett 1975), as in
K-wise RLHF (Zhu et al. 2023, "Principled RLHF from pairwise or K-wise comparisons"): the best segment
is chosen with probability ``softmax(R)``, the next among the rest likewise, and so on. Both mix in
the same noise model: with probability ``noise`` the labeler answers a uniformly random ordering.

**Ties.** An answer with tied segments (``EQUAL`` for a pair, ``[[2], [0, 3], [1]]`` for a ranking)
is taken as "every strict ordering consistent with it is equally likely": the target is the uniform
distribution over those orderings and the loss is its cross-entropy with the model. For a pair this
is the 0.5 target of ``EQUAL``, so ``K = 2`` gives exactly the Bradley-Terry loss.
"""

from __future__ import annotations

import functools
import itertools
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

    Raises:
        ValueError: ``noise`` is outside ``[0, 1)``.
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


@functools.cache
def permutations(k: int) -> torch.Tensor:
    """Every ordering of ``k`` positions, ``(k!, k)`` int64, in lexicographic order (identity first)."""
    return torch.tensor(list(itertools.permutations(range(k))), dtype=torch.long).reshape(-1, k)


def ordering_targets(ranks: torch.Tensor) -> torch.Tensor:
    """The tie rule: uniform weights over the strict orderings consistent with each answer.

    Args:
        ranks: ``(N, K)`` int64 group index of each position (0 = best group), as
            :meth:`~prefwrap.records.Ranking.ranks` gives.

    Returns:
        ``(N, K!)`` float32 weights over :func:`permutations` ``(K)``, each row summing to 1: an
        ordering (best first) gets weight when it never puts a worse group before a better one.
    """
    orders = permutations(ranks.shape[-1])
    ranked = ranks[:, orders]  # (N, K!, K): the group of each place of each ordering
    consistent = (ranked[..., 1:] >= ranked[..., :-1]).all(dim=-1).float()
    return consistent / consistent.sum(dim=-1, keepdim=True)


def plackett_luce_log_probs(returns: torch.Tensor, noise: float = 0.1) -> torch.Tensor:
    """Log-probability of every ordering of ``K`` segments under a noisy Plackett-Luce model.

    ``P[order] = (1 - noise) * prod_i exp(R_order[i]) / sum_{j >= i} exp(R_order[j]) + noise / K!``:
    the best segment is chosen by a softmax of the returns, then the best of the rest, and so on;
    with probability ``noise`` the labeler answers a uniformly random ordering. For ``K = 2`` this is
    :func:`preference_log_probs` (up to rounding).

    Args:
        returns: ``(..., K)`` predicted returns of the query's segments, ``2 <= K <= 6``.
        noise: Probability of a uniformly random answer, in ``[0, 1)``.

    Returns:
        ``(..., K!)`` log-probabilities, orderings as in :func:`permutations` ``(K)``.

    Raises:
        ValueError: ``noise`` is outside ``[0, 1)``.
    """
    if not 0.0 <= noise < 1.0:
        raise ValueError(f"noise must be in [0, 1), got {noise}")
    k = returns.shape[-1]
    ordered = returns[..., permutations(k)]  # (..., K!, K)
    # log of the sum over the segments still unchosen at each place: a reversed cumulative logsumexp
    remaining = torch.logcumsumexp(ordered.flip(-1), dim=-1).flip(-1)
    log_pl = (ordered - remaining)[..., :-1].sum(dim=-1)
    if noise == 0.0:
        return log_pl
    log_floor = torch.full_like(log_pl, math.log(noise / math.factorial(k)))
    return torch.logaddexp(log_floor, math.log(1.0 - noise) + log_pl)


def ranking_loss(returns: torch.Tensor, targets: torch.Tensor, noise: float = 0.1) -> torch.Tensor:
    """Cross-entropy between target weights over orderings and the noisy Plackett-Luce model.

    Pairs (``K = 2``) are computed by :func:`preference_loss` with ``target = targets[..., 0]`` (the
    weight of "left first"), so that they are bit for bit the Bradley-Terry loss.

    Args:
        returns: ``(..., K)`` predicted returns of each query's segments.
        targets: ``(..., K!)`` weights over orderings, e.g. :func:`ordering_targets`.
        noise: Probability of a uniformly random answer, in ``[0, 1)``.

    Returns:
        ``(...)`` loss per query.

    Raises:
        ValueError: ``noise`` is outside ``[0, 1)``.
    """
    if returns.shape[-1] == 2:
        return preference_loss(returns[..., 0], returns[..., 1], targets[..., 0], noise)
    log_probs = plackett_luce_log_probs(returns, noise)
    # 0 * -inf would be nan: orderings with no target weight contribute nothing
    return -torch.where(targets > 0, targets * log_probs, torch.zeros_like(log_probs)).sum(dim=-1)
