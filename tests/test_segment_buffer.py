"""Tests for prefwrap.segment_buffer: segments never span episodes, ends are emitted, FIFO, copies."""

from __future__ import annotations

import numpy as np
import pytest

from prefwrap.segment_buffer import SegmentBuffer


def make_buffer(n_envs: int = 1, h: int = 4, capacity: int = 100, **kwargs) -> SegmentBuffer:
    return SegmentBuffer(n_envs, h, (3,), np.float32, 1, capacity=capacity, **kwargs)


def run(buffer: SegmentBuffer, episode_lengths: list[list[int]], n_steps: int) -> None:
    """Step every env through its episode lengths; observation = (env, episode, step in episode)."""
    n_envs = buffer.n_envs
    episode = np.zeros(n_envs, dtype=int)
    step = np.zeros(n_envs, dtype=int)
    for t in range(n_steps):
        obs = np.stack([[e, episode[e], step[e]] for e in range(n_envs)]).astype(np.float32)
        lengths = [episode_lengths[e][episode[e] % len(episode_lengths[e])] for e in range(n_envs)]
        dones = np.array([step[e] + 1 == lengths[e] for e in range(n_envs)])
        buffer.add(obs, obs[:, 2:3] * 10, obs[:, 2] + 100 * obs[:, 1], dones, timestep=t + 1)
        step += 1
        step[dones] = 0
        episode[dones] += 1


def segments(buffer: SegmentBuffer) -> list:
    return [buffer.segment(int(row)) for row in buffer.newest_rows()]


def test_segments_never_span_episodes_and_every_episode_end_is_emitted() -> None:
    buffer = make_buffer(n_envs=3, h=4)
    lengths = [[3, 7, 12, 5], [4, 8], [1, 2, 9, 6, 10]]
    run(buffer, lengths, 60)
    ends = set()
    for seg in segments(buffer):
        valid = seg.observations[: seg.length]
        assert np.all(valid[:, 0] == seg.env_index)
        assert len(set(valid[:, 1])) == 1, "a segment spans two episodes"
        np.testing.assert_array_equal(np.diff(valid[:, 2]), 1)  # contiguous steps, in time order
        episode = int(valid[0, 1])
        length = lengths[seg.env_index][episode % len(lengths[seg.env_index])]
        if valid[-1, 2] == length - 1:
            ends.add((seg.env_index, episode))
    finished = set()
    for env, env_lengths in enumerate(lengths):
        total, episode = 0, 0
        while total + env_lengths[episode % len(env_lengths)] <= 60:
            total += env_lengths[episode % len(env_lengths)]
            finished.add((env, episode))
            episode += 1
    assert ends == finished


def test_discard_partial_starts_every_window_afresh() -> None:
    buffer = make_buffer(n_envs=3, h=4)
    run(buffer, [[6], [3], [5]], 6)  # leaves the envs' windows filled to different depths
    buffer.discard_partial()
    first_new_id = buffer.next_segment_id
    run(buffer, [[9], [2], [7]], 20)
    fresh = [seg for seg in segments(buffer) if seg.segment_id >= first_new_id]
    for seg in fresh:  # no step from before the discard: contiguous steps of one episode
        valid = seg.observations[: seg.length]
        assert len(set(valid[:, 1])) == 1
        np.testing.assert_array_equal(np.diff(valid[:, 2]), 1)
    for env in range(3):
        assert next(seg for seg in fresh if seg.env_index == env).observations[0, 2] == 0


def test_episode_end_emits_the_last_h_steps_overlapping() -> None:
    buffer = make_buffer(h=4)
    run(buffer, [[6]], 6)
    first, last = segments(buffer)
    np.testing.assert_array_equal(first.observations[:, 2], [0, 1, 2, 3])
    np.testing.assert_array_equal(last.observations[:, 2], [2, 3, 4, 5])
    assert first.length == last.length == 4
    np.testing.assert_array_equal(last.true_rewards, [2, 3, 4, 5])
    np.testing.assert_array_equal(last.actions[:, 0], [20, 30, 40, 50])


def test_episode_of_exactly_h_steps_is_emitted_once() -> None:
    buffer = make_buffer(h=4)
    run(buffer, [[8]], 8)
    assert [list(s.observations[:, 2]) for s in segments(buffer)] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def test_short_episode_gives_a_masked_padded_segment() -> None:
    buffer = make_buffer(h=5)
    run(buffer, [[2, 5]], 7)
    short, full = segments(buffer)
    assert short.length == 2 and short.horizon == 5
    np.testing.assert_array_equal(short.observations[:2, 2], [0, 1])
    assert not short.observations[2:].any() and not short.true_rewards[2:].any()
    assert short.true_return == pytest.approx(0 + 1)
    assert full.length == 5
    obs, act = buffer.valid_steps()
    assert obs.shape == (7, 3) and act.shape == (7, 1)  # padding is not a step


