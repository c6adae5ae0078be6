"""The callbacks ``prefwrap train`` adds to SB3's loop: refit lines, a true progress bar, periodic
true-reward evaluations, and the step count a run really trains.

SB3 trains in whole rollouts (on-policy: ``n_steps x n_envs`` steps; off-policy: ``train_freq x n_envs``),
so ``learn(50_000)`` may end at 53,248: :func:`rounded_steps` says in advance where a run will end,
and the run's ``--steps`` becomes that number, said once.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import EvalCallback, ProgressBarCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.type_aliases import TrainFrequencyUnit
from stable_baselines3.common.vec_env import VecTransposeImage

from prefwrap.callback import PreferenceCallback, refit_text
from prefwrap.cli.report import accuracy_text

if TYPE_CHECKING:
    from prefwrap.cli.build import Setup
    from prefwrap.reward.dataset import PreferenceDataset
    from prefwrap.reward.fitting import FitReport
    from prefwrap.wrapper import PreferenceRewardWrapper

EVAL_SEED_OFFSET = 20_000
"""Periodic evaluation envs are seeded ``seed + 20,000``: never a training or final-evaluation seed."""


def validation_pairs(dataset: PreferenceDataset) -> int:
    """Held-out decided pairs per ensemble member (mean over members): the size behind val. accuracy.

    Each member trains on a bootstrap of the labels; the labels it never draws (count 0) are its
    validation set, and each counts the strictly ordered pairs of its answer (1 for a decided pair,
    0 for "equal", up to K(K-1)/2 for a ranking of K), as
    :meth:`~prefwrap.reward.fitting.RewardFitter.evaluate` scores them.
    """
    if len(dataset) == 0:
        return 0
    labels = dataset.labels()
    decided = np.zeros(len(labels.sizes))
    for size, group in labels.groups.items():
        ranks = group.ranks.numpy()  # (L_K, K): each position's group, 0 = best
        ordered = (ranks[:, :, None] != ranks[:, None, :]).sum(axis=(1, 2)) / 2
        rows = np.flatnonzero(labels.sizes.numpy() == size)
        decided[rows] = ordered[labels.index.numpy()[rows]]
    held_out = (labels.counts.numpy() == 0) * decided[:, None]  # (L, E)
    return round(float(held_out.sum(axis=0).mean()))


class CliPreferenceCallback(PreferenceCallback):
    """:class:`~prefwrap.callback.PreferenceCallback` whose refit line names the validation set's size.

    Args:
        *args: As :class:`~prefwrap.callback.PreferenceCallback`.
        print_refits: Print one line per refit (``-v 1`` and up).
        **kwargs: As :class:`~prefwrap.callback.PreferenceCallback`.
    """

    def __init__(self, *args: Any, print_refits: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.print_refits = print_refits

    def _report_refit(self, report: FitReport) -> None:
        n_pairs = validation_pairs(self.learner.dataset)
        self.logger.record("pref/val_pairs", n_pairs)
        if self.print_refits:
            print(
                f"[prefwrap] step {self.num_timesteps:,}: {self.learner.n_labels} labels, val acc "
                f"{accuracy_text(report.validation_accuracy, n_pairs)}, {refit_text(report)}"
            )


class StepsBar(ProgressBarCallback):
    """SB3's progress bar counting the run's steps (``initial`` of ``total``), resumed runs included."""

    def __init__(self, total: int) -> None:
        super().__init__()
        self.total = total

    def _on_training_start(self) -> None:
        from tqdm.rich import tqdm

        self.pbar = tqdm(total=max(self.total, self.model.num_timesteps), initial=self.model.num_timesteps)

    def close(self) -> None:
        """Close the bar (idempotent): SB3 leaves it open when training stops on an error."""
        if getattr(self, "pbar", None) is not None:
            self.pbar.close()


def rollout_steps(model: BaseAlgorithm) -> int | None:
    """Steps one collection of ``model`` takes (all envs); ``None`` when it counts in episodes."""
    if isinstance(model, OnPolicyAlgorithm):
        return int(model.n_steps * model.n_envs)
    if isinstance(model, OffPolicyAlgorithm):
        train_freq = model.train_freq
        if getattr(train_freq, "unit", None) == TrainFrequencyUnit.STEP:
            return int(train_freq.frequency * model.n_envs)
    return None


def rounded_steps(asked: int, start: int, model: BaseAlgorithm) -> tuple[int, int | None]:
    """Where ``learn`` from ``start`` towards ``asked`` ends, and the rollout size (``None``: unknown)."""
    unit = rollout_steps(model)
    if unit is None or asked <= start:
        return asked, unit
    return start + math.ceil((asked - start) / unit) * unit, unit


def make_eval_callback(
    setup: Setup, run_path: Path, wrapper: PreferenceRewardWrapper, start_step: int
) -> EvalCallback | None:
    """SB3's :class:`EvalCallback` on a separate single env scored by the **true** reward (Monitor's
    returns), every ``--eval-freq`` steps: ``evaluations.npz`` (the zoo's format, earlier sessions'
    entries up to ``start_step`` kept), ``best_model.zip`` and ``eval/mean_reward`` in the logs.

    The evaluation stack mirrors the training one (a preference wrapper that never queries, a frozen
    ``VecNormalize`` that SB3 syncs, ``VecTransposeImage`` for channel-last images as SB3 adds to the
    training one), so SB3 can copy the normaliser's statistics across.
    """
    from prefwrap.cli.envs import make_base_env, with_normalizer
    from prefwrap.wrapper import PreferenceRewardWrapper

    config = setup.config
    if config.eval_freq < 1:
        return None
    base = make_base_env(setup, 1, config.seed + EVAL_SEED_OFFSET)
    eval_wrapper = PreferenceRewardWrapper(
        base, reward_model=wrapper.learned_reward, segment_length=wrapper.segment_length, buffer_size=64
    )
    eval_env = with_normalizer(eval_wrapper, setup.params, None, training=False)
    if is_image_space(eval_env.observation_space) and not is_image_space_channels_first(
        eval_env.observation_space  # type: ignore[arg-type]
    ):
        # SB3 puts the training stack of channel-last images under VecTransposeImage; mirror it, or
        # EvalCallback warns that the stacks differ and syncs their layers out of step
        eval_env = VecTransposeImage(eval_env)
    callback = EvalCallback(
        eval_env,
        n_eval_episodes=config.eval_episodes,
        eval_freq=max(1, config.eval_freq // config.n_envs),
        log_path=str(run_path),
        best_model_save_path=str(run_path),
        deterministic=True,
        verbose=0,
    )
    _continue_evaluations(callback, run_path / "evaluations.npz", start_step)
    return callback


def _continue_evaluations(callback: EvalCallback, path: Path, start_step: int) -> None:
    """Keep the evaluations of earlier sessions (up to ``start_step``) in ``evaluations.npz``."""
    if start_step == 0 or not path.is_file():
        return
    with np.load(path) as data:
        keep = data["timesteps"] <= start_step
        callback.evaluations_timesteps = [int(t) for t in data["timesteps"][keep]]
        callback.evaluations_results = [list(r) for r in data["results"][keep]]
        callback.evaluations_length = [list(n) for n in data["ep_lengths"][keep]]
    if callback.evaluations_results:
        callback.best_mean_reward = float(max(np.mean(r) for r in callback.evaluations_results))
