"""Shared parts of the benchmark scripts: train one arm for one seed, evaluate, report.

An *arm* is one way of training the same algorithm on the same task:

- ``true``: the environment reward (the upper reference);
- ``rlhf``: :class:`~prefwrap.PreferenceRewardWrapper` + :class:`~prefwrap.PreferenceCallback` with a
  :class:`~prefwrap.SyntheticOracle` and a label budget (``selection`` picks the query strategy);
- ``zero``: the wrapper without the callback, so the learned reward stays the constant 0: a policy
  that still improves on the true reward shows a leak (e.g. through episode termination).

A job is a plain JSON-able dict (see :func:`make_job`), so it can run in a worker process, be written
to a results file and be skipped on ``--resume``. Every result is one JSON line. Reports are markdown
with the command, commit and machine that produced them.

This module imports only the standard library and numpy at the top, so the imitation comparison can
reuse the PPO settings, env construction and evaluation from its own virtual environment
(older gymnasium and Stable-Baselines3).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RESULTS_PAGE = REPO / "docs" / "benchmarks-results.md"
IMAGE_DIR = REPO / "docs" / "img"
RUNS_DIR = REPO / "runs" / "benchmarks"  # raw JSON lines (gitignored with runs/)

# PPO settings: rl-baselines3-zoo's, read from prefwrap's copy of the zoo's hyperparams/ppo.yml by the
# loader `prefwrap train` uses (prefwrap.cli.hyperparams), matched by env name without version, so the
# v4 tasks the imitation library runs get the same settings as v5. "normalize": True is the zoo's
# VecNormalize on top of everything (observations and rewards, both arms alike); "obs" normalises
# observations only, below the reward wrapper (for libraries that cannot put a VecNormalize above
# their reward wrapper, such as imitation).
#
# Where the benchmarks differ from the zoo's values on purpose, said here: these settings are part of
# every job's --resume key (job_key) and of every recorded result, so they stay as the first runs had them.
ZOO_PPO_ENVS = ("Pendulum", "HalfCheetah", "Hopper", "Walker2d", "Reacher", "InvertedDoublePendulum")
"""Tasks that take the zoo's PPO values; any other task gets :data:`DEFAULT_PPO`."""
TANH_ENVS = ("HalfCheetah", "Hopper")
"""The first RLHF runs left out the zoo's activation_fn=nn.ReLU on these (tanh, SB3's default)."""
PPO_OVERRIDES: dict[str, dict[str, Any]] = {
    # The zoo's older, untuned Swimmer entry (its MuJoCo defaults plus gamma) that the benchmarks ran
    # with, not the tuned entry `prefwrap train` uses (4 envs, n_steps 1024, lr 6e-4...).
    "Swimmer": dict(n_envs=1, normalize=True, gamma=0.9999),
}
DEFAULT_PPO: dict[str, Any] = dict(n_envs=4)
ARM_KINDS = ("true", "rlhf", "zero", "coinflip", "blind")
LABELLED_KINDS = ("rlhf", "coinflip")  # arms with a label budget and a PreferenceCallback


def ppo_config(env_id: str) -> dict[str, Any]:
    """A copy of the PPO settings for ``env_id`` (any version), with ``n_envs`` and ``normalize``.

    The first call takes the source snapshot (:func:`snapshot_prefwrap`) if prefwrap is not imported
    yet: the zoo's values come from the same frozen copy of prefwrap the jobs run on.
    """
    name = re.sub(r"-v\d+$", "", env_id)
    if name in PPO_OVERRIDES:
        config = dict(PPO_OVERRIDES[name])
    elif name in ZOO_PPO_ENVS:
        config = _zoo_ppo(name)
    else:
        config = dict(DEFAULT_PPO)
    config.setdefault("normalize", False)
    return json.loads(json.dumps(config))


def _zoo_ppo(name: str) -> dict[str, Any]:
    """The zoo's PPO entry of the task ``name``, as PPO arguments plus ``n_envs`` and ``normalize``."""
    if "prefwrap" not in sys.modules:
        snapshot_prefwrap()
    from prefwrap.cli.hyperparams import zoo_table

    entries = {re.sub(r"-v\d+$", "", env_id): values for env_id, values in zoo_table("ppo").items()}
    config = entries[name]
    for key in ("n_timesteps", "policy"):  # the harness sets its own steps; MlpPolicy throughout
        config.pop(key, None)
    if name in TANH_ENVS:
        config["policy_kwargs"].pop("activation_fn")
    return config


