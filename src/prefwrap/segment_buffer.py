"""Cut the stream of vector-env steps into fixed-length segments and keep the most recent ones.

A ring holds the last ``H`` vector steps, so every sub-env's last ``H`` steps (all sub-envs step
together). A segment is emitted every ``H`` steps of an episode, and once more when the episode ends:
the episode's last ``H`` steps (overlapping the previous segment) or, for an episode shorter than
``H``, the whole episode padded with a mask. So a segment never spans two episodes and the end of
every episode (where terminations happen) is seen.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from prefwrap.records import Segment


def evenly_spread(count: int, chosen: int) -> np.ndarray:
    """``chosen`` int64 indices into ``range(count)``, evenly spread from the first to the last."""
    return np.linspace(0, count - 1, chosen).round().astype(np.int64)


def valid_step_mask(lengths: np.ndarray, horizon: int) -> np.ndarray:
    """``(..., horizon)`` bool mask of the valid steps of segments with the given ``lengths`` ``(...)``.

    Example:
        >>> valid_step_mask(np.array([2, 3]), 4).astype(int).tolist()
        [[1, 1, 0, 0], [1, 1, 1, 0]]
    """
    return np.arange(horizon) < np.asarray(lengths)[..., None]


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
            (:class:`~prefwrap.clips.capture.StateRenderer`).
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
        self.terminated = np.zeros(capacity, dtype=bool)
        self.frame_capacity = frame_capacity
        self.clip_renderer = clip_renderer
        self._frames: np.ndarray | None = None
        self._frame_ids = np.full(frame_capacity, -1, dtype=np.int64)
        self._frame_cursor = 0
        self.size = 0
        self._cursor = 0
        # The ring of the last H vector steps, time first: a step is written with one slice per array
        # (no per-env index), and an env's last k steps are the k slots up to the newest.
        self._slot = 0  # where the next step goes
        self._ring_actions = np.zeros((h, n_envs, action_dim), dtype=np.float32)
        self._ring_rewards = np.zeros((h, n_envs), dtype=np.float32)
        self._ring_frames: np.ndarray | None = None
        self._episode_steps = np.zeros(n_envs, dtype=np.int64)
        self._steps_before_full = 0  # add() calls sure to emit nothing unless an episode ends

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
        """Record one vector step (``observations`` are those the actions were taken in).

        Args:
            observations: ``(n_envs, *observation_shape)``.
            actions: ``(n_envs, action_dim)`` action features.
            true_rewards: ``(n_envs,)``.
            dones: ``(n_envs,)`` episode ended at this step (terminated or truncated).
            timestep: Global timestep, stored with emitted segments.
            frames: Optional ``(n_envs, height, width, 3)`` uint8 renders for human labelers, or
                ``(n_envs, state_size)`` render states with a ``clip_renderer``.
            terminated: ``(n_envs,)`` the episode terminated here (a subset of ``dones``; the rest were
                truncated). A terminated episode's last segment holds the steps since the previous
                segment, padded with absorbing steps, instead of the last ``H`` steps. ``None``: no
                episode terminated.
        """
        dones = np.asarray(dones, dtype=bool)
        h, slot = self.segment_length, self._slot
        self._write_observations(observations, slot)
        self._ring_actions[slot] = actions
        self._ring_rewards[slot] = true_rewards
        if frames is not None:
            if self._ring_frames is None:
                self._ring_frames = np.zeros((h, *frames.shape), frames.dtype)
                if self._frames is None:  # else restored by load_state_dict
                    self._frames = np.zeros((self.frame_capacity, h, *frames.shape[1:]), frames.dtype)
            self._ring_frames[slot] = frames
        self._slot = (slot + 1) % h
        self._episode_steps += 1
        if self._steps_before_full > 0 and not np.count_nonzero(dones):  # most steps: nothing to emit
            self._steps_before_full -= 1
            return
        # every H steps of an episode, and at its end
        emit = (self._episode_steps % h == 0) | dones
        if emit.any():
            ended = np.zeros(self.n_envs, bool) if terminated is None else np.asarray(terminated, bool)
            for env in np.flatnonzero(emit):
                self._emit(int(env), slot, timestep, bool(ended[env] and dones[env]))
            self._episode_steps[dones] = 0
        # add() calls before the longest-running segment fills: every episode gains a step per add(),
        # and anything else only restarts counts (discard_partial, a broken frame stack), which makes
        # this an underestimate, never an overestimate.
        self._steps_before_full = h - 1 - int((self._episode_steps % h).max(initial=0))

    def discard_partial(self) -> None:
        """Forget the steps not yet emitted, e.g. after an env reset mid-episode, so that the next
        segment starts with the new episode."""
        self._episode_steps[:] = 0

    def _emit(self, env: int, newest: int, timestep: int, terminated: bool) -> None:
        """Copy env's last ``min(episode_steps, H)`` steps (the newest in ring slot ``newest``), in time
        order, into the FIFO; after a termination only the steps since the previous segment (the rest
        is the absorbing state)."""
        h = self.segment_length
        steps = int(self._episode_steps[env])
        length = (steps - 1) % h + 1 if terminated else min(steps, h)
        slots = np.arange(newest + 1 - length, newest + 1) % h
        row = self._cursor
        self._emit_observations(row, env, slots)
        self.actions[row, :length] = self._ring_actions[slots, env]
        self.true_rewards[row, :length] = self._ring_rewards[slots, env]
        if length < h:
            self.actions[row, length:] = 0
            self.true_rewards[row, length:] = 0
        if self._frames is not None and self._ring_frames is not None:
            kept = self._frame_cursor
            self._frames[kept, :length] = self._ring_frames[slots, env]
            self._frames[kept, length:] = 0
            self._frame_ids[kept] = self.next_segment_id
            self._frame_cursor = (kept + 1) % self.frame_capacity
        self.lengths[row] = length
        self.segment_ids[row] = self.next_segment_id
        self.env_indices[row] = env
        self.timesteps[row] = timestep
        self.terminated[row] = terminated
        self.next_segment_id += 1
        self._cursor = (self._cursor + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def _allocate_observations(self, observation_shape: tuple[int, ...], dtype: np.dtype | type) -> None:
        h = self.segment_length
        self.observations = np.zeros((self.capacity, h, *observation_shape), dtype=dtype)
        self._ring_obs = np.zeros((h, self.n_envs, *observation_shape), dtype=dtype)

    def _write_observations(self, observations: np.ndarray, slot: int) -> None:
        """Put the step's observations ``(n_envs, *obs)`` in ring slot ``slot``."""
        self._ring_obs[slot] = observations

    def _emit_observations(self, row: int, env: int, slots: np.ndarray) -> None:
        """Copy env's observations in ring ``slots`` (time order) into ``row``, zero-padding the rest."""
        length = len(slots)
        self.observations[row, :length] = self._ring_obs[slots, env]
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
            terminated=bool(self.terminated[row]),
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

    def valid_steps(
        self, max_segments: int | None = None, spread: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Observation and action features ``(N, *obs)``, ``(N, D_a)`` of the valid steps of the newest
        ``max_segments`` segments, or of ``spread`` of them, evenly spread, when there are more (only
        those are read: an image buffer rebuilds each segment's frame stacks)."""
        rows = self.newest_rows(max_segments)
        if spread is not None and len(rows) > spread:
            rows = rows[evenly_spread(len(rows), spread)]
        mask = valid_step_mask(self.lengths[rows], self.segment_length)
        return self.observations_of(rows)[mask], self.actions[rows][mask]

    def absorbing_steps(self, rows: np.ndarray) -> np.ndarray:
        """Absorbing padding steps ``(len(rows),)`` of the segments at ``rows`` (see :class:`Segment`)."""
        return np.where(self.terminated[rows], self.segment_length - self.lengths[rows], 0)

    def newest_rows(self, count: int | None = None) -> np.ndarray:
        """Rows of the newest ``count`` stored segments (all when ``None``), newest last."""
        count = self.size if count is None else min(count, self.size)
        return (self._cursor - count + np.arange(count)) % self.capacity

    def _observation_arrays(self) -> dict[str, np.ndarray]:
        """The arrays that hold the stored segments' observations, one row per segment."""
        return {"observations": self.observations}

    def _row_arrays(self) -> dict[str, np.ndarray]:
        """The arrays that hold the stored segments, one row (first axis) per segment."""
        return {
            **self._observation_arrays(),
            "actions": self.actions,
            "true_rewards": self.true_rewards,
            "lengths": self.lengths,
            "segment_ids": self.segment_ids,
            "env_indices": self.env_indices,
            "timesteps": self.timesteps,
            "terminated": self.terminated,
        }

    def state_dict(self) -> dict[str, np.ndarray]:
        """The stored segments, oldest first, and their kept frames: plain arrays for ``np.savez``.

        Steps not yet emitted (episodes in progress) are not included: a resumed run restarts those
        episodes (see :meth:`discard_partial`).

        Returns:
            One ``(size, ...)`` array per row array: ``observations`` ``(size, H, *obs_shape)`` (an
            image buffer's ``frames_store`` instead), ``actions`` ``(size, H, action_dim)`` float32,
            ``true_rewards`` ``(size, H)`` float32, ``lengths``, ``segment_ids``, ``env_indices``,
            ``timesteps`` ``(size,)`` int64 and ``terminated`` ``(size,)`` bool; ``next_segment_id``
            ``()`` int64; and when frames are kept, ``frames`` ``(n, H, *frame_shape)`` with their
            ``frame_ids`` ``(n,)``, oldest first.
        """
        rows = self.newest_rows()
        state = {name: array[rows] for name, array in self._row_arrays().items()}
        state["next_segment_id"] = np.array(self.next_segment_id, dtype=np.int64)
        if self._frames is not None:
            slots = (self._frame_cursor + np.arange(self.frame_capacity)) % self.frame_capacity
            slots = slots[self._frame_ids[slots] >= 0]
            state["frames"] = self._frames[slots]
            state["frame_ids"] = self._frame_ids[slots]
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Refill an empty buffer from :meth:`state_dict` (the newest ``capacity`` segments if more).

        Raises:
            ValueError: The state's arrays do not fit this buffer (another env, segment length or
                observation encoding).
        """
        n = min(len(state["segment_ids"]), self.capacity)
        for name, array in self._row_arrays().items():
            saved = np.asarray(state[name])
            if saved.shape[1:] != array.shape[1:] or saved.dtype != array.dtype:
                raise ValueError(
                    f"saved segments hold {name} of shape {saved.shape[1:]} ({saved.dtype}) per segment, "
                    f"this buffer {array.shape[1:]} ({array.dtype}): not this run's env and segment length"
                )
            array[:n] = saved[len(saved) - n :]
        self.size, self._cursor = n, n % self.capacity
        self.next_segment_id = max(self.next_segment_id, int(state["next_segment_id"]))
        if "frames" in state:
            frames = np.asarray(state["frames"])[-self.frame_capacity :]
            self._frames = np.zeros((self.frame_capacity, *frames.shape[1:]), frames.dtype)
            self._frames[: len(frames)] = frames
            self._frame_ids[:] = -1
            self._frame_ids[: len(frames)] = np.asarray(state["frame_ids"])[-self.frame_capacity :]
            self._frame_cursor = len(frames) % self.frame_capacity
