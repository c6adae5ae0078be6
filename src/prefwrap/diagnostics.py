"""Reward-hacking diagnostics: is the policy going where the learned reward no longer means the task?

Two signals, logged under ``pref/`` after every refit and every :data:`DIAGNOSTICS_EVERY` steps:

- ``pref/learned_true_corr``: Pearson correlation of the learned and the true returns of the last
  100 finished episodes. Meaningful when the env's own reward is the task's (synthetic-oracle runs,
  benchmarks); a falling or negative value means the agent found learned reward the task does not pay.
- ``pref/disagreement_ratio``: the ensemble's disagreement on the current policy's segments divided by
  its disagreement on the labelled segments. It needs no true reward, so it works with people: above
  :data:`DISAGREEMENT_WARNING` the policy has moved off the labelled distribution, where the reward
  model is guessing (the uncertainty signal of ensemble methods such as Lee et al. 2021, "PEBBLE", and
  Liang et al. 2022, "RUNE"). The learner then draws half of its query candidates from the newest
  segments, so labels follow the policy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from prefwrap.reward.dataset import PreferenceDataset
from prefwrap.reward.fitting import segment_returns
from prefwrap.reward.learned import LearnedReward
from prefwrap.selection import buffer_member_returns

if TYPE_CHECKING:
    from prefwrap.wrapper import PreferenceRewardWrapper

DISAGREEMENT_WARNING = 2.0
"""``pref/disagreement_ratio`` above which the run warns and queries focus on recent segments."""
CORRELATION_WARNING = -0.2
"""``pref/learned_true_corr`` below which the run warns (needs :data:`MIN_EPISODES` episodes; a slightly
negative value is noise while the true returns barely vary)."""
MIN_EPISODES = 10
DIAGNOSTICS_EVERY = 10_000
"""Env steps between two computations of the signals (they are also computed after every refit)."""


def return_correlation(true_returns: np.ndarray, learned_returns: np.ndarray) -> float:
    """Pearson correlation of two return sequences ``(N,)``; nan below :data:`MIN_EPISODES` or when
    either is constant (e.g. the learned return before the first fit).

    Example:
        >>> round(return_correlation(np.arange(12.0), 2 * np.arange(12.0) + 1), 3)
        1.0
    """
    true_returns = np.asarray(true_returns, dtype=np.float64)
    learned_returns = np.asarray(learned_returns, dtype=np.float64)
    if len(true_returns) < MIN_EPISODES or true_returns.std() == 0 or learned_returns.std() == 0:
        return float("nan")
    return float(np.corrcoef(true_returns, learned_returns)[0, 1])


def ensemble_disagreement(member_returns: torch.Tensor) -> float:
    """Mean over segments of the members' standard deviation of a segment's return, ``(E, S)`` -> float.

    Example:
        >>> round(ensemble_disagreement(torch.tensor([[0.0, 1.0], [2.0, 1.0]])), 4)
        0.7071
    """
    if member_returns.shape[0] < 2 or member_returns.shape[1] == 0:
        return float("nan")
    return float(member_returns.std(dim=0).mean())


def disagreement_ratio(policy_member_returns: torch.Tensor, labelled_member_returns: torch.Tensor) -> float:
    """Ensemble disagreement on the policy's segments over that on the labelled ones (both ``(E, S)``).

    Returns:
        The ratio; 1.0 means the policy stays where the labels are; nan when either is undefined.
    """
    policy = ensemble_disagreement(policy_member_returns)
    labelled = ensemble_disagreement(labelled_member_returns)
    if not np.isfinite(policy) or not np.isfinite(labelled) or labelled <= 0:
        return float("nan")
    return policy / labelled


@torch.no_grad()
def labelled_member_returns(
    reward: LearnedReward, dataset: PreferenceDataset, n_segments: int
) -> torch.Tensor:
    """``(E, S)``: each member's predicted return of the newest ``n_segments`` labelled segments."""
    tensors = {key: value[-n_segments:] for key, value in dataset.segment_tensors().items()}
    reward.model.eval()
    inputs = (tensors[key].to(reward.device) for key in ("observations", "actions", "mask", "absorbing"))
    return segment_returns(reward.model, *inputs).cpu()


def reward_signals(
    wrapper: PreferenceRewardWrapper, dataset: PreferenceDataset, n_segments: int = 64
) -> dict[str, float]:
    """Both signals for a run: ``{"learned_true_corr": ..., "disagreement_ratio": ...}``.

    The ratio compares the newest ``n_segments`` recorded segments with up to ``n_segments``
    labelled ones; nan where a signal is not defined yet (too few episodes, no fit, no labels).
    """
    signals = {
        "learned_true_corr": return_correlation(
            np.array(wrapper.episode_true_returns), np.array(wrapper.episode_learned_returns)
        ),
        "disagreement_ratio": float("nan"),
    }
    reward = wrapper.learned_reward
    if reward.fitted and len(dataset) and wrapper.segments.size >= 2:
        policy = buffer_member_returns(reward, wrapper.segments, wrapper.segments.newest_rows(n_segments))
        labelled = labelled_member_returns(reward, dataset, n_segments)
        signals["disagreement_ratio"] = disagreement_ratio(policy, labelled)
    return signals
