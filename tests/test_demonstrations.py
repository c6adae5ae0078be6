"""Demonstrations: safe loading of both file layouts, segments, and "demo ≻ policy" labels in a run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces

from prefwrap.demonstrations import (
    DEMO_LABELER,
    DemonstrationPreferences,
    Trajectory,
    demonstration_segments,
    load_demonstrations,
    save_demonstrations,
)
from prefwrap.encoding import InputEncoder
from prefwrap.records import Preference
from prefwrap.reward.learned import LearnedReward
from prefwrap.segment_buffer import SegmentBuffer
from prefwrap.store import PreferenceStore


def episode(length: int, offset: float = 0.0) -> Trajectory:
    observations = np.arange(length * 3, dtype=np.float32).reshape(length, 3) + offset
    return Trajectory(observations, np.ones((length, 1), np.float32), np.full(length, -1.0, np.float32))


def test_both_layouts_load_the_same_episodes(tmp_path: Path) -> None:
    per_episode = tmp_path / "a.npz"
    save_demonstrations(per_episode, [episode(5), episode(3, 100.0)])
    flat = tmp_path / "b.npz"
    np.savez(
        flat,
        observations=np.concatenate([episode(5).observations, episode(3, 100.0).observations]),
        actions=np.ones((8, 1), np.float32),
        rewards=np.full(8, -1.0),
        episode_starts=np.array([1, 0, 0, 0, 0, 1, 0, 0], bool),
    )
    for path in (per_episode, flat):
        loaded = load_demonstrations(path)
        assert [len(t.observations) for t in loaded] == [5, 3]
        np.testing.assert_array_equal(loaded[1].observations, episode(3, 100.0).observations)
        assert loaded[0].rewards is not None and loaded[0].rewards.sum() == -5


def test_unsafe_or_malformed_files_are_refused(tmp_path: Path) -> None:
    pickled = tmp_path / "p.npz"
    np.savez(pickled, obs_0=np.array([{"x": 1}], dtype=object), acts_0=np.zeros((1, 1)))
    with pytest.raises(ValueError, match="never unpickled"):
        load_demonstrations(pickled)
    wrong = tmp_path / "w.npz"
    np.savez(wrong, states=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="expected obs_0, acts_0"):
        load_demonstrations(wrong)
    uneven = tmp_path / "u.npz"
    np.savez(uneven, obs_0=np.zeros((3, 2)), acts_0=np.zeros((2, 1)))
    with pytest.raises(ValueError, match="episode 0 has arrays of lengths"):
        load_demonstrations(uneven)


def test_episodes_are_cut_into_full_segments() -> None:
    encoder = InputEncoder(spaces.Box(-1e6, 1e6, (3,)), spaces.Box(-0.5, 0.5, (1,)))
    segments = demonstration_segments(
        [episode(70), episode(10)], encoder, segment_length=30, first_segment_id=50
    )
    assert [s.segment_id for s in segments] == [50, 51, 52]
    assert [s.length for s in segments] == [30, 30, 10]  # 70 = 30 + 30 (+ 10 dropped); 10: one padded
    assert segments[0].actions.max() == 0.5  # encoded as the reward model sees actions: clipped
    assert segments[2].observations.shape == (30, 3) and not segments[2].terminated
    assert segments[1].true_return == -30 and segments[0].env_index == -1
    with pytest.raises(ValueError, match=r"demo_weight must be in \(0, 1\]"):
        DemonstrationPreferences(segments, weight=1.5, pairs_per_round=1)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_demonstrations_become_weighted_stored_labels(tmp_path: Path) -> None:
    import gymnasium as gym
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    from prefwrap import PreferenceCallback, PreferenceRewardWrapper, SyntheticOracle

    env = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=0)
    observations, actions = [], []
    for _ in range(90):
        action = np.array([np.clip(-2.0 * obs[2], -2, 2)], np.float32)
        observations.append(obs)
        actions.append(action)
        obs, *_ = env.step(action)
    demos = tmp_path / "demos.npz"
    save_demonstrations(demos, [Trajectory(np.array(observations), np.array(actions))])
    venv = PreferenceRewardWrapper(make_vec_env("Pendulum-v1", n_envs=2, seed=0))
    store = tmp_path / "prefs.db"
    callback = PreferenceCallback(
        venv,
        SyntheticOracle(),
        20,
        min_segments=8,
        store=store,
        demonstrations=demos,
        seed=0,
        demo_weight=0.5,
        demo_pairs_per_round=4,
    )
    PPO("MlpPolicy", venv, n_steps=256, seed=0).learn(2048, callback=callback)
    learner = callback.learner
    assert learner.n_labels == 20 and learner.n_demo_labels > 0  # the budget counts the oracle only
    weights = learner.dataset.labels().weights
    assert (
        sorted(set(weights.tolist())) == [0.5, 1.0] and int((weights == 0.5).sum()) == learner.n_demo_labels
    )
    with PreferenceStore(store) as opened:
        demo_labels = [label for label in opened.labels() if label.labeler == DEMO_LABELER]
        assert len(demo_labels) == learner.n_demo_labels
        assert all(label.preference is Preference.LEFT for label in demo_labels)
        assert opened.segment(demo_labels[0].left_id).env_index == -1
    resumed = PreferenceCallback(venv, SyntheticOracle(), 20, store=store, seed=1)
    assert resumed.learner.n_labels == 20 and resumed.learner.n_demo_labels == learner.n_demo_labels


def reward_of_first_feature(encoder_spaces: tuple[spaces.Box, spaces.Box]) -> LearnedReward:
    """A fitted 1-member reward whose value is the first observation feature (positive inputs)."""
    reward = LearnedReward(*encoder_spaces, n_members=1, hidden_sizes=(4,), seed=0)
    with torch.no_grad():
        for layer in reward.model.layers:
            layer.weight.zero_()
            layer.bias.zero_()
            layer.weight[0, 0, 0] = 1.0
    reward.fitted = True
    return reward


def policy_buffer(values: list[float], first_segment_id: int, segment_length: int = 5) -> SegmentBuffer:
    """One env's segments of constant observation ``value`` each, in order."""
    buffer = SegmentBuffer(1, segment_length, (3,), np.float32, 1, 100, first_segment_id)
    for step, value in enumerate(np.repeat(values, segment_length)):
        buffer.add(
            np.full((1, 3), value, np.float32),
            np.zeros((1, 1), np.float32),
            np.zeros(1, np.float32),
            np.array([(step + 1) % segment_length == 0]),
            step,
        )
    return buffer


