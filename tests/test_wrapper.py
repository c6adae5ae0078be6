"""Tests for prefwrap.wrapper: learned reward in, true reward kept, segments recorded, safe reuse."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import GoRightEnv, go_right_reward, make_go_right
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.env_checker import check_env
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnvWrapper

from prefwrap.recording import default_segment_length
from prefwrap.reward.learned import LearnedReward
from prefwrap.wrapper import EnvPreferenceRewardWrapper, PreferenceRewardWrapper, VecPreferenceRewardWrapper

VEC_ENV_CLASSES = [DummyVecEnv, SubprocVecEnv]


def make_venv(n_envs: int = 2, vec_env_cls: type = DummyVecEnv, **env_kwargs: Any):
    # fork: sub-processes start in milliseconds (the wrapper itself always lives in this process)
    vec_env_kwargs = {"start_method": "fork"} if vec_env_cls is SubprocVecEnv else None
    return make_vec_env(
        make_go_right(**env_kwargs),
        n_envs=n_envs,
        seed=0,
        vec_env_cls=vec_env_cls,
        vec_env_kwargs=vec_env_kwargs,
    )


def fit_randomly(wrapper: PreferenceRewardWrapper, seed: int = 0) -> None:
    """Mark the (randomly initialised) reward fitted, normalised on random inputs of the env's range."""
    rng = np.random.default_rng(seed)
    encoder = wrapper.learned_reward.encoder
    obs = rng.uniform(-1, 1, (500, encoder.observation_shape[0])).astype(np.float32)
    act = rng.uniform(-1, 1, (500, encoder.action_dim)).astype(np.float32)
    wrapper.learned_reward.refresh(obs, act)


def positions(observations: Any) -> np.ndarray:
    if isinstance(observations, dict):
        return np.asarray(observations["position"])[..., 0]
    return np.asarray(observations)[..., 0]


def stored_segments(wrapper: PreferenceRewardWrapper) -> list:
    return [wrapper.segments.segment(int(row)) for row in wrapper.segments.newest_rows()]


def assert_contiguous(wrapper: PreferenceRewardWrapper, max_steps: int) -> None:
    """Every stored segment is consecutive steps of one episode (time feature rises by one step)."""
    assert wrapper.segments.size > 0
    for segment in stored_segments(wrapper):
        steps = np.rint(segment.observations[: segment.length, 1] * max_steps)
        np.testing.assert_array_equal(np.diff(steps), 1, err_msg="a segment spans an episode boundary")


class FaultyEnv(GoRightEnv):
    """GoRightEnv that returns a NaN observation or reward at a given step."""

    def __init__(self, nan_obs_at: int | None = None, nan_reward_at: int | None = None) -> None:
        super().__init__()
        self.nan_obs_at, self.nan_reward_at = nan_obs_at, nan_reward_at

    def step(self, action: Any) -> tuple:
        obs, reward, terminated, truncated, info = super().step(action)
        if self.t == self.nan_obs_at:
            obs = np.array([np.nan, 0.0], np.float32)
        if self.t == self.nan_reward_at:
            reward = float("nan")
        return obs, reward, terminated, truncated, info


class SpaceEnv(gym.Env):
    """An env with arbitrary spaces (for the refusal tests)."""

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space) -> None:
        self.observation_space, self.action_space = observation_space, action_space

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple:
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action: Any) -> tuple:
        return self.observation_space.sample(), 1.0, False, False, {}


class TupleObservation(gym.ObservationWrapper):
    """GoRightEnv's observation as ``(position Box(1), step parity Discrete(2))``."""

    def __init__(self, env: GoRightEnv) -> None:
        super().__init__(env)
        self.observation_space = spaces.Tuple((spaces.Box(-1, 1, (1,), np.float32), spaces.Discrete(2)))

    def observation(self, observation: np.ndarray) -> tuple:
        return (observation[:1].copy(), int(self.env.unwrapped.t % 2))


