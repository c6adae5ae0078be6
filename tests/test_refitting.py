"""Tests for prefwrap.refitting: installing a fit and the normalisation it refreshes."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack
from test_image_segments import FlickerEnv
from test_reward_fitting import HORIZON, OBS_DIM, labelled_dataset

from prefwrap.learner import PreferenceLearner
from prefwrap.oracles.synthetic import SyntheticOracle
from prefwrap.refitting import NORMALIZATION_MAX_IMAGE_STEPS, NORMALIZATION_MAX_STEPS, RewardRefitting
from prefwrap.reward.fitting import RewardFitter
from prefwrap.reward.learned import LearnedReward
from prefwrap.segment_buffer import SegmentBuffer
from prefwrap.wrapper import PreferenceRewardWrapper


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


def test_image_observations_normalise_on_fewer_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    wrapper = PreferenceRewardWrapper(VecFrameStack(DummyVecEnv([FlickerEnv]), 4), segment_length=6, seed=0)
    learner = PreferenceLearner(
        wrapper, SyntheticOracle(seed=0), total_labels=4, min_segments=8, initial_fit_epochs=1, seed=0
    )
    wrapper.reset()
    for t in range(4800):  # 800 segments, ~4,000 valid steps: twice the bound
        wrapper.step(np.array([t % 3]))
    refreshed = []
    refresh = wrapper.learned_reward.refresh
    monkeypatch.setattr(
        wrapper.learned_reward,
        "refresh",
        lambda obs, act, **kw: (refreshed.append(len(obs)), refresh(obs, act, **kw)),
    )
    rows_read = []
    observations_of = wrapper.segments.observations_of
    monkeypatch.setattr(
        wrapper.segments,
        "observations_of",
        lambda rows: (rows_read.append(len(rows)), observations_of(rows))[1],
    )
    learner.collect_labels(4800, 4800)
    rows_read.clear()  # query selection read its candidates
    learner.refit()
    assert rows_read == [-(-NORMALIZATION_MAX_IMAGE_STEPS // 6)]  # only the segments needed are rebuilt
    # 342 segments, some cut short by episode ends (FlickerEnv's episodes last 3 to 30 steps)
    (n_steps,) = refreshed
    assert NORMALIZATION_MAX_IMAGE_STEPS / 2 < n_steps <= NORMALIZATION_MAX_IMAGE_STEPS
    assert wrapper.learned_reward.fitted
