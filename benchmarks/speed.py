"""What prefwrap costs in wall-clock and memory, each figure measured side by side in one run.

1. Throughput: whole-run PPO steps/s with wrapper + callback ÷ plain PPO, refitting in the
   background (the default) and synchronously, in three scenarios (:data:`SCENARIOS`: HalfCheetah-v5
   at the paper's label density and with dense labels, Pendulum-v1 with the zoo's settings); the
   arms' order rotates per repeat, so load changes on a shared machine hit all of them.
2. Reward inference per vector step (µs) for n_envs 1/4/16: the wrapper's ``_record_step`` (encode,
   predict, record the segment) next to the env's own step, the learned reward alone (numpy
   snapshot and torch), and each part of ``_record_step`` called alone.
3. Refit time as the label count grows (100 → 10,000 labels, synthetic segments) and as the
   ensemble grows (1/3/5/10 members): one refit = ``fit_epochs`` (5) passes, as the callback runs it.
4. Segment buffer memory vs its capacity (arrays' bytes, and what tracemalloc sees after filling).
5. A cProfile of the PPO + wrapper + callback path on HalfCheetah-v5, grouped by component.

Examples:
    python benchmarks/speed.py                       # all sections, ~25 min on two cores
    python benchmarks/speed.py --sections throughput --scenarios paper dense --no-docs
    python benchmarks/speed.py --sections inference refit --no-docs
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import math
import pstats
import time
import tracemalloc
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

ENV = "HalfCheetah-v5"
SECTIONS = ("throughput", "inference", "refit", "memory", "profile")
BREAKDOWN_ENVS = (1, 4, 16)  # n_envs of the per-part timings of _record_step


ATARI_PPO = dict(n_envs=2, n_steps=128, batch_size=64, n_epochs=1)
SCENARIOS: dict[str, dict[str, Any]] = {
    # The paper's label density: 700 labels per 1M steps is 29 per 40,960.
    "paper": dict(env="HalfCheetah-v5", steps=40_960, labels=30, ppo=dict(n_envs=4, n_steps=512)),
    # A refit at nearly every rollout end.
    "dense": dict(env="HalfCheetah-v5", steps=16_384, labels=200, ppo=dict(n_envs=4, n_steps=512)),
    # The zoo's Pendulum settings at the demo's density (200 labels per 50k steps).
    "pendulum": dict(env="Pendulum-v1", steps=20_480, labels=80, ppo=None),
    # PPO CnnPolicy on Breakout (make_atari_env, VecFrameStack 4), the paper's Atari wrapper settings
    # (prefwrap.presets.atari_preset), at the paper's density (5,500 labels per 2.5M agent steps: 9
    # per 4,096) and at the density of the first CPU report (20).
    "atari-paper": dict(env="ALE/Breakout-v5", steps=4096, labels=9, ppo=ATARI_PPO, atari=True),
    "atari-dense": dict(env="ALE/Breakout-v5", steps=4096, labels=20, ppo=ATARI_PPO, atari=True),
    # The paper's density over 8x as many steps: the first fit's fixed cost weighs 8x less, as in a long run.
    "atari-long": dict(env="ALE/Breakout-v5", steps=32_768, labels=72, ppo=ATARI_PPO, atari=True),
}
"""Throughput scenarios: PPO with SB3's defaults but ``n_envs``/``n_steps`` (``ppo=None``: the zoo's)."""
ARMS = ("plain", "background", "synchronous")


def _timed_classes() -> tuple[type, type]:
    """Subclasses of the wrapper and callback that time the wrapper's per-step work, the callback's
    rollout-end work (waits for background fits included) and the fits themselves (prefwrap itself is
    not modified)."""
    from prefwrap.callback import PreferenceCallback
    from prefwrap.wrapper import VecPreferenceRewardWrapper

    class TimedWrapper(VecPreferenceRewardWrapper):
        record_seconds = 0.0

        def _record_step(self, *args: Any) -> Any:
            start = time.perf_counter()
            result = super()._record_step(*args)
            self.record_seconds += time.perf_counter() - start
            return result

    class TimedCallback(PreferenceCallback):
        rollout_end_seconds = 0.0
        fit_seconds = 0.0
        gradient_steps = 0
        fits = 0

        def _on_rollout_end(self) -> None:
            start = time.perf_counter()
            super()._on_rollout_end()
            self.rollout_end_seconds += time.perf_counter() - start

        def _installed(self, report: Any) -> None:
            super()._installed(report)
            if report is not None:
                self.fit_seconds += report.seconds
                self.gradient_steps += report.gradient_steps
                self.fits += 1

    return TimedWrapper, TimedCallback


def train_once(arm: str, scenario: dict[str, Any], seed: int) -> dict[str, float]:
    """One PPO run: plain, or through the (timed) wrapper and callback, refitting in the background
    or synchronously."""
    from stable_baselines3 import PPO

    from prefwrap import SyntheticOracle
    from prefwrap.presets import atari_preset

    env_id = scenario["env"]
    config = dict(scenario["ppo"]) if scenario["ppo"] else ppo_config(env_id)
    n_envs, normalize = config.pop("n_envs"), config.pop("normalize", False)
    wrapper_kwargs: dict[str, Any] = {}
    if scenario.get("atari"):
        venv = _atari_env(env_id, n_envs, seed)
        wrapper_kwargs = atari_preset().wrapper  # the paper's segments and reward scale
    else:
        venv = make_env(env_id, n_envs, seed, {}, normalize)
    callback = None
    if arm != "plain":
        timed_wrapper, timed_callback = _timed_classes()
        venv = wrapper = timed_wrapper(venv, seed=seed, **wrapper_kwargs)
        callback = timed_callback(
            venv,
            oracle=SyntheticOracle(seed=seed),
            total_labels=scenario["labels"],
            seed=seed,
            synchronous=arm == "synchronous",
        )
    venv = wrap_top(venv, normalize, config.get("gamma", 0.99))
    policy = "CnnPolicy" if scenario.get("atari") else "MlpPolicy"
    model = PPO(policy, venv, seed=seed, device="cpu", **config)
    start = time.perf_counter()
    model.learn(scenario["steps"], callback=callback)
    seconds = time.perf_counter() - start
    result = {"seconds": seconds, "steps": model.num_timesteps}
    if callback is not None:
        result.update(
            callback_seconds=callback.rollout_end_seconds,
            fit_seconds=callback.fit_seconds,
            gradient_steps=callback.gradient_steps,
            fits=callback.fits,
            record_seconds=wrapper.record_seconds,
            labels=callback.learner.n_labels,
        )
    venv.close()
    return result


def _atari_env(env_id: str, n_envs: int, seed: int) -> Any:
    import ale_py
    import gymnasium as gym
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)
    return VecFrameStack(make_atari_env(env_id, n_envs=n_envs, seed=seed, env_kwargs={"frameskip": 1}), 4)


def throughput(args: argparse.Namespace) -> str:
    """Whole-run steps/s of each arm ÷ plain PPO, per scenario; the arms' order rotates per repeat."""
    report = (
        f"#### 1. Throughput: whole-run steps/s ÷ plain PPO, {args.repeats} repeats per arm, the arms' "
        "order rotating per repeat\n\n'background' refits in a thread and installs the reward a rollout "
        "later (the default); 'synchronous' refits at the rollout end, blocking training.\n"
    )
    for name in args.scenarios:
        scenario = SCENARIOS[name]
        runs: dict[str, list[dict[str, float]]] = {arm: [] for arm in ARMS}
        for repeat in range(args.repeats):
            for arm in ARMS[repeat % 3 :] + ARMS[: repeat % 3]:
                runs[arm].append(train_once(arm, scenario, seed=repeat))
                print(f"throughput {name} repeat {repeat} {arm}: {runs[arm][-1]}", flush=True)
        plain = np.array([r["steps"] / r["seconds"] for r in runs["plain"]])
        n_envs = (scenario["ppo"] or ppo_config(scenario["env"]))["n_envs"]
        rows = [["plain PPO", fmt(plain.mean(), 0), "1.000", "", "", ""]]
        for arm in ARMS[1:]:
            ours = runs[arm]
            rate = np.array([r["steps"] / r["seconds"] for r in ours])
            pairs = rate / plain  # repeat k of each arm ran in the same rotation
            fit_seconds = sum(r["fit_seconds"] for r in ours)
            steps_per_second = sum(r["gradient_steps"] for r in ours) / max(fit_seconds, 1e-9)
            rows.append(
                [
                    arm,
                    fmt(rate.mean(), 0),
                    f"**{rate.mean() / plain.mean():.3f}** ({pairs.min():.3f}-{pairs.max():.3f})",
                    f"{np.mean([r['record_seconds'] / r['steps'] * n_envs * 1e6 for r in ours]):.0f}",
                    f"{100 * np.mean([r['callback_seconds'] / r['seconds'] for r in ours]):.1f} %",
                    f"{np.mean([r['fits'] for r in ours]):.0f} fits, "
                    f"{np.mean([r['fit_seconds'] for r in ours]):.1f} s, "
                    f"{steps_per_second:.1f} gradient steps/s",
                ]
            )
        config = scenario["ppo"] or "the zoo's"
        report += (
            f"\n**{name}**: {scenario['env']}, PPO {config}, {scenario['steps']:,} steps, "
            f"{scenario['labels']} labels\n\n"
            + markdown_table(
                [
                    "run",
                    "steps/s",
                    "÷ plain (pair range)",
                    "`_record_step` µs per vector step (in-run)",
                    "rollout-end work (wall-clock share)",
                    "fitting (off the critical path when background)",
                ],
                rows,
            )
            + "\n"
        )
    return report


