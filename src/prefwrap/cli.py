"""The ``prefwrap`` command: train, label, export, plot and evaluate from the command line.

``prefwrap train`` with no argument runs a short synthetic-oracle demo (PPO on Pendulum-v1, 200
labels, 50k steps: a few minutes on a laptop CPU) and prints, plots and films what the agent learned.
Every run lives in a run directory (layout in :mod:`prefwrap.run_dir`) that ``--resume``,
``prefwrap label``, ``export``, ``plot`` and ``eval`` take as argument. See ``docs/cli.md``.

Every bad argument ends the command with one line saying what to do (exit status 2), never a
traceback. Heavy imports (torch, Stable-Baselines3) happen after the arguments are checked.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

PROG = "prefwrap"
DEFAULT_ENV = "Pendulum-v1"
ORACLES = "synthetic, synthetic:PRESET (oracle, stoch, myopic, mistake, skip, equal), human, or file:PATH"


class UsageError(Exception):
    """A bad argument or an unusable input: reported as one line, exit status 2."""


# --------------------------------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``prefwrap`` argument parser with its subcommands."""
    parser = _Parser(
        prog=PROG,
        description="Reinforcement learning from human preferences for any Stable-Baselines3 algorithm.",
        epilog="Start with: prefwrap train   (a few minutes on a laptop CPU)",
    )
    from prefwrap import __version__

    parser.add_argument("--version", action="version", version=f"prefwrap {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    train = commands.add_parser(
        "train",
        help="train an agent from preferences (no argument: a short Pendulum demo)",
        description="Train an agent on a reward learned from preferences. With no argument: PPO on "
        "Pendulum-v1, 200 synthetic labels, 50k steps (a few minutes on a CPU).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    train.add_argument("env_id", nargs="?", default=None, metavar="ENV_ID", help=f"Gymnasium env id [{DEFAULT_ENV}]")
    train.add_argument("--algo", choices=("ppo", "a2c", "trpo", "sac", "td3", "dqn"), default=None, help="algorithm [ppo]")
    train.add_argument("--oracle", default=None, help=f"who answers the queries: {ORACLES} [synthetic]")
    train.add_argument("--labels", type=int, default=None, help="label budget [per env: Pendulum 200, MuJoCo 700, ...]")
    train.add_argument("--steps", type=int, default=None, help="environment steps [zoo's tuned n_timesteps]")
    train.add_argument("--seed", type=int, default=None, help="seed of everything [0]")
    train.add_argument("--run-dir", default=None, help="run directory [runs/ENV-ALGO-seedS-TIME]")
    train.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR")
    train.add_argument("--n-envs", type=int, default=None, help="parallel envs [zoo's tuned value]")
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="torch device")
    train.add_argument("--hyperparams", nargs="+", default=None, metavar="KEY=VALUE", help="algorithm overrides, e.g. n_steps=256 learning_rate=lin_3e-4")
    train.add_argument("--env-kwargs", nargs="+", default=None, metavar="KEY=VALUE", help="gymnasium.make keyword arguments")
    train.add_argument("--learner", nargs="+", default=None, metavar="KEY=VALUE", help="PreferenceCallback options, e.g. query_batch_size=25 selection=random decay_timesteps=2e5")
    train.add_argument("--baseline", action="store_true", help="also train the algorithm on the true reward (same steps, seed) for comparison")
    train.add_argument("--eval-episodes", type=int, default=None, help="evaluation episodes [10; Atari 3]")
    train.add_argument("--checkpoint-every", type=int, default=None, help="steps between checkpoints [steps/10, 1k to 100k]")
    train.add_argument("--no-video", action="store_true", help="do not record an evaluation video")
    train.add_argument("--no-progress-bar", action="store_true", help="no progress bar (log files only)")
    train.add_argument("-v", "--verbose", action="count", default=0, help="-v: SB3's log tables on stdout too")
    train.set_defaults(func=cmd_train)

    label = commands.add_parser("label", help="label a run's pending queries in a window (needs pygame)")
    label.add_argument("run_dir", metavar="DIR")
    label.add_argument("--labeler", default="human", help="name stored with each label")
    label.add_argument("--fps", type=float, default=None, help="playback speed [the env's render_fps]")
    label.add_argument("--scale", type=int, default=None, help="integer magnification of the clips")
    label.add_argument("--exit-when-done", action="store_true", help="stop when no query is pending")
    label.set_defaults(func=cmd_label)

    export = commands.add_parser("export", help="write a run's pending queries as clips + manifest")
    export.add_argument("run_dir", metavar="DIR")
    export.add_argument("--out", default=None, help="output directory [DIR/queries]")
    export.add_argument("--format", choices=("mp4", "gif"), default="mp4")
    export.add_argument("--fps", type=float, default=None, help="playback speed [the env's render_fps]")
    export.add_argument("--scale", type=int, default=1, help="integer upscaling of small renders")
    export.set_defaults(func=cmd_export)

    plot = commands.add_parser("plot", help="redraw a run's plots")
    plot.add_argument("run_dir", metavar="DIR")
    plot.set_defaults(func=cmd_plot)

    evaluate = commands.add_parser("eval", help="evaluate a run's policy on the true reward, with a video")
    evaluate.add_argument("run_dir", metavar="DIR")
    evaluate.add_argument("--episodes", type=int, default=None, help="evaluation episodes [10; Atari 3]")
    evaluate.add_argument("--no-video", action="store_true")
    evaluate.add_argument("--stochastic", action="store_true", help="sample actions instead of the mode")
    evaluate.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    evaluate.set_defaults(func=cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``prefwrap`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UsageError as error:
        _fail(args.command, str(error))
    except KeyboardInterrupt:
        print(f"\n{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    return 2


def _fail(command: str, message: str) -> NoReturn:
    line = " ".join(message.split())  # one line, whatever the message held
    print(f"{PROG} {command}: error: {line}", file=sys.stderr)
    raise SystemExit(2)


# ------------------------------------------------------------------------------------- configuration


@dataclass
class TrainConfig:
    """The arguments of a run, as stored in ``config.json`` (and read back by ``--resume``)."""

    env_id: str = DEFAULT_ENV
    algo: str = "ppo"
    oracle: str = "synthetic"
    labels: int = 0
    steps: int = 0
    seed: int = 0
    n_envs: int = 1
    device: str = "auto"
    hyperparams: list[str] = field(default_factory=list)
    env_kwargs: list[str] = field(default_factory=list)
    learner: list[str] = field(default_factory=list)
    baseline: bool = False
    eval_episodes: int = 10
    checkpoint_every: int = 10_000
    video: bool = True


# Arguments a resumed run may change; the others define the run and must stay as they were.
_RESUMABLE = ("oracle", "labels", "steps", "device", "learner", "baseline", "eval_episodes", "checkpoint_every")
_FIXED = ("algo", "seed", "n_envs", "hyperparams", "env_kwargs")


@dataclass(frozen=True)
class EnvInfo:
    """What ``prefwrap train`` needs to know about an env before building it."""

    atari: bool
    image: bool
    dict_observations: bool
    render_fps: float | None


def probe_env(env_id: str, env_kwargs: dict[str, Any]) -> EnvInfo:
    """Check that ``env_id`` exists and can be made here; one clear error line otherwise."""
    import gymnasium as gym

    looks_atari = env_id.startswith("ALE/") or "NoFrameskip" in env_id
    if looks_atari:
        _import_ale()
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as error:
        raise UsageError(
            f"unknown env id {env_id!r}: {error} List the ids with: python -c \"import gymnasium; "
            'gymnasium.pprint_registry()"'
        ) from None
    entry_point = str(spec.entry_point)
    atari = "ale_py" in entry_point
    try:
        env = gym.make(env_id, **env_kwargs)
    except gym.error.DependencyNotInstalled as error:
        raise UsageError(_missing_extra(entry_point, str(error))) from None
    except ImportError as error:
        raise UsageError(_missing_extra(entry_point, str(error))) from None
    except TypeError as error:
        raise UsageError(f"--env-kwargs not accepted by {env_id}: {error}") from None
    try:
        from gymnasium import spaces

        from prefwrap.spaces import check_supported, is_image

        try:
            check_supported(env.observation_space, "observation")
            check_supported(env.action_space, "action")
        except TypeError as error:
            raise UsageError(f"{env_id}: {error}") from None
        fps = env.metadata.get("render_fps")
        image = is_image(env.observation_space) or atari
        return EnvInfo(
            atari=atari,
            image=image,
            dict_observations=isinstance(env.observation_space, spaces.Dict),
            render_fps=float(fps) if fps else None,
        )
    finally:
        env.close()


def _import_ale() -> None:
    try:
        import ale_py
        import gymnasium as gym
    except ImportError:
        raise UsageError('Atari envs need ale-py: pip install "prefwrap[atari]"') from None
    gym.register_envs(ale_py)


def _missing_extra(entry_point: str, detail: str) -> str:
    if "mujoco" in entry_point:
        return f'this env needs MuJoCo: pip install "prefwrap[mujoco]" ({detail})'
    if "box2d" in entry_point:
        return f'this env needs Box2D: pip install "gymnasium[box2d]" ({detail})'
    if "ale_py" in entry_point:
        return f'Atari envs need ale-py: pip install "prefwrap[atari]" ({detail})'
    return f"a package this env needs is missing: {detail}"


def make_oracle(spec: str, seed: int) -> Any:
    """Build the oracle named on the command line (``--oracle``)."""
    name, _, argument = spec.partition(":")
    if name == "synthetic":
        from prefwrap.oracles.synthetic import _PRESETS, SyntheticOracle

        if not argument:
            return SyntheticOracle(seed=seed)
        if argument not in _PRESETS:
            raise UsageError(f"unknown synthetic teacher {argument!r}: use one of {', '.join(_PRESETS)}")
        return SyntheticOracle.preset(argument, seed=seed)
    if name == "human" and not argument:
        try:
            from prefwrap.oracles.human import HumanOracle

            return HumanOracle(labeler="human")
        except ImportError as error:
            raise UsageError(str(error)) from None
    if name == "file" and argument:
        from prefwrap.oracles.file import FileOracle

        try:
            oracle = FileOracle(argument)
        except ValueError as error:
            raise UsageError(f"--oracle {spec}: {error}") from None
        oracle.needs_frames = True  # queries must have clips so that `prefwrap export` can show them
        return oracle
    raise UsageError(f"--oracle must be {ORACLES}; got {spec!r}")


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``; refuse ``cuda`` without one."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda, but torch sees no CUDA GPU: use --device cpu (or auto)")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _parse_pairs(items: list[str] | None, flag: str) -> dict[str, Any]:
    from prefwrap.hyperparams import parse_overrides

    try:
        return parse_overrides(items or [])
    except ValueError as error:
        raise UsageError(f"{flag}: {error}") from None


def _learner_kwargs(config: TrainConfig) -> dict[str, Any]:
    """``--learner`` options as PreferenceCallback keyword arguments (``decay_timesteps`` and
    ``initial_fraction`` build a :class:`~prefwrap.schedule.DecayingSchedule`)."""
    import inspect

    from prefwrap.learner import PreferenceLearner
    from prefwrap.schedule import DecayingSchedule

    kwargs = _parse_pairs(config.learner, "--learner")
    schedule_args = {key: kwargs.pop(key) for key in ("decay_timesteps", "initial_fraction") if key in kwargs}
    accepted = set(inspect.signature(PreferenceLearner.__init__).parameters) - {
        "self", "wrapper", "oracle", "total_labels", "store", "schedule"
    }
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise UsageError(
            f"--learner: unknown option {', '.join(unknown)}; accepted: "
            f"{', '.join(sorted(accepted | {'decay_timesteps', 'initial_fraction'}))}"
        )
    if schedule_args:
        try:
            kwargs["schedule"] = DecayingSchedule(config.labels, **{k: float(v) for k, v in schedule_args.items()})
        except (TypeError, ValueError) as error:
            raise UsageError(f"--learner: {error}") from None
    kwargs.setdefault("seed", config.seed)
    return kwargs


def _train_config(args: argparse.Namespace) -> tuple[TrainConfig, Any, dict[str, Any] | None]:
    """The run's configuration and directory, from the arguments or (``--resume``) from config.json."""
    from prefwrap.run_dir import RunDirError, check_same_env, new_run_dir, open_run_dir

    if args.resume:
        if args.run_dir:
            raise UsageError("give either --resume DIR or --run-dir DIR, not both")
        try:
            run, stored = open_run_dir(args.resume)
            check_same_env(stored, args.env_id, run)
        except RunDirError as error:
            raise UsageError(str(error)) from None
        known = {key: value for key, value in stored.items() if key in TrainConfig.__dataclass_fields__}
        config = TrainConfig(**known)
        for key in _FIXED:
            given = getattr(args, key)
            if given is not None and given != getattr(config, key):
                raise UsageError(
                    f"--{key.replace('_', '-')} cannot change when resuming: {run.path} was trained with "
                    f"{getattr(config, key)!r}; start a new run to change it"
                )
        for key in _RESUMABLE:
            given = getattr(args, key, None)
            if given is not None and given is not False:
                setattr(config, key, given)
        if args.no_video:
            config.video = False
        return config, run, stored
    env_id = args.env_id or DEFAULT_ENV
    config = TrainConfig(
        env_id=env_id,
        algo=args.algo or "ppo",
        oracle=args.oracle or "synthetic",
        labels=args.labels if args.labels is not None else 0,
        steps=args.steps if args.steps is not None else 0,
        seed=args.seed if args.seed is not None else 0,
        n_envs=args.n_envs or 0,
        device=args.device,
        hyperparams=list(args.hyperparams or []),
        env_kwargs=list(args.env_kwargs or []),
        learner=list(args.learner or []),
        baseline=args.baseline,
        eval_episodes=args.eval_episodes or 0,
        checkpoint_every=args.checkpoint_every or 0,
        video=not args.no_video,
    )
    run_dir = args.run_dir or os.path.join(
        "runs", f"{env_id.replace('/', '-')}-{config.algo}-seed{config.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    if args.labels is not None and args.labels < 1:
        raise UsageError(f"--labels must be at least 1, got {args.labels}")
    if args.steps is not None and args.steps < 1:
        raise UsageError(f"--steps must be at least 1, got {args.steps}")
    if args.n_envs is not None and args.n_envs < 1:
        raise UsageError(f"--n-envs must be at least 1, got {args.n_envs}")
    if args.eval_episodes is not None and args.eval_episodes < 1:
        raise UsageError(f"--eval-episodes must be at least 1, got {args.eval_episodes}")
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise UsageError(f"--checkpoint-every must be at least 1, got {args.checkpoint_every}")
    return config, run_dir, None


# ------------------------------------------------------------------------------------------- envs


def make_base_env(
    config: TrainConfig, info: EnvInfo, params: Any, n_envs: int, seed: int, *, render: bool = False
) -> Any:
    """The vector env below the preference wrapper: Monitor-wrapped envs, Atari wrappers, frame stack."""
    from stable_baselines3.common.env_util import make_atari_env, make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack

    env_kwargs = _parse_pairs(config.env_kwargs, "--env-kwargs")
    if render:
        env_kwargs.setdefault("render_mode", "rgb_array")
    if info.atari:
        import gymnasium as gym

        if gym.spec(config.env_id).kwargs.get("frameskip", 1) != 1:
            env_kwargs.setdefault("frameskip", 1)  # AtariWrapper skips 4 frames itself
        venv = make_atari_env(config.env_id, n_envs=n_envs, seed=seed, env_kwargs=env_kwargs)
    else:
        venv = make_vec_env(config.env_id, n_envs=n_envs, seed=seed, env_kwargs=env_kwargs)
    if params.frame_stack:
        venv = VecFrameStack(venv, params.frame_stack)
    return venv


def _reward_device(device: str, info: EnvInfo) -> str:
    # Vector rewards are tiny MLPs evaluated per step: the CPU (numpy fast path) beats a GPU round trip.
    return device if info.image else "cpu"


def _with_normalizer(venv: Any, params: Any, path: Path | None, *, training: bool) -> Any:
    from stable_baselines3.common.vec_env import VecNormalize

    if not params.normalize:
        return venv
    if path is not None and path.is_file():
        normalizer = VecNormalize.load(str(path), venv)
        normalizer.training = training
        if not training:
            normalizer.norm_reward = False
        return normalizer
    gamma = float(params.model_kwargs.get("gamma", 0.99))
    return VecNormalize(venv, gamma=gamma, training=training, norm_reward=training)


def _build_model(config: TrainConfig, params: Any, venv: Any, device: str, info: EnvInfo) -> Any:
    from prefwrap.hyperparams import algorithm_class, model_arguments

    cls = algorithm_class(config.algo)
    policy = params.policy
    if info.dict_observations and policy == "MlpPolicy":
        policy = "MultiInputPolicy"
    try:
        kwargs = model_arguments(params.model_kwargs, venv.action_space)
        return cls(policy, venv, seed=config.seed, device=device, verbose=0, **kwargs)
    except (TypeError, ValueError, AssertionError) as error:
        raise UsageError(f"cannot build {config.algo.upper()} for {config.env_id}: {error}") from None


def _check_algo_fits(config: TrainConfig) -> None:
    import gymnasium as gym

    env = gym.make(config.env_id, **_parse_pairs(config.env_kwargs, "--env-kwargs"))
    try:
        discrete = isinstance(env.action_space, gym.spaces.Discrete)
    finally:
        env.close()
    if config.algo in ("sac", "td3") and discrete:
        raise UsageError(f"{config.algo.upper()} needs continuous actions; {config.env_id} has discrete ones: use --algo ppo or dqn")
    if config.algo == "dqn" and not discrete:
        raise UsageError(f"DQN needs discrete actions; {config.env_id} has continuous ones: use --algo sac, td3 or ppo")


# ------------------------------------------------------------------------------------------ train


def cmd_train(args: argparse.Namespace) -> int:
    """``prefwrap train``: train (or resume) a run, then evaluate, plot, film and summarise it."""
    config, run_location, stored = _train_config(args)
    resuming = stored is not None
    env_kwargs = _parse_pairs(config.env_kwargs, "--env-kwargs")
    _headless_rendering()
    info = probe_env(config.env_id, env_kwargs)
    _check_algo_fits(config)
    if info.image and importlib.util.find_spec("prefwrap.cnn_reward_model") is None:
        raise UsageError(
            f"{config.env_id} has image observations, which need prefwrap's CNN reward model "
            "(prefwrap.cnn_reward_model), not in this version: use a vector-observation env"
        )
    from prefwrap import hyperparams

    try:
        params = hyperparams.resolve(
            config.algo, config.env_id, atari=info.atari, overrides=_parse_pairs(config.hyperparams, "--hyperparams")
        )
    except ValueError as error:
        raise UsageError(f"--hyperparams: {error}") from None
    if not config.n_envs:
        config.n_envs = params.n_envs
    if not config.steps:
        config.steps = int(params.n_timesteps or hyperparams.DEFAULT_STEPS)
    if not config.labels:
        config.labels = hyperparams.default_labels(config.env_id, info.atari)
    if not config.eval_episodes:
        config.eval_episodes = 3 if info.atari else 10
    if not config.checkpoint_every:
        config.checkpoint_every = int(min(100_000, max(1_000, config.steps // 10)))
    oracle = make_oracle(config.oracle, config.seed)
    learner_kwargs = _learner_kwargs(config)
    device = resolve_device(config.device)

    from prefwrap.run_dir import RunDirError, new_run_dir

    if resuming:
        run = run_location
    else:
        try:
            run = new_run_dir(run_location)
        except RunDirError as error:
            raise UsageError(str(error)) from None
    return _train(config, run, info, params, oracle, learner_kwargs, device, args, stored)


def _train(
    config: TrainConfig,
    run: Any,
    info: EnvInfo,
    params: Any,
    oracle: Any,
    learner_kwargs: dict[str, Any],
    device: str,
    args: argparse.Namespace,
    stored: dict[str, Any] | None,
) -> int:
    from stable_baselines3.common.callbacks import CallbackList

    from prefwrap import __version__
    from prefwrap.callback import PreferenceCallback
    from prefwrap.run_dir import CheckpointCallback, read_json, versions, write_json
    from prefwrap.wrapper import PreferenceRewardWrapper

    resuming = stored is not None
    needs_frames = bool(getattr(oracle, "needs_frames", False)) and not info.image
    base = make_base_env(config, info, params, config.n_envs, config.seed, render=needs_frames)
    reward_model = run.reward_model if resuming and run.reward_model.is_file() else None
    wrapper = PreferenceRewardWrapper(
        base, reward_model=reward_model, record_frames=needs_frames, device=_reward_device(device, info)
    )
    segments_possible = config.steps // wrapper.segment_length
    if config.labels > segments_possible:
        raise UsageError(
            f"--labels {config.labels} needs at least {config.labels} segments of {wrapper.segment_length} "
            f"steps, but {config.steps} steps give about {segments_possible}: raise --steps or lower --labels"
        )
    venv = _with_normalizer(wrapper, params, run.vecnormalize if resuming else None, training=True)
    if hasattr(oracle, "env_fps"):
        oracle.env_fps = info.render_fps
    try:
        callback = PreferenceCallback(venv, oracle, config.labels, store=run.store, verbose=1, **learner_kwargs)
    except (TypeError, ValueError) as error:
        raise UsageError(f"--learner: {error}") from None
    store = callback.learner.store
    stored_env = store.get_meta("env_id")
    if stored_env is not None and stored_env != config.env_id:
        raise UsageError(f"{run.store} holds labels of {stored_env}, not {config.env_id}: use another --run-dir")
    store.set_meta("env_id", config.env_id)
    if info.render_fps:
        store.set_meta("render_fps", str(info.render_fps))

    model = None
    if resuming and run.policy.is_file():
        from prefwrap.hyperparams import algorithm_class

        model = algorithm_class(config.algo).load(str(run.policy), env=venv, device=device)
        if run.replay_buffer.is_file() and hasattr(model, "load_replay_buffer"):
            model.load_replay_buffer(str(run.replay_buffer))
    if model is None:
        model = _build_model(config, params, venv, device, info)
    start_step = int(model.num_timesteps)

    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    record = asdict(config) | {
        "prefwrap_version": __version__,
        "versions": versions(),
        "segment_length": wrapper.segment_length,
        "hyperparams_resolved": params.to_json(),
        "sessions": [*(stored or {}).get("sessions", []), {"started": now, "from_step": start_step, "argv": sys.argv[1:]}],
    }
    write_json(run.config, record)
    model.set_logger(_logger(run, args.verbose))
    checkpoint = CheckpointCallback(run, wrapper, config.checkpoint_every, lambda: callback.learner.n_labels)

    _print_header(config, run, params, resuming, start_step, callback.learner.n_labels)
    remaining = config.steps - start_step
    started = time.perf_counter()
    if remaining > 0:
        try:
            model.learn(
                remaining,
                callback=CallbackList([callback, checkpoint]),
                reset_num_timesteps=start_step == 0,
                progress_bar=not args.no_progress_bar,
            )
        except KeyboardInterrupt:
            checkpoint.model = model
            checkpoint.save()
            print(
                f"\nInterrupted at step {model.num_timesteps}; every label is stored. Continue with:\n"
                f"  prefwrap train --resume {run.path}",
                file=sys.stderr,
            )
            return 130
    else:
        print(f"Already trained for {start_step} steps (--steps {config.steps}): evaluating.")
    train_seconds = time.perf_counter() - started
    config_record = read_json(run.config) or record
    config_record["sessions"][-1]["train_seconds"] = round(train_seconds, 1)
    config_record["sessions"][-1]["to_step"] = int(model.num_timesteps)
    write_json(run.config, config_record)

    from prefwrap.store import PreferenceStore

    summary = _finish(config, run, info, params, model, wrapper, callback.learner, device, args)
    summary["train_seconds"] = round(sum(s.get("train_seconds", 0.0) for s in config_record["sessions"]), 1)
    write_json(run.summary, summary)
    _print_summary(summary, run)
    assert isinstance(store, PreferenceStore)
    store.close()
    return 0


def _finish(
    config: TrainConfig,
    run: Any,
    info: EnvInfo,
    params: Any,
    model: Any,
    wrapper: Any,
    learner: Any,
    device: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Evaluate, run the baseline if asked, draw the plots; returns the summary."""
    from prefwrap.plots import plot_run
    from prefwrap.run_dir import read_json

    print(f"Evaluating on the true reward ({config.eval_episodes} episodes)...")
    summary = _evaluate_run(config, run, info, params, model, wrapper.learned_reward, device, video=config.video)
    previous = read_json(run.summary) or {}
    summary["baseline_return"] = previous.get("baseline_return")
    if config.baseline and summary["baseline_return"] is None:
        summary["baseline_return"] = _train_baseline(config, run, info, params, wrapper, device, args)
    labels = learner.store.labels()
    summary.update(
        labels=learner.n_labels,
        label_budget=config.labels,
        skipped=sum(1 for label in labels if label.preference.value == "skip"),
        pending=learner.n_pending,
        val_accuracy=learner.last_fit.validation_accuracy if learner.last_fit else None,
        steps=int(model.num_timesteps),
    )
    summary["plots"] = [str(path) for path in plot_run(run, summary)]
    return summary


def _evaluate_run(
    config: TrainConfig,
    run: Any,
    info: EnvInfo,
    params: Any,
    model: Any,
    learned_reward: Any,
    device: str,
    *,
    video: bool,
    deterministic: bool = True,
) -> dict[str, Any]:
    """Evaluate the policy and a random policy on fresh envs; write the held-out data and the video."""
    import numpy as np

    from prefwrap.evaluation import correlation, evaluate, policy_actions, random_actions
    from prefwrap.plots import save_reward_data
    from prefwrap.video import VideoWriter

    eval_seed = config.seed + 10_000
    segment_length = int((read_config_value(run, "segment_length")) or 0) or None

    def stack(seed: int, render: bool, normalizer: Path | None) -> Any:
        base = make_base_env(config, info, params, 1, seed, render=render)
        wrapper = _eval_wrapper(base, learned_reward, segment_length, info)
        return _with_normalizer(wrapper, params, normalizer, training=False)

    writer = None
    if video:
        fps = (info.render_fps or 30.0) / (4 if info.atari else 1)
        writer = VideoWriter(run.videos / "policy", fps=fps)
    normalizer = run.vecnormalize if params.normalize else None
    if normalizer is not None and model.get_vec_normalize_env() is not None:
        model.get_vec_normalize_env().save(str(run.vecnormalize))
    venv = stack(eval_seed, video, normalizer)
    try:
        policy = evaluate(
            venv,
            policy_actions(model, deterministic),
            config.eval_episodes,
            on_frame=writer.add if writer is not None else None,
        )
    except Exception as error:
        if writer is None or "render" not in str(error).lower():
            raise
        print(f"No video: rendering failed ({error}).")  # e.g. no OpenGL for MuJoCo
        writer, venv = None, stack(eval_seed, False, normalizer)
        policy = evaluate(venv, policy_actions(model, deterministic), config.eval_episodes)
    finally:
        venv.close()
    video_path = writer.close() if writer is not None else None
    venv = stack(eval_seed + 1, False, normalizer)
    try:
        randomly = evaluate(venv, random_actions(venv, eval_seed), config.eval_episodes)
    finally:
        venv.close()
    true_returns = np.concatenate([policy.segment_true_returns, randomly.segment_true_returns])
    learned_returns = np.concatenate([policy.segment_learned_returns, randomly.segment_learned_returns])
    source = np.concatenate([np.zeros(len(policy.segment_true_returns)), np.ones(len(randomly.segment_true_returns))])
    save_reward_data(run, true_returns, learned_returns, source)
    return {
        "env_id": config.env_id,
        "algo": config.algo,
        "title": f"{config.algo.upper()} on {config.env_id}, learned from {config.oracle} preferences",
        "policy_return": _stats(policy.episode_returns),
        "random_return": _stats(randomly.episode_returns),
        "reward_correlation": _finite_or_none(correlation(true_returns, learned_returns)),
        "video": str(video_path) if video_path is not None else None,
    }


def read_config_value(run: Any, key: str) -> Any:
    from prefwrap.run_dir import read_json

    return (read_json(run.config) or {}).get(key)


def _eval_wrapper(base: Any, learned_reward: Any, segment_length: int | None, info: EnvInfo) -> Any:
    from prefwrap.wrapper import PreferenceRewardWrapper

    return PreferenceRewardWrapper(
        base,
        reward_model=learned_reward,
        segment_length=segment_length,
        buffer_size=256 if info.image else 4000,
    )


def _train_baseline(
    config: TrainConfig, run: Any, info: EnvInfo, params: Any, wrapper: Any, device: str, args: argparse.Namespace
) -> dict[str, Any]:
    """Train the same algorithm on the true reward (same steps, seed, hyperparameters) and evaluate it."""
    from prefwrap.baseline_dir import baseline_run  # noqa: F401  (placeholder, replaced below)

    raise NotImplementedError


def _stats(returns: Any) -> dict[str, Any]:
    import numpy as np

    values = np.asarray(returns, dtype=float)
    return {
        "mean": _finite_or_none(float(values.mean())) if len(values) else None,
        "std": _finite_or_none(float(values.std())) if len(values) else None,
        "episodes": len(values),
    }


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _logger(run: Any, verbose: int) -> Any:
    from stable_baselines3.common.logger import CSVOutputFormat, HumanOutputFormat, Logger, TensorBoardOutputFormat

    formats: list[Any] = [CSVOutputFormat(str(run.next_progress_csv()))]
    try:
        formats.append(TensorBoardOutputFormat(str(run.logs)))
    except (ImportError, AssertionError):
        pass  # tensorboard is a dependency, but a broken install should not stop training
    if verbose:
        formats.append(HumanOutputFormat(sys.stdout))
    return Logger(str(run.logs), formats)


def _headless_rendering() -> None:
    """MuJoCo renders through EGL when there is no display (servers, CI)."""
    if not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
        os.environ.setdefault("MUJOCO_GL", "egl")


def _print_header(config: TrainConfig, run: Any, params: Any, resuming: bool, start_step: int, n_labels: int) -> None:
    source = "rl-baselines3-zoo tuned" if params.tuned else "Stable-Baselines3 defaults"
    action = f"Resuming at step {start_step:,} with {n_labels} labels stored" if resuming else "Training"
    print(
        f"{action}: {config.algo.upper()} on {config.env_id}, {config.steps:,} steps, {config.labels} labels "
        f"from the {config.oracle} oracle, seed {config.seed}, {config.n_envs} env(s), {source} hyperparameters"
    )
    print(f"Run directory: {run.path}   (TensorBoard: tensorboard --logdir {run.logs})")


def _print_summary(summary: dict[str, Any], run: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    def returns(key: str) -> str:
        value = summary.get(key)
        if not value or value.get("mean") is None:
            return "-"
        return f"{value['mean']:.1f} ± {value['std']:.1f}  ({value['episodes']} episodes)"

    table = Table(title=summary.get("title"), show_header=True, header_style="bold")
    table.add_column("")
    table.add_column("result", justify="right")
    table.add_row("true return, trained policy", returns("policy_return"))
    table.add_row("true return, random policy", returns("random_return"))
    baseline = returns("baseline_return") if summary.get("baseline_return") else "not run (add --baseline)"
    table.add_row(f"true return, {summary['algo'].upper()} on the true reward", baseline)
    score = _normalised_score(summary)
    if score is not None:
        table.add_row("normalised score (random 0, baseline 1)", f"{score:.2f}")
    labels = f"{summary.get('labels', 0)} / {summary.get('label_budget', 0)}"
    if summary.get("skipped"):
        labels += f" ({summary['skipped']} skipped)"
    if summary.get("pending"):
        labels += f", {summary['pending']} pending"
    table.add_row("labels used", labels)
    accuracy = summary.get("val_accuracy")
    table.add_row("reward model validation accuracy", f"{accuracy:.3f}" if accuracy is not None else "-")
    r = summary.get("reward_correlation")
    table.add_row("learned vs true return, held-out segments (r)", f"{r:.3f}" if r is not None else "-")
    seconds = summary.get("train_seconds")
    table.add_row("environment steps / training time", f"{summary.get('steps', 0):,} / {_duration(seconds)}")
    console = Console()
    console.print(table)
    for path in summary.get("plots", []):
        console.print(f"plot:  {path}")
    if summary.get("video"):
        console.print(f"video: {summary['video']}")
    console.print(f"run:   {run.path}")


def _normalised_score(summary: dict[str, Any]) -> float | None:
    try:
        policy = summary["policy_return"]["mean"]
        random = summary["random_return"]["mean"]
        baseline = summary["baseline_return"]["mean"]
    except (KeyError, TypeError):
        return None
    if None in (policy, random, baseline) or baseline == random:
        return None
    return (policy - random) / (baseline - random)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


# --------------------------------------------------------------------------- label, export, plot, eval


def cmd_label(args: argparse.Namespace) -> int:
    raise NotImplementedError


def cmd_export(args: argparse.Namespace) -> int:
    raise NotImplementedError


def cmd_plot(args: argparse.Namespace) -> int:
    raise NotImplementedError


def cmd_eval(args: argparse.Namespace) -> int:
    raise NotImplementedError


if __name__ == "__main__":
    sys.exit(main())
