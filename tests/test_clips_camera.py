"""The clip camera: it follows the agent of MuJoCo locomotion envs, fixed-base envs look as before, and
no frame without the agent reaches a person. "The agent is in the frame" is measured here in pixels,
by MuJoCo's segmentation rendering, independently of the geometric check the camera makes itself."""

from __future__ import annotations

import doctest
import logging
import os

os.environ.setdefault("MUJOCO_GL", "egl")  # headless MuJoCo rendering

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("mujoco", reason='simulates and draws MuJoCo envs: pip install "prefwrap[mujoco]"')

import mujoco

from prefwrap.clips import camera as camera_module
from prefwrap.clips.camera import AgentCamera, AgentOutOfViewError, FollowAgent, in_frame
from prefwrap.clips.capture import StateRenderer, _current

pytestmark = pytest.mark.filterwarnings(
    "ignore::DeprecationWarning", "ignore:.*settotalmass", "ignore:.*without specifying any render mode"
)

LOCOMOTION = ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5", "Swimmer-v5", "Humanoid-v5"]
FIXED_BASE = ["Reacher-v5", "InvertedPendulum-v5", "InvertedDoublePendulum-v5", "Pusher-v5"]
SIDE = 96  # small frames: the pixel measure needs no more, and the tests stay fast
MIN_AGENT_PIXELS = 20  # HalfCheetah covers ~130 of 96x96 pixels at the env's own distance


def agent_mask(unwrapped: Any, viewer: Any) -> np.ndarray:
    """``(height, width)`` bool: pixels where a geom of a body other than the world is drawn.

    Drawn with the viewer's camera as it is now (as the last frame was), by MuJoCo's segmentation
    rendering (Gymnasium's ``segmentation=True`` overflows uint8 under numpy 2). The caller makes the
    viewer's context current.
    """
    model, data, scene = unwrapped.model, unwrapped.data, viewer.scn
    mujoco.mjv_updateScene(
        model, data, viewer.vopt, viewer.pert, viewer.cam, mujoco.mjtCatBit.mjCAT_ALL, scene
    )
    scene.flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = 1
    scene.flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = 1
    try:
        mujoco.mjr_render(viewer.viewport, scene, viewer.con)
        rgb = np.zeros((viewer.viewport.height, viewer.viewport.width, 3), np.uint8)
        mujoco.mjr_readPixels(rgb, None, viewer.viewport, viewer.con)
    finally:
        scene.flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = 0
        scene.flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = 0
    segment_ids = rgb[..., 0] + (rgb[..., 1].astype(np.int64) << 8) + (rgb[..., 2].astype(np.int64) << 16) - 1
    agent = [
        scene.geoms[i].segid
        for i in range(scene.ngeom)
        if scene.geoms[i].objtype == mujoco.mjtObj.mjOBJ_GEOM and model.geom_bodyid[scene.geoms[i].objid] > 0
    ]
    return np.isin(segment_ids, agent)[::-1]


def agent_pixels(renderer: StateRenderer, states: np.ndarray) -> np.ndarray:
    """Agent pixels ``(n,)`` in each frame ``renderer`` draws of ``states``, measured by segmentation."""
    counts = []
    for state in states:
        renderer.render(state[None])  # aims the camera and moves the floor as for a clip
        with _current(renderer._gl):
            counts.append(int(agent_mask(renderer._env.unwrapped, renderer._viewer).sum()))
    return np.array(counts)


def with_x(renderer: StateRenderer, xs: np.ndarray, gait: bool = False) -> np.ndarray:
    """States ``(len(xs), nq)`` of the renderer's reference pose moved to x positions ``xs``.

    ``gait`` swings the joints (all but the root's coordinates) sinusoidally, as a running agent's.
    """
    states = np.repeat(renderer._reference_state, len(xs), axis=0)
    states[:, 0] = xs
    if gait:
        n_joints = states.shape[1] - 3
        phase = np.arange(len(xs))[:, None] * 0.6 + np.arange(n_joints)[None] * 1.3
        states[:, 3:] += 0.5 * np.sin(phase).astype(np.float32)
    return states


def test_a_travelling_half_cheetah_is_in_every_frame_of_every_clip() -> None:
    renderer = StateRenderer(gym.spec("HalfCheetah-v5"), max_side=SIDE)
    assert renderer._camera is not None and renderer._camera.tracking
    states = with_x(renderer, np.linspace(0, 30, 34 * 10), gait=True)  # 34 clips of 10 steps, 0 -> 30 m
    for clip in np.split(states, 34):
        frames = renderer.render(clip)  # the check passes: no AgentOutOfViewError
        assert frames.shape == (10, SIDE, SIDE, 3) and frames.std() > 20
    pixels = agent_pixels(renderer, states[::5])
    assert pixels.min() >= MIN_AGENT_PIXELS, pixels
    renderer.close()