def rollout_size(config: dict[str, Any]) -> int:
    """Environment steps PPO collects per update: ``n_steps * n_envs`` (SB3's default n_steps 2048)."""
    return int(config.get("n_steps", 2048)) * int(config["n_envs"])


def parse_kwargs(items: Sequence[str]) -> dict[str, Any]:
    """``["a=1", "b=False", "c=text"]`` -> ``{"a": 1, "b": False, "c": "text"}`` (JSON values)."""
    parsed = {}
    for item in items:
        key, value = item.split("=", 1)
        try:
            parsed[key] = json.loads(value.lower() if value in ("True", "False") else value)
        except json.JSONDecodeError:
            parsed[key] = value
    return parsed


def make_job(
    env: str,
    arm: str,
    seed: int,
    steps: int,
    *,
    kind: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    labels: int = 0,
    selection: str = "disagreement",
    learner_kwargs: dict[str, Any] | None = None,
    wrapper_kwargs: dict[str, Any] | None = None,
    decay_timesteps: float | None = None,
    eval_episodes: int = 20,
    eval_every: int = 0,
    curve_episodes: int = 5,
    ppo: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One training run as a JSON-able dict.

    Args:
        env: Gymnasium id.
        arm: Name of the arm in reports (``"true"``, ``"rlhf-700"``, ``"random-700"``, ...).
        seed: Seed of the env, the algorithm, the oracle and the learner.
        steps: Training timesteps.
        kind: ``"true"``, ``"rlhf"``, ``"zero"`` (the wrapper, no labels: a zero reward) or
            ``"coinflip"`` (labels answered by coin flips, ``SyntheticOracle(beta=0)``: a reward fitted
            to labels that say nothing about the true one) or ``"blind"`` (plain PPO, no prefwrap, on
            a reward of 0 in an env that never terminates: nothing reaches it, so its score is what
            PPO's drift alone gives, the floor a leak is measured against); default: ``arm`` itself.
        env_kwargs: Passed to ``gymnasium.make`` (training and evaluation alike).
        labels: Label budget of an ``rlhf`` arm.
        selection: ``"disagreement"`` or ``"random"`` (the ablation).
        learner_kwargs: Extra :class:`~prefwrap.PreferenceCallback` arguments.
        wrapper_kwargs: Extra :class:`~prefwrap.PreferenceRewardWrapper` arguments (e.g.
            ``segment_length``).
        decay_timesteps: Override the label schedule's ``c``.
        eval_episodes: Final evaluation episodes (deterministic policy, true reward).
        eval_every: Evaluate every this many steps during training for a learning curve (0: never).
        curve_episodes: Episodes per learning-curve checkpoint.
        ppo: PPO settings; default :func:`ppo_config` of ``env``.
    """
    kind = kind or arm
    if kind not in ARM_KINDS:
        raise ValueError(f"arm kind must be one of {ARM_KINDS}, got {kind!r}")
    if kind in LABELLED_KINDS and labels < 1:
        raise ValueError(f"an {kind} arm needs a label budget >= 1, got {labels}")
    return dict(
        env=env,
        env_kwargs=env_kwargs or {},
        arm=arm,
        kind=kind,
        seed=seed,
        steps=steps,
        labels=labels if kind in LABELLED_KINDS else 0,
        selection=selection,
        learner_kwargs=learner_kwargs or {},
        wrapper_kwargs=wrapper_kwargs or {},
        decay_timesteps=decay_timesteps,
        eval_episodes=eval_episodes,
        eval_every=eval_every,
        curve_episodes=curve_episodes,
        ppo=ppo if ppo is not None else ppo_config(env),
    )


def make_env(
    env_id: str,
    n_envs: int,
    seed: int,
    env_kwargs: dict[str, Any],
    normalize: bool | str,
    blind: bool = False,
) -> Any:
    """The training VecEnv below any reward wrapper: with normalize="obs", observations are normalised
    here (rewards untouched); normalize=True is applied on top by :func:`wrap_top`. ``blind``: every
    reward is 0 and episodes never terminate (they run to the time limit)."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    if blind:
        venv = make_vec_env(lambda: _blind_env(env_id, env_kwargs), n_envs=n_envs, seed=seed)
    else:
        venv = make_vec_env(env_id, n_envs=n_envs, seed=seed, env_kwargs=env_kwargs)
    if normalize == "obs":
        venv = VecNormalize(venv, norm_reward=False)
    return venv


def _blind_env(env_id: str, env_kwargs: dict[str, Any]) -> Any:
    """``env_id`` with reward 0 and no termination: the raw env (gymnasium's order checks refuse a
    step after termination) under its registered time limit."""
    import gymnasium as gym
    from gymnasium.wrappers import TimeLimit

    class Blind(gym.Wrapper):
        def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
            observation, _, _, truncated, info = self.env.step(action)
            return observation, 0.0, False, truncated, info

    raw = gym.make(env_id, **env_kwargs).unwrapped
    return Blind(TimeLimit(raw, gym.spec(env_id).max_episode_steps))


def wrap_top(venv: Any, normalize: bool | str, gamma: float) -> Any:
    """The zoo's VecNormalize (observations and rewards) on top of the stack when normalize=True."""
    if normalize is True:
        from stable_baselines3.common.vec_env import VecNormalize

        return VecNormalize(venv, gamma=gamma)
    return venv


def evaluate(
    model: Any, env_id: str, env_kwargs: dict[str, Any], seed: int, episodes: int, train_env: Any
) -> float:
    """Mean true return of the deterministic policy over ``episodes`` on fresh envs (seed 10,000 + seed),
    with the training stack's observation normalisation, if any, frozen."""
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecNormalize, unwrap_vec_normalize

    eval_env = make_vec_env(env_id, n_envs=1, seed=10_000 + seed, env_kwargs=env_kwargs)
    normalizer = unwrap_vec_normalize(train_env)
    if normalizer is not None:
        eval_env = VecNormalize(eval_env, training=False, norm_reward=False)
        eval_env.obs_rms = normalizer.obs_rms
    mean_return, _ = evaluate_policy(model, eval_env, n_eval_episodes=episodes)
    eval_env.close()
    return float(mean_return)


def _curve_callback(job: dict[str, Any], train_env: Any) -> Any:
    """An SB3 callback that evaluates the policy every ``eval_every`` steps (its time kept apart)."""
    from stable_baselines3.common.callbacks import BaseCallback

    class LearningCurve(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.points: list[tuple[int, float]] = []
            self.seconds = 0.0
            self._next = 0

        def _evaluate(self) -> None:
            start = time.perf_counter()
            value = evaluate(
                self.model, job["env"], job["env_kwargs"], job["seed"], job["curve_episodes"], train_env
            )
            self.points.append((int(self.num_timesteps), value))
            self.seconds += time.perf_counter() - start
            self._next = self.num_timesteps + job["eval_every"]

        def _on_training_start(self) -> None:
            self._evaluate()

        def _on_step(self) -> bool:
            return True

        def _on_rollout_end(self) -> None:
            if self.num_timesteps >= self._next:
                self._evaluate()

    return LearningCurve()


def run_arm(job: dict[str, Any]) -> dict[str, Any]:
    """Train one arm for one seed (a :func:`make_job` dict); returns its result dict.

    ``seconds`` is the wall-clock of ``learn()`` minus the time spent on learning-curve evaluations.
    """
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import CallbackList
    from stable_baselines3.common.utils import set_random_seed

    from prefwrap import DecayingSchedule, PreferenceCallback, PreferenceRewardWrapper, SyntheticOracle
    from prefwrap.cli.hyperparams import HyperParams

    torch.set_num_threads(1)
    seed = job["seed"]
    set_random_seed(seed)  # the reward ensemble's initial weights differ per seed, as the policy's do
    config = dict(job["ppo"])
    n_envs = config.pop("n_envs")
    normalize = config.pop("normalize", False)
    venv = make_env(job["env"], n_envs, seed, job["env_kwargs"], normalize, blind=job["kind"] == "blind")
    # zoo notation ("lin_3e-4", "nn.ReLU") -> objects, as `prefwrap train` does
    config = HyperParams(model_kwargs=config).algorithm_kwargs(venv.action_space)
    callbacks = []
    preference = None
    if job["kind"] not in ("true", "blind"):
        venv = PreferenceRewardWrapper(venv, **job.get("wrapper_kwargs", {}))
    if job["kind"] in LABELLED_KINDS:
        learner_kwargs = dict(job["learner_kwargs"])
        if job["decay_timesteps"]:
            learner_kwargs["schedule"] = DecayingSchedule(
                job["labels"], decay_timesteps=job["decay_timesteps"]
            )
        preference = PreferenceCallback(
            venv,
            # beta=0: the Boltzmann-rational answer at zero rationality, a fair coin
            oracle=SyntheticOracle(seed=seed, beta=0.0 if job["kind"] == "coinflip" else math.inf),
            total_labels=job["labels"],
            selection=job["selection"],
            seed=seed,
            **learner_kwargs,
        )
        callbacks.append(preference)
    venv = wrap_top(venv, normalize, config.get("gamma", 0.99))
    curve = _curve_callback(job, venv) if job["eval_every"] else None
    if curve is not None:
        callbacks.append(curve)
    model = PPO("MlpPolicy", venv, seed=seed, device="cpu", **config)
    start = time.perf_counter()
    model.learn(job["steps"], callback=CallbackList(callbacks) if callbacks else None)
    seconds = time.perf_counter() - start - (curve.seconds if curve else 0.0)
    final = evaluate(model, job["env"], job["env_kwargs"], seed, job["eval_episodes"], venv)
    result: dict[str, Any] = {
        "env": job["env"],
        "arm": job["arm"],
        "seed": seed,
        "return": final,
        "seconds": seconds,
        "steps": int(model.num_timesteps),
        "prefwrap_source": str(Path(sys.modules["prefwrap"].__file__).parent),
    }
    if preference is not None:
        result["labels"] = preference.learner.n_labels
        last_fit = preference.learner.last_fit
        result["val_accuracy"] = last_fit.validation_accuracy if last_fit else float("nan")
    if curve is not None:  # the final evaluation (more episodes) replaces a checkpoint at the same step
        points = [point for point in curve.points if point[0] < model.num_timesteps]
        result["curve"] = [*points, (int(model.num_timesteps), final)]
    return result


def random_return(env_id: str, env_kwargs: dict[str, Any], episodes: int) -> float:
    """Mean true return of uniformly random actions (the 0 of a normalised score)."""
    import gymnasium as gym

    env = gym.make(env_id, **env_kwargs)
    returns = []
    for episode in range(episodes):
        env.reset(seed=20_000 + episode)
        env.action_space.seed(episode)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


# ---------------------------------------------------------------------------------------------------
# Running many jobs


def job_key(job: dict[str, Any]) -> str:
    return json.dumps(job, sort_keys=True)


def load_results(path: Path) -> dict[str, dict[str, Any]]:
    """Results already in a JSON-lines file, by :func:`job_key` (for ``--resume``)."""
    if not path.exists():
        return {}
    results = {}
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            results[record["job_key"]] = record
    return results


SWEEP_INSTALL = 'pip install "prefwrap[sweep]"'


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--workers`` and ``--address`` flags every sweep script takes (see :func:`run_jobs`)."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=int,
        default=None,
        help="CPUs of the local Ray instance, i.e. jobs at once (default: every core Ray sees)",
    )
    where.add_argument(
        "--address",
        default=None,
        help="join this Ray cluster (HOST:6379, or auto on one of its nodes) instead of starting one here",
    )


def jobs_at_once(args: argparse.Namespace) -> int | None:
    """For a report: how many jobs ran at once on this machine (``None`` on a cluster)."""
    if args.address is not None:
        return None
    return args.workers or os.cpu_count()


def run_jobs(
    jobs: Sequence[dict[str, Any]],
    workers: int | None = None,
    out: Path | None = None,
    resume: bool = False,
    function: Callable[[dict[str, Any]], dict[str, Any]] = run_arm,
    *,
    address: str | None = None,
) -> list[dict[str, Any]]:
    """Run jobs as Ray tasks, one fresh worker process each; print and append each result as a JSON
    line to ``out`` as it finishes; with ``resume``, jobs already in ``out`` are not run again.
    Results come back in the order of ``jobs``.

    Ray runs on this machine with ``workers`` CPUs (default: all) unless ``address`` names a cluster
    to join; a Ray instance the caller already started is used as it is (and left running).
    Every job asks Ray for 1 CPU, and 1 GPU when its ``device`` is CUDA.

    Raises:
        SystemExit: Ray is not installed (the ``sweep`` extra); one line that says how to install it.
        ValueError: ``workers`` and ``address`` together (a cluster's size is the cluster's).
    """
    ray = _import_ray()
    if workers is not None and address is not None:
        raise ValueError(f"--workers {workers} sizes a local Ray instance; a cluster ({address}) has its own")
    snapshot_prefwrap()
    done = load_results(out) if (out is not None and resume) else {}
    keys = [job_key(job) for job in jobs]
    todo = [(key, job) for key, job in zip(keys, jobs, strict=True) if key not in done]
    if done:
        print(f"resuming: {len(jobs) - len(todo)} of {len(jobs)} jobs already in {out}", flush=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
    for record in _execute(ray, todo, workers, address, function):
        done[record["job_key"]] = record
        print(json.dumps({k: v for k, v in record.items() if k not in ("job_key", "curve")}), flush=True)
        if out is not None:
            with out.open("a") as file:
                file.write(json.dumps(record) + "\n")
    return [done[key] for key in keys]


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SystemExit(f"the benchmark sweeps run on Ray, not installed here: {SWEEP_INSTALL}") from None
    return ray


def job_resources(job: dict[str, Any]) -> dict[str, float]:
    """What one job asks Ray for: 1 CPU (torch runs single-threaded), 1 GPU if its device is CUDA."""
    return {"num_cpus": 1, "num_gpus": 1 if str(job.get("device", "cpu")).startswith("cuda") else 0}


def _runtime_env(address: str | None) -> dict[str, Any]:
    """How the workers find the frozen prefwrap source and this folder (for ``harness`` itself).

    On this machine: the same paths, first on PYTHONPATH, as spawned processes had them. On a cluster
    the nodes cannot see them, so Ray uploads both: the snapshot as a module, this folder as the
    working directory (the workers' current directory and first on their path).
    """
    snapshot = RUNS_DIR / f"prefwrap-src-{_SNAPSHOT['digest']}"
    benchmarks = Path(__file__).resolve().parent
    if address is None:
        paths = [str(snapshot), str(benchmarks), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
        return {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(path for path in paths if path))}}
    return {
        "py_modules": [str(snapshot / "prefwrap")],
        "working_dir": str(benchmarks),
        "excludes": [".venv-imitation/", "__pycache__/"],
    }


def _execute(
    ray: Any,
    todo: list[tuple[str, dict[str, Any]]],
    workers: int | None,
    address: str | None,
    function: Callable[[dict[str, Any]], dict[str, Any]],
) -> Iterator[dict[str, Any]]:
    """Submit every job, yield results as they finish; the first failure cancels the rest."""
    if not todo:
        return
    started = not ray.is_initialized()
    if started:  # Ray uploads local folders only for a whole job, so the environment goes here
        # "local": a new instance even where `ray start` left one running (ray.init() would join it)
        ray.init(address=address or "local", num_cpus=workers, runtime_env=_runtime_env(address))
        options: dict[str, Any] = {}
    else:  # a caller's Ray instance, taken to be on this machine: the paths, task by task
        options = {"runtime_env": _runtime_env(None)}
    try:
        # max_calls=1: a fresh interpreter per job, so no state (torch threads, RNGs, caches) leaks
        # between arms; a job Ray loses with its node is retried (max_retries), a job that raises is not.
        task = ray.remote(max_calls=1)(function)
        pending = {task.options(**options, **job_resources(job)).remote(job): key for key, job in todo}
        while pending:
            [ready], _ = ray.wait(list(pending), num_returns=1)
            key = pending.pop(ready)
            try:
                result = ray.get(ready)
            except BaseException:
                for ref in pending:
                    ray.cancel(ref, force=True)
                raise
            yield {**result, "job_key": key}
    finally:
        if started:
            ray.shutdown()


# ---------------------------------------------------------------------------------------------------
# Reporting


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    array = np.asarray(list(values), dtype=float)
    if array.size == 0:
        return float("nan"), float("nan")
    return float(array.mean()), float(array.std())


def normalised_score(value: float, random: float, true: float) -> float:
    """``(R - R_random) / (R_true - R_random)``: 1 = as good as training on the true reward."""
    return (value - random) / (true - random) if true != random else float("nan")


def fmt(value: float, digits: int = 1) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def fmt_spread(mean: float, std: float, digits: int = 1) -> str:
    return f"{fmt(mean, digits)} ± {fmt(std, digits)}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


_SNAPSHOT: dict[str, str] = {}


def snapshot_prefwrap() -> str:
    """Run this process and its workers on a frozen copy of ``src/prefwrap``; returns its digest.

    prefwrap is installed in editable mode, and its source may change while a long benchmark runs
    (each job starts a fresh interpreter that imports it again). The copy goes to
    ``runs/benchmarks/prefwrap-src-<digest>/`` and is put first on ``sys.path``, which spawned workers
    inherit, so every job of a run uses the same code, named in the report.
    """
    if _SNAPSHOT:
        return _SNAPSHOT["digest"]
    if "prefwrap" in sys.modules:
        raise RuntimeError("snapshot_prefwrap() must run before prefwrap is imported")
    source = REPO / "src" / "prefwrap"
    files = sorted(
        path
        for pattern in ("*.py", "*.yml")
        for path in source.rglob(pattern)
        if "__pycache__" not in path.parts
    )  # the code and its package data (the zoo's hyperparameters)
    digest = hashlib.sha1()
    for path in files:
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes() + b"\0")
    short = digest.hexdigest()[:10]
    _SNAPSHOT.update(digest=short, commit=_git_commit_now())
    root = RUNS_DIR / f"prefwrap-src-{short}"
    if not (root / "prefwrap").exists():
        staging = RUNS_DIR / f".staging-{os.getpid()}"
        for path in files:
            target = staging / "prefwrap" / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        staging.replace(root)
    sys.path.insert(0, str(root))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    return short


def _git_commit_now() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=REPO).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "src", "benchmarks")
    return f"{commit}+uncommitted changes" if dirty else commit


