"""Tests for prefwrap.callback: every SB3 algorithm family learns from preferences through one callback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import GoRightEnv, make_go_right
from sb3_contrib import TRPO
from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from prefwrap.callback import PreferenceCallback
from prefwrap.env_utils import find_preference_wrapper
from prefwrap.oracles.synthetic import SyntheticOracle
from prefwrap.wrapper import PreferenceRewardWrapper

SEGMENT_LENGTH = 5
LEARNER_KWARGS = {
    "min_segments": 10,
    "initial_fit_epochs": 10,
    "fit_epochs": 3,
    "query_batch_size": 5,
    "seed": 0,
}


def small_net() -> dict[str, Any]:
    return {"net_arch": [16]}  # a fresh dict each time: SB3 adds keys to policy_kwargs in place


ALGORITHMS: dict[str, tuple[type, dict[str, Any], bool]] = {
    # name: (class, kwargs, discrete actions)
    "PPO": (PPO, {"n_steps": 64, "batch_size": 64, "n_epochs": 2}, False),
    "A2C": (A2C, {"n_steps": 16}, False),
    "TRPO": (TRPO, {"n_steps": 64, "batch_size": 64, "n_critic_updates": 2, "cg_max_steps": 5}, False),
    "SAC": (SAC, {"train_freq": 8, "gradient_steps": 1, "learning_starts": 200, "batch_size": 32}, False),
    "TD3": (TD3, {"train_freq": 8, "gradient_steps": 1, "learning_starts": 200, "batch_size": 32}, False),
    "DQN": (DQN, {"train_freq": 8, "gradient_steps": 1, "learning_starts": 200, "batch_size": 32}, True),
}


class RecordingWriter(KVWriter):
    """Keeps every key/value the SB3 logger dumps."""

    def __init__(self) -> None:
        self.values: dict[str, list[Any]] = {}

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        for key, value in key_values.items():
            self.values.setdefault(key, []).append(value)

    def close(self) -> None:
        pass


def wrapped_venv(n_envs: int = 2, discrete: bool = False, **kwargs: Any) -> PreferenceRewardWrapper:
    env_fn = make_go_right(max_steps=20, start_noise=0.5, discrete=discrete)
    return PreferenceRewardWrapper(
        make_vec_env(env_fn, n_envs=n_envs, seed=0),
        segment_length=SEGMENT_LENGTH,
        hidden_sizes=(32,),
        **kwargs,
    )


def with_recording_logger(model: Any) -> RecordingWriter:
    writer = RecordingWriter()
    model.set_logger(Logger(folder=None, output_formats=[writer]))
    return writer


def expected_buffer_rewards(
    model: OffPolicyAlgorithm, venv: PreferenceRewardWrapper
) -> tuple[np.ndarray, np.ndarray]:
    buffer = model.replay_buffer
    n = buffer.buffer_size if buffer.full else buffer.pos
    actions = buffer.actions[:n].reshape(n * buffer.n_envs, -1)
    # Box actions are stored scaled to [-1, 1]; Discrete ones as indices.
    actions = model.policy.unscale_action(actions) if isinstance(model, SAC | TD3) else actions.reshape(-1)
    expected = venv.learned_reward.predict(buffer.observations[:n].reshape(n * buffer.n_envs, -1), actions)
    return buffer.rewards[:n], expected.reshape(n, buffer.n_envs)


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_every_algorithm_learns_from_preferences(name: str) -> None:
    algo, kwargs, discrete = ALGORITHMS[name]
    venv = wrapped_venv(discrete=discrete)
    model = algo("MlpPolicy", venv, policy_kwargs=small_net(), seed=0, device="cpu", **kwargs)
    writer = with_recording_logger(model)
    callback = PreferenceCallback(venv, SyntheticOracle(seed=0), total_labels=40, **LEARNER_KWARGS)
    model.learn(3000, callback=callback, log_interval=1)

    learner = callback.learner
    assert learner.n_labels > 10 and learner.store.n_labels() == learner.n_labels
    assert learner.n_labels <= 40
    assert venv.learned_reward.fitted and learner.last_fit is not None
    assert {"pref/labels", "pref/train_loss", "pref/val_accuracy", "pref/true_ep_return"} <= set(
        writer.values
    )
    assert 0 < max(writer.values["pref/labels"]) <= learner.n_labels
    if isinstance(model, OffPolicyAlgorithm):
        stored, expected = expected_buffer_rewards(model, venv)
        assert np.any(stored != 0)
        np.testing.assert_allclose(stored, expected, rtol=1e-4, atol=1e-4)


def test_on_policy_rollouts_keep_the_rewards_they_were_collected_with() -> None:
    """PPO trains on the rollout as collected: the callback does not relabel it after a refit."""
    venv = wrapped_venv()
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=64,
        batch_size=64,
        n_epochs=1,
        policy_kwargs=small_net(),
        seed=0,
        device="cpu",
    )
    callback = PreferenceCallback(venv, SyntheticOracle(), total_labels=20, **LEARNER_KWARGS)
    model.learn(128, callback=callback)  # the first refit happens at the end of the first rollout
    assert venv.learned_reward.fitted
    rewards = model.rollout_buffer.rewards  # (64 steps, 2 envs), both envs truncate every 20 steps
    truncations = [19, 39, 59]
    # Collected before any fit: zero, and not relabelled; SB3 added the timeout bootstrap at truncations.
    assert not np.any(np.delete(rewards, truncations, axis=0))
    assert np.all(rewards[truncations] != 0)


def test_plain_gym_env_path_with_ppo() -> None:
    env = PreferenceRewardWrapper(
        GoRightEnv(max_steps=20, start_noise=0.5), segment_length=SEGMENT_LENGTH, hidden_sizes=(32,)
    )
    model = PPO(
        "MlpPolicy",
        env,
        n_steps=128,
        batch_size=64,
        n_epochs=2,
        policy_kwargs=small_net(),
        seed=0,
        device="cpu",
    )
    assert find_preference_wrapper(model.get_env()) is env  # found inside SB3's DummyVecEnv(Monitor(env))
    writer = with_recording_logger(model)
    callback = PreferenceCallback(env, SyntheticOracle(), total_labels=30, **LEARNER_KWARGS)
    model.learn(1500, callback=callback, log_interval=1)
    assert callback.learner.n_labels > 0 and env.learned_reward.fitted
    assert env.num_timesteps == model.num_timesteps
    logged = writer.values["pref/true_ep_return"]
    assert logged[-1] == pytest.approx(np.mean(env.episode_true_returns))


def test_wrapper_found_under_other_vec_wrappers() -> None:
    venv = wrapped_venv()
    assert find_preference_wrapper(VecNormalize(venv)) is venv
    with pytest.raises(TypeError, match="no PreferenceRewardWrapper found in DummyVecEnv"):
        find_preference_wrapper(make_vec_env(make_go_right(), n_envs=1))


def test_callback_on_an_unwrapped_env_is_refused() -> None:
    plain = make_vec_env(make_go_right(), n_envs=2)
    with pytest.raises(TypeError, match="PreferenceRewardWrapper"):
        PreferenceCallback(plain, SyntheticOracle())
    model = PPO("MlpPolicy", plain, n_steps=64, policy_kwargs=small_net(), device="cpu")
    callback = PreferenceCallback(wrapped_venv(), SyntheticOracle(), total_labels=10)
    with pytest.raises(TypeError, match="the model's env has no PreferenceRewardWrapper"):
        model.learn(256, callback=callback)


def test_callback_and_model_on_different_wrappers_is_refused() -> None:
    model = PPO("MlpPolicy", wrapped_venv(), n_steps=64, policy_kwargs=small_net(), device="cpu")
    callback = PreferenceCallback(wrapped_venv(), SyntheticOracle(), total_labels=10)
    with pytest.raises(ValueError, match="different PreferenceRewardWrapper"):
        model.learn(256, callback=callback)


def test_budget_larger_than_the_run_can_record_is_refused() -> None:
    venv = wrapped_venv()
    model = PPO("MlpPolicy", venv, n_steps=64, policy_kwargs=small_net(), device="cpu")
    callback = PreferenceCallback(venv, SyntheticOracle(), total_labels=500)
    with pytest.raises(ValueError, match=r"total_labels=500 is more than the ~200 segments a 1000-step run"):
        model.learn(1000, callback=callback)


def test_resuming_a_finished_labelling_run_uses_the_stored_labels(tmp_path: Path) -> None:
    """All labels of the budget are in the store: a resumed run must fit on them, not train on zeros."""
    store = tmp_path / "prefs.sqlite"
    venv = wrapped_venv()
    model = PPO(
        "MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, policy_kwargs=small_net(), device="cpu"
    )
    kwargs = {**LEARNER_KWARGS, "query_batch_size": 1}
    first = PreferenceCallback(venv, SyntheticOracle(), total_labels=20, store=store, **kwargs)
    model.learn(1000, callback=first)
    assert first.learner.n_labels == 20
    first.learner.store.close()

    resumed_venv = wrapped_venv()
    resumed = PPO(
        "MlpPolicy",
        resumed_venv,
        n_steps=64,
        batch_size=64,
        n_epochs=1,
        policy_kwargs=small_net(),
        device="cpu",
    )
    second = PreferenceCallback(resumed_venv, SyntheticOracle(), total_labels=20, store=store, **kwargs)
    assert second.learner.n_labels == 20
    resumed.learn(512, callback=second)
    assert resumed_venv.learned_reward.fitted
    assert np.any(resumed.rollout_buffer.rewards)


# ---------------------------------------------------------------------------------- learning


def true_return(model: Any, n_episodes: int = 10) -> float:
    """Mean true return of the deterministic policy (or of uniform random actions if model is None)."""
    env = GoRightEnv(max_steps=50, start_noise=0.5)
    env.action_space.seed(0)
    returns = []
    for episode in range(n_episodes):
        obs, _ = env.reset(seed=1000 + episode)
        total, done = 0.0, False
        while not done:
            action = env.action_space.sample() if model is None else model.predict(obs, deterministic=True)[0]
            obs, reward, terminated, truncated, _ = env.step(action)
            total += reward
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def learn_go_right(
    total_steps: int, total_labels: int, seed: int = 0, oracle: Any = None
) -> tuple[float, PreferenceCallback]:
    venv = PreferenceRewardWrapper(
        make_vec_env(make_go_right(max_steps=50, start_noise=0.5), n_envs=4, seed=seed),
        segment_length=10,
        hidden_sizes=(32, 32),
    )
    model = PPO(
        "MlpPolicy",
        venv,
        n_steps=128,
        batch_size=128,
        n_epochs=5,
        learning_rate=1e-3,
        policy_kwargs={"net_arch": [32, 32]},
        seed=seed,
        device="cpu",
    )
    oracle = oracle or SyntheticOracle(seed=seed)
    callback = PreferenceCallback(venv, oracle, total_labels=total_labels, min_segments=20, seed=seed)
    model.learn(total_steps, callback=callback)
    return true_return(model), callback


def test_ppo_learns_the_true_task_from_synthetic_preferences() -> None:
    random_policy = true_return(None)
    trained, callback = learn_go_right(20_000, total_labels=100)
    assert callback.learner.n_labels >= 90
    optimal = 50 - 0.5 * 5  # about five steps to reach x = 1, then paid 1 per step
    assert trained > random_policy + 0.5 * (optimal - random_policy), (trained, random_policy)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ppo_reaches_near_optimal_return_from_noisy_preferences(seed: int) -> None:
    """Longer run with B-Pref's "mistake" teacher (10% of answers flipped)."""
    trained, _ = learn_go_right(
        40_000, total_labels=200, seed=seed, oracle=SyntheticOracle.teacher("mistake", seed)
    )
    optimal = 50 - 0.5 * 5
    assert trained > 0.9 * optimal, trained


