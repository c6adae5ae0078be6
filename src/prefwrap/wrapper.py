"""PreferenceRewardWrapper: replace an env's reward with the learned reward and record segments.

One class name serves both worlds: wrapping an SB3 ``VecEnv`` gives a ``VecEnvWrapper`` (one batched
reward forward per vector step, sub-envs may live in other processes), wrapping a ``gymnasium.Env``
gives a ``gymnasium.Wrapper`` for single-env loops (CleanRL style). Both keep the true reward in
``info["true_reward"]`` and record segments for the preference learner.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvStepReturn

from prefwrap.frame_capture import StateRenderer
from prefwrap.learned_reward import LearnedReward
from prefwrap.segment_buffer import ImageSegmentBuffer, SegmentBuffer, frame_stack_of
from prefwrap.spaces import add_batch_axis

SEGMENT_SECONDS = 1.5  # the paper's MuJoCo clips
DEFAULT_SEGMENT_LENGTH = 25  # the paper's Atari clips; also used when an env has no ``dt``


def default_segment_length(observation_space: spaces.Space, dt: float | None) -> int:
    """About 1.5 s of simulated time when the env has a time step ``dt`` (10-60 steps), else 25."""
    from prefwrap.spaces import is_image

    if dt is None or is_image(observation_space) or dt <= 0:
        return DEFAULT_SEGMENT_LENGTH
    return int(np.clip(round(SEGMENT_SECONDS / dt), 10, 60))


class PreferenceRewardWrapper:
    """Replaces the environment reward with a learned reward r̂(o, a) fitted to preferences.

    The reward is the ensemble mean normalised to zero mean and standard deviation ``reward_std``; it
    is 0 until the first fit (never the true reward). The true reward stays in
    ``info["true_reward"]`` and every finished episode adds ``info["pref_episode"]`` with its true and
    learned returns. While ``training`` is True, steps are cut into segments (``segments``) for the
    preference learner; set it False to evaluate without recording.

    Pass an SB3 ``VecEnv`` (``DummyVecEnv``/``SubprocVecEnv``, e.g. from ``make_vec_env``) or a plain
    ``gymnasium.Env``; the matching wrapper type is built.

    Args:
        env: The environment to wrap.
        reward_model: A fitted :class:`LearnedReward` or the path of one saved with
            :meth:`save_reward_model`, to reuse a learned reward without labelling again.
        segment_length: Steps per segment; default ~1.5 s of env time (``dt``), else 25.
        buffer_size: Segments kept for querying (oldest dropped first).
        n_members: Reward ensemble size.
        hidden_sizes: MLP hidden widths (vector observations).
        use_actions: Learn r̂(o, a) (True) or r̂(o) (False).
        reward_std: Standard deviation of the normalised learned reward; default 1.0 for vector
            observations, 0.05 for images (the paper's Atari setting).
        segment_memory_mb: Memory budget of the recorded segments for image observations, in MiB: it
            decides how many (at most ``buffer_size``) are kept. Frames repeated by frame stacking are
            stored once (``segments.describe()`` reports the use). Vector observations ignore it.
        record_frames: Keep clips that humans can watch (:class:`~prefwrap.HumanOracle`, export).
            ``"state"``: keep each step's simulator state (MuJoCo ``qpos``, classic control
            ``state``) and re-render only the segments that become queries, in a private env
            rebuilt from the registered id (no ``render_mode`` needed; training envs never render).
            ``"render"``: call ``render()`` every step (envs made with ``render_mode="rgb_array"``;
            the way for other envs, or for a custom render wrapper on the training envs). ``True``
            picks ``"state"`` where possible, else ``"render"``.
        frame_capacity: With ``frame_capture == "render"``, keep frames for only the newest this many
            segments (states are small: they are kept for every buffered segment).
        device: Torch device of the reward model.

    Example:
        >>> from stable_baselines3 import PPO
        >>> from stable_baselines3.common.env_util import make_vec_env
        >>> from prefwrap import PreferenceCallback, PreferenceRewardWrapper, SyntheticOracle
        >>> venv = PreferenceRewardWrapper(make_vec_env("Pendulum-v1", n_envs=2))
        >>> callback = PreferenceCallback(venv, oracle=SyntheticOracle(), total_labels=20)
        >>> _ = PPO("MlpPolicy", venv, n_steps=256).learn(1024, callback=callback)
    """

    learned_reward: LearnedReward
    segments: SegmentBuffer
    _training: bool

    def __new__(cls, env: Any, *args: Any, **kwargs: Any) -> PreferenceRewardWrapper:
        if cls is PreferenceRewardWrapper:
            if isinstance(env, VecEnv):
                cls = VecPreferenceRewardWrapper
            elif isinstance(env, gym.Env):
                cls = EnvPreferenceRewardWrapper
            else:
                raise TypeError(
                    "PreferenceRewardWrapper needs a gymnasium.Env or an SB3 VecEnv, got "
                    f"{type(env).__name__}: build one with gymnasium.make(...) or make_vec_env(...)."
                )
        return object.__new__(cls)

    def _setup_recording(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        n_envs: int,
        dt: float | None,
        reward_model: LearnedReward | str | os.PathLike | None,
        segment_length: int | None,
        buffer_size: int,
        n_members: int,
        hidden_sizes: tuple[int, ...],
        use_actions: bool,
        reward_std: float | None,
        record_frames: bool | str,
        frame_capacity: int,
        device: str,
        segment_memory_mb: float = 1024.0,
        frame_stack: int = 1,
        make_state_renderer: Callable[[], StateRenderer | None] = lambda: None,
    ) -> None:
        if isinstance(reward_model, LearnedReward):
            self.learned_reward = reward_model
        elif reward_model is not None:
            self.learned_reward = LearnedReward.load(reward_model, observation_space, action_space, device)
        else:
            self.learned_reward = LearnedReward(
                observation_space,
                action_space,
                n_members=n_members,
                hidden_sizes=hidden_sizes,
                use_actions=use_actions,
                reward_std=reward_std,
                device=device,
            )
        encoder = self.learned_reward.encoder
        self.segment_length = segment_length or default_segment_length(observation_space, dt)
        if encoder.image_observations:
            from prefwrap.cnn_reward_model import image_channels_first

            self.segments = ImageSegmentBuffer(
                n_envs,
                self.segment_length,
                encoder.observation_shape,
                encoder.action_dim,
                channels_first=image_channels_first(observation_space),
                frame_stack=frame_stack,
                memory_mb=segment_memory_mb,
                max_segments=buffer_size,
                frame_capacity=frame_capacity,
            )
            # the observations are the frames: render the env's own view per step, build no renderer
            state_renderer = _state_renderer(record_frames, lambda: None)
        else:
            state_renderer = _state_renderer(record_frames, make_state_renderer)
            self.segments = SegmentBuffer(
                n_envs,
                self.segment_length,
                encoder.observation_shape,
                np.float32,
                encoder.action_dim,
                capacity=buffer_size,
                frame_capacity=buffer_size if state_renderer else frame_capacity,
                clip_renderer=state_renderer.render if state_renderer else None,
            )
        self.record_frames = bool(record_frames)
        self.state_renderer = state_renderer
        self._training = True
        self.num_timesteps = 0
        self.episode_true_returns: deque[float] = deque(maxlen=100)
        self.episode_learned_returns: deque[float] = deque(maxlen=100)
        self._true_return = np.zeros(n_envs)
        self._learned_return = np.zeros(n_envs)
        self._episode_length = np.zeros(n_envs, dtype=np.int64)
        self._check_finite_observations = not encoder.image_observations

    def _record_step(
        self,
        observations: Any,
        actions: Any,
        true_rewards: np.ndarray,
        dones: np.ndarray,
        frames: np.ndarray | None,
    ) -> tuple[np.ndarray, list[dict[str, float] | None]]:
        """Learned rewards ``(n_envs,)`` for one vector step and per-env finished-episode summaries."""
        encoder = self.learned_reward.encoder
        dones = np.asarray(dones, dtype=bool)
        obs_features = encoder.observations(observations)
        action_features = encoder.actions(actions)
        if self._check_finite_observations and not np.isfinite(obs_features).all():
            raise ValueError(
                "the env returned a non-finite observation (NaN or inf): fix the env, or clip/sanitise "
                "observations with a gymnasium observation wrapper before PreferenceRewardWrapper."
            )
        if not np.isfinite(true_rewards).all():
            raise ValueError(
                f"the env returned a non-finite reward {true_rewards}: the true reward feeds synthetic "
                "labels and evaluation: fix the env, or replace NaN with a finite value in a reward wrapper."
            )
        learned = self.learned_reward.predict_features(obs_features, action_features)
        if not np.isfinite(learned).all():
            raise FloatingPointError(
                "the learned reward is not finite: the reward model diverged. Lower the fitter's "
                "learning_rate or check the observations for extreme values."
            )
        if self.training:
            self.num_timesteps += len(learned)
            self.segments.add(obs_features, action_features, true_rewards, dones, self.num_timesteps, frames)
        return learned, self._track_episodes(true_rewards, learned, dones)

    def _track_episodes(
        self, true_rewards: np.ndarray, learned: np.ndarray, dones: np.ndarray
    ) -> list[dict[str, float] | None]:
        self._true_return += true_rewards
        self._learned_return += learned
        self._episode_length += 1
        finished: list[dict[str, float] | None] = [None] * len(dones)
        if not dones.any():  # the common case on the hot path
            return finished
        for env in np.flatnonzero(dones):
            summary = {
                "true_return": float(self._true_return[env]),
                "learned_return": float(self._learned_return[env]),
                "length": int(self._episode_length[env]),
            }
            finished[env] = summary
            self.episode_true_returns.append(summary["true_return"])
            self.episode_learned_returns.append(summary["learned_return"])
        self._true_return[dones] = 0.0
        self._learned_return[dones] = 0.0
        self._episode_length[dones] = 0
        return finished

    @property
    def frame_capture(self) -> str | None:
        """How clips are kept: ``"state"`` (re-rendered on demand), ``"render"`` (every step) or None."""
        if not self.record_frames:
            return None
        return "state" if self.state_renderer is not None else "render"

    @property
    def training(self) -> bool:
        """Record segments while True; set False to evaluate without recording."""
        return self._training

    @training.setter
    def training(self, value: bool) -> None:
        if value and not self._training:
            self.segments.discard_partial()  # episodes may have ended unseen while paused
        self._training = value

    def _start_episodes(self) -> None:
        """After a reset: no segment or episode summary continues across it."""
        self.segments.discard_partial()
        self._true_return[:] = 0.0
        self._learned_return[:] = 0.0
        self._episode_length[:] = 0

    def save_reward_model(self, path: str | os.PathLike) -> None:
        """Save the learned reward so it can wrap new envs (``reward_model=path``) without labels."""
        self.learned_reward.save(path)


class VecPreferenceRewardWrapper(PreferenceRewardWrapper, VecEnvWrapper):
    """:class:`PreferenceRewardWrapper` for SB3 vector envs (built by ``PreferenceRewardWrapper(venv)``)."""

    def __init__(
        self,
        env: VecEnv,
        reward_model: LearnedReward | str | os.PathLike | None = None,
        *,
        segment_length: int | None = None,
        buffer_size: int = 10_000,
        n_members: int = 3,
        hidden_sizes: tuple[int, ...] = (64, 64),
        use_actions: bool = True,
        reward_std: float | None = None,
        record_frames: bool | str = False,
        frame_capacity: int = 128,
        device: str = "cpu",
        segment_memory_mb: float = 1024.0,
    ) -> None:
        VecEnvWrapper.__init__(self, env)
        self.metadata = dict(env.metadata)  # VecEnvWrapper keeps only render_modes; keep render_fps too
        self._setup_recording(
            env.observation_space,
            env.action_space,
            env.num_envs,
            _vec_env_dt(env) if segment_length is None else None,
            reward_model,
            segment_length,
            buffer_size,
            n_members,
            hidden_sizes,
            use_actions,
            reward_std,
            record_frames,
            frame_capacity,
            device,
            segment_memory_mb=segment_memory_mb,
            frame_stack=frame_stack_of(env),
            make_state_renderer=lambda: StateRenderer.for_vec_env(env),
        )
        self._last_obs: Any = None
        self._actions: np.ndarray | None = None
        self._frames: np.ndarray | None = None

    def reset(self) -> Any:
        self._last_obs = self.venv.reset()
        self._start_episodes()
        return self._last_obs

    def step_async(self, actions: np.ndarray) -> None:
        if self._last_obs is None:
            raise RuntimeError("call reset() before step(): the wrapper needs the first observation")
        self._actions = actions
        self._frames = self._clip_data() if self.record_frames and self.training else None
        self.venv.step_async(actions)

    def step_wait(self) -> VecEnvStepReturn:
        observations, true_rewards, dones, infos = self.venv.step_wait()
        learned, finished = self._record_step(
            self._last_obs, self._actions, np.asarray(true_rewards, dtype=np.float32), dones, self._frames
        )
        for info, reward, summary in zip(
            infos, np.asarray(true_rewards, np.float64).tolist(), finished, strict=True
        ):
            info["true_reward"] = reward
            if summary is not None:
                info["pref_episode"] = summary
        self._last_obs = observations
        return observations, learned, dones, infos

    def _clip_data(self) -> np.ndarray:
        if self.state_renderer is not None:
            return self.state_renderer.capture_vec(self.venv)
        frames = self.venv.get_images()
        if any(frame is None for frame in frames):
            raise RuntimeError(
                "record_frames renders every step here (record_frames='render', or envs that cannot be "
                "re-rendered from their state), which needs envs that render to arrays: create them with "
                'render_mode="rgb_array" (make_vec_env(..., env_kwargs={"render_mode": "rgb_array"})).'
            )
        return np.stack(frames).astype(np.uint8, copy=False)


class EnvPreferenceRewardWrapper(PreferenceRewardWrapper, gym.Wrapper):
    """:class:`PreferenceRewardWrapper` for one ``gymnasium.Env`` (built by ``PreferenceRewardWrapper(env)``).

    Segments are recorded as the env is stepped, by SB3 or by any hand-written loop; feed them to a
    :class:`~prefwrap.learner.PreferenceLearner` (or :class:`~prefwrap.PreferenceCallback` under SB3).
    """

    def __init__(
        self,
        env: gym.Env,
        reward_model: LearnedReward | str | os.PathLike | None = None,
        *,
        segment_length: int | None = None,
        buffer_size: int = 10_000,
        n_members: int = 3,
        hidden_sizes: tuple[int, ...] = (64, 64),
        use_actions: bool = True,
        reward_std: float | None = None,
        record_frames: bool | str = False,
        frame_capacity: int = 128,
        device: str = "cpu",
        segment_memory_mb: float = 1024.0,
    ) -> None:
        gym.Wrapper.__init__(self, env)
        self._setup_recording(
            env.observation_space,
            env.action_space,
            1,
            getattr(env.unwrapped, "dt", None),
            reward_model,
            segment_length,
            buffer_size,
            n_members,
            hidden_sizes,
            use_actions,
            reward_std,
            record_frames,
            frame_capacity,
            device,
            segment_memory_mb=segment_memory_mb,
            frame_stack=frame_stack_of(env),
            make_state_renderer=lambda: StateRenderer.for_env(env),
        )
        self._last_obs: Any = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        observation, info = self.env.reset(seed=seed, options=options)
        self._last_obs = observation
        self._start_episodes()
        return observation, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        if self._last_obs is None:
            raise RuntimeError("call reset() before step(): the wrapper needs the first observation")
        frames = self._clip_data() if self.record_frames and self.training else None
        observation, reward, terminated, truncated, info = self.env.step(action)
        learned, finished = self._record_step(
            add_batch_axis(self.observation_space, self._last_obs),
            add_batch_axis(self.action_space, action),
            np.array([reward], dtype=np.float32),
            np.array([terminated or truncated]),
            frames,
        )
        info["true_reward"] = float(reward)
        if finished[0] is not None:
            info["pref_episode"] = finished[0]
        self._last_obs = observation
        return observation, float(learned[0]), terminated, truncated, info

    def _clip_data(self) -> np.ndarray:
        if self.state_renderer is not None:
            return self.state_renderer.capture(self.env)
        frame = self.env.render()
        if not isinstance(frame, np.ndarray):
            raise RuntimeError(
                "record_frames renders every step here (record_frames='render', or an env that cannot be "
                "re-rendered from its state), which needs an env that renders frames: "
                'gymnasium.make(env_id, render_mode="rgb_array")'
            )
        return frame[None].astype(np.uint8, copy=False)


def _state_renderer(
    record_frames: bool | str, make: Callable[[], StateRenderer | None]
) -> StateRenderer | None:
    """The renderer that ``record_frames`` asks for (``None``: no frames, or render every step)."""
    if record_frames not in (False, True, "state", "render"):
        raise ValueError(f"record_frames must be True, False, 'state' or 'render', got {record_frames!r}")
    if record_frames in (False, "render"):
        return None
    renderer = make()
    if renderer is None and record_frames == "state":
        raise ValueError(
            "record_frames='state': this env cannot be re-rendered from its state (only MuJoCo and "
            "classic-control envs made from a registered id can): use record_frames='render' on envs "
            'created with render_mode="rgb_array".'
        )
    return renderer


def _vec_env_dt(venv: VecEnv) -> float | None:
    """The sub-envs' time step, if they have one (``has_attr`` first: a failed ``get_attr`` kills a
    SubprocVecEnv worker)."""
    if not venv.has_attr("dt"):
        return None
    try:
        return float(venv.get_attr("dt", indices=[0])[0])
    except (TypeError, ValueError):
        return None
