"""Demonstrations as preferences: "a demonstration's segment is better than the policy's".

Ibarz et al. (2018, "Reward learning from human preferences and demonstrations in Atari") add
automatically generated comparisons in which a clip of an expert demonstration is preferred to a clip
of the agent, so that the reward model starts informed before (and while) people label. prefwrap does
the same, weighted below a person's label and limited in number, because the comparison is only
right while the agent is worse than the demonstrator (see ``docs/concepts.md#demonstrations``).

**File format** (``.npz``, read with ``np.load(..., allow_pickle=False)``: never unpickled), either

- one array pair per episode: ``obs_0``, ``acts_0``, ``obs_1``, ``acts_1``, ... (and optionally
  ``rews_0``, ...), ``obs_i`` of shape ``(T_i, *observation_shape)`` and ``acts_i`` of shape
  ``(T_i, *action_shape)``, as the env returns and takes them (:func:`save_demonstrations` writes it); or
- flat arrays ``observations (N, *observation_shape)``, ``actions (N, *action_shape)``, optional
  ``rewards (N,)`` and ``episode_starts (N,)`` (bool, True at each episode's first step; without it
  the file is one episode), the layout of SB3's rollout buffers.

Observations are the env's own (a Box, Discrete or MultiBinary space; a Dict space cannot be stored
this way). SB3's ``save_replay_buffer`` files are pickles, and imitation's rollouts carry pickled
``infos``: neither is read, convert them to the flat layout above.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from prefwrap.encoding import InputEncoder
from prefwrap.records import Preference, Query, Segment
from prefwrap.reward.fitting import segment_returns
from prefwrap.reward.learned import PREDICTION_CHUNK_STEPS, LearnedReward, step_chunks
from prefwrap.segment_buffer import valid_step_mask
from prefwrap.selection import buffer_member_returns

if TYPE_CHECKING:
    from prefwrap.segment_buffer import SegmentBuffer
    from prefwrap.store import PreferenceStore
    from prefwrap.wrapper import PreferenceRewardWrapper

__all__ = [
    "DEMO_LABELER",
    "DemonstrationPreferences",
    "Trajectory",
    "load_demonstrations",
    "save_demonstrations",
]

DEMO_POLICY_WINDOW = 256
"""Demonstration preferences compare with one of the newest this many policy segments."""
DEMO_FIRST_ROUND_MAX = 1000
"""The first round pairs at most this many demonstration segments (a random subset of more): a fit on
1,000 labels takes about a second on a CPU (docs/benchmarks-results.md, refit time)."""
DEMO_LABELER = "demonstration"
"""The ``labeler`` of demonstration preferences in the store: not counted in the label budget."""


@dataclass(frozen=True)
class Trajectory:
    """One demonstrated episode.

    Attributes:
        observations: ``(T, *observation_shape)`` observations as the env returns them.
        actions: ``(T, *action_shape)`` actions taken in them.
        rewards: ``(T,)`` float rewards, or ``None`` when the file has none (stored as 0).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray | None = None


