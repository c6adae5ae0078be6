"""Tests for prefwrap.cli.envs: the training env stack a run builds, custom wrappers included."""

from __future__ import annotations

import gymnasium as gym
import pytest

from prefwrap.cli.config import TrainConfig
from prefwrap.cli.envs import make_base_env
from prefwrap.cli.train import _resolve


class Marked(gym.Wrapper):
    """A user's own wrapper, given to ``--env-wrapper`` by its dotted path."""


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "ALE/Pong-v5"])
def test_env_wrappers_are_applied_to_every_env_atari_too(env_id: str) -> None:
    pytest.importorskip("ale_py")
    config = TrainConfig(env_id=env_id, env_wrapper=["test_cli_envs.Marked"], steps=2000, labels=10, n_envs=2)
    setup = _resolve(config, None)
    venv = make_base_env(setup, 2, seed=0)
    try:
        assert venv.env_is_wrapped(Marked) == [True, True]
        if setup.info.atari:  # below SB3's Atari wrappers, which still apply
            from stable_baselines3.common.atari_wrappers import AtariWrapper

            assert venv.env_is_wrapped(AtariWrapper) == [True, True]
    finally:
        venv.close()
