"""The wrapper's per-vector-step cost, for A/B runs of two source trees on a shared machine.

HalfCheetah-v5, DummyVecEnv, a fitted 3-member MLP 64x64 reward, one torch thread. Prints one JSON
line per run with, for each ``n_envs``:

- ``record``: ``_record_step`` called alone on one step's inputs, µs (median of 7 blocks of 2,000);
- ``overhead``: wrapped step minus plain env step, µs, from 50-step blocks alternating between two
  identical venvs (median over 60 block pairs, the order swapped every pair, so that load changes
  hit both);
- ``env``: the plain env step, µs (median of the same blocks);

and with ``--ppo-steps``, ``ppo_record``: ``_record_step`` µs per vector step timed inside a PPO run
(4 envs, ``n_steps=512``), the in-run figure of ``speed.py``'s throughput section.

Import prefwrap from the tree under test and alternate the trees, e.g.:

    for i in 1 2 3; do for src in /work/before/src /work/after/src; do
        PYTHONPATH=$src taskset -c 1 python benchmarks/per_step.py --ppo-steps 16384; done; done
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.env_util import make_vec_env

ENV = "HalfCheetah-v5"


def fitted_wrapper(n_envs: int, wrapper_class: type | None = None) -> Any:
    """A wrapper of ``n_envs`` HalfCheetah envs whose 3-member reward is marked fitted (random inputs)."""
    from prefwrap.wrapper import VecPreferenceRewardWrapper

    wrapper = (wrapper_class or VecPreferenceRewardWrapper)(
        make_vec_env(ENV, n_envs=n_envs, seed=0), n_members=3, seed=0
    )
    rng = np.random.default_rng(0)
    observations = rng.normal(size=(4096, 17)).astype(np.float32)
    wrapper.learned_reward.refresh(observations, rng.uniform(-1, 1, size=(4096, 6)).astype(np.float32))
    return wrapper


def per_call_us(function: Callable[[], object], repeats: int) -> float:
    function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats * 1e6


def step_costs(n_envs: int, pairs: int = 60, block: int = 50) -> dict[str, float]:
    """``record``, ``overhead`` and ``env`` µs for ``n_envs`` (see the module docstring)."""
    wrapper = fitted_wrapper(n_envs)
    wrapper.reset()
    rng = np.random.default_rng(0)
    observations = rng.normal(size=(n_envs, 17))
    actions = rng.uniform(-1, 1, size=(n_envs, 6)).astype(np.float32)
    rewards, dones = np.zeros(n_envs, np.float32), np.zeros(n_envs, bool)
    record = [
        per_call_us(lambda: wrapper._record_step(observations, actions, rewards, dones, None, None), 2000)
        for _ in range(7)
    ]
    venv = make_vec_env(ENV, n_envs=n_envs, seed=0)
    venv.reset()
    wrapper.reset()
    block_actions = np.random.default_rng(1).uniform(-1, 1, size=(block, n_envs, 6)).astype(np.float32)
    differences, env_us = [], []
    for pair in range(pairs):
        us = {}
        for env in (venv, wrapper) if pair % 2 else (wrapper, venv):
            start = time.perf_counter()
            for action in block_actions:
                env.step(action)
            us[env is wrapper] = (time.perf_counter() - start) / block * 1e6
        differences.append(us[True] - us[False])
        env_us.append(us[False])
    venv.close()
    wrapper.close()
    return {
        "record": float(np.median(record)),
        "overhead": float(np.median(differences)),
        "env": float(np.median(env_us)),
    }


def ppo_record_us(steps: int) -> float:
    """``_record_step`` µs per vector step inside ``PPO.learn(steps)`` on 4 envs (no callback)."""
    from stable_baselines3 import PPO

    from prefwrap.wrapper import VecPreferenceRewardWrapper

    class TimedWrapper(VecPreferenceRewardWrapper):
        seconds, calls = 0.0, 0

        def _record_step(self, *args: Any) -> Any:
            start = time.perf_counter()
            result = super()._record_step(*args)
            self.seconds += time.perf_counter() - start
            self.calls += 1
            return result

    wrapper = fitted_wrapper(4, TimedWrapper)
    PPO("MlpPolicy", wrapper, n_steps=512, seed=0, device="cpu").learn(steps)
    wrapper.close()
    return wrapper.seconds / wrapper.calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("n_envs", type=int, nargs="*", default=[1, 4, 16])
    parser.add_argument("--ppo-steps", type=int, default=0, help="also time _record_step in a PPO run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import prefwrap

    result: dict[str, Any] = {"prefwrap": prefwrap.__file__}
    result.update({str(n_envs): step_costs(n_envs) for n_envs in args.n_envs})
    if args.ppo_steps:
        result["ppo_record"] = ppo_record_us(args.ppo_steps)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
