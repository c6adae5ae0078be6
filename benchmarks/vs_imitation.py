"""prefwrap against the imitation library's preference comparisons, side by side.

Same task, same PPO settings (harness.ppo_config), same agent training steps, same comparison budget,
same seeds and the same evaluation (deterministic policy, true reward, fresh env seeds); a PPO arm
on the true reward gives the normalised score. It reports the final true return and wall-clock of
each library and the ratios prefwrap ÷ imitation.

imitation 1.0.1 pins gymnasium 0.29 and Stable-Baselines3 2.2, so its side runs in its own virtual
environment, ``benchmarks/.venv-imitation``, built on first use (or with ``--setup``) from the pins in
``benchmarks/imitation-constraints.txt`` (torch is pinned to the CPU wheel), as a subprocess per job.
gymnasium 0.29 has the v4 MuJoCo tasks only, so both libraries run the v4 tasks.

imitation is configured as its own script ``imitation.scripts.train_preference_comparisons`` configures
it (see IMITATION_DEFAULTS in imitation_side.py): fragment_length 100, transition_oversampling 1,
initial_comparison_frac 0.1, initial_epoch_multiplier 200, 3 reward epochs per iteration, a single
BasicRewardNet (32x32, RunningNorm on inputs and outputs), random fragment pairs, hyperbolic query
schedule, no exploration; ``--imitation-kwargs ensemble_size=3 active_selection=true`` gives its
reward ensemble and active selection (the paper's choices, and prefwrap's defaults).

Its number of iterations follows the step budget: it trains the agent ``num_iterations + 1`` times,
each at least one PPO rollout, so ``num_iterations`` is one less than the number of rollouts (at most
``--imitation-iterations``, default 60, the value its tutorial recommends), and the step budget is
rounded up to whole iterations for both libraries.
imitation also steps the env to sample fragments beyond the agent's own rollouts: those steps are
counted and reported (``env steps``), not added to the agent's budget.

Examples:
    python benchmarks/vs_imitation.py --quick        # Pendulum-v1, 200 comparisons, 50k steps, 5 seeds
    python benchmarks/vs_imitation.py --workers 8    # + HalfCheetah-v4, Hopper-v4: 1M steps, 700 comparisons
    python benchmarks/vs_imitation.py --setup        # only build benchmarks/.venv-imitation
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from harness import (
    REPO,
    add_sweep_arguments,
    append_to_results_page,
    fmt,
    fmt_spread,
    jobs_at_once,
    make_job,
    markdown_table,
    mean_std,
    normalised_score,
    parse_kwargs,
    ppo_config,
    random_return,
    report_header,
    rollout_size,
    run_arm,
    run_dir,
    run_jobs,
)
from imitation_side import IMITATION_DEFAULTS

VENV = REPO / "benchmarks" / ".venv-imitation"
CONSTRAINTS = REPO / "benchmarks" / "imitation-constraints.txt"
SIDE_SCRIPT = REPO / "benchmarks" / "imitation_side.py"
REQUIREMENTS = [
    "imitation==1.0.1",
    "gymnasium[classic-control,mujoco]",
    "stable-baselines3",
    "torch",
    "numpy",
]

# (env, env_kwargs, steps, comparisons) per mode.
QUICK_TASKS = [("Pendulum-v1", {}, 50_000, 200)]
FULL_TASKS = [
    ("Pendulum-v1", {}, 50_000, 200),
    ("HalfCheetah-v4", {}, 1_000_000, 700),
    ("Hopper-v4", {"terminate_when_unhealthy": False}, 1_000_000, 700),
]


def venv_python() -> Path:
    return VENV / "bin" / "python"


def setup_venv(pip_args: list[str]) -> None:
    """Create benchmarks/.venv-imitation with imitation 1.0.1 and its pinned dependencies."""
    if venv_python().exists():
        return
    print(f"building {VENV} (imitation 1.0.1 and its pinned dependencies) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    command = [str(venv_python()), "-m", "pip", "install", "-q", "-c", str(CONSTRAINTS), *REQUIREMENTS]
    result = subprocess.run([*command, *pip_args])
    if result.returncode != 0:
        raise SystemExit(
            f"pip could not install imitation's side (exit {result.returncode}): {' '.join(command)}\n"
            "See pip's message above; where the CPU torch wheel is not on disk, add "
            "--pip-args=--extra-index-url=https://download.pytorch.org/whl/cpu"
        )


def aligned_steps(steps: int, rollout: int, max_iterations: int) -> tuple[int, int]:
    """``(steps, num_iterations)``: whole PPO rollouts split evenly over imitation's N + 1 agent phases."""
    rollouts = max(2, math.ceil(steps / rollout))
    iterations = min(rollouts - 1, max_iterations)
    per_phase = math.ceil(rollouts / (iterations + 1))
    return per_phase * (iterations + 1) * rollout, iterations


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """prefwrap jobs run in this process; imitation jobs in its virtual environment."""
    if job.get("library") != "imitation":
        return {**run_arm(job), "library": "prefwrap" if job["kind"] == "rlhf" else "true reward"}
    with tempfile.TemporaryDirectory() as folder:
        result_path = Path(folder) / "result.json"
        log_path = run_dir(f"imitation-{job['env']}-seed{job['seed']}.log")
        with log_path.open("w") as log:
            process = subprocess.run(
                [str(venv_python()), str(SIDE_SCRIPT), json.dumps(job), str(result_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO / "benchmarks",
                env={**os.environ, "PYTHONPATH": str(REPO / "benchmarks")},
            )
        if process.returncode != 0:
            tail = log_path.read_text()[-3000:]
            raise RuntimeError(f"imitation side failed (exit {process.returncode}), log {log_path}:\n{tail}")
        return {**json.loads(result_path.read_text()), "library": "imitation"}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="Pendulum-v1 only (about 20 min on 1 core)")
    parser.add_argument("--envs", nargs="+", default=None, help="subset of the mode's tasks")
    parser.add_argument("--steps", type=int, default=None, help="override every task's step budget")
    parser.add_argument("--comparisons", type=int, default=None, help="override every task's budget")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--imitation-iterations", type=int, default=60)
    parser.add_argument(
        "--imitation-kwargs",
        nargs="*",
        default=[],
        help="key=value overrides of imitation_side.IMITATION_DEFAULTS, e.g. ensemble_size=3 "
        "active_selection=true exploration_frac=0.05 initial_epoch_multiplier=4",
    )
    parser.add_argument("--no-true-arm", action="store_true", help="skip PPO on the true reward")
    add_sweep_arguments(parser)
    parser.add_argument("--setup", action="store_true", help="only build the imitation environment")
    parser.add_argument("--pip-args", nargs="*", default=[], help="extra pip arguments for --setup")
    parser.add_argument("--resume", action="store_true", help="skip jobs already in the results file")
    parser.add_argument("--no-docs", action="store_true", help="do not append to docs/benchmarks-results.md")
    args = parser.parse_args()

    setup_venv(args.pip_args)
    if args.setup:
        return
    tasks = QUICK_TASKS if args.quick else FULL_TASKS
    if args.envs:
        tasks = [task for task in tasks if task[0] in args.envs]
    imitation_settings = parse_kwargs(args.imitation_kwargs)
    unknown = set(imitation_settings) - set(IMITATION_DEFAULTS)
    if unknown:
        parser.error(
            f"unknown imitation setting(s) {sorted(unknown)}: choose from {list(IMITATION_DEFAULTS)}"
        )
    jobs, plans = [], []
    for env, env_kwargs, steps, comparisons in tasks:
        steps = args.steps or steps
        comparisons = args.comparisons or comparisons
        ppo = ppo_config(env)
        if ppo["normalize"]:
            ppo["normalize"] = "obs"  # below both libraries' reward wrappers (see harness.ppo_config)
        steps, iterations = aligned_steps(steps, rollout_size(ppo), args.imitation_iterations)
        plans.append((env, env_kwargs, steps, comparisons, iterations))
        for seed in args.seeds:
            common = dict(env_kwargs=env_kwargs, eval_episodes=args.eval_episodes, ppo=ppo)
            if not args.no_true_arm:
                jobs.append(make_job(env, "true", seed, steps, **common))
            jobs.append(make_job(env, "prefwrap", seed, steps, kind="rlhf", labels=comparisons, **common))
            imitation_job = make_job(env, "imitation", seed, steps, kind="rlhf", labels=comparisons, **common)
            imitation_job.update(library="imitation", num_iterations=iterations, imitation=imitation_settings)
            jobs.append(imitation_job)
    name = "vs-imitation-quick" if args.quick else "vs-imitation"
    results = run_jobs(
        jobs, args.workers, run_dir(f"{name}.jsonl"), args.resume, function=run_job, address=args.address
    )
    report = report_header(
        f"prefwrap vs imitation 1.0.1 preference comparisons{' (--quick)' if args.quick else ''}",
        jobs_at_once(args),
    )
    settings = ", ".join(
        f"{key}={value}" for key, value in {**IMITATION_DEFAULTS, **imitation_settings}.items()
    )
    changed = f" (changed from its script's defaults: {imitation_settings})" if imitation_settings else ""
    report += (
        f"- imitation: {settings}{changed}; prefwrap: its defaults (3-member ensemble, disagreement "
        "selection, ~1.5 s segments, 25 % of the labels before training)\n"
    )
    for env, env_kwargs, steps, comparisons, iterations in plans:
        report += "\n" + task_report(
            env, env_kwargs, steps, comparisons, iterations, results, args.eval_episodes
        )
    print("\n" + report)
    if not args.no_docs:
        append_to_results_page(report)


def task_report(
    env: str,
    env_kwargs: dict[str, Any],
    steps: int,
    comparisons: int,
    iterations: int,
    results: list[dict[str, Any]],
    eval_episodes: int,
) -> str:
    rows = [r for r in results if r["env"] == env]
    by_arm = {arm: [r for r in rows if r["arm"] == arm] for arm in ("true", "prefwrap", "imitation")}
    random = random_return(env, env_kwargs, eval_episodes)
    true_mean = mean_std(r["return"] for r in by_arm["true"])[0] if by_arm["true"] else float("nan")
    table = []
    for arm, arm_rows in by_arm.items():
        if not arm_rows:
            continue
        returns = mean_std(r["return"] for r in arm_rows)
        seconds = mean_std(r["seconds"] for r in arm_rows)
        env_steps = mean_std(r.get("env_steps", r["steps"]) for r in arm_rows)[0]
        labels = mean_std(r.get("labels", 0) for r in arm_rows)[0]
        table.append(
            [
                arm,
                fmt_spread(*returns),
                fmt(normalised_score(returns[0], random, true_mean), 3),
                fmt_spread(*seconds),
                f"{env_steps:,.0f}",
                fmt(labels, 0) if arm != "true" else "",
            ]
        )
    table.append(["random policy", fmt(random), "0", "", "", ""])
    seeds = sorted({r["seed"] for r in by_arm["prefwrap"]} & {r["seed"] for r in by_arm["imitation"]})
    ratio_lines = []
    if seeds:

        def per_seed(arm: str, key: str) -> np.ndarray:
            values = {r["seed"]: r[key] for r in by_arm[arm]}
            return np.array([values[s] for s in seeds], dtype=float)

        ours, theirs = per_seed("prefwrap", "return"), per_seed("imitation", "return")
        time_ratio = per_seed("prefwrap", "seconds") / per_seed("imitation", "seconds")
        ratio_lines.append(
            f"- wall-clock prefwrap ÷ imitation: **{time_ratio.mean():.3f}** "
            f"(per seed {time_ratio.min():.3f}-{time_ratio.max():.3f})"
        )
        if math.isfinite(true_mean):
            score_ratio = normalised_score(ours.mean(), random, true_mean) / normalised_score(
                theirs.mean(), random, true_mean
            )
            difference = normalised_score(ours.mean(), random, true_mean) - normalised_score(
                theirs.mean(), random, true_mean
            )
            ratio_lines.append(
                f"- normalised score prefwrap ÷ imitation: **{score_ratio:.3f}** (difference "
                f"{difference:+.3f}; the ratio reads as 'better' only when both scores are > 0)"
            )
        ratio_lines.append(
            f"- return prefwrap ÷ imitation: {ours.mean() / theirs.mean():.3f} (for negative returns, "
            "< 1 means prefwrap is better: use the normalised score)"
        )
        ratio_lines.append(f"- prefwrap better on {int((ours > theirs).sum())} of {len(seeds)} seeds")
    kwargs_text = f" {env_kwargs}" if env_kwargs else ""
    return (
        f"#### {env}{kwargs_text}: {steps:,} agent steps, {comparisons} comparisons, seeds "
        f"{sorted({r['seed'] for r in rows})}, imitation num_iterations {iterations}\n\n"
        + markdown_table(
            [
                "arm",
                "true return (mean ± std over seeds)",
                "normalised score",
                "wall-clock s",
                "env steps",
                "labels",
            ],
            table,
        )
        + "\n\n"
        + "\n".join(ratio_lines)
        + "\n"
    )


if __name__ == "__main__":
    main()
