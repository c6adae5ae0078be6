"""Which candidate pairs to ask about: highest ensemble disagreement (the paper) or uniformly random.

A selector is any object with ``select(candidates, member_returns, n) -> indices``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class PairSelector(Protocol):
    """Chooses ``n`` of the candidate pairs to send to the oracle."""

    def select(self, pairs: np.ndarray, member_returns: torch.Tensor, n: int) -> np.ndarray:
        """Indices into ``pairs`` (shape ``(P, 2)`` of segment positions) of the ``n`` pairs to ask.

        ``member_returns`` is ``(E, S)``: each member's predicted return of every segment position.
        """
        ...


def preference_disagreement(pairs: np.ndarray, member_returns: torch.Tensor) -> np.ndarray:
    """Variance over ensemble members of the predicted P[left ≻ right], per pair ``(P,)``."""
    left = torch.as_tensor(pairs[:, 0])
    right = torch.as_tensor(pairs[:, 1])
    p_left = torch.sigmoid(member_returns[:, left] - member_returns[:, right])
    return p_left.var(dim=0, unbiased=False).cpu().numpy()


class DisagreementSelector:
    """Picks the pairs on which ensemble members disagree most about which segment is better."""

    def select(self, pairs: np.ndarray, member_returns: torch.Tensor, n: int) -> np.ndarray:
        scores = preference_disagreement(pairs, member_returns)
        return np.argsort(-scores, kind="stable")[:n]


class RandomSelector:
    """Picks pairs uniformly at random (the ablation baseline)."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)

    def select(self, pairs: np.ndarray, member_returns: torch.Tensor, n: int) -> np.ndarray:
        return self._rng.choice(len(pairs), size=min(n, len(pairs)), replace=False)
