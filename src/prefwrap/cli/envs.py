"""The envs of a run: probing an env id, importing custom env packages, and building the vector env.

``ENV_ID`` may be any registered Gymnasium id, Gymnasium's ``module:EnvId`` form (the module is
imported first, so it can register the id), or an id that ``--gym-packages`` modules register.
Modules are looked up on ``sys.path`` and, as ``python -m`` would, in the current directory.
Every env is built by :func:`make_env`, a module-level function, so subprocess envs
(``--vec-env subproc``) import the same modules and apply the same ``--env-wrapper`` classes.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
from gymnasium import spaces
from stable_baselines3.common.env_util import make_atari_env, make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecFrameStack, VecNormalize

from prefwrap.cli.config import UsageError

if TYPE_CHECKING:
    from prefwrap.cli.build import Setup
    from prefwrap.cli.hyperparams import HyperParams


@dataclass(frozen=True)
class EnvInfo:
    """What ``prefwrap train`` needs to know about an env before building it.

    Attributes:
        atari: An ALE game (Atari wrappers, frame stack, the paper's Atari settings).
        image: Image observations (a CNN reward model on what the policy sees).
        dict_observations: A ``Dict`` observation space (``MultiInputPolicy``).
        discrete_actions: A ``Discrete`` action space.
        render_fps: ``metadata["render_fps"]`` in frames per second, or ``None``.
        segment_length: Steps per queried segment (the wrapper's default for this env).
    """

    atari: bool
    image: bool
    dict_observations: bool
    discrete_actions: bool
    render_fps: float | None
    segment_length: int


def import_module(name: str, flag: str) -> None:
    """Import ``name`` (from ``sys.path``, else from the current directory).

    Raises:
        UsageError: The module cannot be imported; names ``flag`` and the cause.
    """
    try:
        importlib.import_module(name)
        return
    except ModuleNotFoundError as error:
        if error.name != name.split(".")[0] or os.getcwd() in sys.path:
            raise UsageError(f"{flag}: cannot import {name!r}: {error}") from None
    sys.path.append(os.getcwd())  # the console script's sys.path lacks the current directory
    try:
        importlib.import_module(name)
    except Exception as error:
        raise UsageError(f"{flag}: cannot import {name!r}: {type(error).__name__}: {error}") from None


def import_env_packages(env_id: str, gym_packages: list[str]) -> str:
    """Import ``--gym-packages`` and the module of a ``module:EnvId``; returns the registered id."""
    for package in gym_packages:
        import_module(package, "--gym-packages")
    module, _, name = env_id.rpartition(":")
    if module:
        import_module(module, f"ENV_ID {env_id}")
    return name


def probe_env(
    env_id: str,
    env_kwargs: dict[str, Any],
    gym_packages: list[str] | None = None,
    env_wrapper: list[str] | None = None,
) -> EnvInfo:
    """Make ``env_id`` once, check that prefwrap supports its spaces, and describe it.

    Raises:
        UsageError: Unknown id, a module that cannot be imported, a missing extra (named with its pip
            command), ``env_kwargs`` the env does not take, or an unsupported space.
    """
    registered = import_env_packages(env_id, gym_packages or [])
    looks_atari = registered.startswith("ALE/") or "NoFrameskip" in registered
    if looks_atari:
        _import_ale()
    try:
        spec = gym.spec(registered)
    except gym.error.Error as error:
        raise UsageError(
            f"unknown env id {env_id!r}: {error} Custom envs: give module:EnvId or --gym-packages MODULE; "
            'list the ids with: python -c "import gymnasium; gymnasium.pprint_registry()"'
        ) from None
    entry_point = str(spec.entry_point)
    try:
        env = make_env(env_id, tuple(gym_packages or ()), tuple(env_wrapper or ()), **env_kwargs)
    except (gym.error.DependencyNotInstalled, ImportError) as error:
        raise UsageError(_missing_extra(entry_point, str(error))) from None
    except TypeError as error:
        raise UsageError(f"--env-kwargs not accepted by {env_id}: {error}") from None
    try:
        return _describe(env, env_id, atari="ale_py" in entry_point)
    finally:
        env.close()


def _describe(env: gym.Env, env_id: str, atari: bool) -> EnvInfo:
    from prefwrap.encoding import check_supported, is_image
    from prefwrap.recording import default_segment_length

    try:
        check_supported(env.observation_space, "observation")
        check_supported(env.action_space, "action")
    except TypeError as error:
        raise UsageError(f"{env_id}: {error}") from None
    fps = env.metadata.get("render_fps")
    return EnvInfo(
        atari=atari,
        image=is_image(env.observation_space) or atari,
        dict_observations=isinstance(env.observation_space, spaces.Dict),
        discrete_actions=isinstance(env.action_space, spaces.Discrete),
        render_fps=float(fps) if fps else None,
        segment_length=default_segment_length(env.observation_space, getattr(env.unwrapped, "dt", None)),
    )


def _import_ale() -> None:
    try:
        import ale_py
    except ImportError:
        raise UsageError('Atari envs need ale-py: pip install "prefwrap[atari]"') from None
    gym.register_envs(ale_py)


def _missing_extra(entry_point: str, detail: str) -> str:
    if "mujoco" in entry_point:
        return f'this env needs MuJoCo: pip install "prefwrap[mujoco]" ({detail})'
    if "box2d" in entry_point:
        return f'this env needs Box2D: pip install "gymnasium[box2d]" ({detail})'
    if "ale_py" in entry_point:
        return f'Atari envs need ale-py: pip install "prefwrap[atari]" ({detail})'
    return f"a package this env needs is missing: {detail}"


def wrapper_classes(paths: list[str]) -> list[type[gym.Wrapper]]:
    """The ``--env-wrapper`` classes, imported from their dotted paths.

    Raises:
        UsageError: A path that is not ``module.Class`` or does not import.
    """
    classes = []
    for path in paths:
        module, _, name = path.rpartition(".")
        if not module:
            raise UsageError(
                f"--env-wrapper {path!r}: give a dotted path, e.g. gymnasium.wrappers.ClipAction"
            )
        import_module(module, "--env-wrapper")
        wrapper = getattr(sys.modules[module], name, None)
        if not callable(wrapper):
            raise UsageError(f"--env-wrapper {path!r}: {module} has no class {name}")
        classes.append(wrapper)
    return classes


@functools.cache
def route_mujoco_warnings() -> None:
    """Route MuJoCo's warnings into Python's ``warnings`` (once per process), instead of MuJoCo's own
    handler, which prints them to stdout and appends them to ``MUJOCO_LOG.TXT`` in the working directory.

    Gymnasium's MuJoCo models still use the ``settotalmass`` compiler attribute, which MuJoCo 3.3+
    reports as deprecated on every model load: nothing a user can act on, so it goes to the
    ``prefwrap`` logger at debug level; every other MuJoCo warning stays a visible warning.
    """
    if importlib.util.find_spec("mujoco") is None:
        return
    import logging
    import warnings

    import mujoco

    def handler(message: str) -> None:
        text = " ".join(str(message).split())
        if "settotalmass" in text:
            logging.getLogger("prefwrap").debug("MuJoCo: %s", text)
        else:
            warnings.warn(f"MuJoCo: {text}", RuntimeWarning, stacklevel=2)

    mujoco.set_mju_user_warning(handler)


def make_env(
    env_id: str, gym_packages: tuple[str, ...] = (), wrappers: tuple[str, ...] = (), **kwargs: Any
) -> gym.Env:
    """One env: ``--gym-packages`` imported, ``gym.make`` (``module:EnvId`` too), ``--env-wrapper``s.

    Monitor goes above the wrappers (``make_vec_env``), as in the zoo.
    """
    registered = import_env_packages(env_id, list(gym_packages))
    route_mujoco_warnings()
    env = gym.make(registered, **kwargs)
    for wrapper in wrapper_classes(list(wrappers)):
        env = wrapper(env)
    return env


def _small_render(env: gym.Env) -> gym.Env:
    from prefwrap.clips.video import SmallRender

    return SmallRender(env)


def _follow_agent(env: gym.Env) -> gym.Env:
    """Evaluation videos: the camera follows the agent (MuJoCo locomotion; other envs unchanged)."""
    from prefwrap.clips.camera import FollowAgent

    return FollowAgent(env)


def make_base_env(
    setup: Setup, n_envs: int, seed: int, *, render: bool = False, small_frames: bool = False
) -> VecEnv:
    """The vector env below the preference wrapper: Monitor-wrapped envs, Atari wrappers, frame stack.

    ``render`` makes the envs render to arrays, with the camera following the agent
    (:class:`~prefwrap.clips.camera.FollowAgent`, for evaluation videos); ``small_frames`` instead
    shrinks those renders to clip size (:class:`~prefwrap.clips.video.SmallRender`) for runs that keep
    frames for labelers.
    """
    from prefwrap.cli.build import parse_pairs

    config = setup.config
    env_kwargs = parse_pairs(config.env_kwargs, "--env-kwargs")
    if render:
        env_kwargs.setdefault("render_mode", "rgb_array")
    vec_env_cls = SubprocVecEnv if config.vec_env == "subproc" and n_envs > 1 else DummyVecEnv
    if setup.info.atari:
        registered = import_env_packages(config.env_id, config.gym_packages)
        if gym.spec(registered).kwargs.get("frameskip", 1) != 1:
            env_kwargs.setdefault("frameskip", 1)  # AtariWrapper skips 4 frames itself
        # --env-wrapper classes go below SB3's AtariWrapper (the zoo lists them with it, in order)
        source = (
            functools.partial(make_env, registered, (), tuple(config.env_wrapper))
            if config.env_wrapper
            else registered
        )
        venv = make_atari_env(
            source, n_envs=n_envs, seed=seed, env_kwargs=env_kwargs, vec_env_cls=vec_env_cls
        )
    else:
        factory = functools.partial(
            make_env, config.env_id, tuple(config.gym_packages), tuple(config.env_wrapper)
        )
        venv = make_vec_env(
            factory,
            n_envs=n_envs,
            seed=seed,
            env_kwargs=env_kwargs,
            wrapper_class=(_small_render if small_frames else _follow_agent) if render else None,
            vec_env_cls=vec_env_cls,
        )
    if setup.params.frame_stack:
        venv = VecFrameStack(venv, setup.params.frame_stack)
    return venv


def with_normalizer(venv: VecEnv, params: HyperParams, path: Path | None, *, training: bool) -> VecEnv:
    """``venv`` under the zoo's ``VecNormalize`` when ``params.normalize``, with the statistics in
    ``path`` if it exists; an evaluation stack (``training=False``) freezes them and keeps true rewards."""
    if not params.normalize:
        return venv
    if path is not None and path.is_file():
        normalizer = VecNormalize.load(str(path), venv)
        normalizer.training = training
        if not training:
            normalizer.norm_reward = False
        return normalizer
    gamma = float(params.model_kwargs.get("gamma", 0.99))
    return VecNormalize(venv, gamma=gamma, training=training, norm_reward=training)
