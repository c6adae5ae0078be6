"""Clips from captured simulator states: nothing rendered while stepping, the queried segments
re-rendered exactly as the env itself would draw them."""

from __future__ import annotations

import doctest
import os
import subprocess
import sys
import textwrap

os.environ.setdefault("MUJOCO_GL", "egl")  # headless MuJoCo rendering

from collections.abc import Sequence
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import SubprocVecEnv

from prefwrap import PreferenceLearner, PreferenceRewardWrapper, SyntheticOracle
from prefwrap.clips.capture import StateRenderer
from prefwrap.clips.video import SmallRender
from prefwrap.records import Preference, Query
from tests.conftest import make_go_right

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore:.*settotalmass")


@pytest.fixture
def needs_pygame() -> None:
    """Gymnasium draws classic-control envs with pygame."""
    pytest.importorskip("pygame", reason='draws classic-control clips: pip install "prefwrap[human]"')


@pytest.fixture
def needs_mujoco() -> None:
    pytest.importorskip("mujoco", reason='simulates and draws MuJoCo envs: pip install "prefwrap[mujoco]"')


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (its module blocks stay out of this one)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )


# Inserted before prefwrap is imported: every import of these fails, as without the extra.
WITHOUT_MUJOCO = """
    import sys
    sys.modules["mujoco"] = None
    sys.modules["gymnasium.envs.mujoco"] = None
"""


def step_randomly(wrapper: PreferenceRewardWrapper, n_steps: int, seed: int = 0) -> list[np.ndarray]:
    """Step with random actions; returns the sub-envs' qpos before each step (MuJoCo only)."""
    rng = np.random.default_rng(seed)
    wrapper.reset()
    qpos = []
    for _ in range(n_steps):
        if wrapper.venv.has_attr("data") and not isinstance(wrapper.venv, SubprocVecEnv):
            qpos.append(np.stack([env.unwrapped.data.qpos.copy() for env in wrapper.venv.envs]))
        low, high = wrapper.action_space.low, wrapper.action_space.high
        wrapper.step(rng.uniform(low, high, size=(wrapper.num_envs, *low.shape)).astype(np.float32))
    return qpos


@pytest.mark.usefixtures("needs_mujoco")
def test_mujoco_steps_keep_states_and_queried_segments_render_like_the_env() -> None:
    wrapper = PreferenceRewardWrapper(make_vec_env("HalfCheetah-v5", n_envs=2, seed=0), record_frames=True)
    assert wrapper.frame_capture == "state"  # no render_mode on the training envs: nothing renders per step
    horizon = wrapper.segment_length
    qpos = step_randomly(wrapper, horizon)
    renderer = wrapper.state_renderer
    assert renderer is not None and renderer.n_renders == 0
    row = int(np.flatnonzero(wrapper.segments.env_indices[: wrapper.segments.size] == 1)[0])
    segment = wrapper.segments.segment(row)
    assert renderer.n_renders == horizon  # only the segment read is rendered
    assert segment.frames is not None and segment.frames.shape == (horizon, 256, 256, 3)
    assert np.abs(np.diff(segment.frames.astype(np.int16), axis=0)).mean() > 0.5  # the cheetah moves

    fast = renderer.render(qpos[0][1:2].astype(np.float32))[0]
    np.testing.assert_array_equal(segment.frames[0], fast)  # frame t shows the state action t was taken in

    reference = gym.make("HalfCheetah-v5", render_mode="rgb_array", width=256, height=256)
    reference.reset(seed=0)
    reference.render()  # its camera aims at the bodies after reset, as a training env's first render
    expected = []
    for t in (0, horizon - 1):
        reference.unwrapped.set_state(qpos[t][1], np.zeros(reference.unwrapped.model.nv))
        expected.append(reference.render())
    reference.close()  # before our renderer draws: Gymnasium would not switch back to its context
    full = StateRenderer(gym.spec("HalfCheetah-v5"), fast=False)
    rendered = full.render(np.stack([qpos[0][1], qpos[-1][1]]).astype(np.float32))
    np.testing.assert_array_equal(rendered, np.stack(expected))  # the env's own picture, float32 states
    full.close()


