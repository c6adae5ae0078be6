"""The imitation library's side of benchmarks/vs_imitation.py; runs inside benchmarks/.venv-imitation.

    benchmarks/.venv-imitation/bin/python benchmarks/imitation_side.py JOB_JSON RESULT_PATH

Trains PPO with ``imitation.algorithms.preference_comparisons`` (imitation 1.0.1) on one job built by
vs_imitation.py and writes the result as JSON to RESULT_PATH (imitation prints its own logs on
stdout). The preference-learning settings are those of imitation's own script
``imitation.scripts.train_preference_comparisons`` (its sacred defaults), built the same way that
script builds them; only the number of iterations is set from the step budget (see vs_imitation.py).
Env construction, PPO settings and evaluation come from harness.py, as for prefwrap.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from typing import Any

import numpy as np
from harness import evaluate, make_env

# imitation.scripts.config.train_preference_comparisons defaults + the reward ingredient's defaults.
IMITATION_DEFAULTS: dict[str, Any] = dict(
    fragment_length=100,
    transition_oversampling=1.0,
    initial_comparison_frac=0.1,
    initial_epoch_multiplier=200.0,  # PreferenceComparisons' default; the script does not change it
    exploration_frac=0.0,
    reward_epochs=3,
    query_schedule="hyperbolic",
    active_selection=False,
    active_selection_oversampling=2,
    uncertainty_on="logit",
    ensemble_size=None,  # None: one BasicRewardNet; N: imitation's reward_ensemble named config
)


def run_imitation(job: dict[str, Any]) -> dict[str, Any]:
    import torch
    from imitation.algorithms import preference_comparisons as pc
    from imitation.rewards import reward_nets
    from imitation.util import logger as imit_logger
    from imitation.util import networks
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecEnvWrapper

    class StepCounter(VecEnvWrapper):
        """Counts every environment step, including imitation's extra sampling for fragments."""

        def __init__(self, venv: Any) -> None:
            super().__init__(venv)
            self.steps = 0

        def reset(self) -> Any:
            return self.venv.reset()

        def step_wait(self) -> Any:
            self.steps += self.num_envs
            return self.venv.step_wait()

    torch.set_num_threads(1)
    settings = {**IMITATION_DEFAULTS, **job["imitation"]}
    seed = job["seed"]
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    config = dict(job["ppo"])
    n_envs = config.pop("n_envs")
    normalize = config.pop("normalize", False)
    if normalize is True:
        raise ValueError("imitation cannot put VecNormalize above its reward wrapper: use normalize='obs'")
    venv = StepCounter(make_env(job["env"], n_envs, seed, job["env_kwargs"], normalize))
    logger = imit_logger.configure(tempfile.mkdtemp(prefix="imitation-bench-"), ["log"])

    def member() -> reward_nets.RewardNet:
        base = reward_nets.BasicRewardNet(
            venv.observation_space, venv.action_space, normalize_input_layer=networks.RunningNorm
        )
        return reward_nets.NormalizedRewardNet(base, networks.RunningNorm)

    if settings["ensemble_size"]:
        reward_net: reward_nets.RewardNet = reward_nets.RewardEnsemble(
            venv.observation_space, venv.action_space, [member() for _ in range(settings["ensemble_size"])]
        )
        reward_net = reward_nets.AddSTDRewardWrapper(reward_net, default_alpha=0.0)
    else:
        reward_net = member()
    agent = PPO("MlpPolicy", venv, seed=seed, device="cpu", **config)
    trainer = pc.AgentTrainer(
        algorithm=agent,
        reward_fn=reward_net,
        venv=venv,
        rng=rng,
        exploration_frac=settings["exploration_frac"],
        custom_logger=logger,
    )
    fragmenter: pc.Fragmenter = pc.RandomFragmenter(warning_threshold=0, rng=rng, custom_logger=logger)
    preference_model = pc.PreferenceModel(model=reward_net)
    if settings["active_selection"]:
        fragmenter = pc.ActiveSelectionFragmenter(
            preference_model=preference_model,
            base_fragmenter=fragmenter,
            fragment_sample_factor=settings["active_selection_oversampling"],
            uncertainty_on=settings["uncertainty_on"],
            custom_logger=logger,
        )
    reward_trainer = pc._make_reward_trainer(
        preference_model, pc.CrossEntropyRewardLoss(), rng, {"epochs": settings["reward_epochs"]}
    )
    comparisons = pc.PreferenceComparisons(
        trainer,
        reward_net,
        num_iterations=job["num_iterations"],
        fragmenter=fragmenter,
        preference_gatherer=pc.SyntheticGatherer(rng=rng, custom_logger=logger),
        reward_trainer=reward_trainer,
        fragment_length=settings["fragment_length"],
        transition_oversampling=settings["transition_oversampling"],
        initial_comparison_frac=settings["initial_comparison_frac"],
        initial_epoch_multiplier=settings["initial_epoch_multiplier"],
        custom_logger=logger,
        allow_variable_horizon=False,
        query_schedule=settings["query_schedule"],
    )
    start = time.perf_counter()
    # imitation trains the agent num_iterations + 1 times (once after the initial comparisons too),
    # total_timesteps // num_iterations steps each: ask for num_iterations rollouts' worth per
    # iteration so that the agent trains exactly job["steps"] steps, as prefwrap's PPO does.
    per_iteration = job["steps"] // (job["num_iterations"] + 1)
    comparisons.train(per_iteration * job["num_iterations"], job["labels"])
    seconds = time.perf_counter() - start
    return {
        "env": job["env"],
        "arm": job["arm"],
        "seed": seed,
        "return": evaluate(agent, job["env"], job["env_kwargs"], seed, job["eval_episodes"], venv),
        "seconds": seconds,
        "steps": int(agent.num_timesteps),
        "env_steps": int(venv.steps),
        "labels": len(comparisons.dataset),
    }


if __name__ == "__main__":
    job = json.loads(sys.argv[1])
    result = run_imitation(job)
    with open(sys.argv[2], "w") as file:
        json.dump(result, file)