def test_fifo_capacity_keeps_the_newest() -> None:
    buffer = make_buffer(h=2, capacity=3, first_segment_id=100)
    run(buffer, [[100]], 10)
    assert buffer.size == 3
    assert [s.segment_id for s in segments(buffer)] == [102, 103, 104]
    assert [s.observations[0, 2] for s in segments(buffer)] == [4, 6, 8]
    assert [s.timestep for s in segments(buffer)] == [6, 8, 10]
    assert buffer.next_segment_id == 105
    assert len(buffer.newest_rows(2)) == 2 and buffer.segment(int(buffer.newest_rows(1)[0])).segment_id == 104


def test_inputs_are_copied_not_aliased() -> None:
    buffer = make_buffer(h=2)
    obs = np.ones((1, 3), np.float32)
    act = np.ones((1, 1), np.float32)
    rewards = np.ones(1, np.float32)
    for _ in range(2):
        buffer.add(obs, act, rewards, np.array([False]), timestep=0)
        obs[:] = 7.0  # an env reusing its observation buffer
        act[:] = 7.0
        rewards[:] = 7.0
    seg = buffer.segment(0)
    np.testing.assert_array_equal(seg.observations[0], [1, 1, 1])
    np.testing.assert_array_equal(seg.actions[0], [1])
    assert seg.true_rewards[0] == 1
    seg.observations[:] = -5.0  # a returned segment is a copy too
    assert buffer.segment(0).observations[0, 0] == 1


def test_frames_are_kept_for_the_newest_frame_capacity_segments() -> None:
    buffer = make_buffer(h=2, frame_capacity=2)
    for t in range(8):
        frame = np.full((1, 3, 3, 3), t, np.uint8)
        buffer.add(
            np.zeros((1, 3), np.float32),
            np.zeros((1, 1), np.float32),
            np.zeros(1),
            np.array([False]),
            t,
            frame,
        )
    segs = segments(buffer)
    assert [s.frames is None for s in segs] == [True, True, False, False]
    np.testing.assert_array_equal(segs[3].frames[:, 0, 0, 0], [6, 7])
    np.testing.assert_array_equal(segs[2].frames[:, 0, 0, 0], [4, 5])
    assert [buffer.segment(int(r)).segment_id for r in buffer.rows_with_frames()] == [2, 3]


def test_integer_dones_are_treated_as_flags() -> None:
    """VecEnvs outside SB3 may return 0/1 integer dones; they must not be used as indices."""
    buffer = make_buffer(n_envs=2, h=3)
    zeros = np.zeros((2, 3), np.float32)
    for t in range(3):
        obs = zeros + t
        buffer.add(obs, zeros[:, :1], np.zeros(2), np.array([0, 1 if t == 1 else 0]), t)
    lengths = sorted(int(buffer.lengths[r]) for r in buffer.newest_rows())
    assert lengths == [2, 3]  # env 1 ended after 2 steps, env 0 filled a full segment


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="segment_length"):
        make_buffer(h=0)
    with pytest.raises(ValueError, match="capacity"):
        make_buffer(capacity=1)


def test_state_dict_refills_a_new_buffer_with_the_same_segments_and_frames() -> None:
    buffer = make_buffer(n_envs=2, h=3, capacity=5, frame_capacity=3)
    for t in range(23):  # the FIFO and the frame ring both wrap around
        obs = np.full((2, 3), t, np.float32)
        buffer.add(
            obs, obs[:, :1], np.full(2, t), np.array([t % 7 == 6] * 2), t, np.full((2, 2, 2, 3), t, np.uint8)
        )
    state = buffer.state_dict()
    assert all(isinstance(value, np.ndarray) for value in state.values())  # np.savez, no pickle

    restored = make_buffer(n_envs=2, h=3, capacity=5, frame_capacity=3)
    restored.load_state_dict(state)
    for before, after in zip(segments(buffer), segments(restored), strict=True):
        assert before.segment_id == after.segment_id and before.timestep == after.timestep
        np.testing.assert_array_equal(before.observations, after.observations)
        np.testing.assert_array_equal(before.actions, after.actions)
        assert (before.frames is None) == (after.frames is None)
        if before.frames is not None:
            np.testing.assert_array_equal(before.frames, after.frames)
    assert restored.next_segment_id == buffer.next_segment_id
    np.testing.assert_array_equal(
        restored.segment_ids[restored.rows_with_frames()], buffer.segment_ids[buffer.rows_with_frames()]
    )
    smaller = make_buffer(n_envs=2, h=3, capacity=2)  # keeps the newest
    smaller.load_state_dict(state)
    assert [s.segment_id for s in segments(smaller)] == [s.segment_id for s in segments(buffer)][-2:]
    with pytest.raises(ValueError, match="not this run's env and segment length"):
        make_buffer(n_envs=2, h=4).load_state_dict(state)
