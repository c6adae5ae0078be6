"""Clips from captured simulator states: nothing rendered while stepping, the queried segments
re-rendered exactly as the env itself would draw them (MuJoCo locomotion envs: with the camera on the
agent, as :class:`~prefwrap.clips.camera.FollowAgent` draws the env's own frames)."""

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
from prefwrap.clips.camera import FollowAgent
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

    # the env's own picture, with the camera on the agent as evaluation videos get it
    reference = FollowAgent(gym.make("HalfCheetah-v5", render_mode="rgb_array", width=256, height=256))
    reference.reset(seed=0)
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


# ------------------------------------------------ several wrappers in one long-lived process

# Runs in a fresh interpreter: OpenGL state must not leak into (or from) the other tests.
MANY_WRAPPERS = """
    import gc, itertools, os
    os.environ.setdefault("MUJOCO_GL", "egl")
    import numpy as np
    from stable_baselines3.common.env_util import make_vec_env
    from prefwrap import PreferenceRewardWrapper

    ORDERS = None  # which two of a, b, c go, in order (filled in by the test)
    ENVS = {"a": "HalfCheetah-v5", "b": "Pendulum-v1", "c": "HalfCheetah-v5", "d": "HalfCheetah-v5"}

    def make(env_id):
        wrapper = PreferenceRewardWrapper(
            make_vec_env(env_id, n_envs=1, seed=0), record_frames="state", segment_length=5
        )
        rng = np.random.default_rng(0)
        wrapper.reset()
        low, high = wrapper.action_space.low, wrapper.action_space.high
        for _ in range(wrapper.segment_length):
            wrapper.step(rng.uniform(low, high, size=(1, *low.shape)).astype(np.float32))
        return wrapper

    def problem(name, wrapper):
        frames = wrapper.segments.segment(0).frames  # re-rendered now, from the recorded states
        moved = np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean()
        if frames.std() < 5 or moved < 0.05:  # Pendulum: a thin rod on white, std ~17
            return f"{name} ({ENVS[name]}): pixel std {frames.std():.1f}, first-last change {moved:.2f}"

    failures, n_checks = [], 0
    # every order of closing or dropping two of three wrappers, with a new one made in between
    for kinds in itertools.product("xg", repeat=2):  # x: close(); g: del + gc.collect()
        for order in ORDERS:
            ops = ["+a", "+b", "+c", kinds[0] + order[0], "+d", kinds[1] + order[1]]
            alive = {}
            for op in ops:
                verb, name = op
                if verb == "+":
                    alive[name] = make(ENVS[name])
                else:
                    wrapper = alive.pop(name)
                    if verb == "x":
                        wrapper.close()
                    del wrapper
                    gc.collect()
                if verb == "+" and op != ops[-2]:
                    continue  # check after every close or drop, and once all are made
                for other, wrapper in alive.items():
                    n_checks += 1
                    found = problem(other, wrapper)
                    if found:
                        failures.append(f"{' '.join(ops)} | after {op}: {found}")
            for wrapper in alive.values():
                wrapper.close()
    print("\\n".join(failures) or f"OK {n_checks}")
"""


@pytest.mark.usefixtures("needs_mujoco", "needs_pygame")
@pytest.mark.parametrize(
    "orders",
    [
        '["ac"]',  # the two HalfCheetahs go, each closed or dropped: ~15 s
        pytest.param('list(itertools.permutations("abc", 2))', marks=pytest.mark.slow),  # ~90 s
    ],
)
def test_wrappers_made_closed_and_dropped_in_any_order_keep_drawing_their_clips(orders: str) -> None:
    result = run_python(MANY_WRAPPERS.replace("ORDERS = None", f"ORDERS = {orders}"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().startswith("OK"), result.stdout[-5000:]


BROKEN_RENDERER = """
    import os
    os.environ.setdefault("MUJOCO_GL", "egl")
    import numpy as np
    from stable_baselines3.common.env_util import make_vec_env
    from prefwrap import PreferenceRewardWrapper
    from prefwrap.clips.capture import _current

    wrapper = PreferenceRewardWrapper(make_vec_env("HalfCheetah-v5", n_envs=1, seed=0), record_frames="state")
    renderer = wrapper.state_renderer
    states = renderer._reference_state + np.linspace(0, 0.5, 8, dtype=np.float32)[:, None]
    assert renderer.render(states).std() > 20
    # what a MuJoCo env garbage-collected while this renderer's context was current does to it
    with _current(renderer._gl):
        renderer._viewer.con.free()
    try:
        renderer.render(states)
        print("no error for a blank clip")
    except RuntimeError as error:
        print("raised:", error)
    wrapper.close()
    wrapper.close()  # twice is fine
    try:
        renderer.render(states)
        print("no error after close")
    except RuntimeError as error:
        print("closed:", error)
"""


@pytest.mark.usefixtures("needs_mujoco")
def test_a_blank_clip_of_moving_states_raises_naming_the_cause_and_close_releases_the_renderer() -> None:
    result = run_python(BROKEN_RENDERER)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "raised: the HalfCheetah-v5 clip re-rendered from 8 moving states is blank" in out, out
    assert "garbage-collected without close()" in out
    assert "closed: this HalfCheetah-v5 StateRenderer is closed" in out, out


@pytest.mark.usefixtures("needs_pygame")
def test_a_still_picture_of_changing_velocities_is_not_an_error() -> None:
    renderer = StateRenderer.for_env(gym.make("Pendulum-v1"))
    assert renderer is not None
    states = np.array([[0.5, velocity] for velocity in np.linspace(-1, 1, 6)], np.float32)
    frames = renderer.render(states)  # the pendulum does not move: a still clip, and a right one
    assert (frames == frames[0]).all() and frames.std() > 5
    renderer.close()
    with pytest.raises(RuntimeError, match="is closed"):
        renderer.render(states)


def test_an_env_wrapper_closes_its_renderer() -> None:
    pytest.importorskip("pygame")
    wrapper = PreferenceRewardWrapper(gym.make("Pendulum-v1"), record_frames="state")
    renderer = wrapper.state_renderer
    assert renderer is not None
    wrapper.close()
    with pytest.raises(RuntimeError, match="is closed"):
        renderer.render(np.zeros((2, renderer.state_size), np.float32))
