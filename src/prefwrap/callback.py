"""PreferenceCallback: plugs preference learning into any SB3 algorithm's ``learn()``."""

from __future__ import annotations

import math
import os
import sys
import warnings
from typing import Any

import numpy as np
from sb3_contrib import ARS
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.her.her_replay_buffer import HerReplayBuffer

from prefwrap.demonstrations import Trajectory
from prefwrap.diagnostics import CORRELATION_WARNING, DIAGNOSTICS_EVERY, DISAGREEMENT_WARNING
from prefwrap.env_utils import check_layers_above, find_preference_wrapper
from prefwrap.learner import PreferenceLearner
from prefwrap.oracles.base import Oracle
from prefwrap.relabel import DeferredTerminations, relabel_replay_buffer
from prefwrap.reward.fitting import FitReport
from prefwrap.store import PreferenceStore
from prefwrap.wrapper import HER_REFUSAL, PreferenceRewardWrapper

OFF_POLICY_FIT_LAG = 1_000
"""Env steps a background refit runs alongside an off-policy algorithm before it is installed."""
FIT_PROGRESS_EVERY_S = 10.0
"""With ``verbose``, a fit running longer prints a progress line about this often."""


def refit_text(report: FitReport) -> str:
    """``refit 1.23s (456 gradient steps/s)``: a refit's cost and how much work it did."""
    rate = report.gradient_steps / max(report.seconds, 1e-9)
    return f"refit {report.seconds:.2f}s ({rate:.{0 if rate >= 10 else 2}f} gradient steps/s)"


