"""Feedback efficiency on the paper's MuJoCo tasks: RLHF with 350/700/1400 labels vs the true reward.

Christiano et al. (2017), Fig. 1: the same algorithm, seeds and steps trained on the true reward and
from synthetic preferences with a label budget. For every task it reports the final true return and
the ratio RLHF ÷ true reward (mean and spread over seeds), a normalised score
(R - R_random) ÷ (R_true - R_random) for tasks with negative returns (Reacher), and learning curves
(PNG, from evaluations during training). Two controls make a misleading result visible:

- ``zero``: the wrapper without the callback, so the learned reward is the constant 0. It should stay
  at the random policy's level; if it learns, the task leaks reward (e.g. through termination).
- ``random-N``: the ablation of the paper's query selection, random pairs instead of the ensemble's
  disagreement, at the same budget N.

Hopper and Walker2d run with ``terminate_when_unhealthy=False`` in every arm (termination when the
robot falls would tell a zero-reward agent to stand up).

Examples:
    python benchmarks/feedback_efficiency.py --quick          # 2 tasks, 1 budget, 1 seed: ~15 min on 1 core
    python benchmarks/feedback_efficiency.py --workers 32     # the paper's table: 6 tasks, 5 seeds, 1M steps
    python benchmarks/feedback_efficiency.py --envs Hopper-v5 --seeds 0 1 2 --workers 12 --resume
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from harness import (
    IMAGE_DIR,
    add_sweep_arguments,
    append_to_results_page,
    fmt,
    fmt_spread,
    jobs_at_once,
    make_job,
    markdown_table,
    mean_std,
    normalised_score,
    random_return,
    report_header,
    run_dir,
    run_jobs,
)

NO_TERMINATION = {"terminate_when_unhealthy": False}
PAPER_TASKS: dict[str, dict[str, Any]] = {
    "HalfCheetah-v5": {},
    "Hopper-v5": NO_TERMINATION,
    "Walker2d-v5": NO_TERMINATION,
    "Swimmer-v5": {},
    "Reacher-v5": {},
    "InvertedDoublePendulum-v5": {},
}
FULL = dict(
    envs=list(PAPER_TASKS), budgets=[350, 700, 1400], ablation=700, steps=1_000_000, seeds=[0, 1, 2, 3, 4]
)
QUICK = dict(envs=["HalfCheetah-v5", "Reacher-v5"], budgets=[100], ablation=100, steps=40_000, seeds=[0])


def build_jobs(args: argparse.Namespace) -> list[dict[str, Any]]:
    jobs = []
    for env in args.envs:
        arms: list[tuple[str, str, int, str]] = [("true", "true", 0, "disagreement")]
        arms += [(f"rlhf-{n}", "rlhf", n, "disagreement") for n in args.budgets]
        if args.ablation:
            arms.append((f"random-{args.ablation}", "rlhf", args.ablation, "random"))
        if not args.no_zero:
            arms.append(("zero", "zero", 0, "disagreement"))
        for seed in args.seeds:
            for arm, kind, labels, selection in arms:
                jobs.append(
                    make_job(
                        env,
                        arm,
                        seed,
                        args.steps,
                        kind=kind,
                        env_kwargs=PAPER_TASKS.get(env, {}),
                        labels=labels,
                        selection=selection,
                        eval_episodes=args.eval_episodes,
                        eval_every=args.eval_every,
                        curve_episodes=args.curve_episodes,
                    )
                )
    return jobs


def task_section(env: str, rows: list[dict[str, Any]], random: float, image: str) -> tuple[str, list[str]]:
    """Per-task markdown table, and the task's row of the summary table."""
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    by_arm = {arm: {r["seed"]: r for r in rows if r["arm"] == arm} for arm in arms}
    true = by_arm.get("true", {})
    true_mean = mean_std(r["return"] for r in true.values())[0]
    table, summary = [], [env]
    for arm in arms:
        returns = [r["return"] for r in by_arm[arm].values()]
        mean, std = mean_std(returns)
        seeds = sorted(set(by_arm[arm]) & set(true))
        per_seed = [by_arm[arm][s]["return"] / true[s]["return"] for s in seeds if true[s]["return"] != 0]
        spread = f" ({min(per_seed):.2f}-{max(per_seed):.2f})" if len(per_seed) > 1 else ""
        ratio = mean / true_mean if true_mean else float("nan")
        score = normalised_score(mean, random, true_mean)
        seconds = mean_std(r["seconds"] for r in by_arm[arm].values())
        labelled = all("labels" in r for r in by_arm[arm].values())
        labels = mean_std(r.get("labels", 0) for r in by_arm[arm].values())[0]
        accuracy = mean_std(r.get("val_accuracy", float("nan")) for r in by_arm[arm].values())[0]
        table.append(
            [
                arm,
                fmt_spread(mean, std),
                f"{fmt(ratio, 3)}{spread}",
                fmt(score, 3),
                fmt_spread(*seconds),
                fmt(labels, 0) if labelled else "",
                fmt(accuracy, 2) if labelled else "",
            ]
        )
        if arm != "true":
            summary.append(f"{fmt(ratio, 2)} ({fmt(score, 2)})")
    table.append(["random policy", fmt(random), "", "0", "", "", ""])
    header = [
        "arm",
        "true return",
        "÷ true (per-seed range)",
        "normalised score",
        "wall-clock s",
        "labels",
        "val acc",
    ]
    kwargs_text = f" `{PAPER_TASKS[env]}`" if PAPER_TASKS.get(env) else ""
    text = f"#### {env}{kwargs_text}\n\n" + markdown_table(header, table) + f"\n\n![{env}](img/{image})\n"
    return text, summary