# --------------------------------------------------------------------------------- construction


def test_factory_builds_the_matching_wrapper() -> None:
    venv = PreferenceRewardWrapper(make_venv())
    assert isinstance(venv, VecPreferenceRewardWrapper) and isinstance(venv, VecEnvWrapper)
    env = PreferenceRewardWrapper(GoRightEnv())
    assert isinstance(env, EnvPreferenceRewardWrapper) and isinstance(env, gym.Wrapper)
    with pytest.raises(TypeError, match=r"gymnasium.Env or an SB3 VecEnv, got list"):
        PreferenceRewardWrapper([GoRightEnv()])


def test_default_segment_length_is_about_one_and_a_half_seconds() -> None:
    box = spaces.Box(-1, 1, (3,))
    assert default_segment_length(box, 0.05) == 30
    assert default_segment_length(box, None) == 25
    assert default_segment_length(box, 1e-4) == 60
    assert default_segment_length(box, 1.0) == 10
    assert default_segment_length(spaces.Box(0, 255, (8, 8, 3), np.uint8), 0.05) == 25
    assert PreferenceRewardWrapper(make_vec_env("Pendulum-v1", n_envs=1)).segment_length == 30  # dt = 0.05
    assert PreferenceRewardWrapper(gym.make("Pendulum-v1")).segment_length == 30
    assert PreferenceRewardWrapper(GoRightEnv()).segment_length == 25  # no dt


# ------------------------------------------------------------------------------ the reward


@pytest.mark.parametrize("vec_env_cls", VEC_ENV_CLASSES)
def test_vec_reward_is_learned_and_true_reward_is_kept(vec_env_cls: type) -> None:
    max_steps = 10
    venv = PreferenceRewardWrapper(make_venv(2, vec_env_cls, max_steps=max_steps), segment_length=4)
    rng = np.random.default_rng(0)
    obs = venv.reset()
    episode_true, episode_learned = np.zeros(2), np.zeros(2)
    episodes_seen = 0
    try:
        for t in range(2 * max_steps + 5):
            if t == max_steps + 2:
                fit_randomly(venv)
            actions = rng.uniform(-1, 1, (2, 1)).astype(np.float32)
            expected_learned = venv.learned_reward.predict(obs, actions)
            expected_true = go_right_reward(positions(obs), actions[:, 0])
            new_obs, rewards, dones, infos = venv.step(actions)
            true_rewards = np.array([info["true_reward"] for info in infos])
            np.testing.assert_allclose(true_rewards, expected_true, rtol=1e-5)
            np.testing.assert_allclose(rewards, expected_learned, rtol=1e-5, atol=1e-6)
            if not venv.learned_reward.fitted:
                assert not np.any(rewards)
            else:
                assert np.all(rewards != true_rewards)
            episode_true += true_rewards
            episode_learned += rewards
            for env in range(2):
                assert ("pref_episode" in infos[env]) == dones[env]
                if dones[env]:
                    summary = infos[env]["pref_episode"]
                    assert summary["length"] == max_steps
                    assert summary["true_return"] == pytest.approx(episode_true[env], rel=1e-5)
                    assert summary["learned_return"] == pytest.approx(
                        episode_learned[env], rel=1e-4, abs=1e-5
                    )
                    episode_true[env] = episode_learned[env] = 0.0
                    episodes_seen += 1
            obs = new_obs
    finally:
        venv.close()
    assert episodes_seen == 4
    assert len(venv.episode_true_returns) == 4
    assert venv.num_timesteps == 2 * (2 * max_steps + 5)


