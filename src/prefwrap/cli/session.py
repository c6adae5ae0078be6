"""One ``prefwrap train`` session's records: ``config.json`` and ``config.yml``, SB3's logger, and
``--track`` (Weights & Biases)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from stable_baselines3.common.logger import (
    CSVOutputFormat,
    HumanOutputFormat,
    KVWriter,
    Logger,
    TensorBoardOutputFormat,
)

from prefwrap import __version__
from prefwrap.cli.build import zoo_block
from prefwrap.cli.config import TrainConfig, UsageError
from prefwrap.cli.run_dir import RunDir, atomic_path, versions, write_json

if TYPE_CHECKING:
    from prefwrap.cli.build import Setup

CONFIG_YML = "config.yml"
"""The run's resolved hyperparameters as one zoo-format block: ``prefwrap train -conf RUN/config.yml``
trains with them again."""


def write_config(
    setup: Setup, run: RunDir, segment_length: int, stored: dict[str, Any] | None, start_step: int
) -> dict[str, Any]:
    """Write ``config.json`` (options, versions, resolved hyperparameters, a new session entry) and
    ``config.yml``; returns the record."""
    import yaml

    session = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "from_step": start_step, "argv": sys.argv[1:]}
    record = setup.config.to_record() | {
        "prefwrap_version": __version__,
        "versions": versions(),
        "segment_length": segment_length,
        "conf_values": setup.conf_values,
        "hyperparams_resolved": setup.params.to_json(),
        "sessions": [*(stored or {}).get("sessions", []), session],
    }
    write_json(run.config, record)
    with atomic_path(run.path / CONFIG_YML) as tmp:
        tmp.write_text(
            yaml.safe_dump(zoo_block(setup.config, setup.params), sort_keys=False), encoding="utf-8"
        )
    return record


def logger_for(run: RunDir, verbose: int) -> Logger:
    """SB3's logger writing ``logs/progress*.csv`` (one per session) and TensorBoard; ``-v 2``: stdout too."""
    formats: list[KVWriter] = [
        CSVOutputFormat(str(run.next_progress_csv())),
        TensorBoardOutputFormat(str(run.logs)),
    ]
    if verbose >= 2:
        formats.append(HumanOutputFormat(sys.stdout))
    return Logger(str(run.logs), formats)


class Tracking:
    """A Weights & Biases run mirroring the TensorBoard logs (``--track``; ``prefwrap[track]``).

    ``WANDB_MODE=offline`` writes it under ``RUN_DIR/wandb`` without an account (``wandb sync`` later).
    """

    def __init__(self, wandb_run: Any) -> None:
        self.wandb_run = wandb_run

    @classmethod
    def start(cls, config: TrainConfig, run: RunDir, record: dict[str, Any]) -> Tracking:
        """Start the W&B run; call it before the TensorBoard writer is made (it is patched to sync).

        Raises:
            UsageError: wandb is not installed (names the pip extra).
        """
        try:
            import wandb
        except ImportError:
            raise UsageError('--track needs Weights & Biases: pip install "prefwrap[track]"') from None
        wandb_run = wandb.init(
            project=config.wandb_project_name,
            entity=config.wandb_entity,
            name=run.path.name,
            id=run.path.name.replace(":", "-"),
            resume="allow",
            config={k: v for k, v in record.items() if k != "sessions"},
            dir=str(run.path),
            sync_tensorboard=True,
            save_code=False,
        )
        return cls(wandb_run)

    def finish(self) -> None:
        """Upload (or, offline, close) the run."""
        self.wandb_run.finish()
