"""Label schedules: how many labels should have been collected by a given timestep.

A schedule is any object with ``labels_due(timestep, total_timesteps) -> int``, cumulative and never
above the budget. The default follows the paper: a first batch from the initial policy, then a rate
decaying like ``c / (T + c)`` (``c`` = 2e6 on MuJoCo, 5e6 on Atari).
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable


@runtime_checkable
class LabelSchedule(Protocol):
    """Cumulative number of labels wanted by ``timestep`` of a ``total_timesteps`` run."""

    total_labels: int

    def labels_due(self, timestep: int, total_timesteps: int) -> int: ...


class DecayingSchedule:
    """The paper's schedule: an initial batch, then a rate ∝ ``decay_timesteps / (T + decay_timesteps)``.

    Integrating the rate gives the cumulative count
    ``n0 + (N - n0) * log(1 + T / c) / log(1 + T_total / c)``, which reaches the budget ``N`` exactly at
    ``T_total``. Smaller ``c`` front-loads labels; ``c → ∞`` spreads them evenly.

    Args:
        total_labels: The label budget ``N``.
        initial_fraction: Share of the budget asked for before the policy trains on the learned
            reward (the paper: 0.25).
        decay_timesteps: ``c``, in environment steps.

    Raises:
        ValueError: ``total_labels < 1``, ``initial_fraction`` outside ``[0, 1]`` or ``decay_timesteps <= 0``.

    Example:
        >>> DecayingSchedule(700).labels_due(0, 1_000_000)
        175
    """

    def __init__(
        self, total_labels: int, initial_fraction: float = 0.25, decay_timesteps: float = 2e6
    ) -> None:
        if total_labels < 1:
            raise ValueError(f"total_labels must be >= 1, got {total_labels}")
        if not 0.0 <= initial_fraction <= 1.0:
            raise ValueError(f"initial_fraction must be in [0, 1], got {initial_fraction}")
        if decay_timesteps <= 0:
            raise ValueError(f"decay_timesteps must be > 0, got {decay_timesteps}")
        self.total_labels = total_labels
        self.initial_labels = max(1, round(total_labels * initial_fraction))
        self.decay_timesteps = decay_timesteps

    def labels_due(self, timestep: int, total_timesteps: int) -> int:
        if timestep >= total_timesteps:
            return self.total_labels
        c = self.decay_timesteps
        progress = math.log1p(max(timestep, 0) / c) / math.log1p(total_timesteps / c)
        due = self.initial_labels + (self.total_labels - self.initial_labels) * progress
        return min(self.total_labels, int(due))


class UniformLabelSchedule:
    """An initial batch, then labels spread evenly over the run (a linear cumulative count).

    (Not SB3's ``ConstantSchedule``, a constant learning-rate value: this one counts labels.)

    Args:
        total_labels: The label budget ``N``.
        initial_fraction: Share of the budget asked for before the policy trains on the learned reward.

    Raises:
        ValueError: ``total_labels < 1`` or ``initial_fraction`` outside ``[0, 1]``.

    Example:
        >>> UniformLabelSchedule(400).labels_due(500_000, 1_000_000)
        250
    """

    def __init__(self, total_labels: int, initial_fraction: float = 0.25) -> None:
        self._schedule = DecayingSchedule(total_labels, initial_fraction, decay_timesteps=1e18)
        self.total_labels = total_labels

    def labels_due(self, timestep: int, total_timesteps: int) -> int:
        if timestep >= total_timesteps:
            return self.total_labels
        initial = self._schedule.initial_labels
        return min(
            self.total_labels, int(initial + (self.total_labels - initial) * timestep / total_timesteps)
        )
