"""Tests for the image path of prefwrap.segment_buffer: frame-stack dedupe, memory budget, bad input."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.wrappers import FrameStackObservation
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack, VecTransposeImage

from prefwrap.env_utils import frame_stack_of
from prefwrap.image_segment_buffer import ImageSegmentBuffer
from prefwrap.records import Preference, Query
from prefwrap.reward.dataset import PreferenceDataset
from prefwrap.segment_buffer import SegmentBuffer
from prefwrap.wrapper import PreferenceRewardWrapper


class FlickerEnv(gym.Env):
    """Random uint8 frames (seeded), episodes of cycling lengths; reward = mean brightness / 255."""

    def __init__(self, lengths: tuple[int, ...] = (7, 3, 30, 12), size: int = 44, channels: int = 1) -> None:
        self.observation_space = spaces.Box(0, 255, (size, size, channels), np.uint8)
        self.action_space = spaces.Discrete(3)
        self.lengths = lengths
        self.n_episodes = 0
        self.t = 0

    def _frame(self) -> np.ndarray:
        return self.np_random.integers(0, 256, self.observation_space.shape, dtype=np.uint8)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.length = self.lengths[self.n_episodes % len(self.lengths)]
        self.n_episodes += 1
        self.t = 0
        self.frame = self._frame()
        return self.frame, {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        reward = float(self.frame.mean() / 255)
        self.frame = self._frame()
        return self.frame, reward, self.t >= self.length, False, {}


def stacked_stream(
    n_envs: int, n_steps: int, n_stack: int, channels_first: bool, channels: int = 1, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(stacked observations, rewards, dones) per step, as VecFrameStack builds them (zeros at reset)."""
    env = VecFrameStack(DummyVecEnv([lambda: FlickerEnv(channels=channels)] * n_envs), n_stack)
    if channels_first:
        env = VecTransposeImage(env)
    env.seed(seed)
    obs = env.reset()
    steps = []
    for _ in range(n_steps):
        next_obs, rewards, dones, _ = env.step(np.zeros(n_envs, dtype=np.int64))
        steps.append((obs, rewards.astype(np.float32), dones))
        obs = next_obs
    return steps


def fill_both(
    image: ImageSegmentBuffer, steps: list[tuple[np.ndarray, np.ndarray, np.ndarray]]
) -> SegmentBuffer:
    """Feed the same steps to ``image`` and to a plain buffer copying every stack (the reference)."""
    reference = SegmentBuffer(
        image.n_envs, image.segment_length, image.observation_shape, np.uint8, 2, capacity=image.capacity
    )
    for t, (obs, rewards, dones) in enumerate(steps):
        actions = np.stack([rewards, -rewards], axis=1)
        image.add(obs, actions, rewards, dones, timestep=t)
        reference.add(obs, actions, rewards, dones, timestep=t)
    return reference


