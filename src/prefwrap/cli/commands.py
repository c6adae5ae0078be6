"""``prefwrap label``, ``export``, ``plot`` and ``eval``: the commands that work on an existing run directory.

Each returns the exit status and raises :class:`~prefwrap.cli.config.UsageError` for anything the
user can fix (a directory that is not a run, a run without clips, a missing extra or display).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefwrap.cli.config import TrainConfig, UsageError, labels_file
from prefwrap.cli.display import check_display
from prefwrap.cli.plots import plot_run
from prefwrap.cli.run_dir import RunDir, RunDirError, open_run_dir, read_json, write_json
from prefwrap.cli.stores import run_store
from prefwrap.store import PreferenceStore

if TYPE_CHECKING:
    from prefwrap.cli.build import Setup
    from prefwrap.reward.learned import LearnedReward

NO_CLIPS = "only runs trained with --oracle human or --oracle file:PATH record clips"


def cmd_label(args: argparse.Namespace) -> int:
    """``prefwrap label DIR``: answer the run's pending queries in a pygame window.

    Raises:
        UsageError: No store in DIR, no display, no pygame, or queries without clips.
    """
    if args.web:
        from prefwrap.cli.stores import cmd_label_web

        return cmd_label_web(args)
    run, location = run_store(args.run_dir, args.store)
    check_display("prefwrap label")
    try:
        from prefwrap.clips.frames import clip_frames
        from prefwrap.oracles.human import run_labeling_session
        from prefwrap.oracles.labeling_window import import_pygame

        import_pygame()
    except ImportError as error:
        raise UsageError(str(error)) from None
    with PreferenceStore(location) as store:
        pending = store.pending_queries()
        if pending:
            try:
                clip_frames(pending[0].left)
            except ValueError:
                raise UsageError(f"the queries of {run.path} have no frames to show: {NO_CLIPS}") from None
    print(
        f"{len(pending)} queries pending in {location}. Keys: left/right arrow = that clip is better, "
        "up or space = equal, down = can't tell, r = replay, Esc = stop."
    )
    try:
        written = run_labeling_session(
            location,
            fps=args.fps,
            labeler=args.labeler,
            stop_when_empty=args.exit_when_done,
            scale=args.scale,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    except Exception as error:
        if type(error).__module__.startswith("pygame"):
            raise UsageError(f"cannot open the labeling window ({error}): it needs a display") from None
        raise
    print(
        f"{written} labels written to {location}; a running trainer picks them up at its next rollout, "
        f"a stopped one with: prefwrap train --resume {run.path}"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``prefwrap export DIR``: write the pending queries as side-by-side clips and a manifest.

    Raises:
        UsageError: No store in DIR, a bad ``--scale``/``--fps``, or queries without clips.
    """
    from prefwrap.oracles.export import export_queries

    run, location = run_store(args.run_dir, args.store)
    if args.scale < 1:
        raise UsageError(f"--scale must be at least 1, got {args.scale}")
    if args.fps is not None and not args.fps > 0:
        raise UsageError(f"--fps must be positive, got {args.fps}")
    with PreferenceStore(location) as store:
        queries = store.pending_queries()
        fps = args.fps or float(store.get_meta("render_fps") or 20.0)
    if not queries:
        print(f"No pending queries in {location}: nothing to export.")
        return 0
    out = Path(args.out) if args.out else run.path / "queries"
    try:
        manifest = export_queries(queries, out, fps=fps, fmt=args.format, scale=args.scale)
    except ValueError as error:
        raise UsageError(f"cannot export the queries of {run.path}: {error} ({NO_CLIPS})") from None
    answers = labels_file(str((read_json(run.config) or {}).get("oracle", "")))
    print(f"Wrote {len(queries)} clips and {manifest}.")
    if answers:
        print(
            f"Write the answers to {answers} (one JSON line per query, see docs/oracles-file.md); the "
            f"run reads them as they arrive, or on: prefwrap train --resume {run.path}"
        )
    else:
        print(
            f"Fill in {out / 'labels.jsonl'} (see docs/oracles-file.md) and read it back with "
            "prefwrap.oracles.export.import_labels."
        )
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """``prefwrap plot DIR``: redraw the run's figures from its logs and evaluation data.

    Raises:
        UsageError: DIR is not a run directory, or no episode has finished yet.
    """
    run, config = _open_run(args.run_dir)
    summary = read_json(run.summary) or {
        "title": f"{str(config.get('algo', '')).upper()} on {config['env_id']}, reward learned from "
        f"{config.get('oracle')} preferences"
    }
    paths = plot_run(run, summary)
    if not paths:
        raise UsageError(f"nothing to plot in {run.path} yet: no finished episode in {run.logs}")
    for path in paths:
        print(f"plot: {path}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``prefwrap eval DIR``: evaluate the saved (or a kept checkpoint's) policy on the true reward.

    Writes ``evals/eval-TIME.json``, its held-out data and its videos; never ``summary.json`` or the
    training plots.

    Raises:
        UsageError: DIR is not a run directory or has no policy yet, no kept checkpoint of
            ``--checkpoint``, ``--episodes`` below 1, or the run's env or device is not usable here.
    """
    # The training stack is imported here, not at the top: label, export and plot do not need it.
    from prefwrap.cli import build
    from prefwrap.cli.envs import probe_env
    from prefwrap.cli.evaluate import HeldOut, evaluate_run, label_counts
    from prefwrap.cli.hyperparams import algorithm_class
    from prefwrap.cli.report import print_summary

    run, stored = _open_run(args.run_dir)
    source = _policy_source(run, args.checkpoint)
    for flag in ("episodes", "video_episodes"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    config = TrainConfig.from_record(stored)
    env_kwargs = build.parse_pairs(config.env_kwargs, "--env-kwargs")
    info = probe_env(config.env_id, env_kwargs, config.gym_packages, config.env_wrapper)
    params = build.resolve_hyperparams(config, info, str(run.config), stored.get("conf_values"))
    config.eval_episodes = args.episodes or config.eval_episodes
    config.video_episodes = args.video_episodes or config.video_episodes
    config.video_seconds = args.video_seconds if args.video_seconds is not None else config.video_seconds
    setup = build.Setup(config, info, params, build.torch_device(args.device, args.threads))
    model = algorithm_class(config.algo).load(str(source.policy), device=setup.device)
    held_out = HeldOut(_saved_reward(setup, source), int(stored.get("segment_length") or 25))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    prefix = run.evals / f"eval-{stamp}"
    print(f"Evaluating {source.policy} on the true reward: {config.eval_episodes} episode(s)...")
    result = evaluate_run(
        setup, run, model, held_out, video=not args.no_video, deterministic=not args.stochastic, prefix=prefix
    )
    trained = read_json(run.summary) or {}
    result.update(
        policy_file=str(source.policy),
        deterministic=not args.stochastic,
        steps=int(model.num_timesteps),
        baseline_return=trained.get("baseline_return"),
        train_seconds=trained.get("train_seconds"),
        evaluated_at=stamp,
    )
    if run.store.is_file():
        with PreferenceStore(run.store) as store:
            result.update(label_counts(store, config.labels))
            result["pending"] = len(store.pending_query_ids())
    result.update({k: trained[k] for k in ("val_accuracy", "val_pairs") if k in trained})
    result["plots"] = []
    write_json(prefix.with_suffix(".json"), result)
    print_summary(result, run, baseline_hint=f"prefwrap train --resume {run.path} --baseline")
    print(f"eval:  {prefix.with_suffix('.json')} (the training summary, {run.summary.name}, is unchanged)")
    return 0


def _policy_source(run: RunDir, step: int | None) -> RunDir:
    """The run itself, or the checkpoint it kept at ``step``; refuses one without a policy."""
    if step is not None:
        try:
            return run.kept_checkpoint(step)
        except RunDirError as error:
            raise UsageError(str(error)) from None
    if not run.policy.is_file():
        raise UsageError(
            f"{run.path} has no policy yet ({run.policy.name}): train it, or resume it with "
            f"prefwrap train --resume {run.path}"
        )
    return run


def _saved_reward(setup: Setup, run: RunDir) -> LearnedReward | None:
    """The run's fitted reward model, loaded for the env's spaces; ``None`` if none was saved."""
    from prefwrap.cli.envs import make_base_env
    from prefwrap.reward.learned import LearnedReward

    if not run.reward_model.is_file():
        return None
    space_env = make_base_env(setup, 1, setup.config.seed)
    try:
        return LearnedReward.load(run.reward_model, space_env.observation_space, space_env.action_space)
    finally:
        space_env.close()


def _open_run(path: str) -> tuple[RunDir, dict[str, Any]]:
    try:
        return open_run_dir(path)
    except RunDirError as error:
        raise UsageError(str(error)) from None
