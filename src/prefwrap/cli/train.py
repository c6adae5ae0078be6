"""``prefwrap train``: resolve the options, build the run, let SB3 train it, then evaluate and report.

The run directory (:mod:`prefwrap.cli.run_dir`) holds everything a later ``--resume`` needs: the
options in ``config.json``, every label in the store the moment it is given, and a checkpoint every
``--checkpoint-every`` steps.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ProgressBarCallback
from stable_baselines3.common.logger import (
    CSVOutputFormat,
    HumanOutputFormat,
    KVWriter,
    Logger,
    TensorBoardOutputFormat,
)
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecEnv

from prefwrap import __version__
from prefwrap.callback import PreferenceCallback
from prefwrap.cli import build
from prefwrap.cli.build import Setup
from prefwrap.cli.config import ENV_KWARGS, CommandError, TrainConfig, UsageError, one_line
from prefwrap.cli.evaluate import HeldOut, evaluate_run, finite_or_none, label_counts, train_baseline
from prefwrap.cli.hyperparams import algorithm_class
from prefwrap.cli.plots import plot_run
from prefwrap.cli.report import print_header, print_summary
from prefwrap.cli.run_dir import (
    RunDir,
    RunDirError,
    SaveRunCallback,
    check_same_env,
    new_run_dir,
    open_run_dir,
    read_json,
    versions,
    write_json,
)
from prefwrap.oracles.base import BaseOracle
from prefwrap.store import PreferenceStore
from prefwrap.wrapper import PreferenceRewardWrapper


@dataclass
class Training:
    """The live objects of a run: the wrapper, the env stack the model steps, the callback, the model."""

    wrapper: PreferenceRewardWrapper
    venv: VecEnv
    callback: PreferenceCallback
    model: BaseAlgorithm


def cmd_train(args: argparse.Namespace) -> int:
    """``prefwrap train``: train (or resume) a run, then evaluate, plot, film and summarise it.

    Returns:
        The exit status: 0, or 130 after Ctrl-C (a checkpoint is saved first).

    Raises:
        UsageError: Any bad option or unusable input, before anything is trained.
        CommandError: The oracle, the store or the env failed once the run directory was written;
            its hint is the resume command (a checkpoint is saved first when training had begun).
    """
    config, run_path, stored = _configure(args)
    setup = _resolve(config, resuming=stored is not None)
    oracle = build.make_oracle(config.oracle, config.seed, run_path)
    callback_kwargs = build.learner_kwargs(config)
    if stored is not None:
        run = RunDir(Path(run_path))
    else:
        try:
            run = new_run_dir(run_path)
        except RunDirError as error:
            raise UsageError(str(error)) from None
    try:
        return _train(setup, run, oracle, callback_kwargs, stored)
    except (UsageError, CommandError):
        raise
    except Exception as error:
        if not run.config.is_file():  # nothing to resume yet: the same command starts over
            raise
        raise CommandError(
            one_line(error),
            hint=f"Every label is kept; fix the cause, then continue: prefwrap train --resume {run.path}",
        ) from error


def _configure(args: argparse.Namespace) -> tuple[TrainConfig, str, dict[str, Any] | None]:
    """The run's options and directory: from the arguments, or (``--resume``) from ``config.json``."""
    if args.resume is None:
        config = TrainConfig.from_args(args)
        return config, config.new_run_dir(), None
    if args.run_dir:
        raise UsageError("give either --resume DIR or --run-dir DIR, not both")
    try:
        run, stored = open_run_dir(args.resume)
        check_same_env(stored, args.env_id, run)
    except RunDirError as error:
        raise UsageError(str(error)) from None
    return TrainConfig.from_record(stored).resumed_with(args, run.path), str(run.path), stored


