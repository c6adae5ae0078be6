"""The ``prefwrap`` command: train, label, export, plot and evaluate from the command line.

``prefwrap train`` with no argument runs a short synthetic-oracle demo (PPO on Pendulum-v1, 200
labels, 50k steps: a few minutes on a laptop CPU) and prints, plots and films what the agent learned.
Every run lives in a run directory (layout in :mod:`prefwrap.cli.run_dir`) that ``--resume``,
``prefwrap label``, ``export``, ``plot`` and ``eval`` take as argument. See ``docs/cli.md``.

Every bad argument ends the command with one line saying what to do (exit status 2), never a
traceback. Heavy imports (torch, Stable-Baselines3) happen after the arguments are checked.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

PROG = "prefwrap"
DEFAULT_ENV = "Pendulum-v1"
ORACLES = (
    "synthetic, synthetic:PRESET (oracle, stoch, myopic, mistake, skip, equal), human (training waits "
    "while you label), human:async (a labeling window in another process; training goes on), or file:PATH"
)


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
    )
    train.add_argument(
        "env_id", nargs="?", default=None, metavar="ENV_ID", help=f"Gymnasium env id [{DEFAULT_ENV}]"
    )
    train.add_argument(
        "--algo", choices=("ppo", "a2c", "trpo", "sac", "td3", "dqn"), default=None, help="algorithm [ppo]"
    )
    train.add_argument("--oracle", default=None, help=f"who answers the queries: {ORACLES} [synthetic]")
    train.add_argument(
        "--labels", type=int, default=None, help="label budget [per env: Pendulum 200, MuJoCo 700, ...]"
    )
    train.add_argument("--steps", type=int, default=None, help="environment steps [zoo's tuned n_timesteps]")
    train.add_argument("--seed", type=int, default=None, help="seed of everything [0]")
    train.add_argument("--run-dir", default=None, help="run directory [runs/ENV-ALGO-seedS-TIME]")
    train.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR")
    train.add_argument("--n-envs", type=int, default=None, help="parallel envs [zoo's tuned value]")
    train.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="torch device [auto]"
    )
    train.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads; small networks train fastest on one [1]"
    )
    train.add_argument(
        "--hyperparams",
        nargs="+",
        default=None,
        metavar="KEY=VALUE",
        help="algorithm overrides, e.g. n_steps=256 learning_rate=lin_3e-4",
    )
    train.add_argument(
        "--env-kwargs", nargs="+", default=None, metavar="KEY=VALUE", help="gymnasium.make keyword arguments"
    )
    train.add_argument(
        "--learner",
        nargs="+",
        default=None,
        metavar="KEY=VALUE",
        help="PreferenceCallback options, e.g. query_batch_size=25 selection=random decay_timesteps=2e5",
    )
    train.add_argument(
        "--baseline",
        action="store_true",
        help="also train the algorithm on the true reward (same steps, seed) for comparison",
    )
    train.add_argument("--eval-episodes", type=int, default=None, help="evaluation episodes [10; Atari 3]")
    train.add_argument(
        "--checkpoint-every", type=int, default=None, help="steps between checkpoints [steps/10, 1k to 100k]"
    )
    train.add_argument("--no-video", action="store_true", help="do not record an evaluation video")
    train.add_argument("--no-progress-bar", action="store_true", help="no progress bar (log files only)")
    train.add_argument(
        "-v", "--verbose", action="count", default=0, help="-v: SB3's log tables on stdout too"
    )
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
    evaluate.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    evaluate.set_defaults(func=cmd_eval)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``prefwrap`` command; returns the exit status."""
    parser = build_parser()
    if not (sys.argv[1:] if argv is None else argv):
        parser.print_help()  # plain `prefwrap`: show the commands
        return 2
    args = parser.parse_args(argv)
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

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> TrainConfig:
        """The config stored in ``config.json`` (other keys there, such as sessions, are ignored)."""
        return cls(**{key: value for key, value in record.items() if key in cls.__dataclass_fields__})


