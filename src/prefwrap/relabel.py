"""Recompute the rewards stored in an SB3 replay buffer after the reward model changed.

Off-policy algorithms (SAC, TD3, DQN) train on old transitions: without relabelling, a replay
buffer mixes rewards from every past reward model (PEBBLE's fix).
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.policies import BasePolicy

from prefwrap.encoding import SpaceBatch
from prefwrap.reward.learned import LearnedReward, step_chunks


def predict_buffer_rewards(
    learned_reward: LearnedReward, observations: SpaceBatch, actions: np.ndarray, n_steps: int, n_envs: int
) -> np.ndarray:
    """Normalised learned rewards ``(n_steps, n_envs)`` for buffer arrays ``(n_steps, n_envs, ...)``."""
    encoder = learned_reward.encoder
    flat_obs = _flatten_leading(observations, n_steps * n_envs)
    flat_obs = _to_space_layout(flat_obs, encoder.observation_space)
    flat_actions = actions[:n_steps].reshape(n_steps * n_envs, *actions.shape[2:])
    rewards = np.empty(n_steps * n_envs, dtype=np.float32)
    for chunk in step_chunks(n_steps * n_envs):
        obs_chunk = (
            {k: v[chunk] for k, v in flat_obs.items()} if isinstance(flat_obs, dict) else flat_obs[chunk]
        )
        rewards[chunk] = learned_reward.predict(obs_chunk, flat_actions[chunk])
    return rewards.reshape(n_steps, n_envs)


def relabel_replay_buffer(
    buffer: ReplayBuffer | DictReplayBuffer, learned_reward: LearnedReward, policy: BasePolicy
) -> int:
    """Overwrite every stored reward with the current learned reward; returns transitions relabelled.

    Box actions are stored scaled to [-1, 1] by SB3's off-policy algorithms, so they are unscaled with
    ``policy.unscale_action`` before the reward model sees them.
    """
    n_steps = buffer.buffer_size if buffer.full else buffer.pos
    if n_steps == 0:
        return 0
    actions = buffer.actions[:n_steps]
    if isinstance(buffer.action_space, spaces.Box):
        actions = policy.unscale_action(actions.reshape(-1, actions.shape[-1])).reshape(actions.shape)
    observations = (
        {key: value[:n_steps] for key, value in buffer.observations.items()}
        if isinstance(buffer, DictReplayBuffer)
        else buffer.observations[:n_steps]
    )
    buffer.rewards[:n_steps] = predict_buffer_rewards(
        learned_reward, observations, actions, n_steps, buffer.n_envs
    )
    return n_steps * buffer.n_envs


def _flatten_leading(observations: SpaceBatch, n: int) -> SpaceBatch:
    if isinstance(observations, dict):
        return {
            key: value[: n // value.shape[1]].reshape(n, *value.shape[2:])
            for key, value in observations.items()
        }
    return observations[: n // observations.shape[1]].reshape(n, *observations.shape[2:])


def _to_space_layout(observations: SpaceBatch, space: spaces.Space) -> SpaceBatch:
    """Undo SB3's automatic channel-first transpose (``VecTransposeImage``) of image observations."""
    if isinstance(observations, dict) or not isinstance(space, spaces.Box):
        return observations
    if observations.shape[1:] == space.shape:
        return observations
    if observations.shape[1:] == (space.shape[-1], *space.shape[:-1]):
        return np.moveaxis(observations, 1, -1)
    raise ValueError(
        f"buffer observations of shape {observations.shape[1:]} do not match the preference wrapper's "
        f"{space.shape}: a wrapper above PreferenceRewardWrapper changes observations; only "
        "prefwrap.env_utils.ALLOWED_ABOVE may sit above it, e.g. VecNormalize(PreferenceRewardWrapper("
        "VecFrameStack(venv, n)))."
    )
