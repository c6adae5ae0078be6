"""Terminations reach the agent as time limits until labels have priced terminating (anchored reward)."""

from __future__ import annotations

from pathlib import Path

import gymnasium
import numpy as np
import pytest
import torch
from conftest import GoRightEnv, make_go_right
from stable_baselines3 import SAC
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.env_util import make_vec_env
from test_wrapper import VEC_ENV_CLASSES, fit_randomly, make_venv, stored_segments

from prefwrap import PreferenceCallback, SyntheticOracle
from prefwrap.relabel import DeferredTerminations
from prefwrap.reward.learned import LearnedReward
from prefwrap.wrapper import DEFERRED_TERMINATION, PreferenceRewardWrapper


def anchor(wrapper: PreferenceRewardWrapper) -> None:
    """Refresh the reward as the learner does once labelled segments contain terminations."""
    encoder = wrapper.learned_reward.encoder
    rng = np.random.default_rng(0)
    obs = rng.uniform(-1, 1, (100, encoder.observation_shape[0])).astype(np.float32)
    act = rng.uniform(-1, 1, (100, encoder.action_dim)).astype(np.float32)
    wrapper.learned_reward.refresh(obs, act, anchor_absorbing=True)


def terminal_infos(wrapper: PreferenceRewardWrapper, steps: int) -> list[dict]:
    """The infos of every finished episode over ``steps`` vector steps of 3-step terminating episodes."""
    ended = []
    for _ in range(steps):
        _, _, dones, infos = wrapper.step(np.ones((wrapper.num_envs, 1), np.float32))
        ended += [info for done, info in zip(dones, infos, strict=True) if done]
    return ended


@pytest.mark.parametrize("vec_env_cls", VEC_ENV_CLASSES)
def test_vec_terminations_are_time_limits_until_anchored(vec_env_cls: type) -> None:
    wrapper = PreferenceRewardWrapper(make_venv(2, vec_env_cls, episode_lengths=(3,)), segment_length=4)
    wrapper.reset()
    fit_randomly(wrapper)  # fitted on the mean, as before any labelled termination
    ended = terminal_infos(wrapper, 6)
    assert len(ended) == 4
    assert all(info["TimeLimit.truncated"] and "terminal_observation" in info for info in ended)
    assert all(info[DEFERRED_TERMINATION] for info in ended)
    # the segments keep the real ending: terminated, padded with the absorbing state
    assert all(segment.terminated for segment in stored_segments(wrapper))
    anchor(wrapper)
    assert wrapper.learned_reward.anchored
    ended = terminal_infos(wrapper, 6)
    assert len(ended) == 4
    assert not any(info.get("TimeLimit.truncated", False) for info in ended)
    assert not any(DEFERRED_TERMINATION in info for info in ended)
    wrapper.close()


def test_real_time_limits_stay_time_limits_after_anchoring() -> None:
    wrapper = PreferenceRewardWrapper(make_venv(1, max_steps=3), segment_length=4)
    wrapper.reset()
    anchor(wrapper)
    ended = terminal_infos(wrapper, 6)
    assert len(ended) == 2 and all(info["TimeLimit.truncated"] for info in ended)
    assert not any(segment.terminated for segment in stored_segments(wrapper))


def test_env_terminations_are_truncations_until_anchored() -> None:
    wrapper = PreferenceRewardWrapper(GoRightEnv(episode_lengths=(3,)), segment_length=4)

    def ending() -> tuple[bool, bool]:
        wrapper.reset(seed=0)
        for _ in range(3):
            _, _, terminated, truncated, _ = wrapper.step(np.ones(1, np.float32))
        return terminated, truncated

    assert ending() == (False, True)  # unfitted: reward 0 and no price on terminating
    fit_randomly(wrapper)
    assert ending() == (False, True)
    anchor(wrapper)
    assert ending() == (True, False)


def test_anchoring_is_saved_and_older_files_load_unanchored(tmp_path: Path) -> None:
    wrapper = PreferenceRewardWrapper(GoRightEnv(episode_lengths=(3,)))
    anchor(wrapper)
    path = tmp_path / "reward.pt"
    wrapper.save_reward_model(path)
    spaces = (wrapper.observation_space, wrapper.action_space)
    assert LearnedReward.load(path, *spaces).anchored
    state = torch.load(path, weights_only=True)
    del state["statistics"]["anchored"]  # as saved before the flag existed
    torch.save(state, path)
    assert not LearnedReward.load(path, *spaces).anchored


def test_sac_buffer_gets_its_terminations_back_once_anchored() -> None:
    venv = PreferenceRewardWrapper(
        make_vec_env(make_go_right(episode_lengths=(7,)), n_envs=2, seed=0), segment_length=5
    )
    model = SAC("MlpPolicy", venv, learning_starts=10**6, policy_kwargs={"net_arch": [8]}, seed=0)
    buffer = model.replay_buffer
    callback = PreferenceCallback(
        venv, SyntheticOracle(seed=0), total_labels=10, total_timesteps=1000, synchronous=True
    )
    model.learn(160, callback=callback)  # before the first queries (64 segments)
    assert not venv.learned_reward.anchored
    assert buffer.dones[: buffer.pos].sum() == buffer.timeouts[: buffer.pos].sum() == 2 * (80 // 7)
    model.learn(840, callback=callback, reset_num_timesteps=False)
    assert venv.learned_reward.anchored
    stored = slice(0, buffer.pos)
    # every episode terminated (no time limit): after anchoring no stored step is a time limit
    assert buffer.dones[stored].sum() == 2 * buffer.pos // 7
    assert not buffer.timeouts[stored].any()


def test_deferred_terminations_skip_overwritten_and_unstored_slots() -> None:
    space = gymnasium.spaces.Box(-1, 1, (1,))
    buffer = ReplayBuffer(8, space, space, n_envs=2, handle_timeout_termination=True)  # 4 rows
    deferred = DeferredTerminations()
    deferred_info, plain_info = {DEFERRED_TERMINATION: True, "TimeLimit.truncated": True}, {}
    one = np.zeros((2, 1), np.float32)
    for step in range(5):  # rows 0..3, then 0 again: the first deferred termination is overwritten
        infos = [deferred_info, plain_info] if step in (0, 2) else [plain_info, plain_info]
        dones = np.array([step in (0, 2), False])
        deferred.note(buffer, dones, infos)
        buffer.add(one, one, one, np.zeros(2), dones, infos)
    deferred.note(buffer, np.array([True, False]), [deferred_info, plain_info])  # row 1, never stored
    assert buffer.timeouts[2, 0] and buffer.timeouts.sum() == 1
    assert deferred.restore(buffer) == 1
    assert not buffer.timeouts.any()