def _resolve(config: TrainConfig, *, resuming: bool) -> Setup:
    """Probe the env, resolve hyperparameters, per-task defaults and the device; check they fit."""
    env_kwargs = build.parse_pairs(config.env_kwargs, "--env-kwargs")
    if not resuming:  # recorded in config.json, so a resumed run builds the same env
        for key, value in ENV_KWARGS.get(config.env_id, {}).items():
            if key not in env_kwargs:
                env_kwargs[key] = value
                config.env_kwargs.append(f"{key}={value!r}")
    info = build.probe_env(config.env_id, env_kwargs)
    build.check_algo_fits(config, info)
    params = build.resolve_hyperparams(config, info, "--hyperparams")
    config.fill_task_defaults(info, params)
    segments_possible = config.steps // info.segment_length
    if config.labels > segments_possible:
        raise UsageError(
            f"--labels {config.labels} needs at least {config.labels} segments of {info.segment_length} "
            f"steps, but {config.steps} steps give about {segments_possible}: raise --steps or lower --labels"
        )
    return Setup(config, info, params, build.torch_device(config.device, config.threads))


def _train(
    setup: Setup,
    run: RunDir,
    oracle: BaseOracle,
    callback_kwargs: dict[str, Any],
    stored: dict[str, Any] | None,
) -> int:
    """Build the run, learn (saving checkpoints), then evaluate, plot and print; returns the exit status."""
    config = setup.config
    # Seed python, numpy and torch before anything draws from them: the reward ensemble's initial
    # weights come from torch's global generator, before SB3 seeds it for the policy.
    set_random_seed(config.seed)
    training = _build_training(setup, run, oracle, callback_kwargs, resuming=stored is not None)
    learner = training.callback.learner
    start_step = int(training.model.num_timesteps)
    record = _write_config(setup, run, training, stored, start_step)
    training.model.set_logger(_logger(run, config.verbose))
    checkpoint = SaveRunCallback(run, training.wrapper, config.checkpoint_every, lambda: learner.n_labels)
    print_header(
        config,
        run,
        setup.params,
        resuming=stored is not None,
        start_step=start_step,
        n_labels=learner.n_labels,
    )
    started = time.perf_counter()
    try:
        _learn(training, checkpoint, config, start_step)
    except Exception:
        # A checkpoint, so that --resume goes on from here once the cause is fixed; a failure to
        # write it must not hide the error that stopped training.
        checkpoint.model = training.model
        with contextlib.suppress(Exception):
            checkpoint.save()
        raise
    except KeyboardInterrupt:
        checkpoint.model = training.model
        checkpoint.save()
        print(
            f"\nInterrupted at step {training.model.num_timesteps}; every label is stored. Continue with:\n"
            f"  prefwrap train --resume {run.path}",
            file=sys.stderr,
        )
        return 130
    finally:
        oracle.close()  # the labeling window, if any
    record = read_json(run.config) or record
    record["sessions"][-1].update(
        train_seconds=round(time.perf_counter() - started, 1), to_step=int(training.model.num_timesteps)
    )
    write_json(run.config, record)
    summary = _finish(setup, run, training)
    summary["train_seconds"] = round(sum(s.get("train_seconds", 0.0) for s in record["sessions"]), 1)
    write_json(run.summary, summary)
    learner.store.close()
    print_summary(summary, run)
    return 0


