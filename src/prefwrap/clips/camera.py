"""Cameras that keep the agent in the picture: tracking for MuJoCo locomotion envs, and the check that
no frame a person sees shows the agent out of view.

Gymnasium's MuJoCo envs render through a free camera whose ``lookat`` stays where the env's
``default_camera_config`` (or, without one, the bodies at reset) put it: a HalfCheetah is out of the
picture past x ≈ 3 m, and ``trackbodyid`` in that config does nothing, since a free camera ignores
it. :class:`AgentCamera` moves the free camera's ``lookat`` with the agent before every frame:

- **Which envs track**: those whose root body (a child of the world) moves freely: a free joint (Ant,
  Humanoid) or a slide joint without limits (HalfCheetah, Hopper, Walker2d, Swimmer). Fixed-base envs
  (Reacher, Pusher, the inverted pendulums, whose carts slide on a limited rail) keep their camera.
- **Framing**: the env's own, kept. ``lookat`` stays at the offset from the agent's centre of mass
  (``subtree_com`` of the root body) that the env's camera has at its initial state (``init_qpos``), as
  MuJoCo's ``trackcom`` cameras do; distance, azimuth and elevation are the env's. At the initial state
  the picture is the env's own; elsewhere it is that picture moved with the agent. MuJoCo's
  ``mjCAMERA_TRACKING`` would replace ``lookat`` by the centre of mass and lose the env's height
  (Hopper's 1.15 m; Humanoid's 2 m), so the camera stays free and only ``lookat`` moves.
- **The floor comes along**: a floor is drawn only over its size (±40 m for HalfCheetah, ±20 m for
  Hopper), and a trained HalfCheetah runs hundreds of metres: past the edge it would run in a void, and
  a person could not judge its speed. While tracking, the world's horizontal planes are drawn shifted
  under the agent by whole periods of their texture, so the checkerboard stays where it is in the world
  (the motion over it stays visible). Only ``data.geom_xpos`` is changed, after ``mj_forward``/
  ``mj_step`` and for the drawing only: the next step recomputes it, and collisions with a plane do
  not depend on where in its plane it is.
- **The check**: after each frame, the agent's centre of mass is projected through the camera MuJoCo
  drew with (``scn.camera[0]``: position, axes, frustum): it must lie inside the image, in front of the
  camera. Pure geometry, a few microseconds, blind to colours, textures and lighting. A frame that fails
  makes the camera fall back to tracking (a fixed-base env's or a fixed named camera's too); a frame
  that fails while tracking raises :class:`AgentOutOfViewError`: empty floor never reaches a person.

:class:`FollowAgent` puts the same camera on an env's own ``render()``, for evaluation videos.
"""

from __future__ import annotations

import logging
from typing import Any

import gymnasium as gym
import numpy as np

logger = logging.getLogger(__name__)

_FREE_JOINT = 0  # mjtJoint.mjJNT_FREE
_SLIDE_JOINT = 2  # mjtJoint.mjJNT_SLIDE
_PLANE = 0  # mjtGeom.mjGEOM_PLANE


class AgentOutOfViewError(RuntimeError):
    """A frame would show the agent out of the picture, even with the camera tracking it."""


