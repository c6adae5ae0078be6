"""RLHF vs true-reward training, side by side: same algorithm, env, seeds and steps.

For each seed it trains (1) the algorithm on the true reward and (2) the same algorithm through
PreferenceRewardWrapper + PreferenceCallback with a SyntheticOracle and a label budget, then
evaluates both on the true reward. It prints per-arm means and the ratios RLHF ÷ true-reward
(return and wall-clock), and a normalised score (R_rlhf - R_random) / (R_true - R_random), which is
the meaningful ratio for envs with negative returns such as Pendulum.

Examples:
    python benchmarks/rlhf_vs_true.py --env Pendulum-v1 --steps 50000 --labels 200 --seeds 0 1 2 3 4
    python benchmarks/rlhf_vs_true.py --env HalfCheetah-v5 --steps 1000000 --labels 700 --seeds 0 1 2
    python benchmarks/rlhf_vs_true.py --env Hopper-v5 --env-kwargs terminate_when_unhealthy=False
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

PPO_ZOO: dict[str, dict[str, Any]] = {
    "Pendulum-v1": dict(
        n_envs=4,
        n_steps=1024,
        gae_lambda=0.95,
        gamma=0.9,
        n_epochs=10,
        ent_coef=0.0,
        learning_rate=1e-3,
        clip_range=0.2,
        use_sde=True,
        sde_sample_freq=4,
    ),
    "HalfCheetah-v5": dict(
        n_envs=1,
        normalize=True,
        n_steps=512,
        batch_size=64,
        gamma=0.98,
        learning_rate=2.0633e-05,
        ent_coef=0.000401762,
        clip_range=0.1,
        n_epochs=20,
        gae_lambda=0.92,
        max_grad_norm=0.8,
        vf_coef=0.58096,
        policy_kwargs=dict(log_std_init=-2, ortho_init=False, net_arch=dict(pi=[256, 256], vf=[256, 256])),
    ),
    "Hopper-v5": dict(
        n_envs=1,
        normalize=True,
        n_steps=512,
        batch_size=32,
        gamma=0.999,
        learning_rate=9.80828e-05,
        ent_coef=0.00229519,
        clip_range=0.2,
        n_epochs=5,
        gae_lambda=0.99,
        max_grad_norm=0.7,
        vf_coef=0.835671,
        policy_kwargs=dict(log_std_init=-2, ortho_init=False, net_arch=dict(pi=[256, 256], vf=[256, 256])),
    ),
}
DEFAULT_PPO = dict(n_envs=4)


def parse_kwargs(items: list[str]) -> dict[str, Any]:
    parsed = {}
    for item in items:
        key, value = item.split("=", 1)
        try:
            parsed[key] = json.loads(value.lower() if value in ("True", "False") else value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


def run_arm(arm: str, args: argparse.Namespace, seed: int) -> dict[str, float]:
    """Train one arm for one seed; returns its evaluated true return and wall-clock seconds."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecNormalize

    from prefwrap import DecayingSchedule, PreferenceCallback, PreferenceRewardWrapper, SyntheticOracle

    torch.set_num_threads(1)
    env_kwargs = parse_kwargs(args.env_kwargs)
    config = dict(PPO_ZOO.get(args.env, DEFAULT_PPO))
    n_envs = config.pop("n_envs")
    normalize = config.pop("normalize", False)
    venv = make_vec_env(args.env, n_envs=n_envs, seed=seed, env_kwargs=env_kwargs)
    callback = None
    if arm == "rlhf":
        venv = PreferenceRewardWrapper(venv)
        learner_kwargs = parse_kwargs(args.learner_kwargs)
        if args.decay_timesteps:
            learner_kwargs["schedule"] = DecayingSchedule(args.labels, decay_timesteps=args.decay_timesteps)
        callback = PreferenceCallback(
            venv, oracle=SyntheticOracle(seed=seed), total_labels=args.labels, seed=seed, **learner_kwargs
        )
    if normalize:  # zoo's VecNormalize; rewards normalised for both arms alike
        venv = VecNormalize(venv, gamma=config.get("gamma", 0.99))
    model = PPO("MlpPolicy", venv, seed=seed, device="cpu", **config)
    start = time.perf_counter()
    model.learn(args.steps, callback=callback)
    seconds = time.perf_counter() - start
    eval_env = make_vec_env(args.env, n_envs=1, seed=10_000 + seed, env_kwargs=env_kwargs)
    if normalize:
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
        eval_env.obs_rms = venv.obs_rms
    mean_return, _ = evaluate_policy(model, eval_env, n_eval_episodes=args.eval_episodes)
    result = {"arm": arm, "seed": seed, "return": float(mean_return), "seconds": seconds}
    if callback is not None:
        result["labels"] = callback.learner.n_labels
        result["val_accuracy"] = (
            callback.learner.last_fit.validation_accuracy if callback.learner.last_fit else float("nan")
        )
    print(json.dumps(result), flush=True)
    return result


def random_return(args: argparse.Namespace) -> float:
    import gymnasium as gym

    env = gym.make(args.env, **parse_kwargs(args.env_kwargs))
    returns = []
    for episode in range(args.eval_episodes):
        env.reset(seed=20_000 + episode)
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
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument(
        "--env-kwargs", nargs="*", default=[], help="key=value, e.g. terminate_when_unhealthy=False"
    )
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--labels", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--decay-timesteps", type=float, default=None, help="override the schedule's c")
    parser.add_argument(
        "--learner-kwargs", nargs="*", default=[], help="key=value passed to PreferenceCallback"
    )
    parser.add_argument("--arms", nargs="+", default=["true", "rlhf"], choices=["true", "rlhf"])
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()

    jobs = [(arm, seed) for seed in args.seeds for arm in args.arms]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(run_arm, [a for a, _ in jobs], [args] * len(jobs), [s for _, s in jobs]))
    baseline = random_return(args)
    by_arm = {arm: [r for r in results if r["arm"] == arm] for arm in args.arms}
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    print(f"\n## {args.env}: {args.steps} steps, {args.labels} labels, seeds {args.seeds}")
    print(f"command: python {' '.join(sys.argv)}")
    print(
        f"commit {commit}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.workers} workers\n"
    )
    print("| arm | mean return | std | mean wall-clock s |")
    print("|---|---|---|---|")
    for arm, rows in by_arm.items():
        returns = [r["return"] for r in rows]
        print(
            f"| {arm} | {np.mean(returns):.1f} | {np.std(returns):.1f} | {np.mean([r['seconds'] for r in rows]):.1f} |"
        )
    print(f"| random policy | {baseline:.1f} | | |")
    if set(by_arm) == {"true", "rlhf"}:
        true_mean = np.mean([r["return"] for r in by_arm["true"]])
        rlhf_mean = np.mean([r["return"] for r in by_arm["rlhf"]])
        time_ratio = np.mean([r["seconds"] for r in by_arm["rlhf"]]) / np.mean(
            [r["seconds"] for r in by_arm["true"]]
        )
        print(f"\nreturn ratio RLHF ÷ true: {rlhf_mean / true_mean:.3f}")
        print(
            f"normalised score (RLHF - random) ÷ (true - random): {(rlhf_mean - baseline) / (true_mean - baseline):.3f}"
        )
        print(f"wall-clock ratio RLHF ÷ true: {time_ratio:.3f} (steps/s ratio {1 / time_ratio:.3f})")


if __name__ == "__main__":
    main()