def _fitted_wrapper(n_envs: int, n_members: int) -> Any:
    from stable_baselines3.common.env_util import make_vec_env

    from prefwrap import PreferenceRewardWrapper

    venv = make_vec_env(ENV, n_envs=n_envs, seed=0)
    wrapper = PreferenceRewardWrapper(venv, n_members=n_members)
    encoder = wrapper.learned_reward.encoder
    rng = np.random.default_rng(0)
    observations = rng.normal(size=(4096, *encoder.observation_shape)).astype(np.float32)
    actions = rng.uniform(-1, 1, size=(4096, encoder.action_dim)).astype(np.float32)
    wrapper.learned_reward.refresh(observations, actions)  # marks it fitted, numpy snapshot
    return venv, wrapper


def _per_call_us(function: Any, repeats: int) -> float:
    function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats * 1e6


def inference(args: argparse.Namespace) -> str:
    import torch

    rows = []
    for n_envs in (1, 4, 16):
        for n_members in sorted({3, *args.inference_members}) if n_envs in (1, 16) else (3,):
            venv, wrapper = _fitted_wrapper(n_envs, n_members)
            actions = np.random.default_rng(1).uniform(-1, 1, size=(args.inference_steps, n_envs, 6))
            actions = actions.astype(np.float32)
            timings = {}
            for name, env in (("env", venv), ("wrapped", wrapper), ("env2", venv), ("wrapped2", wrapper)):
                env.reset()
                start = time.perf_counter()
                for action in actions:
                    env.step(action)
                timings[name] = (time.perf_counter() - start) / len(actions) * 1e6
            env_us = (timings["env"] + timings["env2"]) / 2
            wrapped_us = (timings["wrapped"] + timings["wrapped2"]) / 2
            reward = wrapper.learned_reward
            obs = reward.encoder.observations(np.random.default_rng(2).normal(size=(n_envs, 17)))
            act = reward.encoder.actions(actions[0])
            numpy_us = _per_call_us(lambda o=obs, a=act, r=reward: r.predict_features(o, a), 2000)
            with torch.no_grad():
                torch_us = _per_call_us(
                    lambda o=obs, a=act, r=reward: r.normalize(r.member_rewards(o, a).mean(dim=0).numpy()),
                    2000,
                )
            rows.append(
                [
                    n_envs,
                    n_members,
                    fmt(env_us, 0),
                    fmt(wrapped_us, 0),
                    fmt(wrapped_us - env_us, 0),
                    f"{wrapped_us / env_us:.3f}",
                    fmt(numpy_us, 1),
                    fmt(torch_us, 1),
                    f"{torch_us / numpy_us:.1f}",
                ]
            )
            print("inference", rows[-1], flush=True)
            venv.close()
    breakdown = [_record_step_breakdown(n_envs) for n_envs in BREAKDOWN_ENVS]
    parts = list(breakdown[0])
    return (
        f"#### 2. Reward inference per vector step ({ENV}, DummyVecEnv, MLP 64x64, fitted reward)\n\n"
        + markdown_table(
            [
                "n_envs",
                "members",
                "env step µs",
                "wrapped step µs",
                "overhead µs",
                "wrapped ÷ env",
                "predict µs (numpy snapshot)",
                "predict µs (torch)",
                "torch ÷ numpy",
            ],
            rows,
        )
        + "\n\n'wrapped' includes encoding, the learned reward, recording segments and episode bookkeeping; "
        "'predict' is `LearnedReward.predict_features` alone.\n\n"
        "Where `VecPreferenceRewardWrapper._record_step` spends its time (each part called alone on the same "
        "inputs, 3 members, µs per vector step):\n\n"
        + markdown_table(
            ["n_envs", *parts],
            [
                [n_envs, *(fmt(row[part], 1) for part in parts)]
                for n_envs, row in zip(BREAKDOWN_ENVS, breakdown, strict=True)
            ],
        )
        + "\n"
    )


