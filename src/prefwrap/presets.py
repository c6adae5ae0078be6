"""Settings from the paper as ready-made keyword arguments for the wrapper and the callback.

A preset is two dicts: ``wrapper`` for :class:`~prefwrap.PreferenceRewardWrapper` and ``learner`` for
:class:`~prefwrap.PreferenceCallback` (or :class:`~prefwrap.learner.PreferenceLearner`). Override any
entry by editing the dict or passing the keyword after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prefwrap.schedule import DecayingSchedule


@dataclass(frozen=True)
class Preset:
    """Keyword arguments for the wrapper (``wrapper``) and the callback or learner (``learner``)."""

    wrapper: dict[str, Any] = field(default_factory=dict)
    learner: dict[str, Any] = field(default_factory=dict)


def atari_preset(
    total_labels: int = 5500,
    *,
    initial_labels: int = 500,
    max_labels: int = 3000,
    decay_timesteps: float = 5e6,
    initial_fit_epochs: int = 200,
    seed: int | None = None,
) -> Preset:
    """The paper's Atari schedule (Christiano et al. 2017, section 3.3 and appendix A.2).

    - 25-step segments (about 1.7 s of play at frame skip 4), reward normalised to std 0.05;
    - the first ``initial_labels`` labels compare clips of the initial (random) policy, and the reward
      model is pretrained on them for ``initial_fit_epochs`` epochs at the first rollout end, before
      the policy trains on it (the paper: 500 labels, 200 epochs);
    - the rest of the budget follows a rate ∝ ``c / (T + c)`` with ``c = decay_timesteps`` in
      environment steps (SB3 timesteps; one step is 4 frames with the usual frame skip);
    - the reward is fitted on the most recent ``max_labels`` labels only (the paper: 3,000);
    - the reward model sees observations only (the paper's Atari predictor takes stacked frames).

    Args:
        total_labels: Label budget of the run (the paper: 5,500 for most games).
        initial_labels: Labels asked before the policy trains on the learned reward.
        max_labels: Labels kept for fitting (oldest dropped first).
        decay_timesteps: ``c`` of the decaying label rate, in environment steps.
        initial_fit_epochs: Epochs of the first (pretraining) fit.
        seed: Seed of the learner (query sampling, bootstrap).

    Example:
        >>> from stable_baselines3 import PPO
        >>> from stable_baselines3.common.env_util import make_atari_env
        >>> from stable_baselines3.common.vec_env import VecFrameStack
        >>> from prefwrap import PreferenceCallback, PreferenceRewardWrapper, SyntheticOracle
        >>> preset = atari_preset(total_labels=5500)
        >>> venv = make_atari_env("ALE/Pong-v5", n_envs=8, env_kwargs={"frameskip": 1})  # doctest: +SKIP
        >>> venv = PreferenceRewardWrapper(VecFrameStack(venv, 4), **preset.wrapper)  # doctest: +SKIP
        >>> callback = PreferenceCallback(venv, SyntheticOracle(), **preset.learner)  # doctest: +SKIP
        >>> PPO("CnnPolicy", venv).learn(2_500_000, callback=callback)  # 10M frames  # doctest: +SKIP
    """
    if not 1 <= initial_labels <= total_labels:
        raise ValueError(f"initial_labels must be in [1, total_labels={total_labels}], got {initial_labels}")
    return Preset(
        wrapper=dict(segment_length=25, reward_std=0.05, n_members=3, use_actions=False),
        learner=dict(
            total_labels=total_labels,
            schedule=DecayingSchedule(
                total_labels, initial_fraction=initial_labels / total_labels, decay_timesteps=decay_timesteps
            ),
            max_labels=max_labels,
            initial_fit_epochs=initial_fit_epochs,
            max_fit_seconds=120.0,
            normalization_segments=200,  # 5,000 steps: a CNN forward over every stored step is costly
            seed=seed,
        ),
    )