def pendulum_return(model: Any, n_episodes: int = 10) -> float:
    env = gym.make("Pendulum-v1")
    returns = []
    for episode in range(n_episodes):
        obs, _ = env.reset(seed=2000 + episode)
        total, done = 0.0, False
        while not done:
            action = env.action_space.sample() if model is None else model.predict(obs, deterministic=True)[0]
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["PPO", "SAC"])
def test_pendulum_swings_up_from_preferences(name: str) -> None:
    if name == "PPO":  # RL Zoo's Pendulum-v1 hyperparameters
        venv = PreferenceRewardWrapper(make_vec_env("Pendulum-v1", n_envs=4, seed=0))
        model = PPO(
            "MlpPolicy",
            venv,
            n_steps=1024,
            gae_lambda=0.95,
            gamma=0.9,
            n_epochs=10,
            ent_coef=0.0,
            learning_rate=1e-3,
            clip_range=0.2,
            use_sde=True,
            sde_sample_freq=4,
            seed=0,
            device="cpu",
        )
        steps, labels = 60_000, 200
    else:
        venv = PreferenceRewardWrapper(make_vec_env("Pendulum-v1", n_envs=1, seed=0))
        model = SAC(
            "MlpPolicy",
            venv,
            learning_starts=1000,
            seed=0,
            device="cpu",
            policy_kwargs={"net_arch": [64, 64]},
        )
        steps, labels = 15_000, 200
    callback = PreferenceCallback(venv, SyntheticOracle(seed=0), total_labels=labels, seed=0)
    model.learn(steps, callback=callback)
    random_policy, trained = pendulum_return(None), pendulum_return(model)  # random: about -1200
    # SAC swings up within 15k steps; PPO is slower (-530 after 60k steps in our runs) but clearly learning.
    assert trained > (-400 if name == "SAC" else random_policy + 500), (trained, random_policy)


