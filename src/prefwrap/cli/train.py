"""``prefwrap train``: resolve the options, build the run, let SB3 train it, then evaluate and report.

The run directory (:mod:`prefwrap.cli.run_dir`) holds everything a later ``--resume`` needs: the
options in ``config.json``, every label in the store the moment it is given, and a checkpoint every
``--checkpoint-every`` steps (:mod:`prefwrap.cli.checkpoints`).
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
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.utils import set_random_seed
from stable_baselines3.common.vec_env import VecEnv

from prefwrap.cli import build
from prefwrap.cli.build import Setup
from prefwrap.cli.callbacks import CliPreferenceCallback, StepsBar, make_eval_callback, rounded_steps
from prefwrap.cli.checkpoints import SaveRunCallback, restore_fitting_state, resume_envs
from prefwrap.cli.config import ENV_KWARGS, CommandError, TrainConfig, UsageError, one_line
from prefwrap.cli.envs import make_base_env, probe_env, with_normalizer
from prefwrap.cli.finish import finish_run
from prefwrap.cli.hyperparams import algorithm_class
from prefwrap.cli.report import print_header
from prefwrap.cli.run_dir import RunDir, RunDirError, check_same_env, new_run_dir, open_run_dir
from prefwrap.cli.session import Tracking, logger_for, write_config
from prefwrap.oracles.base import BaseOracle
from prefwrap.store import PreferenceStore
from prefwrap.wrapper import PreferenceRewardWrapper


@dataclass
class Training:
    """The live objects of a run: the wrapper, the env stack the model steps, the callback, the model,
    and a resumed run's saved random state (set at its first rollout start)."""

    wrapper: PreferenceRewardWrapper
    venv: VecEnv
    callback: CliPreferenceCallback
    model: BaseAlgorithm
    random_state: dict[str, Any] | None = None


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
    setup = _resolve(config, stored)
    source = _checkpoint_source(RunDir(Path(run_path)), args.checkpoint, stored)
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
        return _train(setup, run, source, oracle, callback_kwargs, stored)
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
        if args.checkpoint is not None:
            raise UsageError("--checkpoint STEP picks where --resume DIR continues from: give --resume DIR")
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


def _checkpoint_source(run: RunDir, step: int | None, stored: dict[str, Any] | None) -> RunDir:
    """Where a resumed run loads its checkpoint from: the run directory, or a kept ``checkpoints/step-N``."""
    if stored is None or step is None:
        return run
    try:
        return run.kept_checkpoint(step)
    except RunDirError as error:
        raise UsageError(str(error)) from None


def _resolve(config: TrainConfig, stored: dict[str, Any] | None) -> Setup:
    """Probe the env, resolve hyperparameters, per-task defaults and the device; check they fit."""
    env_kwargs = build.parse_pairs(config.env_kwargs, "--env-kwargs")
    if stored is None:  # recorded in config.json, so a resumed run builds the same env
        for key, value in ENV_KWARGS.get(config.env_id, {}).items():
            if key not in env_kwargs:
                env_kwargs[key] = value
                config.env_kwargs.append(f"{key}={value!r}")
    info = probe_env(config.env_id, env_kwargs, config.gym_packages, config.env_wrapper)
    build.check_algo_fits(config, info)
    if stored is not None:  # the file's values as they were when the run started
        conf_values = stored.get("conf_values")
    elif config.conf_file:
        conf_values = build.read_conf_file(config.conf_file, config.env_id, info.atari)
    else:
        conf_values = None
    params = build.resolve_hyperparams(config, info, config.conf_file or "--hyperparams", conf_values)
    if config.trained_agent and not Path(config.trained_agent).is_file():
        raise UsageError(f"--trained-agent {config.trained_agent}: no such file (an SB3 .zip)")
    config.fill_task_defaults(info, params)
    segments_possible = config.steps // info.segment_length
    if config.labels > segments_possible:
        raise UsageError(
            f"--labels {config.labels} needs at least {config.labels} segments of {info.segment_length} "
            f"steps, but {config.steps} steps give about {segments_possible}: raise --steps or lower --labels"
        )
    return Setup(config, info, params, build.torch_device(config.device, config.threads), conf_values)


def _train(
    setup: Setup,
    run: RunDir,
    source: RunDir,
    oracle: BaseOracle,
    callback_kwargs: dict[str, Any],
    stored: dict[str, Any] | None,
) -> int:
    """Build the run, learn (saving checkpoints), then evaluate, plot and print; returns the exit status."""
    config = setup.config
    # Seed python, numpy and torch before anything draws from them: the reward ensemble's initial
    # weights come from torch's global generator, before SB3 seeds it for the policy.
    set_random_seed(config.seed)
    training = _build_training(setup, run, source, oracle, callback_kwargs, resuming=stored is not None)
    learner = training.callback.learner
    start_step = int(training.model.num_timesteps)
    _round_steps(config, training, start_step)
    record = write_config(setup, run, training.wrapper.segment_length, stored, start_step)
    tracking = Tracking.start(config, run, record) if config.track else None
    training.model.set_logger(logger_for(run, config.verbose))
    checkpoint = SaveRunCallback(
        run, training.callback, config.checkpoint_every, config.save_freq, resumed=training.random_state
    )
    print_header(
        config,
        run,
        setup.params,
        resuming=stored is not None,
        start_step=start_step,
        n_labels=learner.n_labels,
    )
    if source.path != run.path:
        print(
            f"Continuing from the checkpoint kept at step {start_step:,}; every label in the store is kept."
        )
    started = time.perf_counter()
    try:
        _learn(setup, run, training, checkpoint, start_step)
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
            f"\nInterrupted at step {training.model.num_timesteps:,}; every label is stored. Continue with:\n"
            f"  prefwrap train --resume {run.path}",
            file=sys.stderr,
        )
        return 130
    finally:
        oracle.close()  # the labeling window, if any
        if tracking is not None:
            tracking.finish()
    return finish_run(setup, run, training.model, learner, time.perf_counter() - started)