# Arguments a resumed run may change; the others define the run and must stay as they were.
_RESUMABLE = (
    "oracle",
    "labels",
    "steps",
    "device",
    "learner",
    "baseline",
    "eval_episodes",
    "checkpoint_every",
)
_FIXED = ("algo", "seed", "n_envs", "hyperparams", "env_kwargs")


@dataclass(frozen=True)
class EnvInfo:
    """What ``prefwrap train`` needs to know about an env before building it."""

    atari: bool
    image: bool
    dict_observations: bool
    discrete_actions: bool
    render_fps: float | None
    segment_length: int


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
            f'unknown env id {env_id!r}: {error} List the ids with: python -c "import gymnasium; '
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

        from prefwrap.encoding import check_supported, is_image

        try:
            check_supported(env.observation_space, "observation")
            check_supported(env.action_space, "action")
        except TypeError as error:
            raise UsageError(f"{env_id}: {error}") from None
        from prefwrap.wrapper import default_segment_length

        fps = env.metadata.get("render_fps")
        image = is_image(env.observation_space) or atari
        dt = getattr(env.unwrapped, "dt", None)
        return EnvInfo(
            atari=atari,
            image=image,
            dict_observations=isinstance(env.observation_space, spaces.Dict),
            discrete_actions=isinstance(env.action_space, spaces.Discrete),
            render_fps=float(fps) if fps else None,
            segment_length=default_segment_length(env.observation_space, dt),
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
        from prefwrap.oracles.synthetic import SyntheticOracle

        if not argument:
            return SyntheticOracle(seed=seed)
        try:
            return SyntheticOracle.preset(argument, seed=seed)
        except ValueError as error:
            raise UsageError(f"unknown synthetic teacher {argument!r}: {error}") from None
    if name == "human" and argument in ("", "async"):
        try:
            from prefwrap.oracles.human import HumanOracle

            oracle = HumanOracle(labeler="human", asynchronous=argument == "async")
        except ImportError as error:
            raise UsageError(str(error)) from None
        _check_display("--oracle human")
        return oracle
    if name == "file" and argument:
        from prefwrap.oracles.file import FileOracle

        try:
            oracle = FileOracle(argument)
        except ValueError as error:
            raise UsageError(f"--oracle {spec}: {error}") from None
        oracle.needs_frames = True  # queries must have clips so that `prefwrap export` can show them
        return oracle
    raise UsageError(f"--oracle must be {ORACLES}; got {spec!r}")


def _check_display(what: str) -> None:
    """A labeling window needs a screen: fail before training, not at the first query."""
    headless = sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("SDL_VIDEODRIVER")
    )
    if headless:
        raise UsageError(
            f"{what} opens a window, but there is no display (DISPLAY is not set): run it on a desktop, "
            "or train with --oracle file:PATH and answer with prefwrap label/export elsewhere"
        )


def resolve_device(device: str, threads: int = 1) -> str:
    """``auto`` → ``cuda`` when torch sees a GPU, else ``cpu``; refuse ``cuda`` without one.

    Also sets torch's CPU threads: SB3's small MLPs and the reward ensemble run fastest on one thread,
    and several threads spinning against each other slow a busy machine down by an order of magnitude.
    """
    import torch

    if threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)

    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda, but torch sees no CUDA GPU: use --device cpu (or auto)")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def _resolve_hyperparams(config: TrainConfig, info: EnvInfo, source: str) -> Any:
    """The tuned settings with the run's ``--hyperparams`` applied; ``source`` names them in errors."""
    from prefwrap import hyperparams

    try:
        return hyperparams.resolve(
            config.algo,
            config.env_id,
            atari=info.atari,
            overrides=_parse_pairs(config.hyperparams, "--hyperparams"),
        )
    except ValueError as error:
        raise UsageError(f"{source}: {error}") from None


def _parse_pairs(items: list[str] | None, flag: str) -> dict[str, Any]:
    from prefwrap.cli.hyperparams import parse_overrides

    try:
        return parse_overrides(items or [])
    except ValueError as error:
        hint = " (give ENV_ID before the options)" if any("=" not in item for item in items or []) else ""
        raise UsageError(f"{flag}: {error}{hint}") from None


