"""Tests for prefwrap.reward.learned: zero before fitting, normalisation, fast path, safe save/load."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces

from prefwrap.reward.learned import FAST_PATH_MAX_BATCH, LearnedReward

OBS = spaces.Box(-10.0, 10.0, (3,), np.float32)
ACT = spaces.Box(-1.0, 1.0, (2,), np.float32)


def features(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)).astype(np.float32) * 3, rng.uniform(-1, 1, (n, 2)).astype(np.float32)


def fitted_reward(**kwargs) -> LearnedReward:
    reward = LearnedReward(OBS, ACT, hidden_sizes=(16,), **kwargs)
    reward.refresh(*features(1000))
    return reward


def test_zero_before_the_first_fit() -> None:
    reward = LearnedReward(OBS, ACT)
    obs, act = features(5)
    out = reward.predict(obs, act)
    assert out.shape == (5,) and out.dtype == np.float32
    assert not out.any()
    assert not reward.fitted


@pytest.mark.parametrize("reward_std", [1.0, 0.1])
def test_refresh_normalises_to_zero_mean_and_reward_std(reward_std: float) -> None:
    reward = fitted_reward(reward_std=reward_std)
    assert reward.fitted
    out = reward.predict_features(*features(1000))
    assert abs(out.mean()) < 1e-3 * reward_std
    assert out.std() == pytest.approx(reward_std, rel=1e-3)
    other = reward.predict_features(*features(300, seed=5))
    assert other.std() > 0  # the same statistics apply to other steps: not re-normalised per batch


def test_refresh_replaces_the_statistics() -> None:
    reward = fitted_reward()
    obs, act = features(1000)
    reward.refresh(obs * 5, act)
    shifted = reward.predict_features(obs * 5, act)
    assert abs(shifted.mean()) < 1e-3 and shifted.std() == pytest.approx(1.0, rel=1e-3)


def test_refresh_takes_a_new_snapshot_after_weights_change() -> None:
    reward = fitted_reward()
    obs, act = features(10)
    before = reward.predict_features(obs, act)
    with torch.no_grad():
        for p in reward.model.parameters():
            p.add_(0.5)
    reward.refresh(*features(1000))
    assert not np.allclose(reward.predict_features(obs, act), before)


def test_fast_path_matches_torch_path() -> None:
    reward = fitted_reward()
    obs, act = features(FAST_PATH_MAX_BATCH + 1)
    batched = reward.predict_features(obs, act)  # torch path (batch above the fast-path size)
    small = np.concatenate(
        [reward.predict_features(obs[:100], act[:100]), reward.predict_features(obs[100:200], act[100:200])]
    )
    np.testing.assert_allclose(small, batched[:200], rtol=1e-4, atol=1e-5)
    expected = reward.normalize(reward.member_rewards(obs, act).mean(0).numpy())
    np.testing.assert_allclose(batched, expected, rtol=1e-5, atol=1e-6)


def test_fast_path_applies_statistics_changed_after_refresh() -> None:
    reward = fitted_reward()
    obs, act = features(10)
    before = reward.predict_features(obs, act)
    reward.offset += 1.0  # the folded snapshot is rebuilt for the new shift and scale
    reward.statistics.var = reward.statistics.var * 4
    after = reward.predict_features(obs, act)
    assert not np.allclose(after, before)
    np.testing.assert_allclose(
        after, reward.normalize(reward.member_rewards(obs, act).mean(0).numpy()), atol=1e-5
    )


def test_save_load_round_trip(tmp_path: Path) -> None:
    reward = fitted_reward(n_members=2, reward_std=0.5)
    reward.save(tmp_path / "reward.pt")
    loaded = LearnedReward.load(tmp_path / "reward.pt", OBS, ACT)
    assert loaded.fitted and loaded.n_members == 2 and loaded.reward_std == 0.5
    obs, act = features(50, seed=3)
    np.testing.assert_allclose(loaded.predict(obs, act), reward.predict(obs, act), rtol=1e-6)


def test_load_refuses_other_spaces(tmp_path: Path) -> None:
    fitted_reward().save(tmp_path / "reward.pt")
    with pytest.raises(ValueError, match=r"observation shape \(3,\).*same spaces"):
        LearnedReward.load(tmp_path / "reward.pt", spaces.Box(-1, 1, (4,)), ACT)
    with pytest.raises(ValueError, match="action size 2"):
        LearnedReward.load(tmp_path / "reward.pt", OBS, spaces.Discrete(5))


class Payload:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_load_never_unpickles_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    reward = fitted_reward()
    reward.save(path)
    state = torch.load(path, weights_only=True)
    state["config"]["payload"] = Payload()
    torch.save(state, path)
    with pytest.raises(pickle.UnpicklingError):
        LearnedReward.load(path, OBS, ACT)


def test_load_refuses_unknown_format(tmp_path: Path) -> None:
    path = tmp_path / "reward.pt"
    torch.save({"format_version": 99}, path)
    with pytest.raises(ValueError, match="unknown reward-model format"):
        LearnedReward.load(path, OBS, ACT)


def test_dict_observations() -> None:
    space = spaces.Dict({"a": spaces.Box(-1, 1, (2,)), "b": spaces.Discrete(3)})
    reward = LearnedReward(space, spaces.Discrete(2), hidden_sizes=(8,))
    assert reward.encoder.observation_shape == (5,)
    batch = {"a": np.zeros((4, 2), np.float32), "b": np.array([0, 1, 2, 1])}
    reward.refresh(reward.encoder.observations(batch), reward.encoder.actions(np.array([0, 1, 0, 1])))
    assert reward.predict(batch, np.array([0, 1, 0, 1])).shape == (4,)


def test_invalid_reward_std() -> None:
    with pytest.raises(ValueError, match="reward_std"):
        LearnedReward(OBS, ACT, reward_std=0.0)


def test_uncertainty_penalty_pays_mean_minus_beta_std() -> None:
    obs_space, act_space = spaces.Box(-1, 1, (2,)), spaces.Box(-1, 1, (1,))
    plain = LearnedReward(obs_space, act_space, hidden_sizes=(8,), seed=0)
    pessimistic = LearnedReward(obs_space, act_space, hidden_sizes=(8,), seed=0, uncertainty_penalty=1.5)
    members = np.array([[1.0, 0.0], [3.0, 0.0]])
    np.testing.assert_allclose(plain.combine(members), [2.0, 0.0])
    np.testing.assert_allclose(pessimistic.combine(members), [2.0 - 1.5, 0.0])
    with pytest.raises(ValueError, match="uncertainty_penalty"):
        LearnedReward(obs_space, act_space, uncertainty_penalty=-1.0)