def plot_curves(env: str, rows: list[dict[str, Any]], random: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for arm in dict.fromkeys(r["arm"] for r in rows):
        curves = [np.asarray(r["curve"], dtype=float) for r in rows if r["arm"] == arm and r.get("curve")]
        if not curves:
            continue
        grid = curves[0][:, 0]
        values = np.stack([np.interp(grid, curve[:, 0], curve[:, 1]) for curve in curves])
        mean, std = values.mean(axis=0), values.std(axis=0)
        style = dict(linestyle="--") if arm in ("true", "zero") else {}
        (line,) = axis.plot(grid, mean, label=arm, **style)
        if len(curves) > 1:
            axis.fill_between(grid, mean - std, mean + std, color=line.get_color(), alpha=0.15)
    axis.axhline(random, color="grey", linewidth=0.8, linestyle=":", label="random policy")
    seeds = len({r["seed"] for r in rows})
    axis.set(
        title=f"{env} ({seeds} seed{'s' if seeds > 1 else ''}, mean ± std)",
        xlabel="timesteps",
        ylabel="true return",
    )
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="2 tasks, 1 budget, 1 seed, 40k steps")
    parser.add_argument("--envs", nargs="+", default=None)
    parser.add_argument("--budgets", type=int, nargs="+", default=None)
    parser.add_argument(
        "--ablation", type=int, default=None, help="budget of the random-selection arm (0: none)"
    )
    parser.add_argument("--no-zero", action="store_true", help="skip the zero-label control")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--eval-episodes", type=int, default=None)
    parser.add_argument(
        "--eval-every", type=int, default=None, help="learning-curve period (default steps/20, --quick: /8)"
    )
    parser.add_argument("--curve-episodes", type=int, default=None)
    add_sweep_arguments(parser)
    parser.add_argument("--resume", action="store_true", help="skip runs already in the results file")
    parser.add_argument("--no-docs", action="store_true", help="print only; write nothing under docs/")
    args = parser.parse_args()
    mode = QUICK if args.quick else FULL
    for key in ("envs", "budgets", "ablation", "steps", "seeds"):
        if getattr(args, key) is None:
            setattr(args, key, mode[key])
    args.eval_episodes = args.eval_episodes or (5 if args.quick else 20)
    args.curve_episodes = args.curve_episodes or (2 if args.quick else 5)
    args.eval_every = args.eval_every or max(1, args.steps // (8 if args.quick else 20))
    unknown = [env for env in args.envs if env not in PAPER_TASKS]
    if unknown:
        parser.error(f"unknown task(s) {unknown}: choose from {list(PAPER_TASKS)}")

    tag = "quick" if args.quick else "full"
    results = run_jobs(
        build_jobs(args),
        args.workers,
        run_dir(f"feedback-efficiency-{tag}.jsonl"),
        args.resume,
        address=args.address,
    )
    report = report_header(
        f"Feedback efficiency ({tag}): {args.steps:,} steps, budgets {args.budgets}, seeds {args.seeds}",
        jobs_at_once(args),
    )
    report += (
        "- PPO with rl-baselines3-zoo settings in every arm; final return: deterministic policy, "
        f"{args.eval_episodes} episodes; ratios are of seed means, per-seed range in brackets\n"
    )
    sections, summary_rows = [], []
    for env in args.envs:
        rows = [r for r in results if r["env"] == env]
        random = random_return(env, PAPER_TASKS[env], args.eval_episodes)
        image = f"feedback-efficiency-{tag}-{env}.png"
        if not args.no_docs:
            IMAGE_DIR.mkdir(parents=True, exist_ok=True)
            plot_curves(env, rows, random, str(IMAGE_DIR / image))
        section, summary = task_section(env, rows, random, image)
        sections.append(section)
        summary_rows.append(summary)
    arm_names = [a for a in dict.fromkeys(r["arm"] for r in results) if a != "true"]
    report += (
        "\nRLHF ÷ true reward, final true return (normalised score in brackets):\n\n"
        + markdown_table(["task", *arm_names], summary_rows)
        + "\n\n"
        + "\n".join(sections)
    )
    print("\n" + report)
    if not args.no_docs:
        append_to_results_page(report)


if __name__ == "__main__":
    main()
