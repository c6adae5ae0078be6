"""The labelled queries the reward model is fitted on, with an online bootstrap per ensemble member.

A label is an answered query of ``K`` segments (a pair, ``K = 2``, or a ranking, ``K`` up to 6),
kept as the rows of its segments and the answer's group of each position (its ranks).

Each new label draws, for every member, a Poisson(1) count of how often that member trains on it
(the online bootstrap of Oza & Russell). A count of 0, which happens with probability 1/e, makes
the label part of that member's held-out validation set: so every label trains some members, and
each member is validated on its own 1/e of the labels, as in the paper, without withholding labels
from the ensemble as a whole. Counts are fixed at insertion, so the split is stable across refits.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from prefwrap.records import Answer, Preference, Query, Ranking, Segment
from prefwrap.reward.loss import ordering_targets
from prefwrap.segment_buffer import valid_step_mask

_PAIR_RANKS = {Preference.LEFT: (0, 1), Preference.RIGHT: (1, 0), Preference.EQUAL: (0, 0)}


@dataclasses.dataclass(frozen=True)
class SizeGroup:
    """The labels of one query size ``K``.

    Attributes:
        rows: ``(L_K, K)`` int64 rows of :meth:`PreferenceDataset.segment_tensors`, in display order.
        ranks: ``(L_K, K)`` int64 group of each position in the answer (0 = best).
        targets: ``(L_K, K!)`` float32 target weights over orderings (the tie rule of
            :func:`~prefwrap.reward.loss.ordering_targets`).
    """

    rows: torch.Tensor
    ranks: torch.Tensor
    targets: torch.Tensor


@dataclasses.dataclass(frozen=True)
class LabelTensors:
    """Every label of a :class:`PreferenceDataset`, grouped by query size.

    Attributes:
        sizes: ``(L,)`` int64 ``K`` of each label, in arrival order.
        index: ``(L,)`` int64 position of each label within ``groups[K]``.
        counts: ``(L, E)`` int64 bootstrap counts (0: held out for that member).
        weights: ``(L,)`` float32 loss weight (1 for an oracle's label; less for a demonstration's).
        groups: ``{K: SizeGroup}`` for every size present.
    """

    sizes: torch.Tensor
    index: torch.Tensor
    counts: torch.Tensor
    weights: torch.Tensor
    groups: dict[int, SizeGroup]


class PreferenceDataset:
    """Labelled queries (pairs and rankings) as tensors, growing as labels arrive.

    Skipped answers are not stored (they carry no preference).

    Args:
        n_members: Ensemble size (one bootstrap count per member and label).
        max_labels: Keep only the most recent labels (the paper's Atari setting keeps 3,000);
            ``None`` keeps all.
        seed: Seed of the bootstrap counts.
    """

    def __init__(self, n_members: int, max_labels: int | None = None, seed: int | None = None) -> None:
        if max_labels is not None and max_labels < 1:
            raise ValueError(f"max_labels must be >= 1 or None, got {max_labels}")
        self.n_members = n_members
        self.max_labels = max_labels
        self._rng = np.random.default_rng(seed)
        self._row_of_segment: dict[int, int] = {}
        self._segments: list[Segment] = []
        self._rows: list[tuple[int, ...]] = []
        self._ranks: list[tuple[int, ...]] = []
        self._weights: list[float] = []
        self._counts: list[np.ndarray] = []
        self._tensors: dict[str, torch.Tensor] | None = None
        self._labels: LabelTensors | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def state_dict(self) -> dict[str, Any]:
        """Bootstrap counts ``(L, E)`` and the generator that draws new ones (plain types).

        The labels themselves come back from the store on resume, in the same order."""
        return {"counts": [c.tolist() for c in self._counts], "rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Give the labels already re-read from the store their saved bootstrap counts.

        Raises:
            ValueError: ``state`` holds counts for more labels than the dataset has.
        """
        counts = state["counts"]
        if len(counts) > len(self._counts):
            raise ValueError(f"the saved state has {len(counts)} labels, the dataset {len(self._counts)}")
        self._counts[: len(counts)] = [np.asarray(c, dtype=self._counts[0].dtype) for c in counts]
        self._rng.bit_generator.state = state["rng"]
        self._labels = None

    def add(self, query: Query, answer: Answer, weight: float = 1.0) -> None:
        """Add one answered query (a skipped one is ignored).

        Args:
            query: The query of ``K`` segments.
            answer: A :class:`Preference` for a pair, a :class:`Ranking` of the ``K`` segments, or
                ``SKIP``.
            weight: Loss weight of this label (e.g. below 1 for a demonstration's).

        Raises:
            ValueError: The answer does not fit the query (see
                :func:`~prefwrap.records.normalize_answer`), or ``weight`` is not positive.
        """
        if answer is Preference.SKIP:
            return
        if not weight > 0:
            raise ValueError(f"weight must be > 0, got {weight}")
        if isinstance(answer, Ranking):
            if answer.size != query.size:
                raise ValueError(f"the ranking orders {answer.size} segments, but the query has {query.size}")
            ranks = tuple(answer.ranks().tolist())
        elif query.size == 2:
            ranks = _PAIR_RANKS[answer]
        else:
            raise ValueError(
                f"{answer} answers a pair, but query {query.query_id} ranks {query.size} segments"
            )
        self._rows.append(tuple(self._row(segment) for segment in query.segments))
        self._ranks.append(ranks)
        self._weights.append(float(weight))
        self._counts.append(self._rng.poisson(1.0, size=self.n_members))
        self._labels = None
        if self.max_labels is not None and len(self._rows) > self.max_labels:
            drop = len(self._rows) - self.max_labels
            for column in (self._rows, self._ranks, self._weights, self._counts):
                del column[:drop]
            if len(self._segments) > 2 * len(self._rows) + 64:
                self._forget_unused_segments()

    def _forget_unused_segments(self) -> None:
        """Drop segments no kept label uses (after ``max_labels`` dropped old labels): image segments
        are large, and without this they would pile up over a long run."""
        used = sorted({row for rows in self._rows for row in rows})
        if len(used) == len(self._segments):
            return
        new_row = {old: new for new, old in enumerate(used)}
        self._segments = [self._segments[old] for old in used]
        self._row_of_segment = {segment.segment_id: row for row, segment in enumerate(self._segments)}
        self._rows = [tuple(new_row[row] for row in rows) for rows in self._rows]
        self._tensors = None

    def _row(self, segment: Segment) -> int:
        row = self._row_of_segment.get(segment.segment_id)
        if row is None:
            row = len(self._segments)
            self._row_of_segment[segment.segment_id] = row
            self._segments.append(segment)
            self._tensors = None
        return row

    def segment_tensors(self) -> dict[str, torch.Tensor]:
        """All stored segments: ``observations (S, H, *obs)``, ``actions (S, H, D_a)``, ``mask (S, H)``
        (1.0 on valid steps) and ``absorbing (S,)`` (absorbing steps after a termination), float32."""
        if self._tensors is None:
            observations = np.stack([s.observations for s in self._segments])
            actions = np.stack([s.actions for s in self._segments])
            self._tensors = {
                "observations": torch.as_tensor(observations),
                "actions": torch.as_tensor(actions),
                "mask": torch.as_tensor(
                    valid_step_mask(np.array([s.length for s in self._segments]), observations.shape[1]),
                    dtype=torch.float32,
                ),
                "absorbing": torch.tensor([s.absorbing_steps for s in self._segments], dtype=torch.float32),
            }
            # Keep one copy of the arrays (stacked image segments are large): the stored segments
            # become views of the tensors, without the rendered frames only a labeler needs.
            self._segments = [
                dataclasses.replace(s, observations=observations[i], actions=actions[i], frames=None)
                for i, s in enumerate(self._segments)
            ]
        return self._tensors

    def valid_steps(self) -> tuple[np.ndarray, np.ndarray]:
        """Observation and action features of every valid step of the labelled segments."""
        tensors = self.segment_tensors()
        valid = tensors["mask"].numpy() > 0
        return tensors["observations"].numpy()[valid], tensors["actions"].numpy()[valid]

    def labels(self) -> LabelTensors:
        """Every label as tensors, grouped by query size (see :class:`LabelTensors`).

        Raises:
            ValueError: The dataset is empty.
        """
        if not self._rows:
            raise ValueError("the dataset holds no labels yet")
        if self._labels is None:
            sizes = np.array([len(rows) for rows in self._rows])
            index = np.zeros(len(sizes), dtype=np.int64)
            groups = {}
            for k in sorted(set(sizes.tolist())):
                members = np.flatnonzero(sizes == k)
                index[members] = np.arange(len(members))
                ranks = torch.tensor([self._ranks[i] for i in members], dtype=torch.long)
                rows = torch.tensor([self._rows[i] for i in members], dtype=torch.long)
                groups[k] = SizeGroup(rows, ranks, ordering_targets(ranks))
            self._labels = LabelTensors(
                torch.as_tensor(sizes, dtype=torch.long),
                torch.as_tensor(index),
                torch.as_tensor(np.stack(self._counts)),
                torch.tensor(self._weights, dtype=torch.float32),
                groups,
            )
        return self._labels

    def pairs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The pair labels only: ``(left_rows (P,), right_rows (P,), targets (P,), counts (P, E))``.

        Rows index :meth:`segment_tensors`; ``targets`` is P[left] (1, 0 or 0.5); ``counts[p, m]`` is
        how often member ``m`` trains on pair ``p`` per epoch (0: held out for that member's
        validation). Rankings (``K > 2``) are in :meth:`labels`.
        """
        kept = [i for i, rows in enumerate(self._rows) if len(rows) == 2]
        if not kept:
            empty = torch.zeros(0, dtype=torch.long)
            return empty, empty, torch.zeros(0), torch.zeros(0, self.n_members, dtype=torch.long)
        targets = {(0, 1): 1.0, (1, 0): 0.0, (0, 0): 0.5}
        return (
            torch.tensor([self._rows[i][0] for i in kept]),
            torch.tensor([self._rows[i][1] for i in kept]),
            torch.tensor([targets[self._ranks[i]] for i in kept], dtype=torch.float32),
            torch.as_tensor(np.stack([self._counts[i] for i in kept])),
        )
