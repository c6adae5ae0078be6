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

import gymnasium as gym
import torch
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.env_util import make_atari_env, make_vec_env
from stable_baselines3.common.utils import get_device
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack, VecNormalize

from prefwrap.cli import hyperparams
from prefwrap.cli.config import NOWAIT, ORACLES, TrainConfig, UsageError, labels_file
from prefwrap.cli.display import check_display
from prefwrap.cli.hyperparams import HyperParams
from prefwrap.oracles.base import BaseOracle


@dataclass(frozen=True)
class EnvInfo:
    """What ``prefwrap train`` needs to know about an env before building it.

    Attributes:
        atari: An ALE game (Atari wrappers, frame stack, the paper's Atari settings).
        image: Image observations (a CNN reward model on what the policy sees).
        dict_observations: A ``Dict`` observation space (``MultiInputPolicy``).
        discrete_actions: A ``Discrete`` action space.
        render_fps: ``metadata["render_fps"]`` in frames per second, or ``None``.
        segment_length: Steps per queried segment (the wrapper's default for this env).
    """

    atari: bool
    image: bool
    dict_observations: bool
    discrete_actions: bool
    render_fps: float | None
    segment_length: int


@dataclass(frozen=True)
class Setup:
    """A resolved run: its options, its env, its hyperparameters and its torch device."""

    config: TrainConfig
    info: EnvInfo
    params: HyperParams
    device: str

    @property
    def reward_device(self) -> str:
        """Vector rewards are tiny MLPs evaluated per step: the CPU (numpy fast path) beats a GPU round
        trip; image rewards are CNNs, worth the run's device."""
        return self.device if self.info.image else "cpu"


def probe_env(env_id: str, env_kwargs: dict[str, Any]) -> EnvInfo:
    """Make ``env_id`` once, check that prefwrap supports its spaces, and describe it.

    Raises:
        UsageError: Unknown id, a missing extra (named with its pip command), ``env_kwargs`` the env
            does not take, or an unsupported observation or action space.
    """
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
    try:
        env = gym.make(env_id, **env_kwargs)
    except (gym.error.DependencyNotInstalled, ImportError) as error:
        raise UsageError(_missing_extra(entry_point, str(error))) from None
    except TypeError as error:
        raise UsageError(f"--env-kwargs not accepted by {env_id}: {error}") from None
    try:
        return _describe(env, env_id, atari="ale_py" in entry_point)
    finally:
        env.close()


def _describe(env: gym.Env, env_id: str, atari: bool) -> EnvInfo:
    from prefwrap.encoding import check_supported, is_image
    from prefwrap.recording import default_segment_length

    try:
        check_supported(env.observation_space, "observation")
        check_supported(env.action_space, "action")
    except TypeError as error:
        raise UsageError(f"{env_id}: {error}") from None
    fps = env.metadata.get("render_fps")
    return EnvInfo(
        atari=atari,
        image=is_image(env.observation_space) or atari,
        dict_observations=isinstance(env.observation_space, spaces.Dict),
        discrete_actions=isinstance(env.action_space, spaces.Discrete),
        render_fps=float(fps) if fps else None,
        segment_length=default_segment_length(env.observation_space, getattr(env.unwrapped, "dt", None)),
    )


def _import_ale() -> None:
    try:
        import ale_py
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


def resolve_hyperparams(config: TrainConfig, info: EnvInfo, source: str) -> HyperParams:
    """The zoo's values with the run's ``--hyperparams`` applied; ``source`` names them in errors.

    Raises:
        UsageError: An override that is not ``key=value`` or that the algorithm does not take.
    """
    try:
        overrides = parse_pairs(config.hyperparams, "--hyperparams")
        return hyperparams.resolve(config.algo, config.env_id, atari=info.atari, overrides=overrides)
    except ValueError as error:
        raise UsageError(f"{source}: {error}") from None


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
    return kwargs


def make_base_env(
    setup: Setup, n_envs: int, seed: int, *, render: bool = False, small_frames: bool = False
) -> VecEnv:
    """The vector env below the preference wrapper: Monitor-wrapped envs, Atari wrappers, frame stack.

    ``render`` makes the envs render to arrays; ``small_frames`` shrinks those renders to clip size
    (:class:`~prefwrap.clips.video.SmallRender`) for runs that keep frames for labelers.
    """
    config = setup.config
    env_kwargs = parse_pairs(config.env_kwargs, "--env-kwargs")
    if render:
        env_kwargs.setdefault("render_mode", "rgb_array")
    if setup.info.atari:
        if gym.spec(config.env_id).kwargs.get("frameskip", 1) != 1:
            env_kwargs.setdefault("frameskip", 1)  # AtariWrapper skips 4 frames itself
        venv = make_atari_env(config.env_id, n_envs=n_envs, seed=seed, env_kwargs=env_kwargs)
    else:
        from prefwrap.clips.video import SmallRender

        wrapper_class = SmallRender if render and small_frames else None
        venv = make_vec_env(
            config.env_id, n_envs=n_envs, seed=seed, env_kwargs=env_kwargs, wrapper_class=wrapper_class
        )
    if setup.params.frame_stack:
        venv = VecFrameStack(venv, setup.params.frame_stack)
    return venv


def with_normalizer(venv: VecEnv, params: HyperParams, path: Path | None, *, training: bool) -> VecEnv:
    """``venv`` under the zoo's ``VecNormalize`` when ``params.normalize``, with the statistics in
    ``path`` if it exists; an evaluation stack (``training=False``) freezes them and keeps true rewards."""
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
        return hyperparams.algorithm_class(config.algo)(
            policy, venv, seed=config.seed, device=setup.device, verbose=0, **kwargs
        )
    except (TypeError, ValueError, AssertionError) as error:
        raise UsageError(f"cannot build {config.algo.upper()} for {config.env_id}: {error}") from None