def test_labelers_hear_when_the_first_queries_come_and_when_they_are_ready(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("pygame", reason="Pendulum clips are drawn by pygame: pip install prefwrap[human]")

    class PersonLikeOracle(SyntheticOracle):
        needs_frames = True  # shows clips to people: they are told when queries come

    venv = PreferenceRewardWrapper(make_vec_env("Pendulum-v1", n_envs=2, seed=0), seed=0, record_frames=True)
    oracle = PersonLikeOracle(seed=0)
    callback = PreferenceCallback(venv, oracle, total_labels=8, min_segments=24, verbose=1)
    PPO("MlpPolicy", venv, n_steps=128, batch_size=128, n_epochs=1, seed=0).learn(768, callback=callback)
    out = capsys.readouterr().out
    # 24 segments of 30 steps from 2 envs: 360 steps; the first rollout end (256 steps) has 8 of them
    assert "step 256: the first queries come in about 240 steps (24 segments are recorded first)" in out
    assert out.count("first queries come in") == 1 and out.count("queries ready for labeling") == 1
    store = callback.learner.store
    # re-estimated at each rollout end before the first queries (the last one at step 512), for the web page
    assert 512 < int(store.get_meta("first_queries_at")) <= 768 and int(store.get_meta("timestep")) == 768


def _two_rollouts(synchronous: bool) -> tuple[PPO, PreferenceCallback]:
    venv = wrapped_venv(seed=0)
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, policy_kwargs=small_net(), seed=0)
    kwargs = {**LEARNER_KWARGS, "min_segments": 8}
    callback = PreferenceCallback(venv, SyntheticOracle(), total_labels=20, synchronous=synchronous, **kwargs)
    model.learn(256, callback=callback)  # two rollouts of 128 steps; labels arrive after the first
    return model, callback