def _build_training(
    setup: Setup, run: RunDir, oracle: BaseOracle, callback_kwargs: dict[str, Any], *, resuming: bool
) -> Training:
    """The env stack, wrapper, callback and model; a resumed run loads its checkpoint into them."""
    config, info = setup.config, setup.info
    wrapper_kwargs: dict[str, Any] = {}
    if info.atari:  # the paper's Atari settings; --learner options override them
        from prefwrap.presets import atari_preset

        preset = atari_preset(
            config.labels, initial_labels=min(500, max(1, config.labels // 4)), seed=config.seed
        )
        wrapper_kwargs = preset.wrapper
        callback_kwargs = {k: v for k, v in preset.learner.items() if k != "total_labels"} | callback_kwargs
    needs_frames = oracle.needs_frames and not info.image
    base = build.make_base_env(setup, config.n_envs, config.seed, render=needs_frames, small_frames=True)
    wrapper = PreferenceRewardWrapper(
        base,
        reward_model=run.reward_model if resuming and run.reward_model.is_file() else None,
        record_frames=needs_frames,
        frame_capacity=64,  # envs rendered every step (no re-renderable state): the newest 64 clips
        device=setup.reward_device,
        **wrapper_kwargs,
    )
    venv = build.with_normalizer(wrapper, setup.params, run.vecnormalize if resuming else None, training=True)
    try:
        callback = PreferenceCallback(
            venv, oracle, config.labels, store=run.store, verbose=1, **callback_kwargs
        )
    except (TypeError, ValueError) as error:
        raise UsageError(f"--learner: {error}") from None
    _claim_store(callback.learner.store, config.env_id)
    model = None
    if resuming and run.policy.is_file():
        model = algorithm_class(config.algo).load(str(run.policy), env=venv, device=setup.device)
        if run.replay_buffer.is_file() and hasattr(model, "load_replay_buffer"):
            model.load_replay_buffer(str(run.replay_buffer))
    return Training(wrapper, venv, callback, model or build.build_model(setup, venv))


def _claim_store(store: PreferenceStore, env_id: str) -> None:
    """Mark the store as ``env_id``'s; refuse one that holds another env's labels."""
    stored_env = store.get_meta("env_id")
    if stored_env is not None and stored_env != env_id:
        raise UsageError(f"{store.path} holds labels of {stored_env}, not {env_id}: use another --run-dir")
    store.set_meta("env_id", env_id)


def _write_config(
    setup: Setup, run: RunDir, training: Training, stored: dict[str, Any] | None, start_step: int
) -> dict[str, Any]:
    """Write ``config.json``: the options, versions, resolved hyperparameters and a new session entry."""
    session = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "from_step": start_step, "argv": sys.argv[1:]}
    record = setup.config.to_record() | {
        "prefwrap_version": __version__,
        "versions": versions(),
        "segment_length": training.wrapper.segment_length,
        "hyperparams_resolved": setup.params.to_json(),
        "sessions": [*(stored or {}).get("sessions", []), session],
    }
    write_json(run.config, record)
    return record


def _learn(training: Training, checkpoint: SaveRunCallback, config: TrainConfig, start_step: int) -> None:
    remaining = config.steps - start_step
    if remaining <= 0:
        print(f"Already trained for {start_step} steps (--steps {config.steps}): evaluating.")
        return
    # Our own progress bar (not learn's progress_bar=True): when training stops on an error or Ctrl-C,
    # SB3 never closes its bar, and tqdm/rich then print shutdown errors after our message.
    bar = ProgressBarCallback() if config.progress_bar else None
    callbacks: list[BaseCallback] = [training.callback, checkpoint, *([bar] if bar else [])]
    try:
        training.model.learn(remaining, callback=CallbackList(callbacks), reset_num_timesteps=start_step == 0)
    finally:
        if bar is not None and getattr(bar, "pbar", None) is not None:
            bar.pbar.close()  # idempotent: SB3 closes it too when training ends normally


def _logger(run: RunDir, verbose: int) -> Logger:
    """SB3's logger writing ``logs/progress*.csv`` (one per session) and TensorBoard; ``-v``: stdout too."""
    formats: list[KVWriter] = [
        CSVOutputFormat(str(run.next_progress_csv())),
        TensorBoardOutputFormat(str(run.logs)),
    ]
    if verbose:
        formats.append(HumanOutputFormat(sys.stdout))
    return Logger(str(run.logs), formats)


def _finish(setup: Setup, run: RunDir, training: Training) -> dict[str, Any]:
    """Evaluate, run the baseline if asked, draw the plots; returns the summary."""
    config, model, learner = setup.config, training.model, training.callback.learner
    normalizer = model.get_vec_normalize_env()
    if normalizer is not None:
        normalizer.save(str(run.vecnormalize))
    print(
        f"Evaluating on the true reward: {config.eval_episodes} episode(s), and as many of a random policy..."
    )
    held_out = HeldOut(training.wrapper.learned_reward, training.wrapper.segment_length)
    summary = evaluate_run(setup, run, model, held_out, video=config.video)
    previous = read_json(run.summary) or {}
    summary["baseline_return"] = previous.get("baseline_return")
    if config.baseline and summary["baseline_return"] is None:
        summary["baseline_return"] = train_baseline(setup, run, held_out)
    summary.update(label_counts(learner.store, config.labels))
    summary.update(
        pending=learner.n_pending,
        val_accuracy=finite_or_none(learner.last_fit.validation_accuracy)
        if learner.last_fit
        else previous.get("val_accuracy"),
        steps=int(model.num_timesteps),
    )
    summary["plots"] = [str(path) for path in plot_run(run, summary)]
    return summary
