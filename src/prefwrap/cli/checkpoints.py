"""Checkpoints of a run: everything ``--resume`` needs, every ``--checkpoint-every`` steps, and the
series ``--save-freq`` keeps in ``checkpoints/step-N/``.

A checkpoint holds the policy, the reward model, the ``VecNormalize`` statistics, (off-policy) the
replay buffer, the reward fitter's state and the training-episode return windows
(``fitting_state.pt``), and ``checkpoint.json``: the step and the store's position (labels and
queries so far). The policy goes last but for ``checkpoint.json``, so a complete ``policy.zip``
always has a reward model at least as recent.
"""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING, Any

import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecNormalize

from prefwrap.cli.run_dir import RunDir, atomic_path, read_json, write_json

if TYPE_CHECKING:
    from prefwrap.learner import PreferenceLearner

KEPT = ("policy.zip", "reward_model.pt", "vecnormalize.pkl", "fitting_state.pt", "checkpoint.json")
"""The files a ``--save-freq`` checkpoint keeps (not the replay buffer: too large to keep a series of)."""


def fitting_state(learner: PreferenceLearner) -> dict[str, Any]:
    """What a resumed run needs to fit the reward as the uninterrupted run would, and the training
    return windows (so the training curve does not restart at a resume)."""
    wrapper = learner.wrapper
    return {
        "learner": learner.state_dict(),
        "episode_true_returns": [float(r) for r in wrapper.episode_true_returns],
        "episode_learned_returns": [float(r) for r in wrapper.episode_learned_returns],
    }


def restore_fitting_state(learner: PreferenceLearner, run: RunDir) -> bool:
    """Load ``fitting_state.pt`` into ``learner``; ``False`` if the run has none (older runs)."""
    if not run.fitting_state.is_file():
        return False
    state = torch.load(run.fitting_state, map_location="cpu", weights_only=True)
    learner.load_state_dict(state["learner"])
    wrapper = learner.wrapper
    wrapper.episode_true_returns.extend(state["episode_true_returns"])
    wrapper.episode_learned_returns.extend(state["episode_learned_returns"])
    return True


def save_checkpoint(run: RunDir, model: BaseAlgorithm, learner: PreferenceLearner) -> None:
    """Save the policy, the reward model and its fitting state, VecNormalize statistics, (off-policy)
    the replay buffer, and ``checkpoint.json`` last."""
    if isinstance(model, OffPolicyAlgorithm) and model.replay_buffer is not None:
        with atomic_path(run.replay_buffer) as tmp:
            model.save_replay_buffer(tmp)
    if learner.wrapper.learned_reward.fitted:
        with atomic_path(run.reward_model) as tmp:
            learner.wrapper.save_reward_model(tmp)
    with atomic_path(run.fitting_state) as tmp:
        torch.save(fitting_state(learner), tmp)
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
    """Saves everything ``--resume`` needs (:func:`save_checkpoint`) every ``every`` steps, at rollout
    ends, and when training ends; with ``keep_every``, keeps a copy every ``keep_every`` steps.

    Named apart from SB3's ``CheckpointCallback``, which saves the policy alone under numbered names.

    Args:
        run: The run directory.
        learner: Its reward model, fitter and store are saved with the policy.
        every: Steps between checkpoints.
        keep_every: Steps between kept checkpoints (``checkpoints/step-N``); ``None`` or below 1: none.

    Raises:
        ValueError: ``every`` below 1.
    """

    def __init__(
        self,
        run: RunDir,
        learner: PreferenceLearner,
        every: int,
        keep_every: int | None = None,
    ) -> None:
        super().__init__()
        if every < 1:
            raise ValueError(f"checkpoint period must be >= 1 step, got {every}")
        self.run = run
        self.learner = learner
        self.every = every
        self.keep_every = keep_every if keep_every and keep_every > 0 else None
        self._last = 0
        self._last_kept = 0

    def _on_training_start(self) -> None:
        self._last = self.num_timesteps
        if self.keep_every:
            self._last_kept = self.num_timesteps // self.keep_every

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        due_keep = self.keep_every is not None and self.num_timesteps // self.keep_every > self._last_kept
        if self.num_timesteps - self._last >= self.every or due_keep:
            self.save()

    def _on_training_end(self) -> None:
        self.save()

    def save(self) -> None:
        """Write a checkpoint now (and keep it when a ``keep_every`` boundary was crossed)."""
        save_checkpoint(self.run, self.model, self.learner)
        self._last = self.num_timesteps
        if self.keep_every is not None and self.num_timesteps // self.keep_every > self._last_kept:
            self._last_kept = self.num_timesteps // self.keep_every
            keep_checkpoint(self.run)