def _learner_kwargs(config: TrainConfig) -> dict[str, Any]:
    """``--learner`` options as PreferenceCallback keyword arguments (``decay_timesteps`` and
    ``initial_fraction`` build a :class:`~prefwrap.schedule.DecayingSchedule`)."""
    import inspect

    from prefwrap.learner import PreferenceLearner
    from prefwrap.schedule import DecayingSchedule

    kwargs = _parse_pairs(config.learner, "--learner")
    schedule_args = {key: kwargs.pop(key) for key in ("decay_timesteps", "initial_fraction") if key in kwargs}
    accepted = set(inspect.signature(PreferenceLearner.__init__).parameters) - {
        "self",
        "wrapper",
        "oracle",
        "total_labels",
        "store",
        "schedule",
    }
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise UsageError(
            f"--learner: unknown option {', '.join(unknown)}; accepted: "
            f"{', '.join(sorted(accepted | {'decay_timesteps', 'initial_fraction'}))}"
        )
    if schedule_args:
        try:
            kwargs["schedule"] = DecayingSchedule(
                config.labels, **{k: float(v) for k, v in schedule_args.items()}
            )
        except (TypeError, ValueError) as error:
            raise UsageError(f"--learner: {error}") from None
    kwargs.setdefault("seed", config.seed)
    return kwargs


def _train_config(args: argparse.Namespace) -> tuple[TrainConfig, Any, dict[str, Any] | None]:
    """The run's configuration and directory, from the arguments or (``--resume``) from config.json."""
    from prefwrap.cli.run_dir import RunDirError, check_same_env, open_run_dir

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
    if args.resume:
        if args.run_dir:
            raise UsageError("give either --resume DIR or --run-dir DIR, not both")
        try:
            run, stored = open_run_dir(args.resume)
            check_same_env(stored, args.env_id, run)
        except RunDirError as error:
            raise UsageError(str(error)) from None
        config = TrainConfig.from_record(stored)
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
    return config, run_dir, None


# ------------------------------------------------------------------------------------------- envs


def make_base_env(
    config: TrainConfig,
    info: EnvInfo,
    params: Any,
    n_envs: int,
    seed: int,
    *,
    render: bool = False,
    small_frames: bool = False,
) -> Any:
    """The vector env below the preference wrapper: Monitor-wrapped envs, Atari wrappers, frame stack.

    ``render`` makes the envs render to arrays; ``small_frames`` shrinks those renders to clip size
    (:class:`~prefwrap.clips.video.SmallRender`) for runs that keep frames for labelers.
    """
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
        from prefwrap.clips.video import SmallRender

        wrapper_class = SmallRender if render and small_frames else None
        venv = make_vec_env(
            config.env_id, n_envs=n_envs, seed=seed, env_kwargs=env_kwargs, wrapper_class=wrapper_class
        )
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
    from prefwrap.cli.hyperparams import algorithm_class, model_arguments

    cls = algorithm_class(config.algo)
    policy = params.policy
    if info.dict_observations and policy == "MlpPolicy":
        policy = "MultiInputPolicy"
    try:
        kwargs = model_arguments(params.model_kwargs, venv.action_space)
        return cls(policy, venv, seed=config.seed, device=device, verbose=0, **kwargs)
    except (TypeError, ValueError, AssertionError) as error:
        raise UsageError(f"cannot build {config.algo.upper()} for {config.env_id}: {error}") from None


def _check_algo_fits(algo: str, env_id: str, info: EnvInfo) -> None:
    if algo in ("sac", "td3") and info.discrete_actions:
        raise UsageError(
            f"{algo.upper()} needs continuous actions, {env_id} has discrete ones: use ppo or dqn"
        )
    if algo == "dqn" and not info.discrete_actions:
        raise UsageError(f"DQN needs discrete actions, {env_id} has continuous ones: use sac, td3 or ppo")


# ------------------------------------------------------------------------------------------ train


