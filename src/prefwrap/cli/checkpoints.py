"""Checkpoints of a run: everything ``--resume`` needs, every ``--checkpoint-every`` steps, and the
series ``--save-freq`` keeps in ``checkpoints/step-N/``.

A checkpoint holds the policy, the reward model, the ``VecNormalize`` statistics, (off-policy) the
replay buffer, the recorded segments queries are drawn from (``segments.npz``), ``fitting_state.pt``
(the learner's and the synthetic oracle's state, the training-return windows, the step counters and
the random state of :mod:`prefwrap.cli.random_state`), and ``checkpoint.json``: the step and the
store's position (labels and queries so far). The policy goes last but for ``checkpoint.json``, so a
complete ``policy.zip`` always has a reward model at least as recent.

Periodic checkpoints are written at the start of a rollout, after the policy was updated on the last
one. A resumed run then goes on exactly as the uninterrupted run (same labels, reward weights and
policy on CPU) when, in addition, every training env ended an episode on the checkpoint's last step
(the envs' resets are replayed from their saved generators) and no label was stored after the
checkpoint. Otherwise the episodes in progress restart, as SB3 resets the envs; a checkpoint written
on Ctrl-C or an error, mid-rollout, resumes that way too.
"""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from prefwrap.cli.callbacks import rollout_steps
from prefwrap.cli.random_state import (
    env_generators,
    global_generators,
    model_generators,
    replay_resets,
    restore_global_generators,
    restore_model_generators,
)
from prefwrap.cli.run_dir import RunDir, atomic_path, read_json, write_json
from prefwrap.oracles.synthetic import SyntheticOracle

if TYPE_CHECKING:
    from prefwrap.callback import PreferenceCallback
    from prefwrap.wrapper import PreferenceRewardWrapper

SEGMENTS = "segments.npz"
"""The segment buffer of the last checkpoint (not kept in ``checkpoints/step-N``: as large as the
buffer)."""

KEPT = ("policy.zip", "reward_model.pt", "vecnormalize.pkl", "fitting_state.pt", "checkpoint.json")
"""The files a ``--save-freq`` checkpoint keeps (not the replay buffer or the segments: too large to
keep a series of)."""


