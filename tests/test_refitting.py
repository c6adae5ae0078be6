"""Tests for prefwrap.refitting: installing a fit and the normalisation it refreshes."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces
from test_reward_fitting import HORIZON, OBS_DIM, labelled_dataset

from prefwrap.refitting import NORMALIZATION_MAX_STEPS, RewardRefitting
from prefwrap.reward.fitting import RewardFitter
from prefwrap.reward.learned import LearnedReward
from prefwrap.segment_buffer import SegmentBuffer


def test_the_normalisation_reads_a_bounded_spread_of_the_newest_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reward = LearnedReward(spaces.Box(-np.inf, np.inf, (OBS_DIM,)), spaces.Box(-1, 1, (1,)), seed=0)
    buffer = SegmentBuffer(1, HORIZON, (OBS_DIM,), np.float32, 1, capacity=5000)
    n_steps = 3000 * HORIZON  # whole segments only: 3,000 of them
    for step in range(n_steps):  # the first feature counts the steps
        observation = np.array([[step, 0.0, 0.0, 0.0]], np.float32)
        done = np.array([(step + 1) % HORIZON == 0])
        buffer.add(observation, np.zeros((1, 1), np.float32), np.zeros(1, np.float32), done, step)
    dataset, _ = labelled_dataset(50)
    fitter = RewardFitter(reward.model.__class__(OBS_DIM, 1), epochs=1, max_seconds=None, seed=0)
    refitting = RewardRefitting(
        reward, buffer, dataset, fitter, fit_epochs=1, initial_fit_epochs=1, normalization_segments=2000
    )
    refreshed = []
    refresh = reward.refresh
    monkeypatch.setattr(
        reward,
        "refresh",
        lambda obs, act, **kw: (refreshed.append(obs[:, 0].copy()), refresh(obs, act, **kw)),
    )
    refitting.labels_since_fit = len(dataset)
    refitting.refit()
    (seen,) = refreshed
    newest = np.arange(n_steps - 2000 * HORIZON, n_steps, dtype=np.float32)  # 2,000 segments' steps
    assert len(seen) == NORMALIZATION_MAX_STEPS and len(np.unique(seen)) == len(seen)
    assert seen.min() == newest[0] and seen.max() == newest[-1]  # spread over all of them
    assert np.diff(seen).max() <= 3  # evenly: 20,000 steps read 8,192 apart by at most 3
    assert reward.fitted and np.isfinite(reward.statistics.var)