class PreferenceCallback(BaseCallback):
    """Queries an oracle on a label schedule and refits the learned reward while SB3 trains.

    At each rollout end it asks for the labels due (see :class:`~prefwrap.schedule.DecayingSchedule`),
    writes every answer to the store, refits the reward ensemble when new labels arrived and, for
    off-policy algorithms (SAC, TD3, DQN), relabels the whole replay buffer with the new reward; once
    the reward is anchored, the buffer's terminations that reached the agent as time limits are made
    terminations again (docs/concepts.md#termination). On-policy algorithms (PPO, A2C, TRPO) train on
    the rollout as collected: relabelling it with the reward just fitted on its own segments made PPO
    learn markedly worse in our Pendulum benchmark.
    Metrics go to the SB3 logger under ``pref/``.

    Args:
        env: The :class:`PreferenceRewardWrapper` the model trains on (or a VecEnv stack holding it).
        oracle: Who answers queries: :class:`SyntheticOracle`, ``FileOracle``, ``HumanOracle`` or your own.
        total_labels: Label budget of the run.
        store: Path of the durable preference store (sqlite; resumed if it exists), a
            :class:`PreferenceStore`, or ``None`` for an in-memory store.
        relabel: Relabel the replay buffer after each refit (off-policy algorithms cannot learn without it).
        total_timesteps: Length of the whole run in env steps, which the label schedule spreads the
            budget over. ``None``: what ``learn(total_timesteps)`` says, which is only the current chunk
            when you train in chunks (``learn(..., reset_num_timesteps=False)`` in a loop): give the
            overall length then, or the whole budget is asked in the first chunk.
        verbose: 1 prints a line per refit.
        query_size: Segments per query: 2 asks about pairs (the paper), 3 to 6 asks the oracle to rank
            them (``docs/concepts.md#rankings``).
        demonstrations: Expert trajectories, an ``.npz`` path or a list of
            :class:`~prefwrap.demonstrations.Trajectory`, turned into preferences "demonstration ≻
            policy" (``docs/concepts.md#demonstrations``).
        synchronous: Refit at the rollout end where labels arrived, blocking training, instead of in
            a background thread (``docs/concepts.md#background-refits``).
        fit_lag: Env steps from the start of a background fit to its install; default one rollout
            on-policy, 1,000 steps off-policy.
        wait_for_fit: At the install point, wait for a background fit still running (the run then
            repeats exactly); ``False`` trains on with the installed reward and installs the fit at
            the first rollout end after it is done (the paper's asynchronous reward training).
            ``None`` (default): wait for MLP rewards, not for CNN rewards, whose fits on a CPU take
            longer than many rollouts (``docs/concepts.md#background-refits``). The first fit is
            always waited for, so the agent never trains on the unfitted reward past ``fit_lag``.
        **learner_kwargs: Passed to :class:`~prefwrap.learner.PreferenceLearner` (schedule, selection,
            query_batch_size, max_pending, fit_epochs, seed, demo_weight, demo_pairs_per_round, ...).

    Raises:
        TypeError: ``env`` holds no :class:`PreferenceRewardWrapper` (at construction), or the model's
            env has none (at the start of ``learn``).
        ValueError: ``total_timesteps < 1`` or ``fit_lag < 0``; at the start of ``learn``: the model
            trains on another wrapper, a wrapper that must sit below the preference wrapper sits above
            it, the model uses ``HerReplayBuffer`` (its rewards would be the true reward), or
            ``total_labels`` exceeds the segments the run records.

    Example:
        >>> from stable_baselines3 import PPO
        >>> from stable_baselines3.common.env_util import make_vec_env
        >>> from prefwrap import PreferenceCallback, PreferenceRewardWrapper, SyntheticOracle
        >>> venv = PreferenceRewardWrapper(make_vec_env("Pendulum-v1", n_envs=2))
        >>> callback = PreferenceCallback(venv, oracle=SyntheticOracle(), total_labels=20, min_segments=8)
        >>> _ = PPO("MlpPolicy", venv, n_steps=256).learn(1024, callback=callback)
        >>> callback.learner.n_labels > 0
        True
    """

    def __init__(
        self,
        env: PreferenceRewardWrapper | VecEnv,
        oracle: Oracle,
        total_labels: int = 700,
        *,
        store: PreferenceStore | str | os.PathLike | None = None,
        relabel: bool = True,
        total_timesteps: int | None = None,
        verbose: int = 0,
        query_size: int = 2,
        demonstrations: str | os.PathLike | list[Trajectory] | None = None,
        synchronous: bool = False,
        fit_lag: int | None = None,
        wait_for_fit: bool | None = None,
        **learner_kwargs: Any,
    ) -> None:
        super().__init__(verbose)
        if fit_lag is not None and fit_lag < 0:
            raise ValueError(f"fit_lag must be >= 0 env steps, got {fit_lag}")
        if total_timesteps is not None and total_timesteps < 1:
            raise ValueError(
                f"total_timesteps must be >= 1 (the whole run's env steps), got {total_timesteps}"
            )
        self.wrapper = find_preference_wrapper(env)
        self.learner = PreferenceLearner(
            self.wrapper,
            oracle,
            total_labels,
            store=store,
            query_size=query_size,
            demonstrations=demonstrations,
            **learner_kwargs,
        )
        self.relabel = relabel
        self.total_timesteps = total_timesteps
        self.synchronous = synchronous
        self.fit_lag = fit_lag
        self.wait_for_fit = (
            not self.wrapper.learned_reward.encoder.image_observations
            if wait_for_fit is None
            else wait_for_fit
        )
        self._fit_lag = 0
        self._progress_printed_at = 0.0
        if verbose >= 1:
            self.learner.fitter.progress = self._print_fit_progress
        self._total_timesteps = 0
        self._warned: set[str] = set()
        self._announced_wait = False
        self._refitted = False
        self._diagnosed_at = 0
        self._announced_queries = False
        self._deferred = DeferredTerminations()
        self._off_policy = False  # set when the model is known: checked on every step

    def _init_callback(self) -> None:
        try:
            found = find_preference_wrapper(self.model.get_env())
        except TypeError as error:
            raise TypeError(
                "the model's env has no PreferenceRewardWrapper: build the model on the wrapped env, "
                "e.g. venv = PreferenceRewardWrapper(make_vec_env(...)); PPO('MlpPolicy', venv)"
            ) from error
        if found is not self.wrapper:
            raise ValueError(
                "PreferenceCallback was given a different PreferenceRewardWrapper than the one the model "
                "trains on: pass the same wrapped env to the model and to the callback."
            )
        check_layers_above(self.model.get_env(), self.wrapper)
        self._off_policy = isinstance(self.model, OffPolicyAlgorithm)
        if isinstance(getattr(self.model, "replay_buffer", None), HerReplayBuffer):
            raise ValueError(HER_REFUSAL)
        if isinstance(self.model, ARS):
            raise ValueError(
                "ARS ranks its candidate policies by the episode returns Monitor records, i.e. the env's "
                "TRUE reward, not the reward the wrapper returns: use PPO, A2C, TRPO, SAC, TD3, DQN, "
                "TQC, QR-DQN or CrossQ with PreferenceCallback."
            )

    def _on_training_start(self) -> None:
        # SB3's _total_timesteps is this learn() call's end; an explicit total_timesteps spans the chunks
        self._total_timesteps = self.total_timesteps or int(self.model._total_timesteps)
        if self.total_timesteps is None and self.model.num_timesteps > 0:
            warnings.warn(
                "learn() continues a run (num_timesteps > 0) and PreferenceCallback has no "
                "total_timesteps: the label schedule takes this call's end as the run's end. Pass "
                "PreferenceCallback(..., total_timesteps=<whole run>) when training in chunks.",
                stacklevel=2,
            )
        if self.fit_lag is not None:
            self._fit_lag = self.fit_lag
        elif self._off_policy:
            self._fit_lag = OFF_POLICY_FIT_LAG
        else:
            self._fit_lag = int(self.model.n_steps) * self.model.get_env().num_envs
        expected_segments = self._total_timesteps / self.wrapper.segment_length
        if self.learner.total_labels > expected_segments:
            raise ValueError(
                f"total_labels={self.learner.total_labels} is more than the ~{math.floor(expected_segments)} "
                f"segments a {self._total_timesteps}-step run records ({self.wrapper.segment_length} steps "
                "each): lower total_labels or train for more steps."
            )

    def _on_step(self) -> bool:
        if self._off_policy and not self.wrapper.learned_reward.anchored:
            self._deferred.note(self.model.replay_buffer, self.locals["dones"], self.locals["infos"])
        return True

    def _on_rollout_end(self) -> None:
        learner = self.learner
        started = learner.refitting.started_at
        if started is not None and self.num_timesteps >= started + self._fit_lag:
            # the first fit is always waited for: the agent must not train on the unfitted (zero)
            # reward for as long as a CNN's pretraining takes
            wait = self.wait_for_fit or not self.wrapper.learned_reward.fitted
            self._installed(learner.refitting.finish(wait=wait))
        round_ = learner.collect_labels(self.num_timesteps, self._total_timesteps)
        self._tell_the_labelers(round_.asked)
        if self.synchronous:
            if learner.needs_refit:
                self._installed(learner.refit())
        else:
            learner.refitting.start(self.num_timesteps)
        self._log(round_.mean_disagreement)

    def _on_training_end(self) -> None:
        # the labels of the last rollouts are in the reward the run ends with (and saves)
        self._installed(self.learner.refitting.finish())

    def _tell_the_labelers(self, asked: int) -> None:
        """No silent minutes for a person waiting to label: until the first queries, how many steps
        remain (in the store's meta for the web page, and in the terminal with ``verbose`` when the
        oracle shows clips to people), then once how many queries are ready."""
        learner = self.learner
        store = learner.store
        store.set_meta("timestep", str(self.num_timesteps))
        if self._announced_queries:
            return
        if asked:
            self._announced_queries = True
            if self.verbose >= 1 and learner.asks_people:
                print(f"[prefwrap] step {self.num_timesteps:,}: {asked} queries ready for labeling")
            return
        segments = self.wrapper.segments
        missing = max(0, learner.min_segments - segments.size)
        due = self.num_timesteps + math.ceil(missing * segments.segment_length / segments.n_envs)
        store.set_meta("first_queries_at", str(due))
        if self.verbose >= 1 and learner.asks_people and not self._announced_wait:
            self._announced_wait = True
            print(
                f"[prefwrap] step {self.num_timesteps:,}: the first queries come in about "
                f"{due - self.num_timesteps:,} steps ({learner.min_segments} segments are recorded first)"
            )

    def _installed(self, report: FitReport | None) -> None:
        """After new reward weights were installed: relabel the replay buffer, print a line."""
        if report is None:
            return
        self._refitted = True
        if self._off_policy:
            buffer = self.model.replay_buffer
            if self.wrapper.learned_reward.anchored:
                self._deferred.restore(buffer)
            if self.relabel:
                relabel_replay_buffer(buffer, self.wrapper.learned_reward, self.model.policy)
        self._report_refit(report)

    def _report_refit(self, report: FitReport) -> None:
        """One line per installed refit with ``verbose``."""
        if self.verbose >= 1:
            print(
                f"[prefwrap] step {self.num_timesteps}: {self.learner.n_labels} labels, "
                f"val acc {report.validation_accuracy:.3f}, {refit_text(report)}"
            )

    def _print_fit_progress(self, epoch: int, epochs: int, steps: int, seconds: float) -> None:
        """A line every ~10 s of a long fit, so a CLI user sees it work (e.g. a CNN's first fit)."""
        if epoch == 1:
            self._progress_printed_at = 0.0
        if seconds - self._progress_printed_at >= FIT_PROGRESS_EVERY_S:
            self._progress_printed_at = seconds
            line = f"[prefwrap] refit: epoch {epoch}/{epochs}, {steps} gradient steps, {seconds:.0f}s"
            print(line, flush=True)

    def _log(self, disagreement: float) -> None:
        self.learner.log_to(self.logger.record)
        # the signals score 128 segments with the ensemble: cheap for MLPs, not for CNNs on short
        # rollouts, so at most once per DIAGNOSTICS_EVERY steps (and after every refit)
        if self._refitted or self.num_timesteps - self._diagnosed_at >= DIAGNOSTICS_EVERY:
            self._refitted, self._diagnosed_at = False, self.num_timesteps
            signals = self.learner.reward_diagnostics()
            for key, value in signals.items():
                if np.isfinite(value):
                    self.logger.record(f"pref/{key}", value)
            self._warn_about_hacking(signals)
        if not np.isnan(disagreement):
            self.logger.record("pref/disagreement", disagreement)
        if self.wrapper.episode_true_returns:
            self.logger.record("pref/true_ep_return", float(np.mean(self.wrapper.episode_true_returns)))
            self.logger.record("pref/learned_ep_return", float(np.mean(self.wrapper.episode_learned_returns)))

    def _warn_about_hacking(self, signals: dict[str, float]) -> None:
        """One line, once per kind, when a reward-hacking signal crosses its threshold."""
        ratio, correlation = signals["disagreement_ratio"], signals["learned_true_corr"]
        messages = {}
        if ratio > DISAGREEMENT_WARNING:
            messages["disagreement"] = (
                f"the reward ensemble disagrees {ratio:.1f}x more on the policy's recent segments than on "
                "labelled ones: the policy may exploit the learned reward where it is unsure; queries now "
                "focus on recent segments (pref/disagreement_ratio)"
            )
        if correlation < CORRELATION_WARNING:
            messages["correlation"] = (
                f"learned and true episode returns correlate at {correlation:.2f}: the policy may be "
                "exploiting the learned reward (pref/learned_true_corr)"
            )
        for kind, message in messages.items():
            if kind in self._warned:
                continue
            self._warned.add(kind)
            line = f"[prefwrap] step {self.num_timesteps}: {message}"
            if self.verbose >= 1:  # the CLI: one plain line
                print(line, file=sys.stderr)
            else:
                warnings.warn(line, stacklevel=2)
