"""Walking env stacks: find prefwrap's wrapper, the frame stacking and the image layout of an env.

The VecEnv part of every walk is SB3's :func:`~stable_baselines3.common.vec_env.unwrap_vec_wrapper`;
only the gymnasium part (``env.env`` chains, which SB3 does not walk) is written here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import gymnasium as gym
from gymnasium import spaces
from gymnasium.wrappers import FrameStackObservation
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.preprocessing import is_image_space_channels_first
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    VecCheckNan,
    VecEnv,
    VecEnvWrapper,
    VecFrameStack,
    VecNormalize,
    VecTransposeImage,
    VecVideoRecorder,
    unwrap_vec_wrapper,
)

if TYPE_CHECKING:
    from prefwrap.wrapper import PreferenceRewardWrapper

_T = TypeVar("_T")

ALLOWED_ABOVE: tuple[type[VecEnvWrapper], ...] = (
    VecNormalize,
    VecTransposeImage,
    VecVideoRecorder,
    VecCheckNan,
)
"""VecEnv wrappers that may sit above the preference wrapper: they pass the learned reward through to
the agent, and replay buffers can be relabelled from what they store (``VecNormalize`` hands SB3 the
original, unnormalised observations and rewards; ``VecTransposeImage``, which SB3 adds itself above
channel-last images, is undone when relabelling). Every other wrapper goes below:
one that changes observations (``VecFrameStack``, ``VecTransposeImage``…) would make the agent's
buffers hold observations the reward model never saw, and ``VecMonitor`` above would log the learned
return as ``rollout/ep_rew_mean``."""


def innermost_vec_env(venv: VecEnv) -> VecEnv:
    """The VecEnv at the bottom of a stack of ``VecEnvWrapper`` (a ``DummyVecEnv``, ``SubprocVecEnv``…)."""
    while isinstance(venv, VecEnvWrapper):
        venv = venv.venv
    return venv


def unwrap_env(env: gym.Env, wrapper_class: type[_T]) -> _T | None:
    """The outermost ``wrapper_class`` in a gymnasium wrapper chain, or ``None``."""
    current: gym.Env | None = env
    while current is not None:
        if isinstance(current, wrapper_class):
            return current
        inner = getattr(current, "env", None)  # gym.Wrapper has .env; a bare env has none
        current = inner if inner is not current else None
    return None


def find_preference_wrapper(env: VecEnv | gym.Env) -> PreferenceRewardWrapper:
    """The :class:`~prefwrap.PreferenceRewardWrapper` in a VecEnv stack or a gymnasium wrapper chain.

    Looks through ``VecEnvWrapper`` layers, and inside a single-env ``DummyVecEnv`` (where SB3 puts a
    wrapped ``gymnasium.Env`` handed to a model) through the gymnasium wrappers.

    Raises:
        TypeError: No preference wrapper is in the stack.
    """
    from prefwrap.wrapper import EnvPreferenceRewardWrapper, VecPreferenceRewardWrapper

    inner: VecEnv | gym.Env = env
    if isinstance(env, VecEnv):
        found = unwrap_vec_wrapper(env, VecPreferenceRewardWrapper)
        if found is not None:
            return found
        bottom = innermost_vec_env(env)
        if isinstance(bottom, DummyVecEnv) and len(bottom.envs) == 1:
            inner = bottom.envs[0]
    if isinstance(inner, gym.Env):
        found_env = unwrap_env(inner, EnvPreferenceRewardWrapper)
        if found_env is not None:
            return found_env
    raise TypeError(
        f"no PreferenceRewardWrapper found in {type(env).__name__}: wrap the env first, "
        "venv = PreferenceRewardWrapper(make_vec_env(...)), and pass venv to the model and the callback."
    )


def check_layers_below(venv: VecEnv) -> None:
    """Refuse wrappers that must not sit below the preference wrapper (called when it is built).

    SB3's off-policy algorithms find a ``VecNormalize`` anywhere in the stack and store its
    ``get_original_reward()`` in the replay buffer: below the preference wrapper that is the env's
    TRUE reward, so the agent would train on it.

    Raises:
        ValueError: A ``VecNormalize`` is below the preference wrapper.
    """
    if unwrap_vec_wrapper(venv, VecNormalize) is not None:
        raise ValueError(
            "VecNormalize is below PreferenceRewardWrapper: SB3 would store the env's true reward in "
            "replay buffers (VecNormalize.get_original_reward). Put it above instead: "
            "VecNormalize(PreferenceRewardWrapper(make_vec_env(...))), as rl-baselines3-zoo does."
        )


def check_layers_above(env: VecEnv, wrapper: VecEnv | gym.Env) -> None:
    """Refuse wrappers above the preference ``wrapper`` in the model's ``env`` (called at training start).

    VecEnv wrappers above must be in :data:`ALLOWED_ABOVE`; for a single-env wrapper (inside SB3's
    ``DummyVecEnv``), a gymnasium ``Monitor`` above it would log the learned return as the true one.

    Raises:
        ValueError: The first offending wrapper from the outside in, named, with where it must go.
    """
    current: VecEnv = env
    while current is not wrapper and isinstance(current, VecEnvWrapper):
        if not isinstance(current, ALLOWED_ABOVE):
            _refuse_above(type(current).__name__)
        current = current.venv
    if isinstance(wrapper, gym.Env) and isinstance(current, DummyVecEnv):
        for sub_env in current.envs:
            monitor = unwrap_env(sub_env, Monitor)
            if monitor is not None and unwrap_env(monitor, type(wrapper)) is wrapper:
                _refuse_above("Monitor")


def _refuse_above(name: str) -> None:
    allowed = ", ".join(cls.__name__ for cls in ALLOWED_ABOVE)
    raise ValueError(
        f"{name} is above PreferenceRewardWrapper: only {allowed} may sit above it. "
        f"Put {name} below it: PreferenceRewardWrapper({name}(...))."
    )


def frame_stack_of(env: VecEnv | gym.Env) -> int:
    """Frames stacked per observation by an SB3 ``VecFrameStack`` or a gymnasium
    ``FrameStackObservation`` inside ``env`` (the outermost one); 1 if there is none."""
    if isinstance(env, VecEnv):
        stacker = unwrap_vec_wrapper(env, VecFrameStack)
        if stacker is not None:
            return int(stacker.stacked_obs.n_stack)
        return 1
    gym_stacker = unwrap_env(env, FrameStackObservation)
    return int(gym_stacker.stack_size) if gym_stacker is not None else 1


def image_channels_first(space: spaces.Space) -> bool:
    """Whether a rank-3 image space is ``(C, H, W)`` (True) or ``(H, W, C)`` (False).

    SB3's :func:`~stable_baselines3.common.preprocessing.is_image_space_channels_first` decides; this
    adds the checks SB3 leaves out, so an ambiguous layout is refused rather than guessed.

    Raises:
        ValueError: The space is not rank 3, or the channel axis is not strictly the smallest of the
            first or last axis.
    """
    shape = tuple(space.shape or ()) if isinstance(space, spaces.Box) else ()
    if len(shape) != 3:
        raise ValueError(
            f"image observations must have rank 3, (C, H, W) or (H, W, C), got shape {shape}: "
            "add a channel axis to grayscale frames (e.g. WarpFrame or ResizeObservation + a reshape)."
        )
    first, last = shape[0] < min(shape[1:]), shape[2] < min(shape[:2])
    if first == last:
        raise ValueError(
            f"cannot tell the channel axis of image shape {shape}: it must be the first or the last axis "
            "and smaller than height and width. Transpose the observation to (C, H, W) or (H, W, C) "
            "(e.g. VecTransposeImage), or resize frames so height and width exceed the channel count."
        )
    return is_image_space_channels_first(space)
