"""What clips for human labelers cost: PPO steps/s when the oracle needs clips ÷ when it does not.

Arms, same env, seed, steps and label budget, alternating repeats in one run:

- ``synthetic``: :class:`~prefwrap.SyntheticOracle`, ``record_frames=False``: nothing is rendered.
- ``clips (state)``: ``record_frames="state"`` and a synthetic teacher that needs clips
  (``needs_frames = True``): :class:`~prefwrap.HumanOracle`'s whole frame path (keep each step's
  physics state, render the queried segments, compress and store their clips) with the person left out.
- ``clips (render every step)``: ``record_frames="render"`` on envs made with ``render_mode``: what a
  wrapper that renders every step costs, on a shorter run (it is hundreds of times slower).

Also reported: render time per frame, frames rendered per label, and the store's size per query.
The label density defaults to the paper's (700 labels per 1M steps).

Examples:
    python benchmarks/frame_capture.py                      # HalfCheetah-v5, 100k steps, ~15 min on 2 cores
    python benchmarks/frame_capture.py --steps 20000 --repeats 1 --no-docs
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from harness import (
    append_to_results_page,
    fmt,
    make_env,
    markdown_table,
    ppo_config,
    report_header,
    snapshot_prefwrap,
    wrap_top,
)

os.environ.setdefault("MUJOCO_GL", "egl")


def train_once(env_id: str, mode: str, steps: int, labels: int, seed: int, store: Path) -> dict[str, Any]:
    """One PPO run; ``mode`` is ``"synthetic"``, ``"state"`` or ``"render"``."""
    from stable_baselines3 import PPO

    from prefwrap import PreferenceCallback, PreferenceRewardWrapper, SyntheticOracle

    class ClipTeacher(SyntheticOracle):
        needs_frames = True  # the learner queries only segments with clips, as for a person

    config = ppo_config(env_id)
    n_envs, normalize = config.pop("n_envs"), config.pop("normalize")
    env_kwargs = {"render_mode": "rgb_array"} if mode == "render" else {}
    record_frames: bool | str = False if mode == "synthetic" else mode
    wrapper = PreferenceRewardWrapper(
        make_env(env_id, n_envs, seed, env_kwargs, normalize), record_frames=record_frames
    )
    oracle = SyntheticOracle(seed=seed) if mode == "synthetic" else ClipTeacher(seed=seed)
    render_seconds, capture_seconds = [0.0], [0.0]
    if wrapper.state_renderer is not None:  # time the two halves of the frame path where they run
        renderer = wrapper.state_renderer
        render, capture = renderer.render, renderer.capture_vec

        def timed_render(states: np.ndarray) -> np.ndarray:
            start = time.perf_counter()
            frames = render(states)
            render_seconds[0] += time.perf_counter() - start
            return frames

        def timed_capture(venv: Any) -> np.ndarray:
            start = time.perf_counter()
            states = capture(venv)
            capture_seconds[0] += time.perf_counter() - start
            return states

        wrapper.segments.clip_renderer = timed_render
        renderer.capture_vec = timed_capture  # type: ignore[method-assign]

    class TimedCallback(PreferenceCallback):
        seconds = 0.0  # rollout-end work: queries (and their clips), store writes, refits

        def _on_rollout_end(self) -> None:
            start = time.perf_counter()
            super()._on_rollout_end()
            self.seconds += time.perf_counter() - start

    callback = TimedCallback(wrapper, oracle, total_labels=labels, store=store, seed=seed)
    model = PPO(
        "MlpPolicy",
        wrap_top(wrapper, normalize, config.get("gamma", 0.99)),
        seed=seed,
        device="cpu",
        **config,
    )
    start = time.perf_counter()
    model.learn(steps, callback=callback)
    seconds = time.perf_counter() - start
    renders = wrapper.state_renderer.n_renders if wrapper.state_renderer is not None else 0
    n_queries = len(callback.learner.store.labels()) + len(
        callback.learner.store.pending_queries(with_frames=False)
    )
    callback.learner.store.close()
    return {
        "mode": mode,
        "steps": model.num_timesteps,
        "seconds": seconds,
        "steps_per_second": model.num_timesteps / seconds,
        "labels": callback.learner.n_labels,
        "queries": n_queries,
        "renders": renders,
        "render_seconds": render_seconds[0],
        "callback_seconds": callback.seconds,
        "capture_seconds": capture_seconds[0],
        "store_bytes": sum(path.stat().st_size for path in store.parent.glob(store.name + "*")),
    }


def run(args: argparse.Namespace) -> str:
    labels = args.labels or max(2, round(700 * args.steps / 1_000_000))
    results: dict[str, list[dict[str, Any]]] = {"synthetic": [], "state": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            order = ("synthetic", "state") if repeat % 2 == 0 else ("state", "synthetic")
            for mode in order:
                store = Path(tmp) / f"{mode}-{repeat}.sqlite"
                results[mode].append(train_once(args.env, mode, args.steps, labels, repeat, store))
                print(results[mode][-1], flush=True)
        render = None
        if args.render_steps:
            quick = {}
            for mode in ("synthetic", "render"):
                store = Path(tmp) / f"{mode}-short.sqlite"
                quick[mode] = train_once(args.env, mode, args.render_steps, 2, 0, store)
                print(quick[mode], flush=True)
            render = quick["render"]["steps_per_second"] / quick["synthetic"]["steps_per_second"], quick
    synthetic = np.array([r["steps_per_second"] for r in results["synthetic"]])
    state = np.array([r["steps_per_second"] for r in results["state"]])
    pairs = state / synthetic
    clips = results["state"]
    render_ms = 1000 * sum(r["render_seconds"] for r in clips) / max(1, sum(r["renders"] for r in clips))
    frames_per_label = sum(r["renders"] for r in clips) / max(1, sum(r["queries"] for r in clips))
    store_per_query = {
        mode: np.mean([r["store_bytes"] / max(1, r["queries"]) for r in results[mode]]) / 2**10
        for mode in results
    }
    render_share = np.mean([r["render_seconds"] / r["seconds"] for r in clips])
    rows = [
        [
            "synthetic (no clips)",
            fmt(synthetic.mean(), 0),
            "1.000",
            f"store {store_per_query['synthetic']:.0f} KiB/query",
        ],
        [
            "clips from captured state (HumanOracle's frame path)",
            fmt(state.mean(), 0),
            f"**{state.mean() / synthetic.mean():.3f}** (pairs {pairs.min():.3f}-{pairs.max():.3f})",
            f"{frames_per_label:.0f} frames rendered per query at {render_ms:.1f} ms each "
            f"({100 * render_share:.1f} % of wall-clock); store {store_per_query['state']:.0f} KiB/query",
        ],
    ]
    clip_seconds = np.mean([r["callback_seconds"] for r in clips]) - np.mean(
        [r["callback_seconds"] for r in results["synthetic"]]
    )  # rollout-end work that only the clips add: rendering, compressing and storing them
    capture_us = 1e6 * sum(r["capture_seconds"] for r in clips) / sum(r["steps"] for r in clips)
    clip_share = (clip_seconds + np.mean([r["capture_seconds"] for r in clips])) / np.mean(
        [r["seconds"] for r in clips]
    )
    rows.append(
        [
            "implied by the in-run timers",
            "",
            f"**{1 - clip_share:.3f}**",
            f"1 - (clip work at rollout end, {clip_seconds:.1f} s more than synthetic, + state capture, "
            f"{capture_us:.1f} µs per step) / wall-clock: independent of machine load",
        ]
    )
    if render is not None:
        ratio, quick = render
        rows.append(
            [
                f"render every step ({args.render_steps:,}-step runs, same order)",
                fmt(quick["render"]["steps_per_second"], 1),
                f"**{ratio:.4f}**",
                f"vs {fmt(quick['synthetic']['steps_per_second'], 0)} steps/s synthetic, same short run",
            ]
        )
    return (
        report_header(f"Frame capture cost: {args.env}, PPO, {args.steps:,} steps, {labels} labels")
        + "\n"
        + markdown_table(["run", "steps/s", "÷ synthetic", "notes"], rows)
        + f"\n\n{args.repeats} alternating repeat(s) per arm, seeds 0..{args.repeats - 1}. Without a GPU, "
        "MuJoCo renders with software OpenGL (EGL); clips are 256 px without shadows, reflections or "
        "anti-aliasing.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--labels", type=int, default=0, help="label budget (0: 700 per 1M steps)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per arm, alternating")
    parser.add_argument(
        "--render-steps", type=int, default=1024, help="render-every-step run length (0: skip)"
    )
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()
    snapshot_prefwrap()
    import torch

    torch.set_num_threads(1)
    report = run(args)
    print("\n" + report)
    if not args.no_docs:
        append_to_results_page(report)


if __name__ == "__main__":
    main()