@pytest.mark.usefixtures("needs_pygame")
def test_classic_control_frames_match_the_envs_own_render() -> None:
    wrapper = PreferenceRewardWrapper(make_vec_env("CartPole-v1", n_envs=1, seed=0), record_frames=True)
    assert wrapper.frame_capture == "state"
    wrapper.reset()
    states = []
    for _ in range(wrapper.segment_length):
        states.append(np.array(wrapper.venv.envs[0].unwrapped.state, dtype=np.float32))
        _, _, dones, _ = wrapper.step(np.array([1]))
        if dones[0]:
            break
    segment = wrapper.segments.segment(0)
    reference = SmallRender(gym.make("CartPole-v1", render_mode="rgb_array"))
    reference.reset(seed=0)
    assert segment.length == len(states)
    for t, state in enumerate(states):
        reference.unwrapped.state = state.astype(np.float64)
        np.testing.assert_array_equal(segment.frames[t], reference.render())
    assert not segment.frames[segment.length :].any()  # padding of a short episode stays black


@pytest.mark.usefixtures("needs_pygame")
def test_classic_control_clips_need_no_mujoco() -> None:
    """Capture imported Gymnasium's MuJoCo module first: without mujoco, CartPole rendered every step."""
    result = run_python(
        WITHOUT_MUJOCO
        + """
    import numpy as np
    from stable_baselines3.common.env_util import make_vec_env
    from prefwrap import PreferenceRewardWrapper

    wrapper = PreferenceRewardWrapper(make_vec_env("CartPole-v1", 2, seed=0), record_frames="state")
    assert wrapper.frame_capture == "state", wrapper.frame_capture
    chosen = PreferenceRewardWrapper(make_vec_env("CartPole-v1", 1), record_frames=True).frame_capture
    assert chosen == "state", chosen
    wrapper.reset()
    for _ in range(2 * wrapper.segment_length):
        wrapper.step(np.ones(2, dtype=np.int64))
    frames = wrapper.segments.segment(0).frames
    assert frames is not None and frames.shape[1:] == (134, 200, 3) and frames.any(), frames
    assert sys.modules["mujoco"] is None  # nothing got around the block
    """
    )
    assert result.returncode == 0, result.stderr


