"""The run directory of ``prefwrap train``: its layout, its configuration and its checkpoints.

Layout (see ``docs/cli.md``)::

    RUN_DIR/
      config.json            arguments, env id, versions, seed; one entry per session in "sessions"
      preferences.sqlite     every segment asked about, every query and every label (the store)
      reward_model.pt        the learned reward (LearnedReward.save)
      policy.zip             the policy (SB3's model.save format: load with PPO.load(...), etc.)
      vecnormalize.pkl       VecNormalize statistics, when the env is normalised
      replay_buffer.pkl      off-policy algorithms only, so that a resumed run keeps its buffer
      fitting_state.pt       the reward fitter's state (L2 coefficient, optimizer), episode-return windows
      checkpoint.json        timestep and label count of the last checkpoint
      checkpoints/step-N/    with --save-freq: the checkpoints kept (--resume --checkpoint, eval --checkpoint)
      evaluations.npz        periodic true-reward evaluations (the zoo's format); best_model.zip the best
      summary.json           the final evaluation (true returns, labels, accuracy, correlation)
      evals/                 each `prefwrap eval`: eval-TIME.json (+ its video), never summary.json
      logs/                  progress*.csv (one per session) and TensorBoard event files
      plots/                 returns.png, reward_vs_true.png (+ reward_vs_true.npz, its data)
      videos/                policy.mp4 (or .gif) of one evaluation episode
      baseline/              with --baseline: the same algorithm trained on the true reward

Checkpoints (:mod:`prefwrap.cli.checkpoints`) are written every ``checkpoint_every`` steps and at the
end; every file is written to a temporary name and renamed, so a run killed at any moment leaves the
previous complete file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stable_baselines3.common.utils import get_system_info

CONFIG = "config.json"
STORE = "preferences.sqlite"
REWARD_MODEL = "reward_model.pt"
POLICY = "policy.zip"
VECNORMALIZE = "vecnormalize.pkl"
REPLAY_BUFFER = "replay_buffer.pkl"
CHECKPOINT = "checkpoint.json"
SUMMARY = "summary.json"
FITTING_STATE = "fitting_state.pt"
EVALUATIONS = "evaluations.npz"


class RunDirError(ValueError):
    """The run directory cannot be used as asked (missing, another env's, already a run...)."""


@dataclass(frozen=True)
class RunDir:
    """Paths of one run directory."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def store(self) -> Path:
        return self.path / STORE

    @property
    def reward_model(self) -> Path:
        return self.path / REWARD_MODEL

    @property
    def policy(self) -> Path:
        return self.path / POLICY

    @property
    def vecnormalize(self) -> Path:
        return self.path / VECNORMALIZE

    @property
    def replay_buffer(self) -> Path:
        return self.path / REPLAY_BUFFER

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY

    @property
    def fitting_state(self) -> Path:
        return self.path / FITTING_STATE

    @property
    def evaluations(self) -> Path:
        return self.path / EVALUATIONS

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def evals(self) -> Path:
        return self.path / "evals"

    def kept_checkpoint(self, step: int) -> RunDir:
        """The checkpoint ``--save-freq`` kept at ``step`` (``checkpoints/step-STEP``), as a RunDir.

        Raises:
            RunDirError: There is none; names the steps there are.
        """
        kept = RunDir(self.checkpoints / f"step-{step}")
        if not kept.policy.is_file():
            steps = sorted(int(p.name[5:]) for p in self.checkpoints.glob("step-*") if p.name[5:].isdigit())
            there = ", ".join(str(s) for s in steps) if steps else "none (train with --save-freq N)"
            raise RunDirError(f"{self.path} has no checkpoint of step {step}; kept checkpoints: {there}")
        return kept

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    @property
    def plots(self) -> Path:
        return self.path / "plots"

    @property
    def videos(self) -> Path:
        return self.path / "videos"

    @property
    def baseline(self) -> Path:
        return self.path / "baseline"

    def next_progress_csv(self) -> Path:
        """``logs/progress.csv`` for the first session, ``progress.1.csv``, ... for resumed ones."""
        self.logs.mkdir(parents=True, exist_ok=True)
        existing = progress_csvs(self.logs)
        return self.logs / ("progress.csv" if not existing else f"progress.{len(existing)}.csv")


def progress_csvs(logs: Path) -> list[Path]:
    """The SB3 CSV logs of a run, oldest session first."""
    files = [p for p in logs.glob("progress*.csv") if p.is_file()]

    def session(path: Path) -> int:
        middle = path.name[len("progress") : -len(".csv")].lstrip(".")
        return int(middle) if middle.isdigit() else 0

    return sorted(files, key=session)


def new_run_dir(path: str | os.PathLike[str]) -> RunDir:
    """Create a fresh run directory.

    Raises:
        RunDirError: ``path`` already holds a run, or is a file.
    """
    run = RunDir(Path(path))
    if run.config.exists():
        raise RunDirError(
            f"{run.path} already holds a run: continue it with --resume {run.path}, "
            "or choose another --run-dir"
        )
    if run.path.exists() and not run.path.is_dir():
        raise RunDirError(f"--run-dir {run.path} is a file, not a directory")
    run.path.mkdir(parents=True, exist_ok=True)
    return run


def open_run_dir(path: str | os.PathLike[str]) -> tuple[RunDir, dict[str, Any]]:
    """An existing run directory and its configuration (``config.json``).

    Raises:
        RunDirError: Not a directory, no readable ``config.json``, or one without ``env_id``.
    """
    run = RunDir(Path(path))
    if not run.path.is_dir():
        raise RunDirError(f"{run.path} is not a directory: give the run directory that prefwrap train wrote")
    if not run.config.is_file():
        raise RunDirError(f"{run.path} has no {CONFIG}: it is not a prefwrap run directory")
    try:
        config = json.loads(run.config.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise RunDirError(f"cannot read {run.config}: {error}") from error
    if not isinstance(config, dict) or "env_id" not in config:
        raise RunDirError(f"{run.config} has no env_id: it was not written by prefwrap train")
    return run, config


def check_same_env(config: dict[str, Any], env_id: str | None, run: RunDir) -> None:
    """Refuse to resume a run directory of another environment.

    Raises:
        RunDirError: ``env_id`` is given and is not the run's.
    """
    if env_id is not None and env_id != config["env_id"]:
        raise RunDirError(
            f"{run.path} is a {config['env_id']} run, not {env_id}: resume it without ENV_ID, "
            "or start a new run with another --run-dir"
        )


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or ``None`` if it does not exist or is unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def versions() -> dict[str, str]:
    """Versions that matter to reproduce a run: prefwrap's, and SB3's ``get_system_info`` (OS, Python,
    Stable-Baselines3, PyTorch, GPU, NumPy, Cloudpickle, Gymnasium)."""
    import prefwrap

    system, _ = get_system_info(print_info=False)
    return {"prefwrap": prefwrap.__version__, **system}
