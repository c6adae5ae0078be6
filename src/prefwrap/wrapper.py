"""PreferenceRewardWrapper: replace an env's reward with the learned reward and record segments.

One class name serves both worlds: wrapping an SB3 ``VecEnv`` gives a ``VecEnvWrapper`` (one batched
reward forward per vector step, sub-envs may live in other processes), wrapping a ``gymnasium.Env``
gives a ``gymnasium.Wrapper`` for single-env loops (CleanRL style). Both keep the true reward in
``info["true_reward"]`` and record segments for the preference learner.
"""

from __future__ import annotations

import os
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from stable_baselines3.common.env_util import is_wrapped
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from prefwrap.clips.capture import StateRenderer
from prefwrap.encoding import SpaceBatch, add_batch_axis
from prefwrap.env_utils import check_layers_below, frame_stack_of
from prefwrap.recording import SegmentRecording
from prefwrap.reward.learned import LearnedReward

HER_REFUSAL = (
    "HerReplayBuffer recomputes rewards with the env's compute_reward, i.e. the TRUE reward, and a "
    "learned reward r̂(o, a) cannot be recomputed from relabelled goals: use a plain replay buffer "
    "(the goal stays in the observation) with PreferenceRewardWrapper."
)


DEFERRED_TERMINATION = "pref_deferred_termination"
"""Info key of a termination handed to the agent as a time limit (the reward was not yet anchored)."""


