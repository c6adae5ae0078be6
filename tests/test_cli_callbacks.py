"""Tests for prefwrap.cli.callbacks: the evaluation callback's env stack mirrors the training one."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecTransposeImage

from prefwrap.cli.callbacks import make_eval_callback
from prefwrap.cli.config import TrainConfig
from prefwrap.cli.envs import make_base_env
from prefwrap.cli.train import _resolve
from prefwrap.wrapper import PreferenceRewardWrapper


def test_the_atari_eval_stack_is_transposed_like_the_training_one(tmp_path: Path) -> None:
    pytest.importorskip("ale_py")
    setup = _resolve(TrainConfig(env_id="ALE/Pong-v5", steps=2000, labels=10, n_envs=1, eval_freq=100), None)
    wrapper = PreferenceRewardWrapper(make_base_env(setup, 1, seed=0))
    model = PPO("CnnPolicy", wrapper, n_steps=16, batch_size=16, device="cpu")
    callback = make_eval_callback(setup, tmp_path, wrapper, start_step=0)
    assert callback is not None and isinstance(callback.eval_env, VecTransposeImage)
    assert isinstance(model.get_env(), VecTransposeImage)  # what SB3 did to the training stack
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # SB3 warns here when the two stacks differ
        callback.init_callback(model)
    callback.eval_env.close()
    wrapper.close()
