"""Building what a run needs from its :class:`~prefwrap.cli.config.TrainConfig`: env, model, oracle.

Every failure here is a :class:`~prefwrap.cli.config.UsageError` that says what to do: an unknown
env id, a missing extra, an algorithm that does not fit the action space, an option the algorithm
or the learner does not take.
"""

from __future__ import annotations

import inspect
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.utils import get_device
from stable_baselines3.common.vec_env import VecEnv

from prefwrap.cli import hyperparams
from prefwrap.cli.config import NOWAIT, ORACLES, TrainConfig, UsageError, labels_file
from prefwrap.cli.display import check_display
from prefwrap.cli.envs import EnvInfo
from prefwrap.cli.hyperparams import HyperParams
from prefwrap.oracles.base import BaseOracle


@dataclass(frozen=True)
class Setup:
    """A resolved run: its options, its env, its hyperparameters and its torch device."""

    config: TrainConfig
    info: EnvInfo
    params: HyperParams
    device: str
    conf_values: dict[str, Any] | None = None
    """The ``--conf-file`` block the hyperparameters started from (``None``: the built-in values)."""

    @property
    def reward_device(self) -> str:
        """Vector rewards are tiny MLPs evaluated per step: the CPU (numpy fast path) beats a GPU round
        trip; image rewards are CNNs, worth the run's device."""
        return self.device if self.info.image else "cpu"


def check_algo_fits(config: TrainConfig, info: EnvInfo) -> None:
    """Refuse an algorithm that cannot act in the env's action space.

    Raises:
        UsageError: SAC/TD3 on discrete actions, DQN on continuous ones.
    """
    algo, env_id = config.algo, config.env_id
    if algo in ("sac", "td3") and info.discrete_actions:
        raise UsageError(
            f"{algo.upper()} needs continuous actions, {env_id} has discrete ones: use ppo or dqn"
        )
    if algo == "dqn" and not info.discrete_actions:
        raise UsageError(f"DQN needs discrete actions, {env_id} has continuous ones: use sac, td3 or ppo")


def make_oracle(spec: str, seed: int, run_dir: str | None = None) -> BaseOracle:
    """Build the oracle named on the command line (``--oracle``, see :data:`~prefwrap.cli.config.ORACLES`).

    Args:
        spec: The ``--oracle`` value.
        seed: Seed of a synthetic oracle.
        run_dir: The run directory, named in the ``prefwrap export`` command a file oracle prints.

    Raises:
        UsageError: An unknown name or synthetic teacher, a missing ``prefwrap[human]`` extra or display,
            or a labels file of an unknown format.
    """
    name, _, argument = spec.partition(":")
    if name == "synthetic":
        from prefwrap.oracles.synthetic import SyntheticOracle

        if not argument:
            return SyntheticOracle(seed=seed)
        try:
            return SyntheticOracle.teacher(argument, seed=seed)
        except ValueError as error:
            raise UsageError(f"unknown synthetic teacher {argument!r}: {error}") from None
    if name == "human" and argument == "web":
        from prefwrap.oracles.human import HumanOracle

        try:
            return HumanOracle(labeler="human", interface="web")
        except ImportError as error:
            raise UsageError(str(error)) from None
    if name == "human" and argument in ("", "async"):
        try:
            from prefwrap.oracles.human import HumanOracle

            oracle = HumanOracle(labeler="human", asynchronous=argument == "async")
        except ImportError as error:
            raise UsageError(str(error)) from None
        check_display("--oracle human")
        return oracle
    path = labels_file(spec)
    if path:
        from prefwrap.oracles.file import FileOracle

        export = f"prefwrap export {shlex.quote(run_dir)}" if run_dir else None
        try:
            # Queries must have clips, so that `prefwrap export` can show them to the people answering.
            return FileOracle(
                path, needs_frames=True, wait=not argument.endswith(NOWAIT), export_command=export
            )
        except ValueError as error:
            raise UsageError(f"--oracle {spec}: {error}") from None
    raise UsageError(f"--oracle must be {ORACLES}; got {spec!r}")


