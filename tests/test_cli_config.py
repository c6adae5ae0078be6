"""Tests of ``prefwrap train``'s options: one dataclass, the parser built from it, the resume rules."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from prefwrap.cli import build_parser
from prefwrap.cli.config import TrainConfig, UsageError


def parse(*argv: str):
    return build_parser().parse_args(["train", *argv])


def test_every_option_is_a_field_and_every_field_an_option() -> None:
    args = vars(parse())
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(args) - {"command", "debug"} == fields


def test_a_new_run_takes_the_given_options_and_the_defaults() -> None:
    config = TrainConfig.from_args(parse("CartPole-v1", "--algo", "dqn", "--labels", "50", "--no-video"))
    assert (config.env_id, config.algo, config.labels, config.video, config.steps) == (
        "CartPole-v1",
        "dqn",
        50,
        False,
        0,  # per task, decided once the env is known
    )
    assert TrainConfig.from_args(parse()).env_id == "Pendulum-v1"


def test_config_json_holds_the_run_options_not_the_session_ones() -> None:
    record = TrainConfig.from_args(parse("--threads", "2", "-v", "--run-dir", "x")).to_record()
    assert "threads" not in record and "verbose" not in record and "run_dir" not in record
    assert record["algo"] == "ppo" and record["video"] is True
    assert TrainConfig.from_record(record | {"sessions": []}) == TrainConfig.from_args(parse())


def test_resume_changes_resumable_options_and_refuses_fixed_ones() -> None:
    stored = TrainConfig(labels=100, steps=1000, seed=3, n_envs=4)
    resumed = dataclasses.replace(stored).resumed_with(parse("--steps", "5000", "--baseline"), Path("run"))
    assert (resumed.steps, resumed.baseline, resumed.labels, resumed.seed) == (5000, True, 100, 3)
    same = dataclasses.replace(stored).resumed_with(parse("--seed", "3"), Path("run"))
    assert same.seed == 3
    with pytest.raises(UsageError, match="--seed cannot change when resuming"):
        dataclasses.replace(stored).resumed_with(parse("--seed", "4"), Path("run"))


@pytest.mark.parametrize("flag", ["--labels", "--steps", "--n-envs", "--eval-episodes", "--threads"])
def test_minimums_are_checked_from_the_field(flag: str) -> None:
    with pytest.raises(UsageError, match=f"{flag} must be at least 1, got 0"):
        TrainConfig.from_args(parse(flag, "0"))