def fitting_state(
    preference: PreferenceCallback, model: BaseAlgorithm, envs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What a resumed run needs, besides the files SB3 and the reward model write, to go on as the
    uninterrupted run would (plain types and tensors, for ``torch.load(weights_only=True)``).

    Args:
        preference: The run's preference callback: its learner, oracle, wrapper and diagnostics step.
        model: The SB3 model, for its generators (:func:`~prefwrap.cli.random_state.model_generators`).
        envs: The training envs at an episode boundary: ``{"generators": [...], "observations": ...}``
            (see :class:`SaveRunCallback`), or ``None``: the resumed run resets them.
    """
    learner = preference.learner
    wrapper = learner.wrapper
    oracle = learner.oracle
    return {
        "learner": learner.state_dict(),
        "oracle": oracle.state_dict() if isinstance(oracle, SyntheticOracle) else None,
        "episode_true_returns": [float(r) for r in wrapper.episode_true_returns],
        "episode_learned_returns": [float(r) for r in wrapper.episode_learned_returns],
        "recorded_steps": int(wrapper.num_timesteps),
        # PreferenceCallback runs reward diagnostics every DIAGNOSTICS_EVERY steps from here; they set
        # the learner's focus on recent segments, so their timing shapes the queries
        "diagnosed_at": int(preference._diagnosed_at),
        "random": {"global": global_generators(), "model": model_generators(model)},
        "envs": envs,
    }


def restore_fitting_state(preference: PreferenceCallback, run: RunDir) -> dict[str, Any] | None:
    """Load ``fitting_state.pt`` and ``segments.npz`` (each if present) into the callback's learner,
    oracle and wrapper; returns the state, or ``None`` if the run has none (older runs).

    Raises:
        ValueError: The saved segments do not fit the wrapper's buffer.
    """
    learner = preference.learner
    wrapper = learner.wrapper
    segments = run.path / SEGMENTS
    if segments.is_file():
        with np.load(segments, allow_pickle=False) as arrays:
            wrapper.segments.load_state_dict(dict(arrays))
    if not run.fitting_state.is_file():
        return None
    state = torch.load(run.fitting_state, map_location="cpu", weights_only=True)
    learner.load_state_dict(state["learner"])
    if state.get("oracle") is not None and isinstance(learner.oracle, SyntheticOracle):
        learner.oracle.load_state_dict(state["oracle"])
    wrapper.episode_true_returns.extend(state["episode_true_returns"])
    wrapper.episode_learned_returns.extend(state["episode_learned_returns"])
    wrapper.num_timesteps = state.get("recorded_steps", wrapper.num_timesteps)
    preference._diagnosed_at = state.get("diagnosed_at", preference._diagnosed_at)
    return state


def resume_envs(wrapper: PreferenceRewardWrapper, state: dict[str, Any] | None) -> bool:
    """Replay the training envs' resets from a checkpoint taken at an episode boundary.

    Returns:
        Whether the envs now start the very episodes the uninterrupted run went on with (their
        observations are the checkpoint's): the model may then keep its last observation instead of
        resetting the envs (``load(..., force_reset=False)``).
    """
    envs = (state or {}).get("envs")
    if envs is None:
        return False
    observations = replay_resets(wrapper, envs["generators"])
    saved = envs["observations"]
    if isinstance(saved, dict):
        return all(np.array_equal(observations[key], saved[key].numpy()) for key in saved)
    return bool(np.array_equal(observations, saved.numpy()))


def save_checkpoint(
    run: RunDir, model: BaseAlgorithm, preference: PreferenceCallback, envs: dict[str, Any] | None = None
) -> None:
    """Save the policy, the reward model, the segments and the fitting state, VecNormalize statistics,
    (off-policy) the replay buffer, and ``checkpoint.json`` last.

    Args:
        run: The run directory.
        model: The SB3 model.
        preference: The run's preference callback.
        envs: The training envs' generators and observations at an episode boundary, or ``None``.
    """
    learner = preference.learner
    # first: the learner installs a refit still running in the background (PreferenceLearner.state_dict),
    # so the reward model saved next holds the weights this state goes with
    state = fitting_state(preference, model, envs)
    if isinstance(model, OffPolicyAlgorithm) and model.replay_buffer is not None:
        with atomic_path(run.replay_buffer) as tmp:
            model.save_replay_buffer(tmp)
    if learner.wrapper.learned_reward.fitted:
        with atomic_path(run.reward_model) as tmp:
            learner.wrapper.save_reward_model(tmp)
    with atomic_path(run.path / SEGMENTS) as tmp, tmp.open("wb") as file:
        np.savez(file, **learner.wrapper.segments.state_dict())
    with atomic_path(run.fitting_state) as tmp:
        torch.save(state, tmp)
    normalizer = model.get_vec_normalize_env()
    if isinstance(normalizer, VecNormalize):
        with atomic_path(run.vecnormalize) as tmp:
            normalizer.save(tmp)
    with atomic_path(run.policy) as tmp:
        model.save(tmp)
    write_json(
        run.checkpoint,
        {
            "timesteps": int(model.num_timesteps),
            "labels": int(learner.n_labels),
            "queries": int(learner.store.next_query_id()),
            "saved_at": time.time(),
        },
    )


def keep_checkpoint(run: RunDir) -> RunDir:
    """Copy the checkpoint just written into ``checkpoints/step-N/``; returns that directory."""
    step = int((read_json(run.checkpoint) or {}).get("timesteps", 0))
    kept = RunDir(run.checkpoints / f"step-{step}")
    kept.path.mkdir(parents=True, exist_ok=True)
    for name in KEPT:
        if (run.path / name).is_file():
            shutil.copy2(run.path / name, kept.path / name)
    return kept


class SaveRunCallback(BaseCallback):
    """Saves everything ``--resume`` needs (:func:`save_checkpoint`) every ``every`` steps (at the start
    of the next rollout, once the policy is updated on the last one) and when training ends; with
    ``keep_every``, keeps a copy every ``keep_every`` steps. A resumed run's random state is restored
    here too.

    Before the last step of a rollout that ends in a checkpoint, it takes each env's generator; when
    that step ends every env's episode, the checkpoint keeps them, so that a resumed run replays the
    envs' resets (:func:`resume_envs`) and goes on exactly.

    Named apart from SB3's ``CheckpointCallback``, which saves the policy alone under numbered names.

    Args:
        run: The run directory.
        preference: The run's preference callback; its learner, oracle and wrapper are saved with the policy.
        every: Steps between checkpoints.
        keep_every: Steps between kept checkpoints (``checkpoints/step-N``); ``None`` or below 1: none.
        resumed: A resumed run's saved ``random`` state (:func:`fitting_state`), set at the first
            rollout start: where the uninterrupted run took it.

    Raises:
        ValueError: ``every`` below 1.
    """

    def __init__(
        self,
        run: RunDir,
        preference: PreferenceCallback,
        every: int,
        keep_every: int | None = None,
        resumed: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"checkpoint period must be >= 1 step, got {every}")
        self.run = run
        self.preference = preference
        self.every = every
        self.keep_every = keep_every if keep_every and keep_every > 0 else None
        self._resumed = resumed
        self._last = 0
        self._last_kept = 0
        self._rollout_end = -1
        self._generators_at = -1  # the step after which the envs' generators are taken
        self._generators: list[dict[str, Any]] | None = None
        self._envs: dict[str, Any] | None = None  # the envs at the boundary self._envs_at
        self._envs_at = -1

    def _due(self, step: int) -> bool:
        kept = self.keep_every is not None and step // self.keep_every > self._last_kept
        return step - self._last >= self.every or kept

    def _on_training_start(self) -> None:
        self._last = self.num_timesteps
        if self.keep_every:
            self._last_kept = self.num_timesteps // self.keep_every
        self._rollout_end = self._generators_at = -1

    def _on_rollout_start(self) -> None:
        if self._resumed is not None:  # after SB3's own draws at rollout start, as when it was taken
            restore_global_generators(self._resumed["global"])
            restore_model_generators(self.model, self._resumed["model"])
            self._resumed = None
        if self.num_timesteps > self._last and self._due(self.num_timesteps):
            self.save()
        unit = rollout_steps(self.model)
        self._rollout_end = self.num_timesteps + unit if unit else -1
        # a checkpoint ends this rollout: a periodic one, or the one at the end of this learn()
        due = unit is not None and (
            self._due(self._rollout_end) or self._rollout_end >= self.model._total_timesteps
        )
        self._generators_at = self._rollout_end - self.model.n_envs if due else -1
        if self._generators_at == self.num_timesteps:  # one-step rollouts: the last step is next
            self._generators = env_generators(self.preference.wrapper)

    def _on_step(self) -> bool:
        if self.num_timesteps == self._generators_at:
            self._generators = env_generators(self.preference.wrapper)
        elif self.num_timesteps == self._rollout_end and self._generators is not None:
            if np.all(self.locals["dones"]):
                self._envs = {"generators": self._generators, "observations": self._raw_observations()}
                self._envs_at = self.num_timesteps
            self._generators = None
        return True

    def _raw_observations(self) -> Any:
        """The preference wrapper's observations after this step (below ``VecNormalize``), as tensors."""
        normalizer = self.model.get_vec_normalize_env()
        observations = normalizer.get_original_obs() if normalizer is not None else self.locals["new_obs"]
        if isinstance(observations, dict):
            return {key: torch.from_numpy(np.array(value)) for key, value in observations.items()}
        return torch.from_numpy(np.array(observations))

    def _on_training_end(self) -> None:
        self.save()

    def save(self) -> None:
        """Write a checkpoint now (and keep it when a ``keep_every`` boundary was crossed)."""
        envs = self._envs if self._envs_at == self.num_timesteps else None
        save_checkpoint(self.run, self.model, self.preference, envs)
        self._last = self.num_timesteps
        if self.keep_every is not None and self.num_timesteps // self.keep_every > self._last_kept:
            self._last_kept = self.num_timesteps // self.keep_every
            keep_checkpoint(self.run)
