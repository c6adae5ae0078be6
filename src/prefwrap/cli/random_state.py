"""The random state a checkpoint keeps so that a resumed run draws what the uninterrupted run would.

Three kinds, each saved as plain types and tensors (``torch.load(weights_only=True)``, never pickle):

- the process-wide generators: torch's (CPU, and CUDA once initialised), NumPy's legacy global one
  (SB3 shuffles minibatches with it) and Python's ``random``;
- the model's own: its action space's generator (random actions before ``learning_starts``) and, with
  gSDE, the exploration matrices the policy samples its noise with;
- each training env's ``np_random``, taken just before the last step of a rollout: when that step ends
  every episode, replaying the envs' resets from it gives the very episodes the run went on with.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.distributions import StateDependentNoiseDistribution
from stable_baselines3.common.vec_env import VecEnv

BIT_GENERATORS = ("PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64")
"""NumPy bit generators a saved generator state may name."""

SDE_MATRICES = ("exploration_mat", "exploration_matrices")
"""The tensors a gSDE distribution samples its exploration noise from (not in the policy's weights)."""


def generator_from_state(state: dict[str, Any]) -> np.random.Generator:
    """A NumPy generator in ``state`` (a ``bit_generator.state`` dict).

    Raises:
        ValueError: ``state`` names an unknown bit generator.
    """
    name = state.get("bit_generator")
    if name not in BIT_GENERATORS:
        raise ValueError(f"saved generator state names an unknown bit generator {name!r}")
    bits = getattr(np.random, name)()
    bits.state = state
    return np.random.Generator(bits)


def global_generators() -> dict[str, Any]:
    """The states of torch's, NumPy's global and Python's generators."""
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),  # uint32 (624,): int64 loads everywhere
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_global_generators(state: dict[str, Any]) -> None:
    """Set torch's, NumPy's global and Python's generators to :func:`global_generators`'s ``state``
    (CUDA's too when it was saved and as many GPUs are visible)."""
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy["keys"].numpy().astype(np.uint32),
            numpy["position"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss_next"]))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def _sde_distributions(model: BaseAlgorithm) -> dict[str, StateDependentNoiseDistribution]:
    """The policy's gSDE distributions by module name (``""``: the policy's own, ``"actor"``: SAC's)."""
    return {
        name: module.action_dist
        for name, module in model.policy.named_modules()
        if isinstance(getattr(module, "action_dist", None), StateDependentNoiseDistribution)
    }


def model_generators(model: BaseAlgorithm) -> dict[str, Any]:
    """The state of ``model``'s action-space generator and its gSDE exploration matrices, if any."""
    sde = {
        name: {key: getattr(dist, key).detach().cpu().clone() for key in SDE_MATRICES}
        for name, dist in _sde_distributions(model).items()
        if all(hasattr(dist, key) for key in SDE_MATRICES)  # set by the first reset_noise
    }
    return {"action_space": model.action_space.np_random.bit_generator.state, "sde": sde}


def restore_model_generators(model: BaseAlgorithm, state: dict[str, Any]) -> None:
    """Set ``model``'s action-space generator and gSDE matrices to :func:`model_generators`'s ``state``."""
    model.action_space.np_random.bit_generator.state = state["action_space"]
    distributions = _sde_distributions(model)
    for name, matrices in state["sde"].items():
        if name in distributions:
            for key, value in matrices.items():
                setattr(distributions[name], key, value.to(model.device))


def env_generators(venv: VecEnv) -> list[dict[str, Any]]:
    """Each sub-env's ``np_random`` state (one ``bit_generator.state`` dict per env)."""
    return [generator.bit_generator.state for generator in venv.get_attr("np_random")]


def replay_resets(venv: VecEnv, generators: list[dict[str, Any]]) -> Any:
    """Reset every sub-env from the saved states of its generator; returns ``venv.reset()``'s observations.

    A first reset uses up the seeds ``make_vec_env`` gave the envs (a seeded reset would replace the
    generators); the second draws each env's initial state from its restored generator.

    Raises:
        ValueError: ``generators`` does not hold one state per sub-env.
    """
    if len(generators) != venv.num_envs:
        raise ValueError(f"saved generators of {len(generators)} envs for {venv.num_envs} envs")
    venv.reset()
    for index, state in enumerate(generators):
        venv.set_attr("np_random", generator_from_state(state), indices=[index])
    return venv.reset()