class PreferenceRewardWrapper(SegmentRecording):
    """Replaces the environment reward with a learned reward r̂(o, a) fitted to preferences.

    The reward is the ensemble mean normalised to zero mean and standard deviation ``reward_std``; it
    is 0 until the first fit (never the true reward). The true reward stays in
    ``info["true_reward"]`` and every finished episode adds ``info["pref_episode"]`` with its true and
    learned returns. While ``training`` is True, steps are cut into segments (``segments``) for the
    preference learner; set it False to evaluate without recording.

    Terminations reach the agent as time limits (SB3: ``info["TimeLimit.truncated"] = True``, so it
    bootstraps from ``terminal_observation``; gymnasium: ``truncated=True``) until labels have priced
    terminating (``learned_reward.anchored``, see docs/concepts.md#termination): before that, ending
    an episode is worth neither more nor less than going on. The segments keep the real terminations,
    and such a step's info has ``info["pref_deferred_termination"] = True`` (with
    :class:`PreferenceCallback`, off-policy replay buffers get their terminations back once anchored).

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
        uncertainty_penalty: Pay the agent ``mean - β · std`` of the ensemble instead of its mean (see
            :class:`~prefwrap.reward.learned.LearnedReward`); 0 (default) keeps the mean.
        seed: Seed of the reward ensemble's initial weights; with the callback's ``seed`` (and the
            oracle's and the model's), a run repeats exactly on CPU. ``None``: torch's global generator.

    Example:
        >>> from stable_baselines3 import PPO
        >>> from stable_baselines3.common.env_util import make_vec_env
        >>> from prefwrap import PreferenceCallback, PreferenceRewardWrapper, SyntheticOracle
        >>> venv = PreferenceRewardWrapper(make_vec_env("Pendulum-v1", n_envs=2))
        >>> callback = PreferenceCallback(venv, oracle=SyntheticOracle(), total_labels=20)
        >>> _ = PPO("MlpPolicy", venv, n_steps=256).learn(1024, callback=callback)
    """

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
        uncertainty_penalty: float = 0.0,
        seed: int | None = None,
    ) -> None:
        check_layers_below(env)
        VecEnvWrapper.__init__(self, env)
        self.metadata = dict(env.metadata)  # VecEnvWrapper keeps only render_modes; keep render_fps too
        self._setup_recording(
            env.observation_space,
            env.action_space,
            n_envs=env.num_envs,
            dt=_vec_env_dt(env) if segment_length is None else None,
            reward_model=reward_model,
            segment_length=segment_length,
            buffer_size=buffer_size,
            n_members=n_members,
            hidden_sizes=hidden_sizes,
            use_actions=use_actions,
            reward_std=reward_std,
            uncertainty_penalty=uncertainty_penalty,
            record_frames=record_frames,
            frame_capacity=frame_capacity,
            device=device,
            seed=seed,
            segment_memory_mb=segment_memory_mb,
            frame_stack=frame_stack_of(env),
            make_state_renderer=lambda: StateRenderer.for_vec_env(env),
        )
        self._last_obs: SpaceBatch | None = None
        self._actions: np.ndarray | None = None
        self._frames: np.ndarray | None = None

    def env_method(
        self, method_name: str, *method_args: object, indices: VecEnvIndices = None, **method_kwargs: object
    ) -> list[object]:
        """Call a sub-env method; ``compute_reward`` is refused (it would be the TRUE reward).

        Raises:
            RuntimeError: ``method_name == "compute_reward"``: HER's reward relabelling calls it.
        """
        if method_name == "compute_reward":
            raise RuntimeError(HER_REFUSAL)
        return self.venv.env_method(method_name, *method_args, indices=indices, **method_kwargs)

    def reset(self) -> VecEnvObs:
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
        ended = np.count_nonzero(dones)  # 3x cheaper than dones.any() on a few envs
        rewards = np.asarray(true_rewards, dtype=np.float32)
        terminated = _terminations(dones, infos) if ended else None
        learned, finished = self._record_step(
            self._last_obs, self._actions, rewards, dones, self._frames, terminated
        )
        if terminated is not None and not self.learned_reward.anchored:
            for env in np.flatnonzero(terminated):
                infos[env]["TimeLimit.truncated"] = True  # SB3 bootstraps from terminal_observation
                infos[env][DEFERRED_TERMINATION] = True
        # float32 -> Python float is exact: the float64 conversion is only needed for other dtypes
        values = rewards if rewards is true_rewards else np.asarray(true_rewards, np.float64)
        for info, reward in zip(infos, values.tolist(), strict=True):
            info["true_reward"] = reward
        if ended:
            for info, summary in zip(infos, finished, strict=True):
                if summary is not None:
                    info["pref_episode"] = summary
        self._last_obs = observations
        return observations, learned, dones, infos

    def close(self) -> None:
        """Close the sub-envs and release the private clip renderer and its OpenGL context."""
        _release_renderer(self)
        super().close()

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
        uncertainty_penalty: float = 0.0,
        seed: int | None = None,
    ) -> None:
        # SB3 puts a Monitor OUTSIDE an unmonitored env it is given, where it would log the learned
        # return as rollout/ep_rew_mean: one inside makes SB3's logs and evaluate_policy report the true one.
        gym.Wrapper.__init__(self, env if is_wrapped(env, Monitor) else Monitor(env))
        self._setup_recording(
            env.observation_space,
            env.action_space,
            n_envs=1,
            dt=getattr(env.unwrapped, "dt", None),
            reward_model=reward_model,
            segment_length=segment_length,
            buffer_size=buffer_size,
            n_members=n_members,
            hidden_sizes=hidden_sizes,
            use_actions=use_actions,
            reward_std=reward_std,
            uncertainty_penalty=uncertainty_penalty,
            record_frames=record_frames,
            frame_capacity=frame_capacity,
            device=device,
            seed=seed,
            segment_memory_mb=segment_memory_mb,
            frame_stack=frame_stack_of(env),
            make_state_renderer=lambda: StateRenderer.for_env(env),
        )
        self._last_obs: object = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        observation, info = self.env.reset(seed=seed, options=options)
        self._last_obs = observation
        self._start_episodes()
        return observation, info

    def step(self, action: object) -> tuple[object, SupportsFloat, bool, bool, dict[str, Any]]:
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
            np.array([terminated]) if terminated else None,
        )
        info["true_reward"] = float(reward)
        if finished[0] is not None:
            info["pref_episode"] = finished[0]
        self._last_obs = observation
        if terminated and not self.learned_reward.anchored:
            terminated, truncated = False, True  # neutral until anchored (see the class docstring)
            info[DEFERRED_TERMINATION] = True
        return observation, float(learned[0]), terminated, truncated, info

    def close(self) -> None:
        """Close the env and release the private clip renderer and its OpenGL context."""
        _release_renderer(self)
        super().close()

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


def _release_renderer(wrapper: SegmentRecording) -> None:
    """Free the wrapper's private renderer now, not whenever the garbage collector gets to it: a
    notebook or sweep keeps building wrappers, each with an OpenGL context (see clips/capture.py)."""
    if wrapper.state_renderer is not None:
        wrapper.state_renderer.close()


def _terminations(dones: np.ndarray, infos: list[dict[str, Any]]) -> np.ndarray:
    """Which ``dones`` ``(n_envs,)`` are terminations: SB3 marks truncations ``TimeLimit.truncated``."""
    truncated = np.array([info.get("TimeLimit.truncated", False) for info in infos], dtype=bool)
    return np.asarray(dones, dtype=bool) & ~truncated


def _vec_env_dt(venv: VecEnv) -> float | None:
    """The sub-envs' time step, if they have one (``has_attr`` first: a failed ``get_attr`` kills a
    SubprocVecEnv worker)."""
    if not venv.has_attr("dt"):
        return None
    try:
        return float(venv.get_attr("dt", indices=[0])[0])
    except (TypeError, ValueError):
        return None
