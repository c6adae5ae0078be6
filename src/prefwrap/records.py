"""Plain data records shared by the wrapper, the oracles, the store and the learner.

A :class:`Segment` is a fixed-length piece of one episode; a :class:`Query` asks which of two
segments is better; a :class:`Preference` is the answer. Arrays stay numpy so that oracles and
stores need no torch.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


class Preference(enum.Enum):
    """An oracle's answer to a query.

    ``LEFT``/``RIGHT``: that segment is better; ``EQUAL``: equally good (a 0.5 target);
    ``SKIP``: the labeler cannot tell, the query is dropped from training.
    """

    LEFT = "left"
    RIGHT = "right"
    EQUAL = "equal"
    SKIP = "skip"

    @property
    def target(self) -> float | None:
        """Probability that the left segment is preferred, or ``None`` for a skipped query."""
        return _TARGETS[self]


_TARGETS = {Preference.LEFT: 1.0, Preference.RIGHT: 0.0, Preference.EQUAL: 0.5, Preference.SKIP: None}


@dataclass(frozen=True, eq=False)
class Segment:
    """A piece of one episode, never spanning an episode boundary.

    Attributes:
        segment_id: Unique id within a run (stable across resumes).
        observations: Reward-model inputs, shape ``(H, *obs_shape)``; flattened float32 features for
            vector/Dict/Tuple observations, uint8 images for image observations.
        actions: Action features (Box actions flattened and clipped, discrete ones one-hot),
            shape ``(H, action_dim)``, float32.
        true_rewards: The environment's reward, shape ``(H,)``, float32.
        length: Number of valid steps; steps ``length:`` are padding: an episode shorter than ``H``,
            or, when ``terminated``, the absorbing state the episode ended in.
        frames: Optional rendered frames for human labelers, shape ``(H, height, width, 3)``, uint8.
        env_index: Which sub-environment produced it.
        timestep: Global training timestep at which the segment ended.
        terminated: The episode terminated (not truncated) at the segment's last valid step: its
            ``H - length`` padding steps are spent in the absorbing state, worth 0 true reward and a
            learned constant to the reward model (Kostrikov et al. 2019, "Discriminator-Actor-Critic").
    """

    segment_id: int
    observations: np.ndarray
    actions: np.ndarray
    true_rewards: np.ndarray
    length: int
    frames: np.ndarray | None = None
    env_index: int = 0
    timestep: int = 0
    terminated: bool = False

    @property
    def horizon(self) -> int:
        """Padded length ``H`` of the segment's arrays."""
        return int(self.true_rewards.shape[0])

    @property
    def absorbing_steps(self) -> int:
        """Padding steps spent in the absorbing state (``H - length`` if terminated, else 0)."""
        return self.horizon - self.length if self.terminated else 0

    @property
    def true_return(self) -> float:
        """Sum of the true reward over the valid steps."""
        return float(self.true_rewards[: self.length].sum())


@dataclass(frozen=True, eq=False)
class Query:
    """A pair of segments to compare; ``query_id`` is unique within a run."""

    query_id: int
    left: Segment
    right: Segment


@dataclass(frozen=True)
class Label:
    """A stored answer: which query, what was answered, and by whom."""

    query_id: int
    left_id: int
    right_id: int
    preference: Preference
    labeler: str = "unknown"
    created_at: float = field(default=0.0)
