"""Tests for PreferenceCallback's background refits: whether training waits for a fit at its install point."""

from __future__ import annotations

import threading
from typing import Any

from conftest import GoRightEnv
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack
from test_image_segments import FlickerEnv

from prefwrap.callback import PreferenceCallback, refit_text
from prefwrap.oracles.synthetic import SyntheticOracle
from prefwrap.reward.fitting import FitReport
from prefwrap.wrapper import PreferenceRewardWrapper


def test_waiting_is_the_default_for_mlp_rewards_and_not_for_cnn_rewards() -> None:
    vector = PreferenceRewardWrapper(DummyVecEnv([GoRightEnv]))
    images = PreferenceRewardWrapper(VecFrameStack(DummyVecEnv([FlickerEnv]), 4), segment_memory_mb=8)
    assert PreferenceCallback(vector, SyntheticOracle()).wait_for_fit
    assert not PreferenceCallback(images, SyntheticOracle()).wait_for_fit
    assert PreferenceCallback(images, SyntheticOracle(), wait_for_fit=True).wait_for_fit


class _HoldFirstFit(BaseCallback):
    """Holds the first background fit until three rollouts have ended since it started."""

    def __init__(self, preference: PreferenceCallback) -> None:
        super().__init__()
        self.preference = preference
        self.release = threading.Event()
        self.rollouts_held: list[int] = []
        self.installs: list[int] = []
        fitter = preference.learner.fitter
        fit, installed = fitter.fit_tensors, preference._installed

        def held_fit(*args: Any) -> FitReport:
            assert self.release.wait(60), "training waited for the held fit"
            return fit(*args)

        def record_install(report: FitReport | None) -> None:
            if report is not None:
                self.installs.append(preference.num_timesteps)
            installed(report)

        fitter.fit_tensors = held_fit  # type: ignore[method-assign]
        preference._installed = record_install  # type: ignore[method-assign]

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:  # runs after the preference callback's
        if self.preference.learner.refitting.started_at is not None and not self.release.is_set():
            self.rollouts_held.append(self.num_timesteps)
            if len(self.rollouts_held) == 3:
                self.release.set()


def test_without_waiting_training_goes_on_and_the_fit_is_installed_once_done() -> None:
    venv = PreferenceRewardWrapper(DummyVecEnv([GoRightEnv]), segment_length=10, seed=0)
    callback = PreferenceCallback(
        venv, SyntheticOracle(seed=0), total_labels=20, min_segments=8, seed=0, wait_for_fit=False
    )
    hold = _HoldFirstFit(callback)
    PPO("MlpPolicy", venv, n_steps=32, batch_size=32, seed=0, device="cpu").learn(
        640, callback=[callback, hold]
    )
    # two install points (one rollout after the start, then the next) passed while the fit was held
    assert len(hold.rollouts_held) == 3
    assert hold.installs and hold.installs[0] > hold.rollouts_held[-1]
    assert venv.learned_reward.fitted and callback.learner.last_fit is not None


def test_the_refit_line_gives_the_gradient_steps_per_second() -> None:
    assert refit_text(FitReport(0.5, 0.6, 0.7, 1e-3, 12, 0.1)) == "refit 0.10s (120 gradient steps/s)"
    # a CNN fit on a CPU that spent its 30 s bound on 4 steps (the Breakout report)
    assert refit_text(FitReport(0.5, 0.6, 0.7, 1e-3, 4, 28.0)) == "refit 28.00s (0.14 gradient steps/s)"