def _build_training(
    setup: Setup,
    run: RunDir,
    source: RunDir,
    oracle: BaseOracle,
    callback_kwargs: dict[str, Any],
    *,
    resuming: bool,
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
    base = make_base_env(setup, config.n_envs, config.seed, render=needs_frames, small_frames=True)
    wrapper = PreferenceRewardWrapper(
        base,
        reward_model=source.reward_model if resuming and source.reward_model.is_file() else None,
        record_frames=needs_frames,
        frame_capacity=64,  # envs rendered every step (no re-renderable state): the newest 64 clips
        device=setup.reward_device,
        **wrapper_kwargs,
    )
    venv = with_normalizer(wrapper, setup.params, source.vecnormalize if resuming else None, training=True)
    try:
        callback = CliPreferenceCallback(
            venv,
            oracle,
            config.labels,
            store=config.store or run.store,
            total_timesteps=config.steps,  # the label schedule spans the whole run, resumed or not
            verbose=1,
            print_refits=config.verbose >= 1,
            **callback_kwargs,
        )
    except (TypeError, ValueError) as error:
        raise UsageError(f"--learner: {error}") from None
    _claim_store(callback.learner.store, config.env_id)
    if not (resuming and source.policy.is_file()):
        return Training(wrapper, venv, callback, build.build_model(setup, venv))
    state = restore_fitting_state(callback, source)
    # Envs stopped at an episode boundary start the episodes the uninterrupted run went on with: the
    # model keeps its last observation (the seeds load gives the envs then go unused, as SB3 never
    # resets them). Otherwise SB3 resets them and the episodes in progress restart.
    exact = resume_envs(wrapper, state)
    model = algorithm_class(config.algo).load(
        str(source.policy), env=venv, device=setup.device, force_reset=not exact
    )
    if source.replay_buffer.is_file() and hasattr(model, "load_replay_buffer"):
        model.load_replay_buffer(str(source.replay_buffer))
    return Training(wrapper, venv, callback, model, state.get("random") if state else None)


def _claim_store(store: PreferenceStore, env_id: str) -> None:
    """Mark the store as ``env_id``'s; refuse one that holds another env's labels."""
    stored_env = store.get_meta("env_id")
    if stored_env is not None and stored_env != env_id:
        raise UsageError(f"{store!r} holds labels of {stored_env}, not {env_id}: use another --run-dir")
    store.set_meta("env_id", env_id)


def _round_steps(config: TrainConfig, training: Training, start_step: int) -> None:
    """Make ``config.steps`` the step SB3 will really stop at (whole rollouts), and say so once."""
    steps, unit = rounded_steps(config.steps, start_step, training.model)
    if steps != config.steps:
        print(
            f"Training {steps:,} steps: --steps {config.steps:,} rounded up to whole rollouts of "
            f"{unit:,} steps ({type(training.model).__name__} collects that many between updates)."
        )
        config.steps = steps
        training.callback.total_timesteps = steps


def _learn(setup: Setup, run: RunDir, training: Training, checkpoint: SaveRunCallback, start: int) -> None:
    """``model.learn`` up to ``--steps``; with ``--until-labelled``, on until the budget is labelled."""
    config, learner = setup.config, training.callback.learner
    if config.steps <= start:
        print(f"Already trained for {start:,} steps (--steps {config.steps:,}): evaluating.")
    else:
        _learn_chunk(setup, run, training, checkpoint, config.steps - start, start)
    if not config.until_labelled or learner.n_labels >= config.labels:
        return
    print(
        f"Step {training.model.num_timesteps:,}: {learner.n_labels} of {config.labels} labels given; "
        "training on until the rest are (--until-labelled; Ctrl-C stops with a checkpoint)."
    )
    chunk = max(1000, config.eval_freq if config.eval_freq > 0 else config.steps // 10)
    while learner.n_labels < config.labels:
        _learn_chunk(setup, run, training, checkpoint, chunk, int(training.model.num_timesteps))
        config.steps = int(training.model.num_timesteps)


def _learn_chunk(
    setup: Setup, run: RunDir, training: Training, checkpoint: SaveRunCallback, steps: int, start: int
) -> None:
    # Our own progress bar (not learn's progress_bar=True): its total is the run's, resumed or not, and
    # it is closed when training stops on an error or Ctrl-C (tqdm/rich then print no shutdown errors).
    config = setup.config
    bar = StepsBar(start + steps) if config.progress_bar else None
    evaluation = make_eval_callback(setup, run.path, training.wrapper, start)
    callbacks: list[BaseCallback] = [training.callback, checkpoint]
    callbacks += [c for c in (evaluation, bar) if c is not None]
    try:
        training.model.learn(steps, callback=CallbackList(callbacks), reset_num_timesteps=start == 0)
    finally:
        if bar is not None:
            bar.close()
        if evaluation is not None:
            evaluation.eval_env.close()