def cmd_train(args: argparse.Namespace) -> int:
    """``prefwrap train``: train (or resume) a run, then evaluate, plot, film and summarise it."""
    config, run_location, stored = _train_config(args)
    resuming = stored is not None
    from prefwrap import hyperparams

    env_kwargs = _parse_pairs(config.env_kwargs, "--env-kwargs")
    if not resuming:  # recorded in config.json, so a resumed run builds the same env
        for key, value in hyperparams.ENV_KWARGS.get(config.env_id, {}).items():
            if key not in env_kwargs:
                env_kwargs[key] = value
                config.env_kwargs.append(f"{key}={value!r}")
    _headless_rendering()
    info = probe_env(config.env_id, env_kwargs)
    _check_algo_fits(config.algo, config.env_id, info)
    params = _resolve_hyperparams(config, info, "--hyperparams")
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
    segments_possible = config.steps // info.segment_length
    if config.labels > segments_possible:
        raise UsageError(
            f"--labels {config.labels} needs at least {config.labels} segments of {info.segment_length} "
            f"steps, but {config.steps} steps give about {segments_possible}: raise --steps or lower --labels"
        )
    oracle = make_oracle(config.oracle, config.seed)
    learner_kwargs = _learner_kwargs(config)
    device = resolve_device(config.device, args.threads)

    from prefwrap.cli.run_dir import RunDirError, new_run_dir

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
    from stable_baselines3.common.utils import set_random_seed

    from prefwrap import __version__
    from prefwrap.callback import PreferenceCallback
    from prefwrap.cli.run_dir import CheckpointCallback, read_json, versions, write_json
    from prefwrap.wrapper import PreferenceRewardWrapper

    resuming = stored is not None
    # Seed python, numpy and torch before anything draws from them: the reward ensemble's initial
    # weights come from torch's global generator, before SB3 seeds it for the policy.
    set_random_seed(config.seed)
    wrapper_kwargs: dict[str, Any] = {}
    if info.atari:  # the paper's Atari settings; --learner options override them
        from prefwrap.presets import atari_preset

        preset = atari_preset(
            config.labels, initial_labels=min(500, max(1, config.labels // 4)), seed=config.seed
        )
        wrapper_kwargs = preset.wrapper
        learner_kwargs = {k: v for k, v in preset.learner.items() if k != "total_labels"} | learner_kwargs
    needs_frames = bool(getattr(oracle, "needs_frames", False)) and not info.image
    base = make_base_env(
        config, info, params, config.n_envs, config.seed, render=needs_frames, small_frames=True
    )
    reward_model = run.reward_model if resuming and run.reward_model.is_file() else None
    wrapper = PreferenceRewardWrapper(
        base,
        reward_model=reward_model,
        record_frames=needs_frames,
        frame_capacity=64,  # envs rendered every step (no re-renderable state): the newest 64 clips
        device=_reward_device(device, info),
        **wrapper_kwargs,
    )
    venv = _with_normalizer(wrapper, params, run.vecnormalize if resuming else None, training=True)
    try:
        callback = PreferenceCallback(
            venv, oracle, config.labels, store=run.store, verbose=1, **learner_kwargs
        )
    except (TypeError, ValueError) as error:
        raise UsageError(f"--learner: {error}") from None
    store = callback.learner.store
    stored_env = store.get_meta("env_id")
    if stored_env is not None and stored_env != config.env_id:
        raise UsageError(
            f"{run.store} holds labels of {stored_env}, not {config.env_id}: use another --run-dir"
        )
    store.set_meta("env_id", config.env_id)

    model = None
    if resuming and run.policy.is_file():
        from prefwrap.cli.hyperparams import algorithm_class

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
        "sessions": [
            *(stored or {}).get("sessions", []),
            {"started": now, "from_step": start_step, "argv": sys.argv[1:]},
        ],
    }
    write_json(run.config, record)
    model.set_logger(_logger(run, args.verbose))
    checkpoint = CheckpointCallback(run, wrapper, config.checkpoint_every, lambda: callback.learner.n_labels)

    _print_header(config, run, params, resuming, start_step, callback.learner.n_labels)
    remaining = config.steps - start_step
    started = time.perf_counter()
    try:
        if remaining > 0:
            model.learn(
                remaining,
                callback=CallbackList([callback, checkpoint]),
                reset_num_timesteps=start_step == 0,
                progress_bar=not args.no_progress_bar,
            )
        else:
            print(f"Already trained for {start_step} steps (--steps {config.steps}): evaluating.")
    except KeyboardInterrupt:
        checkpoint.model = model
        checkpoint.save()
        print(
            f"\nInterrupted at step {model.num_timesteps}; every label is stored. Continue with:\n"
            f"  prefwrap train --resume {run.path}",
            file=sys.stderr,
        )
        return 130
    finally:
        if callable(getattr(oracle, "close", None)):
            oracle.close()  # the labeling window, if any
    train_seconds = time.perf_counter() - started
    config_record = read_json(run.config) or record
    config_record["sessions"][-1]["train_seconds"] = round(train_seconds, 1)
    config_record["sessions"][-1]["to_step"] = int(model.num_timesteps)
    write_json(run.config, config_record)

    summary = _finish(
        config, run, info, params, model, wrapper, callback.learner, device, not args.no_progress_bar
    )
    summary["train_seconds"] = round(sum(s.get("train_seconds", 0.0) for s in config_record["sessions"]), 1)
    write_json(run.summary, summary)
    store.close()
    _print_summary(summary, run)
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
    progress_bar: bool,
) -> dict[str, Any]:
    """Evaluate, run the baseline if asked, draw the plots; returns the summary."""
    from prefwrap.cli.plots import plot_run
    from prefwrap.cli.run_dir import read_json

    normalizer = model.get_vec_normalize_env()
    if normalizer is not None:
        normalizer.save(str(run.vecnormalize))
    print(
        f"Evaluating on the true reward: {config.eval_episodes} episode(s), and as many of a random policy..."
    )
    summary = _evaluate_run(
        config, run, info, params, model, wrapper.learned_reward, wrapper.segment_length, video=config.video
    )
    previous = read_json(run.summary) or {}
    summary["baseline_return"] = previous.get("baseline_return")
    if config.baseline and summary["baseline_return"] is None:
        summary["baseline_return"] = _train_baseline(
            config, run, info, params, wrapper.learned_reward, wrapper.segment_length, device, progress_bar
        )
    summary.update(_label_counts(learner.store, config.labels))
    summary.update(
        pending=learner.n_pending,
        val_accuracy=_finite_or_none(learner.last_fit.validation_accuracy)
        if learner.last_fit
        else previous.get("val_accuracy"),
        steps=int(model.num_timesteps),
    )
    summary["plots"] = [str(path) for path in plot_run(run, summary)]
    return summary


