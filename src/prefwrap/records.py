"""Plain data records shared by the wrapper, the oracles, the store and the learner.

A :class:`Segment` is a fixed-length piece of one episode; a :class:`Query` asks an oracle to order
``K`` segments (``K = 2``: which of two is better); the answer is a :class:`Preference` for a pair (or
a skip, for any ``K``) or a :class:`Ranking` of the ``K`` segments, ties allowed. Arrays stay numpy so
that oracles and stores need no torch.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

MAX_QUERY_SIZE = 6  # K! orderings enter the ranking loss: 720 at K = 6


class Preference(enum.Enum):
    """An oracle's answer to a query of two segments (``SKIP`` answers a query of any size).

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


@dataclass(frozen=True)
class Ranking:
    """An ordering of a query's ``K`` segments, best first, with ties.

    ``groups`` lists positions into :attr:`Query.segments`: ``((2,), (0, 3), (1,))`` says segment 2 is
    best, 0 and 3 are equally good, 1 is worst. Every position ``0..K-1`` appears exactly once;
    positions within a group are kept sorted, so equal rankings compare equal. For ``K = 2`` a ranking
    is the same answer as a :class:`Preference` (:meth:`as_preference`, :meth:`from_preference`).

    Args:
        groups: Groups of positions, best group first; lists or tuples of integers.

    Raises:
        ValueError: A group is empty, a position is negative or repeated, or the positions are not
            ``0..K-1``.
        TypeError: A position is not an integer.

    Example:
        >>> Ranking([[2], [3, 0], [1]])
        Ranking(groups=((2,), (0, 3), (1,)))
        >>> Ranking.parse("[[1], [0]]").as_preference()
        <Preference.RIGHT: 'right'>
    """

    groups: tuple[tuple[int, ...], ...]

    value = "ranked"  # the ``labels.preference`` column of a stored ranking (docs/store.md)

    def __init__(self, groups: Iterable[Iterable[int]]) -> None:
        normalised = tuple(tuple(sorted(operator.index(p) for p in group)) for group in groups)
        positions = sorted(p for group in normalised for p in group)
        if not normalised or any(not group for group in normalised):
            raise ValueError(f"a ranking needs non-empty groups of positions, got {normalised!r}")
        if positions != list(range(len(positions))):
            raise ValueError(
                f"a ranking must list every position 0..K-1 exactly once, got {[list(g) for g in normalised]}"
            )
        object.__setattr__(self, "groups", normalised)

    @property
    def size(self) -> int:
        """``K``, the number of segments ranked."""
        return sum(len(group) for group in self.groups)

    def ranks(self) -> np.ndarray:
        """Group index of every position (0 = best), shape ``(K,)``, int64."""
        ranks = np.empty(self.size, dtype=np.int64)
        for rank, group in enumerate(self.groups):
            ranks[list(group)] = rank
        return ranks

    def to_json(self) -> str:
        """Compact JSON, as stored in ``labels.ranking``: ``"[[2],[0,3],[1]]"``."""
        return json.dumps([list(group) for group in self.groups], separators=(",", ":"))

    @classmethod
    def parse(cls, value: str | Sequence[Sequence[int]]) -> Ranking:
        """A ranking from JSON (``"[[2],[0,3],[1]]"``), the text form ``"2 > 0 = 3 > 1"``, or lists.

        Raises:
            ValueError: The text is neither form, or the ranking is invalid (see the class).
            TypeError: A position is not an integer.
        """
        if not isinstance(value, str):
            return cls(value)
        text = value.strip()
        if text.startswith("["):
            try:
                groups = json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"ranking {value!r} is not valid JSON: {error.msg}") from error
            if not isinstance(groups, list) or not all(isinstance(g, list) for g in groups):
                raise ValueError(f"a JSON ranking is a list of lists of positions, got {value!r}")
            if any(isinstance(p, bool) or not isinstance(p, int) for g in groups for p in g):
                raise ValueError(f"ranking positions must be integers, got {value!r}")
            return cls(groups)
        try:
            return cls([[int(p) for p in group.split("=")] for group in text.split(">")])
        except ValueError as error:
            message = f"ranking {value!r} is neither JSON nor like '2 > 0 = 3 > 1': {error}"
            raise ValueError(message) from error

    @classmethod
    def from_preference(cls, preference: Preference) -> Ranking:
        """The ranking of a pair that means ``preference`` (``LEFT`` = ``[[0], [1]]``).

        Raises:
            ValueError: ``preference`` is ``SKIP`` (no ordering).
        """
        if preference is Preference.SKIP:
            raise ValueError("SKIP is no ordering: it has no ranking")
        return cls({"left": [[0], [1]], "right": [[1], [0]], "equal": [[0, 1]]}[preference.value])

    def as_preference(self) -> Preference:
        """The :class:`Preference` this ranking of two segments means.

        Raises:
            ValueError: The ranking is not of two segments.
        """
        if self.size != 2:
            raise ValueError(f"only a ranking of 2 segments is a Preference, this one ranks {self.size}")
        if len(self.groups) == 1:
            return Preference.EQUAL
        return Preference.LEFT if self.groups[0] == (0,) else Preference.RIGHT


