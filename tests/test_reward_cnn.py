"""Tests for prefwrap.reward.cnn: shapes, layouts, one batched forward, train/eval, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

import prefwrap.reward.cnn as cnn
from prefwrap.env_utils import image_channels_first
from prefwrap.records import Preference, Query, Segment
from prefwrap.reward.cnn import CnnRewardEnsemble
from prefwrap.reward.dataset import PreferenceDataset
from prefwrap.reward.fitting import RewardFitter
from prefwrap.reward.learned import LearnedReward

LAST = spaces.Box(0, 255, (84, 84, 4), np.uint8)
FIRST = spaces.Box(0, 255, (4, 84, 84), np.uint8)


def images(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.as_tensor(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))


def test_shapes_shared_and_per_member() -> None:
    model = CnnRewardEnsemble(LAST, action_dim=6, n_members=3).eval()
    with torch.no_grad():
        assert model(images(5, 84, 84, 4), torch.zeros(5, 6)).shape == (3, 5)
        assert model(images(3, 7, 84, 84, 4), torch.zeros(3, 7, 6)).shape == (3, 7)
    model.train()
    assert model(images(5, 84, 84, 4), torch.zeros(5, 6)).shape == (3, 5)
    assert model.n_members == 3 and model.use_actions


def test_per_member_inputs_equal_to_shared_give_the_same_rewards() -> None:
    model = CnnRewardEnsemble(LAST, action_dim=2, n_members=3).eval()
    obs, act = images(4, 84, 84, 4), torch.randn(4, 2)
    with torch.no_grad():
        shared = model(obs, act)
        per_member = model(obs.expand(3, -1, -1, -1, -1), act.expand(3, -1, -1))
    torch.testing.assert_close(shared, per_member)


def test_channel_first_and_last_are_the_same_model() -> None:
    last = CnnRewardEnsemble(LAST, action_dim=3, n_members=2).eval()
    first = CnnRewardEnsemble(FIRST, action_dim=3, n_members=2).eval()
    first.load_state_dict(last.state_dict())
    obs, act = images(6, 84, 84, 4), torch.randn(6, 3)
    with torch.no_grad():
        torch.testing.assert_close(last(obs, act), first(obs.permute(0, 3, 1, 2).contiguous(), act))
    assert image_channels_first(FIRST) and not image_channels_first(LAST)


def test_members_are_independent() -> None:
    model = CnnRewardEnsemble(LAST, action_dim=2, n_members=3).eval()
    obs, act = images(4, 84, 84, 4), torch.randn(4, 2)
    with torch.no_grad():
        before = model(obs, act)
        model.convs[1].weight[16:32].mul_(-3.0)  # member 1's filters of the second convolution
        after = model(obs, act)
        assert torch.equal(before[[0, 2]], after[[0, 2]]) and not torch.allclose(before[1], after[1])
        per_member = obs.expand(3, -1, -1, -1, -1).clone()
        per_member[0] = images(4, 84, 84, 4, seed=1)  # only member 0's inputs change
        changed = model(per_member, act.expand(3, -1, -1))
        assert torch.equal(changed[1:], after[1:]) and not torch.allclose(changed[0], after[0])


def test_one_forward_serves_all_members(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    conv2d = torch.nn.functional.conv2d
    monkeypatch.setattr(torch.nn.functional, "conv2d", lambda *a, **k: calls.append(1) or conv2d(*a, **k))
    for n_members in (1, 5):
        calls.clear()
        model = CnnRewardEnsemble(LAST, action_dim=2, n_members=n_members)
        model(images(3, 84, 84, 4), torch.zeros(3, 2))
        model(images(n_members, 3, 84, 84, 4), torch.zeros(n_members, 3, 2))
        assert len(calls) == 2 * 4  # 4 convolutions per forward, whatever the ensemble size


def test_dropout_and_batch_norm_act_only_in_training() -> None:
    model = CnnRewardEnsemble(LAST, action_dim=2, n_members=2)
    obs, act = images(8, 84, 84, 4), torch.randn(8, 2)
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(obs, act), model(obs, act))
        statistics = model.norms[0].running_mean.clone()
        model(obs, act)
        assert torch.equal(model.norms[0].running_mean, statistics)
        model.train()
        assert not torch.allclose(model(obs, act), model(obs, act))  # dropout
        assert not torch.equal(model.norms[0].running_mean, statistics)  # batch statistics tracked


def test_dropout_keeps_half_and_rescales() -> None:
    x = torch.ones(64, 16, 9, 9).contiguous(memory_format=torch.channels_last)
    y = cnn._dropout(x, 0.5)
    assert (y == 0).float().mean().item() == pytest.approx(0.5, abs=0.01)
    assert y.mean().item() == pytest.approx(1.0, abs=0.02)


def test_actions_enter_only_with_use_actions() -> None:
    obs = images(4, 84, 84, 4)
    with torch.no_grad():
        with_actions = CnnRewardEnsemble(LAST, action_dim=3, use_actions=True).eval()
        assert not torch.allclose(with_actions(obs, torch.zeros(4, 3)), with_actions(obs, torch.ones(4, 3)))
        without = CnnRewardEnsemble(LAST, action_dim=3, use_actions=False).eval()
        torch.testing.assert_close(without(obs, torch.zeros(4, 3)), without(obs, torch.ones(4, 3)))


def test_big_batches_without_gradients_are_chunked_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    model = CnnRewardEnsemble(LAST, action_dim=2).eval()
    obs, act = images(10, 84, 84, 4), torch.randn(10, 2)
    with torch.no_grad():
        whole = model(obs, act)
        monkeypatch.setattr(cnn, "INFERENCE_CHUNK", 3)
        torch.testing.assert_close(model(obs, act), whole)
        per_member = model(obs.expand(3, -1, -1, -1, -1), act.expand(3, -1, -1))
        torch.testing.assert_close(per_member, whole)


def test_l2_penalty_sees_weights_not_batch_norm() -> None:
    names = [name for name, _ in CnnRewardEnsemble(LAST, 2).named_parameters() if name.endswith("weight")]
    assert names == [f"convs.{i}.weight" for i in range(4)] + ["hidden.weight", "output.weight"]


@pytest.mark.parametrize(
    ("shape", "match"),
    [((84, 4, 84), "channel axis"), ((3, 64, 3), "channel axis"), ((84, 84), "rank 3"), ((30, 30, 4), "43")],
)
def test_layouts_it_cannot_use_are_refused(shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CnnRewardEnsemble(spaces.Box(0, 255, shape, np.uint8), 2)


def test_float_images_are_refused() -> None:
    with pytest.raises(TypeError, match="uint8"):
        CnnRewardEnsemble(spaces.Box(0.0, 1.0, (84, 84, 4), np.float32), 2)
    model = CnnRewardEnsemble(LAST, 2)
    with pytest.raises(TypeError, match="uint8"):
        model(torch.zeros(2, 84, 84, 4), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="expected images"):
        model(images(2, 84, 84, 3), torch.zeros(2, 2))


def test_learned_reward_builds_the_cnn_with_the_atari_reward_scale(tmp_path) -> None:
    action_space = spaces.Discrete(6)
    reward = LearnedReward(LAST, action_space)
    assert isinstance(reward.model, CnnRewardEnsemble) and reward.reward_std == 0.05
    assert LearnedReward(spaces.Box(-1, 1, (3,)), action_space).reward_std == 1.0
    obs = np.random.default_rng(0).integers(0, 256, (20, 84, 84, 4), dtype=np.uint8)
    reward.refresh(obs, reward.encoder.actions(np.arange(20) % 6))
    out = reward.predict(obs, np.arange(20) % 6)
    assert out.shape == (20,) and np.isfinite(out).all() and abs(out.mean()) < 1e-3
    reward.save(tmp_path / "cnn.pt")
    loaded = LearnedReward.load(tmp_path / "cnn.pt", LAST, action_space)
    np.testing.assert_allclose(loaded.predict(obs, np.arange(20) % 6), out, rtol=1e-5, atol=1e-6)


def _bright_segment(segment_id: int, rng: np.random.Generator, horizon: int = 1) -> Segment:
    """44x44 grayscale frames with a square somewhere; the true reward is its brightness."""
    obs = np.zeros((horizon, 44, 44, 1), np.uint8)
    rewards = rng.uniform(0, 1, horizon).astype(np.float32)
    for t, value in enumerate(rewards):
        y, x = rng.integers(0, 30, 2)
        obs[t, y : y + 14, x : x + 14] = int(value * 255)
    return Segment(segment_id, obs, np.zeros((horizon, 0), np.float32), rewards, horizon)


def test_fits_preferences_on_images() -> None:
    rng = np.random.default_rng(0)
    segments = [_bright_segment(i, rng) for i in range(60)]
    dataset = PreferenceDataset(n_members=2, seed=0)
    for q in range(100):
        left, right = rng.choice(60, 2, replace=False)
        better = segments[left].true_return > segments[right].true_return
        query = Query(q, segments[left], segments[right])
        dataset.add(query, Preference.LEFT if better else Preference.RIGHT)
    model = CnnRewardEnsemble(spaces.Box(0, 255, (44, 44, 1), np.uint8), 0, n_members=2, use_actions=False)
    report = RewardFitter(model, batch_size=16, epochs=25, max_seconds=None, seed=0).fit(dataset)
    assert report.validation_accuracy > 0.75  # 0.88 with these seeds
