"""End to end on ALE games: make_atari_env + VecFrameStack + PreferenceRewardWrapper, A2C and PPO.

A smoke test with a tiny budget (a few hundred steps, a handful of labels): the CNN reward ensemble is
pretrained and refitted, segments are recorded without duplicate frames, and the policy trains on the
learned reward at the paper's scale (std 0.05). Learning itself is measured by benchmarks/atari.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack

from prefwrap import PreferenceCallback, PreferenceRewardWrapper, SyntheticOracle
from prefwrap.image_segment_buffer import ImageSegmentBuffer
from prefwrap.presets import atari_preset
from prefwrap.reward.cnn import CnnRewardEnsemble

ale_py = pytest.importorskip("ale_py", reason="Atari needs the atari extra: pip install prefwrap[atari]")


@pytest.fixture(scope="module", autouse=True)
def _register_ale() -> None:
    import gymnasium as gym

    gym.register_envs(ale_py)


def test_atari_preset_is_the_papers_schedule() -> None:
    preset = atari_preset(total_labels=5500, seed=3)
    assert preset.wrapper["segment_length"] == 25 and preset.wrapper["reward_std"] == 0.05
    learner = preset.learner
    assert learner["total_labels"] == 5500 and learner["max_labels"] == 3000 and learner["seed"] == 3
    schedule = learner["schedule"]
    assert schedule.decay_timesteps == 5e6 and schedule.labels_due(0, 2_500_000) == 500
    assert schedule.labels_due(2_500_000, 2_500_000) == 5500
    with pytest.raises(ValueError, match="initial_labels"):
        atari_preset(total_labels=100, initial_labels=500)


@pytest.mark.parametrize("algo", [A2C, PPO], ids=["A2C", "PPO"])
@pytest.mark.parametrize("game", ["ALE/Pong-v5", "ALE/Breakout-v5", "ALE/Enduro-v5"])
def test_learns_from_preferences_end_to_end(algo: type, game: str) -> None:
    preset = atari_preset(total_labels=6, initial_labels=3, initial_fit_epochs=2, seed=0)
    venv = VecFrameStack(make_atari_env(game, n_envs=2, seed=0, env_kwargs={"frameskip": 1}), 4)
    wrapper = PreferenceRewardWrapper(venv, segment_memory_mb=16, **{**preset.wrapper, "segment_length": 10})
    callback = PreferenceCallback(
        wrapper,
        SyntheticOracle(seed=0),
        **{**preset.learner, "min_segments": 4, "fit_epochs": 1, "batch_size": 4, "query_batch_size": 3},
    )
    rollout = dict(n_steps=32, batch_size=64, n_epochs=1) if algo is PPO else dict(n_steps=16)
    model = algo("CnnPolicy", wrapper, seed=0, **rollout)
    model.learn(192, callback=callback)

    assert isinstance(wrapper.learned_reward.model, CnnRewardEnsemble)
    assert wrapper.learned_reward.fitted and callback.learner.n_labels == 6
    segments = wrapper.segments
    assert isinstance(segments, ImageSegmentBuffer) and segments.frame_stack == 4
    assert segments.size >= 16 and segments.stack_restarts == 0  # 96 steps in each of 2 envs
    assert segments.nbytes <= 16 * 2**20
    observations = segments.observations_of(segments.newest_rows(3))
    assert observations.shape == (3, 10, 84, 84, 4) and observations.dtype == np.uint8
    rewards = model.rollout_buffer.rewards
    assert np.isfinite(rewards).all() and 0 < rewards.std() < 1.0  # the learned reward, std ~0.05
