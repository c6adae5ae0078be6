"""The labelled pairs the reward model is fitted on, with an online bootstrap per ensemble member.

Each new pair draws, for every member, a Poisson(1) count of how often that member trains on it
(the online bootstrap of Oza & Russell). A count of 0, which happens with probability 1/e, makes
the pair part of that member's held-out validation set: so every label trains some members, and
each member is validated on its own 1/e of the labels, as in the paper, without withholding labels
from the ensemble as a whole. Counts are fixed at insertion, so the split is stable across refits.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from prefwrap.records import Preference, Query, Segment
from prefwrap.segment_buffer import valid_step_mask


class PreferenceDataset:
    """Labelled segment pairs as tensors, growing as labels arrive.

    Skipped answers are not stored (they carry no preference).

    Args:
        n_members: Ensemble size (one bootstrap count per member and pair).
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
        self._left: list[int] = []
        self._right: list[int] = []
        self._targets: list[float] = []
        self._counts: list[np.ndarray] = []
        self._tensors: dict[str, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self._targets)

    def add(self, query: Query, preference: Preference) -> None:
        """Add one answered query (a skipped one is ignored)."""
        target = preference.target
        if target is None:
            return
        self._left.append(self._row(query.left))
        self._right.append(self._row(query.right))
        self._targets.append(target)
        self._counts.append(self._rng.poisson(1.0, size=self.n_members))
        if self.max_labels is not None and len(self._targets) > self.max_labels:
            drop = len(self._targets) - self.max_labels
            for column in (self._left, self._right, self._targets, self._counts):
                del column[:drop]
            if len(self._segments) > 2 * len(self._targets) + 64:
                self._forget_unused_segments()

    def _forget_unused_segments(self) -> None:
        """Drop segments no kept pair uses (after ``max_labels`` dropped old pairs): image segments are
        large, and without this they would pile up over a long run."""
        used = sorted(set(self._left) | set(self._right))
        if len(used) == len(self._segments):
            return
        new_row = {old: new for new, old in enumerate(used)}
        self._segments = [self._segments[old] for old in used]
        self._row_of_segment = {segment.segment_id: row for row, segment in enumerate(self._segments)}
        self._left = [new_row[row] for row in self._left]
        self._right = [new_row[row] for row in self._right]
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

    def pairs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(left_rows (P,), right_rows (P,), targets (P,), counts (P, E))``.

        Rows index :meth:`segment_tensors`; ``counts[p, m]`` is how often member ``m`` trains on pair
        ``p`` per epoch (0: held out for that member's validation).
        """
        if not self._targets:
            empty = torch.zeros(0, dtype=torch.long)
            return empty, empty, torch.zeros(0), torch.zeros(0, self.n_members, dtype=torch.long)
        return (
            torch.tensor(self._left),
            torch.tensor(self._right),
            torch.tensor(self._targets, dtype=torch.float32),
            torch.as_tensor(np.stack(self._counts)),
        )
