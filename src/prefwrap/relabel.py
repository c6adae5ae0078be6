"""Bring an SB3 replay buffer up to date after the reward model changed.

Off-policy algorithms (SAC, TD3, DQN) train on old transitions: without relabelling, a replay
buffer mixes rewards from every past reward model (PEBBLE's fix), and terminations stored as time
limits before the reward was anchored would stay bootstrapped for the buffer's whole life.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.policies import BasePolicy

from prefwrap.encoding import SpaceBatch
from prefwrap.reward.learned import LearnedReward, step_chunks
from prefwrap.wrapper import DEFERRED_TERMINATION


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


class DeferredTerminations:
    """Replay-buffer slots that hold a termination the wrapper handed to the agent as a time limit
    (``info["pref_deferred_termination"]``, before the reward was anchored), so that they can be made
    terminations again (``timeouts = False``) once labels have priced terminating.

    Call :meth:`note` from a callback's ``_on_step``: SB3's off-policy ``collect_rollouts`` stores the
    step's transition at ``buffer.pos`` right after the callback returns.
    """

    def __init__(self) -> None:
        self._slots: list[tuple[int, int, int]] = []  # (buffer position, env index, store count)
        self._stored = 0  # transitions stored so far, one per vector step

    def note(self, buffer: ReplayBuffer, dones: np.ndarray, infos: list[dict]) -> None:
        """Record the deferred terminations of the step about to be stored (``dones``: ``(n_envs,)``)."""
        if np.count_nonzero(dones):  # cheaper than scanning the infos on every step
            for env in np.flatnonzero(dones):
                if infos[env].get(DEFERRED_TERMINATION, False):
                    self._slots.append((buffer.pos, int(env), self._stored))
        self._stored += 1

    def restore(self, buffer: ReplayBuffer) -> int:
        """Mark the recorded slots not yet overwritten as terminations; returns how many were."""
        restored = 0
        for position, env, stored in self._slots:
            # not come round by the ring buffer, and stored (another callback may have stopped the run)
            if self._stored - stored <= buffer.buffer_size and buffer.dones[position, env]:
                buffer.timeouts[position, env] = False
                restored += 1
        self._slots.clear()
        return restored


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
