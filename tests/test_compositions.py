"""SB3 compositions users build: only the learned reward reaches the agent, or the stack is refused at once.

Each case is re-made from a public bug report against a reward-wrapping library (issue 11).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    VecFrameStack,
    VecMonitor,
    VecNormalize,
)
from stable_baselines3.her.her_replay_buffer import HerReplayBuffer

from prefwrap import PreferenceCallback, PreferenceRewardWrapper, SyntheticOracle


def test_vecnormalize_below_the_wrapper_is_refused_when_it_is_built() -> None:
    # SB3's off-policy collector stores VecNormalize.get_original_reward(): below us, the TRUE reward
    with pytest.raises(ValueError, match="VecNormalize is below PreferenceRewardWrapper"):
        PreferenceRewardWrapper(VecNormalize(make_vec_env("Pendulum-v1", n_envs=1)))


@pytest.mark.parametrize("norm_reward", [False, True])
def test_vecnormalize_above_stores_the_learned_reward_in_the_replay_buffer(norm_reward: bool) -> None:
    wrapper = PreferenceRewardWrapper(make_vec_env("Pendulum-v1", n_envs=1, seed=0))
    venv = VecNormalize(wrapper, norm_reward=norm_reward)
    model = SAC("MlpPolicy", venv, learning_starts=300, seed=0)
    model.learn(300)
    stored = model.replay_buffer.rewards[: model.replay_buffer.pos]
    assert len(stored) == 300
    np.testing.assert_array_equal(stored, 0.0)  # the learned reward is 0 before its first fit
    assert min(wrapper.segments.true_rewards[wrapper.segments.newest_rows()].min(), 0.0) < -0.1


class GoalEnv(gym.Env):
    """A 2-D reach task in the goal-conditioned API HER expects (``compute_reward``)."""

    def __init__(self) -> None:
        box = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = spaces.Dict({"observation": box, "achieved_goal": box, "desired_goal": box})
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._position = np.zeros(2, np.float32)
        self._goal = np.full(2, 0.5, np.float32)
        self._t = 0

    def _obs(self) -> dict[str, np.ndarray]:
        return {
            "observation": self._position.copy(),
            "achieved_goal": self._position.copy(),
            "desired_goal": self._goal,
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        self._position[:] = 0.0
        self._t = 0
        return self._obs(), {}

    def compute_reward(self, achieved_goal: np.ndarray, desired_goal: np.ndarray, info: object) -> np.ndarray:
        return -np.linalg.norm(achieved_goal - desired_goal, axis=-1).astype(np.float32)

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        self._position = np.clip(self._position + 0.1 * np.asarray(action, np.float32), -1, 1)
        self._t += 1
        reward = float(self.compute_reward(self._position, self._goal, None))
        return self._obs(), reward, False, self._t >= 20, {}


def test_her_is_refused_at_the_start_of_learn() -> None:
    venv = PreferenceRewardWrapper(DummyVecEnv([GoalEnv]))
    model = SAC(
        "MultiInputPolicy",
        venv,
        replay_buffer_class=HerReplayBuffer,
        replay_buffer_kwargs={"n_sampled_goal": 4},
        learning_starts=40,
    )
    callback = PreferenceCallback(venv, SyntheticOracle(), total_labels=4, min_segments=4)
    with pytest.raises(ValueError, match="HerReplayBuffer recomputes rewards"):
        model.learn(100, callback=callback)
    assert model.num_timesteps == 0


def test_her_without_a_callback_cannot_read_the_true_reward() -> None:
    venv = PreferenceRewardWrapper(DummyVecEnv([GoalEnv]))
    model = SAC(
        "MultiInputPolicy", venv, replay_buffer_class=HerReplayBuffer, learning_starts=40, batch_size=16
    )
    with pytest.raises(RuntimeError, match="HerReplayBuffer recomputes rewards"):
        model.learn(60)  # HER samples (and calls compute_reward) at the first gradient step


@pytest.mark.parametrize(
    "outer",
    [lambda v: VecFrameStack(v, 2), VecMonitor, lambda v: VecNormalize(VecMonitor(v))],
    ids=["VecFrameStack", "VecMonitor", "VecMonitor-under-VecNormalize"],
)
def test_wrappers_that_belong_below_are_refused_before_the_first_step(outer: object) -> None:
    wrapper = PreferenceRewardWrapper(make_vec_env("Pendulum-v1", n_envs=1))
    model = SAC("MlpPolicy", outer(wrapper), learning_starts=10)  # type: ignore[operator]
    callback = PreferenceCallback(wrapper, SyntheticOracle(), total_labels=4, min_segments=4)
    with pytest.raises(ValueError, match="is above PreferenceRewardWrapper: only VecNormalize, VecTranspose"):
        model.learn(100, callback=callback)
    assert model.num_timesteps == 0


def test_a_plain_gym_env_reports_the_true_return_under_sb3_keys() -> None:
    wrapper = PreferenceRewardWrapper(gym.make("Pendulum-v1"))
    model = PPO("MlpPolicy", wrapper, n_steps=200, batch_size=100, n_epochs=1, seed=0)
    model.learn(400)
    logged = [episode["r"] for episode in model.ep_info_buffer]
    assert len(logged) == 2
    np.testing.assert_allclose(logged, list(wrapper.episode_true_returns), rtol=1e-5)
    assert max(logged) < -1.0  # Pendulum's true return; the learned return is 0 before any fit
    mean, _ = evaluate_policy(model, model.get_env(), n_eval_episodes=1, warn=False)
    assert mean < -1.0  # evaluate_policy reads the Monitor inside the wrapper: the true return


def test_a_monitor_outside_a_plain_gym_wrapper_is_refused() -> None:
    from stable_baselines3.common.monitor import Monitor

    wrapper = PreferenceRewardWrapper(gym.make("Pendulum-v1"))
    model = PPO("MlpPolicy", Monitor(wrapper), n_steps=64, batch_size=64)
    callback = PreferenceCallback(wrapper, SyntheticOracle(), total_labels=4, min_segments=4)
    with pytest.raises(ValueError, match="Monitor is above PreferenceRewardWrapper"):
        model.learn(64, callback=callback)


def test_chunked_learn_spreads_the_budget_over_the_whole_run() -> None:
    venv = PreferenceRewardWrapper(make_vec_env("Pendulum-v1", n_envs=2, seed=0), seed=0)
    model = PPO("MlpPolicy", venv, n_steps=256, batch_size=256, n_epochs=1, seed=0)
    callback = PreferenceCallback(
        venv, SyntheticOracle(seed=0), total_labels=60, min_segments=16, total_timesteps=6144, seed=0
    )
    labels = []
    for chunk in range(3):
        model.learn(2048, callback=callback, reset_num_timesteps=chunk == 0)
        labels.append(callback.learner.n_labels)
    assert model.num_timesteps == 6144
    assert labels[0] < 45 and labels[0] < labels[1] < labels[2] == 60


def test_chunked_learn_without_a_horizon_warns() -> None:
    venv = PreferenceRewardWrapper(make_vec_env("Pendulum-v1", n_envs=2, seed=0))
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1)
    callback = PreferenceCallback(venv, SyntheticOracle(), total_labels=4, min_segments=4)
    model.learn(128, callback=callback)
    with pytest.warns(UserWarning, match="total_timesteps=<whole run>"):
        model.learn(128, callback=callback, reset_num_timesteps=False)


SEEDED_RUN = textwrap.dedent(
    """
    import hashlib, json, sys
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from prefwrap import PreferenceCallback, PreferenceRewardWrapper, SyntheticOracle

    torch.set_num_threads(1)
    venv = PreferenceRewardWrapper(make_vec_env("Pendulum-v1", n_envs=2, seed=0), seed=0)
    initial = [p.detach().clone() for p in venv.learned_reward.model.parameters()]
    callback = PreferenceCallback(venv, SyntheticOracle(seed=0), total_labels=20, min_segments=16, seed=0)
    model = PPO("MlpPolicy", venv, n_steps=256, batch_size=128, n_epochs=2, seed=0)
    model.learn(2048, callback=callback)

    def digest(tensors):
        h = hashlib.sha256()
        for t in tensors:
            h.update(t.detach().cpu().numpy().tobytes())
        return h.hexdigest()

    stored = callback.learner.store.labels()
    labels = [(l.query_id, l.left_id, l.right_id, l.preference.value) for l in stored]
    print(json.dumps({
        "initial": digest(initial),
        "reward": digest(venv.learned_reward.model.parameters()),
        "policy": digest(model.policy.parameters()),
        "labels": labels,
    }))
    """
)


def test_seeded_runs_repeat_exactly_in_fresh_processes() -> None:
    runs = [
        subprocess.run([sys.executable, "-c", SEEDED_RUN], capture_output=True, text=True, timeout=300)
        for _ in range(2)
    ]
    for run in runs:
        assert run.returncode == 0, run.stderr[-2000:]
    first, second = (run.stdout.strip().splitlines()[-1] for run in runs)
    assert '"labels": [[' in first  # labels were collected
    assert first == second


def test_ars_is_refused_because_it_ranks_candidates_by_the_true_return() -> None:
    from sb3_contrib import ARS

    venv = PreferenceRewardWrapper(make_vec_env("Pendulum-v1", n_envs=1))
    model = ARS("LinearPolicy", venv, n_delta=2)
    callback = PreferenceCallback(venv, SyntheticOracle(), total_labels=4, min_segments=4)
    with pytest.raises(ValueError, match="ARS ranks its candidate policies"):
        model.learn(400, callback=callback)
    assert model.num_timesteps == 0


def test_a_refit_under_no_grad_still_trains() -> None:
    import torch

    venv = PreferenceRewardWrapper(make_vec_env("Pendulum-v1", n_envs=2, seed=0), seed=0)
    callback = PreferenceCallback(venv, SyntheticOracle(seed=0), total_labels=8, min_segments=8, seed=0)
    PPO("MlpPolicy", venv, n_steps=128, batch_size=128, n_epochs=1, seed=0).learn(256, callback=callback)
    before = [p.detach().clone() for p in venv.learned_reward.model.parameters()]
    callback.learner.refitting.labels_since_fit = 1  # as if a label had just arrived
    with torch.no_grad():  # sb3-contrib's ARS calls its callbacks so
        assert callback.learner.refit() is not None
    after = list(venv.learned_reward.model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
