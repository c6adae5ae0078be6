"""RLHF vs true reward on Atari (Pong, Breakout, Enduro): same algorithm, seeds and frames.

For each game and seed it trains A2C or PPO (rl-baselines3-zoo's Atari settings) twice on
``make_atari_env`` + ``VecFrameStack(4)``: on the (clipped) game reward, and through
``PreferenceRewardWrapper`` + ``PreferenceCallback`` with a ``SyntheticOracle`` answering from that
reward and the paper's Atari settings (:func:`prefwrap.presets.atari_preset`). It prints, as
markdown with the command line, the true game score of both arms (Monitor returns: whole games,
unclipped) and RLHF ÷ true, plus the normalised score (R_rlhf - R_random) / (R_true - R_random) with
the random-policy scores of Mnih et al. (2015).

Two scores, both on the real game score: the mean return of the last ``--last-episodes`` training
games (stochastic policy; or of ``--eval-episodes`` games on a separately seeded env), and the points
scored per 1,000 frames over the last quarter of training, which needs no finished game (an Enduro
game lasts ~13k frames, longer than a quick run gives each env).

Examples:
    python benchmarks/atari.py --quick                       # CPU, ~17 min: a smoke-level comparison
    python benchmarks/atari.py --device cuda --workers 3     # the paper: 10M frames, 5,500 labels
    python benchmarks/atari.py --device cuda --algo PPO --games Pong --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import numpy as np
from harness import git_commit, machine

RANDOM_SCORE = {"Pong": -20.7, "Breakout": 1.7, "Enduro": 0.0}  # Mnih et al. (2015), extended data table 2
FRAME_SKIP = 4


def game_points(venv: Any) -> float:
    """Unclipped points scored so far in all sub-envs (from their ``Monitor``, below the Atari wrappers)."""
    from stable_baselines3.common.monitor import Monitor

    total = 0.0
    for env in venv.unwrapped.envs:
        while not isinstance(env, Monitor):
            env = env.env
        total += sum(env.episode_returns) + sum(env.rewards)
    return total


def points_tracker(venv: Any, total_timesteps: int) -> Any:
    """A callback noting the points scored when the last quarter of training starts and at the end."""
    from stable_baselines3.common.callbacks import BaseCallback

    class PointsTracker(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.marks: list[tuple[int, float]] = []

        def _on_step(self) -> bool:
            if not self.marks and self.num_timesteps >= 0.75 * total_timesteps:
                self.marks.append((self.num_timesteps, game_points(venv)))
            return True

        def _on_training_end(self) -> None:
            self.marks.append((self.num_timesteps, game_points(venv)))

        def points_per_kiloframe(self) -> float:
            (t0, p0), (t1, p1) = self.marks[0], self.marks[-1]
            return (p1 - p0) / max(1, (t1 - t0) * FRAME_SKIP) * 1000

    return PointsTracker()


def run(job: dict[str, Any]) -> dict[str, Any]:
    """Train one arm for one seed; returns the scores and costs as a JSON-able dict."""
    import ale_py
    import gymnasium as gym
    import torch
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecFrameStack

    from prefwrap import PreferenceCallback, PreferenceRewardWrapper, SyntheticOracle
    from prefwrap.cli.hyperparams import resolve
    from prefwrap.presets import atari_preset

    gym.register_envs(ale_py)
    torch.set_num_threads(job["threads"])
    start = time.perf_counter()
    env_id, seed = f"ALE/{job['game']}-v5", job["seed"]
    params = resolve(job["algo"].lower(), env_id, atari=True)  # rl-baselines3-zoo's Atari settings
    env_kwargs = {"frameskip": 1}  # AtariWrapper skips 4 frames itself
    venv = make_atari_env(env_id, n_envs=params.n_envs, seed=seed, env_kwargs=env_kwargs)
    venv = VecFrameStack(venv, params.frame_stack)
    config = params.algorithm_kwargs(venv.action_space)
    callback = None
    if job["arm"] == "rlhf":
        preset = atari_preset(
            job["labels"],
            initial_labels=job["initial_labels"],
            decay_timesteps=job["decay_timesteps"],
            seed=seed,
        )
        venv = PreferenceRewardWrapper(
            venv, device=job["device"], segment_memory_mb=job["segment_memory_mb"], **preset.wrapper
        )
        callback = PreferenceCallback(
            venv, SyntheticOracle(seed=seed), **{**preset.learner, **job["learner_kwargs"]}
        )
    algo = {"A2C": A2C, "PPO": PPO}[job["algo"]]
    model = algo("CnnPolicy", venv, seed=seed, device=job["device"], **config)
    tracker = points_tracker(venv, job["frames"] // FRAME_SKIP)
    model.learn(job["frames"] // FRAME_SKIP, callback=[tracker] if callback is None else [callback, tracker])
    train_seconds = time.perf_counter() - start
    games = [float(info["r"]) for info in model.ep_info_buffer][-job["last_episodes"] :]
    result = {
        **{k: job[k] for k in ("game", "algo", "arm", "seed", "frames", "labels")},
        "train_return": float(np.mean(games)) if games else float("nan"),
        "train_games": len(games),
        "points_per_kiloframe": tracker.points_per_kiloframe(),
        "seconds": train_seconds,
    }
    if job["eval_episodes"]:
        eval_env = make_atari_env(env_id, n_envs=1, seed=seed + 1000, env_kwargs=env_kwargs)
        eval_env = VecFrameStack(eval_env, params.frame_stack)
        mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=job["eval_episodes"], deterministic=False)
        result["eval_return"] = float(mean)
    if callback is not None:
        fit = callback.learner.last_fit
        result["labels_answered"] = callback.learner.n_labels
        result["val_accuracy"] = None if fit is None else fit.validation_accuracy
        result["segments"] = venv.segments.describe()
    print(json.dumps(result), flush=True)
    return result


def ratio(numerator: float, denominator: float) -> str:
    return f"{numerator / denominator:.2f}" if abs(denominator) > 1e-6 else "n/a"


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    key = "eval_return" if args.eval_episodes else "train_return"
    rate = "points_per_kiloframe"
    print(f"\n## Atari, {args.algo}: {args.frames:,} frames, {args.labels} labels, seeds {args.seeds}")
    print(f"command: python {' '.join(sys.argv)}")
    print(f"commit {git_commit()}, {machine()}, device {args.device}, {args.workers} worker(s)\n")
    games = "evaluation" if args.eval_episodes else f"last {args.last_episodes} training"
    print(f"game score: mean of the {games} games; points/1k frames: over the last quarter of training\n")
    print(
        "| game | game score true | game score RLHF | RLHF ÷ true | normalised | points/1k frames true "
        "| points/1k frames RLHF | RLHF ÷ true | labels | val acc | wall s true / RLHF |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for game in args.games:
        rows = {arm: [r for r in results if (r["game"], r["arm"]) == (game, arm)] for arm in ("true", "rlhf")}
        if not rows["true"] or not rows["rlhf"]:
            continue
        true, rlhf = (float(np.mean([r[key] for r in rows[arm]])) for arm in ("true", "rlhf"))
        std = {arm: float(np.std([r[key] for r in rows[arm]])) for arm in rows}
        true_rate, rlhf_rate = (float(np.mean([r[rate] for r in rows[arm]])) for arm in ("true", "rlhf"))
        chance = RANDOM_SCORE[game]
        accuracy = [r["val_accuracy"] for r in rows["rlhf"] if r.get("val_accuracy") is not None]
        print(
            f"| {game} | {true:.1f} ± {std['true']:.1f} | {rlhf:.1f} ± {std['rlhf']:.1f} "
            f"| {ratio(rlhf, true)} "
            f"| {ratio(rlhf - chance, true - chance)} | {true_rate:.2f} | {rlhf_rate:.2f} "
            f"| {ratio(rlhf_rate, true_rate)} | {rows['rlhf'][0].get('labels_answered')} "
            f"| {np.mean(accuracy) if accuracy else float('nan'):.2f} "
            f"| {np.mean([r['seconds'] for r in rows['true']]):.0f} / "
            f"{np.mean([r['seconds'] for r in rows['rlhf']]):.0f} |"
        )
    segments = next((r["segments"] for r in results if "segments" in r), None)
    if segments:
        print(f"\n{segments}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="CPU budget: 40k frames, 100 labels, 1 seed")
    parser.add_argument("--games", nargs="+", default=list(RANDOM_SCORE), choices=list(RANDOM_SCORE))
    parser.add_argument("--algo", default="A2C", choices=["A2C", "PPO"])
    parser.add_argument("--frames", type=int, default=10_000_000, help="the paper: 10M (2.5M agent steps)")
    parser.add_argument("--labels", type=int, default=5500, help="the paper: 5,500")
    parser.add_argument("--initial-labels", type=int, default=None, help="default: 500/5,500 of --labels")
    parser.add_argument("--decay-timesteps", type=float, default=None, help="default: 5e6 scaled to --frames")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=["true", "rlhf"], choices=["true", "rlhf"])
    parser.add_argument("--last-episodes", type=int, default=10)
    parser.add_argument("--eval-episodes", type=int, default=0)
    parser.add_argument("--segment-memory-mb", type=float, default=1024.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--workers", type=int, default=1, help="runs in parallel (processes)")
    parser.add_argument("--learner-kwargs", default="{}", help="JSON overrides for PreferenceCallback")
    parser.add_argument("--out", default=None, help="also append every result as a JSON line here")
    args = parser.parse_args()
    learner_kwargs = json.loads(args.learner_kwargs)
    if args.quick:  # new defaults; flags given explicitly still win
        parser.set_defaults(frames=40_000, labels=100, seeds=[0], algo="PPO", segment_memory_mb=256.0)
        args = parser.parse_args()
        # Bound the reward model's CPU time: small fitting batches, few and short refits, queries and
        # normalisation on the newest segments only.
        learner_kwargs = (
            dict(
                batch_size=16,
                max_fit_seconds=15.0,
                query_batch_size=30,
                query_window=200,
                normalization_segments=100,
            )
            | learner_kwargs
        )
    steps = args.frames // FRAME_SKIP
    jobs = [
        dict(
            game=game,
            algo=args.algo,
            arm=arm,
            seed=seed,
            frames=args.frames,
            labels=args.labels,
            initial_labels=args.initial_labels or max(1, round(args.labels * 500 / 5500)),
            # The paper's c = 5e6 for a 10M-frame (2.5M-step) run: keep the schedule's shape.
            decay_timesteps=args.decay_timesteps or 5e6 * steps / 2.5e6,
            last_episodes=args.last_episodes,
            eval_episodes=args.eval_episodes,
            segment_memory_mb=args.segment_memory_mb,
            device=args.device,
            threads=args.threads,
            learner_kwargs=learner_kwargs,
        )
        for game in args.games
        for seed in args.seeds
        for arm in args.arms
    ]
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(run, jobs))
    else:
        results = [run(job) for job in jobs]
    if args.out:
        with open(args.out, "a") as file:
            file.writelines(json.dumps(r) + "\n" for r in results)
    report(results, args)


if __name__ == "__main__":
    main()
