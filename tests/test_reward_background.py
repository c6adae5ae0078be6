"""Tests for prefwrap.reward.background: a fit in a thread, its result and its errors."""

from __future__ import annotations

import threading

import pytest
import torch
from test_reward_fitting import OBS_DIM, labelled_dataset

from prefwrap.reward.background import BackgroundFit
from prefwrap.reward.fitting import FitReport, RewardFitter
from prefwrap.reward.mlp import MlpRewardEnsemble


def test_a_background_fit_equals_the_same_fit_in_the_caller() -> None:
    dataset, _ = labelled_dataset(200)
    inline = RewardFitter(MlpRewardEnsemble(OBS_DIM, 1, n_members=3), epochs=3, max_seconds=None, seed=0)
    threaded = RewardFitter(MlpRewardEnsemble(OBS_DIM, 1, n_members=3), epochs=3, max_seconds=None, seed=0)
    threaded.model.load_state_dict(inline.model.state_dict())
    expected = inline.fit(dataset)
    fit = BackgroundFit(threaded, dataset.segment_tensors(), dataset.labels(), None, started_at=128)
    report = fit.result()
    assert fit.done and fit.started_at == 128
    assert report.gradient_steps == expected.gradient_steps
    assert report.validation_loss == pytest.approx(expected.validation_loss, rel=1e-5)
    for a, b in zip(inline.model.parameters(), threaded.model.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_the_fit_runs_in_another_thread_and_its_error_reaches_the_caller() -> None:
    class FailingFitter:
        thread = None

        def fit_tensors(self, *args: object) -> FitReport:
            FailingFitter.thread = threading.current_thread()
            raise FloatingPointError("the loss diverged")

    fit = BackgroundFit(FailingFitter(), {}, None, None, started_at=0)  # type: ignore[arg-type]
    with pytest.raises(FloatingPointError, match="diverged"):
        fit.result()
    assert FailingFitter.thread is not threading.main_thread()


def test_a_restored_fit_is_done_and_returns_its_report() -> None:
    report = FitReport(0.5, 0.6, 0.7, 1e-3, 12, 0.1)
    fit = BackgroundFit.finished(report, started_at=640)
    assert fit.done and fit.result() is report and fit.started_at == 640
