"""Tests for prefwrap.reward.dataset: targets, online Poisson bootstrap, newest labels, dedupe."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import make_segment

from prefwrap.records import Preference, Query
from prefwrap.reward.dataset import PreferenceDataset


def query(query_id: int, left_id: int, right_id: int, horizon: int = 4) -> Query:
    return Query(
        query_id, make_segment(left_id, np.zeros(horizon)), make_segment(right_id, np.zeros(horizon))
    )


def test_targets_and_skips_are_dropped() -> None:
    dataset = PreferenceDataset(n_members=2, seed=0)
    answers = [Preference.LEFT, Preference.SKIP, Preference.RIGHT, Preference.EQUAL, Preference.SKIP]
    for i, answer in enumerate(answers):
        dataset.add(query(i, 2 * i, 2 * i + 1), answer)
    assert len(dataset) == 3
    left, right, targets, counts = dataset.pairs()
    torch.testing.assert_close(targets, torch.tensor([1.0, 0.0, 0.5]))
    assert counts.shape == (3, 2)
    ids = [s.segment_id for s in dataset._segments]
    assert 2 not in ids and 3 not in ids  # a skipped query adds no segment
    assert [ids[r] for r in left.tolist()] == [0, 4, 6]
    assert [ids[r] for r in right.tolist()] == [1, 5, 7]


def test_empty_dataset_pairs() -> None:
    left, _, targets, counts = PreferenceDataset(n_members=3).pairs()
    assert len(left) == len(targets) == 0
    assert counts.shape == (0, 3)


def test_poisson_bootstrap_counts_hold_out_one_over_e() -> None:
    n_pairs, n_members = 4000, 3
    dataset = PreferenceDataset(n_members=n_members, seed=1)
    segments = [make_segment(i, np.zeros(2)) for i in range(50)]
    for i in range(n_pairs):
        dataset.add(Query(i, segments[i % 50], segments[(i + 1) % 50]), Preference.LEFT)
    counts = dataset.pairs()[3].numpy()
    assert counts.shape == (n_pairs, n_members)
    assert counts.min() >= 0
    assert counts.mean() == pytest.approx(1.0, abs=0.05)  # Poisson(1): mean 1, variance 1
    assert counts.var() == pytest.approx(1.0, abs=0.08)
    held_out = (counts == 0).mean(axis=0)
    np.testing.assert_allclose(held_out, math.exp(-1), atol=0.03)  # each member holds out ~1/e
    assert not np.array_equal(counts[:, 0], counts[:, 1])  # members draw independent bootstraps


def test_bootstrap_is_seeded() -> None:
    def counts(seed: int) -> np.ndarray:
        dataset = PreferenceDataset(n_members=3, seed=seed)
        for i in range(50):
            dataset.add(query(i, 2 * i, 2 * i + 1), Preference.RIGHT)
        return dataset.pairs()[3].numpy()

    np.testing.assert_array_equal(counts(7), counts(7))
    assert not np.array_equal(counts(7), counts(8))


def test_max_labels_keeps_the_newest() -> None:
    dataset = PreferenceDataset(n_members=2, max_labels=3, seed=0)
    counts_when_added = []
    for i in range(7):
        dataset.add(query(i, 2 * i, 2 * i + 1), Preference.LEFT if i % 2 else Preference.RIGHT)
        counts_when_added.append(dataset.pairs()[3][-1].clone())
    assert len(dataset) == 3
    left, _, targets, counts = dataset.pairs()
    segments = dataset.segment_tensors()
    expected_left = [make_segment(2 * i, np.zeros(4)).observations for i in (4, 5, 6)]
    for row, obs in zip(left.tolist(), expected_left, strict=True):
        np.testing.assert_array_equal(segments["observations"][row].numpy(), obs)
    torch.testing.assert_close(targets, torch.tensor([0.0, 1.0, 0.0]))
    torch.testing.assert_close(counts, torch.stack(counts_when_added[4:]))  # counts travel with their pair


def test_segments_are_deduplicated_by_id() -> None:
    dataset = PreferenceDataset(n_members=1, seed=0)
    shared = make_segment(10, [1.0, 2.0, 0.0], length=2)
    others = [make_segment(20 + i, [0.0, 0.0, 0.0]) for i in range(3)]
    for i, other in enumerate(others):
        dataset.add(Query(i, shared, other), Preference.LEFT)
    # The same id arriving as another object (e.g. reloaded from the store) is the same segment.
    dataset.add(Query(3, make_segment(10, [1.0, 2.0, 0.0], length=2), others[0]), Preference.LEFT)
    segments = dataset.segment_tensors()
    assert segments["observations"].shape == (4, 3, 2)
    left, right, _, _ = dataset.pairs()
    assert set(left.tolist()) == {left[0].item()}
    np.testing.assert_array_equal(segments["observations"][left[0]].numpy(), shared.observations)
    np.testing.assert_array_equal(segments["mask"][left[0]].numpy(), [1.0, 1.0, 0.0])
    assert right[0] == right[3]


def test_invalid_max_labels() -> None:
    with pytest.raises(ValueError, match="max_labels"):
        PreferenceDataset(n_members=1, max_labels=0)