def _label_counts(store: Any, budget: int) -> dict[str, int]:
    labels = store.labels()
    return {
        "labels": len(labels),
        "label_budget": budget,
        "skipped": sum(1 for label in labels if label.preference.value == "skip"),
    }


def _evaluate_run(
    config: TrainConfig,
    run: Any,
    info: EnvInfo,
    params: Any,
    model: Any,
    learned_reward: Any,
    segment_length: int,
    *,
    video: bool,
    deterministic: bool = True,
) -> dict[str, Any]:
    """Evaluate the policy and a random policy on fresh envs; write the held-out data and the video."""
    import numpy as np

    from prefwrap.cli.evaluation import correlation, policy_actions
    from prefwrap.cli.plots import save_reward_data
    from prefwrap.clips.video import VideoWriter

    eval_seed = config.seed + 10_000
    normalizer = run.vecnormalize if params.normalize else None
    writer = None
    if video:
        fps = (info.render_fps or 30.0) / (4 if info.atari else 1)
        writer = VideoWriter(run.videos / "policy", fps=fps)
    act = policy_actions(model, deterministic)
    policy = _evaluate(
        config, info, params, learned_reward, segment_length, normalizer, eval_seed, act, writer
    )
    if policy.video_error:
        print(f"No video: rendering failed ({policy.video_error})")
    video_path = writer.close() if writer is not None else None
    randomly = _evaluate(
        config, info, params, learned_reward, segment_length, normalizer, eval_seed + 1, None, None
    )
    true_returns = np.concatenate([policy.segment_true_returns, randomly.segment_true_returns])
    learned_returns = np.concatenate([policy.segment_learned_returns, randomly.segment_learned_returns])
    source = np.concatenate(
        [np.zeros(len(policy.segment_true_returns)), np.ones(len(randomly.segment_true_returns))]
    )
    save_reward_data(run, true_returns, learned_returns, source)
    return {
        "env_id": config.env_id,
        "algo": config.algo,
        "oracle": config.oracle,
        "title": f"{config.algo.upper()} on {config.env_id}, reward learned from {config.oracle} preferences",
        "policy_return": _stats(policy.episode_returns),
        "random_return": _stats(randomly.episode_returns),
        "reward_correlation": _finite_or_none(correlation(true_returns, learned_returns)),
        "video": str(video_path) if video_path is not None else None,
    }


