"""Tests for prefwrap.relabel: replay-buffer rewards recomputed with the current learned reward."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import make_go_right
from gymnasium import spaces
from stable_baselines3 import DQN, SAC
from stable_baselines3.common.env_util import make_vec_env

from prefwrap import relabel
from prefwrap.relabel import _to_space_layout, predict_buffer_rewards, relabel_replay_buffer
from prefwrap.reward.learned import LearnedReward, step_chunks
from prefwrap.wrapper import PreferenceRewardWrapper

SENTINEL = 123.0


def trained_model(
    algo: type, n_steps: int, buffer_size: int = 1000, policy: str = "MlpPolicy", **env_kwargs: Any
):
    """A model that collected ``n_steps`` transitions (no gradient steps) on a wrapped 2-env GoRightEnv."""
    venv = PreferenceRewardWrapper(
        make_vec_env(make_go_right(**env_kwargs), n_envs=2, seed=0), segment_length=5, hidden_sizes=(16,)
    )
    model = algo(
        policy,
        venv,
        buffer_size=buffer_size,
        learning_starts=10**6,
        policy_kwargs={"net_arch": [8]},
        seed=0,
        device="cpu",
    )
    model.learn(n_steps)
    rng = np.random.default_rng(0)
    encoder = venv.learned_reward.encoder
    venv.learned_reward.refresh(
        rng.uniform(-1, 1, (500, encoder.observation_shape[0])).astype(np.float32),
        rng.uniform(-2, 2, (500, encoder.action_dim)).astype(np.float32),
    )
    return model, venv


def test_replay_buffer_filled_part_relabelled_with_unscaled_actions() -> None:
    model, venv = trained_model(SAC, 200, action_high=2.0)
    buffer = model.replay_buffer
    pos = buffer.pos
    assert pos == 100 and not buffer.full
    buffer.rewards[pos:] = SENTINEL
    assert relabel_replay_buffer(buffer, venv.learned_reward, model.policy) == pos * 2
    assert np.all(buffer.rewards[pos:] == SENTINEL)  # the unfilled part is untouched

    scaled = buffer.actions[:pos]  # SAC stores actions scaled to [-1, 1]
    assert np.abs(scaled).max() <= 1.0
    env_actions = 2.0 * scaled  # the action the env received: Box(-2, 2)
    expected = venv.learned_reward.predict(
        buffer.observations[:pos].reshape(-1, 2), env_actions.reshape(-1, 1)
    )
    np.testing.assert_allclose(buffer.rewards[:pos], expected.reshape(pos, 2), rtol=1e-5, atol=1e-6)
    wrong = venv.learned_reward.predict(buffer.observations[:pos].reshape(-1, 2), scaled.reshape(-1, 1))
    assert not np.allclose(wrong.reshape(pos, 2), buffer.rewards[:pos])


def test_full_buffer_is_relabelled_entirely() -> None:
    model, venv = trained_model(SAC, 140, buffer_size=50)
    buffer = model.replay_buffer
    assert buffer.full and buffer.buffer_size == 25  # SB3 splits buffer_size over the 2 envs
    buffer.rewards[:] = SENTINEL
    assert relabel_replay_buffer(buffer, venv.learned_reward, model.policy) == 25 * 2
    assert not np.any(buffer.rewards == SENTINEL)


def test_discrete_replay_buffer() -> None:
    model, venv = trained_model(DQN, 100, discrete=True)
    buffer = model.replay_buffer
    pos = buffer.pos
    relabel_replay_buffer(buffer, venv.learned_reward, model.policy)
    expected = venv.learned_reward.predict(
        buffer.observations[:pos].reshape(-1, 2), buffer.actions[:pos].reshape(-1)
    )
    np.testing.assert_allclose(buffer.rewards[:pos], expected.reshape(pos, 2), rtol=1e-5, atol=1e-6)
    assert np.any(buffer.rewards[:pos] != 0)


def test_dict_replay_buffer() -> None:
    model, venv = trained_model(SAC, 60, policy="MultiInputPolicy", dict_obs=True)
    buffer = model.replay_buffer
    pos = buffer.pos
    relabel_replay_buffer(buffer, venv.learned_reward, model.policy)
    obs = {key: value[:pos].reshape(pos * 2, -1) for key, value in buffer.observations.items()}
    actions = model.policy.unscale_action(buffer.actions[:pos].reshape(-1, 1))
    expected = venv.learned_reward.predict(obs, actions)
    np.testing.assert_allclose(buffer.rewards[:pos], expected.reshape(pos, 2), rtol=1e-5, atol=1e-6)


def test_empty_buffer_relabels_nothing() -> None:
    model, venv = trained_model(SAC, 0)
    assert relabel_replay_buffer(model.replay_buffer, venv.learned_reward, model.policy) == 0


def test_chunks_give_the_same_rewards(monkeypatch: pytest.MonkeyPatch) -> None:
    reward = LearnedReward(spaces.Box(-1, 1, (2,)), spaces.Box(-1, 1, (1,)), hidden_sizes=(8,))
    rng = np.random.default_rng(0)
    reward.refresh(rng.normal(size=(100, 2)).astype(np.float32), rng.normal(size=(100, 1)).astype(np.float32))
    obs = rng.normal(size=(30, 3, 2)).astype(np.float32)
    actions = rng.normal(size=(30, 3, 1)).astype(np.float32)
    whole = predict_buffer_rewards(reward, obs, actions, 30, 3)
    monkeypatch.setattr(relabel, "step_chunks", lambda n: step_chunks(n, 7))
    np.testing.assert_allclose(
        predict_buffer_rewards(reward, obs, actions, 30, 3), whole, rtol=1e-5, atol=1e-6
    )
    np.testing.assert_allclose(whole[4, 2], reward.predict(obs[4, 2:3], actions[4, 2:3])[0], rtol=1e-5)


def test_channel_first_images_are_transposed_back() -> None:
    space = spaces.Box(0, 255, (8, 6, 3), np.uint8)
    images = np.random.default_rng(0).integers(0, 255, (5, 8, 6, 3)).astype(np.uint8)
    channel_first = np.moveaxis(images, -1, 1)
    np.testing.assert_array_equal(_to_space_layout(channel_first, space), images)
    np.testing.assert_array_equal(_to_space_layout(images, space), images)
    with pytest.raises(ValueError, match=r"only prefwrap\.env_utils\.ALLOWED_ABOVE may sit above it"):
        _to_space_layout(np.zeros((5, 4, 8, 6), np.uint8), space)