def test_the_first_round_pairs_every_demonstration_and_later_ones_only_policies_below_them(
    tmp_path: Path,
) -> None:
    box_spaces = (spaces.Box(0, 100, (3,)), spaces.Box(-1, 1, (1,)))
    demo = Trajectory(np.full((15, 3), 5.0, np.float32), np.zeros((15, 1), np.float32))
    segments = demonstration_segments([demo], InputEncoder(*box_spaces), 5, first_segment_id=1000)
    demos = DemonstrationPreferences(segments, weight=1.0, pairs_per_round=4, seed=0)
    reward = reward_of_first_feature(box_spaces)
    with PreferenceStore(tmp_path / "p.db") as store:
        worse = policy_buffer([1.0, 2.0], 0)
        first = demos.add_pairs(store, worse, 0, reward, first_round=True)
        # every demonstration segment once, whatever pairs_per_round says, all answered LEFT
        assert sorted(q.segments[0].segment_id for q in first) == [1000, 1001, 1002]
        assert [label.preference for label in store.labels()] == [Preference.LEFT] * 3
        assert len(demos.add_pairs(store, worse, 3, reward, first_round=False)) == 2  # both below 5 * 5
        mixed = policy_buffer([1.0, 9.0, 2.0, 8.0], 10)
        later = demos.add_pairs(store, mixed, 5, reward, first_round=False)
        assert sorted(float(q.segments[1].observations[0, 0]) for q in later) == [1.0, 2.0]
        better = policy_buffer([9.0, 8.0], 20)
        assert demos.add_pairs(store, better, 7, reward, first_round=False) == []  # the policy caught up
        reward.fitted = False  # before any fit the reward model cannot tell: pairs are kept
        assert len(demos.add_pairs(store, better, 7, reward, first_round=False)) == 2


def test_the_cli_summary_counts_demonstration_pairs_apart_from_the_budget(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from prefwrap.cli.evaluate import label_counts
    from prefwrap.cli.report import print_summary
    from prefwrap.cli.run_dir import RunDir
    from prefwrap.records import Query

    box_spaces = (spaces.Box(0, 100, (3,)), spaces.Box(-1, 1, (1,)))
    demo = Trajectory(np.full((15, 3), 5.0, np.float32), np.zeros((15, 1), np.float32))
    segments = demonstration_segments([demo], InputEncoder(*box_spaces), 5, first_segment_id=1000)
    demos = DemonstrationPreferences(segments, weight=1.0, pairs_per_round=4, seed=0)
    policy = policy_buffer([1.0, 2.0], 0)
    with PreferenceStore(tmp_path / "p.db") as store:
        demos.add_pairs(store, policy, 0, reward_of_first_feature(box_spaces), first_round=True)
        store.add_queries([Query(3, policy.segment(0), policy.segment(1))])
        store.add_label(3, Preference.RIGHT, "oracle")
        counts = label_counts(store, budget=10)
    assert counts == {"labels": 1, "label_budget": 10, "skipped": 0, "demo_labels": 3}
    print_summary({"algo": "ppo", **counts}, RunDir(tmp_path / "run"))
    assert "1 / 10 (+3 demonstration pairs)" in capsys.readouterr().out


def test_many_demonstrations_are_scored_in_chunks_in_order() -> None:
    box_spaces = (spaces.Box(0, 10_000, (3,)), spaces.Box(-1, 1, (1,)))
    n = 2000  # more segments than one prediction chunk holds (8,192 steps / 5)
    demo = Trajectory(
        np.repeat(np.arange(n, dtype=np.float32), 5)[:, None].repeat(3, 1), np.zeros((5 * n, 1))
    )
    segments = demonstration_segments([demo], InputEncoder(*box_spaces), 5, first_segment_id=0)
    returns = DemonstrationPreferences(segments, 1.0, 1)._member_returns(reward_of_first_feature(box_spaces))
    np.testing.assert_allclose(returns[0].numpy(), 5.0 * np.arange(n))  # segment i: 5 steps of value i
