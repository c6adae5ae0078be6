"""Evaluate a policy on the true reward, and the learned reward on held-out segments.

:func:`evaluate` runs whole episodes through a :class:`~prefwrap.wrapper.PreferenceRewardWrapper` that
records segments (never shown to an oracle: they are held out), so one pass gives the true episode
returns and, per segment, the true and the learned return: how well the learned reward ranks
behaviour it was not fitted on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from prefwrap.env_utils import find_preference_wrapper

Act = Callable[[Any], np.ndarray]
"""Maps a batch of observations ``(n_envs, ...)`` to a batch of actions."""


@dataclass
class Evaluation:
    """True episode returns and held-out segment returns of one evaluation.

    Attributes:
        episode_returns: True return of each finished episode ``(n_episodes,)`` (Monitor's, so an
            Atari episode is a whole game even when lives end "episodes" for the agent).
        segment_true_returns: True return of each recorded segment ``(S,)``.
        segment_learned_returns: Learned (normalised) return of the same segments ``(S,)``; NaN if the
            reward was never fitted.
        n_frames: Frames handed to ``on_frame``.
        video_error: Why rendering stopped early, if it failed (the evaluation itself goes on).
    """

    episode_returns: np.ndarray
    segment_true_returns: np.ndarray
    segment_learned_returns: np.ndarray
    n_frames: int = 0
    video_error: str | None = None


def evaluate(
    venv: VecEnv,
    act: Act,
    n_episodes: int,
    *,
    on_frame: Callable[[np.ndarray], None] | None = None,
    max_frames: int = 2000,
    max_steps: int = 1_000_000,
) -> Evaluation:
    """Run ``n_episodes`` episodes and measure true returns and held-out segment returns.

    Args:
        venv: A fresh env stack holding a :class:`PreferenceRewardWrapper` (used only to record the
            held-out segments) above ``Monitor``-wrapped envs; ``VecNormalize`` on top is fine.
        act: The policy: ``act(observations) -> actions`` for the whole batch.
        n_episodes: Episodes to finish (counted across sub-envs).
        on_frame: Receives the rendered frames of sub-env 0 until its first episode ends (video).
        max_frames: Stop handing frames after this many.
        max_steps: Safety bound on vector steps.

    Returns:
        The :class:`Evaluation`.
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    wrapper = find_preference_wrapper(venv)
    wrapper.training = True
    # Monitor's episode is the game (an Atari life loss ends the agent's episode, not the game).
    episode_key = "episode" if _has_monitor(venv) else "pref_episode"
    returns: list[float] = []
    observations = venv.reset()
    recording = on_frame is not None
    n_frames = 0
    video_error: str | None = None
    for _ in range(max_steps):
        if recording:
            try:
                frame = venv.get_images()[0]
                recording = frame is not None and n_frames < max_frames
                if recording:
                    on_frame(frame)  # type: ignore[misc]
                    n_frames += 1
            except Exception as error:  # a renderer that fails (no OpenGL...) costs the video only
                video_error = " ".join(f"{type(error).__name__}: {error}".split())
                recording = False
        observations, _, _, infos = venv.step(act(observations))
        for index, info in enumerate(infos):
            episode = info.get(episode_key)
            if episode is not None:
                returns.append(float(episode["r"] if episode_key == "episode" else episode["true_return"]))
                recording = recording and index != 0
        if len(returns) >= n_episodes:
            break
    true_returns, learned_returns = held_out_returns(wrapper)
    return Evaluation(np.array(returns[:n_episodes]), true_returns, learned_returns, n_frames, video_error)


def held_out_returns(wrapper: Any, rows_per_chunk: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """True and learned returns ``(S,)`` of the segments the wrapper recorded."""
    segments = wrapper.segments
    rows = segments.newest_rows()
    horizon = segments.segment_length
    mask = np.arange(horizon)[None, :] < segments.lengths[rows, None]
    true_returns = (segments.true_rewards[rows] * mask).sum(axis=1).astype(np.float64)
    reward = wrapper.learned_reward
    if not reward.fitted or len(rows) == 0:
        return true_returns, np.full(len(rows), np.nan)
    learned = np.empty(len(rows))
    for start in range(0, len(rows), rows_per_chunk):  # image segments are large: a chunk at a time
        chunk = rows[start : start + rows_per_chunk]
        observations = segments.observations_of(chunk)  # (rows, H, *obs)
        actions = segments.actions[chunk]  # (rows, H, D_a); D_a is 0 for an observation-only reward
        steps = len(chunk) * horizon
        predicted = reward.predict_features(
            observations.reshape(steps, *observations.shape[2:]), actions.reshape(steps, actions.shape[-1])
        ).reshape(len(chunk), horizon)
        learned[start : start + len(chunk)] = (predicted * mask[start : start + len(chunk)]).sum(axis=1)
    return true_returns, learned


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation, NaN when undefined (fewer than 3 points, constant or non-finite input)."""
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def random_actions(venv: VecEnv, seed: int) -> Act:
    """A uniformly random policy for ``venv`` (seeded)."""
    space = venv.action_space
    space.seed(seed)

    def act(observations: Any) -> np.ndarray:
        return np.array([space.sample() for _ in range(venv.num_envs)])

    return act


def policy_actions(model: Any, deterministic: bool = True) -> Act:
    """The actions of an SB3 model (``model.predict``)."""

    def act(observations: Any) -> np.ndarray:
        actions, _ = model.predict(observations, deterministic=deterministic)
        return actions

    return act


def _has_monitor(venv: VecEnv) -> bool:
    from stable_baselines3.common.monitor import Monitor

    try:
        return bool(venv.env_is_wrapped(Monitor, indices=[0])[0])
    except (AttributeError, IndexError):
        return False
