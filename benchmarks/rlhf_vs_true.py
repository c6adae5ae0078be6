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
import sys

import numpy as np
from harness import (
    add_sweep_arguments,
    git_commit,
    jobs_at_once,
    machine,
    make_job,
    parse_kwargs,
    random_return,
    run_jobs,
)


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
    parser.add_argument(
        "--wrapper-kwargs", nargs="*", default=[], help="key=value passed to PreferenceRewardWrapper"
    )
    parser.add_argument("--arms", nargs="+", default=["true", "rlhf"], choices=["true", "rlhf"])
    add_sweep_arguments(parser)
    args = parser.parse_args()

    env_kwargs = parse_kwargs(args.env_kwargs)
    jobs = [
        make_job(
            args.env,
            arm,
            seed,
            args.steps,
            env_kwargs=env_kwargs,
            labels=args.labels,
            learner_kwargs=parse_kwargs(args.learner_kwargs),
            wrapper_kwargs=parse_kwargs(args.wrapper_kwargs),
            decay_timesteps=args.decay_timesteps,
            eval_episodes=args.eval_episodes,
        )
        for seed in args.seeds
        for arm in args.arms
    ]
    results = run_jobs(jobs, args.workers, address=args.address)
    baseline = random_return(args.env, env_kwargs, args.eval_episodes)
    by_arm = {arm: [r for r in results if r["arm"] == arm] for arm in args.arms}
    print(f"\n## {args.env}: {args.steps} steps, {args.labels} labels, seeds {args.seeds}")
    print(f"command: python {' '.join(sys.argv)}")
    at_once = jobs_at_once(args)
    where = f"{at_once} jobs at once" if at_once else f"Ray cluster {args.address}"
    print(f"commit {git_commit()}, {machine()}, {where}\n")
    print("| arm | mean return | std | mean wall-clock s |")
    print("|---|---|---|---|")
    for arm, rows in by_arm.items():
        returns, seconds = [r["return"] for r in rows], [r["seconds"] for r in rows]
        print(f"| {arm} | {np.mean(returns):.1f} | {np.std(returns):.1f} | {np.mean(seconds):.1f} |")
    print(f"| random policy | {baseline:.1f} | | |")
    if set(by_arm) == {"true", "rlhf"}:
        true_mean = np.mean([r["return"] for r in by_arm["true"]])
        rlhf_mean = np.mean([r["return"] for r in by_arm["rlhf"]])
        time_ratio = np.mean([r["seconds"] for r in by_arm["rlhf"]]) / np.mean(
            [r["seconds"] for r in by_arm["true"]]
        )
        print(f"\nreturn ratio RLHF ÷ true: {rlhf_mean / true_mean:.3f}")
        score = (rlhf_mean - baseline) / (true_mean - baseline)
        print(f"normalised score (RLHF - random) ÷ (true - random): {score:.3f}")
        print(f"wall-clock ratio RLHF ÷ true: {time_ratio:.3f} (steps/s ratio {1 / time_ratio:.3f})")


if __name__ == "__main__":
    main()