def _record_step_breakdown(n_envs: int, repeats: int = 5000) -> dict[str, float]:
    """µs per call of each part of ``_record_step`` (recording.py) on one vector step's inputs."""
    from prefwrap.recording import _all_finite

    venv, wrapper = _fitted_wrapper(n_envs, 3)
    wrapper.reset()
    rng = np.random.default_rng(0)
    raw_observations = rng.normal(size=(n_envs, 17))
    raw_actions = rng.uniform(-1, 1, size=(n_envs, 6)).astype(np.float32)
    reward, encoder = wrapper.learned_reward, wrapper.learned_reward.encoder
    observations, actions = encoder.observations(raw_observations), encoder.actions(raw_actions)
    rewards, dones = np.zeros(n_envs, np.float32), np.zeros(n_envs, bool)
    learned = reward.predict_features(observations, actions)
    parts = {
        "encode obs + actions": lambda: (
            encoder.observations(raw_observations),
            encoder.actions(raw_actions),
        ),
        "finiteness checks (obs; true and learned rewards)": lambda: (
            _all_finite(observations),
            math.isfinite(np.vdot(rewards, learned)),
        ),
        "`predict_features` (numpy forward, mean and normalisation folded in)": lambda: (
            reward.predict_features(observations, actions)
        ),
        "`SegmentBuffer.add`": lambda: wrapper.segments.add(observations, actions, rewards, dones, 0),
        "`_track_episodes`": lambda: wrapper._track_episodes(rewards, rewards, dones),
        "`_record_step` (all)": lambda: wrapper._record_step(
            raw_observations, raw_actions, rewards, dones, None, None
        ),
    }
    result = {name: _per_call_us(function, repeats) for name, function in parts.items()}
    venv.close()
    print("breakdown", n_envs, result, flush=True)
    return result


