"""Tests for prefwrap.reward.fitting: recovering a known reward, adaptive L2, time bound, warm start."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from conftest import make_segment, rational

from prefwrap.records import Preference, Query
from prefwrap.reward.dataset import PreferenceDataset
from prefwrap.reward.fitting import RewardFitter, segment_returns
from prefwrap.reward.mlp import MlpRewardEnsemble

OBS_DIM, HORIZON = 4, 10
TRUE_WEIGHTS = np.array([1.0, -2.0, 0.5, 0.0], dtype=np.float32)


def linear_segments(first_id: int, n: int, rng: np.random.Generator) -> list:
    """Segments of random features whose true reward is linear in the observation."""
    segments = []
    for i in range(n):
        obs = rng.normal(size=(HORIZON, OBS_DIM)).astype(np.float32) * 2.0 + 1.0
        segments.append(make_segment(first_id + i, obs @ TRUE_WEIGHTS, observations=obs))
    return segments


def random_pairs(segments: list, n: int, rng: np.random.Generator, first_query: int = 0) -> list[Query]:
    left = rng.integers(0, len(segments), n)
    right = (left + rng.integers(1, len(segments), n)) % len(segments)
    return [
        Query(first_query + k, segments[a], segments[b])
        for k, (a, b) in enumerate(zip(left, right, strict=True))
    ]


def labelled_dataset(n_labels: int, seed: int = 0, n_members: int = 3) -> tuple[PreferenceDataset, list]:
    rng = np.random.default_rng(seed)
    segments = linear_segments(0, 300, rng)
    dataset = PreferenceDataset(n_members=n_members, seed=seed)
    for q in random_pairs(segments, n_labels, rng):
        dataset.add(q, rational(q))
    return dataset, segments


def ensemble_accuracy(model: MlpRewardEnsemble, queries: list[Query]) -> float:
    """Accuracy of the ensemble-mean return on decided pairs."""
    obs = torch.as_tensor(np.stack([s.observations for q in queries for s in (q.left, q.right)]))
    act = torch.as_tensor(np.stack([s.actions for q in queries for s in (q.left, q.right)]))
    mask = torch.ones(obs.shape[:2])
    with torch.no_grad():
        returns = segment_returns(model, obs, act, mask, torch.zeros(len(obs))).mean(0).reshape(-1, 2).numpy()
    truth = np.array([q.left.true_return > q.right.true_return for q in queries])
    return float(np.mean((returns[:, 0] > returns[:, 1]) == truth))


def test_segment_returns_ignore_padding_and_accept_per_member_inputs() -> None:
    model = MlpRewardEnsemble(2, 1, n_members=2, hidden_sizes=(4,))
    obs, act = torch.randn(3, 5, 2), torch.randn(3, 5, 1)
    mask = torch.ones(3, 5)
    mask[1, 3:] = 0
    none = torch.zeros(3)
    returns = segment_returns(model, obs, act, mask, none)
    assert returns.shape == (2, 3)
    with torch.no_grad():
        per_step = model(obs.reshape(-1, 2), act.reshape(-1, 1)).reshape(2, 3, 5)
    torch.testing.assert_close(returns[:, 1], per_step[:, 1, :3].sum(-1))
    changed = obs.clone()
    changed[1, 3:] = 100.0  # padding content must not matter
    torch.testing.assert_close(segment_returns(model, changed, act, mask, none), returns)
    per_member = segment_returns(
        model,
        obs.expand(2, -1, -1, -1),
        act.expand(2, -1, -1, -1),
        mask.expand(2, -1, -1),
        none.expand(2, -1),
    )
    torch.testing.assert_close(per_member, returns)
    with torch.no_grad():
        model.absorbing_reward.copy_(torch.tensor([0.5, -2.0]))
    absorbing = torch.tensor([0.0, 2.0, 0.0])  # segment 1 terminated after 3 of its 5 steps
    shifted = segment_returns(model, obs, act, mask, absorbing)
    torch.testing.assert_close(shifted[:, 1], returns[:, 1] + torch.tensor([1.0, -4.0]))
    torch.testing.assert_close(shifted[:, [0, 2]], returns[:, [0, 2]])


def test_recovers_a_known_reward_on_fresh_pairs() -> None:
    dataset, _ = labelled_dataset(500)
    model = MlpRewardEnsemble(OBS_DIM, 1, n_members=3, hidden_sizes=(32, 32))
    fitter = RewardFitter(model, epochs=40, max_seconds=None, seed=0)
    report = fitter.fit(dataset)
    rng = np.random.default_rng(123)
    fresh = random_pairs(linear_segments(10_000, 200, rng), 400, rng)  # never seen in training
    assert ensemble_accuracy(model, fresh) > 0.9
    assert report.validation_accuracy > 0.85  # held-out (out-of-bag) accuracy agrees
    assert report.train_loss < 0.5
    assert report.gradient_steps > 0


def test_fit_sets_input_statistics_from_valid_steps_only() -> None:
    dataset = PreferenceDataset(n_members=2, seed=0)
    a = make_segment(0, [0.0] * 4, length=2, observations=np.full((4, 2), 3.0))
    b = make_segment(1, [0.0] * 4, length=4, observations=np.full((4, 2), 5.0))
    a.observations[2:] = -1000.0  # padding: must not enter the statistics
    dataset.add(Query(0, a, b), Preference.RIGHT)
    model = MlpRewardEnsemble(2, 1, n_members=2, hidden_sizes=(4,))
    RewardFitter(model, epochs=1, seed=0).fit(dataset)
    expected = (2 * 3.0 + 4 * 5.0) / 6
    torch.testing.assert_close(model.input_mean[:2], torch.full((2,), expected))


@pytest.mark.parametrize(
    ("ratio", "factor"), [(2.0, RewardFitter.L2_STEP), (1.3, 1.0), (1.0, 1 / RewardFitter.L2_STEP)]
)
def test_adapt_l2_keeps_validation_over_training_loss_in_range(ratio: float, factor: float) -> None:
    fitter = RewardFitter(MlpRewardEnsemble(2, 1, n_members=1), l2_coef=1e-3)
    fitter._adapt_l2(ratio)
    assert fitter.l2_coef == pytest.approx(1e-3 * factor)


def test_adapt_l2_respects_bounds() -> None:
    low, high = RewardFitter.L2_BOUNDS
    fitter = RewardFitter(MlpRewardEnsemble(2, 1, n_members=1), l2_coef=high)
    fitter._adapt_l2(10.0)
    assert fitter.l2_coef == high
    fitter.l2_coef = low
    fitter._adapt_l2(0.5)
    assert fitter.l2_coef == low


def test_l2_grows_when_overfitting() -> None:
    """Few labels, random answers and a large network: training loss falls, validation loss rises."""
    rng = np.random.default_rng(0)
    segments = linear_segments(0, 40, rng)
    dataset = PreferenceDataset(n_members=3, seed=0)
    for q in random_pairs(segments, 40, rng):
        dataset.add(q, Preference.LEFT if rng.random() < 0.5 else Preference.RIGHT)
    model = MlpRewardEnsemble(OBS_DIM, 1, n_members=3, hidden_sizes=(128, 128))
    fitter = RewardFitter(model, learning_rate=1e-2, epochs=30, max_seconds=None, l2_coef=1e-4, seed=0)
    report = fitter.fit(dataset)
    assert report.validation_loss > 1.5 * report.train_loss
    assert report.l2_coef > 1e-4


def test_l2_shrinks_when_underfitting() -> None:
    """A strong penalty on a learnable problem: validation loss stays close to training loss."""
    dataset, _ = labelled_dataset(400, seed=1)
    model = MlpRewardEnsemble(OBS_DIM, 1, n_members=3, hidden_sizes=(16,))
    fitter = RewardFitter(model, epochs=10, max_seconds=None, l2_coef=0.5, seed=0)
    report = fitter.fit(dataset)
    assert report.l2_coef < 0.5


def test_max_seconds_bounds_a_fit() -> None:
    dataset, _ = labelled_dataset(200)
    fitter = RewardFitter(MlpRewardEnsemble(OBS_DIM, 1, n_members=3), epochs=100_000, max_seconds=0.3, seed=0)
    report = fitter.fit(dataset)
    assert report.seconds < 2.0
    assert 0 < report.gradient_steps < 100_000


def test_second_fit_warm_starts_from_the_first() -> None:
    dataset, _ = labelled_dataset(300)
    model = MlpRewardEnsemble(OBS_DIM, 1, n_members=3, hidden_sizes=(32, 32))
    fitter = RewardFitter(model, epochs=20, max_seconds=None, seed=0)
    first = fitter.fit(dataset)
    after_first = {k: v.clone() for k, v in model.state_dict().items()}
    for group in fitter.optimizer.param_groups:
        group["lr"] = 0.0  # a second fit that cannot move the weights...
    second = fitter.fit(dataset, epochs=1)
    for key, value in model.state_dict().items():  # ...leaves them where the first fit left them
        torch.testing.assert_close(value, after_first[key])
    assert second.train_loss == pytest.approx(first.train_loss, rel=1e-5)

    fresh = RewardFitter(MlpRewardEnsemble(OBS_DIM, 1, n_members=3, hidden_sizes=(32, 32)), seed=0)
    assert second.train_loss < fresh.fit(dataset, epochs=1).train_loss


def test_fit_validation() -> None:
    model = MlpRewardEnsemble(2, 1, n_members=1)
    with pytest.raises(ValueError, match="no labels"):
        RewardFitter(model).fit(PreferenceDataset(n_members=1))
    with pytest.raises(ValueError, match="batch_size"):
        RewardFitter(model, batch_size=0)


def test_evaluate_without_held_out_pairs_gives_nan() -> None:
    dataset, _ = labelled_dataset(20)
    dataset._counts = [np.ones(3, dtype=np.int64) for _ in dataset._counts]  # every member trains on all
    fitter = RewardFitter(MlpRewardEnsemble(OBS_DIM, 1, n_members=3), seed=0)
    train_loss, validation_loss, accuracy = fitter.evaluate(dataset)
    assert np.isfinite(train_loss)
    assert np.isnan(validation_loss) and np.isnan(accuracy)


def test_max_seconds_is_checked_inside_an_epoch() -> None:
    # One epoch of 2,000 labels in batches of 8 is 250 gradient steps, far longer than the bound:
    # the fit stops mid-epoch (the first fit of a CNN used to overrun its bound by minutes).
    dataset, _ = labelled_dataset(2000)
    model = MlpRewardEnsemble(OBS_DIM, 1, n_members=3, hidden_sizes=(256, 256))
    fitter = RewardFitter(model, batch_size=8, epochs=1, max_seconds=0.05, seed=0)
    report = fitter.fit(dataset)
    assert 0 < report.gradient_steps < 250
    assert report.seconds < 1.0


def test_progress_is_reported_after_every_epoch() -> None:
    dataset, _ = labelled_dataset(100)
    fitter = RewardFitter(MlpRewardEnsemble(OBS_DIM, 1, n_members=3), epochs=4, max_seconds=None, seed=0)
    calls = []
    fitter.progress = lambda *args: calls.append(args)
    report = fitter.fit(dataset)
    assert [(epoch, epochs) for epoch, epochs, _, _ in calls] == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert calls[-1][2] == report.gradient_steps and calls[-1][3] <= report.seconds


def test_epoch_labels_bounds_the_work_of_an_epoch_and_its_evaluation() -> None:
    dataset, _ = labelled_dataset(600)
    capped = RewardFitter(
        MlpRewardEnsemble(OBS_DIM, 1, n_members=3), batch_size=10, epochs=2, seed=0, epoch_labels=100
    )
    report = capped.fit(dataset)
    assert report.gradient_steps == 2 * 10  # 100 labels per epoch in batches of 10, not ~600
    assert 0.5 < report.validation_accuracy <= 1.0
    everything = RewardFitter(
        MlpRewardEnsemble(OBS_DIM, 1, n_members=3), batch_size=10, epochs=2, seed=0, epoch_labels=None
    )
    assert everything.fit(dataset).gradient_steps > 100


def test_evaluating_a_sample_of_labels_matches_evaluating_only_those_labels() -> None:
    dataset, _ = labelled_dataset(300)
    fitter = RewardFitter(MlpRewardEnsemble(OBS_DIM, 1, n_members=3), epochs=2, max_seconds=None, seed=0)
    fitter.fit(dataset)
    sample = torch.zeros(len(dataset), dtype=torch.bool)
    sample[::3] = True
    sampled = fitter._evaluate(dataset.segment_tensors(), dataset.labels(), sample)
    # the same figures from a dataset holding only the sampled labels, with the same bootstrap counts
    labels = dataset.labels()
    counts = labels.counts.clone()
    counts[~sample] = 0
    weights = labels.weights * sample
    masked = dataclasses.replace(labels, counts=counts, weights=weights)
    expected_train = fitter._evaluate(dataset.segment_tensors(), masked)[0]
    assert sampled[0] == pytest.approx(expected_train, rel=1e-5)


def test_a_fit_on_fewer_labels_than_a_batch_uses_batches_of_those_labels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """10 labels with batch_size 64: one step of its ~10 in-bag labels per member and epoch, not 64
    copies (a CNN's first fits paid 6x for nothing)."""
    dataset, _ = labelled_dataset(10)
    fitter = RewardFitter(MlpRewardEnsemble(OBS_DIM, 1, n_members=3), batch_size=64, epochs=3, seed=0)
    shapes = []
    real = fitter._batch_loss

    def recording(segments, labels, batch):  # type: ignore[no-untyped-def]
        shapes.append(tuple(batch.shape))
        return real(segments, labels, batch)

    monkeypatch.setattr(fitter, "_batch_loss", recording)
    report = fitter.fit(dataset)
    in_bag = int(dataset.labels().counts.sum(0).max())  # the largest member's bootstrap (~10)
    assert report.gradient_steps == 3 and shapes == [(3, in_bag)] * 3 and in_bag < 20
