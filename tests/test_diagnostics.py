"""Tests for prefwrap.diagnostics and the learner's reward-hacking signals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_learner import TOTAL_STEPS, make_learner, record, recorded_wrapper

from prefwrap.diagnostics import disagreement_ratio, ensemble_disagreement, return_correlation
from prefwrap.selection import candidate_tuples


def test_correlation_needs_enough_varied_episodes() -> None:
    assert np.isnan(return_correlation(np.arange(5.0), np.arange(5.0)))  # too few episodes
    assert np.isnan(return_correlation(np.arange(12.0), np.zeros(12)))  # learned return not fitted yet
    assert return_correlation(np.arange(12.0), -np.arange(12.0)) == pytest.approx(-1.0)


def test_disagreement_ratio_compares_policy_and_labelled_segments() -> None:
    labelled = torch.tensor([[0.0, 1.0, 2.0], [0.2, 1.2, 1.8]])  # members almost agree
    policy = torch.tensor([[0.0, 5.0], [2.0, 1.0]])  # members disagree
    assert ensemble_disagreement(policy) == pytest.approx(float(policy.std(dim=0).mean()))
    assert disagreement_ratio(policy, labelled) > 10
    assert disagreement_ratio(labelled, labelled) == pytest.approx(1.0)
    assert np.isnan(disagreement_ratio(policy, labelled[:1]))  # one member: no disagreement defined


def test_learner_reports_signals_and_focuses_queries_on_recent_segments() -> None:
    wrapper = recorded_wrapper(60)
    learner = make_learner(wrapper, total_labels=20)
    assert np.isnan(learner.reward_diagnostics()["disagreement_ratio"])  # nothing fitted yet
    learner.collect_labels(0, TOTAL_STEPS)
    learner.refit()
    record(wrapper, 60, seed=1)
    signals = learner.reward_diagnostics()
    assert np.isfinite(signals["disagreement_ratio"]) and signals["disagreement_ratio"] > 0
    n_rows = 200
    spread = candidate_tuples(learner._rng, n_rows, 400, 2, focus_recent=False)
    focused = candidate_tuples(learner._rng, n_rows, 400, 2, focus_recent=True)
    newest_tenth = n_rows - n_rows // 10
    assert (focused.max(axis=1) >= newest_tenth).mean() > 0.5 > (spread.max(axis=1) >= newest_tenth).mean()
