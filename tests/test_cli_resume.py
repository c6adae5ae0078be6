"""A run stopped right after a checkpoint and resumed goes on exactly as if it had never stopped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO

from prefwrap.cli import checkpoints, main
from prefwrap.records import Segment
from prefwrap.store import PreferenceStore

# Pendulum-v1 episodes last 200 steps: with 2 envs and n_steps=200 every rollout of 400 steps ends
# with both episodes, so every checkpoint falls on an episode boundary (the case resume makes exact).
STEPS, STOP = 2400, 1200
TINY = [
    "train", "Pendulum-v1", "--seed", "3", "--steps", str(STEPS), "--labels", "20", "--n-envs", "2",
    "--oracle", "synthetic:stoch",
    "--hyperparams", "n_steps=200", "batch_size=100", "n_epochs=2",
    "--learner", "min_segments=8", "initial_fit_epochs=20",
    "--checkpoint-every", "400", "--eval-freq", "-1", "--eval-episodes", "1",
    "--no-video", "--no-progress-bar", "-v", "0",
]  # fmt: skip


class Killed(BaseException):
    """Stands for SIGKILL: nothing catches it, so no checkpoint is written on the way out."""


@pytest.fixture(autouse=True)
def _in_tmp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def stored_labels(run: Path) -> list[tuple[Any, ...]]:
    """Every label: its query id, the preference, and each segment's id, timestep, env and arrays."""
    with PreferenceStore(run / "preferences.sqlite") as store:
        rows = []
        for label in store.labels():
            segments = [
                (s.segment_id, s.timestep, s.env_index, s.length, *map(np.ndarray.tobytes, arrays(s)))
                for s in store.query(label.query_id, with_frames=False).segments
            ]
            rows.append((label.query_id, label.preference, segments))
        return rows


def arrays(segment: Segment) -> tuple[np.ndarray, ...]:
    return segment.observations, segment.actions, segment.true_rewards


def reward_weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "reward_model.pt", weights_only=True)["state_dict"]


def test_a_run_killed_after_a_checkpoint_and_resumed_equals_the_straight_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same labels (queries, segments, answers of a noisy teacher), reward weights, policy and
    segment buffer as the run that never stopped."""
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert main([*TINY, "--run-dir", str(straight)]) == 0

    save = checkpoints.save_checkpoint

    def save_then_die(run: Any, model: Any, *args: Any, **kwargs: Any) -> None:  # killed before any new label
        save(run, model, *args, **kwargs)
        if model.num_timesteps == STOP:
            raise Killed

    with monkeypatch.context() as patch, pytest.raises(Killed):
        patch.setattr(checkpoints, "save_checkpoint", save_then_die)
        main([*TINY, "--run-dir", str(stopped)])
    assert len(stored_labels(stopped)) < len(stored_labels(straight))
    assert main(["train", "--resume", str(stopped), "--no-progress-bar", "-v", "0"]) == 0

    assert stored_labels(stopped) == stored_labels(straight)
    expected, resumed = reward_weights(straight), reward_weights(stopped)
    assert expected.keys() == resumed.keys()
    for name, weights in expected.items():
        assert torch.equal(weights, resumed[name]), name
    policies = [PPO.load(run / "policy.zip", device="cpu").policy.state_dict() for run in (straight, stopped)]
    for name, weights in policies[0].items():
        assert torch.equal(weights, policies[1][name]), name
    with np.load(straight / "segments.npz") as want, np.load(stopped / "segments.npz") as got:
        assert want.files == got.files
        for name in want.files:
            np.testing.assert_array_equal(want[name], got[name])