def assert_same_segments(image: SegmentBuffer, reference: SegmentBuffer) -> None:
    assert image.size == reference.size > 0
    rows = image.newest_rows()
    np.testing.assert_array_equal(rows, reference.newest_rows())
    np.testing.assert_array_equal(image.observations_of(rows), reference.observations_of(rows))
    for row in rows[-5:]:
        a, b = image.segment(int(row)), reference.segment(int(row))
        assert (a.segment_id, a.length) == (b.segment_id, b.length)
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)
        np.testing.assert_array_equal(a.true_rewards, b.true_rewards)
    for got, want in zip(image.valid_steps(7), reference.valid_steps(7), strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(
    ("channels_first", "channels", "n_stack"), [(False, 1, 4), (True, 1, 4), (False, 3, 2), (False, 1, 1)]
)
def test_stack_dedupe_round_trip_is_exact(channels_first: bool, channels: int, n_stack: int) -> None:
    steps = stacked_stream(3, 140, n_stack, channels_first, channels)
    shape = steps[0][0].shape[1:]
    buffer = ImageSegmentBuffer(3, 10, shape, 2, channels_first=channels_first, frame_stack=n_stack)
    assert_same_segments(buffer, fill_both(buffer, steps))
    assert buffer.stack_restarts == 0
    assert {int(n) for n in buffer.lengths[buffer.newest_rows()]} >= {3, 7, 10}  # short, end, full


def test_rows_wrap_around_the_fifo_exactly() -> None:
    steps = stacked_stream(2, 200, 4, channels_first=False)
    buffer = ImageSegmentBuffer(2, 8, (44, 44, 4), 2, channels_first=False, frame_stack=4, max_segments=9)
    assert buffer.capacity == 9
    assert_same_segments(buffer, fill_both(buffer, steps))


def test_bytes_per_step_against_a_copy_of_every_stack() -> None:
    buffer = ImageSegmentBuffer(8, 25, (84, 84, 4), 6, channels_first=False, frame_stack=4, memory_mb=256)
    assert buffer.bytes_per_step == pytest.approx((28 * 84 * 84 + 25 * 7 * 4 + 32) / 25)
    assert buffer.naive_bytes_per_step / buffer.bytes_per_step > 3.5
    assert buffer.nbytes <= 256 * 2**20 < buffer.nbytes + buffer.bytes_per_segment
    assert "MiB" in buffer.describe()
    plain = ImageSegmentBuffer(8, 25, (84, 84, 4), 6, channels_first=False, frame_stack=1, memory_mb=256)
    assert plain.bytes_per_step == pytest.approx(plain.naive_bytes_per_step)


def test_memory_budget_decides_capacity_and_too_small_a_budget_is_refused() -> None:
    small = ImageSegmentBuffer(1, 25, (84, 84, 4), 6, channels_first=False, frame_stack=4, memory_mb=2)
    assert small.capacity == 9  # (2 MiB - one window of 28 frames) // 198,300 B per segment
    capped = ImageSegmentBuffer(1, 25, (84, 84, 4), 6, channels_first=False, frame_stack=4, max_segments=5)
    assert capped.capacity == 5
    with pytest.raises(ValueError, match=r"segment_memory_mb to 0\.57"):
        ImageSegmentBuffer(1, 25, (84, 84, 4), 6, channels_first=False, frame_stack=4, memory_mb=0.1)


def test_bad_frames_are_refused() -> None:
    with pytest.raises(ValueError, match="does not divide"):
        ImageSegmentBuffer(1, 5, (44, 44, 4), 1, channels_first=False, frame_stack=3)
    buffer = ImageSegmentBuffer(1, 5, (44, 44, 4), 1, channels_first=False, frame_stack=4)
    frames = np.zeros((1, 44, 44, 4), np.uint8)
    args = (np.zeros((1, 1), np.float32), np.zeros(1, np.float32), np.zeros(1, bool), 0)
    with pytest.raises(TypeError, match="uint8"):
        buffer.add(frames.astype(np.float32) / 255, *args)
    with pytest.raises(ValueError, match="expected image observations"):
        buffer.add(np.zeros((1, 44, 44, 3), np.uint8), *args)


def test_a_stream_that_is_not_a_frame_stack_is_refused() -> None:
    buffer = ImageSegmentBuffer(1, 5, (44, 44, 4), 1, channels_first=False, frame_stack=4)
    rng = np.random.default_rng(0)
    args = (np.zeros((1, 1), np.float32), np.zeros(1, np.float32), np.zeros(1, bool))
    buffer.add(rng.integers(0, 256, (1, 44, 44, 4), dtype=np.uint8), *args, timestep=0)
    buffer.add(rng.integers(0, 256, (1, 44, 44, 4), dtype=np.uint8), *args, timestep=1)  # restart once
    assert buffer.stack_restarts == 1
    with pytest.raises(ValueError, match="not a stack of 4 frames"):
        buffer.add(rng.integers(0, 256, (1, 44, 44, 4), dtype=np.uint8), *args, timestep=2)


def test_a_gap_in_recording_restarts_the_window_instead_of_joining_steps() -> None:
    steps = stacked_stream(1, 60, 4, channels_first=False)
    buffer = ImageSegmentBuffer(1, 6, (44, 44, 4), 2, channels_first=False, frame_stack=4)
    kept = steps[:20] + steps[23:]  # three steps not recorded mid-episode
    for t, (obs, rewards, dones) in enumerate(kept):
        buffer.add(obs, np.zeros((1, 2), np.float32), rewards, dones, timestep=t)
    assert buffer.stack_restarts == 1
    stream = [obs[0] for obs, _, _ in kept]
    for row in buffer.newest_rows():  # every segment is a run of consecutive recorded stacks
        segment = buffer.segment(int(row))
        valid = segment.observations[: segment.length]
        starts = [t for t in range(len(stream)) if np.array_equal(stream[t], valid[0])]
        assert any(np.array_equal(np.stack(stream[t : t + segment.length]), valid) for t in starts), (
            f"segment {segment.segment_id} joins steps across the gap"
        )


def test_frame_stack_is_found_in_the_env() -> None:
    venv = DummyVecEnv([FlickerEnv])
    assert frame_stack_of(venv) == 1
    assert frame_stack_of(VecFrameStack(venv, 4)) == 4
    assert frame_stack_of(VecTransposeImage(VecFrameStack(venv, 3))) == 3
    assert frame_stack_of(FrameStackObservation(gym.make("CartPole-v1"), 5)) == 5


@pytest.mark.parametrize("transpose", [False, True])
def test_wrapper_records_deduplicated_segments_from_vec_frame_stack(transpose: bool) -> None:
    venv = VecFrameStack(DummyVecEnv([FlickerEnv, FlickerEnv]), 4)
    venv = VecTransposeImage(venv) if transpose else venv
    wrapper = PreferenceRewardWrapper(venv, segment_length=6, segment_memory_mb=8)
    segments = wrapper.segments
    assert isinstance(segments, ImageSegmentBuffer) and segments.frame_stack == 4
    assert segments.channels_first == transpose and wrapper.learned_reward.reward_std == 0.05
    assert segments.capacity == int((8 * 2**20 - 2 * 9 * 44 * 44) // segments.bytes_per_segment)
    reference = SegmentBuffer(2, 6, segments.observation_shape, np.uint8, 3, capacity=segments.capacity)
    obs = wrapper.reset()
    for t in range(80):
        actions = np.array([t % 3, (t + 1) % 3])
        next_obs, _, dones, infos = wrapper.step(actions)
        rewards = np.array([info["true_reward"] for info in infos], np.float32)
        features = np.eye(3, dtype=np.float32)[actions]
        # FlickerEnv episodes always terminate (the agent is shown time limits until anchoring)
        reference.add(obs, features, rewards, dones, 2 * (t + 1), terminated=dones)
        obs = next_obs
    assert_same_segments(segments, reference)


def test_wrapper_refuses_a_budget_too_small_for_two_segments() -> None:
    with pytest.raises(ValueError, match="segment_memory_mb"):
        PreferenceRewardWrapper(VecFrameStack(DummyVecEnv([FlickerEnv]), 4), segment_memory_mb=0.01)


def test_dataset_forgets_image_segments_no_kept_label_uses() -> None:
    steps = stacked_stream(1, 400, 4, channels_first=False)
    buffer = ImageSegmentBuffer(1, 5, (44, 44, 4), 2, channels_first=False, frame_stack=4)
    fill_both(buffer, steps)
    segments = [buffer.segment(int(row)) for row in buffer.newest_rows()]
    dataset = PreferenceDataset(n_members=2, max_labels=10, seed=0)
    for q in range(len(segments) - 1):
        dataset.add(Query(q, segments[q], segments[q + 1]), Preference.LEFT)
        assert len(dataset._segments) <= 2 * 10 + 64 + 2
    tensors = dataset.segment_tensors()
    assert tensors["observations"].dtype.itemsize == 1  # uint8 kept
    left, right, _, _ = dataset.pairs()
    newest = [s.segment_id for s in segments[-11:]]
    assert sorted({dataset._segments[r].segment_id for r in left.tolist() + right.tolist()}) == newest
    np.testing.assert_array_equal(tensors["observations"][left[-1]].numpy(), segments[-2].observations)


def test_every_image_segment_can_be_shown_when_no_frames_are_rendered() -> None:
    steps = stacked_stream(2, 40, 4, channels_first=False)
    buffer = ImageSegmentBuffer(2, 5, (44, 44, 4), 2, channels_first=False, frame_stack=4)
    fill_both(buffer, steps)
    np.testing.assert_array_equal(buffer.rows_with_frames(), buffer.newest_rows())


def test_state_dict_refills_a_new_buffer_with_the_same_stacks() -> None:
    steps = stacked_stream(2, 200, 4, channels_first=False)
    buffer = ImageSegmentBuffer(2, 8, (44, 44, 4), 2, channels_first=False, frame_stack=4, max_segments=9)
    fill_both(buffer, steps)  # wraps around the FIFO
    state = buffer.state_dict()
    assert "observations" not in state and state["frames_store"].shape[1] == 8 + 4 - 1  # each frame once
    restored = ImageSegmentBuffer(2, 8, (44, 44, 4), 2, channels_first=False, frame_stack=4, max_segments=9)
    restored.load_state_dict(state)
    before, after = buffer.newest_rows(), restored.newest_rows()
    np.testing.assert_array_equal(buffer.observations_of(before), restored.observations_of(after))
    np.testing.assert_array_equal(buffer.segment_ids[before], restored.segment_ids[after])