class AgentCamera:
    """Aims a MuJoCo env's free camera at its agent before each frame and checks the frame after.

    Args:
        unwrapped: The unwrapped MuJoCo env (a Gymnasium ``MujocoEnv``) whose viewers this camera aims.
        name: The env's name in messages (its id).

    Attributes:
        body_id: The body whose subtree centre of mass is followed and checked: the root body of a
            locomotion env, else 0 (the world: the centre of mass of every body).
        tracking: Whether :meth:`aim` moves the camera (a locomotion env's free camera, or after
            :meth:`fall_back`).

    Raises:
        ValueError: ``unwrapped`` is not a MuJoCo env (it has no ``model``, ``data``, ``init_qpos``).

    Example:
        >>> env = gym.make("HalfCheetah-v5", render_mode="rgb_array", width=64, height=64)
        >>> _ = env.reset(seed=0)
        >>> camera = AgentCamera(env.unwrapped, "HalfCheetah-v5")
        >>> camera.tracking, camera.body_id  # the torso, the root body
        (True, 1)
        >>> viewer = env.unwrapped.mujoco_renderer._get_viewer("rgb_array")
        >>> camera.aim(viewer, env.unwrapped.data)
        >>> frame = env.render()
        >>> camera.sees_agent(viewer, env.unwrapped.data)
        True
        >>> env.close()
    """

    def __init__(self, unwrapped: Any, name: str) -> None:
        if not all(hasattr(unwrapped, key) for key in ("model", "data", "init_qpos")):
            raise ValueError(f"{name}: {type(unwrapped).__name__} is not a MuJoCo env (no model, data)")
        self.name = name
        model = unwrapped.model
        root = locomotion_root(model)
        self.body_id = root if root is not None else 0
        renderer = getattr(unwrapped, "mujoco_renderer", None)
        self._renderer = renderer
        free = renderer is None or getattr(renderer, "camera_id", -1) in (-1, None)
        self.tracking = root is not None and free
        self.offset, self._start = _initial_framing(unwrapped, self.body_id)
        self.floor_ids, self._floor_periods = _floors(model)

    def aim(self, viewer: Any, data: Any) -> None:
        """Put the free camera's ``lookat`` at the agent's centre of mass plus the env's framing offset,
        and the floors under the agent (by whole texture periods), when tracking.

        Args:
            viewer: A Gymnasium MuJoCo viewer (its ``cam`` is a ``mujoco.MjvCamera``).
            data: The env's ``MjData`` after ``mj_forward`` or ``mj_step`` (``subtree_com`` is set).
                Its floors' ``geom_xpos`` change until the next ``mj_forward`` or ``mj_step``.
        """
        if not self.tracking:
            return
        com = data.subtree_com[self.body_id]
        viewer.cam.lookat[:] = com + self.offset
        if len(self.floor_ids):
            moved = com[:2] - self._start[:2]
            data.geom_xpos[self.floor_ids, :2] += np.round(moved / self._floor_periods) * self._floor_periods

    def sees_agent(self, viewer: Any, data: Any) -> bool:
        """Whether the frame just drawn by ``viewer`` shows the agent's centre of mass.

        Args:
            viewer: The viewer that drew the frame (its scene holds the camera it drew with).
            data: The env's ``MjData`` the frame was drawn from.
        """
        viewport = viewer.viewport
        aspect = viewport.width / max(viewport.height, 1)
        return in_frame(viewer.scn.camera[0], data.subtree_com[self.body_id], aspect)

    def fall_back(self) -> bool:
        """Track the agent from now on (with the free camera); False if it already did.

        For a camera that showed the agent out of view: a fixed-base env's, or a named fixed camera.
        """
        if self.tracking:
            return False
        self.tracking = True
        if self._renderer is not None and hasattr(self._renderer, "camera_id"):
            self._renderer.camera_id = -1  # the free camera, which aim() moves
        logger.warning(
            "%s: the agent left the camera's picture; clips of this env now track it (body %d)",
            self.name,
            self.body_id,
        )
        return True

    def out_of_view_error(self, where: str) -> AgentOutOfViewError:
        """The error for frames (``where``: which) that show the agent out of view while tracking it."""
        return AgentOutOfViewError(
            f"{self.name}: the agent (the centre of mass of body {self.body_id}) is out of the picture "
            f"{where} even with the camera tracking it: the "
            "camera's distance, azimuth or elevation cannot show it (see the env's "
            "default_camera_config). The clip is refused rather than shown as empty floor."
        )


def locomotion_root(model: Any) -> int | None:
    """The root body of an agent that moves through the world, or ``None`` for a fixed-base one.

    The root body is the first child of the world with a free joint or a slide joint without limits
    (an unbounded translation). Limited slides (a cart on a rail, Reacher's target) do not count.

    Args:
        model: A ``mujoco.MjModel``.
    """
    for joint in range(model.njnt):
        body = int(model.jnt_bodyid[joint])
        if body == 0 or int(model.body_parentid[body]) != 0:
            continue
        kind = int(model.jnt_type[joint])
        if kind == _FREE_JOINT or (kind == _SLIDE_JOINT and not model.jnt_limited[joint]):
            return body
    return None


def in_frame(camera: Any, point: np.ndarray, aspect: float) -> bool:
    """Whether ``point`` projects inside the image of an OpenGL camera, in front of it.

    Args:
        camera: A ``mujoco.MjvGLCamera`` (``scn.camera[0]`` after ``mjv_updateScene``).
        point: World position ``(3,)``.
        aspect: Image width / height (MuJoCo widens the frustum to it when ``frustum_width`` is 0).
    """
    # Plain floats: ~10x cheaper than numpy on 3-vectors, and this runs once per frame.
    fx, fy, fz = camera.forward.tolist()
    ux, uy, uz = camera.up.tolist()
    cx, cy, cz = camera.pos.tolist()
    px, py, pz = float(point[0]) - cx, float(point[1]) - cy, float(point[2]) - cz
    depth = px * fx + py * fy + pz * fz
    if depth <= camera.frustum_near:
        return False
    scale = 1.0 if camera.orthographic else camera.frustum_near / depth  # onto the near plane
    right = (fy * uz - fz * uy, fz * ux - fx * uz, fx * uy - fy * ux)  # forward x up
    x = (px * right[0] + py * right[1] + pz * right[2]) * scale
    y = (px * ux + py * uy + pz * uz) * scale
    bottom, top = camera.frustum_bottom, camera.frustum_top
    half_width = camera.frustum_width or 0.5 * aspect * (top - bottom)
    return abs(x - camera.frustum_center) <= half_width and bottom <= y <= top