def _synthetic_dataset(n_labels: int, n_members: int, horizon: int, seed: int) -> Any:
    from prefwrap.records import Preference, Query, Segment
    from prefwrap.reward.dataset import PreferenceDataset

    rng = np.random.default_rng(seed)
    dataset = PreferenceDataset(n_members, seed=seed)
    weights = rng.normal(size=17 + 6)
    n_segments = max(2, int(n_labels * 1.5))  # segments are reused across pairs, as in a run
    segments = []
    for segment_id in range(n_segments):
        observations = rng.normal(size=(horizon, 17)).astype(np.float32)
        actions = rng.uniform(-1, 1, size=(horizon, 6)).astype(np.float32)
        rewards = (np.concatenate([observations, actions], axis=1) @ weights).astype(np.float32)
        segments.append(Segment(segment_id, observations, actions, rewards, horizon))
    for query_id in range(n_labels):
        left, right = rng.choice(n_segments, size=2, replace=False)
        better = segments[left].true_return > segments[right].true_return
        dataset.add(
            Query(query_id, segments[left], segments[right]), Preference.LEFT if better else Preference.RIGHT
        )
    return dataset


def _refit_seconds(
    n_labels: int, n_members: int, epochs: int, epoch_labels: int | None = 2048
) -> tuple[float, float, float]:
    """``(refit s, evaluate s, validation accuracy)``: one warm refit of ``epochs`` passes."""
    from prefwrap.reward.fitting import RewardFitter
    from prefwrap.reward.mlp import MlpRewardEnsemble

    dataset = _synthetic_dataset(n_labels, n_members, horizon=30, seed=0)
    model = MlpRewardEnsemble(17, 6, n_members=n_members)
    fitter = RewardFitter(model, epochs=epochs, max_seconds=None, seed=0, epoch_labels=epoch_labels)
    fitter.fit(dataset, epochs=1)  # warm start, tensors built: later refits look like this one
    start = time.perf_counter()
    report = fitter.fit(dataset, epochs=epochs)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    fitter.evaluate(dataset)
    evaluate_seconds = (time.perf_counter() - start) * epochs  # fit() evaluates after every epoch
    return seconds, evaluate_seconds, report.validation_accuracy


