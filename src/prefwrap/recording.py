"""Recording shared by both wrapper adapters: one vector step -> learned reward -> segments + episode returns.

:class:`SegmentRecording` holds what the two adapters of
:class:`~prefwrap.wrapper.PreferenceRewardWrapper` share: the learned reward, the segment buffer, the
clip capture and the per-episode true and learned returns. The adapters only translate their env API
(SB3 ``VecEnv`` or ``gymnasium.Env``) into :meth:`SegmentRecording._record_step` calls.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable

import numpy as np
from gymnasium import spaces

from prefwrap.clips.capture import StateRenderer
from prefwrap.encoding import SpaceBatch, is_image
from prefwrap.env_utils import image_channels_first
from prefwrap.image_segment_buffer import ImageSegmentBuffer
from prefwrap.reward.learned import LearnedReward
from prefwrap.segment_buffer import SegmentBuffer

SEGMENT_SECONDS = 1.5  # the paper's MuJoCo clips
DEFAULT_SEGMENT_LENGTH = 25  # the paper's Atari clips; also used when an env has no ``dt``


def default_segment_length(observation_space: spaces.Space, dt: float | None) -> int:
    """About 1.5 s of simulated time when the env has a time step ``dt`` (10-60 steps), else 25."""
    if dt is None or is_image(observation_space) or dt <= 0:
        return DEFAULT_SEGMENT_LENGTH
    return int(np.clip(round(SEGMENT_SECONDS / dt), 10, 60))


class SegmentRecording:
    """The recording state and step logic shared by the vector and single-env preference wrappers.

    Attributes:
        learned_reward: The reward model whose normalised ensemble mean replaces the env reward.
        segments: Recorded segments, ``(capacity, segment_length, ...)`` arrays (see
            :class:`~prefwrap.segment_buffer.SegmentBuffer`).
        segment_length: Steps per segment ``H``.
        record_frames: Whether clips for people are kept.
        state_renderer: Re-renders clips from captured simulator state, or ``None``.
        num_timesteps: Env steps recorded while :attr:`training` (summed over sub-envs).
        episode_true_returns: True returns of the last 100 finished episodes.
        episode_learned_returns: Learned (unnormalised-sum of normalised rewards) returns, same episodes.
    """

    learned_reward: LearnedReward
    segments: SegmentBuffer
    _training: bool

    def _setup_recording(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        *,
        n_envs: int,
        dt: float | None,
        reward_model: LearnedReward | str | os.PathLike | None,
        segment_length: int | None,
        buffer_size: int,
        n_members: int,
        hidden_sizes: tuple[int, ...],
        use_actions: bool,
        reward_std: float | None,
        uncertainty_penalty: float,
        record_frames: bool | str,
        frame_capacity: int,
        device: str,
        seed: int | None,
        segment_memory_mb: float,
        frame_stack: int,
        make_state_renderer: Callable[[], StateRenderer | None],
    ) -> None:
        """Build the reward model (or load/adopt ``reward_model``), the segment buffer and clip capture;
        the arguments are the wrapper's (see :class:`~prefwrap.wrapper.PreferenceRewardWrapper`).

        Raises:
            ValueError: ``record_frames`` is not one of True, False, ``"state"``, ``"render"``, or is
                ``"state"`` for an env that cannot be re-rendered from its state.
        """
        if isinstance(reward_model, LearnedReward):
            self.learned_reward = reward_model
        elif reward_model is not None:
            self.learned_reward = LearnedReward.load(reward_model, observation_space, action_space, device)
        else:
            options = {
                "n_members": n_members,
                "hidden_sizes": hidden_sizes,
                "use_actions": use_actions,
                "uncertainty_penalty": uncertainty_penalty,
            }
            self.learned_reward = LearnedReward(
                observation_space, action_space, reward_std=reward_std, device=device, seed=seed, **options
            )
        encoder = self.learned_reward.encoder
        self.segment_length = segment_length or default_segment_length(observation_space, dt)
        if encoder.image_observations:
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
        # episode lengths as steps since each episode's start: one counter for all envs per step
        self._steps_tracked = 0
        self._episode_start = np.zeros(n_envs, dtype=np.int64)
        self._check_finite_observations = not encoder.image_observations

    def _record_step(
        self,
        observations: SpaceBatch,
        actions: SpaceBatch,
        true_rewards: np.ndarray,
        dones: np.ndarray,
        frames: np.ndarray | None,
        terminated: np.ndarray | None,
    ) -> tuple[np.ndarray, list[dict[str, float] | None]]:
        """Learned rewards ``(n_envs,)`` for one vector step and per-env finished-episode summaries.

        ``dones`` ``(n_envs,)``: the episode ended (terminated or truncated); ``terminated``: the subset
        that terminated, ``None`` when none did.

        Raises:
            ValueError: A non-finite observation (vector observations) or true reward.
            FloatingPointError: The learned reward is not finite (the reward model diverged).
        """
        encoder = self.learned_reward.encoder
        dones = np.asarray(dones, dtype=bool)
        obs_features = encoder.observations(observations)
        action_features = encoder.actions(actions)
        if self._check_finite_observations and not _all_finite(obs_features):
            raise ValueError(
                "the env returned a non-finite observation (NaN or inf): fix the env, or clip/sanitise "
                "observations with a gymnasium observation wrapper before PreferenceRewardWrapper."
            )
        learned = self.learned_reward.predict_features(obs_features, action_features)
        # One check for both: a NaN or inf in either makes the dot product non-finite (np.vdot, unlike
        # np.dot, raises no floating-point warning); then tell them apart, the env's reward first.
        if not math.isfinite(np.vdot(true_rewards, learned)):
            _refuse_non_finite(true_rewards, learned)
        if self.training:
            self.num_timesteps += len(learned)
            self.segments.add(
                obs_features, action_features, true_rewards, dones, self.num_timesteps, frames, terminated
            )
        return learned, self._track_episodes(true_rewards, learned, dones)

    def _track_episodes(
        self, true_rewards: np.ndarray, learned: np.ndarray, dones: np.ndarray
    ) -> list[dict[str, float] | None]:
        self._true_return += true_rewards
        self._learned_return += learned
        self._steps_tracked += 1
        finished: list[dict[str, float] | None] = [None] * len(dones)
        if not np.count_nonzero(dones):  # the common case on the hot path (3x cheaper than any())
            return finished
        for env in np.flatnonzero(dones):
            summary = {
                "true_return": float(self._true_return[env]),
                "learned_return": float(self._learned_return[env]),
                "length": self._steps_tracked - int(self._episode_start[env]),
            }
            finished[env] = summary
            self.episode_true_returns.append(summary["true_return"])
            self.episode_learned_returns.append(summary["learned_return"])
        self._true_return[dones] = 0.0
        self._learned_return[dones] = 0.0
        self._episode_start[dones] = self._steps_tracked
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
        self._episode_start[:] = self._steps_tracked

    def save_reward_model(self, path: str | os.PathLike) -> None:
        """Save the learned reward so it can wrap new envs (``reward_model=path``) without labels."""
        self.learned_reward.save(path)


def _all_finite(array: np.ndarray) -> bool:
    """``np.isfinite(array).all()`` for float arrays, in half the time on the per-step sizes.

    A NaN or inf element makes the sum of squares NaN or inf (``np.vdot`` raises no floating-point
    warning, not even on overflow); finite elements whose squares overflow (above ~1e19 in float32)
    are checked again element-wise, so the answer is exact.
    """
    return math.isfinite(np.vdot(array, array)) or bool(np.isfinite(array).all())


def _refuse_non_finite(true_rewards: np.ndarray, learned: np.ndarray) -> None:
    """Raise for a non-finite true reward ``(n_envs,)``, else for a non-finite learned one; nothing
    when both are finite (their dot product overflowed).

    Raises:
        ValueError: A true reward is NaN or inf.
        FloatingPointError: A learned reward is NaN or inf (the reward model diverged).
    """
    if not np.isfinite(true_rewards).all():
        raise ValueError(
            f"the env returned a non-finite reward {true_rewards}: the true reward feeds synthetic "
            "labels and evaluation: fix the env, or replace NaN with a finite value in a reward wrapper."
        )
    if not np.isfinite(learned).all():
        raise FloatingPointError(
            "the learned reward is not finite: the reward model diverged. Lower the fitter's "
            "learning_rate or check the observations for extreme values."
        )


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
