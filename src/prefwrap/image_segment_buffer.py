"""Segments of uint8 image observations, each frame stored once however many stacks share it.

A frame-stacked Atari stream repeats every frame ``n_stack`` times across consecutive observations;
:class:`ImageSegmentBuffer` keeps a segment as its first stack plus one new frame per later step.
"""

from __future__ import annotations

import numpy as np

from prefwrap.segment_buffer import SegmentBuffer


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
        frame_stack: Frames per observation (1: no stacking); see :func:`~prefwrap.env_utils.frame_stack_of`.
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
        terminated: np.ndarray | None = None,
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
        super().add(observations, actions, true_rewards, dones, timestep, frames, terminated)

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

    def _write_observations(self, observations: np.ndarray, slot: int) -> None:
        # frames have their own per-env window (by virtual frame index), not the step ring's slot
        stacks = self._split(observations)
        steps = self._episode_steps
        new = np.flatnonzero(steps == 0)
        if len(new):  # an episode's first step: keep its whole stack
            self._window_frames_store[new[:, None], self._stack_offsets] = stacks[new]
        going = np.flatnonzero(steps > 0)
        if len(going):  # later steps: only the newest frame is new
            newest = (steps[going] + self.frame_stack - 1) % self._ring
            self._window_frames_store[going, newest] = stacks[going, -1]

    def _emit_observations(self, row: int, env: int, slots: np.ndarray) -> None:
        length = len(slots)
        end = int(self._episode_steps[env])  # steps end - length .. end - 1
        virtual = np.arange(end - length, end + self.frame_stack - 1) % self._ring
        self._frames_store[row, : len(virtual)] = self._window_frames_store[env, virtual]
        self._frames_store[row, len(virtual) :] = 0

    def _observation_arrays(self) -> dict[str, np.ndarray]:
        """Each segment's frames ``(H + frame_stack - 1, *frame_shape)``, in place of its stacks."""
        return {"frames_store": self._frames_store}

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
