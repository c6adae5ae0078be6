"""The end of ``prefwrap train``: the final evaluation, the baseline, ``summary.json``, the table, and
what to do about queries still waiting for answers."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

from stable_baselines3.common.base_class import BaseAlgorithm

from prefwrap.cli.callbacks import validation_pairs
from prefwrap.cli.config import labels_file
from prefwrap.cli.evaluate import HeldOut, evaluate_run, finite_or_none, label_counts, train_baseline
from prefwrap.cli.plots import plot_run
from prefwrap.cli.report import print_summary
from prefwrap.cli.run_dir import RunDir, read_json, write_json

if TYPE_CHECKING:
    from prefwrap.cli.build import Setup
    from prefwrap.learner import PreferenceLearner


def finish_run(
    setup: Setup, run: RunDir, model: BaseAlgorithm, learner: PreferenceLearner, train_seconds: float
) -> int:
    """Record the session, evaluate, write ``summary.json``, print the table; returns 0."""
    record = read_json(run.config) or {"sessions": [{}]}
    record["sessions"][-1].update(train_seconds=round(train_seconds, 1), to_step=int(model.num_timesteps))
    write_json(run.config, record)
    summary = _evaluate(setup, run, model, learner)
    summary["train_seconds"] = round(sum(s.get("train_seconds", 0.0) for s in record["sessions"]), 1)
    write_json(run.summary, summary)
    learner.store.close()
    print_summary(summary, run)
    if summary["pending"]:
        print(pending_message(summary["pending"], run, setup.config.oracle))
    return 0


def _evaluate(setup: Setup, run: RunDir, model: BaseAlgorithm, learner: PreferenceLearner) -> dict[str, Any]:
    """Evaluate, run the baseline if asked, draw the plots; returns the summary."""
    config = setup.config
    normalizer = model.get_vec_normalize_env()
    if normalizer is not None:
        normalizer.save(str(run.vecnormalize))
    print(
        f"Evaluating on the true reward: {config.eval_episodes} episode(s), and as many of a random policy..."
    )
    held_out = HeldOut(learner.wrapper.learned_reward, learner.wrapper.segment_length)
    summary = evaluate_run(setup, run, model, held_out, video=config.video)
    previous = read_json(run.summary) or {}
    summary["baseline_return"] = previous.get("baseline_return")
    if config.baseline and summary["baseline_return"] is None:
        summary["baseline_return"] = train_baseline(setup, run, held_out)
    summary.update(label_counts(learner.store, config.labels))
    fitted = learner.last_fit is not None
    summary.update(
        # from the store: queries another process asked or answered count too
        pending=len(learner.store.pending_query_ids()),
        val_accuracy=finite_or_none(learner.last_fit.validation_accuracy)
        if fitted
        else previous.get("val_accuracy"),
        val_pairs=validation_pairs(learner.dataset) if fitted else previous.get("val_pairs"),
        steps=int(model.num_timesteps),
    )
    summary["plots"] = [str(path) for path in plot_run(run, summary)]
    return summary


def pending_message(n_pending: int, run: RunDir, oracle: str) -> str:
    """What to do about the queries still waiting when training ended."""
    path = shlex.quote(str(run.path))
    answers = labels_file(oracle)
    how = (
        f"write their answers to {answers} (clips: prefwrap export {path})"
        if answers
        else f"answer them with: prefwrap label {path}"
    )
    return (
        f"{n_pending} queries still wait for an answer (the reward was fitted without them): {how}; then "
        f"refit and go on with: prefwrap train --resume {path} [--steps MORE]. To keep training until every "
        "label is given, add --until-labelled."
    )