def test_the_pixel_measure_sees_the_bug_the_env_camera_has() -> None:
    """Gymnasium's own camera loses the cheetah past ~3 m: the measure above would catch it."""
    renderer = StateRenderer(gym.spec("HalfCheetah-v5"), max_side=SIDE)
    renderer._camera.tracking = False  # the env's own, fixed camera
    states = with_x(renderer, np.array([0.0, 1.0, 5.0, 30.0]))
    with _current(renderer._gl):
        pixels, seen = [], []
        unwrapped, viewer = renderer._env.unwrapped, renderer._viewer
        for state in states:
            unwrapped.set_state(state.astype(np.float64), np.zeros(unwrapped.model.nv))
            renderer._env.render()
            pixels.append(int(agent_mask(unwrapped, viewer).sum()))
            seen.append(renderer._camera.sees_agent(viewer, unwrapped.data))
    assert pixels[0] >= MIN_AGENT_PIXELS and pixels[1] >= MIN_AGENT_PIXELS
    assert pixels[2] == 0 and pixels[3] == 0  # only floor
    assert seen == [True, True, False, False]  # the geometric check agrees with the pixels
    renderer.close()


@pytest.mark.parametrize("env_id", LOCOMOTION)
def test_every_locomotion_agent_is_tracked_at_the_start_and_far_away(env_id: str) -> None:
    renderer = StateRenderer(gym.spec(env_id), max_side=SIDE)
    assert renderer._camera is not None and renderer._camera.tracking and renderer._camera.body_id == 1
    states = with_x(renderer, np.array([0.0, 10.0, 30.0]))
    if env_id in ("Ant-v5", "Humanoid-v5", "Swimmer-v5"):  # free in the plane: y too
        states[:, 1] = [0.0, -7.0, 12.0]
    frames = renderer.render(states)
    pixels = agent_pixels(renderer, states)
    assert pixels.min() >= MIN_AGENT_PIXELS // 4, pixels  # Swimmer is thin, seen from 8 m
    # the floor came along: its checkerboard fills the bottom of the picture 30 m away as at the start
    bottom = frames[:, -SIDE // 6 :].reshape(len(frames), -1)
    assert bottom.std(axis=1).min() > 20, bottom.std(axis=1)
    renderer.close()


def test_the_floor_keeps_its_place_in_the_world() -> None:
    """Moved by whole texture periods, the floor looks as if it had not moved (±1 level rounding)."""
    renderer = StateRenderer(gym.spec("HalfCheetah-v5"), max_side=SIDE)
    states = with_x(renderer, np.array([1.0, 2.0, 5.0, 9.0]))
    moved = renderer.render(states).astype(int)
    renderer._camera.floor_ids = renderer._camera.floor_ids[:0]
    still = renderer.render(states).astype(int)
    assert np.abs(moved - still).max() <= 1
    renderer.close()


@pytest.mark.parametrize("env_id", FIXED_BASE)
def test_fixed_base_frames_are_the_envs_own(env_id: str) -> None:
    renderer = StateRenderer(gym.spec(env_id), max_side=SIDE, fast=False)
    assert renderer._camera is not None and not renderer._camera.tracking
    reference = gym.make(env_id, render_mode="rgb_array", width=SIDE, height=SIDE)
    reference.reset(seed=0)
    reference.render()  # its camera aims at the bodies after reset, as the renderer's
    rng = np.random.default_rng(0)
    states = renderer._reference_state + rng.uniform(-0.3, 0.3, (4, renderer.state_size)).astype(np.float32)
    expected = []
    for state in states:
        reference.unwrapped.set_state(state.astype(np.float64), np.zeros(reference.unwrapped.model.nv))
        expected.append(reference.render())
    reference.close()
    np.testing.assert_array_equal(renderer.render(states), np.stack(expected))
    renderer.close()


def test_a_broken_tracking_camera_raises_instead_of_showing_floor() -> None:
    renderer = StateRenderer(gym.spec("HalfCheetah-v5"), max_side=SIDE)
    renderer._camera.offset = renderer._camera.offset + np.array([40.0, 0.0, 0.0])  # 40 m ahead of the agent
    states = with_x(renderer, np.linspace(0, 1, 5))
    with pytest.raises(AgentOutOfViewError, match=r"HalfCheetah-v5: the agent .* in 5 of the 5 frames"):
        renderer.render(states)
    assert issubclass(AgentOutOfViewError, RuntimeError)
    renderer.close()


def test_a_camera_that_loses_the_agent_falls_back_to_tracking(caplog: pytest.LogCaptureFixture) -> None:
    renderer = StateRenderer(gym.spec("HalfCheetah-v5"), max_side=SIDE)
    renderer._camera.tracking = False  # as a fixed-base env's camera, or a fixed named one
    states = with_x(renderer, np.linspace(4, 6, 5))  # out of the fixed camera's picture
    with caplog.at_level(logging.WARNING, logger=camera_module.__name__):
        renderer.render(states)
    assert renderer._camera.tracking and "now track it" in caplog.text
    assert agent_pixels(renderer, states).min() >= MIN_AGENT_PIXELS
    renderer.close()


def test_the_check_agrees_with_the_pixels_at_the_edge_of_the_picture() -> None:
    """The check fires when the centre of mass leaves the picture: more than about half the agent's
    pixels have gone then, and while it holds, less than about half have."""
    env = gym.make("HalfCheetah-v5", render_mode="rgb_array", width=SIDE, height=SIDE)
    env.reset(seed=0)
    unwrapped = env.unwrapped
    viewer = unwrapped.mujoco_renderer._get_viewer("rgb_array")
    whole, seen_at = None, []
    for x in np.linspace(0, 5, 26):  # the env's fixed camera: the cheetah runs out of the picture
        qpos = unwrapped.init_qpos.copy()
        qpos[0] = x
        unwrapped.set_state(qpos, np.zeros(unwrapped.model.nv))
        env.render()
        seen = in_frame(viewer.scn.camera[0], unwrapped.data.subtree_com[1], 1.0)
        pixels = agent_mask(unwrapped, viewer).sum()
        whole = whole or pixels
        assert (pixels >= 0.4 * whole) if seen else (pixels <= 0.6 * whole), (x, pixels, whole)
        seen_at.append(seen)
    assert seen_at[0] and not seen_at[-1] and sorted(seen_at, reverse=True) == seen_at  # one crossing
    env.close()


def test_follow_agent_renders_like_the_clips_and_leaves_the_physics_alone() -> None:
    plain = gym.make("HalfCheetah-v5")
    followed = FollowAgent(gym.make("HalfCheetah-v5", render_mode="rgb_array", width=SIDE, height=SIDE))
    plain.reset(seed=1)
    followed.reset(seed=1)
    rng = np.random.default_rng(0)
    for _ in range(20):
        action = rng.uniform(-1, 1, 6)
        frame = followed.render()
        assert frame.shape == (SIDE, SIDE, 3)
        np.testing.assert_array_equal(plain.step(action)[0], followed.step(action)[0])
    # 30 m on: the cheetah, not floor
    unwrapped = followed.unwrapped
    qpos = unwrapped.data.qpos.copy()
    qpos[0] = 30.0
    unwrapped.set_state(qpos, np.zeros(unwrapped.model.nv))
    floors = unwrapped.data.geom_xpos.copy()
    frame = followed.render()
    np.testing.assert_array_equal(unwrapped.data.geom_xpos, floors)  # moved for the drawing only
    assert agent_mask(unwrapped, unwrapped.mujoco_renderer.viewer).sum() >= MIN_AGENT_PIXELS
    # the same picture as a clip of that state (the clip renderer draws without shadows: fast=False)
    renderer = StateRenderer(gym.spec("HalfCheetah-v5"), max_side=SIDE, fast=False)
    followed.close()
    plain.close()
    np.testing.assert_array_equal(renderer.render(qpos[None].astype(np.float32))[0], frame)
    renderer.close()


def test_follow_agent_leaves_other_envs_alone() -> None:
    env = FollowAgent(gym.make("Pendulum-v1"))  # no render_mode: render() returns None, as the env's
    env.reset(seed=0)
    assert env.render() is None
    env.close()
    fixed = FollowAgent(gym.make("Reacher-v5", render_mode="rgb_array", width=SIDE, height=SIDE))
    plain = gym.make("Reacher-v5", render_mode="rgb_array", width=SIDE, height=SIDE)
    fixed.reset(seed=0)
    plain.reset(seed=0)
    first = fixed.render()
    plain_first = plain.render()
    plain.close()  # before the other draws: Gymnasium does not switch contexts back
    np.testing.assert_array_equal(first, plain_first)
    fixed.close()


def test_a_model_without_a_moving_root_has_no_locomotion_root() -> None:
    model = mujoco.MjModel.from_xml_string(
        "<mujoco><worldbody><body><joint type='slide' axis='1 0 0' range='-1 1' limited='true'/>"
        "<geom size='0.1'/></body></worldbody></mujoco>"
    )
    assert camera_module.locomotion_root(model) is None
    with pytest.raises(ValueError, match="not a MuJoCo env"):
        AgentCamera(object(), "thing")


def test_docstring_examples_run() -> None:
    runner = doctest.DocTestRunner()
    for obj in (AgentCamera, FollowAgent):
        for test in doctest.DocTestFinder().find(obj, globs={**vars(camera_module)}):
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0
