"""benchmarks/broad.py's table: the controls are judged against their own untrained policy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "benchmarks"))
try:
    import broad
    import harness
finally:
    sys.path.remove(str(REPO / "benchmarks"))


def _result(arm: str, start: float, end: float) -> dict[str, Any]:
    return {"arm": f"Ant/sb3/{arm}", "seed": 0, "return": end, "curve": [(0, start), (1000, end)]}


def test_controls_gain_is_measured_from_their_own_start(monkeypatch: pytest.MonkeyPatch) -> None:
    # Ant's untrained policy stands still and earns its healthy reward: far above random, so the
    # zero-label arm's normalised score is high without any leak; its gain from its start is not
    monkeypatch.setattr(broad, "random_return", lambda *_: -50.0)
    results = [
        _result("true", 1000.0, 150.0),
        _result("rlhf", 1000.0, 100.0),
        _result("zero", 1000.0, 200.0),
        _result("coinflip", 900.0, 1100.0),
    ]
    args = argparse.Namespace(tasks=["Ant"], settings=["sb3"], eval_episodes=1)
    table, means = broad.summarise(results, args)
    row = table.splitlines()[2].strip("| ").split(" | ")
    header = table.splitlines()[0].strip("| ").split(" | ")
    cells = dict(zip(header, row, strict=True))
    assert cells["initial policy"] == "1000.0"
    assert cells["score"] == "0.75"  # (100 + 50) / (150 + 50)
    assert cells["zero score"] == "1.25"
    assert cells["zero gain"] == "-4.00"  # (200 - 1000) / 200
    assert cells["coin-flip gain"] == "1.00"  # (1100 - 900) / 200: a leak
    assert means == [pytest.approx(0.75)]


def test_a_missing_coin_flip_arm_leaves_its_cell_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broad, "random_return", lambda *_: 0.0)
    results = [_result(arm, 10.0, 20.0) for arm in ("true", "rlhf", "zero")]
    table, _ = broad.summarise(results, argparse.Namespace(tasks=["Ant"], settings=["sb3"], eval_episodes=1))
    assert table.splitlines()[2].rstrip().endswith("|  |")


def test_figures_of_a_task_set_keep_their_own_name() -> None:
    assert broad.task_set(["CartPole", "Pendulum"]) == "classic"
    assert broad.task_set(["Ant", "Hopper"]) == "mujoco"
    assert broad.task_set(["Ant", "CartPole"]) == "all"


def test_a_coin_flip_arm_needs_labels() -> None:
    with pytest.raises(ValueError, match="coinflip arm needs a label budget"):
        harness.make_job("CartPole-v1", "coin", 0, 64, kind="coinflip")
    assert harness.make_job("CartPole-v1", "coin", 0, 64, kind="coinflip", labels=5)["labels"] == 5


def test_the_blind_arm_sees_no_reward_and_no_termination() -> None:
    env = harness._blind_env("CartPole-v1", {})
    env.reset(seed=0)
    rewards, steps, truncated = set(), 0, False
    while not truncated:  # always pushing left topples the pole within ~10 steps: it must not end it
        _, reward, terminated, truncated, _ = env.step(0)
        rewards.add(reward)
        steps += 1
        assert not terminated
    assert rewards == {0.0} and steps == 500


def test_the_blind_score_is_read_beside_the_zero_score(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broad, "random_return", lambda *_: 0.0)
    results = [_result(arm, 10.0, end) for arm, end in (("true", 100.0), ("rlhf", 90.0), ("zero", 40.0))]
    results.append(_result("blind", 10.0, 60.0))
    table, _ = broad.summarise(results, argparse.Namespace(tasks=["Ant"], settings=["sb3"], eval_episodes=1))
    header, _, row = ([cell.strip() for cell in line.strip()[1:-1].split("|")] for line in table.splitlines())
    cells = dict(zip(header, row, strict=True))
    assert (cells["zero score"], cells["blind score"]) == ("0.40", "0.60")


def test_the_curve_figure_keeps_each_arm_s_colour_and_shows_every_arm_in_its_legend() -> None:
    def curve(task: str, arm: str) -> dict[str, Any]:
        return {"arm": f"{task}/sb3/{arm}", "seed": 0, "return": 1.0, "curve": [(0, 0.0), (1000, 1.0)]}

    # the blind arm ran on the second task only, the coin-flip arm on the first only
    results = [curve("Ant", arm) for arm in ("true", "rlhf", "coinflip")]
    results += [curve("Hopper", arm) for arm in ("true", "rlhf", "blind")]
    figure = broad.curve_figure(results, ["Ant", "Hopper"], "sb3")
    ant, hopper = figure.axes[:2]
    colours = [{line.get_label(): line.get_color() for line in axis.lines} for axis in (ant, hopper)]
    assert colours[0]["rlhf"] == colours[1]["rlhf"] and colours[0]["true"] == colours[1]["true"]
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == ["true", "rlhf", "coinflip", "blind"]
