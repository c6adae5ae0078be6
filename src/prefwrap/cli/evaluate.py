"""Evaluate a policy on the true reward, the learned reward on held-out segments, and the baseline.

:func:`evaluate` runs whole episodes through a :class:`~prefwrap.PreferenceRewardWrapper` that
records segments (never shown to an oracle: they are held out), so one pass gives the true episode
returns and, per segment, the true and the learned return: how well the learned reward ranks
behaviour it was not fitted on. :func:`evaluate_run` does it for a run's policy and a random policy
on fresh envs; :func:`train_baseline` trains the same algorithm on the true reward to compare.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import CSVOutputFormat, Logger
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvObs

from prefwrap.cli.build import Setup, build_model
from prefwrap.cli.envs import make_base_env, with_normalizer
from prefwrap.cli.plots import REWARD_DATA, correlation, save_reward_data
from prefwrap.cli.run_dir import RunDir
from prefwrap.clips.video import VideoWriter
from prefwrap.demonstrations import DEMO_LABELER
from prefwrap.env_utils import find_preference_wrapper
from prefwrap.reward.learned import LearnedReward
from prefwrap.store import PreferenceStore
from prefwrap.wrapper import PreferenceRewardWrapper

Act = Callable[[VecEnvObs], np.ndarray]
"""Maps a batch of observations ``(n_envs, ...)`` to a batch of actions ``(n_envs, ...)``."""

EVAL_SEED_OFFSET = 10_000
"""Evaluation envs are seeded ``seed + 10,000`` (the random policy ``+ 1`` more): never a training seed."""


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
    on_frame: Callable[[int, np.ndarray], None] | None = None,
    film: Collection[int] = (0,),
    max_frames: int = 2000,
    max_steps: int = 1_000_000,
) -> Evaluation:
    """Run ``n_episodes`` episodes and measure true returns and held-out segment returns.

    Args:
        venv: A fresh env stack holding a :class:`~prefwrap.PreferenceRewardWrapper` (used only to
            record the held-out segments) above ``Monitor``-wrapped envs; ``VecNormalize`` on top is fine.
        act: The policy: ``act(observations) -> actions`` for the whole batch.
        n_episodes: Episodes to finish (counted across sub-envs).
        on_frame: Receives ``(episode, frame)``: the rendered ``(height, width, 3)`` uint8 frames of
            sub-env 0 during its episodes numbered in ``film`` (0: its first).
        film: Episodes of sub-env 0 to hand frames of.
        max_frames: Frames handed per filmed episode at most.
        max_steps: Safety bound on vector steps.

    Returns:
        The :class:`Evaluation`.

    Raises:
        ValueError: ``n_episodes`` below 1.
        TypeError: ``venv`` holds no preference wrapper.
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    wrapper = find_preference_wrapper(venv)
    wrapper.training = True
    # Monitor's episode is the game (an Atari life loss ends the agent's episode, not the game).
    episode_key = "episode" if _has_monitor(venv) else "pref_episode"
    returns: list[float] = []
    observations = venv.reset()
    recording, episode, n_frames, in_episode = on_frame is not None, 0, 0, 0
    video_error: str | None = None
    for _ in range(max_steps):
        if recording and episode in film and in_episode < max_frames:
            try:
                frame = venv.get_images()[0]
                if frame is not None:
                    on_frame(episode, frame)  # type: ignore[misc]
                    n_frames += 1
                    in_episode += 1
            except Exception as error:  # a renderer that fails (no OpenGL...) costs the video only
                video_error = " ".join(f"{type(error).__name__}: {error}".split())
                recording = False
        observations, _, _, infos = venv.step(act(observations))
        for index, info in enumerate(infos):
            finished = info.get(episode_key)
            if finished is not None:
                returns.append(float(finished["r"] if episode_key == "episode" else finished["true_return"]))
                if index == 0:
                    episode, in_episode = episode + 1, 0
        if len(returns) >= n_episodes:
            break
    true_returns, learned_returns = held_out_returns(wrapper)
    return Evaluation(np.array(returns[:n_episodes]), true_returns, learned_returns, n_frames, video_error)