def test_classic_control_trains_without_extras_and_clips_name_the_missing_one() -> None:
    """No mujoco, no pygame: training works; asking for clips fails at once, naming the extra.

    The no-extras CI step's check of the CartPole clip bug: CartPole must be recognised as classic
    control without mujoco (it used to fall back to rendering every step, or call "state" impossible).
    """
    result = run_python(
        WITHOUT_MUJOCO
        + """
    sys.modules["pygame"] = None
    import numpy as np
    from stable_baselines3.common.env_util import make_vec_env
    from prefwrap import PreferenceRewardWrapper

    wrapper = PreferenceRewardWrapper(make_vec_env("CartPole-v1", 2, seed=0))
    wrapper.reset()
    for _ in range(3):
        wrapper.step(np.ones(2, dtype=np.int64))
    for record_frames in (True, "state"):
        try:
            PreferenceRewardWrapper(make_vec_env("CartPole-v1", 1), record_frames=record_frames)
        except ImportError as error:
            assert "CartPole-v1" in str(error) and 'pip install "prefwrap[human]"' in str(error), error
        else:
            raise AssertionError(f"record_frames={record_frames!r} without pygame was accepted")
    """
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.usefixtures("needs_pygame")
def test_states_cross_process_boundaries() -> None:
    venv = make_vec_env(
        "Pendulum-v1", n_envs=2, seed=0, vec_env_cls=SubprocVecEnv, vec_env_kwargs={"start_method": "fork"}
    )
    wrapper = PreferenceRewardWrapper(venv, record_frames=True)
    assert wrapper.frame_capture == "state"
    step_randomly(wrapper, wrapper.segment_length)
    frames = [wrapper.segments.segment(row).frames for row in range(2)]
    assert all(f is not None and f.shape == (wrapper.segment_length, 250, 250, 3) for f in frames)
    assert not np.array_equal(frames[0], frames[1])  # each sub-env's own states
    wrapper.close()


@pytest.mark.usefixtures("needs_pygame")
def test_every_buffered_segment_keeps_its_states() -> None:
    wrapper = PreferenceRewardWrapper(
        make_vec_env("Pendulum-v1", n_envs=2, seed=0), record_frames=True, frame_capacity=2, buffer_size=50
    )
    step_randomly(wrapper, 4 * wrapper.segment_length)
    assert wrapper.segments.size == 8
    assert len(wrapper.segments.rows_with_frames()) == 8  # states are small: frame_capacity is for frames


def test_unregistered_envs_fall_back_to_rendering_every_step() -> None:
    wrapper = PreferenceRewardWrapper(make_vec_env(make_go_right(render_mode="rgb_array"), n_envs=1))
    assert wrapper.frame_capture is None
    recording = PreferenceRewardWrapper(
        make_vec_env(make_go_right(render_mode="rgb_array"), n_envs=1), record_frames=True
    )
    assert recording.frame_capture == "render" and recording.state_renderer is None


@pytest.mark.usefixtures("needs_pygame")
def test_record_frames_picks_or_forces_a_capture_mode() -> None:
    forced = PreferenceRewardWrapper(
        make_vec_env("CartPole-v1", n_envs=1, env_kwargs={"render_mode": "rgb_array"}), record_frames="render"
    )
    assert forced.frame_capture == "render" and forced.state_renderer is None
    forced.reset()
    forced.step(np.array([1]))  # renders the training env itself
    single = PreferenceRewardWrapper(gym.make("CartPole-v1"), record_frames="state", segment_length=3)
    assert single.frame_capture == "state"
    single.reset(seed=0)
    for _ in range(3):
        single.step(1)
    clip = single.segments.segment(0).frames
    assert clip is not None and clip.shape == (3, 134, 200, 3) and clip.any()
    with pytest.raises(ValueError, match="record_frames='render'"):
        PreferenceRewardWrapper(make_vec_env(make_go_right(), n_envs=1), record_frames="state")
    with pytest.raises(ValueError, match="'state' or 'render'"):
        PreferenceRewardWrapper(make_vec_env("CartPole-v1", n_envs=1), record_frames="always")


@pytest.mark.usefixtures("needs_pygame")
def test_a_state_that_does_not_fit_the_registered_env_is_refused() -> None:
    renderer = StateRenderer(gym.spec("CartPole-v1"))
    venv = make_vec_env("Pendulum-v1", n_envs=1)
    venv.reset()
    with pytest.raises(ValueError, match=r"gymnasium\.register"):
        renderer.capture_vec(venv)


class RecordingOracle(SyntheticOracle):
    """A synthetic teacher that, like a person, needs clips and keeps the queries it was shown."""

    needs_frames = True

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.shown: list[Query] = []

    def label(self, queries: Sequence[Query]) -> list[Preference]:
        self.shown.extend(queries)
        return super().label(queries)


@pytest.mark.usefixtures("needs_pygame")
def test_the_learner_renders_only_the_queried_segments(tmp_path: Path) -> None:
    wrapper = PreferenceRewardWrapper(make_vec_env("Pendulum-v1", n_envs=2, seed=0), record_frames=True)
    oracle = RecordingOracle()
    learner = PreferenceLearner(
        wrapper, oracle, total_labels=6, store=tmp_path / "p.sqlite", min_segments=8, seed=0
    )
    step_randomly(wrapper, 10 * wrapper.segment_length)
    learner.collect_labels(wrapper.num_timesteps, total_timesteps=100_000)
    assert oracle.shown and wrapper.segments.size == 20
    shown = {segment.segment_id for query in oracle.shown for segment in (query.left, query.right)}
    assert wrapper.state_renderer is not None
    assert wrapper.state_renderer.n_renders == 2 * len(oracle.shown) * wrapper.segment_length
    assert len(shown) < wrapper.segments.size  # the other segments were never drawn
    stored = learner.store.query(oracle.shown[0].query_id)
    assert stored.left.frames is not None  # the store keeps the clips for other processes


@pytest.mark.usefixtures("needs_pygame")
def test_docstring_example_runs() -> None:
    runner = doctest.DocTestRunner()
    for test in doctest.DocTestFinder().find(
        StateRenderer, globs={"StateRenderer": StateRenderer, "gym": gym}
    ):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0
