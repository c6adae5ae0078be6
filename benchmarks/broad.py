"""The broad learning table: every MuJoCo task of the paper and classic control, nobody's tuning.

For each task it trains, side by side in one run with the same seeds and steps, PPO on the true reward
(``true``), PPO through prefwrap with a synthetic oracle (``rlhf``) and the wrapper without labels
(``zero``: a leak through termination or offsets shows as a score above 0), plain PPO on a reward
of 0 in an env that never terminates (``blind``: nothing reaches it, so its score is PPO's drift
alone, the floor to read the zero score against), and measures a random policy. Both PPO
settings: SB3's defaults with 4 envs (``sb3``) and rl-baselines3-zoo's tuned values where the zoo
has them (``zoo``; tasks it has not tuned fall back to ``sb3``). Tasks run with their
DEFAULT env settings (early termination on), plus Hopper and Walker2d without it.

Score: ``(R_rlhf - R_random) / (R_true - R_random)`` per seed; the table gives the mean, the worst
seed, and the zero-label control's score. Learning curves go to ``docs/img/broad-<setting>.png``.

Examples:
    python benchmarks/broad.py --quick                         # classic control, 1 seed (~20 min)
    python benchmarks/broad.py --seeds 0 1 2 --workers 2       # the one-sitting table (CPU hours)
    python benchmarks/broad.py --paper --workers 16            # the paper's budget: 1M steps, 5 seeds
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
from harness import (
    DEFAULT_PPO,
    add_sweep_arguments,
    append_to_results_page,
    fmt,
    jobs_at_once,
    make_job,
    markdown_table,
    normalised_score,
    random_return,
    report_header,
    run_dir,
    run_jobs,
)

# task name -> (env id, env kwargs, steps, labels) at the one-sitting budget
TASKS: dict[str, tuple[str, dict[str, Any], int, int]] = {
    "HalfCheetah": ("HalfCheetah-v5", {}, 300_000, 700),
    "Hopper": ("Hopper-v5", {}, 300_000, 700),
    "Hopper-noterm": ("Hopper-v5", {"terminate_when_unhealthy": False}, 300_000, 700),
    "Walker2d": ("Walker2d-v5", {}, 300_000, 700),
    "Walker2d-noterm": ("Walker2d-v5", {"terminate_when_unhealthy": False}, 300_000, 700),
    "Swimmer": ("Swimmer-v5", {}, 300_000, 700),
    "Ant": ("Ant-v5", {}, 300_000, 700),
    "Reacher": ("Reacher-v5", {}, 300_000, 700),
    "InvertedPendulum": ("InvertedPendulum-v5", {}, 300_000, 700),
    "InvertedDoublePendulum": ("InvertedDoublePendulum-v5", {}, 300_000, 700),
    "CartPole": ("CartPole-v1", {}, 100_000, 100),
    "Acrobot": ("Acrobot-v1", {}, 100_000, 100),
    "Pendulum": ("Pendulum-v1", {}, 50_000, 200),
}
CLASSIC = ("CartPole", "Acrobot", "Pendulum")
SETTINGS = ("sb3", "zoo")
ARMS = ("true", "rlhf", "zero", "coinflip", "blind")
CONTROLS = ("zero", "coinflip")  # arms whose reward carries no information about the true one


def ppo_settings(env_id: str, setting: str) -> dict[str, Any]:
    """PPO arguments (zoo notation, JSON-able) with ``n_envs`` and ``normalize`` for one setting."""
    if setting == "sb3":
        return {**DEFAULT_PPO, "normalize": False}
    from prefwrap.cli.hyperparams import resolve

    params = resolve("ppo", env_id, atari=False)
    if not params.tuned:
        return {**DEFAULT_PPO, "normalize": False}
    return {**params.model_kwargs, "n_envs": params.n_envs, "normalize": params.normalize}


def build_jobs(args: argparse.Namespace) -> list[dict[str, Any]]:
    jobs = []
    for task in args.tasks:
        env_id, env_kwargs, steps, labels = TASKS[task]
        steps = 1_000_000 if args.paper and task not in CLASSIC else steps
        for setting in args.settings:
            for seed in args.seeds:
                for arm in args.arms:
                    jobs.append(
                        make_job(
                            env_id,
                            f"{task}/{setting}/{arm}",
                            seed,
                            steps,
                            kind=arm,
                            env_kwargs=env_kwargs,
                            labels=labels,
                            eval_episodes=args.eval_episodes,
                            eval_every=steps // 10,
                            ppo=ppo_settings(env_id, setting),
                        )
                    )
    return jobs


def summarise(results: list[dict[str, Any]], args: argparse.Namespace) -> tuple[str, list[float]]:
    """The markdown table and every task's mean RLHF score (for the headline average).

    Besides the issue's zero score (the zero-label arm's normalised score), ``zero gain`` is its change
    from its own untrained policy, ÷ (true − random), and ``coin-flip gain`` the same for the arm whose
    labels are coin flips: what a leak through termination or the reward's offset would raise above 0
    (the zero-label arm's reward is exactly 0, so only the coin-flip arm fits and anchors a reward).
    """
    rows, means = [], []
    starts = {  # each arm's untrained policy: the first point of its learning curve
        (r["arm"], r["seed"]): r["curve"][0][1] for r in results if r.get("curve") and r["curve"][0][0] == 0
    }
    for task in args.tasks:
        env_id, env_kwargs, _, labels = TASKS[task]
        random = random_return(env_id, env_kwargs, args.eval_episodes)
        for setting in args.settings:
            by_arm = {
                arm: {r["seed"]: r["return"] for r in results if r["arm"] == f"{task}/{setting}/{arm}"}
                for arm in ARMS
            }
            seeds = sorted(set(by_arm["true"]) & set(by_arm["rlhf"]) & set(by_arm["zero"]))
            if not seeds:
                continue
            scores = [normalised_score(by_arm["rlhf"][s], random, by_arm["true"][s]) for s in seeds]
            zero = [normalised_score(by_arm["zero"][s], random, by_arm["true"][s]) for s in seeds]
            blind = [
                normalised_score(by_arm["blind"][s], random, by_arm["true"][s])
                for s in seeds
                if s in by_arm["blind"]
            ]
            start = [starts.get((f"{task}/{setting}/zero", s), float("nan")) for s in seeds]
            gains = {
                arm: control_gain(
                    by_arm[arm], by_arm["true"], seeds, starts, f"{task}/{setting}/{arm}", random
                )
                for arm in CONTROLS
            }
            means.append(float(np.mean(scores)))
            rows.append(
                [
                    task,
                    setting,
                    labels,
                    fmt(random),
                    fmt(float(np.mean(start))),
                    fmt(float(np.mean([by_arm["true"][s] for s in seeds]))),
                    fmt(float(np.mean([by_arm["rlhf"][s] for s in seeds]))),
                    fmt(float(np.mean([by_arm["zero"][s] for s in seeds]))),
                    fmt(float(np.mean(scores)), 2),
                    fmt(float(np.min(scores)), 2),
                    fmt(float(np.mean(zero)), 2),
                    fmt(float(np.mean(blind)), 2) if blind else "",
                    gains["zero"],
                    gains["coinflip"],
                ]
            )
    header = [
        "task",
        "PPO",
        "labels",
        "random",
        "initial policy",
        "true",
        "rlhf",
        "zero-label",
        "score",
        "worst seed",
        "zero score",
        "blind score",
        "zero gain",
        "coin-flip gain",
    ]
    return markdown_table(header, rows), means


def control_gain(
    returns: dict[int, float],
    true: dict[int, float],
    seeds: list[int],
    starts: dict[tuple[str, int], float],
    arm: str,
    random: float,
) -> str:
    """A control arm's mean change from its own untrained policy ÷ (true − random), over those of
    ``seeds`` it ran ("" when none): a leak makes a control better than where it started, while a do-nothing
    initial policy can beat random by itself (Ant: standing still earns its healthy reward)."""
    done = [s for s in seeds if s in returns]
    if not done:
        return ""
    gains = [(returns[s] - starts.get((arm, s), float("nan"))) / (true[s] - random) for s in done]
    return fmt(float(np.mean(gains)), 2)


def task_set(tasks: list[str]) -> str:
    """A name for the figures of a task list, so a classic-control run keeps its own figure."""
    classic = [task in CLASSIC for task in tasks]
    return "classic" if all(classic) else "mujoco" if not any(classic) else "all"


def curve_figure(results: list[dict[str, Any]], tasks: list[str], setting: str) -> Any:
    """A matplotlib figure for one setting: a panel per task, mean true return of each arm over
    training steps, one colour per arm in every panel and one legend of every arm shown."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(4, len(tasks))
    rows = -(-len(tasks) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for axis, task in zip(axes.flat, tasks, strict=False):
        for arm in ARMS:
            curves = [r["curve"] for r in results if r["arm"] == f"{task}/{setting}/{arm}" and r.get("curve")]
            if curves:
                length = min(len(c) for c in curves)
                steps = [point[0] for point in curves[0][:length]]
                mean = np.mean([[p[1] for p in c[:length]] for c in curves], axis=0)
                # one colour per arm in every panel, whichever arms a panel has
                axis.plot(steps, mean, label=arm, color=f"C{ARMS.index(arm)}")
        axis.set_title(task, fontsize=9)
        axis.set_xlabel("env steps", fontsize=8)
    axes.flat[0].set_ylabel("true return (deterministic eval)")
    # one legend for the figure, of every arm any panel shows (the blind arm ran on a few tasks only)
    labelled = {
        label: line
        for axis in axes.flat
        for line, label in zip(*axis.get_legend_handles_labels(), strict=True)
    }
    shown = [arm for arm in ARMS if arm in labelled]
    figure.legend([labelled[arm] for arm in shown], shown, loc="lower right", fontsize=8)
    for axis in list(axes.flat)[len(tasks) :]:
        axis.set_visible(False)
    figure.tight_layout()
    return figure


def plot_curves(results: list[dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """One figure per setting (:func:`curve_figure`), saved under docs/img; returns their paths."""
    import matplotlib.pyplot as plt
    from harness import IMAGE_DIR

    paths = []
    for setting in args.settings:
        figure = curve_figure(results, args.tasks, setting)
        # a run into its own results file keeps its own figures too
        stem = f"-{Path(args.results).stem}" if args.results else "-paper" if args.paper else ""
        path = IMAGE_DIR / f"broad-{setting}-{task_set(args.tasks)}{stem}.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        paths.append(str(path.relative_to(IMAGE_DIR.parent.parent)))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=SETTINGS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--eval-episodes", type=int, default=10)
    add_sweep_arguments(parser)
    parser.add_argument("--paper", action="store_true", help="1M MuJoCo steps (use with --seeds 0 1 2 3 4)")
    parser.add_argument("--quick", action="store_true", help="classic control only, seed 0, SB3 defaults")
    parser.add_argument("--resume", action="store_true", help="skip jobs already in the results file")
    parser.add_argument("--no-page", action="store_true", help="do not append to docs/benchmarks-results.md")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS, help="run only these arms")
    parser.add_argument("--results", help="results file under runs/benchmarks (default broad[-paper].jsonl)")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.seeds, args.settings = list(CLASSIC), [0], ["sb3"]
    name = args.results or ("broad-paper.jsonl" if args.paper else "broad.jsonl")
    results = run_jobs(
        build_jobs(args), args.workers, out=run_dir(name), resume=args.resume, address=args.address
    )
    table, means = summarise(results, args)
    images = plot_curves(results, args)
    report = (
        report_header("Broad learning table (tasks nobody tuned for)", jobs_at_once(args))
        + f"- seeds {args.seeds}; score = (RLHF - random) / (true - random) per seed; "
        f"mean over tasks {fmt(float(np.mean(means)), 2) if means else 'n/a'}\n\n"
        + table
        + "\n\n"
        + "\n".join(f"![learning curves]({path.removeprefix('docs/')})" for path in images)
        + "\n"
    )
    print(report)
    if not args.no_page:
        append_to_results_page(report)


if __name__ == "__main__":
    sys.exit(main())
