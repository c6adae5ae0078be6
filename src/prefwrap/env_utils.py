"""Walking env stacks: find prefwrap's wrapper, the frame stacking and the image layout of an env.

The VecEnv part of every walk is SB3's :func:`~stable_baselines3.common.vec_env.unwrap_vec_wrapper`;
only the gymnasium part (``env.env`` chains, which SB3 does not walk) is written here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import gymnasium as gym
from gymnasium import spaces
from gymnasium.wrappers import FrameStackObservation
from stable_baselines3.common.preprocessing import is_image_space_channels_first
from stable_baselines3.common.vec_env import (
    DummyVecEnv,
    VecEnv,
    VecEnvWrapper,
    VecFrameStack,
    unwrap_vec_wrapper,
)

if TYPE_CHECKING:
    from prefwrap.wrapper import PreferenceRewardWrapper

_T = TypeVar("_T")


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