def refit(args: argparse.Namespace) -> str:
    label_rows, member_rows = [], []
    for n_labels in args.label_counts:
        seconds, _, accuracy = _refit_seconds(n_labels, 3, args.fit_epochs)
        full_seconds, _, full_accuracy = _refit_seconds(n_labels, 3, args.fit_epochs, epoch_labels=None)
        label_rows.append(
            [
                f"{n_labels:,}",
                fmt(seconds, 3),
                fmt(accuracy, 3),
                fmt(full_seconds, 3),
                fmt(full_accuracy, 3),
                f"{seconds / full_seconds:.2f}",
            ]
        )
        print("refit", label_rows[-1], flush=True)
    reference = None
    for n_members in args.members:
        seconds, evaluate_seconds, _ = _refit_seconds(args.member_labels, n_members, args.fit_epochs)
        reference = reference or seconds / n_members
        member_rows.append(
            [
                n_members,
                fmt(seconds, 3),
                f"{seconds / reference:.2f}",
                f"{seconds / n_members / reference:.2f}",
                f"{100 * evaluate_seconds / seconds:.0f} %",
            ]
        )
        print("members", member_rows[-1], flush=True)
    return (
        f"#### 3. Refit time (one refit = {args.fit_epochs} epochs, warm start, MLP 64x64, segments of 30 "
        "steps of 17 + 6 features, synthetic labels)\n\n"
        + markdown_table(
            [
                "labels",
                "refit s (default: epoch_labels=2048)",
                "val acc",
                "refit s (epoch_labels=None: every label each epoch)",
                "val acc",
                "default ÷ every label",
            ],
            label_rows,
        )
        + f"\n\nEnsemble size at {args.member_labels:,} labels:\n\n"
        + markdown_table(
            ["members", "refit s", "÷ first row", "per member ÷ first row", "share in per-epoch evaluate()"],
            member_rows,
        )
        + "\n"
    )


