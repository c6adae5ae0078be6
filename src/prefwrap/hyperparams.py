"""Default algorithm hyperparameters per environment: rl-baselines3-zoo's tuned values.

``prefwrap train`` starts from these and applies ``--hyperparams key=value`` overrides. Values follow
the zoo's conventions: ``n_envs``, ``normalize`` (``VecNormalize``), ``frame_stack`` and ``policy`` say
how to build the env and the model; ``"lin_<x>"`` is a schedule decaying linearly from ``x`` to 0;
``noise_type``/``noise_std`` build TD3's action noise; ``policy_kwargs`` may name ``nn.<Activation>``.
Everything else goes to the algorithm's constructor. An (algorithm, env) pair the zoo has not tuned
gets the algorithm's Stable-Baselines3 defaults.

Sources (zoo ``hyperparams/*.yml``; the MuJoCo entries were tuned on -v3/-v4, the same tasks as -v5):
``ppo.yml`` (Pendulum-v1, CartPole-v1, HalfCheetah/Hopper/Walker2d/Swimmer-v4, Reacher-v2,
InvertedDoublePendulum-v2, atari), ``a2c.yml``, ``trpo.yml``, ``sac.yml``, ``td3.yml``, ``dqn.yml``.
"""

from __future__ import annotations

import ast
import copy
import inspect
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ALGOS = ("ppo", "a2c", "trpo", "sac", "td3", "dqn")
ATARI = "atari"
"""Key of the settings shared by every Atari game."""

_BUILD_KEYS = ("n_envs", "normalize", "frame_stack", "policy", "n_timesteps")

_MUJOCO_POLICY = {
    "log_std_init": -2,
    "ortho_init": False,
    "activation_fn": "nn.ReLU",
    "net_arch": {"pi": [256, 256], "vf": [256, 256]},
}
_TRPO_MUJOCO = {
    "normalize": True,
    "n_envs": 2,
    "n_timesteps": 1_000_000,
    "batch_size": 128,
    "n_steps": 1024,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "sub_sampling_factor": 1,
    "cg_max_steps": 25,
    "cg_damping": 0.1,
    "n_critic_updates": 20,
    "learning_rate": 1e-3,
}
_TD3_MUJOCO = {
    "n_timesteps": 1_000_000,
    "learning_starts": 10_000,
    "noise_type": "normal",
    "noise_std": 0.1,
    "train_freq": 1,
    "gradient_steps": 1,
    "learning_rate": 1e-3,
    "batch_size": 256,
    "policy_kwargs": {"net_arch": [400, 300]},
}

TUNED: dict[str, dict[str, dict[str, Any]]] = {
    "ppo": {
        ATARI: {
            "policy": "CnnPolicy",
            "frame_stack": 4,
            "n_envs": 8,
            "n_timesteps": 10_000_000,
            "n_steps": 128,
            "n_epochs": 4,
            "batch_size": 256,
            "learning_rate": "lin_2.5e-4",
            "clip_range": "lin_0.1",
            "vf_coef": 0.5,
            "ent_coef": 0.01,
        },
        "Pendulum-v1": {
            "n_envs": 4,
            "n_timesteps": 50_000,  # the zoo trains 1e5; 5e4 already swings up and keeps the demo short
            "n_steps": 1024,
            "gae_lambda": 0.95,
            "gamma": 0.9,
            "n_epochs": 10,
            "ent_coef": 0.0,
            "learning_rate": 1e-3,
            "clip_range": 0.2,
            "use_sde": True,
            "sde_sample_freq": 4,
        },
        "CartPole-v1": {
            "n_envs": 8,
            "n_timesteps": 100_000,
            "n_steps": 32,
            "batch_size": 256,
            "gae_lambda": 0.8,
            "gamma": 0.98,
            "n_epochs": 20,
            "ent_coef": 0.0,
            "learning_rate": "lin_0.001",
            "clip_range": "lin_0.2",
        },
        "HalfCheetah-v5": {
            "normalize": True,
            "n_envs": 1,
            "n_timesteps": 1_000_000,
            "batch_size": 64,
            "n_steps": 512,
            "gamma": 0.98,
            "learning_rate": 2.0633e-05,
            "ent_coef": 0.000401762,
            "clip_range": 0.1,
            "n_epochs": 20,
            "gae_lambda": 0.92,
            "max_grad_norm": 0.8,
            "vf_coef": 0.58096,
            "policy_kwargs": _MUJOCO_POLICY,
        },
        "Hopper-v5": {
            "normalize": True,
            "n_envs": 1,
            "n_timesteps": 1_000_000,
            "batch_size": 32,
            "n_steps": 512,
            "gamma": 0.999,
            "learning_rate": 9.80828e-05,
            "ent_coef": 0.00229519,
            "clip_range": 0.2,
            "n_epochs": 5,
            "gae_lambda": 0.99,
            "max_grad_norm": 0.7,
            "vf_coef": 0.835671,
            "policy_kwargs": _MUJOCO_POLICY,
        },
        "Walker2d-v5": {
            "normalize": True,
            "n_envs": 1,
            "n_timesteps": 1_000_000,
            "batch_size": 32,
            "n_steps": 512,
            "gamma": 0.99,
            "learning_rate": 5.05041e-05,
            "ent_coef": 0.000585045,
            "clip_range": 0.1,
            "n_epochs": 20,
            "gae_lambda": 0.95,
            "max_grad_norm": 1,
            "vf_coef": 0.871923,
        },
        "Swimmer-v5": {
            "normalize": True,
            "n_envs": 4,
            "n_timesteps": 1_000_000,
            "gamma": 0.9999,
            "n_steps": 1024,
            "batch_size": 256,
            "learning_rate": 6e-4,
            "gae_lambda": 0.98,
        },
        "Reacher-v5": {
            "normalize": True,
            "n_envs": 1,
            "n_timesteps": 1_000_000,
            "batch_size": 32,
            "n_steps": 512,
            "gamma": 0.9,
            "learning_rate": 0.000104019,
            "ent_coef": 7.52585e-08,
            "clip_range": 0.3,
            "n_epochs": 5,
            "gae_lambda": 1.0,
            "max_grad_norm": 0.9,
            "vf_coef": 0.950368,
        },
        "InvertedDoublePendulum-v5": {
            "normalize": True,
            "n_envs": 1,
            "n_timesteps": 1_000_000,
            "batch_size": 512,
            "n_steps": 128,
            "gamma": 0.98,
            "learning_rate": 0.000155454,
            "ent_coef": 1.05057e-06,
            "clip_range": 0.4,
            "n_epochs": 10,
            "gae_lambda": 0.8,
            "max_grad_norm": 0.5,
            "vf_coef": 0.695929,
        },
    },
    "a2c": {
        ATARI: {
            "policy": "CnnPolicy",
            "frame_stack": 4,
            "n_envs": 16,
            "n_timesteps": 10_000_000,
            "ent_coef": 0.01,
            "vf_coef": 0.25,
            "policy_kwargs": {"optimizer_class": "RMSpropTFLike", "optimizer_kwargs": {"eps": 1e-5}},
        },
        "CartPole-v1": {"n_envs": 8, "n_timesteps": 500_000, "ent_coef": 0.0},
        "Pendulum-v1": {
            "normalize": True,
            "n_envs": 8,
            "n_timesteps": 1_000_000,
            "ent_coef": 0.0,
            "max_grad_norm": 0.5,
            "n_steps": 8,
            "gae_lambda": 0.9,
            "vf_coef": 0.4,
            "gamma": 0.9,
            "use_rms_prop": True,
            "normalize_advantage": False,
            "learning_rate": "lin_7e-4",
            "use_sde": True,
            "policy_kwargs": {"log_std_init": -2, "ortho_init": False},
        },
        "HalfCheetah-v5": {"normalize": True, "n_timesteps": 1_000_000},
        "Hopper-v5": {"normalize": True, "n_timesteps": 1_000_000},
        "Walker2d-v5": {"normalize": True, "n_timesteps": 1_000_000},
        "Swimmer-v5": {"normalize": True, "n_timesteps": 1_000_000, "gamma": 0.9999},
    },
    "trpo": {
        "CartPole-v1": {
            "n_envs": 2,
            "n_timesteps": 100_000,
            "n_steps": 512,
            "batch_size": 512,
            "cg_damping": 1e-3,
            "gae_lambda": 0.98,
            "gamma": 0.99,
            "learning_rate": 1e-3,
            "n_critic_updates": 20,
        },
        "Pendulum-v1": {
            "n_envs": 2,
            "n_timesteps": 100_000,
            "n_steps": 1024,
            "gamma": 0.9,
            "n_critic_updates": 15,
            "use_sde": True,
            "sde_sample_freq": 4,
        },
        "HalfCheetah-v5": {**_TRPO_MUJOCO, "target_kl": 0.04},
        "Hopper-v5": _TRPO_MUJOCO,
        "Walker2d-v5": _TRPO_MUJOCO,
        "Swimmer-v5": {**_TRPO_MUJOCO, "gamma": 0.9999},
    },
    "sac": {
        "Pendulum-v1": {"n_timesteps": 20_000, "learning_rate": 1e-3},
        "HalfCheetah-v5": {"n_timesteps": 1_000_000, "learning_starts": 10_000},
        "Hopper-v5": {"n_timesteps": 1_000_000, "learning_starts": 10_000},
        "Walker2d-v5": {"n_timesteps": 1_000_000, "learning_starts": 10_000},
        "Swimmer-v5": {"n_timesteps": 1_000_000, "learning_starts": 10_000, "gamma": 0.9999},
    },
    "td3": {
        "Pendulum-v1": {
            "n_timesteps": 20_000,
            "gamma": 0.98,
            "buffer_size": 200_000,
            "learning_starts": 10_000,
            "noise_type": "normal",
            "noise_std": 0.1,
            "gradient_steps": 1,
            "train_freq": 1,
            "learning_rate": 1e-3,
            "policy_kwargs": {"net_arch": [400, 300]},
        },
        "HalfCheetah-v5": _TD3_MUJOCO,
        "Hopper-v5": _TD3_MUJOCO,
        "Walker2d-v5": _TD3_MUJOCO,
        "Swimmer-v5": {**_TD3_MUJOCO, "gamma": 0.9999},
    },
    "dqn": {
        ATARI: {
            "policy": "CnnPolicy",
            "frame_stack": 4,
            "n_timesteps": 10_000_000,
            "buffer_size": 10_000,
            "learning_rate": 1e-4,
            "batch_size": 32,
            "learning_starts": 100_000,
            "target_update_interval": 1000,
            "train_freq": 4,
            "gradient_steps": 1,
            "exploration_fraction": 0.1,
            "exploration_final_eps": 0.01,
            "optimize_memory_usage": True,
            "replay_buffer_kwargs": {"handle_timeout_termination": False},
        },
        "CartPole-v1": {
            "n_timesteps": 50_000,
            "learning_rate": 2.3e-3,
            "batch_size": 64,
            "buffer_size": 100_000,
            "learning_starts": 1000,
            "gamma": 0.99,
            "target_update_interval": 10,
            "train_freq": 256,
            "gradient_steps": 128,
            "exploration_fraction": 0.16,
            "exploration_final_eps": 0.04,
            "policy_kwargs": {"net_arch": [256, 256]},
        },
    },
}

ENV_KWARGS: dict[str, dict[str, Any]] = {
    # An episode that ends when the robot falls tells the agent what not to do for free: as in the
    # paper and our benchmarks, these tasks run without that termination, so all it learns comes
    # from the preferences. Give --env-kwargs terminate_when_unhealthy=True to restore it.
    "Hopper-v5": {"terminate_when_unhealthy": False},
    "Walker2d-v5": {"terminate_when_unhealthy": False},
}
"""``gymnasium.make`` keyword arguments ``prefwrap train`` adds unless given."""

DEFAULT_STEPS = 1_000_000
"""Training steps when neither ``--steps`` nor a tuned ``n_timesteps`` is known."""


def default_labels(env_id: str, atari: bool) -> int:
    """Label budget used when ``--labels`` is not given: the paper's 700 (MuJoCo) and 5,500 (Atari)."""
    if atari:
        return 5500
    return {"Pendulum-v1": 200, "CartPole-v1": 100}.get(env_id, 700)


@dataclass
class HyperParams:
    """Everything needed to build the env stack and the model of one run.

    Attributes:
        n_envs: Parallel environments.
        normalize: Wrap the env in ``VecNormalize`` (observations and rewards, as the zoo does).
        frame_stack: Frames stacked with ``VecFrameStack`` (0: none).
        policy: SB3 policy name.
        n_timesteps: Tuned training length (``None``: untuned).
        model_kwargs: Keyword arguments of the algorithm's constructor, still in zoo notation
            (see :func:`model_arguments`).
        tuned: Whether the zoo has tuned values for this (algorithm, env).
    """

    n_envs: int = 1
    normalize: bool = False
    frame_stack: int = 0
    policy: str = "MlpPolicy"
    n_timesteps: int | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    tuned: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable copy (zoo notation), as written to ``config.json``."""
        return {
            "n_envs": self.n_envs,
            "normalize": self.normalize,
            "frame_stack": self.frame_stack,
            "policy": self.policy,
            "tuned": self.tuned,
            "model_kwargs": copy.deepcopy(self.model_kwargs),
        }


def resolve(algo: str, env_id: str, *, atari: bool, overrides: dict[str, Any] | None = None) -> HyperParams:
    """Tuned values for ``(algo, env_id)`` with ``overrides`` applied.

    Raises:
        ValueError: Unknown algorithm or an override the algorithm does not accept.
    """
    if algo not in TUNED:
        raise ValueError(f"unknown algorithm {algo!r}: choose one of {', '.join(ALGOS)}")
    table = TUNED[algo].get(ATARI if atari else env_id)
    values = copy.deepcopy(table) if table is not None else {}
    if atari and "policy" not in values:
        values.update(policy="CnnPolicy", frame_stack=4)
    values.update(copy.deepcopy(overrides or {}))
    params = HyperParams(tuned=table is not None)
    for key in _BUILD_KEYS:
        if key in values:
            setattr(params, key, values.pop(key))
    params.n_envs = int(params.n_envs)
    params.frame_stack = int(params.frame_stack)
    if params.n_envs < 1:
        raise ValueError(f"n_envs must be >= 1, got {params.n_envs}")
    check_model_kwargs(algo, values)
    params.model_kwargs = values
    return params


def check_model_kwargs(algo: str, kwargs: dict[str, Any]) -> None:
    """Raise a ValueError naming any key the algorithm's constructor does not take."""
    accepted = set(inspect.signature(algorithm_class(algo).__init__).parameters) - {"self", "policy", "env"}
    accepted |= {"noise_type", "noise_std"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise ValueError(
            f"{algo.upper()} has no hyperparameter {', '.join(unknown)}: see the "
            f"{algorithm_class(algo).__name__} documentation of Stable-Baselines3 for the accepted names"
        )


def algorithm_class(algo: str) -> type:
    """The SB3 (or sb3-contrib, for TRPO) algorithm class."""
    if algo == "trpo":
        from sb3_contrib import TRPO

        return TRPO
    import stable_baselines3

    return getattr(stable_baselines3, algo.upper())


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are Python literals, ``dict(...)``, or plain strings.

    Example:
        >>> parse_overrides(["n_steps=256", "learning_rate=lin_1e-3", "policy_kwargs=dict(net_arch=[64])"])
        {'n_steps': 256, 'learning_rate': 'lin_1e-3', 'policy_kwargs': {'net_arch': [64]}}
    """
    parsed: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ValueError(f"expected key=value, got {item!r} (e.g. n_steps=256)")
        parsed[key] = parse_value(text.strip())
    return parsed


def parse_value(text: str) -> Any:
    """A literal (``3``, ``1e-3``, ``True``, ``[64, 64]``), ``dict(a=1)``, ``nn.ReLU``, or the text itself."""
    try:
        return _literal(ast.parse(text, mode="eval").body)
    except (SyntaxError, ValueError):
        return text


def _literal(node: ast.expr) -> Any:
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "dict"
        and not node.args
    ):
        return {kw.arg: _literal(kw.value) for kw in node.keywords if kw.arg is not None}
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "nn":
        return f"nn.{node.attr}"
    if isinstance(node, ast.Name) and node.id in ("true", "false"):
        return node.id == "true"
    if isinstance(node, ast.List | ast.Tuple):
        values = [_literal(element) for element in node.elts]
        return values if isinstance(node, ast.List) else tuple(values)
    if isinstance(node, ast.Dict):
        return {
            _literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True) if k is not None
        }
    return ast.literal_eval(node)


def model_arguments(kwargs: dict[str, Any], action_space: Any) -> dict[str, Any]:
    """Turn zoo notation into constructor arguments: schedules, action noise, activation classes."""
    from torch import nn

    result = copy.deepcopy(kwargs)
    for key, value in list(result.items()):
        if isinstance(value, str) and value.startswith("lin_"):
            result[key] = linear_schedule(float(value[4:]))
    noise_type = result.pop("noise_type", None)
    noise_std = float(result.pop("noise_std", 0.1))
    if noise_type is not None:
        from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

        size = int(np.prod(action_space.shape))
        noise_class = {"normal": NormalActionNoise, "ornstein-uhlenbeck": OrnsteinUhlenbeckActionNoise}.get(
            noise_type
        )
        if noise_class is None:
            raise ValueError(f"noise_type must be 'normal' or 'ornstein-uhlenbeck', got {noise_type!r}")
        result["action_noise"] = noise_class(mean=np.zeros(size), sigma=noise_std * np.ones(size))
    policy_kwargs = result.get("policy_kwargs")
    if isinstance(policy_kwargs, dict):
        activation = policy_kwargs.get("activation_fn")
        if isinstance(activation, str):
            name = activation.removeprefix("nn.")
            if not isinstance(getattr(nn, name, None), type):
                raise ValueError(f"activation_fn {activation!r} is not a torch.nn class (e.g. nn.ReLU)")
            policy_kwargs["activation_fn"] = getattr(nn, name)
        if policy_kwargs.get("optimizer_class") == "RMSpropTFLike":
            from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike

            policy_kwargs["optimizer_class"] = RMSpropTFLike
    return result


def linear_schedule(initial: float) -> Any:
    """``progress_remaining -> progress_remaining * initial`` (SB3 calls it with 1 → 0)."""

    def schedule(progress_remaining: float) -> float:
        return progress_remaining * initial

    return schedule