def test_gym_env_reward_is_learned_and_true_reward_is_kept() -> None:
    env = PreferenceRewardWrapper(GoRightEnv(max_steps=5), segment_length=3)
    obs, _ = env.reset(seed=0)
    total = 0.0
    for t in range(5):
        action = np.array([1.0 if t % 2 == 0 else -0.5], np.float32)
        obs_before = obs
        obs, reward, _, truncated, info = env.step(action)
        assert isinstance(reward, float) and reward == 0.0
        assert info["true_reward"] == pytest.approx(float(go_right_reward(obs_before[0], action[0])))
        total += info["true_reward"]
    assert truncated and info["pref_episode"]["true_return"] == pytest.approx(total)
    assert info["pref_episode"]["learned_return"] == 0.0
    fit_randomly(env)
    obs, _ = env.reset()
    action = np.array([0.3], np.float32)
    _, reward, _, _, info = env.step(action)
    assert reward == pytest.approx(float(env.learned_reward.predict(obs[None], action[None])[0]), rel=1e-5)
    assert reward != info["true_reward"]
    assert [s.length for s in stored_segments(env)] == [3, 3]  # steps 0-2 and the last three, 2-4


def test_discrete_actions_are_one_hot() -> None:
    venv = PreferenceRewardWrapper(make_venv(1, discrete=True, max_steps=6), segment_length=3)
    venv.reset()
    true_rewards = [venv.step(np.array([action]))[3][0]["true_reward"] for action in [0, 1, 2]]
    np.testing.assert_allclose(true_rewards, [-0.2, -0.2, 0.0], atol=1e-6)  # left, stay, right from x = 0
    np.testing.assert_array_equal(stored_segments(venv)[0].actions, np.eye(3))