VIDEO_SECONDS = 10.0
"""The video shows the first this many seconds of one evaluation episode."""


def _evaluate(
    config: TrainConfig,
    info: EnvInfo,
    params: Any,
    learned_reward: Any,
    segment_length: int,
    normalizer: Path | None,
    seed: int,
    act: Any,
    writer: Any,
) -> Any:
    """One evaluation on a fresh single env (``act=None``: a random policy)."""
    from prefwrap.cli.evaluation import evaluate, random_actions
    from prefwrap.wrapper import PreferenceRewardWrapper

    base = make_base_env(config, info, params, 1, seed, render=writer is not None)
    wrapper = PreferenceRewardWrapper(
        base,
        reward_model=learned_reward,
        segment_length=segment_length,
        buffer_size=256 if info.image else 4000,
    )
    venv = _with_normalizer(wrapper, params, normalizer, training=False)
    try:
        return evaluate(
            venv,
            act or random_actions(venv, seed),
            config.eval_episodes,
            on_frame=writer.add if writer is not None else None,
            max_frames=int(VIDEO_SECONDS * writer.fps) if writer is not None else 0,
        )
    finally:
        venv.close()


def _train_baseline(
    config: TrainConfig,
    run: Any,
    info: EnvInfo,
    params: Any,
    learned_reward: Any,
    segment_length: int,
    device: str,
    progress_bar: bool,
) -> dict[str, Any]:
    """Train the same algorithm on the true reward (same steps, seed, hyperparameters) and evaluate it."""
    from stable_baselines3.common.logger import CSVOutputFormat, Logger

    from prefwrap.cli.evaluation import policy_actions

    print(f"Training the baseline: {config.algo.upper()} on the true reward, {config.steps:,} steps...")
    from stable_baselines3.common.utils import set_random_seed

    set_random_seed(config.seed)
    logs = run.baseline / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    venv = _with_normalizer(
        make_base_env(config, info, params, config.n_envs, config.seed), params, None, training=True
    )
    model = _build_model(config, params, venv, device, info)
    model.set_logger(Logger(str(logs), [CSVOutputFormat(str(logs / "progress.csv"))]))
    model.learn(config.steps, progress_bar=progress_bar)
    model.save(str(run.baseline / "policy.zip"))
    normalizer = None
    if model.get_vec_normalize_env() is not None:
        normalizer = run.baseline / "vecnormalize.pkl"
        model.get_vec_normalize_env().save(str(normalizer))
    venv.close()
    evaluation = _evaluate(
        config,
        info,
        params,
        learned_reward,
        segment_length,
        normalizer,
        config.seed + 10_000,
        policy_actions(model),
        None,
    )
    return _stats(evaluation.episode_returns)


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
    from stable_baselines3.common.logger import (
        CSVOutputFormat,
        HumanOutputFormat,
        Logger,
        TensorBoardOutputFormat,
    )

    formats: list[Any] = [
        CSVOutputFormat(str(run.next_progress_csv())),
        TensorBoardOutputFormat(str(run.logs)),
    ]
    if verbose:
        formats.append(HumanOutputFormat(sys.stdout))
    return Logger(str(run.logs), formats)


