"""Tests of the zoo's tuned hyperparameters: the shipped YAML files and their one loader."""

from __future__ import annotations

import importlib.resources
import sys
from pathlib import Path

import pytest
from stable_baselines3.common.utils import LinearSchedule
from torch import nn

from prefwrap.cli.hyperparams import ALGOS, parse_overrides, parse_value, resolve, zoo_table

REPO = Path(__file__).resolve().parents[1]


def test_every_algorithm_ships_its_yaml_as_package_data() -> None:
    files = importlib.resources.files("prefwrap.cli.hyperparams")
    for algo in ALGOS:
        assert files.joinpath(f"{algo}.yml").is_file(), algo
        assert zoo_table(algo), algo


def test_zoo_notation_is_read_as_the_zoo_writes_it() -> None:
    ppo = zoo_table("ppo")
    assert ppo["HalfCheetah-v5"]["n_timesteps"] == 1e6  # !!float 1e6
    assert ppo["HalfCheetah-v5"]["normalize"] is True
    assert ppo["HalfCheetah-v5"]["policy_kwargs"] == {
        "log_std_init": -2,
        "ortho_init": False,
        "activation_fn": "nn.ReLU",
        "net_arch": {"pi": [256, 256], "vf": [256, 256]},
    }
    assert ppo["CartPole-v1"]["learning_rate"] == "lin_0.001"
    assert zoo_table("trpo")["Walker2d-v5"]["n_envs"] == 2  # a YAML merge key (<<: *mujoco-defaults)
    assert "target_kl" not in zoo_table("trpo")["Hopper-v5"]  # HalfCheetah's alone


def test_zoo_table_is_a_fresh_copy() -> None:
    zoo_table("ppo")["Pendulum-v1"]["gamma"] = 0.5
    assert zoo_table("ppo")["Pendulum-v1"]["gamma"] == 0.9


def test_resolve_splits_build_keys_from_algorithm_arguments() -> None:
    params = resolve("ppo", "Pendulum-v1", atari=False, overrides={"n_steps": 256, "n_envs": 2})
    assert (params.n_envs, params.n_timesteps, params.tuned, params.normalize) == (2, 50_000, True, False)
    assert params.model_kwargs["n_steps"] == 256 and "n_envs" not in params.model_kwargs
    untuned = resolve("sac", "MountainCarContinuous-v0", atari=False)
    assert not untuned.tuned and untuned.model_kwargs == {} and untuned.n_timesteps is None
    atari = resolve("sac", "ALE/Pong-v5", atari=True)
    assert (atari.policy, atari.frame_stack) == ("CnnPolicy", 4)


def test_algorithm_kwargs_builds_schedules_noise_and_classes() -> None:
    kwargs = resolve("ppo", "CartPole-v1", atari=False).algorithm_kwargs()
    assert isinstance(kwargs["learning_rate"], LinearSchedule)
    assert kwargs["learning_rate"](1.0) == pytest.approx(1e-3) and kwargs["learning_rate"](0.0) == 0.0
    assert kwargs["learning_rate"](0.25) == pytest.approx(2.5e-4)
    policy_kwargs = resolve("ppo", "Hopper-v5", atari=False).algorithm_kwargs()["policy_kwargs"]
    assert policy_kwargs["activation_fn"] is nn.ReLU
    from gymnasium import spaces

    td3 = resolve("td3", "Pendulum-v1", atari=False).algorithm_kwargs(spaces.Box(-1, 1, (3,)))
    assert "noise_type" not in td3 and td3["action_noise"]._sigma.shape == (3,)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [({"n_stepz": 3}, "no hyperparameter n_stepz"), ({"n_envs": 0}, "n_envs must be >= 1")],
)
def test_resolve_refuses_what_the_algorithm_cannot_take(overrides: dict, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        resolve("ppo", "Pendulum-v1", atari=False, overrides=overrides)


def test_parse_value_reads_the_notation_of_the_yaml_and_of_the_command_line() -> None:
    assert parse_value("1e-3") == 0.001  # YAML 1.1 reads 1e-3 (no dot) as a string: parsed here
    assert parse_value("lin_3e-4") == "lin_3e-4"
    assert parse_value("dict(optimizer_class=RMSpropTFLike)") == {"optimizer_class": "RMSpropTFLike"}
    assert parse_overrides(["use_sde=True", "policy=CnnPolicy"]) == {"use_sde": True, "policy": "CnnPolicy"}
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["n_steps"])


def test_benchmarks_read_the_same_file_with_their_documented_differences() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import harness
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    walker = harness.ppo_config("Walker2d-v4")  # any version: the v5 entry
    zoo = zoo_table("ppo")["Walker2d-v5"]
    assert walker == {k: v for k, v in zoo.items() if k not in ("n_timesteps", "policy")}
    assert "activation_fn" not in harness.ppo_config("HalfCheetah-v5")["policy_kwargs"]  # tanh, on purpose
    assert harness.ppo_config("Swimmer-v5") == {"n_envs": 1, "normalize": True, "gamma": 0.9999}
    assert harness.ppo_config("CartPole-v1") == {"n_envs": 4, "normalize": False}
