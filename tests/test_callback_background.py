"""Tests for PreferenceCallback's background refits: whether training waits for a fit at its install point."""

from __future__ import annotations

import threading
import time
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


class _HoldSecondFit(BaseCallback):
    """Holds the second background fit until three rollouts have ended since it started (the first
    fit is always waited for: it ends the agent's training on the unfitted reward)."""

    def __init__(self, preference: PreferenceCallback) -> None:
        super().__init__()
        self.preference = preference
        self.release = threading.Event()
        self.fits = 0
        self.rollouts_held: list[int] = []
        self.installs: list[int] = []
        fitter = preference.learner.fitter
        fit, installed = fitter.fit_tensors, preference._installed

        def held_fit(*args: Any) -> FitReport:
            self.fits += 1
            if self.fits == 2:
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
        if self.fits >= 2 and not self.release.is_set():
            self.rollouts_held.append(self.num_timesteps)
            if len(self.rollouts_held) == 3:
                self.release.set()


def test_without_waiting_training_goes_on_and_the_fit_is_installed_once_done() -> None:
    venv = PreferenceRewardWrapper(DummyVecEnv([GoRightEnv]), segment_length=10, seed=0)
    callback = PreferenceCallback(
        venv, SyntheticOracle(seed=0), total_labels=40, min_segments=8, seed=0, wait_for_fit=False
    )
    hold = _HoldSecondFit(callback)
    PPO("MlpPolicy", venv, n_steps=32, batch_size=32, seed=0, device="cpu").learn(
        960, callback=[callback, hold]
    )
    # the first fit was installed at its install point; two install points of the second one passed
    # while it was held, and it was installed after its release
    assert len(hold.rollouts_held) == 3
    assert len(hold.installs) >= 2 and hold.installs[0] < hold.rollouts_held[0] < hold.installs[1]
    assert hold.installs[1] > hold.rollouts_held[-1]
    assert venv.learned_reward.fitted and callback.learner.last_fit is not None


def test_the_refit_line_gives_the_gradient_steps_per_second() -> None:
    assert refit_text(FitReport(0.5, 0.6, 0.7, 1e-3, 12, 0.1)) == "refit 0.10s (120 gradient steps/s)"
    # a CNN fit on a CPU that spent its 30 s bound on 4 steps (the Breakout report)
    assert refit_text(FitReport(0.5, 0.6, 0.7, 1e-3, 4, 28.0)) == "refit 28.00s (0.14 gradient steps/s)"


def test_the_first_fit_is_waited_for_even_without_waiting() -> None:
    venv = PreferenceRewardWrapper(DummyVecEnv([GoRightEnv]), segment_length=10, seed=0)
    callback = PreferenceCallback(
        venv, SyntheticOracle(seed=0), total_labels=20, min_segments=8, seed=0, wait_for_fit=False
    )
    fitter, starts, installs = callback.learner.fitter, [], []
    fit, installed = fitter.fit_tensors, callback._installed

    def slow_fit(*args: Any) -> FitReport:
        time.sleep(0.5)  # longer than a rollout of 32 steps takes
        return fit(*args)

    def record_install(report: FitReport | None) -> None:
        if report is not None:
            installs.append(callback.num_timesteps)
        installed(report)

    class FirstStart(BaseCallback):
        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            if callback.learner.refitting.started_at is not None and not starts:
                starts.append(callback.learner.refitting.started_at)

    fitter.fit_tensors = slow_fit  # type: ignore[method-assign]
    callback._installed = record_install  # type: ignore[method-assign]
    PPO("MlpPolicy", venv, n_steps=32, batch_size=32, seed=0, device="cpu").learn(
        256, callback=[callback, FirstStart()]
    )
    assert installs[0] == starts[0] + 32  # installed at its install point: one rollout later
