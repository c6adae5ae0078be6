"""The figures of a run directory, drawn with matplotlib (Agg, no display needed).

- ``plots/returns.png``: the policy's true return at the periodic evaluations (``evaluations.npz``)
  ending at the final evaluation (``summary.json``: the table's number), the training episodes' true
  and learned returns (from ``logs/progress*.csv``, labelled as such: a rolling mean of exploring
  episodes, not an evaluation), the random policy and, after ``--baseline``, the same algorithm
  trained on the true reward (``baseline/logs``); below, labels collected and the reward model's
  validation accuracy.
- ``plots/reward_vs_true.png``: learned vs true return of held-out segments (from
  ``plots/reward_vs_true.npz``, written by the final evaluation), with the Pearson correlation.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from prefwrap.cli.run_dir import RunDir, progress_csvs, read_json

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

RETURNS_PNG = "returns.png"
REWARD_PNG = "reward_vs_true.png"
REWARD_DATA = "reward_vs_true.npz"


def read_progress(logs: Path) -> dict[str, np.ndarray]:
    """All sessions' SB3 CSV logs as columns (NaN where a row has no value), sorted by timestep."""
    rows: list[dict[str, str]] = []
    for path in progress_csvs(logs):
        with path.open(newline="", encoding="utf-8") as file:
            rows.extend(csv.DictReader(file))
    keys = sorted({key for row in rows for key in row})
    columns = {key: np.array([_number(row.get(key)) for row in rows]) for key in keys}
    steps = columns.get("time/total_timesteps")
    if steps is not None and len(steps):
        order = np.argsort(steps, kind="stable")
        columns = {key: values[order] for key, values in columns.items()}
    return columns


def plot_returns(run: RunDir, summary: dict[str, Any] | None = None) -> Path | None:
    """Draw ``plots/returns.png``; ``None`` if there is neither an evaluation nor a finished episode."""
    columns = read_progress(run.logs)
    steps = columns.get("time/total_timesteps")
    summary = summary or {}
    evaluations = _evaluation_curve(run, summary)
    true = columns.get("pref/true_ep_return", columns.get("rollout/ep_rew_mean"))
    has_training = steps is not None and true is not None and np.isfinite(true).any()
    if evaluations is None and not has_training:
        return None
    figure = _figure((8, 6.5))
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2.2, 1]})
    if evaluations is not None:
        _plot_evaluations(top, *evaluations)
    if has_training:
        keep = np.isfinite(true)
        top.plot(
            steps[keep], true[keep], color="tab:cyan", alpha=0.7, lw=1,
            label="training episodes, true return (mean of last 100)",
        )  # fmt: skip
    _plot_references(top, run, summary)
    top.set_ylabel("true episode return", color="tab:blue")
    learned = columns.get("pref/learned_ep_return")
    handles, labels = top.get_legend_handles_labels()
    if steps is not None and learned is not None and np.isfinite(learned).any():
        twin = top.twinx()
        keep = np.isfinite(learned)
        (line,) = twin.plot(steps[keep], learned[keep], color="tab:orange", alpha=0.6, lw=1)
        twin.set_ylabel("training episodes, learned return (normalised)", color="tab:orange")
        handles.append(line)
        labels.append("training episodes, learned return")
    top.legend(handles, labels, loc="lower right", fontsize=7)
    top.set_title(summary.get("title") or "Training on the learned reward", fontsize=10)
    top.grid(alpha=0.3)
    if steps is not None:
        _plot_labels_and_accuracy(bottom, steps, columns)
    bottom.set_xlabel("environment steps")
    bottom.grid(alpha=0.3)
    return _save(figure, run.plots / RETURNS_PNG)


def _evaluation_curve(
    run: RunDir, summary: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[float, float, float] | None] | None:
    """Steps, means and stds of the periodic evaluations, and the final evaluation ``(step, mean, std)``."""
    steps, means, stds = np.zeros(0), np.zeros(0), np.zeros(0)
    if run.evaluations.is_file():
        with np.load(run.evaluations) as data:
            steps = np.asarray(data["timesteps"], dtype=float)
            results = np.asarray(data["results"], dtype=float).reshape(len(steps), -1)
        means, stds = results.mean(axis=1), results.std(axis=1)
    final_return = summary.get("policy_return")
    final = None
    if isinstance(final_return, dict) and final_return.get("mean") is not None and summary.get("steps"):
        final = (float(summary["steps"]), float(final_return["mean"]), float(final_return.get("std") or 0.0))
        keep = steps < final[0]  # the final evaluation is the last point
        steps, means, stds = steps[keep], means[keep], stds[keep]
    if not len(steps) and final is None:
        return None
    return steps, means, stds, final


