"""Rankings and demonstrations vs pairs, at equal human effort, with a synthetic teacher.

Arms (PPO with the zoo's settings for the task, ``SyntheticOracle()`` = B-Pref's rational teacher;
every arm through :func:`harness.run_arm`, so all share one training loop and evaluation):

- ``pairs``: the paper's pairs, ``--labels`` judgements;
- ``K3``, ``K4``: rankings of 3 or 4 segments (``query_size``), ``--labels`` judgements;
- ``K4-half``: rankings of 4 with half the judgements (the target: the pairs' return with
  <= 50 % of the judgements);
- ``pairs-half``: pairs with half the judgements;
- ``pairs-half+demos``: pairs with half the judgements plus 5 expert episodes as demonstrations
  (from a PPO policy trained on the true reward in this script), with the library's default demo
  settings; ``pairs-half+demos-w0.5``: the same with ``demo_weight=0.5``;
- ``true``: PPO on the true reward (the normaliser: score = (R - random) / (R_true - random)).

**Effort.** A judgement is one answer (a pair or a ranking). Modelled seconds per judgement:
``t(K) = K * clip_s + hick_s * log2(K!) + response_s``: watching each of the ``K`` clips once
(``clip_s = 1.5`` s, prefwrap's segment length on Pendulum, docs/concepts.md), a decision time that
grows with the information of the answer, ``log2(K!)`` bits for a full ranking, by the Hick-Hyman law
(Hick 1952, "On the rate of gain of information"; Hyman 1953) at ``hick_s = 0.5`` s/bit, and
``response_s = 1`` s to give it. The constants are assumptions, not measurements: t(2) = 4.5 s,
t(3) = 6.8 s, t(4) = 9.3 s. Demonstrations are counted as free (the user already has them).

Demonstrations are recorded as raw observations, as the reward model sees them below the zoo's
VecNormalize (``harness.wrap_top``); a task normalising observations below the wrapper
(``normalize: "obs"``) is refused.

Examples::

    python benchmarks/rankings.py --seeds 0 1 2 3 4 --steps 30000 --labels 100 --workers 2
    python benchmarks/rankings.py --env HalfCheetah-v5 --seeds 0 1 2 --steps 100000 --labels 200 \\
        --arms true pairs K4 K4-half pairs-half --workers 2
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np
from harness import (
    add_sweep_arguments,
    fmt_spread,
    jobs_at_once,
    make_job,
    markdown_table,
    mean_std,
    normalised_score,
    ppo_config,
    random_return,
    report_header,
    run_dir,
    run_jobs,
    snapshot_prefwrap,
)

CLIP_S, HICK_S, RESPONSE_S = 1.5, 0.5, 1.0
ARMS = ("true", "pairs", "K3", "K4", "K4-half", "pairs-half", "pairs-half+demos", "pairs-half+demos-w0.5")


def seconds_per_judgement(k: int) -> float:
    """Modelled seconds a person needs for one answer to a query of ``k`` segments (see the module)."""
    return k * CLIP_S + HICK_S * math.log2(math.factorial(k)) + RESPONSE_S


def train_expert(env_id: str, steps: int, out: Path, n_episodes: int = 5) -> tuple[float, Path]:
    """PPO on the true reward; returns its mean return over ``n_episodes`` and the demonstrations file.

    With the zoo's ``normalize: true`` the expert trains under VecNormalize, as the true arm does, and
    acts on normalised observations, while the file records the raw ones: the reward model sits
    below that VecNormalize (``harness.wrap_top``) and sees raw observations.

    Raises:
        SystemExit: The task's settings normalise observations below the reward wrapper
            (``normalize: "obs"``): the expert's frozen statistics would not match the run's.
    """
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    from prefwrap.cli.hyperparams import HyperParams
    from prefwrap.demonstrations import Trajectory, save_demonstrations

    config = ppo_config(env_id)
    normalize = config.pop("normalize")
    if normalize not in (False, True):
        raise SystemExit(
            f"demonstration arms need raw observations below the wrapper; {env_id} has {normalize!r}"
        )
    torch.set_num_threads(1)
    venv = make_vec_env(env_id, n_envs=config.pop("n_envs"), seed=100)
    if normalize:
        venv = VecNormalize(venv, gamma=config.get("gamma", 0.99))
    kwargs = HyperParams(model_kwargs=config).algorithm_kwargs(venv.action_space)
    model = PPO("MlpPolicy", venv, seed=100, device="cpu", **kwargs)
    model.learn(steps)
    env = gym.make(env_id)
    trajectories, returns = [], []
    for episode in range(n_episodes):
        obs, _ = env.reset(seed=1000 + episode)
        observations, actions, rewards, done = [], [], [], False
        while not done:
            seen = venv.normalize_obs(obs) if normalize else obs
            action, _ = model.predict(seen, deterministic=True)
            observations.append(obs)
            actions.append(action)
            obs, reward, terminated, truncated, _ = env.step(action)
            rewards.append(reward)
            done = terminated or truncated
        trajectories.append(Trajectory(np.array(observations), np.array(actions), np.array(rewards)))
        returns.append(sum(rewards))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "demos.npz"
    save_demonstrations(path, trajectories)
    return float(np.mean(returns)), path


def arm_job(arm: str, args: argparse.Namespace, seed: int, demos: Path | None) -> dict[str, Any]:
    """The harness job of one arm and seed."""
    if arm == "true":
        return make_job(args.env, arm, seed, args.steps)
    k = 4 if arm.startswith("K4") else 3 if arm.startswith("K3") else 2
    labels = args.labels // 2 if "half" in arm else args.labels
    learner: dict[str, Any] = {"query_size": k}
    if "demos" in arm:
        learner["demonstrations"] = str(demos)
    if arm.endswith("demos-w0.5"):
        learner["demo_weight"] = 0.5
    return make_job(args.env, arm, seed, args.steps, kind="rlhf", labels=labels, learner_kwargs=learner)


def report(args: argparse.Namespace, arms: list[str], results: list[dict[str, Any]], low: float) -> str:
    """The markdown table: judgements, modelled seconds, return, score and score ÷ the pairs'."""
    returns = {arm: [r["return"] for r in results if r["arm"] == arm] for arm in arms}
    true_mean = mean_std(returns["true"])[0] if "true" in returns else float("nan")
    scores = {arm: normalised_score(mean_std(v)[0], low, true_mean) for arm, v in returns.items()}
    rows = []
    for arm in arms:
        k = 4 if arm.startswith("K4") else 3 if arm.startswith("K3") else 2
        judgements = np.mean([r.get("labels", 0) for r in results if r["arm"] == arm])
        ratio = scores[arm] / scores["pairs"] if "pairs" in scores else float("nan")
        rows.append(
            [
                arm,
                f"{judgements:.0f}",
                f"{judgements * seconds_per_judgement(k):.0f}",
                fmt_spread(*mean_std(returns[arm])),
                f"{scores[arm]:.2f}",
                f"{ratio:.2f}",
            ]
        )
    header = ["arm", "judgements", "modelled human s", "true return (mean ± std)", "score", "score ÷ pairs'"]
    return (
        f"{report_header(f'Rankings and demonstrations, {args.env}', jobs_at_once(args))}\n"
        f"PPO {args.steps} steps, seeds {args.seeds}, random policy {low:.1f}; "
        f"score = (R - random) / (R_true - random)\n\n{markdown_table(header, rows)}\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=30_000)
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--expert-steps", type=int, default=60_000)
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--resume", action="store_true", help="skip jobs already in the results file")
    add_sweep_arguments(parser)
    args = parser.parse_args()
    snapshot_prefwrap()  # before the expert imports prefwrap: the jobs and the expert run one copy
    demos = None
    if any("demos" in arm for arm in args.arms):
        # a fixed path: --resume finds the jobs of a run by their arguments, the file's name included
        expert_return, demos = train_expert(args.env, args.expert_steps, run_dir(f"demos-{args.env}"))
        print(f"expert (PPO {args.expert_steps} steps, true reward): {expert_return:.1f}", flush=True)
    jobs = [arm_job(arm, args, seed, demos) for arm in args.arms for seed in args.seeds]
    out = run_dir(f"rankings-{args.env}.jsonl")
    results = run_jobs(jobs, args.workers, out, args.resume, address=args.address)
    low = random_return(args.env, {}, 20)
    print("\n" + report(args, args.arms, results, low))


if __name__ == "__main__":
    main()
