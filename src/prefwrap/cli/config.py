"""Every ``prefwrap train`` option, declared once: :class:`TrainConfig`.

Each field carries its command-line flag, help text, range and what ``--resume`` may do with it
(:data:`Rule`). The parser is built from these fields (:func:`add_train_arguments`), ``config.json``
stores the run-defining ones, and the resume rules read the same metadata; adding an option is one
field here.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from prefwrap.cli.hyperparams import ALGOS

if TYPE_CHECKING:
    from prefwrap.cli.build import EnvInfo
    from prefwrap.cli.hyperparams import HyperParams

DEFAULT_ENV = "Pendulum-v1"
ORACLES = (
    "synthetic, synthetic:TEACHER (oracle, stoch, myopic, mistake, skip, equal), human (training waits "
    "while you label), human:async (a labeling window in another process; training goes on), human:web "
    "(a labeling page for browsers, several annotators; training goes on), file:PATH "
    "(answers from a labels file; training waits for them) or file:PATH:nowait (training goes on)"
)
NOWAIT = ":nowait"
"""Suffix of ``--oracle file:PATH:nowait``: the file oracle reads the file once per rollout, never waits."""


def labels_file(oracle: str) -> str | None:
    """The labels file of an ``--oracle file:PATH[:nowait]`` spec, or ``None`` for another oracle."""
    name, _, argument = oracle.partition(":")
    if name != "file" or not argument:
        return None
    return argument.removesuffix(NOWAIT)


DEVICES = ("auto", "cpu", "cuda")
VEC_ENVS = ("dummy", "subproc")

DEFAULT_STEPS = 1_000_000
"""Training steps when neither ``--steps`` nor a tuned ``n_timesteps`` is known."""

ENV_KWARGS: dict[str, dict[str, Any]] = {
    # An episode that ends when the robot falls tells the agent what not to do for free: as in the
    # paper and our benchmarks, these tasks run without that termination, so all it learns comes
    # from the preferences. Give --env-kwargs terminate_when_unhealthy=True to restore it.
    "Hopper-v5": {"terminate_when_unhealthy": False},
    "Walker2d-v5": {"terminate_when_unhealthy": False},
}
"""``gymnasium.make`` keyword arguments ``prefwrap train`` adds unless given."""

Rule = Literal["fixed", "resumable", "session"]
"""What ``--resume`` does with an option: ``fixed`` options define the run (stored in ``config.json``,
refused if changed); ``resumable`` ones are stored and may be given again to change them;
``session`` ones apply to this invocation only and are not stored."""


class UsageError(Exception):
    """A bad argument or an unusable input: reported as one line, exit status 2."""


class CommandError(Exception):
    """A command failed on something other than its arguments (an oracle, the store, the env).

    Reported as its one-line message and then ``hint`` (e.g. the resume command), exit status 1;
    ``--debug`` or ``PREFWRAP_DEBUG=1`` also prints the traceback of its cause.

    Attributes:
        hint: What to do next, printed on the line after the message, or ``None``.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def one_line(error: BaseException) -> str:
    """``error``'s message on one line: its first line, then any further lines joined by ``"; "``.

    The exception's type is named too unless its message speaks for itself (a ``ValueError``,
    ``RuntimeError``, ``OSError``, ``ImportError`` or one of prefwrap's): ``KeyError: 'x'`` needs it.
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = " ".join([lines[0], "; ".join(lines[1:])]).strip() if lines else ""
    speaks = isinstance(error, (ValueError, RuntimeError, OSError, ImportError, CommandError))
    if text and (speaks or type(error).__module__.startswith("prefwrap")):
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    on_resume: Rule,
    flags: tuple[str, ...] | None = None,
    cli_default: Any = None,
    minimum: int | None = None,
    default_factory: Callable[[], list[str]] | None = None,
    **argparse_kwargs: Any,
) -> Any:
    """A :class:`TrainConfig` field with its command-line metadata.

    Args:
        default: The value of a new run when the option is not given (``0``: decided per task).
        help: The ``--help`` text.
        on_resume: See :data:`Rule`.
        flags: Option strings; default ``--<name-with-dashes>``; ``()`` for a positional argument.
        cli_default: What the parser returns when the option is not given (``None``: "not given",
            so a resumed run keeps its stored value).
        minimum: Smallest accepted value, checked before anything is built.
        default_factory: Makes the default of a list field.
        **argparse_kwargs: Passed to ``add_argument`` (``type``, ``choices``, ``nargs``, ``action``...).
    """
    metadata = {
        "help": help,
        "on_resume": on_resume,
        "flags": flags,
        "cli_default": cli_default,
        "minimum": minimum,
        "argparse": argparse_kwargs,
    }
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """The options of ``prefwrap train``; the ``fixed`` and ``resumable`` ones are ``config.json``'s."""

    env_id: str = option(
        DEFAULT_ENV,
        flags=(),
        on_resume="fixed",
        nargs="?",
        metavar="ENV_ID",
        help=f"Gymnasium env id, or module:EnvId to import the module that registers it [{DEFAULT_ENV}]",
    )
    gym_packages: list[str] = option(  # noqa: RUF009 -- option() is a dataclasses.field(default_factory=list)
        on_resume="fixed",
        default_factory=list,
        nargs="+",
        metavar="MODULE",
        help="modules to import before making the env, e.g. ones that register custom envs (the zoo's flag)",
    )
    algo: str = option("ppo", on_resume="fixed", choices=ALGOS, help="algorithm [ppo]")
    oracle: str = option(
        "synthetic", on_resume="resumable", help=f"who answers the queries: {ORACLES} [synthetic]"
    )
    labels: int = option(
        0,
        on_resume="resumable",
        minimum=1,
        type=int,
        help="label budget [per env: Pendulum 200, MuJoCo 700, ...]",
    )
    steps: int = option(
        0, on_resume="resumable", minimum=1, type=int, help="environment steps [zoo's tuned n_timesteps]"
    )
    seed: int = option(0, on_resume="fixed", type=int, help="seed of everything [0]")
    run_dir: str | None = option(None, on_resume="session", help="run directory [runs/ENV-ALGO-seedS-TIME]")
    store: str | None = option(
        None,
        on_resume="fixed",
        metavar="URL",
        help="keep the labels in this store instead of DIR/preferences.sqlite, e.g. a postgresql:// "
        "database that label servers and annotators on other machines reach",
    )
    resume: str | None = option(None, on_resume="session", metavar="DIR", help="continue the run in DIR")
    n_envs: int = option(0, on_resume="fixed", minimum=1, type=int, help="parallel envs [zoo's tuned value]")
    device: str = option(
        "auto", on_resume="resumable", cli_default="auto", choices=DEVICES, help="torch device [auto]"
    )
    threads: int = option(
        1,
        on_resume="session",
        cli_default=1,
        minimum=1,
        type=int,
        help="torch CPU threads; small networks train fastest on one [1]",
    )
    hyperparams: list[str] = option(  # noqa: RUF009 -- option() is a dataclasses.field(default_factory=list)
        on_resume="fixed",
        default_factory=list,
        nargs="+",
        metavar="KEY=VALUE",
        help="algorithm overrides, e.g. n_steps=256 learning_rate=lin_3e-4",
    )
    conf_file: str | None = option(
        None,
        on_resume="fixed",
        flags=("-conf", "--conf-file"),
        metavar="FILE",
        help="YAML hyperparameters in the zoo's format (one block per env id) replacing the built-in "
        "tuned values; --hyperparams KEY=VALUE still override them",
    )
    env_kwargs: list[str] = option(  # noqa: RUF009 -- option() is a dataclasses.field(default_factory=list)
        on_resume="fixed",
        default_factory=list,
        nargs="+",
        metavar="KEY=VALUE",
        help="gymnasium.make keyword arguments",
    )
    env_wrapper: list[str] = option(  # noqa: RUF009 -- option() is a dataclasses.field(default_factory=list)
        on_resume="fixed",
        default_factory=list,
        nargs="+",
        metavar="DOTTED.PATH",
        help="gymnasium.Wrapper classes applied to each env, innermost first, e.g. "
        "gymnasium.wrappers.TimeAwareObservation (as the zoo's env_wrapper)",
    )
    vec_env: str = option(
        "dummy",
        on_resume="resumable",
        choices=VEC_ENVS,
        help="dummy: every env in this process; subproc: one process per env [dummy]",
    )
    trained_agent: str | None = option(
        None,
        on_resume="fixed",
        metavar="PATH",
        help="start the policy from this Stable-Baselines3 zip (same algorithm and spaces)",
    )
    query_size: int = option(
        2,
        on_resume="fixed",
        minimum=2,
        type=int,
        metavar="K",
        help="segments per query: 2 = pairs (the paper), 3-6 = the oracle ranks K clips [2]",
    )
    demos: str | None = option(
        None,
        on_resume="resumable",
        metavar="FILE",
        help="expert demonstrations (.npz, docs/concepts.md#demonstrations) turned into preferences",
    )
    learner: list[str] = option(  # noqa: RUF009 -- option() is a dataclasses.field(default_factory=list)
        on_resume="resumable",
        default_factory=list,
        nargs="+",
        metavar="KEY=VALUE",
        help="PreferenceCallback options, e.g. query_batch_size=25 selection=random decay_timesteps=2e5",
    )
    baseline: bool = option(
        False,
        on_resume="resumable",
        action="store_true",
        help="also train the algorithm on the true reward (same steps, seed) for comparison",
    )
    eval_freq: int = option(
        0,
        on_resume="resumable",
        minimum=-1,
        type=int,
        metavar="N",
        help="evaluate on the true reward every N steps (evaluations.npz, best_model.zip, "
        "eval/mean_reward); -1: never [steps/10]",
    )
    eval_episodes: int = option(
        0,
        on_resume="resumable",
        minimum=1,
        type=int,
        metavar="K",
        help="episodes of each evaluation, periodic and final [10; Atari 3]",
    )
    checkpoint_every: int = option(
        0,
        on_resume="resumable",
        minimum=1,
        type=int,
        metavar="N",
        help="steps between the checkpoints --resume continues from [steps/10, 1k to 100k]",
    )
    save_freq: int = option(
        -1,
        on_resume="resumable",
        minimum=-1,
        type=int,
        metavar="N",
        help="also keep a checkpoint every N steps in checkpoints/step-N/ (policy, reward model, "
        "normaliser, store position) for --resume --checkpoint and eval --checkpoint; -1: none [-1]",
    )
    checkpoint: int | None = option(
        None,
        on_resume="session",
        type=int,
        metavar="STEP",
        help="with --resume: continue from the kept checkpoint of this step (see --save-freq) instead "
        "of the last one",
    )
    until_labelled: bool = option(
        False,
        on_resume="resumable",
        action="store_true",
        help="with --oracle human:async or file:PATH:nowait, keep training past --steps until every label "
        "of the budget is given (Ctrl-C stops with a checkpoint)",
    )
    video: bool = option(
        True,
        on_resume="resumable",
        flags=("--no-video",),
        action="store_false",
        help="do not record evaluation videos",
    )
    video_episodes: int = option(
        1,
        on_resume="resumable",
        cli_default=None,
        minimum=1,
        type=int,
        metavar="N",
        help="film the N evaluation episodes whose returns are nearest the median [1]",
    )
    video_seconds: float = option(
        30.0,
        on_resume="resumable",
        cli_default=None,
        type=float,
        metavar="S",
        help="film at most S seconds of each episode; 0: whole episodes [30]",
    )
    progress_bar: bool = option(
        True,
        on_resume="session",
        flags=("--no-progress-bar",),
        action="store_false",
        help="no progress bar (log files only)",
    )
    verbose: int = option(
        1,
        on_resume="session",
        flags=("-v", "--verbose"),
        cli_default=1,
        type=int,
        choices=(0, 1, 2),
        nargs="?",
        const=2,
        help="0: the header and the summary only; 1: also a line per reward refit; 2 (or -v alone): also "
        "SB3's log tables [1]",
    )
    track: bool = option(
        False,
        on_resume="session",
        action="store_true",
        help="log to Weights & Biases (needs prefwrap[track]; WANDB_MODE=offline works without an account)",
    )
    wandb_project_name: str = option(
        "prefwrap", on_resume="session", cli_default="prefwrap", help="W&B project of --track [prefwrap]"
    )
    wandb_entity: str | None = option(None, on_resume="session", help="W&B entity (team) of --track")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TrainConfig:
        """A new run's config: the options given, the defaults for the others.

        Raises:
            UsageError: An option is below its minimum.
        """
        check_ranges(args)
        return cls(**{f.name: getattr(args, f.name) for f in _fields() if getattr(args, f.name) is not None})

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> TrainConfig:
        """The config stored in ``config.json`` (other keys there, such as sessions, are ignored)."""
        return cls(
            **{f.name: record[f.name] for f in _fields() if _rule(f) != "session" and f.name in record}
        )

    def resumed_with(self, args: argparse.Namespace, run_path: os.PathLike[str]) -> TrainConfig:
        """This stored config with the options given on the command line of ``--resume``.

        Raises:
            UsageError: A ``fixed`` option was given with another value than the stored one.
        """
        check_ranges(args)
        for f in _fields():
            given, stored = getattr(args, f.name), getattr(self, f.name)
            if given is None or given == stored:
                continue
            if _rule(f) == "fixed":
                raise UsageError(
                    f"--{f.name.replace('_', '-')} cannot change when resuming: {run_path} was trained with "
                    f"{stored!r}; start a new run to change it"
                )
            setattr(self, f.name, given)
        return self

    def to_record(self) -> dict[str, Any]:
        """The ``fixed`` and ``resumable`` options, as stored in ``config.json``."""
        return {f.name: getattr(self, f.name) for f in _fields() if _rule(f) != "session"}

    def new_run_dir(self) -> str:
        """``--run-dir``, or ``runs/ENV-ALGO-seedS-TIME``."""
        env = self.env_id.replace("/", "-").replace(":", "-")
        name = f"{env}-{self.algo}-seed{self.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
        return self.run_dir or os.path.join("runs", name)

    def fill_task_defaults(self, info: EnvInfo, params: HyperParams) -> None:
        """Replace the options left at 0 ("per task") by the task's values."""
        self.n_envs = self.n_envs or params.n_envs
        self.steps = self.steps or int(params.n_timesteps or DEFAULT_STEPS)
        self.labels = self.labels or default_labels(self.env_id, info.atari)
        self.eval_episodes = self.eval_episodes or (3 if info.atari else 10)
        self.checkpoint_every = self.checkpoint_every or int(min(100_000, max(1_000, self.steps // 10)))
        self.eval_freq = self.eval_freq or max(1, self.steps // 10)


def default_labels(env_id: str, atari: bool) -> int:
    """Label budget used when ``--labels`` is not given: the paper's 700 (MuJoCo) and 5,500 (Atari)."""
    if atari:
        return 5500
    return {"Pendulum-v1": 200, "CartPole-v1": 100}.get(env_id, 700)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one argument per :class:`TrainConfig` field to ``parser``, in field order."""
    for f in _fields():
        meta = f.metadata
        flags = meta["flags"] if meta["flags"] is not None else (f"--{f.name.replace('_', '-')}",)
        if flags:
            parser.add_argument(
                *flags, dest=f.name, default=meta["cli_default"], help=meta["help"], **meta["argparse"]
            )
        else:
            parser.add_argument(f.name, default=meta["cli_default"], help=meta["help"], **meta["argparse"])


def check_ranges(args: argparse.Namespace) -> None:
    """Check every given option against its ``minimum``.

    Raises:
        UsageError: Names the first option below its minimum.
    """
    for f in _fields():
        value, minimum = getattr(args, f.name, None), f.metadata["minimum"]
        if minimum is not None and value is not None and value < minimum:
            raise UsageError(f"--{f.name.replace('_', '-')} must be at least {minimum}, got {value}")


def _fields() -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(TrainConfig)


def _rule(f: dataclasses.Field) -> Rule:
    return f.metadata["on_resume"]