def _headless_rendering() -> None:
    """Render without a screen: MuJoCo through EGL when there is no display (servers, CI); pygame-
    rendered envs (classic control) with no audio device and a runtime dir, so SDL prints no errors."""
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    if sys.platform.startswith("linux"):
        if not os.environ.get("DISPLAY"):
            os.environ.setdefault("MUJOCO_GL", "egl")
        if not os.environ.get("XDG_RUNTIME_DIR"):
            import tempfile

            runtime = Path(tempfile.gettempdir()) / f"prefwrap-runtime-{os.getuid()}"
            runtime.mkdir(mode=0o700, exist_ok=True)
            os.environ["XDG_RUNTIME_DIR"] = str(runtime)


def _print_header(
    config: TrainConfig, run: Any, params: Any, resuming: bool, start_step: int, n_labels: int
) -> None:
    source = "rl-baselines3-zoo tuned" if params.tuned else "Stable-Baselines3 defaults"
    action = f"Resuming at step {start_step:,} with {n_labels} labels stored" if resuming else "Training"
    print(
        f"{action}: {config.algo.upper()} on {config.env_id}, {config.steps:,} steps, {config.labels} labels "
        f"from the {config.oracle} oracle, seed {config.seed}, {config.n_envs} env(s), "
        f"{source} hyperparameters"
    )
    print(f"Run directory: {run.path}   (TensorBoard: tensorboard --logdir {run.logs})")