def torch_device(device: str, threads: int) -> str:
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu`` (SB3's ``get_device``).

    Also sets torch's CPU threads: SB3's small MLPs and the reward ensemble run fastest on one thread,
    and several threads spinning against each other slow a busy machine down by an order of magnitude.

    Raises:
        UsageError: ``cuda`` asked for without a GPU (``get_device`` would quietly fall back to the CPU).
    """
    torch.set_num_threads(threads)
    resolved = get_device(device).type
    if device == "cuda" and resolved != "cuda":
        raise UsageError("--device cuda, but torch sees no CUDA GPU: use --device cpu (or auto)")
    return resolved


def resolve_hyperparams(
    config: TrainConfig, info: EnvInfo, source: str, conf_values: dict[str, Any] | None = None
) -> HyperParams:
    """The tuned values (the zoo's, or ``conf_values`` from ``--conf-file`` in their place) with the
    run's ``--hyperparams`` applied; ``source`` names them in errors.

    Raises:
        UsageError: An override that is not ``key=value`` or that the algorithm does not take.
    """
    try:
        overrides = parse_pairs(config.hyperparams, "--hyperparams")
        return hyperparams.resolve(
            config.algo, config.env_id, atari=info.atari, overrides=overrides, table=conf_values
        )
    except ValueError as error:
        raise UsageError(f"{source}: {error}") from None


def read_conf_file(path: str, env_id: str, atari: bool) -> dict[str, Any]:
    """The block of ``env_id`` (or ``atari``) in a zoo-format YAML file (``-conf FILE``).

    Raises:
        UsageError: The file cannot be read, is not zoo-format YAML, or has no block for the env.
    """
    import yaml

    try:
        table = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise UsageError(f"--conf-file {path}: {' '.join(str(error).split())}") from None
    if not isinstance(table, dict):
        raise UsageError(f"--conf-file {path}: not the zoo's format (one block of values per env id)")
    names = [env_id, env_id.rpartition(":")[2], *(["atari"] if atari else [])]
    block = next((table[name] for name in names if name in table), None)
    if not isinstance(block, dict):
        raise UsageError(
            f"--conf-file {path} has no block for {env_id} (it has: {', '.join(map(str, table)) or 'none'})"
        )
    return {key: hyperparams.parse_value(v) if isinstance(v, str) else v for key, v in block.items()}


def zoo_block(config: TrainConfig, params: HyperParams) -> dict[str, Any]:
    """The run's resolved hyperparameters as one zoo-format block (``config.yml``; ``-conf`` reads it)."""
    block: dict[str, Any] = {"n_envs": config.n_envs, "n_timesteps": config.steps, "policy": params.policy}
    if params.normalize:
        block["normalize"] = params.normalize
    if params.frame_stack:
        block["frame_stack"] = params.frame_stack
    for key, value in params.model_kwargs.items():
        block[key] = value if isinstance(value, (bool, int, float, str, list, dict)) else repr(value)
    return {config.env_id: block}


def parse_pairs(items: list[str], flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` options (``--hyperparams``, ``--env-kwargs``, ``--learner``) as a dict.

    Raises:
        UsageError: An item is not ``key=value``.
    """
    try:
        return hyperparams.parse_overrides(items)
    except ValueError as error:
        hint = " (give ENV_ID before the options)" if any("=" not in item for item in items) else ""
        raise UsageError(f"{flag}: {error}{hint}") from None


def learner_kwargs(config: TrainConfig) -> dict[str, Any]:
    """``--learner`` options as PreferenceCallback keyword arguments (``decay_timesteps`` and
    ``initial_fraction`` build a :class:`~prefwrap.schedule.DecayingSchedule`).

    Raises:
        UsageError: An option the learner does not take, or bad schedule values.
    """
    from prefwrap.learner import PreferenceLearner
    from prefwrap.schedule import DecayingSchedule

    kwargs = parse_pairs(config.learner, "--learner")
    schedule_args = {key: kwargs.pop(key) for key in ("decay_timesteps", "initial_fraction") if key in kwargs}
    built_here = {"self", "wrapper", "oracle", "total_labels", "store", "schedule"}
    accepted = set(inspect.signature(PreferenceLearner.__init__).parameters) - built_here
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
    if config.query_size > 6:
        raise UsageError(f"--query-size must be 2 to 6, got {config.query_size}")
    kwargs["query_size"] = config.query_size
    if config.demos:
        if not Path(config.demos).is_file():
            raise UsageError(f"--demos {config.demos}: no such file (an .npz of expert episodes)")
        kwargs["demonstrations"] = config.demos
    return kwargs


def build_model(setup: Setup, venv: VecEnv) -> BaseAlgorithm:
    """A new model of the run's algorithm on ``venv`` with the resolved hyperparameters.

    Raises:
        UsageError: The algorithm refuses the hyperparameters or the env.
    """
    config = setup.config
    policy = setup.params.policy
    if setup.info.dict_observations and policy == "MlpPolicy":
        policy = "MultiInputPolicy"
    try:
        kwargs = setup.params.algorithm_kwargs(venv.action_space)
        model = hyperparams.algorithm_class(config.algo)(
            policy, venv, seed=config.seed, device=setup.device, verbose=0, **kwargs
        )
    except (TypeError, ValueError, AssertionError) as error:
        raise UsageError(f"cannot build {config.algo.upper()} for {config.env_id}: {error}") from None
    if config.trained_agent:
        try:
            model.set_parameters(config.trained_agent, exact_match=True, device=setup.device)
        except Exception as error:
            raise UsageError(
                f"--trained-agent {config.trained_agent}: not a {config.algo.upper()} policy for "
                f"{config.env_id}'s spaces and network ({' '.join(str(error).split())})"
            ) from None
    return model
