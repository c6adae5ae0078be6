"""Tests for prefwrap.reward.mlp: the stacked ensemble equals independent members, numpy snapshot."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prefwrap.reward.mlp import EnsembleLinear, MlpRewardEnsemble


def test_ensemble_linear_is_one_independent_layer_per_member() -> None:
    layer = EnsembleLinear(3, 4, 2)
    x = torch.randn(3, 5, 4)
    out = layer(x)
    assert out.shape == (3, 5, 2)
    for m in range(3):
        torch.testing.assert_close(out[m], x[m] @ layer.weight[m] + layer.bias[m])


def test_forward_shapes_shared_and_per_member_inputs() -> None:
    model = MlpRewardEnsemble(4, 2, n_members=3, hidden_sizes=(8,))
    obs, act = torch.randn(10, 4), torch.randn(10, 2)
    shared = model(obs, act)
    assert shared.shape == (3, 10)
    assert not torch.allclose(shared[0], shared[1])  # members are initialised differently
    per_member = model(obs.expand(3, -1, -1), act.expand(3, -1, -1))
    torch.testing.assert_close(per_member, shared)


def test_members_train_independently() -> None:
    model = MlpRewardEnsemble(3, 1, n_members=2, hidden_sizes=(8,))
    model(torch.randn(6, 3), torch.randn(6, 1))[0].sum().backward()
    for layer in model.layers:
        assert layer.weight.grad[0].abs().sum() > 0
        assert layer.weight.grad[1].abs().sum() == 0


def test_use_actions_false_ignores_actions() -> None:
    model = MlpRewardEnsemble(3, 2, n_members=2, hidden_sizes=(8,), use_actions=False)
    obs = torch.randn(5, 3)
    torch.testing.assert_close(model(obs, torch.randn(5, 2)), model(obs, torch.randn(5, 2)))
    with_actions = MlpRewardEnsemble(3, 2, n_members=2, hidden_sizes=(8,))
    assert not torch.allclose(with_actions(obs, torch.randn(5, 2)), with_actions(obs, torch.randn(5, 2)))


def test_input_statistics_standardise_and_are_saved() -> None:
    model = MlpRewardEnsemble(2, 1, n_members=2)
    obs = torch.randn(500, 2) * torch.tensor([10.0, 0.1]) + torch.tensor([5.0, -3.0])
    act = torch.randn(500, 1) * 3
    model.fit_input_statistics(obs, act)
    joined = model.join_inputs(obs, act)
    torch.testing.assert_close(joined.mean(0), torch.zeros(3), atol=1e-4, rtol=0)
    torch.testing.assert_close(joined.std(0), torch.ones(3), atol=1e-4, rtol=0)
    assert {"input_mean", "input_std"} <= set(model.state_dict())
    constant = MlpRewardEnsemble(2, 1, n_members=2)
    constant.fit_input_statistics(torch.ones(10, 2), torch.ones(10, 1))
    assert torch.all(constant.input_std > 0)  # no division by zero on constant features


def test_numpy_snapshot_matches_torch_forward() -> None:
    model = MlpRewardEnsemble(4, 2, n_members=3, hidden_sizes=(16, 16))
    model.fit_input_statistics(torch.randn(100, 4) * 4 + 1, torch.randn(100, 2))
    forward = model.numpy_forward()
    obs = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    act = np.random.default_rng(1).normal(size=(7, 2)).astype(np.float32)
    expected = model(torch.as_tensor(obs), torch.as_tensor(act)).detach().numpy()
    np.testing.assert_allclose(forward(obs, act), expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        model.layers[0].weight.add_(1.0)
    np.testing.assert_allclose(forward(obs, act), expected, rtol=1e-5, atol=1e-5)  # a snapshot, not a view


@pytest.mark.parametrize("hidden_sizes", [(16, 16), (8,), ()])
def test_affine_mean_folds_the_member_mean_and_normalisation(hidden_sizes: tuple[int, ...]) -> None:
    model = MlpRewardEnsemble(4, 2, n_members=3, hidden_sizes=hidden_sizes)
    model.fit_input_statistics(torch.randn(100, 4) * 4 + 1, torch.randn(100, 2))
    snapshot = model.numpy_forward()
    obs = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    act = np.random.default_rng(1).normal(size=(7, 2)).astype(np.float32)
    expected = (model(torch.as_tensor(obs), torch.as_tensor(act)).detach().numpy().mean(0) - 0.3) * 2.5
    folded = snapshot.affine_mean(2.5, 0.3)(obs, act)
    assert folded.shape == (7,) and folded.dtype == np.float32
    np.testing.assert_allclose(folded, expected, rtol=1e-5, atol=1e-5)


def test_invalid_ensemble_size() -> None:
    with pytest.raises(ValueError, match="n_members"):
        MlpRewardEnsemble(2, 1, n_members=0)