def _plot_evaluations(
    axes: Axes,
    steps: np.ndarray,
    means: np.ndarray,
    stds: np.ndarray,
    final: tuple[float, float, float] | None,
) -> None:
    """Periodic evaluations (mean ± std over their episodes), joined to the final evaluation."""
    if final is not None:
        steps, means, stds = np.append(steps, final[0]), np.append(means, final[1]), np.append(stds, final[2])
    axes.fill_between(steps, means - stds, means + stds, color="tab:blue", alpha=0.15, lw=0)
    axes.plot(steps, means, color="tab:blue", marker="o", ms=3, label="evaluation, true return (mean ± std)")
    if final is not None:
        axes.plot(
            [final[0]], [final[1]], ls="", marker="*", ms=12, color="tab:blue",
            label=f"final evaluation: {final[1]:.1f}",
        )  # fmt: skip


def _plot_references(axes: Axes, run: RunDir, summary: dict[str, Any]) -> None:
    """The baseline's learning curve, the random policy's return and the resume points."""
    baseline = read_progress(run.baseline / "logs") if (run.baseline / "logs").is_dir() else {}
    baseline_steps, baseline_true = baseline.get("time/total_timesteps"), baseline.get("rollout/ep_rew_mean")
    if baseline_steps is not None and baseline_true is not None and np.isfinite(baseline_true).any():
        keep = np.isfinite(baseline_true)
        axes.plot(
            baseline_steps[keep],
            baseline_true[keep],
            color="tab:green",
            ls="--",
            label="same algorithm on the true reward",
        )
    random_return = summary.get("random_return")
    value = random_return.get("mean") if isinstance(random_return, dict) else None
    if value is not None and math.isfinite(value):
        axes.axhline(value, color="grey", ls=":", label="random policy")
    sessions = (read_json(run.config) or {}).get("sessions", [])
    for index, session in enumerate(sessions[1:]):
        axes.axvline(
            session.get("from_step", 0),
            color="grey",
            lw=0.8,
            ls="-.",
            label="resumed" if index == 0 else None,
        )


def _plot_labels_and_accuracy(axes: Axes, steps: np.ndarray, columns: dict[str, np.ndarray]) -> None:
    """Labels collected and, on a second axis, the reward model's validation accuracy."""
    n_labels = columns.get("pref/labels")
    if n_labels is not None and np.isfinite(n_labels).any():
        keep = np.isfinite(n_labels)
        axes.plot(steps[keep], n_labels[keep], color="tab:purple", label="labels")
        axes.set_ylabel("labels", color="tab:purple")
    accuracy = columns.get("pref/val_accuracy")
    if accuracy is not None and np.isfinite(accuracy).any():
        twin = axes.twinx()
        keep = np.isfinite(accuracy)
        twin.plot(steps[keep], accuracy[keep], color="tab:red", alpha=0.8)
        twin.set_ylim(0.0, 1.0)
        twin.set_ylabel("reward-model val. accuracy", color="tab:red")


def save_reward_data(
    path: Path, true_returns: np.ndarray, learned_returns: np.ndarray, source: np.ndarray
) -> Path:
    """Store the held-out segment returns behind ``reward_vs_true.png`` (``source``: 0 policy, 1 random)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, true_returns=true_returns, learned_returns=learned_returns, source=source)
    return path


def plot_reward_vs_true(run: RunDir) -> Path | None:
    """Draw ``plots/reward_vs_true.png`` from the saved held-out returns; ``None`` without data."""
    path = run.plots / REWARD_DATA
    if not path.is_file():
        return None
    with np.load(path) as data:
        true, learned, source = data["true_returns"], data["learned_returns"], data["source"]
    if not np.isfinite(learned).any():
        return None
    figure = _figure((6, 5))
    axes = figure.subplots()
    for value, label, color in ((0, "trained policy", "tab:blue"), (1, "random policy", "tab:grey")):
        pick = source == value
        if pick.any():
            axes.scatter(true[pick], learned[pick], s=9, alpha=0.5, color=color, label=label)
    r = correlation(true, learned)
    axes.set_title(f"Held-out segments: learned vs true return (r = {r:.3f})")
    axes.set_xlabel("true return of the segment")
    axes.set_ylabel("learned return of the segment (normalised)")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    return _save(figure, run.plots / REWARD_PNG)


def correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation, NaN when undefined (fewer than 3 points, constant or non-finite input)."""
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def plot_run(run: RunDir, summary: dict[str, Any] | None = None) -> list[Path]:
    """Draw every figure the run's files allow; returns the PNGs written."""
    written = [plot_returns(run, summary), plot_reward_vs_true(run)]
    return [path for path in written if path is not None]


def _figure(size: tuple[float, float]) -> Figure:
    """A matplotlib Figure outside pyplot: no GUI backend, nothing global to clean up."""
    from matplotlib.figure import Figure

    return Figure(figsize=size)


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return path


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan
