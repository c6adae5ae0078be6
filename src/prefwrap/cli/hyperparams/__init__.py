"""rl-baselines3-zoo's tuned hyperparameters: the loader of the ``<algo>.yml`` files next to it.

The data files are the zoo's own ``hyperparams/<algo>.yml`` format, one block per env id (``atari``
for every Atari game), so a value can be checked against the zoo line by line. The zoo's notation:

- ``n_envs``, ``normalize`` (``VecNormalize``), ``frame_stack``, ``policy`` and ``n_timesteps`` say how
  to build the env and the model; every other key goes to the algorithm's constructor;
- ``lin_<x>``: a schedule decaying linearly from ``x`` to 0 (SB3's ``LinearSchedule``);
- ``policy_kwargs: "dict(...)"``: a string, as the zoo writes it, that may name ``nn.<Activation>`` or
  ``RMSpropTFLike``;
- ``noise_type``/``noise_std``: TD3's action noise.

``prefwrap train --hyperparams key=value`` overrides use the same notation (:func:`parse_value`), and
so do ``benchmarks/harness.py``, the examples and the tests, which all read these files through
:func:`zoo_table` or :func:`resolve`. An (algorithm, env) pair the zoo has not tuned gets the
algorithm's Stable-Baselines3 defaults.

Example:
    >>> params = resolve("ppo", "Pendulum-v1", atari=False)
    >>> params.n_envs, params.model_kwargs["gamma"]
    (4, 0.9)
    >>> resolve("ppo", "CartPole-v1", atari=False).algorithm_kwargs()["learning_rate"]
    LinearSchedule(start=0.001, end=0.0, end_fraction=1.0)
"""

from __future__ import annotations

import ast
import copy
import functools
import importlib.resources
import inspect
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from gymnasium import spaces
    from stable_baselines3.common.base_class import BaseAlgorithm

ALGOS = ("ppo", "a2c", "trpo", "sac", "td3", "dqn")
"""The algorithms ``prefwrap train --algo`` takes, each with its ``<algo>.yml``."""

ATARI = "atari"
"""Key of the settings shared by every Atari game."""

_BUILD_KEYS = ("n_envs", "normalize", "frame_stack", "policy", "n_timesteps")
_NOISE_KEYS = ("noise_type", "noise_std")


@functools.cache
def _read_table(algo: str) -> dict[str, dict[str, Any]]:
    text = importlib.resources.files(__name__).joinpath(f"{algo}.yml").read_text(encoding="utf-8")
    table = yaml.safe_load(text) or {}
    return {
        str(env_id): {key: parse_value(v) if isinstance(v, str) else v for key, v in values.items()}
        for env_id, values in table.items()
    }


def zoo_table(algo: str) -> dict[str, dict[str, Any]]:
    """Every entry of ``<algo>.yml``: env id (or ``"atari"``) -> its values, in zoo notation.

    String values are parsed as :func:`parse_value` parses ``--hyperparams`` (``"dict(...)"`` becomes a
    dict; ``lin_3e-4`` and ``nn.ReLU`` stay strings). The result is a fresh copy, free to change.

    Raises:
        ValueError: ``algo`` is not one of :data:`ALGOS`.
    """
    if algo not in ALGOS:
        raise ValueError(f"unknown algorithm {algo!r}: choose one of {', '.join(ALGOS)}")
    return copy.deepcopy(_read_table(algo))


