"""Cut the stream of vector-env steps into fixed-length segments and keep the most recent ones.

Each sub-env keeps a rolling window of its last ``H`` steps. A segment is emitted every ``H`` steps of
an episode, and once more when the episode ends: the episode's last ``H`` steps (overlapping the
previous segment) or, for an episode shorter than ``H``, the whole episode padded with a mask. So a
segment never spans two episodes and the end of every episode (where terminations happen) is seen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from gymnasium.wrappers import FrameStackObservation
from stable_baselines3.common.vec_env import VecEnvWrapper, VecFrameStack

from prefwrap.records import Segment


class SegmentBuffer:
    """A bounded FIFO of segments, filled step by step from all sub-envs at once.

    Args:
        n_envs: Number of sub-environments.
        segment_length: Steps per segment ``H``.
        observation_shape: Shape of one observation as the reward model sees it.
        observation_dtype: ``float32`` features or ``uint8`` images.
        action_dim: Length of one action feature vector.
        capacity: Segments kept; the oldest are dropped first.
        first_segment_id: Id of the next segment (continues ids of a resumed run).
        frame_capacity: Rendered frames are kept for the newest this many segments only (frames are
            large and only a human labeler needs them).
        clip_renderer: Turns the render states of a segment's valid steps ``(length, state_size)``
            into frames ``(length, height, width, 3)``. When given, :meth:`add` takes per-step render
            states instead of frames and a segment is rendered only when it is read
            (:class:`~prefwrap.frame_capture.StateRenderer`).
    """

    def __init__(
        self,
        n_envs: int,
        segment_length: int,
        observation_shape: tuple[int, ...],
        observation_dtype: np.dtype | type,
        action_dim: int,
        capacity: int = 10_000,
        first_segment_id: int = 0,
        frame_capacity: int = 128,
        clip_renderer: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if segment_length < 1:
            raise ValueError(f"segment_length must be >= 1, got {segment_length}")
        if capacity < 2:
            raise ValueError(f"capacity must hold at least 2 segments, got {capacity}")
        self.n_envs = n_envs
        self.segment_length = segment_length
        self.capacity = capacity
        self.next_segment_id = first_segment_id
        h = segment_length
        self._allocate_observations(observation_shape, observation_dtype)
        self.actions = np.zeros((capacity, h, action_dim), dtype=np.float32)
        self.true_rewards = np.zeros((capacity, h), dtype=np.float32)
        self.lengths = np.zeros(capacity, dtype=np.int64)
        self.segment_ids = np.full(capacity, -1, dtype=np.int64)
        self.env_indices = np.zeros(capacity, dtype=np.int64)
        self.timesteps = np.zeros(capacity, dtype=np.int64)
        self.frame_capacity = frame_capacity
        self.clip_renderer = clip_renderer
        self._frames: np.ndarray | None = None
        self._frame_ids = np.full(frame_capacity, -1, dtype=np.int64)
        self._frame_cursor = 0
        self.size = 0
        self._cursor = 0
        self._rows = np.arange(n_envs)
        self._window_actions = np.zeros((n_envs, h, action_dim), dtype=np.float32)
        self._window_rewards = np.zeros((n_envs, h), dtype=np.float32)
        self._window_frames: np.ndarray | None = None
        self._episode_steps = np.zeros(n_envs, dtype=np.int64)

    def add(
        self,
        observations: np.ndarray,
        actions: np.ndarray,
        true_rewards: np.ndarray,
        dones: np.ndarray,
        timestep: int,
        frames: np.ndarray | None = None,
    ) -> None:
        """Record one vector step (``observations`` are those the actions were taken in).

        Args:
            observations: ``(n_envs, *observation_shape)``.
            actions: ``(n_envs, action_dim)`` action features.
            true_rewards: ``(n_envs,)``.
            dones: ``(n_envs,)`` episode ended at this step (terminated or truncated).
            timestep: Global timestep, stored with emitted segments.
            frames: Optional ``(n_envs, height, width, 3)`` uint8 renders for human labelers, or
                ``(n_envs, state_size)`` render states with a ``clip_renderer``.
        """
        dones = np.asarray(dones, dtype=bool)
        column = self._episode_steps % self.segment_length
        self._write_observations(observations, column)
        self._window_actions[self._rows, column] = actions
        self._window_rewards[self._rows, column] = true_rewards
        if frames is not None:
            if self._window_frames is None:
                shape = (self.segment_length, *frames.shape[1:])
                self._window_frames = np.zeros((self.n_envs, *shape), frames.dtype)
                self._frames = np.zeros((self.frame_capacity, *shape), frames.dtype)
            self._window_frames[self._rows, column] = frames
        self._episode_steps += 1
        # every H steps of an episode, and at its end (column counts steps since the window started)
        emit = (column == self.segment_length - 1) | dones
        if emit.any():  # most steps emit nothing
            for env in np.flatnonzero(emit):
                self._emit(int(env), timestep)
            self._episode_steps[dones] = 0

    def discard_partial(self) -> None:
        """Forget the steps not yet emitted, e.g. after an env reset mid-episode, so that the next
        segment starts with the new episode."""
        self._episode_steps[:] = 0

    def _emit(self, env: int, timestep: int) -> None:
        """Copy env's last ``min(episode_steps, H)`` steps, in time order, into the FIFO."""
        h = self.segment_length
        length = int(min(self._episode_steps[env], h))
        order = (np.arange(self._episode_steps[env] - length, self._episode_steps[env])) % h
        row = self._cursor
        self._emit_observations(row, env, order)
        self.actions[row, :length] = self._window_actions[env, order]
        self.true_rewards[row, :length] = self._window_rewards[env, order]
        if length < h:
            self.actions[row, length:] = 0
            self.true_rewards[row, length:] = 0
        if self._frames is not None and self._window_frames is not None:
            slot = self._frame_cursor
            self._frames[slot, :length] = self._window_frames[env, order]
            self._frames[slot, length:] = 0
            self._frame_ids[slot] = self.next_segment_id
            self._frame_cursor = (slot + 1) % self.frame_capacity
        self.lengths[row] = length
        self.segment_ids[row] = self.next_segment_id
        self.env_indices[row] = env
        self.timesteps[row] = timestep
        self.next_segment_id += 1
        self._cursor = (self._cursor + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def _allocate_observations(self, observation_shape: tuple[int, ...], dtype: np.dtype | type) -> None:
        h = self.segment_length
        self.observations = np.zeros((self.capacity, h, *observation_shape), dtype=dtype)
        self._window_obs = np.zeros((self.n_envs, h, *observation_shape), dtype=dtype)

    def _write_observations(self, observations: np.ndarray, column: np.ndarray) -> None:
        """Put each env's observation ``(n_envs, *obs)`` in its rolling window at ``column``."""
        self._window_obs[self._rows, column] = observations

    def _emit_observations(self, row: int, env: int, order: np.ndarray) -> None:
        """Copy env's window steps ``order`` (time order) into ``row``, zero-padding the rest."""
        length = len(order)
        self.observations[row, :length] = self._window_obs[env, order]
        if length < self.segment_length:
            self.observations[row, length:] = 0

    def observations_of(self, rows: np.ndarray) -> np.ndarray:
        """Observations ``(len(rows), H, *obs_shape)`` of the segments stored at ``rows`` (a copy)."""
        return self.observations[rows]

    def segment(self, row: int) -> Segment:
        """A copy of the segment stored at ``row`` (``0 <= row < size``)."""
        return Segment(
            segment_id=int(self.segment_ids[row]),
            observations=self.observations_of(np.array([row]))[0],
            actions=self.actions[row].copy(),
            true_rewards=self.true_rewards[row].copy(),
            length=int(self.lengths[row]),
            frames=self._frames_of(row),
            env_index=int(self.env_indices[row]),
            timestep=int(self.timesteps[row]),
        )

    def _frames_of(self, row: int) -> np.ndarray | None:
        if self._frames is None:
            return None
        slots = np.flatnonzero(self._frame_ids == self.segment_ids[row])
        if not len(slots):
            return None
        if self.clip_renderer is None:
            return self._frames[slots[0]].copy()
        length = int(self.lengths[row])
        rendered = self.clip_renderer(self._frames[slots[0], :length])
        frames = np.zeros((self.segment_length, *rendered.shape[1:]), np.uint8)
        frames[:length] = rendered
        return frames

    def rows_with_frames(self) -> np.ndarray:
        """Rows of stored segments whose frames are still kept."""
        rows = self.newest_rows()
        return rows[np.isin(self.segment_ids[rows], self._frame_ids)]

    def valid_steps(self, max_segments: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Observation and action features of the valid steps of the newest ``max_segments`` segments."""
        rows = self.newest_rows(max_segments)
        mask = np.arange(self.segment_length)[None, :] < self.lengths[rows, None]
        return self.observations_of(rows)[mask], self.actions[rows][mask]

    def newest_rows(self, count: int | None = None) -> np.ndarray:
        """Rows of the newest ``count`` stored segments (all when ``None``), newest last."""
        count = self.size if count is None else min(count, self.size)
        return (self._cursor - count + np.arange(count)) % self.capacity


class ImageSegmentBuffer(SegmentBuffer):
    """A :class:`SegmentBuffer` for uint8 image observations that stores every frame once.

    With frame stacking (``VecFrameStack``), consecutive observations share all but one frame: the
    buffer keeps a segment as its first step's full stack plus one new frame per later step
    (``H + n_stack - 1`` frames instead of ``H * n_stack``) and rebuilds the stacks on read, exactly.
    Every step is checked against the frames already held (a cheap comparison), so a stream that is
    not the frame stack it was declared to be cannot be silently corrupted. The number of segments
    kept is the largest that fits ``memory_mb`` (at most ``max_segments``).

    Args:
        n_envs: Number of sub-environments.
        segment_length: Steps per segment ``H``.
        observation_shape: ``(C, H, W)`` or ``(H, W, C)``; ``C = frame_stack * channels per frame``.
        action_dim: Length of one action feature vector.
        channels_first: Layout of ``observation_shape`` (frames are stacked along the channel axis).
        frame_stack: Frames per observation (1: no stacking); see :func:`frame_stack_of`.
        memory_mb: Budget for the stored segments (observations, actions, rewards) and the per-env
            windows, in MiB.
        max_segments: Upper bound on the segments kept, whatever the budget.
        first_segment_id: Id of the next segment.
        frame_capacity: Rendered frames (for human labelers, outside the budget) are kept for the newest
            this many segments.

    Example:
        >>> buffer = ImageSegmentBuffer(8, 25, (84, 84, 4), 6, channels_first=False, frame_stack=4)
        >>> round(buffer.naive_bytes_per_step / buffer.bytes_per_step, 2)  # vs a copy of every stack
        3.56
    """

    def __init__(
        self,
        n_envs: int,
        segment_length: int,
        observation_shape: tuple[int, ...],
        action_dim: int,
        *,
        channels_first: bool,
        frame_stack: int = 1,
        memory_mb: float = 1024.0,
        max_segments: int = 10_000,
        first_segment_id: int = 0,
        frame_capacity: int = 128,
    ) -> None:
        if len(observation_shape) != 3:
            raise ValueError(f"image observations must have rank 3, got shape {observation_shape}")
        channel_axis = 0 if channels_first else 2
        n_channels = observation_shape[channel_axis]
        if frame_stack < 1 or n_channels % frame_stack:
            raise ValueError(
                f"frame_stack={frame_stack} does not divide the {n_channels} channels of observations "
                f"{observation_shape}: pass the number of stacked frames (VecFrameStack's n_stack), or 1."
            )
        self.observation_shape = tuple(observation_shape)
        self.channels_first = channels_first
        self.frame_stack = frame_stack
        frame_shape = list(observation_shape)
        frame_shape[channel_axis] = n_channels // frame_stack
        self.frame_shape = tuple(frame_shape)
        self.frames_per_segment = segment_length + frame_stack - 1
        frame_bytes = int(np.prod(self.frame_shape))
        self._segment_frame_bytes = self.frames_per_segment * frame_bytes
        self.bytes_per_segment = self._segment_frame_bytes + segment_length * (action_dim + 1) * 4 + 4 * 8
        self.memory_mb = memory_mb
        window_bytes = n_envs * self.frames_per_segment * frame_bytes  # per-env windows of newest frames
        fits = int((memory_mb * 2**20 - window_bytes) // self.bytes_per_segment)
        if fits < 2:
            need = (2 * self.bytes_per_segment + window_bytes) / 2**20
            raise ValueError(
                f"a segment memory budget of {memory_mb:g} MiB (segment_memory_mb) holds {max(fits, 0)} "
                f"segment(s) of {segment_length} steps of "
                f"{observation_shape} images ({self.bytes_per_segment / 2**20:.2f} MiB each); at least 2 "
                f"are needed: raise segment_memory_mb to {need:.2f} or more, or shorten segment_length."
            )
        if max_segments < 2:
            raise ValueError(f"max_segments must be at least 2, got {max_segments}")
        super().__init__(
            n_envs,
            segment_length,
            self.observation_shape,
            np.uint8,
            action_dim,
            capacity=min(fits, max_segments),
            first_segment_id=first_segment_id,
            frame_capacity=frame_capacity,
        )
        self._mismatched = np.zeros(n_envs, dtype=bool)
        self.stack_restarts = 0

    @property
    def bytes_per_step(self) -> float:
        """Bytes this buffer holds per recorded step (observations, actions, rewards, bookkeeping)."""
        return self.bytes_per_segment / self.segment_length

    @property
    def naive_bytes_per_step(self) -> float:
        """Bytes per step of a buffer that copies every (stacked) observation."""
        stacks = self.segment_length * int(np.prod(self.observation_shape))
        return (self.bytes_per_segment - self._segment_frame_bytes + stacks) / self.segment_length

    @property
    def nbytes(self) -> int:
        """Bytes allocated for stored segments and the per-env windows (rendered frames excluded)."""
        arrays = (self._frames_store, self._window_frames_store, self.actions, self.true_rewards)
        return sum(a.nbytes for a in arrays) + 4 * self.lengths.nbytes

    def describe(self) -> str:
        """One line on capacity and memory, e.g. for a training log."""
        return (
            f"image segments: {self.capacity} x {self.segment_length} steps of {self.observation_shape} "
            f"(frame stack {self.frame_stack}) in {self.nbytes / 2**20:.0f} MiB of a "
            f"{self.memory_mb:g} MiB budget, {self.bytes_per_step:.0f} B/step "
            f"({self.naive_bytes_per_step / self.bytes_per_step:.2f}x less than copying each stack)"
        )

    def _allocate_observations(self, observation_shape: tuple[int, ...], dtype: np.dtype | type) -> None:
        self._ring = self.frames_per_segment  # per-env window of the newest frames, by virtual index
        self._frames_store = np.zeros((self.capacity, self.frames_per_segment, *self.frame_shape), np.uint8)
        self._window_frames_store = np.zeros((self.n_envs, self._ring, *self.frame_shape), np.uint8)
        # Virtual frame index: step t of an episode shows frames t .. t + frame_stack - 1.
        self._stack_offsets = np.arange(self.frame_stack)

    @property
    def observations(self) -> _StackedObservations:  # type: ignore[override]
        """Read-only view: ``buffer.observations[rows]`` rebuilds ``(len(rows), H, *obs_shape)``."""
        return _StackedObservations(self)

    def _split(self, stacked: np.ndarray) -> np.ndarray:
        """Stacked images ``(..., *obs_shape)`` -> ``(..., frame_stack, *frame_shape)``, oldest frame
        first (a view of a contiguous input, so writing to it fills ``stacked``)."""
        lead = stacked.shape[:-3]
        if self.channels_first:
            return stacked.reshape(*lead, self.frame_stack, *self.frame_shape)
        h, w, c = self.frame_shape
        return np.moveaxis(stacked.reshape(*lead, h, w, self.frame_stack, c), -2, -4)

    def add(
        self,
        observations: np.ndarray,
        actions: np.ndarray,
        true_rewards: np.ndarray,
        dones: np.ndarray,
        timestep: int,
        frames: np.ndarray | None = None,
    ) -> None:
        """Record one vector step; ``observations`` are uint8 ``(n_envs, *observation_shape)``."""
        observations = np.asarray(observations)
        if observations.dtype != np.uint8:
            raise TypeError(
                f"image observations must be uint8, got {observations.dtype}: keep frames in [0, 255] "
                "(remove observation scaling or normalisation below the preference wrapper)."
            )
        if observations.shape != (self.n_envs, *self.observation_shape):
            raise ValueError(
                f"expected image observations {(self.n_envs, *self.observation_shape)}, "
                f"got {observations.shape}"
            )
        if self.frame_stack > 1:
            self._restart_broken_stacks(self._split(observations))
        super().add(observations, actions, true_rewards, dones, timestep, frames)

    def _restart_broken_stacks(self, stacks: np.ndarray) -> None:
        """Start a new window for envs whose older frames differ from those held.

        That happens once after steps went unrecorded (``training`` was off); twice in a row means the
        observations are not a frame stack.
        """
        envs = np.flatnonzero(self._episode_steps > 0)
        if len(envs) == 0:
            return
        held = (self._episode_steps[envs, None] + self._stack_offsets[:-1]) % self._ring
        same = (self._window_frames_store[envs[:, None], held] == stacks[envs, :-1]).reshape(len(envs), -1)
        broken = envs[~same.all(axis=1)]
        repeated = broken[self._mismatched[broken]]
        if len(repeated):
            raise ValueError(
                f"observations of env {int(repeated[0])} are not a stack of {self.frame_stack} frames "
                f"along the channel axis (each step should repeat the previous step's newest "
                f"{self.frame_stack - 1} frames): wrap with PreferenceRewardWrapper directly outside "
                "VecFrameStack (VecTransposeImage may sit between them)."
            )
        self._mismatched[:] = False
        self._mismatched[broken] = True
        self.stack_restarts += len(broken)
        self._episode_steps[broken] = 0

    def _write_observations(self, observations: np.ndarray, column: np.ndarray) -> None:
        stacks = self._split(observations)
        steps = self._episode_steps
        new = np.flatnonzero(steps == 0)
        if len(new):  # an episode's first step: keep its whole stack
            self._window_frames_store[new[:, None], self._stack_offsets] = stacks[new]
        going = np.flatnonzero(steps > 0)
        if len(going):  # later steps: only the newest frame is new
            slot = (steps[going] + self.frame_stack - 1) % self._ring
            self._window_frames_store[going, slot] = stacks[going, -1]

    def _emit_observations(self, row: int, env: int, order: np.ndarray) -> None:
        length = len(order)
        end = int(self._episode_steps[env])  # steps end - length .. end - 1
        virtual = np.arange(end - length, end + self.frame_stack - 1) % self._ring
        self._frames_store[row, : len(virtual)] = self._window_frames_store[env, virtual]
        self._frames_store[row, len(virtual) :] = 0

    def rows_with_frames(self) -> np.ndarray:
        """Rows a person can watch: all of them when no frames are rendered (the labeling window then
        shows the image observations), else those whose rendered frames are still kept."""
        return self.newest_rows() if self._frames is None else super().rows_with_frames()

    def observations_of(self, rows: np.ndarray) -> np.ndarray:
        """Rebuilt stacked observations ``(len(rows), H, *observation_shape)`` of ``rows``, uint8.

        Padding steps (past a segment's length) are zeros, as in the vector buffer.
        """
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.empty((len(rows), self.segment_length, *self.observation_shape), np.uint8)
        parts = self._split(out)  # (rows, H, frame_stack, *frame_shape), a view of out
        steps = np.arange(self.segment_length)
        for k in range(self.frame_stack):  # frame k of step t is stored frame t + k
            parts[:, :, k] = self._frames_store[rows[:, None], steps[None, :] + k]
        out[steps[None, :] >= self.lengths[rows, None]] = 0
        return out


class _StackedObservations:
    """``buffer.observations[index]`` for an :class:`ImageSegmentBuffer`, rebuilt on demand.

    The first index picks rows (an int, slice, array or boolean mask over ``capacity``); further
    indices apply to the rebuilt ``(H, *observation_shape)`` arrays. Read-only.
    """

    def __init__(self, buffer: ImageSegmentBuffer) -> None:
        self._buffer = buffer
        self.shape = (buffer.capacity, buffer.segment_length, *buffer.observation_shape)
        self.dtype = np.dtype(np.uint8)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: Any) -> np.ndarray:
        first, rest = (index[0], index[1:]) if isinstance(index, tuple) else (index, ())
        rows = np.arange(self._buffer.capacity)[first]
        stacked = self._buffer.observations_of(rows).reshape(*np.shape(rows), *self.shape[1:])
        return stacked[(slice(None),) * np.ndim(rows) + tuple(rest)] if rest else stacked


def frame_stack_of(env: Any) -> int:
    """Frames stacked per observation by an SB3 ``VecFrameStack`` or a gymnasium
    ``FrameStackObservation`` inside ``env`` (searched from the outside in); 1 if there is none."""
    current = env
    for _ in range(64):  # wrapper chains are short; a cycle must not hang
        if isinstance(current, VecFrameStack):
            return int(current.stacked_obs.n_stack)
        if isinstance(current, FrameStackObservation):
            return int(current.stack_size)
        inner = current.venv if isinstance(current, VecEnvWrapper) else getattr(current, "env", None)
        if inner is None or inner is current:
            break
        current = inner
    return 1
