"""Tests for prefwrap.schedule: initial batch, monotone, exact budget at the end, decaying rate."""

from __future__ import annotations

import numpy as np
import pytest

from prefwrap.schedule import DecayingSchedule, LabelSchedule, UniformLabelSchedule

TOTAL_STEPS = 1_000_000


def due_curve(schedule: LabelSchedule, total_steps: int = TOTAL_STEPS, points: int = 2001) -> np.ndarray:
    steps = np.linspace(0, total_steps, points).astype(int)
    return np.array([schedule.labels_due(int(t), total_steps) for t in steps])


@pytest.mark.parametrize("schedule_type", [DecayingSchedule, UniformLabelSchedule])
def test_protocol(schedule_type: type) -> None:
    assert isinstance(schedule_type(100), LabelSchedule)


@pytest.mark.parametrize("total", [1, 7, 700, 3000])
def test_initial_batch_is_a_quarter_at_time_zero(total: int) -> None:
    assert DecayingSchedule(total).labels_due(0, TOTAL_STEPS) == max(1, round(0.25 * total))
    assert UniformLabelSchedule(total).labels_due(0, TOTAL_STEPS) == max(1, round(0.25 * total))
    assert DecayingSchedule(total, initial_fraction=0.5).labels_due(0, TOTAL_STEPS) == max(
        1, round(0.5 * total)
    )


@pytest.mark.parametrize(
    "schedule",
    [
        DecayingSchedule(700),
        DecayingSchedule(1000, decay_timesteps=5e4),
        DecayingSchedule(3),
        UniformLabelSchedule(700),
    ],
)
@pytest.mark.parametrize("total_steps", [1_000, TOTAL_STEPS, 50_000_000])
def test_cumulative_monotone_never_above_budget_exact_at_the_end(
    schedule: LabelSchedule, total_steps: int
) -> None:
    curve = due_curve(schedule, total_steps)
    assert np.all(np.diff(curve) >= 0)
    assert curve.max() <= schedule.total_labels
    assert curve[-1] == schedule.total_labels
    assert schedule.labels_due(total_steps - 1, total_steps) <= schedule.total_labels
    assert (
        schedule.labels_due(total_steps * 2, total_steps) == schedule.total_labels
    )  # training past the plan


def test_decaying_rate_asks_more_labels_early() -> None:
    total_steps = 10_000_000
    decaying, constant = DecayingSchedule(700), UniformLabelSchedule(700)
    half = total_steps // 2
    assert decaying.labels_due(half, total_steps) > constant.labels_due(half, total_steps) + 50
    # The rate falls: equal intervals of steps bring fewer and fewer labels.
    curve = due_curve(decaying, total_steps, points=11)
    increments = np.diff(curve)
    assert np.all(np.diff(increments) <= 1)  # non-increasing, up to integer rounding
    assert increments[0] > 2 * increments[-1]


def test_decaying_matches_the_closed_form() -> None:
    schedule = DecayingSchedule(1000, decay_timesteps=2e6)
    t, total = 3_000_000, 8_000_000
    expected = 250 + 750 * np.log1p(t / 2e6) / np.log1p(total / 2e6)
    assert schedule.labels_due(t, total) == int(expected)


def test_larger_decay_timesteps_spread_labels_more_evenly() -> None:
    front, even = DecayingSchedule(700, decay_timesteps=1e5), DecayingSchedule(700, decay_timesteps=1e9)
    quarter = TOTAL_STEPS // 4
    assert front.labels_due(quarter, TOTAL_STEPS) > even.labels_due(quarter, TOTAL_STEPS)
    constant = UniformLabelSchedule(700).labels_due(quarter, TOTAL_STEPS)
    assert abs(even.labels_due(quarter, TOTAL_STEPS) - constant) <= 1


def test_constant_schedule_is_linear() -> None:
    schedule = UniformLabelSchedule(400)
    assert schedule.labels_due(TOTAL_STEPS // 2, TOTAL_STEPS) == 100 + 150
    assert schedule.labels_due(TOTAL_STEPS // 4, TOTAL_STEPS) == 100 + 75


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"total_labels": 0}, "total_labels"),
        ({"total_labels": 10, "initial_fraction": 1.5}, "initial_fraction"),
        ({"total_labels": 10, "decay_timesteps": 0}, "decay_timesteps"),
    ],
)
def test_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DecayingSchedule(**kwargs)
