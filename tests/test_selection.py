"""Tests for prefwrap.selection: disagreement picks the most contested pairs; random is seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prefwrap.selection import DisagreementSelector, PairSelector, RandomSelector, preference_disagreement


def test_disagreement_is_the_member_variance_of_p_left() -> None:
    member_returns = torch.tensor([[0.0, 1.0, 5.0, -2.0], [0.5, -1.0, 5.0, 2.0], [3.0, 0.0, 5.0, 0.0]])
    pairs = np.array([[0, 1], [2, 3], [1, 3]])
    p = torch.sigmoid(member_returns[:, pairs[:, 0]] - member_returns[:, pairs[:, 1]]).numpy()
    np.testing.assert_allclose(preference_disagreement(pairs, member_returns), p.var(axis=0), rtol=1e-6)


def test_disagreement_picks_the_highest_variance_pairs() -> None:
    # Segments 0-1: members agree; 2-3: members disagree strongly; 4-5: mildly.
    member_returns = torch.tensor(
        [
            [1.0, 0.0, 4.0, -4.0, 0.5, 0.0],
            [1.0, 0.0, -4.0, 4.0, 0.0, 0.5],
            [1.0, 0.0, 4.0, -4.0, 0.5, 0.0],
        ]
    )
    pairs = np.array([[0, 1], [4, 5], [2, 3], [1, 0], [3, 2]])
    chosen = DisagreementSelector().select(pairs, member_returns, 2)
    assert sorted(chosen.tolist()) == [2, 4]
    assert DisagreementSelector().select(pairs, member_returns, 3).tolist()[2] == 1
    assert len(DisagreementSelector().select(pairs, member_returns, 50)) == len(pairs)


def test_agreeing_members_give_zero_disagreement() -> None:
    member_returns = torch.randn(1, 6).expand(4, -1)
    pairs = np.array([[0, 1], [2, 3], [4, 5]])
    np.testing.assert_allclose(preference_disagreement(pairs, member_returns), 0.0, atol=1e-12)


def test_random_is_seeded_and_distinct() -> None:
    pairs = np.zeros((100, 2), dtype=int)
    returns = torch.zeros(3, 1)
    first = RandomSelector(seed=4).select(pairs, returns, 30)
    assert len(set(first.tolist())) == 30
    assert first.min() >= 0 and first.max() < 100
    np.testing.assert_array_equal(first, RandomSelector(seed=4).select(pairs, returns, 30))
    assert not np.array_equal(first, RandomSelector(seed=5).select(pairs, returns, 30))
    assert sorted(RandomSelector(seed=0).select(pairs[:5], returns, 10).tolist()) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("selector", [DisagreementSelector(), RandomSelector(0)])
def test_selectors_satisfy_the_protocol(selector: PairSelector) -> None:
    assert isinstance(selector, PairSelector)
