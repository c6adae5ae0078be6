"""Clips for human labelers without rendering every step: keep each step's simulator state, re-render
only the segments that are queried.

Rendering is by far the most expensive part of a step for MuJoCo on a CPU (tens of milliseconds
with software OpenGL, against ~0.1 ms for the physics), and a person sees only a few thousand of the
millions of recorded steps. :class:`StateRenderer` records the few numbers that fix the picture (MuJoCo
``qpos``; the ``state`` of Gymnasium's classic-control envs) at every step and, when a segment becomes
a query, sets them in a private copy of the env (rebuilt from its registered spec) and renders there.
Training envs are never touched and need no ``render_mode``.

OpenGL in a long-lived process (a notebook, a sweep, an evaluation env beside the training one):
every MuJoCo renderer has its own context, and MuJoCo frees a renderer's GPU objects in whatever
context is *current*, deleting another renderer's (same numbers) when it is not its own: that
renderer then draws black, silently. So each :class:`StateRenderer` makes its context current only
while it draws and gives the previous one back, frees its objects under its own context on
:meth:`~StateRenderer.close` (the wrapper's ``close()``) or when garbage-collected, and checks every
clip: a blank or still clip of moving states raises instead of reaching a person or a file.

The camera follows the agent of MuJoCo locomotion envs and every frame is checked to show it
(:mod:`~prefwrap.clips.camera`): a clip with the agent out of view never reaches a person either.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.envs.registration import EnvSpec
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from prefwrap.clips.camera import AgentCamera
from prefwrap.clips.video import SmallRender

MAX_FRAME_SIDE = 256  # a labeler judges a 1.5 s clip as well at 256 px as at 480, at less memory
_MUJOCO = "mujoco"
_CLASSIC = "classic"


class StateRenderer:
    """Captures per-step render states of envs built from ``spec`` and renders them on demand.

    Build one with :meth:`for_vec_env` or :meth:`for_env`, which return ``None`` when the env's
    picture cannot be rebuilt from its state (then frames must be rendered at every step).

    MuJoCo clips are drawn by :class:`~prefwrap.clips.camera.AgentCamera`: the env's own framing,
    moved with the agent of a locomotion env (HalfCheetah, Hopper, Walker2d, Ant, Swimmer, Humanoid);
    fixed-base envs (Reacher, Pusher, the inverted pendulums) keep the env's camera. Every frame is
    checked to show the agent; a clip that does not is drawn again with the camera tracking the agent,
    and refused if it still does not.

    Args:
        spec: The registered spec of the training envs (kwargs such as ``xml_file`` are kept).
        max_side: Largest height or width of the rendered frames.
        fast: Render MuJoCo without shadows, reflections and anti-aliasing: 14x cheaper with
            software OpenGL (2.2 vs 32 ms per 256x256 HalfCheetah frame), and the motion a labeler
            judges is as clear.

    Raises:
        ValueError: The env is neither a MuJoCo nor a classic-control env.
        ImportError: It is a classic-control env and pygame, which Gymnasium draws them with, is not
            installed: refused here rather than when the first query is drawn, hours into training.
        RuntimeError: The env's first picture is blank: OpenGL cannot draw here (see ``MUJOCO_GL``).

    Example:
        >>> env = gym.make("CartPole-v1")
        >>> _ = env.reset(seed=0)
        >>> renderer = StateRenderer.for_env(env)
        >>> states = renderer.capture(env)  # (1, 4): cart position and velocity, pole angle and velocity
        >>> renderer.render(states).shape  # drawn by a private CartPole, never by ``env``
        (1, 134, 200, 3)
    """

    def __init__(self, spec: EnvSpec, max_side: int = MAX_FRAME_SIDE, fast: bool = True) -> None:
        kwargs = {key: value for key, value in spec.kwargs.items() if key != "render_mode"}
        bare = dataclasses.replace(
            spec, kwargs=kwargs, additional_wrappers=(), order_enforce=False, disable_env_checker=True
        )
        probe = gym.make(bare)
        self.kind = _kind_of(probe.unwrapped)
        probe.close()
        if self.kind is None:
            raise ValueError(f"{spec.id}: only MuJoCo and classic-control envs can be re-rendered from state")
        self.env_id = spec.id
        if self.kind == _MUJOCO:
            size = {"width": max_side, "height": max_side}
            # Making a viewer makes its context current and leaves it so: an env that already renders
            # in this process (e.g. an evaluation env) would then draw into ours. Give its own back.
            with _previous_context_restored():
                self._env: gym.Env = gym.make(bare, render_mode="rgb_array", **{**size, **kwargs})
                self._env.reset(seed=0)  # the free camera aims where the bodies are when it is made
                self._viewer = _offscreen_viewer(self._env.unwrapped, fast)
        else:
            _require_pygame(spec.id)
            self._env = SmallRender(gym.make(bare, render_mode="rgb_array"), max_side)
            self._env.reset(seed=0)
            self._viewer = None
        self._gl = getattr(self._viewer, "opengl_context", None)
        self._camera = AgentCamera(self._env.unwrapped, spec.id) if self._viewer is not None else None
        # Runs once, on close() or when this renderer is garbage-collected; not at interpreter exit,
        # where the EGL display may already be gone (the process frees everything then anyway).
        self._release = weakref.finalize(self, _release, self._env, self._viewer)
        self._release.atexit = False
        unwrapped: Any = self._env.unwrapped
        self.state_size = int(unwrapped.model.nq) if self.kind == _MUJOCO else _classic_state(unwrapped).size
        self._n_velocities = int(unwrapped.model.nv) if self.kind == _MUJOCO else 0
        self.n_renders = 0
        # A picture known to be right, to tell a broken renderer from a scene that does not move.
        self._reference_state = self._state_of(self._env)[None].astype(np.float32)
        self._reference = self._draw(self._reference_state)[0][0]
        if _is_blank(self._reference):
            self.close()
            raise RuntimeError(
                f"{spec.id}: the first re-rendered picture is blank, so OpenGL cannot draw here: set "
                "MUJOCO_GL=egl (a GPU or Mesa's EGL) or MUJOCO_GL=osmesa (software) before importing MuJoCo"
            )

    @classmethod
    def for_vec_env(cls, venv: VecEnv, max_side: int = MAX_FRAME_SIDE) -> StateRenderer | None:
        """A renderer for the sub-envs of ``venv``, or ``None`` if they have no re-renderable state.

        Raises:
            ImportError: The envs are classic-control ones and pygame is not installed.
        """
        if not venv.has_attr("spec"):
            return None
        return cls._for_spec(venv.get_attr("spec", indices=[0])[0], max_side)

    @classmethod
    def for_env(cls, env: gym.Env, max_side: int = MAX_FRAME_SIDE) -> StateRenderer | None:
        """A renderer for ``env``, or ``None`` if it has no re-renderable state.

        Raises:
            ImportError: ``env`` is a classic-control env and pygame is not installed.
        """
        return cls._for_spec(env.spec, max_side)

    @classmethod
    def _for_spec(cls, spec: EnvSpec | None, max_side: int) -> StateRenderer | None:
        if spec is None:
            return None  # not made by gymnasium.make: nothing to rebuild it from
        try:
            return cls(spec, max_side)
        except (gym.error.Error, TypeError, ValueError):
            return None

    def capture_vec(self, venv: VecEnv) -> np.ndarray:
        """Render states ``(n_envs, state_size)`` float32 of the sub-envs (one call, even across processes).

        Raises:
            ValueError: The sub-envs' state does not have the size of the registered env's.
        """
        base = venv.unwrapped
        if isinstance(base, DummyVecEnv):  # same process: read the states directly (~4x cheaper)
            return self._checked(np.array([self._state_of(env) for env in base.envs], dtype=np.float32))
        if self.kind == _MUJOCO:  # state_vector() is (qpos, qvel): one picklable call per sub-env
            states = np.array(venv.env_method("state_vector"), dtype=np.float32)
            return self._checked(states, self.state_size + self._n_velocities)[:, : self.state_size]
        return self._checked(np.array(venv.get_attr("state"), dtype=np.float32).reshape(venv.num_envs, -1))

    def capture(self, env: gym.Env) -> np.ndarray:
        """Render state ``(1, state_size)`` float32 of one env.

        Raises:
            ValueError: The env's state does not have the size of the registered env's.
        """
        return self._checked(np.array([self._state_of(env)], dtype=np.float32))

    def _state_of(self, env: gym.Env) -> np.ndarray:
        unwrapped: Any = env.unwrapped
        return unwrapped.data.qpos if self.kind == _MUJOCO else _classic_state(unwrapped)

    def _checked(self, states: np.ndarray, expected: int | None = None) -> np.ndarray:
        if states.shape[1] != (expected or self.state_size):
            raise ValueError(
                f"the training env's state has {states.shape[1]} numbers but its registered spec builds "
                f"an env with {expected or self.state_size}: the env was changed after gymnasium.make. "
                "Register the changed env (gymnasium.register) so that clips can be re-rendered."
            )
        return states

    def render(self, states: np.ndarray) -> np.ndarray:
        """Frames ``(len(states), height, width, 3)`` uint8 of render states ``(n, state_size)``.

        Raises:
            AgentOutOfViewError: Some frames show the agent out of the picture even with the camera
                tracking it (a :class:`RuntimeError`; the env's camera distance or angles cannot
                show it).
            RuntimeError: The renderer was closed, or it drew a blank clip, or a still one of moving
                states, and no longer draws its reference picture right (its OpenGL objects were
                freed by other code: the message says what to do).
        """
        if not self._release.alive:
            raise RuntimeError(
                f"this {self.env_id} StateRenderer is closed (its wrapper was closed): clips of the "
                "segments it recorded can no longer be drawn"
            )
        frames, out_of_view = self._draw(states)
        if out_of_view and self._camera is not None and self._camera.fall_back():
            frames, out_of_view = self._draw(states)  # the camera on the agent from now on
        self.n_renders += len(frames)  # clips only: the reference picture's checks are not counted
        self._check(frames, states)
        if out_of_view and self._camera is not None:
            shown = ", ".join(map(str, out_of_view[:10])) + (", ..." if len(out_of_view) > 10 else "")
            where = f"in {len(out_of_view)} of the {len(states)} frames of a clip ({shown})"
            raise self._camera.out_of_view_error(where)
        return frames

    def _draw(self, states: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """Frames ``(n, height, width, 3)`` of ``states`` and the indices of those without the agent."""
        unwrapped: Any = self._env.unwrapped
        camera, viewer = self._camera, self._viewer
        frames, out_of_view = [], []
        # Our context for the whole clip, the previous one back afterwards: Gymnasium makes an env's
        # context current only when that env has several viewers, so each renderer must do it itself.
        with _current(self._gl):
            for t, state in enumerate(states):
                if self.kind == _MUJOCO:
                    unwrapped.set_state(state.astype(np.float64), np.zeros(unwrapped.model.nv))
                else:
                    unwrapped.state = state.astype(np.float64)
                if camera is not None:
                    camera.aim(viewer, unwrapped.data)
                frames.append(np.asarray(self._env.render(), dtype=np.uint8))
                if camera is not None and not camera.sees_agent(viewer, unwrapped.data):
                    out_of_view.append(t)
        return np.stack(frames), out_of_view

    def _check(self, frames: np.ndarray, states: np.ndarray) -> None:
        """Refuse a blank clip, or a still one of moving states, that the renderer drew wrong."""
        moving = len(states) > 1 and bool(np.ptp(states, axis=0).max() > 0)
        blank = any(_is_blank(frame) for frame in frames)
        if not blank and not (moving and (frames == frames[0]).all()):
            return
        # A still picture can be right (only a velocity changed, the camera sees nothing move):
        # the renderer is broken only if the picture it drew when it was made comes out different.
        again = self._draw(self._reference_state)[0][0]
        if np.array_equal(again, self._reference):
            return
        what = "blank" if blank else "still"
        raise RuntimeError(
            f"the {self.env_id} clip re-rendered from {len(states)} {'moving ' if moving else ''}states "
            f"is {what}, and the renderer no longer draws its reference picture: its OpenGL objects "
            "were freed by other code. MuJoCo frees a renderer's objects in whatever OpenGL context is "
            "current, so a MuJoCo env (render_mode='rgb_array') garbage-collected without close() "
            "while this renderer drew deleted its buffers. Close the envs and wrappers you drop "
            "(env.close()), and build this wrapper again."
        )

    def close(self) -> None:
        """Release the private env and its OpenGL context, freeing its objects in that context.

        Safe to call more than once; :meth:`render` raises afterwards. Garbage collection does the
        same for a renderer that is not closed.
        """
        self._release()


def _release(env: gym.Env, viewer: Any) -> None:
    """Free a renderer's OpenGL objects under its own context, then the context, then the env.

    Left to the garbage collector, MuJoCo's ``MjrContext`` frees its objects in whatever context is
    current when it is collected: another renderer's, whose buffers then vanish.
    """
    gl = getattr(viewer, "opengl_context", None)
    con = getattr(viewer, "con", None)
    if gl is not None:
        if con is not None:
            with _current(gl):
                con.free()
        gl.free()
        # Gymnasium's viewer.close() would free it again and call glfw.terminate(), which ends every
        # other renderer's context under MUJOCO_GL=glfw: env.close() must not see this viewer.
        renderer = getattr(env.unwrapped, "mujoco_renderer", None)
        if renderer is not None and isinstance(getattr(renderer, "_viewers", None), dict):
            renderer._viewers.clear()
            renderer.viewer = None
    env.close()


def _current(gl: Any) -> contextlib.AbstractContextManager[None]:
    """Make ``gl`` (a MuJoCo ``GLContext`` or ``None``) current for a block, restoring the previous one."""
    if gl is None:
        return contextlib.nullcontext()
    as_current = getattr(gl, "as_current", None)
    if as_current is not None:  # mujoco >= 3.3: restores the previous context afterwards
        return as_current()
    gl.make_current()
    return contextlib.nullcontext()


@contextlib.contextmanager
def _previous_context_restored() -> Iterator[None]:
    """Give back the OpenGL context that is current before the block (``MUJOCO_GL`` egl or glfw)."""
    try:
        restore = _context_snapshot(os.environ.get("MUJOCO_GL", "").lower())
    except (ImportError, AttributeError):  # another MuJoCo or PyOpenGL: draw as before, unprotected
        restore = None
    yield
    if restore is not None:
        restore()


def _context_snapshot(backend: str) -> Callable[[], object] | None:
    """A function that makes the now current OpenGL context current again (``None``: unknown backend)."""
    if backend == "egl":
        from mujoco import egl
        from mujoco.egl import egl_ext

        context = egl_ext.eglGetCurrentContext()
        if not context:  # none: afterwards, none again (if the display was made meanwhile)
            none = egl_ext.EGL_NO_SURFACE, egl_ext.EGL_NO_SURFACE, egl_ext.EGL_NO_CONTEXT
            return lambda: egl.EGL_DISPLAY is not None and egl_ext.eglMakeCurrent(egl.EGL_DISPLAY, *none)
        display = egl_ext.eglGetCurrentDisplay()
        surfaces = (
            egl_ext.eglGetCurrentSurface(egl_ext.EGL_DRAW),
            egl_ext.eglGetCurrentSurface(egl_ext.EGL_READ),
        )
        return lambda: egl_ext.eglMakeCurrent(display, *surfaces, context)
    if backend == "glfw":
        import glfw

        if glfw.init():
            window = glfw.get_current_context()
            return lambda: glfw.make_context_current(window)
    return None


def _kind_of(unwrapped: Any) -> str | None:
    """``"classic"``, ``"mujoco"`` or ``None`` (not re-renderable from state) for an unwrapped env.

    Classic control is recognised first and by module name: it must work without the ``mujoco``
    extra, whose Gymnasium module cannot even be imported then.
    """
    if type(unwrapped).__module__.startswith("gymnasium.envs.classic_control"):
        unwrapped.reset(seed=0)
        return _CLASSIC if getattr(unwrapped, "state", None) is not None else None
    try:
        from gymnasium.envs.mujoco.mujoco_env import MujocoEnv
    except (ImportError, gym.error.DependencyNotInstalled):  # no mujoco: this env is not a MuJoCo one
        return None
    return _MUJOCO if isinstance(unwrapped, MujocoEnv) else None


def _require_pygame(env_id: str) -> None:
    """Fail with the pip extra to install when pygame, which draws classic control, is missing.

    ``find_spec`` looks without importing: pygame's import prints a banner and starts SDL.
    """
    if importlib.util.find_spec("pygame") is None:
        raise ImportError(
            f'clips of {env_id} are drawn by pygame, which is not installed: pip install "prefwrap[human]"'
        )


def _offscreen_viewer(unwrapped: Any, fast: bool) -> Any:
    """The offscreen viewer of a MuJoCo env (``None`` if this Gymnasium has none we know), made
    without multisampling, shadows and reflections when ``fast``."""
    import mujoco

    if fast:
        unwrapped.model.vis.quality.offsamples = 0  # read when the OpenGL context is made: set it first
    get_viewer = getattr(unwrapped.mujoco_renderer, "_get_viewer", None)
    if get_viewer is None:
        return None
    viewer = get_viewer(render_mode="rgb_array")
    if fast:
        viewer.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        viewer.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
    return viewer


def _is_blank(frame: np.ndarray) -> bool:
    """Whether a frame is one flat colour (nothing drawn: no floor, sky or body)."""
    return bool((frame == frame.reshape(-1, frame.shape[-1])[0]).all())


def _classic_state(unwrapped: Any) -> np.ndarray:
    return np.asarray(unwrapped.state, dtype=np.float32).ravel()