def held_out_returns(
    wrapper: PreferenceRewardWrapper, rows_per_chunk: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """True and learned returns ``(S,)`` of the segments the wrapper recorded (learned: NaN if unfitted)."""
    segments = wrapper.segments
    rows = segments.newest_rows()
    horizon = segments.segment_length
    mask = np.arange(horizon)[None, :] < segments.lengths[rows, None]  # (S, H): steps inside the segment
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


def random_actions(venv: VecEnv, seed: int) -> Act:
    """A uniformly random policy for ``venv`` (seeded)."""
    space = venv.action_space
    space.seed(seed)

    def act(observations: VecEnvObs) -> np.ndarray:
        return np.array([space.sample() for _ in range(venv.num_envs)])

    return act


def policy_actions(model: BaseAlgorithm, deterministic: bool = True) -> Act:
    """The actions of an SB3 model (``model.predict``)."""

    def act(observations: VecEnvObs) -> np.ndarray:
        actions, _ = model.predict(observations, deterministic=deterministic)
        return actions

    return act


def _has_monitor(venv: VecEnv) -> bool:
    try:
        return bool(venv.env_is_wrapped(Monitor, indices=[0])[0])
    except (AttributeError, IndexError):
        return False


# ------------------------------------------------------------------------------------- a run's policy


@dataclass(frozen=True)
class HeldOut:
    """The learned reward that scores held-out segments, and their length in steps."""

    learned_reward: LearnedReward | None
    segment_length: int


def evaluate_run(
    setup: Setup,
    run: RunDir,
    model: BaseAlgorithm,
    held_out: HeldOut,
    *,
    video: bool,
    deterministic: bool = True,
    prefix: Path | None = None,
) -> dict[str, Any]:
    """Evaluate the policy and a random policy on fresh envs; write the held-out data and the videos.

    Args:
        prefix: Where this evaluation's files go: ``PREFIX-reward_vs_true.npz`` and
            ``PREFIX-episodeK-return±R.mp4``; ``None``: the run's own (``plots/reward_vs_true.npz``,
            ``videos/policy-...``), as the final evaluation of ``prefwrap train`` writes them.

    Returns:
        The summary's evaluation entries (returns, correlation, title, video paths).
    """
    config = setup.config
    eval_seed = config.seed + EVAL_SEED_OFFSET
    normalizer = run.vecnormalize if setup.params.normalize else None
    act = policy_actions(model, deterministic)
    policy = _evaluate_once(setup, held_out, normalizer, eval_seed, act)
    videos: list[Path] = []
    if video:
        stem = prefix if prefix is not None else run.videos / "policy"
        if prefix is None:
            for old in run.videos.glob("policy*"):  # an earlier session's final videos
                old.unlink()
        videos = film_episodes(setup, held_out, normalizer, eval_seed, act, policy.episode_returns, stem)
    randomly = _evaluate_once(setup, held_out, normalizer, eval_seed + 1, None)
    true_returns = np.concatenate([policy.segment_true_returns, randomly.segment_true_returns])
    learned_returns = np.concatenate([policy.segment_learned_returns, randomly.segment_learned_returns])
    source = np.concatenate(
        [np.zeros(len(policy.segment_true_returns)), np.ones(len(randomly.segment_true_returns))]
    )
    data = Path(f"{prefix}-{REWARD_DATA}") if prefix is not None else run.plots / REWARD_DATA
    save_reward_data(data, true_returns, learned_returns, source)
    return {
        "env_id": config.env_id,
        "algo": config.algo,
        "oracle": config.oracle,
        "title": f"{config.algo.upper()} on {config.env_id}, reward learned from {config.oracle} preferences",
        "policy_return": return_stats(policy.episode_returns),
        "random_return": return_stats(randomly.episode_returns),
        "reward_correlation": finite_or_none(correlation(true_returns, learned_returns)),
        "videos": [str(path) for path in videos],
        "video": str(videos[0]) if videos else None,
    }


def median_episodes(returns: np.ndarray, n: int) -> list[int]:
    """Indices of the ``n`` episodes whose returns are nearest the median (the median one first)."""
    order = np.argsort(np.abs(returns - np.median(returns)), kind="stable")
    return [int(i) for i in order[:n]]


def film_episodes(
    setup: Setup,
    held_out: HeldOut,
    normalizer: Path | None,
    seed: int,
    act: Act,
    returns: np.ndarray,
    stem: Path,
) -> list[Path]:
    """Film the ``--video-episodes`` episodes nearest the median return, replaying the evaluation
    (same seeds, so the same episodes for a deterministic policy) with rendering on.

    Each goes to ``STEM-episodeK-return±R.mp4`` (``R``: the return of the filmed episode), at most
    ``--video-seconds`` of it. Returns the files written.
    """
    config, info = setup.config, setup.info
    if len(returns) == 0:
        return []
    chosen = median_episodes(returns, config.video_episodes)
    fps = (info.render_fps or 30.0) / (4 if info.atari else 1)
    writers = {k: VideoWriter(stem.with_name(f"{stem.name}-filming{k}"), fps=fps) for k in chosen}
    seconds = config.video_seconds
    filmed = _evaluate_once(
        setup,
        held_out,
        normalizer,
        seed,
        act,
        n_episodes=max(chosen) + 1,
        on_frame=lambda k, frame: writers[k].add(frame),
        film=chosen,
        max_frames=int(seconds * fps) if seconds > 0 else 1_000_000,
    )
    if filmed.video_error:
        print(f"No video: rendering failed ({filmed.video_error})")
    paths = []
    for k, writer in writers.items():
        path = writer.close()
        if path is not None and k < len(filmed.episode_returns):
            final = stem.with_name(
                f"{stem.name}-episode{k}-return{filmed.episode_returns[k]:+.1f}{path.suffix}"
            )
            paths.append(path.replace(final))
    return paths


def _evaluate_once(
    setup: Setup,
    held_out: HeldOut,
    normalizer: Path | None,
    seed: int,
    act: Act | None,
    *,
    n_episodes: int | None = None,
    on_frame: Callable[[int, np.ndarray], None] | None = None,
    film: Collection[int] = (),
    max_frames: int = 0,
) -> Evaluation:
    """One evaluation on a fresh single env (``act=None``: a random policy); ``on_frame``: film it."""
    base = make_base_env(setup, 1, seed, render=on_frame is not None)
    wrapper = PreferenceRewardWrapper(
        base,
        reward_model=held_out.learned_reward,
        segment_length=held_out.segment_length,
        buffer_size=256 if setup.info.image else 4000,
    )
    venv = with_normalizer(wrapper, setup.params, normalizer, training=False)
    try:
        return evaluate(
            venv,
            act or random_actions(venv, seed),
            n_episodes or setup.config.eval_episodes,
            on_frame=on_frame,
            film=film,
            max_frames=max_frames,
        )
    finally:
        venv.close()


def train_baseline(setup: Setup, run: RunDir, held_out: HeldOut) -> dict[str, Any]:
    """Train the same algorithm on the true reward (same steps, seed, hyperparameters) and evaluate it.

    Returns:
        Its true-return statistics (:func:`return_stats`).
    """
    config = setup.config
    print(f"Training the baseline: {config.algo.upper()} on the true reward, {config.steps:,} steps...")
    set_random_seed(config.seed)
    logs = run.baseline / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    base = make_base_env(setup, config.n_envs, config.seed)
    venv = with_normalizer(base, setup.params, None, training=True)
    model = build_model(setup, venv)
    model.set_logger(Logger(str(logs), [CSVOutputFormat(str(logs / "progress.csv"))]))
    model.learn(config.steps, progress_bar=config.progress_bar)
    model.save(str(run.baseline / "policy.zip"))
    normalizer = None
    if model.get_vec_normalize_env() is not None:
        normalizer = run.baseline / "vecnormalize.pkl"
        model.get_vec_normalize_env().save(str(normalizer))
    venv.close()
    evaluation = _evaluate_once(
        setup, held_out, normalizer, config.seed + EVAL_SEED_OFFSET, policy_actions(model)
    )
    return return_stats(evaluation.episode_returns)


def return_stats(returns: np.ndarray) -> dict[str, Any]:
    """``{"mean", "std", "episodes"}`` of episode returns ``(n,)`` (``None`` where undefined)."""
    values = np.asarray(returns, dtype=float)
    return {
        "mean": finite_or_none(float(values.mean())) if len(values) else None,
        "std": finite_or_none(float(values.std())) if len(values) else None,
        "episodes": len(values),
    }


def finite_or_none(value: float | None) -> float | None:
    """``value``, or ``None`` when it is NaN or infinite (JSON has no NaN)."""
    return value if value is not None and math.isfinite(value) else None


def label_counts(store: PreferenceStore, budget: int) -> dict[str, int]:
    """Labels stored from the oracle (demonstration pairs apart: they are not in the budget), the
    budget, how many of the labels are "can't tell" skips, and the demonstration pairs."""
    labels = store.labels()
    oracle = [label for label in labels if label.labeler != DEMO_LABELER]
    return {
        "labels": len(oracle),
        "label_budget": budget,
        "skipped": sum(1 for label in oracle if label.preference.value == "skip"),
        "demo_labels": len(labels) - len(oracle),
    }