def _initial_framing(unwrapped: Any, body_id: int) -> tuple[np.ndarray, np.ndarray]:
    """``lookat - centre of mass`` ``(3,)`` of the env's camera and the centre of mass ``(3,)`` of
    ``body_id``'s subtree, at the env's initial state (``init_qpos``).

    The ``lookat`` is Gymnasium's: the ``default_camera_config``'s if it has one, else the median of
    the geoms' positions (what its offscreen viewer aims at when it is made).
    """
    import mujoco

    model = unwrapped.model
    scratch = mujoco.MjData(model)
    scratch.qpos[:] = unwrapped.init_qpos
    mujoco.mj_forward(model, scratch)
    config = getattr(getattr(unwrapped, "mujoco_renderer", None), "default_cam_config", None) or {}
    lookat = config.get("lookat")
    if lookat is None:
        lookat = np.median(scratch.geom_xpos, axis=0)
    com = scratch.subtree_com[body_id].copy()
    return np.asarray(lookat, dtype=np.float64) - com, com


def _floors(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """The world's horizontal, finitely drawn planes: geom ids ``(k,)`` and texture periods ``(k, 2)``.

    A plane's texture repeats ``texrepeat`` times over its drawn size ``2 * size`` (or per metre with
    ``texuniform``); shifting a plane by whole periods leaves its pattern where it was in the world.
    An untextured plane is one colour: any shift will do (period 1 mm).
    """
    ids, periods = [], []
    for geom in range(model.ngeom):
        size = model.geom_size[geom, :2]
        horizontal = np.allclose(np.abs(model.geom_quat[geom]), (1, 0, 0, 0))
        if (
            model.geom_bodyid[geom] != 0
            or model.geom_type[geom] != _PLANE
            or (size <= 0).any()
            or not horizontal
        ):
            continue  # not a floor, or drawn infinite already, or tilted: left alone
        material = int(model.geom_matid[geom])
        repeat = model.mat_texrepeat[material] if material >= 0 else np.zeros(2)
        if (repeat <= 0).any():
            period = np.full(2, 1e-3)
        elif model.mat_texuniform[material]:
            period = 1.0 / repeat
        else:
            period = 2.0 * size / repeat
        ids.append(geom)
        periods.append(period)
    return np.array(ids, dtype=np.int64), np.array(periods, dtype=np.float64).reshape(-1, 2)


def mujoco_unwrapped(env: gym.Env) -> Any | None:
    """``env.unwrapped`` if it is a Gymnasium MuJoCo env, else ``None`` (also without mujoco)."""
    try:
        from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
    except (ImportError, gym.error.DependencyNotInstalled):
        return None
    unwrapped = env.unwrapped
    return unwrapped if isinstance(unwrapped, MujocoEnv) else None


class FollowAgent(gym.Wrapper):
    """Makes ``render()`` of a MuJoCo locomotion env follow the agent, and refuse frames without it.

    The camera of :class:`AgentCamera`: the env's framing, moved with the agent's centre of mass.
    Fixed-base MuJoCo envs render as before unless the agent leaves the picture (then the camera
    tracks it); other envs (classic control, Atari) render as before, so evaluation code can wrap
    every env. Stepping is untouched.

    Args:
        env: The env; made with a ``render_mode`` for ``render()`` to draw anything.
        name: The env's name in messages (default: its spec's id).

    Raises:
        AgentOutOfViewError: From :meth:`render`: a frame would show the agent out of the picture
            even with the camera tracking it.

    Example:
        >>> env = FollowAgent(gym.make("HalfCheetah-v5", render_mode="rgb_array", width=64, height=64))
        >>> _ = env.reset(seed=0)
        >>> env.unwrapped.data.qpos[0] = 30.0  # 30 m on: out of Gymnasium's own picture
        >>> env.unwrapped.set_state(env.unwrapped.data.qpos, env.unwrapped.data.qvel)
        >>> env.render().shape  # the cheetah, in the middle
        (64, 64, 3)
        >>> env.close()
    """

    def __init__(self, env: gym.Env, name: str | None = None) -> None:
        super().__init__(env)
        unwrapped = mujoco_unwrapped(env)
        label = name or (env.spec.id if env.spec is not None else type(env.unwrapped).__name__)
        self._camera = AgentCamera(unwrapped, label) if unwrapped is not None else None

    def render(self) -> Any:
        """The env's frame, with the camera on the agent (``None`` for ``render_mode="human"``).

        Raises:
            AgentOutOfViewError: The agent is out of the picture even with the camera tracking it.
        """
        unwrapped: Any = self.env.unwrapped
        renderer = getattr(unwrapped, "mujoco_renderer", None)
        get_viewer = getattr(renderer, "_get_viewer", None)
        if self._camera is None or self.render_mode is None or get_viewer is None:
            return self.env.render()
        viewer = get_viewer(render_mode=self.render_mode)  # the one env.render() draws with
        data, camera = unwrapped.data, self._camera
        floors = data.geom_xpos[camera.floor_ids].copy()  # moved for the drawing only
        try:
            camera.aim(viewer, data)
            frame = self.env.render()
            if not camera.sees_agent(viewer, data):
                if not camera.fall_back():
                    raise camera.out_of_view_error("in the frame rendered")
                data.geom_xpos[camera.floor_ids] = floors
                camera.aim(viewer, data)
                frame = self.env.render()
                if not camera.sees_agent(viewer, data):
                    raise camera.out_of_view_error("in the frame rendered")
        finally:
            data.geom_xpos[camera.floor_ids] = floors
        return frame