def test_one_batched_forward_per_vector_step() -> None:
    n_envs, n_steps = 4, 12
    venv = PreferenceRewardWrapper(make_venv(n_envs), segment_length=5)
    fit_randomly(venv)
    reward = venv.learned_reward
    batch_sizes: list[int] = []
    snapshot, torch_forward = reward._fast_forward, reward.model.forward
    fast = snapshot.hidden_units  # every numpy forward (members, or their normalised mean) runs it

    def count_fast(obs: np.ndarray, act: np.ndarray) -> np.ndarray:
        batch_sizes.append(len(obs))
        return fast(obs, act)

    def count_torch(obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        batch_sizes.append(len(obs))
        return torch_forward(obs, act)

    snapshot.hidden_units = count_fast
    reward.model.forward = count_torch
    venv.reset()
    for _ in range(n_steps):
        venv.step(np.zeros((n_envs, 1), np.float32))
    assert batch_sizes == [n_envs] * n_steps


# ---------------------------------------------------------------------------- recording


def test_training_false_stops_recording() -> None:
    venv = PreferenceRewardWrapper(make_venv(2), segment_length=3)
    venv.reset()
    for _ in range(6):
        venv.step(np.zeros((2, 1), np.float32))
    size, next_id, steps = venv.segments.size, venv.segments.next_segment_id, venv.num_timesteps
    assert size == 4
    venv.training = False
    fit_randomly(venv)
    for _ in range(30):
        _, rewards, _, infos = venv.step(np.ones((2, 1), np.float32))
        assert "true_reward" in infos[0] and np.any(rewards)  # still rewards, just no recording
    assert (venv.segments.size, venv.segments.next_segment_id, venv.num_timesteps) == (size, next_id, steps)


@pytest.mark.parametrize("vec", [True, False])
def test_segments_never_span_episodes_with_variable_lengths(vec: bool) -> None:
    kwargs = {"episode_lengths": (3, 7, 12, 5), "max_steps": 12}
    if vec:
        wrapper = PreferenceRewardWrapper(make_venv(3, **kwargs), segment_length=4)
        wrapper.reset()
        for _ in range(80):
            wrapper.step(np.random.uniform(-1, 1, (3, 1)).astype(np.float32))
    else:
        wrapper = PreferenceRewardWrapper(GoRightEnv(**kwargs), segment_length=4)
        wrapper.reset(seed=0)
        for _ in range(80):
            _, _, terminated, truncated, _ = wrapper.step(wrapper.action_space.sample())
            if terminated or truncated:
                wrapper.reset()
    assert_contiguous(wrapper, 12)
    segments = stored_segments(wrapper)
    # these episodes terminate: a final segment holds the steps since the previous one, then the
    # absorbing state (3-step episodes: 3 + 1; 5-step: 4, then 1 + 3; 7-step: 4, then 3 + 1)
    assert {s.length for s in segments} == {1, 3, 4}
    assert all(s.terminated for s in segments if s.length < 4)
    assert {s.absorbing_steps for s in segments} <= {0, 1, 3}


@pytest.mark.parametrize("vec", [True, False])
def test_reset_mid_episode_starts_a_new_segment(vec: bool) -> None:
    """SB3 resets the env at the start of each learn() call, mid-episode: no segment may mix the two."""
    if vec:
        wrapper = PreferenceRewardWrapper(make_venv(1, max_steps=50), segment_length=4)
        step = lambda: wrapper.step(np.ones((1, 1), np.float32))  # noqa: E731
    else:
        wrapper = PreferenceRewardWrapper(GoRightEnv(max_steps=50), segment_length=4)
        step = lambda: wrapper.step(np.ones(1, np.float32))  # noqa: E731
    wrapper.reset()
    for _ in range(2):
        step()
    wrapper.reset()
    for _ in range(8):
        step()
    assert_contiguous(wrapper, 50)


def test_pausing_recording_across_an_episode_end_does_not_join_episodes() -> None:
    """Evaluating with training=False, then training again, must not record a segment spanning episodes."""
    venv = PreferenceRewardWrapper(make_venv(1, max_steps=6), segment_length=4)
    venv.reset()
    for _ in range(2):
        venv.step(np.ones((1, 1), np.float32))
    venv.training = False
    for _ in range(7):  # crosses the episode end at step 6
        venv.step(np.ones((1, 1), np.float32))
    venv.training = True
    for _ in range(6):
        venv.step(np.ones((1, 1), np.float32))
    assert_contiguous(venv, 6)


@pytest.mark.parametrize("vec", [True, False])
def test_dict_observations_are_flattened(vec: bool) -> None:
    if vec:
        wrapper = PreferenceRewardWrapper(make_venv(2, dict_obs=True), segment_length=3)
        wrapper.reset()
        for _ in range(3):
            wrapper.step(np.ones((2, 1), np.float32))
    else:
        wrapper = PreferenceRewardWrapper(GoRightEnv(dict_obs=True), segment_length=3)
        wrapper.reset()
        for _ in range(3):
            wrapper.step(np.ones(1, np.float32))
    assert wrapper.learned_reward.encoder.observation_shape == (2,)
    expected = np.array([[0.0, 0.0], [0.2, 0.02], [0.4, 0.04]], np.float32)  # [position, time]
    for segment in stored_segments(wrapper):
        np.testing.assert_allclose(segment.observations, expected, rtol=1e-6)


def test_tuple_observations_are_flattened() -> None:
    env = PreferenceRewardWrapper(TupleObservation(GoRightEnv()), segment_length=3)
    env.reset()
    for _ in range(3):
        env.step(np.ones(1, np.float32))
    (segment,) = stored_segments(env)
    np.testing.assert_allclose(segment.observations, [[0.0, 1, 0], [0.2, 0, 1], [0.4, 1, 0]], rtol=1e-6)


@pytest.mark.filterwarnings("ignore:The render mode is None")
def test_frames_are_recorded_when_asked() -> None:
    venv = PreferenceRewardWrapper(
        make_venv(1, render_mode="rgb_array"), segment_length=3, record_frames=True
    )
    venv.reset()
    for _ in range(3):
        venv.step(np.ones((1, 1), np.float32))
    (segment,) = stored_segments(venv)
    assert segment.frames is not None and segment.frames.shape == (3, 4, 4, 3)
    np.testing.assert_array_equal(segment.frames[:, 0, 0, 1], [0, 1, 2])  # the frame before each action
    no_render = PreferenceRewardWrapper(make_venv(1), record_frames=True)
    no_render.reset()
    with pytest.raises(RuntimeError, match="render_mode"):
        no_render.step(np.ones((1, 1), np.float32))


# ------------------------------------------------------------------------------- refusals


def test_step_before_reset_is_refused() -> None:
    with pytest.raises(RuntimeError, match="reset"):
        PreferenceRewardWrapper(make_venv(1)).step(np.zeros((1, 1), np.float32))
    with pytest.raises(RuntimeError, match="reset"):
        PreferenceRewardWrapper(GoRightEnv()).step(np.zeros(1, np.float32))


@pytest.mark.parametrize("vec", [True, False])
def test_non_finite_observation_is_refused(vec: bool) -> None:
    if vec:
        wrapper = PreferenceRewardWrapper(DummyVecEnv([lambda: FaultyEnv(nan_obs_at=2)]))
        wrapper.reset()
        step = lambda: wrapper.step(np.zeros((1, 1), np.float32))  # noqa: E731
    else:
        wrapper = PreferenceRewardWrapper(FaultyEnv(nan_obs_at=2))
        wrapper.reset()
        step = lambda: wrapper.step(np.zeros(1, np.float32))  # noqa: E731
    step()
    step()  # returns the NaN observation
    with pytest.raises(ValueError, match="non-finite observation"):
        step()  # the NaN observation is the input of this step's reward


@pytest.mark.parametrize("vec", [True, False])
def test_non_finite_reward_is_refused(vec: bool) -> None:
    if vec:
        wrapper = PreferenceRewardWrapper(DummyVecEnv([lambda: FaultyEnv(nan_reward_at=1)]))
        wrapper.reset()
        with pytest.raises(ValueError, match="non-finite reward"):
            wrapper.step(np.zeros((1, 1), np.float32))
    else:
        wrapper = PreferenceRewardWrapper(FaultyEnv(nan_reward_at=1))
        wrapper.reset()
        with pytest.raises(ValueError, match="non-finite reward"):
            wrapper.step(np.zeros(1, np.float32))


def test_unsupported_spaces_are_refused_with_a_fix() -> None:
    box = spaces.Box(-1, 1, (2,), np.float32)
    with pytest.raises(TypeError, match=r"unsupported observation space Text.*Convert it"):
        PreferenceRewardWrapper(SpaceEnv(spaces.Text(8), box))
    dict_action = spaces.Dict({"a": spaces.Discrete(2), "b": box})
    with pytest.raises(TypeError, match="FlattenAction"):
        PreferenceRewardWrapper(SpaceEnv(box, dict_action))
    with pytest.raises(TypeError, match="FlattenAction"):
        PreferenceRewardWrapper(DummyVecEnv([lambda: SpaceEnv(box, dict_action)]))


def test_dict_actions_work_with_use_actions_false() -> None:
    """The Dict-action error suggests use_actions=False: that must then work."""
    box = spaces.Box(-1, 1, (2,), np.float32)
    env = PreferenceRewardWrapper(
        SpaceEnv(box, spaces.Dict({"a": spaces.Discrete(2), "b": box})), use_actions=False, segment_length=2
    )
    env.reset()
    for _ in range(2):
        env.step(env.action_space.sample())
    assert env.segments.size == 1


# ------------------------------------------------------------------------ SB3 compatibility


@pytest.mark.parametrize("env_fixture", ["go_right_env", "discrete_env", "dict_env", "terminating_env"])
def test_sb3_check_env_passes_on_the_single_env_wrapper(
    env_fixture: str, request: pytest.FixtureRequest
) -> None:
    check_env(PreferenceRewardWrapper(request.getfixturevalue(env_fixture)), warn=False)


# ---------------------------------------------------------------------------- saved reward


@pytest.mark.parametrize("vec", [True, False])
def test_saved_reward_gives_the_same_rewards_on_a_new_env(tmp_path: Path, vec: bool) -> None:
    actions = np.random.default_rng(0).uniform(-1, 1, (30, 1)).astype(np.float32)

    def rollout(wrapper: PreferenceRewardWrapper) -> np.ndarray:
        rewards = []
        wrapper.reset() if vec else wrapper.reset(seed=0)
        for action in actions:
            if vec:
                rewards.append(wrapper.step(action[None])[1][0])
            else:
                rewards.append(wrapper.step(action)[1])
        return np.array(rewards)

    make = (
        (lambda **kw: PreferenceRewardWrapper(make_venv(1), **kw))
        if vec
        else (lambda **kw: PreferenceRewardWrapper(GoRightEnv(), **kw))
    )
    original = make(n_members=2, hidden_sizes=(16,))
    fit_randomly(original)
    expected = rollout(original)
    assert np.any(expected)
    original.save_reward_model(tmp_path / "reward.pt")
    frozen = make(reward_model=tmp_path / "reward.pt")
    assert frozen.learned_reward.fitted
    np.testing.assert_allclose(rollout(frozen), expected, rtol=1e-5, atol=1e-6)
    shared = make(reward_model=original.learned_reward)  # a LearnedReward object is used as is
    assert shared.learned_reward is original.learned_reward


def test_frozen_reward_trains_an_agent_without_a_callback(tmp_path: Path) -> None:
    original = PreferenceRewardWrapper(make_venv(1), hidden_sizes=(16,))
    fit_randomly(original)
    original.save_reward_model(tmp_path / "reward.pt")
    frozen = PreferenceRewardWrapper(make_venv(2), reward_model=str(tmp_path / "reward.pt"))
    model = PPO("MlpPolicy", frozen, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    model.learn(64)
    buffer = model.rollout_buffer
    n_steps, n_envs = buffer.rewards.shape
    # Training flattened observations and actions env-major: (n_envs * n_steps, ...); rewards were not.
    obs = buffer.observations.reshape(n_envs, n_steps, 2).swapaxes(0, 1).reshape(-1, 2)
    actions = np.clip(buffer.actions.reshape(n_envs, n_steps, 1).swapaxes(0, 1).reshape(-1, 1), -1, 1)
    expected = original.learned_reward.predict(obs, actions).reshape(n_steps, n_envs)
    np.testing.assert_allclose(buffer.rewards, expected, rtol=1e-4, atol=1e-5)


def test_saved_reward_refuses_an_env_with_other_spaces(tmp_path: Path) -> None:
    original = PreferenceRewardWrapper(GoRightEnv())
    original.save_reward_model(tmp_path / "reward.pt")
    with pytest.raises(ValueError, match="same spaces"):
        PreferenceRewardWrapper(GoRightEnv(discrete=True), reward_model=tmp_path / "reward.pt")


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_loading_a_reward_never_unpickles(tmp_path: Path) -> None:
    PreferenceRewardWrapper(GoRightEnv()).save_reward_model(tmp_path / "reward.pt")
    state = torch.load(tmp_path / "reward.pt", weights_only=True)
    state["statistics"]["mean"] = Payload()
    torch.save(state, tmp_path / "evil.pt")
    with pytest.raises(pickle.UnpicklingError):
        PreferenceRewardWrapper(GoRightEnv(), reward_model=tmp_path / "evil.pt")


def test_reward_model_file_loads_as_plain_tensors(tmp_path: Path) -> None:
    PreferenceRewardWrapper(GoRightEnv()).save_reward_model(tmp_path / "reward.pt")
    state = torch.load(tmp_path / "reward.pt", weights_only=True)
    assert isinstance(LearnedReward.load(tmp_path / "reward.pt", *spaces_of(GoRightEnv())), LearnedReward)
    assert set(state) >= {"format_version", "config", "state_dict", "statistics"}


def spaces_of(env: gym.Env) -> tuple[spaces.Space, spaces.Space]:
    return env.observation_space, env.action_space
