"""Shared test set-up: single-threaded torch, seeded generators, tiny scripted envs with a known reward."""

from __future__ import annotations

import random
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from prefwrap.records import Preference, Query, Segment

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    """Every test starts from the same global random state (components also take their own seeds)."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


class GoRightEnv(gym.Env):
    """A 1-D walk on ``[-1, 1]`` that pays the agent its new position: moving right is good.

    Observation ``[x, t / max_steps]`` (``t``: steps taken in this episode, so a segment's steps are
    contiguous exactly when its second feature rises by ``1 / max_steps`` per step). The action moves
    ``x`` by ``step_size * a``: ``a`` in ``Box(-action_high, action_high)`` (the env clips it), or
    ``Discrete(3)`` meaning left/stay/right. The reward is :func:`go_right_reward` of the observation
    and action, the new position ``x'``.

    Args:
        max_steps: Episode length (truncation), when ``episode_lengths`` is not given.
        step_size: Distance moved by a unit action.
        discrete: Discrete(3) actions instead of a Box.
        dict_obs: ``Dict(position, time)`` observations instead of a Box (same features, same order).
        episode_lengths: Cycle of episode lengths; episodes then *terminate* after these many steps.
        action_high: Bound of the Box action space.
        start_noise: Initial ``x`` is uniform in ``[-start_noise, start_noise]``.
        render_mode: ``"rgb_array"`` renders a tiny frame whose pixels encode ``x`` and ``t``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        max_steps: int = 50,
        step_size: float = 0.2,
        discrete: bool = False,
        dict_obs: bool = False,
        episode_lengths: tuple[int, ...] | None = None,
        action_high: float = 1.0,
        start_noise: float = 0.0,
        render_mode: str | None = None,
    ) -> None:
        self.max_steps = max_steps if episode_lengths is None else max(max_steps, *episode_lengths)
        self.step_size = step_size
        self.discrete = discrete
        self.episode_lengths = episode_lengths
        self.action_high = action_high
        self.start_noise = start_noise
        self.render_mode = render_mode
        box = spaces.Box(np.array([-1.0, 0.0], np.float32), np.array([1.0, 1.0], np.float32))
        self.observation_space: spaces.Space = (
            spaces.Dict(
                {
                    "position": spaces.Box(-1.0, 1.0, (1,), np.float32),
                    "time": spaces.Box(0.0, 1.0, (1,), np.float32),
                }
            )
            if dict_obs
            else box
        )
        self.action_space: spaces.Space = (
            spaces.Discrete(3) if discrete else spaces.Box(-action_high, action_high, (1,), np.float32)
        )
        self.dict_obs = dict_obs
        self.x = 0.0
        self.t = 0
        self.n_episodes = 0
        self._length = self.max_steps

    def _obs(self) -> Any:
        x, t = np.float32(self.x), np.float32(self.t / self.max_steps)
        if self.dict_obs:
            return {"position": np.array([x], np.float32), "time": np.array([t], np.float32)}
        return np.array([x, t], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.x = (
            float(self.np_random.uniform(-self.start_noise, self.start_noise)) if self.start_noise else 0.0
        )
        self.t = 0
        if self.episode_lengths is not None:
            self._length = self.episode_lengths[self.n_episodes % len(self.episode_lengths)]
        self.n_episodes += 1
        return self._obs(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        move = move_of(action, self.discrete, self.action_high)
        self.x = float(np.clip(self.x + self.step_size * move, -1.0, 1.0))
        self.t += 1
        reward = self.x
        ended = self.t >= self._length
        terminated = ended and self.episode_lengths is not None
        truncated = ended and self.episode_lengths is None
        return self._obs(), reward, terminated, truncated, {}

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        frame = np.zeros((4, 4, 3), dtype=np.uint8)
        frame[..., 0] = round((self.x + 1.0) * 100)
        frame[..., 1] = self.t % 256
        return frame


def move_of(action: Any, discrete: bool, action_high: float = 1.0) -> float:
    """The signed move of an action (Discrete: 0/1/2 = left/stay/right; Box: clipped to its bounds)."""
    if discrete:
        return float(int(np.asarray(action).reshape(-1)[0]) - 1)
    return float(np.clip(np.asarray(action, dtype=np.float64).reshape(-1)[0], -action_high, action_high))


def go_right_reward(x: np.ndarray, move: np.ndarray, step_size: float = 0.2) -> np.ndarray:
    """The known true reward of :class:`GoRightEnv` from position(s) ``x`` and move(s)."""
    return np.clip(np.asarray(x) + step_size * np.asarray(move), -1.0, 1.0)


def make_go_right(**kwargs: Any):
    """A picklable constructor (for ``make_vec_env`` and ``SubprocVecEnv``)."""

    def make() -> GoRightEnv:
        return GoRightEnv(**kwargs)

    return make


def make_segment(
    segment_id: int,
    rewards: np.ndarray | list[float],
    obs_dim: int = 2,
    action_dim: int = 1,
    length: int | None = None,
    observations: np.ndarray | None = None,
) -> Segment:
    """A segment with given true rewards; observations random (seeded by id) unless given."""
    r = np.asarray(rewards, dtype=np.float32)
    horizon = len(r)
    rng = np.random.default_rng(segment_id)
    obs = (
        observations.astype(np.float32)
        if observations is not None
        else rng.normal(size=(horizon, obs_dim)).astype(np.float32)
    )
    return Segment(
        segment_id=segment_id,
        observations=obs,
        actions=rng.normal(size=(horizon, action_dim)).astype(np.float32),
        true_rewards=r,
        length=horizon if length is None else length,
    )


def rational(query: Query) -> Preference:
    """The rational teacher's answer: the higher true return wins."""
    left, right = query.left.true_return, query.right.true_return
    return Preference.LEFT if left > right else Preference.RIGHT if right > left else Preference.EQUAL


@pytest.fixture
def go_right_env() -> GoRightEnv:
    return GoRightEnv()


@pytest.fixture
def discrete_env() -> GoRightEnv:
    return GoRightEnv(discrete=True)


@pytest.fixture
def dict_env() -> GoRightEnv:
    return GoRightEnv(dict_obs=True)


@pytest.fixture
def terminating_env() -> GoRightEnv:
    """Terminates after 3, 7, 12, 5, ... steps: variable episode lengths, shorter and longer than H."""
    return GoRightEnv(episode_lengths=(3, 7, 12, 5))