def git_commit() -> str:
    """Short commit hash ("+uncommitted changes" when src/ or benchmarks/ differ from it), taken when
    prefwrap's source was snapshot, with the snapshot's digest."""
    if _SNAPSHOT:
        return f"{_SNAPSHOT['commit']}, prefwrap source sha1 {_SNAPSHOT['digest']}"
    return _git_commit_now()


def machine() -> str:
    """CPU model, cores, memory, load and library versions, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        memory = ""
    versions = []
    for name in ("torch", "stable_baselines3", "gymnasium", "mujoco"):
        try:
            module = __import__(name)
            versions.append(f"{name} {module.__version__}")
        except ImportError:
            pass
    load = ", load {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg()) if hasattr(os, "getloadavg") else ""
    return f"{cpu}, {os.cpu_count()} cores{memory}{load}; Python {platform.python_version()}, " + ", ".join(
        versions
    )


def command_line() -> str:
    return "python " + " ".join([os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]])


def report_header(title: str, workers: int | None = None) -> str:
    """Markdown heading plus the command, commit, machine and date of this run."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    worker_text = f", {workers} worker process{'es' if workers != 1 else ''}" if workers else ""
    return (
        f"### {title}\n\n"
        f"- command: `{command_line()}`\n"
        f"- commit: `{git_commit()}`, {when}\n"
        f"- machine: {machine()}{worker_text}\n"
    )


def append_to_results_page(markdown: str, page: Path = RESULTS_PAGE) -> None:
    """Append a section to docs/benchmarks-results.md (created with its title if missing)."""
    if not page.exists():
        page.write_text(
            "# Benchmark results\n\nRaw results of the scripts in `benchmarks/`, newest last. Each section "
            "names the command, commit and machine that produced it; every figure is a ratio measured "
            "side by side in one run.\n"
        )
    with page.open("a") as file:
        file.write("\n" + markdown.rstrip() + "\n")


def run_dir(name: str) -> Path:
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    return RUNS_DIR / name