def test_a_background_refit_is_installed_one_rollout_later_and_runs_repeat_exactly() -> None:
    truncations = [15, 35, 55]  # rollout 2 holds steps 64-127: episodes of 20 steps end at 79, 99, 119
    background, callback = _two_rollouts(synchronous=False)
    # The fit started after rollout 1 ran while rollout 2 was collected: rollout 2 still got zeros.
    assert not np.any(np.delete(background.rollout_buffer.rewards, truncations, axis=0))
    assert callback.learner.refitting.started_at is None and callback.wrapper.learned_reward.fitted
    synchronous, _ = _two_rollouts(synchronous=True)
    assert np.all(np.delete(synchronous.rollout_buffer.rewards, truncations, axis=0) != 0)
    again, _ = _two_rollouts(synchronous=False)
    for a, b in zip(
        background.get_env().learned_reward.model.parameters(),
        again.get_env().learned_reward.model.parameters(),
        strict=True,
    ):
        assert torch.equal(a, b)
    assert all(
        torch.equal(a, b)
        for a, b in zip(background.policy.parameters(), again.policy.parameters(), strict=True)
    )


def test_long_fits_print_progress_about_every_ten_seconds(capsys: pytest.CaptureFixture[str]) -> None:
    venv = wrapped_venv()
    callback = PreferenceCallback(venv, SyntheticOracle(), total_labels=20, verbose=1, **LEARNER_KWARGS)
    for epoch, seconds in [(1, 3.0), (2, 10.5), (3, 15.0), (4, 21.0), (1, 4.0)]:
        callback.learner.fitter.progress(epoch, 50, 10 * epoch, seconds)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "[prefwrap] refit: epoch 2/50, 20 gradient steps, 10s",
        "[prefwrap] refit: epoch 4/50, 40 gradient steps, 21s",
    ]