def memory(args: argparse.Namespace) -> str:
    from prefwrap.segment_buffer import SegmentBuffer

    rows = []
    for capacity in args.capacities:
        gc.collect()
        tracemalloc.start()
        buffer = SegmentBuffer(16, 30, (17,), np.float32, 6, capacity=capacity)
        nbytes = sum(value.nbytes for value in vars(buffer).values() if isinstance(value, np.ndarray))
        rng = np.random.default_rng(0)
        observation, action = rng.normal(size=(16, 17)).astype(np.float32), np.zeros((16, 6), np.float32)
        no, reward = np.zeros(16, dtype=bool), np.zeros(16, np.float32)
        for step in range(capacity * 30 // 16 + 30):  # 16 sub-envs: fill every row
            buffer.add(observation, action, reward, no, step)
        rows.append(
            [
                f"{capacity:,}",
                f"{nbytes / 2**20:.1f}",
                f"{tracemalloc.get_traced_memory()[0] / 2**20:.1f}",
                f"{nbytes / capacity:,.0f}",
            ]
        )
        tracemalloc.stop()
        print("memory", rows[-1], flush=True)
        del buffer
    return (
        "#### 4. Segment buffer memory (HalfCheetah shapes: 30 steps × (17 obs + 6 action + 1 reward) "
        "float32)\n\n"
        + markdown_table(
            [
                "capacity (segments)",
                "array MiB",
                "allocated MiB after filling (tracemalloc)",
                "bytes per segment",
            ],
            rows,
        )
        + "\n\n"
        + _image_memory()
    )


def _image_memory() -> str:
    """Image observations: what the wrapper's image buffer holds under its default memory budget."""
    try:
        from prefwrap.segment_buffer import ImageSegmentBuffer
    except ImportError:
        return "(this prefwrap version has no ImageSegmentBuffer)\n"
    rows = []
    for frame_stack, shape in ((4, (84, 84, 4)), (1, (84, 84, 1))):
        buffer = ImageSegmentBuffer(8, 25, shape, 18, channels_first=False, frame_stack=frame_stack)
        rows.append(
            [
                f"{shape}, frame stack {frame_stack}",
                f"{buffer.memory_mb:g}",
                f"{buffer.capacity:,}",
                f"{buffer.nbytes / 2**20:.0f}",
                f"{buffer.bytes_per_step:,.0f}",
                f"{buffer.naive_bytes_per_step / buffer.bytes_per_step:.2f}",
            ]
        )
        del buffer
    return (
        "Image observations (Atari, 25-step segments, 8 envs), `ImageSegmentBuffer` with its default "
        "memory budget:\n\n"
        + markdown_table(
            [
                "observation",
                "budget MiB",
                "segments kept",
                "array MiB",
                "bytes per step",
                "copy-every-stack ÷ stored",
            ],
            rows,
        )
        + "\n"
    )


# (label, substring of "file:function") -> cumulative time; first match wins for a row
PROFILE_GROUPS = [
    ("PPO gradient updates (`PPO.train`)", "ppo.py:train"),
    ("rollout collection (`collect_rollouts`), of which:", "on_policy_algorithm.py:collect_rollouts"),
    ("- policy forward (`policy.forward`)", "policies.py:forward"),
    ("- env stack step (`VecNormalize.step_wait` and all below it), of which:", "vec_normalize.py:step_wait"),
    ("-- prefwrap wrapper `step_wait` (and the env below it), of which:", "wrapper.py:step_wait"),
    ("--- env (`DummyVecEnv.step_wait`: MuJoCo, gymnasium wrappers, Monitor)", "dummy_vec_env.py:step_wait"),
    ("--- `_record_step` (prefwrap's own per-step work), of which:", "recording.py:_record_step"),
    ("---- learned reward `predict_features`", "learned.py:predict_features"),
    ("---- `SegmentBuffer.add`", "segment_buffer.py:add"),
    ("---- encoder (flatten, clip actions)", "encoding.py:actions"),
    ("---- `_track_episodes`", "recording.py:_track_episodes"),
    ("- callback rollout end (queries, store, refits), of which:", "callback.py:_on_rollout_end"),
    ("-- waiting for a background refit (`RewardRefitting.finish`)", "refitting.py:finish"),
    ("-- synchronous refits (`RewardRefitting.refit`)", "refitting.py:refit"),
    ("-- queries (`_make_queries`)", "learner.py:_make_queries"),
    ("-- store writes (`PreferenceStore.add_queries`)", "preference_store.py:add_queries"),
]


def profile(args: argparse.Namespace) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    scenario = dict(SCENARIOS["dense"], steps=args.profile_steps, labels=args.profile_labels)
    train_once("background", scenario, seed=0)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = max(value[3] for value in stats.stats.values())  # the outermost call's cumulative time
    rows = []
    for label, pattern in PROFILE_GROUPS:
        cumulative = sum(
            value[3]
            for (filename, _, name), value in stats.stats.items()
            if f"{filename.rsplit('/', 1)[-1]}:{name}" == pattern
        )
        rows.append([label, fmt(cumulative, 2), f"{100 * cumulative / total:.1f} %"])
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(15)
    top = "\n".join(line for line in stream.getvalue().splitlines() if line.strip())[-3500:]
    print(top)
    return (
        f"#### 5. Profile: PPO + wrapper + callback on {ENV}, {args.profile_steps:,} steps, "
        f"{args.profile_labels} labels (cProfile, cumulative time, nested rows marked with '-'; total "
        f"{total:.1f} s)\n\n"
        + markdown_table(["component", "s", "share"], rows)
        + "\n\n<details><summary>Top functions by own time</summary>\n\n```\n"
        + top
        + "\n```\n</details>\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument(
        "--scenarios", nargs="+", choices=list(SCENARIOS), default=["paper", "dense", "pendulum"]
    )
    parser.add_argument("--repeats", type=int, default=3, help="throughput runs per arm (rotating order)")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads of every arm")
    parser.add_argument("--inference-steps", type=int, default=3000)
    parser.add_argument("--inference-members", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--label-counts", type=int, nargs="+", default=[100, 300, 1000, 3000, 10000])
    parser.add_argument("--members", type=int, nargs="+", default=[1, 3, 5, 10])
    parser.add_argument("--member-labels", type=int, default=1000)
    parser.add_argument("--fit-epochs", type=int, default=5)
    parser.add_argument("--capacities", type=int, nargs="+", default=[1000, 10_000, 100_000])
    parser.add_argument("--profile-steps", type=int, default=10_240)
    parser.add_argument("--profile-labels", type=int, default=100)
    parser.add_argument("--no-docs", action="store_true")
    args = parser.parse_args()

    snapshot_prefwrap()  # before prefwrap is imported: the whole run measures one version of it
    import torch

    # One thread by default: the figures then hold on a shared machine, and a background fit gets the
    # second core of a 2-core one.
    torch.set_num_threads(args.torch_threads)
    report = report_header("Speed and memory", workers=1)
    for section in args.sections:
        report += "\n" + globals()[section](args)
    print("\n" + report)
    if not args.no_docs:
        append_to_results_page(report)


if __name__ == "__main__":
    main()