def _print_summary(summary: dict[str, Any], run: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    def returns(key: str) -> str:
        value = summary.get(key)
        if not value or value.get("mean") is None:
            return "-"
        episodes = value["episodes"]
        return f"{value['mean']:.1f} ± {value['std']:.1f}  ({episodes} episode{'s' * (episodes != 1)})"

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
    table.add_row("reward model val. accuracy", f"{accuracy:.3f}" if accuracy is not None else "-")
    r = summary.get("reward_correlation")
    table.add_row("learned vs true return (held-out r)", f"{r:.3f}" if r is not None else "-")
    seconds = summary.get("train_seconds")
    table.add_row("env steps / training time", f"{summary.get('steps', 0):,} / {_duration(seconds)}")
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
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


# --------------------------------------------------------------------------- label, export, plot, eval


def cmd_label(args: argparse.Namespace) -> int:
    """``prefwrap label DIR``: answer the run's pending queries in a pygame window."""
    run = _existing_store(args.run_dir)
    _check_display("prefwrap label")
    try:
        from prefwrap.oracles.human import run_labeling_session
        from prefwrap.oracles.labeling_window import clip_frames, import_pygame

        import_pygame()
    except ImportError as error:
        raise UsageError(str(error)) from None
    from prefwrap.store import PreferenceStore

    with PreferenceStore(run.store) as store:
        pending = store.pending_queries()
        if pending:
            try:
                clip_frames(pending[0].left)
            except ValueError:
                raise UsageError(
                    f"the queries of {run.path} have no frames to show: only runs trained with "
                    "--oracle human or --oracle file:PATH record clips"
                ) from None
    print(
        f"{len(pending)} queries pending in {run.store}. Keys: left/right arrow = that clip is better, "
        "up or space = equal, down = can't tell, r = replay, Esc = stop."
    )
    try:
        written = run_labeling_session(
            run.store,
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
        f"{written} labels written to {run.store}; a running trainer picks them up at its next rollout, "
        f"a stopped one with: prefwrap train --resume {run.path}"
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """``prefwrap export DIR``: write the pending queries as side-by-side clips and a manifest."""
    from prefwrap.cli.run_dir import read_json
    from prefwrap.oracles.export import export_queries
    from prefwrap.store import PreferenceStore

    run = _existing_store(args.run_dir)
    if args.scale < 1:
        raise UsageError(f"--scale must be at least 1, got {args.scale}")
    if args.fps is not None and not args.fps > 0:
        raise UsageError(f"--fps must be positive, got {args.fps}")
    with PreferenceStore(run.store) as store:
        queries = store.pending_queries()
        fps = args.fps or float(store.get_meta("render_fps") or 20.0)
    if not queries:
        print(f"No pending queries in {run.store}: nothing to export.")
        return 0
    out = Path(args.out) if args.out else run.path / "queries"
    try:
        manifest = export_queries(queries, out, fps=fps, fmt=args.format, scale=args.scale)
    except ValueError as error:
        raise UsageError(
            f"cannot export the queries of {run.path}: {error} (only runs trained with --oracle human or "
            "--oracle file:PATH record clips)"
        ) from None
    oracle = str((read_json(run.config) or {}).get("oracle", ""))
    print(f"Wrote {len(queries)} clips and {manifest}.")
    if oracle.startswith("file:"):
        print(
            f"Write the answers to {oracle[5:]} (one JSON line per query, see docs/oracles-file.md); the "
            f"run reads them as they arrive, or on: prefwrap train --resume {run.path}"
        )
    else:
        print(
            f"Fill in {out / 'labels.jsonl'} (see docs/oracles-file.md) and read it back with "
            "prefwrap.oracles.export.import_labels."
        )
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    """``prefwrap plot DIR``: redraw the run's figures from its logs and evaluation data."""
    from prefwrap.cli.plots import plot_run
    from prefwrap.cli.run_dir import RunDirError, open_run_dir, read_json

    try:
        run, config = open_run_dir(args.run_dir)
    except RunDirError as error:
        raise UsageError(str(error)) from None
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
    """``prefwrap eval DIR``: evaluate the saved policy on the true reward and record a video."""
    from prefwrap import hyperparams
    from prefwrap.cli.plots import plot_run
    from prefwrap.cli.run_dir import RunDirError, open_run_dir, read_json, write_json
    from prefwrap.store import PreferenceStore

    try:
        run, stored = open_run_dir(args.run_dir)
    except RunDirError as error:
        raise UsageError(str(error)) from None
    if not run.policy.is_file():
        raise UsageError(
            f"{run.path} has no policy yet ({run.policy.name}): train it, or resume it with "
            f"prefwrap train --resume {run.path}"
        )
    if args.episodes is not None and args.episodes < 1:
        raise UsageError(f"--episodes must be at least 1, got {args.episodes}")
    config = TrainConfig.from_record(stored)
    _headless_rendering()
    info = probe_env(config.env_id, _parse_pairs(config.env_kwargs, "--env-kwargs"))
    params = _resolve_hyperparams(config, info, str(run.config))
    if args.episodes:
        config.eval_episodes = args.episodes
    device = resolve_device(args.device, args.threads)
    model = hyperparams.algorithm_class(config.algo).load(str(run.policy), device=device)
    from prefwrap.reward.learned import LearnedReward

    space_env = make_base_env(config, info, params, 1, config.seed)
    learned_reward = (
        LearnedReward.load(run.reward_model, space_env.observation_space, space_env.action_space)
        if run.reward_model.is_file()
        else None
    )
    space_env.close()
    segment_length = int(stored.get("segment_length") or 25)
    print(f"Evaluating {run.policy} on the true reward: {config.eval_episodes} episode(s)...")
    summary = (read_json(run.summary) or {}) | _evaluate_run(
        config,
        run,
        info,
        params,
        model,
        learned_reward,
        segment_length,
        video=not args.no_video,
        deterministic=not args.stochastic,
    )
    if run.store.is_file():
        with PreferenceStore(run.store) as store:
            summary.update(_label_counts(store, config.labels))
            summary["pending"] = len(store.pending_queries(with_frames=False))
    summary["steps"] = int(model.num_timesteps)
    summary.setdefault(
        "train_seconds", round(sum(s.get("train_seconds", 0.0) for s in stored.get("sessions", [])), 1)
    )
    summary["plots"] = [str(path) for path in plot_run(run, summary)]
    write_json(run.summary, summary)
    _print_summary(summary, run)
    return 0


def _existing_store(path: str) -> Any:
    from prefwrap.cli.run_dir import RunDir

    run = RunDir(Path(path))
    if not run.store.is_file():
        raise UsageError(
            f"{run.path} has no preference store ({run.store.name}): give a run directory of prefwrap train"
        )
    return run


if __name__ == "__main__":
    sys.exit(main())