@dataclass
class HyperParams:
    """Everything needed to build the env stack and the model of one run.

    Attributes:
        n_envs: Parallel environments.
        normalize: Wrap the env in ``VecNormalize`` (observations and rewards, as the zoo does).
        frame_stack: Frames stacked with ``VecFrameStack`` (0: none).
        policy: SB3 policy name.
        n_timesteps: Tuned training length in env steps (``None``: untuned).
        model_kwargs: Keyword arguments of the algorithm's constructor, still in zoo notation
            (:meth:`algorithm_kwargs` turns them into objects).
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

    def algorithm_kwargs(self, action_space: spaces.Space | None = None) -> dict[str, Any]:
        """:attr:`model_kwargs` as constructor arguments: schedules, action noise, torch classes.

        Args:
            action_space: The env's action space; needed only when the values ask for action noise.

        Raises:
            ValueError: An unknown ``noise_type``, noise without an ``action_space``, or an
                ``activation_fn`` that is not a ``torch.nn`` class.
        """
        from stable_baselines3.common.utils import LinearSchedule

        result = copy.deepcopy(self.model_kwargs)
        for key, value in list(result.items()):
            if isinstance(value, str) and value.startswith("lin_"):
                result[key] = LinearSchedule(start=float(value[4:]), end=0.0, end_fraction=1.0)
        noise = {key: result.pop(key) for key in _NOISE_KEYS if key in result}
        if noise.get("noise_type") is not None:
            result["action_noise"] = _action_noise(
                noise["noise_type"], noise.get("noise_std", 0.1), action_space
            )
        if isinstance(result.get("policy_kwargs"), dict):
            _policy_classes(result["policy_kwargs"])
        return result


def _action_noise(noise_type: str, noise_std: float, action_space: spaces.Space | None) -> Any:
    import numpy as np
    from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise

    noise_class = {"normal": NormalActionNoise, "ornstein-uhlenbeck": OrnsteinUhlenbeckActionNoise}.get(
        noise_type
    )
    if noise_class is None:
        raise ValueError(f"noise_type must be 'normal' or 'ornstein-uhlenbeck', got {noise_type!r}")
    if action_space is None or action_space.shape is None:
        raise ValueError(f"noise_type={noise_type!r} needs the env's (Box) action space")
    size = math.prod(action_space.shape)
    return noise_class(mean=np.zeros(size), sigma=float(noise_std) * np.ones(size))


def _policy_classes(policy_kwargs: dict[str, Any]) -> None:
    """Replace class names in ``policy_kwargs`` (``nn.ReLU``, ``RMSpropTFLike``) by the classes."""
    from torch import nn

    activation = policy_kwargs.get("activation_fn")
    if isinstance(activation, str):
        name = activation.removeprefix("nn.")
        if not isinstance(getattr(nn, name, None), type):
            raise ValueError(f"activation_fn {activation!r} is not a torch.nn class (e.g. nn.ReLU)")
        policy_kwargs["activation_fn"] = getattr(nn, name)
    if policy_kwargs.get("optimizer_class") == "RMSpropTFLike":
        from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike

        policy_kwargs["optimizer_class"] = RMSpropTFLike


def resolve(
    algo: str,
    env_id: str,
    *,
    atari: bool,
    overrides: dict[str, Any] | None = None,
    table: dict[str, Any] | None = None,
) -> HyperParams:
    """The zoo's values for ``(algo, env_id)`` (the ``atari`` block for Atari games), with ``overrides``.

    Args:
        algo: One of :data:`ALGOS`.
        env_id: Gymnasium id, matched exactly against the keys of ``<algo>.yml``.
        atari: Use the ``atari`` block (and a 4-frame ``CnnPolicy`` when the algorithm has none).
        overrides: Values in zoo notation that replace the tuned ones (``--hyperparams``).
        table: One zoo-format block to use instead of the built-in one (``--conf-file``), as the zoo
            replaces its files by ``-conf``'s.

    Raises:
        ValueError: Unknown algorithm, ``n_envs`` below 1, or an override the algorithm does not accept.
    """
    if table is None:
        table = zoo_table(algo).get(ATARI if atari else env_id)
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
    if params.n_timesteps is not None:
        params.n_timesteps = int(params.n_timesteps)  # the zoo writes it as a float (!!float 1e6)
    if params.n_envs < 1:
        raise ValueError(f"n_envs must be >= 1, got {params.n_envs}")
    check_model_kwargs(algo, values)
    params.model_kwargs = values
    return params


def check_model_kwargs(algo: str, kwargs: dict[str, Any]) -> None:
    """Check that the algorithm's constructor takes every key of ``kwargs``.

    Raises:
        ValueError: Names the keys it does not take.
    """
    cls = algorithm_class(algo)
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "policy", "env"}
    unknown = sorted(set(kwargs) - accepted - set(_NOISE_KEYS))
    if unknown:
        raise ValueError(
            f"{algo.upper()} has no hyperparameter {', '.join(unknown)}: see the "
            f"{cls.__name__} documentation of Stable-Baselines3 for the accepted names"
        )


def algorithm_class(algo: str) -> type[BaseAlgorithm]:
    """The SB3 (or sb3-contrib, for TRPO) algorithm class named ``algo`` (one of :data:`ALGOS`)."""
    if algo == "trpo":
        from sb3_contrib import TRPO

        return TRPO
    import stable_baselines3

    return getattr(stable_baselines3, algo.upper())


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are Python literals, ``dict(...)``, or plain strings.

    Raises:
        ValueError: An item is not ``key=value`` with an identifier as key.

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
    """A literal (``3``, ``1e-3``, ``True``, ``[64, 64]``), ``dict(a=1)``, or the text itself.

    Names stay text: ``nn.ReLU``, ``RMSpropTFLike``, ``lin_3e-4``, ``CnnPolicy``.

    Example:
        >>> parse_value("dict(activation_fn=nn.ReLU, net_arch=dict(pi=[64], vf=[64]))")
        {'activation_fn': 'nn.ReLU', 'net_arch': {'pi': [64], 'vf': [64]}}
    """
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
    if isinstance(node, ast.Name):
        return node.id == "true" if node.id in ("true", "false") else node.id
    if isinstance(node, ast.List | ast.Tuple):
        values = [_literal(element) for element in node.elts]
        return values if isinstance(node, ast.List) else tuple(values)
    if isinstance(node, ast.Dict):
        return {
            _literal(k): _literal(v) for k, v in zip(node.keys, node.values, strict=True) if k is not None
        }
    return ast.literal_eval(node)
