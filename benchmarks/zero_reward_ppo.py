"""Plain SB3 PPO with every reward replaced by 0, no prefwrap at all: what the zero-label control does
by itself on a task with early termination.

prefwrap's zero-label arm gets a reward of exactly 0 (nothing is fitted without labels), so any
learning it shows comes from the algorithm and the env's terminations, not from a leak in prefwrap.
This script shows the same run without prefwrap: deterministic true return every ``--every`` steps.

Example:
    python benchmarks/zero_reward_ppo.py --env Hopper-v5 --seeds 0 1 --steps 300000
"""

from __future__ import annotations

import argparse
import json

import gymnasium as gym


class ZeroReward(gym.RewardWrapper):
    """Reward 0 on every step."""

    def reward(self, reward: float) -> float:
        return 0.0


def run(env_id: str, seed: int, steps: int, every: int, episodes: int) -> list[tuple[int, float]]:
    """``(timestep, mean deterministic true return)`` before training and after every ``every`` steps."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy

    torch.set_num_threads(1)
    model = PPO("MlpPolicy", make_vec_env(env_id, n_envs=4, seed=seed, wrapper_class=ZeroReward), seed=seed)
    curve = []
    while True:
        eval_env = make_vec_env(env_id, n_envs=1, seed=10_000 + seed)
        curve.append(
            (model.num_timesteps, float(evaluate_policy(model, eval_env, n_eval_episodes=episodes)[0]))
        )
        if model.num_timesteps >= steps:
            return curve
        model.learn(every, reset_num_timesteps=False)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="Hopper-v5")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--steps", type=int, default=300_000)
    parser.add_argument("--every", type=int, default=60_000)
    parser.add_argument("--episodes", type=int, default=5)
    args = parser.parse_args()
    for seed in args.seeds:
        print(
            json.dumps(
                {
                    "env": args.env,
                    "seed": seed,
                    "curve": run(args.env, seed, args.steps, args.every, args.episodes),
                }
            )
        )


if __name__ == "__main__":
    main()
