"""What ``prefwrap train`` and ``prefwrap eval`` print: the header of a run and the summary table."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table

from prefwrap.cli.config import TrainConfig
from prefwrap.cli.hyperparams import HyperParams
from prefwrap.cli.run_dir import RunDir

MIN_VALIDATION_PAIRS = 10
"""Below this many held-out pairs per ensemble member, a validation accuracy means little: the refit
line says "too few labels to validate" instead (about 27 labels: each member holds out ~37%)."""


def accuracy_text(accuracy: float | None, n_pairs: int | None) -> str:
    """``"0.770 on 41 held-out pairs"``; "too few labels to validate" below :data:`MIN_VALIDATION_PAIRS`."""
    if n_pairs is not None and n_pairs < MIN_VALIDATION_PAIRS:
        return f"too few labels to validate ({n_pairs} held-out pairs)"
    if accuracy is None or not math.isfinite(accuracy):
        return "-"
    return f"{accuracy:.3f}" + (f" on {n_pairs} held-out pairs" if n_pairs is not None else "")


def print_header(
    config: TrainConfig, run: RunDir, params: HyperParams, *, resuming: bool, start_step: int, n_labels: int
) -> None:
    """Two lines: what trains on what, with which labels and hyperparameters, and where it is written.

    A resumed run names the step it continues from and the labels already stored.
    """
    if config.conf_file:
        source = f"{config.conf_file}'s"
    else:
        source = "rl-baselines3-zoo tuned" if params.tuned else "Stable-Baselines3 defaults"
    action = f"Resuming at step {start_step:,} with {n_labels} labels stored" if resuming else "Training"
    print(
        f"{action}: {config.algo.upper()} on {config.env_id}, {config.steps:,} steps, {config.labels} labels "
        f"from the {config.oracle} oracle, seed {config.seed}, {config.n_envs} env(s), "
        f"{source} hyperparameters"
    )
    print(f"Run directory: {run.path}   (TensorBoard: tensorboard --logdir {run.logs})")


def print_summary(summary: dict[str, Any], run: RunDir, baseline_hint: str = "add --baseline") -> None:
    """The summary table of ``summary.json``, then the plots, the videos and the run directory.

    ``baseline_hint`` says how to get the baseline row when there is none.
    """
    table = Table(title=summary.get("title"), show_header=True, header_style="bold")
    table.add_column("")
    table.add_column("result", justify="right")
    table.add_row("true return, trained policy", _returns(summary, "policy_return"))
    table.add_row("true return, random policy", _returns(summary, "random_return"))
    baseline = (
        _returns(summary, "baseline_return")
        if summary.get("baseline_return")
        else f"not run ({baseline_hint})"
    )
    table.add_row(f"true return, {summary['algo'].upper()} on the true reward", baseline)
    score = normalised_score(summary)
    if score is not None:
        table.add_row("normalised score (random 0, baseline 1)", f"{score:.2f}")
    labels = f"{summary.get('labels', 0)} / {summary.get('label_budget', 0)}"
    if summary.get("skipped"):
        labels += f" ({summary['skipped']} skipped)"
    if summary.get("pending"):
        labels += f", {summary['pending']} pending"
    if summary.get("demo_labels"):
        labels += f" (+{summary['demo_labels']} demonstration pairs)"
    table.add_row("labels used", labels)
    table.add_row(
        "reward model val. accuracy", accuracy_text(summary.get("val_accuracy"), summary.get("val_pairs"))
    )
    r = summary.get("reward_correlation")
    table.add_row("learned vs true return (held-out r)", f"{r:.3f}" if r is not None else "-")
    seconds = summary.get("train_seconds")
    table.add_row("env steps / training time", f"{summary.get('steps', 0):,} / {duration(seconds)}")
    console = Console()
    console.print(table)
    for path in summary.get("plots", []):
        console.print(f"plot:  {path}")
    for path in summary.get("videos") or ([summary["video"]] if summary.get("video") else []):
        console.print(f"video: {path}")
    console.print(f"run:   {run.path}")


def _returns(summary: dict[str, Any], key: str) -> str:
    value = summary.get(key)
    if not value or value.get("mean") is None:
        return "-"
    episodes = value["episodes"]
    return f"{value['mean']:.1f} ± {value['std']:.1f}  ({episodes} episode{'s' * (episodes != 1)})"


def normalised_score(summary: dict[str, Any]) -> float | None:
    """``(policy - random) / (baseline - random)`` of the mean true returns; ``None`` without a baseline."""
    try:
        policy = summary["policy_return"]["mean"]
        random = summary["random_return"]["mean"]
        baseline = summary["baseline_return"]["mean"]
    except (KeyError, TypeError):
        return None
    if None in (policy, random, baseline) or baseline == random:
        return None
    return (policy - random) / (baseline - random)


def duration(seconds: float | None) -> str:
    """``"2m 05s"``, ``"42s"``, or ``"-"`` when unknown."""
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"