def load_demonstrations(path: str | os.PathLike[str]) -> list[Trajectory]:
    """Read demonstrations from an ``.npz`` file in either documented layout, without pickle.

    Raises:
        ValueError: The file holds neither layout, an episode's arrays disagree in length or are
            empty, or an array holds Python objects (it would need unpickling).
        OSError: The file cannot be read.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except ValueError as error:
        raise ValueError(f"{path}: not a plain .npz of numeric arrays (never unpickled): {error}") from error
    if {"observations", "actions"} <= arrays.keys():
        observations, actions = arrays["observations"], arrays["actions"]
        starts = arrays.get("episode_starts", np.zeros(len(observations), dtype=bool)).astype(bool)
        bounds = [0, *[int(i) for i in np.flatnonzero(starts) if i > 0], len(observations)]
        rewards = arrays.get("rewards")
        episodes = [
            (observations[a:b], actions[a:b], None if rewards is None else rewards[a:b])
            for a, b in itertools.pairwise(bounds)
        ]
    else:
        count = 0
        while f"obs_{count}" in arrays and f"acts_{count}" in arrays:
            count += 1
        if count == 0:
            raise ValueError(
                f"{path}: expected obs_0, acts_0, obs_1, ... or observations/actions[/episode_starts] "
                f"arrays, found {sorted(arrays)} (docs/concepts.md#demonstrations)"
            )
        episodes = [(arrays[f"obs_{i}"], arrays[f"acts_{i}"], arrays.get(f"rews_{i}")) for i in range(count)]
    trajectories = []
    for i, (observations, actions, rewards) in enumerate(episodes):
        lengths = {len(observations), len(actions)} | (set() if rewards is None else {len(rewards)})
        if len(lengths) != 1 or not len(observations):
            raise ValueError(
                f"{path}: episode {i} has arrays of lengths {sorted(lengths)}; need one length >= 1"
            )
        trajectories.append(Trajectory(observations, actions, rewards))
    return trajectories


def save_demonstrations(path: str | os.PathLike[str], trajectories: Sequence[Trajectory]) -> None:
    """Write trajectories as ``obs_i``/``acts_i``/``rews_i`` arrays of a compressed ``.npz``."""
    arrays = {}
    for i, trajectory in enumerate(trajectories):
        arrays[f"obs_{i}"] = np.asarray(trajectory.observations)
        arrays[f"acts_{i}"] = np.asarray(trajectory.actions)
        if trajectory.rewards is not None:
            arrays[f"rews_{i}"] = np.asarray(trajectory.rewards, dtype=np.float32)
    np.savez_compressed(path, **arrays)


def demonstration_segments(
    trajectories: Sequence[Trajectory], encoder: InputEncoder, segment_length: int, first_segment_id: int
) -> list[Segment]:
    """Cut demonstrations into segments of ``segment_length`` steps, as the reward model sees them.

    Each episode gives consecutive segments; a remainder shorter than a segment is dropped (its
    return would not be comparable with a full segment's), unless the episode is shorter than one
    segment, which becomes one padded segment. Demonstrated episodes count as truncated, never
    terminated (no absorbing steps). Segments get ids from ``first_segment_id`` on and
    ``env_index=-1``.

    Raises:
        ValueError: No segment results (no episode at all).
    """
    segments = []
    for trajectory in trajectories:
        observations = encoder.observations(trajectory.observations)
        actions = encoder.actions(trajectory.actions)
        n = len(observations)
        rewards = (
            np.zeros(n, np.float32) if trajectory.rewards is None else trajectory.rewards.astype(np.float32)
        )
        starts = range(0, n - segment_length + 1, segment_length) if n >= segment_length else [0]
        for start in starts:
            length = min(segment_length, n - start)
            window = slice(start, start + length)
            pad = [(0, segment_length - length)]
            segments.append(
                Segment(
                    segment_id=first_segment_id + len(segments),
                    observations=np.pad(observations[window], pad + [(0, 0)] * (observations.ndim - 1)),
                    actions=np.pad(actions[window], [*pad, (0, 0)]),
                    true_rewards=np.pad(rewards[window], pad),
                    length=length,
                    env_index=-1,
                )
            )
    if not segments:
        raise ValueError("the demonstrations hold no episode")
    return segments


class DemonstrationPreferences:
    """Pairs "demonstration segment ≻ policy segment" to add to the labels, limited as documented.

    The first round pairs **every** demonstration segment (up to :data:`DEMO_FIRST_ROUND_MAX`) once
    with a policy segment: the policy is then the initial one, so the comparison is as sure as any
    label, and the reward model's first fit already knows what the demonstrator does.
    Each later round adds ``pairs_per_round`` pairs with the newest policy segments, but only with
    those whose learned return is still below the demonstrations' mean: once the policy does as well
    by the reward model's own account, "the demonstration is better" is no longer known to be true
    and is not claimed (``docs/concepts.md#demonstrations``).

    Args:
        segments: The demonstrations' segments (:func:`demonstration_segments`).
        weight: Loss weight of one such pair relative to an oracle's label, in ``(0, 1]``.
        pairs_per_round: Pairs made at each query round after the first.
        seed: Seed of the choice of segments.

    Raises:
        ValueError: ``weight`` outside ``(0, 1]``, ``pairs_per_round < 0`` or no segments.
    """

    def __init__(
        self, segments: Sequence[Segment], weight: float, pairs_per_round: int, seed: int | None = None
    ) -> None:
        if not 0 < weight <= 1:
            raise ValueError(f"demo_weight must be in (0, 1], got {weight}")
        if pairs_per_round < 0:
            raise ValueError(f"demo_pairs_per_round must be >= 0, got {pairs_per_round}")
        if not segments:
            raise ValueError("no demonstration segments")
        self.segments = list(segments)
        self.weight = float(weight)
        self.pairs_per_round = pairs_per_round
        self._rng = np.random.default_rng(seed)

    @classmethod
    def for_wrapper(
        cls,
        wrapper: PreferenceRewardWrapper,
        source: str | os.PathLike[str] | Sequence[Trajectory],
        weight: float,
        pairs_per_round: int,
        seed: int | None = None,
    ) -> DemonstrationPreferences:
        """Load and cut demonstrations for ``wrapper``'s reward model; their segment ids are taken
        from the wrapper's segment buffer (so they never collide with recorded ones).

        Raises:
            ValueError: As :func:`load_demonstrations` and the class.
            OSError: The file cannot be read.
        """
        trajectories = load_demonstrations(source) if isinstance(source, (str, os.PathLike)) else source
        buffer = wrapper.segments
        segments = demonstration_segments(
            trajectories, wrapper.learned_reward.encoder, buffer.segment_length, buffer.next_segment_id
        )
        buffer.next_segment_id += len(segments)
        return cls(segments, weight, pairs_per_round, seed)

    def state_dict(self) -> dict[str, object]:
        """The generator's state (a resumed run pairs what the uninterrupted run would)."""
        return dict(self._rng.bit_generator.state)

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore :meth:`state_dict`."""
        self._rng.bit_generator.state = state

    def add_pairs(
        self,
        store: PreferenceStore,
        buffer: SegmentBuffer,
        first_query_id: int,
        reward: LearnedReward,
        first_round: bool,
    ) -> list[Query]:
        """Store this round's answered pairs against policy segments of ``buffer``; return them.

        Args:
            store: Where the queries and their ``LEFT`` answers (labeler :data:`DEMO_LABELER`) are
                written, in one transaction, so no labeling process ever sees them pending.
            buffer: The policy's recorded segments.
            first_query_id: Id of the first query made.
            reward: The current reward model, whose returns limit the later rounds.
            first_round: No demonstration pair is stored yet: pair every demonstration segment.
        """
        if buffer.size == 0:
            return []
        recent = buffer.newest_rows(DEMO_POLICY_WINDOW)
        if first_round:
            count = min(len(self.segments), DEMO_FIRST_ROUND_MAX)
            demos = (
                np.arange(count)
                if count == len(self.segments)
                else self._rng.choice(len(self.segments), size=count, replace=False)
            )
            rows = self._rng.choice(recent, size=count, replace=len(recent) < count)
        else:
            if not self.pairs_per_round:
                return []
            rows = self._rng.choice(recent, size=min(self.pairs_per_round, len(recent)), replace=False)
            demos = self._rng.integers(0, len(self.segments), size=len(rows))
            if reward.fitted:
                below = self._policy_below_demonstrations(reward, buffer, rows)
                rows, demos = rows[below], demos[below]
        queries = [
            Query(first_query_id + i, self.segments[demo], buffer.segment(int(row)))
            for i, (demo, row) in enumerate(zip(demos, rows, strict=True))
        ]
        store.add_answered_queries(queries, [Preference.LEFT] * len(queries), DEMO_LABELER)
        return queries

    def _policy_below_demonstrations(
        self, reward: LearnedReward, buffer: SegmentBuffer, rows: np.ndarray
    ) -> np.ndarray:
        """``(len(rows),)`` bool: the ensemble-mean learned return of each policy segment is below the
        demonstration segments' mean."""
        policy = buffer_member_returns(reward, buffer, rows).mean(0).numpy()
        demonstrated = self._member_returns(reward).mean().item()
        return policy < demonstrated

    @torch.no_grad()
    def _member_returns(self, reward: LearnedReward) -> torch.Tensor:
        """``(E, S)``: each member's learned return of each demonstration segment, scored in chunks
        (image demonstrations are large)."""
        reward.model.eval()
        horizon = self.segments[0].horizon
        returns = []
        for chunk in step_chunks(len(self.segments), PREDICTION_CHUNK_STEPS // horizon):
            segments = self.segments[chunk]
            mask = valid_step_mask(np.array([s.length for s in segments]), horizon)
            returns.append(
                segment_returns(
                    reward.model,
                    torch.as_tensor(np.stack([s.observations for s in segments]), device=reward.device),
                    torch.as_tensor(np.stack([s.actions for s in segments]), device=reward.device),
                    torch.as_tensor(mask, dtype=torch.float32, device=reward.device),
                    torch.zeros(len(segments), device=reward.device),  # demonstrations never terminate
                ).cpu()
            )
        return torch.cat(returns, dim=1)
