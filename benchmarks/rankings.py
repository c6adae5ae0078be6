"""Rankings and demonstrations vs pairs, at equal human effort, on Pendulum-v1 with a synthetic teacher.

Arms (PPO, the zoo's Pendulum hyperparameters, ``SyntheticOracle()`` = B-Pref's rational teacher):

- ``pairs-N``: the paper's pairs, ``N`` judgements;
- ``K3-N``, ``K4-N``: rankings of 3 or 4 segments (``query_size``), ``N`` judgements;
- ``K4-N/2``: rankings of 4 with half the judgements (the issue's target: the pairs' return with
  <= 50 % of the judgements);
- ``pairs-N/2+demos``: pairs with half the judgements plus 5 expert episodes as demonstrations (from a
  PPO policy trained on the true reward in this script), against ``pairs-N`` without them and
  ``pairs-N/2`` (the same judgements without demonstrations).

**Effort.** A judgement is one answer (a pair or a ranking). Modelled seconds per judgement:
``t(K) = K * clip_s + hick_s * log2(K!) + response_s``: watching each of the ``K`` clips once
(``clip_s = 1.5`` s, prefwrap's segment length on Pendulum, docs/concepts.md), a decision time that
grows with the information of the answer, ``log2(K!)`` bits for a full ranking, by the Hick-Hyman law
(Hick 1952, "On the rate of gain of information"; Hyman 1953) at ``hick_s = 0.5`` s/bit, and
``response_s = 1`` s to give it. The constants are assumptions, not measurements: t(2) = 4.5 s,
t(3) = 6.8 s, t(4) = 9.3 s. Demonstrations are counted as free (the user already has them).

Example (the small budget, ~15 min on 2 cores)::

    python benchmarks/rankings.py --seeds 0 1 2 --steps 30000 --labels 100 --workers 2
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ENV_ID = "Pendulum-v1"
PPO_KWARGS: dict[str, Any] = dict(
    n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10, ent_coef=0.0, learning_rate=1e-3,
    clip_range=0.2, use_sde=True, sde_sample_freq=4,
)  # fmt: skip
N_ENVS = 4
CLIP_S, HICK_S, RESPONSE_S = 1.5, 0.5, 1.0


def seconds_per_judgement(k: int) -> float:
    """Modelled seconds a person needs for one answer to a query of ``k`` segments (see the module)."""
    return k * CLIP_S + HICK_S * math.log2(math.factorial(k)) + RESPONSE_S


def train_expert(steps: int, out: Path, n_episodes: int = 5) -> tuple[float, Path]:
    """PPO on the true reward; returns its mean return over ``n_episodes`` and the demonstrations file."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    from prefwrap.demonstrations import Trajectory, save_demonstrations

    torch.set_num_threads(1)
    model = PPO("MlpPolicy", make_vec_env(ENV_ID, n_envs=N_ENVS, seed=100), seed=100, **PPO_KWARGS)
    model.learn(steps)
    import gymnasium as gym

    env = gym.make(ENV_ID)
    trajectories, returns = [], []
    for episode in range(n_episodes):
        obs, _ = env.reset(seed=1000 + episode)
        observations, actions, rewards, done = [], [], [], False
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            observations.append(obs)
            actions.append(action)
            obs, reward, terminated, truncated, _ = env.step(action)
            rewards.append(reward)
            done = terminated or truncated
        trajectories.append(Trajectory(np.array(observations), np.array(actions), np.array(rewards)))
        returns.append(sum(rewards))
    path = out / "pendulum_demos.npz"
    save_demonstrations(path, trajectories)
    return float(np.mean(returns)), path


def run_arm(job: dict[str, Any]) -> dict[str, Any]:
    """Train one arm with one seed; returns the final true return (10 deterministic episodes)."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    from prefwrap import PreferenceCallback, PreferenceRewardWrapper, SyntheticOracle

    torch.set_num_threads(1)
    start = time.perf_counter()
    venv = PreferenceRewardWrapper(make_vec_env(ENV_ID, n_envs=N_ENVS, seed=job["seed"]))
    callback = PreferenceCallback(
        venv,
        SyntheticOracle(seed=job["seed"]),
        job["labels"],
        query_size=job["k"],
        demonstrations=job.get("demos"),
        seed=job["seed"],
    )
    model = PPO("MlpPolicy", venv, seed=job["seed"], **PPO_KWARGS)
    model.learn(job["steps"], callback=callback)
    eval_env = make_vec_env(ENV_ID, n_envs=1, seed=10_000 + job["seed"])
    mean_return, _ = evaluate_policy(model, eval_env, n_eval_episodes=10, deterministic=True)
    return {
        **job,
        "return": float(mean_return),
        "judgements": callback.learner.n_labels,
        "demo_labels": callback.learner.n_demo_labels,
        "seconds": time.perf_counter() - start,
    }


def random_return(n_episodes: int = 10) -> float:
    import gymnasium as gym

    env = gym.make(ENV_ID)
    returns = []
    for episode in range(n_episodes):
        env.reset(seed=2000 + episode)
        env.action_space.seed(episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--expert-steps", type=int, default=60_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--arms", nargs="+", help="only these arms (default: all)")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="prefwrap-rankings-"))
    n, half = args.labels, args.labels // 2
    expert_return, demos = train_expert(args.expert_steps, out)
    arms = [("pairs", 2, n, None), ("K3", 3, n, None), ("K4", 4, n, None), ("K4-half", 4, half, None)]
    arms += [("pairs-half", 2, half, None), ("pairs-half+demos", 2, half, str(demos))]
    arms = [arm for arm in arms if not args.arms or arm[0] in args.arms]
    jobs = [
        {"arm": arm, "k": k, "labels": labels, "demos": d, "seed": seed, "steps": args.steps}
        for arm, k, labels, d in arms
        for seed in args.seeds
    ]
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        results = pool.map(run_arm, jobs, chunksize=1)
    low = random_return()
    print(
        f"\n{ENV_ID}, PPO {args.steps} steps, seeds {args.seeds}; expert (PPO {args.expert_steps} steps, true"
    )
    print(f"reward) {expert_return:.1f}, random policy {low:.1f}; score = (R - random) / (expert - random)\n")
    print("| arm | judgements | modelled human s | true return (mean ± std) | score | score ÷ pairs' |")
    print("| --- | --- | --- | --- | --- | --- |")
    returns = {arm: np.array([r["return"] for r in results if r["arm"] == arm]) for arm, *_ in arms}
    scores = {arm: (values.mean() - low) / (expert_return - low) for arm, values in returns.items()}
    for arm, k, _labels, _ in arms:
        judgements = np.mean([r["judgements"] for r in results if r["arm"] == arm])
        ratio = scores[arm] / scores["pairs"] if "pairs" in scores else float("nan")
        print(
            f"| {arm} | {judgements:.0f} | {judgements * seconds_per_judgement(k):.0f} | "
            f"{returns[arm].mean():.1f} ± {returns[arm].std():.1f} | {scores[arm]:.2f} | {ratio:.2f} |"
        )
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\nper-run wall-clock s: {np.mean([r['seconds'] for r in results]):.0f}; demos file {demos}")


if __name__ == "__main__":
    main()