Answer = Preference | Ranking
"""What an oracle answers: a :class:`Preference` (pairs, or ``SKIP`` for any size) or a :class:`Ranking`."""


def normalize_answer(answer: Answer, query_size: int) -> Answer:
    """The canonical form of an answer to a query of ``query_size`` segments.

    Pairs are stored and trained on as :class:`Preference` (a 2-segment :class:`Ranking` becomes one),
    larger queries as :class:`Ranking`; ``SKIP`` answers any query.

    Raises:
        ValueError: ``LEFT``/``RIGHT``/``EQUAL`` for a query of more than two segments, or a ranking of
            another number of segments than the query holds.
        TypeError: ``answer`` is neither a Preference nor a Ranking.
    """
    if isinstance(answer, Preference):
        if answer is not Preference.SKIP and query_size != 2:
            raise ValueError(
                f"{answer.value!r} answers a pair, but the query ranks {query_size} segments: answer with a "
                "Ranking (e.g. Ranking([[2], [0, 3], [1]])) or Preference.SKIP"
            )
        return answer
    if isinstance(answer, Ranking):
        if answer.size != query_size:
            raise ValueError(f"the ranking orders {answer.size} segments, but the query has {query_size}")
        return answer.as_preference() if query_size == 2 else answer
    raise TypeError(f"an answer is a Preference or a Ranking, got {type(answer).__name__}")


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
        env_index: Which sub-environment produced it (``-1``: a demonstration).
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
    """Segments to compare; ``query_id`` is unique within a run.

    A pair is ``Query(query_id, left, right)``; a query of ``K > 2`` segments keeps its first two in
    ``left``/``right`` and the rest in ``more`` (build one with :meth:`of`). Positions in a
    :class:`Ranking` index :attr:`segments`.
    """

    query_id: int
    left: Segment
    right: Segment
    more: tuple[Segment, ...] = ()

    @classmethod
    def of(cls, query_id: int, segments: Sequence[Segment]) -> Query:
        """A query of ``segments`` (2 to :data:`MAX_QUERY_SIZE` of them), in display order.

        Raises:
            ValueError: Fewer than 2 or more than :data:`MAX_QUERY_SIZE` segments.
        """
        if not 2 <= len(segments) <= MAX_QUERY_SIZE:
            raise ValueError(f"a query holds 2 to {MAX_QUERY_SIZE} segments, got {len(segments)}")
        return cls(query_id, segments[0], segments[1], tuple(segments[2:]))

    @property
    def segments(self) -> tuple[Segment, ...]:
        """All ``K`` segments in display order: ``(left, right, *more)``."""
        return (self.left, self.right, *self.more)

    @property
    def size(self) -> int:
        """``K``, the number of segments."""
        return 2 + len(self.more)

    def without_frames(self) -> Query:
        """This query with its segments' rendered frames dropped (the store keeps them)."""
        if all(segment.frames is None for segment in self.segments):
            return self
        return Query.of(self.query_id, [dataclasses.replace(s, frames=None) for s in self.segments])


@dataclass(frozen=True)
class Label:
    """A stored answer: which query, what was answered, and by whom.

    ``preference`` is a :class:`Preference` for pairs and skips, a :class:`Ranking` for the answer to
    a query of more than two segments; ``segment_ids`` lists all the query's segments (``left_id`` and
    ``right_id`` are its first two).
    """

    query_id: int
    left_id: int
    right_id: int
    preference: Answer
    labeler: str = "unknown"
    created_at: float = field(default=0.0)
    segment_ids: tuple[int, ...] = field(default=(), compare=False)  # the query's: follows from query_id
