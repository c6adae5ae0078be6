"""PreferenceLearner: the query → label → store → fit loop, independent of any RL library.

The SB3 :class:`~prefwrap.callback.PreferenceCallback` drives it at rollout ends; a hand-written
training loop calls :meth:`PreferenceLearner.collect_labels` and :meth:`PreferenceLearner.refit`
itself (see ``docs/concepts.md``). Every answer is written to the :class:`~prefwrap.store.PreferenceStore`
before it is used, and labels are read back from the store, so answers given by another process (a
labelling UI in another terminal) are picked up the same way.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from prefwrap.demonstrations import DEMO_LABELER, DemonstrationPreferences, Trajectory
from prefwrap.diagnostics import DISAGREEMENT_WARNING, reward_signals
from prefwrap.oracles.base import Oracle, OracleContext, oracle_hooks
from prefwrap.records import MAX_QUERY_SIZE, Answer, Preference, Query
from prefwrap.refitting import RewardRefitting
from prefwrap.reward.dataset import PreferenceDataset
from prefwrap.reward.fitting import FitReport, RewardFitter
from prefwrap.schedule import DecayingSchedule, LabelSchedule
from prefwrap.selection import PairSelector, RandomSelector, choose_tuples, make_selector, queries_of
from prefwrap.store import AlreadyLabeledError, PreferenceStore
from prefwrap.wrapper import PreferenceRewardWrapper

DEFAULT_DEMO_WEIGHT = 1.0
"""Weight of stored demonstration preferences read back without ``demonstrations`` (a resumed run)."""


@dataclass(frozen=True)
class QueryRound:
    """What one call to :meth:`PreferenceLearner.collect_labels` did."""

    asked: int
    answered: int
    new_training_labels: int
    mean_disagreement: float


class PreferenceLearner:
    """Asks an oracle about recorded segments on a schedule and fits the wrapper's reward model.

    A query holds ``query_size`` segments: 2 asks which of a pair is better (the paper), more asks
    for a ranking (see ``docs/concepts.md#rankings``). ``total_labels`` counts answers (judgements)
    whatever their size.

    Args:
        wrapper: The :class:`PreferenceRewardWrapper` whose segments are queried and whose reward is fitted.
        oracle: Anything with ``label(queries)`` (see :class:`~prefwrap.oracles.base.Oracle`).
        total_labels: Label budget over the whole run (skipped answers count: a person spent the time).
        schedule: Cumulative labels wanted per timestep; default :class:`DecayingSchedule` (the paper).
        selection: ``"disagreement"`` (ensemble variance of P[i ≻ j], averaged over the query's pairs),
            ``"random"``, or a :class:`~prefwrap.selection.PairSelector`.
        candidate_factor: Candidate queries sampled per query asked (the paper: 10).
        query_window: Draw candidates from the newest this many segments only; ``None`` (default)
            draws from the whole segment buffer. Recent-only candidates did worse on Pendulum
            (-336 vs -190 mean return over 5 seeds with a 500-segment window).
        query_batch_size: Ask only once at least this many labels are due (after the first batch);
            default ``max(1, total_labels // 20)``: about 20 query rounds and refits per run.
        max_pending: Queries waiting for an answer at most; default ``2 * query_batch_size`` when
            the oracle shows clips to people, else no bound. People labeling slower than the
            schedule then get fresh queries picked by the current ensemble as they answer,
            instead of a backlog of stale ones that the run renders and stores for nothing.
        min_segments: Recorded segments needed before the first query.
        store: A :class:`PreferenceStore`, the path of one (created or resumed), or ``None`` for an
            in-memory store (labels then die with the process).
        fit_epochs: Passes over the labels per refit.
        initial_fit_epochs: Passes for the first fit (no warm start yet).
        max_fit_seconds: Wall-clock bound per refit.
        learning_rate: Adam step size of the reward model.
        batch_size: Labels per member per gradient step.
        noise: Assumed probability of a random answer in the Bradley-Terry / Plackett-Luce model
            (the paper: 0.1).
        max_labels: Fit only on the newest this many labels (the paper's Atari setting: 3,000).
        normalization_segments: Newest segments whose steps set the reward normalisation after a refit.
        seed: Seed of candidate sampling, bootstraps and the validation split.
        query_size: Segments per query, 2 (pairs) to 6; the oracle answers larger queries with a
            :class:`~prefwrap.records.Ranking` (or ``SKIP``).
        demonstrations: Expert trajectories (an ``.npz`` path, see :mod:`prefwrap.demonstrations`, or
            :class:`~prefwrap.demonstrations.Trajectory` objects) turned into preferences
            "demonstration segment ≻ policy segment" (Ibarz et al. 2018): the first query round pairs
            every demonstration segment with an initial-policy segment, later rounds add
            ``demo_pairs_per_round`` with recent policy segments whose learned return is below the
            demonstrations'. Stored with labeler ``"demonstration"``, not counted in ``total_labels``.
        demo_weight: Loss weight of a demonstration preference relative to an oracle's label.
        demo_pairs_per_round: Demonstration preferences per query round after the first, at most;
            default ``query_batch_size`` (about one per oracle label over the run).

    Raises:
        TypeError: ``wrapper`` is not a :class:`PreferenceRewardWrapper`, or ``oracle`` has no ``label``.
        ValueError: An argument is out of range, or the demonstrations file is unreadable as such.
    """

    def __init__(
        self,
        wrapper: PreferenceRewardWrapper,
        oracle: Oracle,
        total_labels: int = 700,
        *,
        schedule: LabelSchedule | None = None,
        selection: str | PairSelector = "disagreement",
        candidate_factor: int = 10,
        query_window: int | None = None,
        query_batch_size: int | None = None,
        max_pending: int | None = None,
        min_segments: int = 64,
        store: PreferenceStore | str | os.PathLike | None = None,
        fit_epochs: int = 5,
        initial_fit_epochs: int = 50,
        max_fit_seconds: float | None = 30.0,
        learning_rate: float = 1e-3,
        batch_size: int = 64,
        noise: float = 0.1,
        max_labels: int | None = None,
        normalization_segments: int = 2000,
        seed: int | None = None,
        query_size: int = 2,
        demonstrations: str | os.PathLike | list[Trajectory] | None = None,
        demo_weight: float = DEFAULT_DEMO_WEIGHT,
        demo_pairs_per_round: int | None = None,
    ) -> None:
        if not isinstance(wrapper, PreferenceRewardWrapper):
            raise TypeError(
                f"PreferenceLearner needs the PreferenceRewardWrapper itself, got {type(wrapper).__name__}: "
                "pass the object returned by PreferenceRewardWrapper(env)."
            )
        self._hooks = oracle_hooks(oracle)
        if total_labels < 1:
            raise ValueError(f"total_labels must be >= 1, got {total_labels}")
        if max_pending is not None and max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        if candidate_factor < 1:
            raise ValueError(f"candidate_factor must be >= 1, got {candidate_factor}")
        if not 2 <= query_size <= MAX_QUERY_SIZE:
            raise ValueError(f"query_size must be in [2, {MAX_QUERY_SIZE}], got {query_size}")
        if self._hooks.needs_frames and not (
            wrapper.record_frames or wrapper.learned_reward.encoder.image_observations
        ):
            raise ValueError(
                f"{type(oracle).__name__} shows clips to a person, but the wrapper records no frames: "
                "wrap it with PreferenceRewardWrapper(..., record_frames=True)"
            )
        self.wrapper = wrapper
        self.oracle = oracle
        self.total_labels = total_labels
        self.schedule = schedule or DecayingSchedule(total_labels)
        if self.schedule.total_labels > total_labels:
            raise ValueError(
                f"the schedule's budget ({self.schedule.total_labels}) exceeds total_labels ({total_labels})"
            )
        self.selector = make_selector(selection, seed)
        self.candidate_factor = candidate_factor
        self.query_window = query_window
        self.query_size = query_size
        self.query_batch_size = query_batch_size or max(1, total_labels // 20)
        # people answer slower than the schedule asks: bound their backlog; an answering oracle needs none
        default_bound = 2 * self.query_batch_size if self._hooks.needs_frames else total_labels
        self.max_pending = max_pending or default_bound
        self.min_segments = max(query_size, min(min_segments, wrapper.segments.capacity))
        self.store = store if isinstance(store, PreferenceStore) else PreferenceStore(store or ":memory:")
        self.dataset = PreferenceDataset(wrapper.learned_reward.n_members, max_labels=max_labels, seed=seed)
        # the fitter trains its own copy, so a background fit leaves the installed reward untouched
        fitter = RewardFitter(
            copy.deepcopy(wrapper.learned_reward.model),
            learning_rate=learning_rate,
            batch_size=batch_size,
            epochs=fit_epochs,
            max_seconds=max_fit_seconds,
            noise=noise,
            seed=seed,
        )
        self.refitting = RewardRefitting(
            wrapper.learned_reward,
            wrapper.segments,
            self.dataset,
            fitter,
            fit_epochs=fit_epochs,
            initial_fit_epochs=initial_fit_epochs,
            normalization_segments=normalization_segments,
        )
        self._rng = np.random.default_rng(seed)
        self.focus_recent = False  # set by reward_diagnostics when the policy leaves the labelled region
        self._pending: list[Query] = self.store.pending_queries()
        self._labels_read = 0
        self._n_answered = 0
        self.n_demo_labels = 0
        self._answered_here: dict[int, Query] = {}  # demonstration queries, stored already answered
        self.wrapper.segments.next_segment_id = max(
            self.wrapper.segments.next_segment_id, self.store.next_segment_id()
        )
        self.demonstrations = (
            None
            if demonstrations is None
            else DemonstrationPreferences.for_wrapper(
                wrapper,
                demonstrations,
                demo_weight,
                self.query_batch_size if demo_pairs_per_round is None else demo_pairs_per_round,
                seed,
            )
        )
        self._next_query_id = self.store.next_query_id()
        self._ingest_stored_labels()
        self._connect_oracle()

    def _add_demonstration_pairs(self) -> None:
        """Store "demonstration ≻ recent policy segment" answers (already answered: never pending)."""
        if self.demonstrations is None:
            return
        queries = self.demonstrations.add_pairs(
            self.store,
            self.wrapper.segments,
            self._next_query_id,
            self.wrapper.learned_reward,
            first_round=self.n_demo_labels == 0,
        )
        self._next_query_id += len(queries)
        self._answered_here.update((query.query_id, query) for query in queries)

    def _connect_oracle(self) -> None:
        """Tell the oracle the run's context (see :class:`~prefwrap.oracles.base.BaseOracle`)."""
        fps = self.wrapper.metadata.get("render_fps") if isinstance(self.wrapper.metadata, dict) else None
        if fps:
            self.store.set_meta("render_fps", str(fps))
        # record_answer: each answer a person gives is stored the moment it is given
        self._hooks.connect(OracleContext(fps, self.store.location, self._store_answer, self.store.query))

    @property
    def asks_people(self) -> bool:
        """Whether the oracle shows clips to people (``needs_frames``): they are told when queries come."""
        return self._hooks.needs_frames

    @property
    def n_labels(self) -> int:
        """Answers received so far (skips included), from this process or any other."""
        return self._n_answered

    @property
    def n_pending(self) -> int:
        """Queries asked and not answered yet."""
        return len(self._pending)

    def collect_labels(self, timestep: int, total_timesteps: int) -> QueryRound:
        """Ask for the labels the schedule wants by ``timestep``, store and ingest every answer.

        Returns:
            Counts of this round; see :attr:`needs_refit` for whether :meth:`refit` has work to do.
        """
        due = min(self.schedule.labels_due(timestep, total_timesteps), self.total_labels)
        missing = min(due - self._n_answered, self.max_pending) - len(self._pending)
        first_batch = self._n_answered == 0 and not self._pending
        last_batch = due == self.total_labels
        batch = min(self.query_batch_size, max(1, self.max_pending // 2))
        disagreement = float("nan")
        if missing > 0 and (first_batch or last_batch or missing >= batch):
            new_queries, disagreement = self._make_queries(missing)
            if new_queries:
                self._add_demonstration_pairs()
                self.store.add_queries(new_queries)
                self._pending.extend(new_queries)
        asked = len(self._pending)
        if self._pending:
            self._hooks.show_progress(
                f"{self._n_answered} / {self.total_labels} labels, {len(self._pending)} queries waiting"
            )
            self._ask(self._pending)
        answered_before = self._n_answered
        new_training = self._ingest_stored_labels()
        # Queries left pending keep no rendered frames: the store has them, and the hundreds of
        # queries that wait for slower people would otherwise hold GBs of clips in memory.
        self._pending = [query.without_frames() for query in self._pending]
        return QueryRound(asked, self._n_answered - answered_before, new_training, disagreement)

    @property
    def fitter(self) -> RewardFitter:
        """The fitter, which trains a copy of the wrapper's ensemble (see :attr:`refitting`)."""
        return self.refitting.fitter

    @property
    def last_fit(self) -> FitReport | None:
        """The report of the last fit installed; ``None`` before the first."""
        return self.refitting.last_fit

    @property
    def needs_refit(self) -> bool:
        """Labels arrived (or were resumed from the store) that the reward model has not been fitted on."""
        return self.refitting.needed

    def refit(self) -> FitReport | None:
        """Refit the ensemble on all labels if new ones arrived and install it, blocking (see
        :attr:`refitting` for fits in the background). Returns the report, ``None`` if nothing was fitted."""
        return self.refitting.refit()

    def _ask(self, queries: list[Query]) -> None:
        answers = list(self._hooks.label(queries))
        if len(answers) != len(queries):
            raise ValueError(
                f"{type(self.oracle).__name__}.label returned {len(answers)} answers for {len(queries)} "
                "queries: return exactly one Preference or Ranking (or None for 'not yet') per query"
            )
        for query, answer in zip(queries, answers, strict=True):
            if answer is not None:
                self._store_answer(query, answer)

    def _store_answer(self, query: Query, answer: Answer) -> None:
        """Write one answer durably; an answer already stored (through ``record_answer`` or by another
        process) is kept."""
        with contextlib.suppress(AlreadyLabeledError):
            self.store.add_label(query.query_id, answer, self._hooks.labeler_for(query.query_id))

    def _ingest_stored_labels(self) -> int:
        """Read labels written since the last read (by this process or another) into the dataset."""
        labels = self.store.labels(after=self._labels_read)
        if not labels:
            return 0
        self._labels_read += len(labels)
        pending = {query.query_id: query for query in self._pending}
        new_training = 0
        for label in labels:
            # the dataset needs no frames: don't decompress a labelled clip just to drop it
            query = (
                pending.pop(label.query_id, None)
                or self._answered_here.pop(label.query_id, None)
                or self.store.query(label.query_id, with_frames=False)
            )
            demonstrated = label.labeler == DEMO_LABELER
            self.n_demo_labels += demonstrated
            self._n_answered += not demonstrated
            if label.preference is not Preference.SKIP:
                if demonstrated:
                    self.dataset.add(query, label.preference, weight=self._demo_weight())
                else:
                    self.dataset.add(query, label.preference)
                new_training += 1
        self._pending = list(pending.values())
        self.refitting.labels_since_fit += new_training
        return new_training

    def _demo_weight(self) -> float:
        return self.demonstrations.weight if self.demonstrations is not None else DEFAULT_DEMO_WEIGHT

    def _make_queries(self, n_pairs: int) -> tuple[list[Query], float]:
        """Sample ``candidate_factor * n_pairs`` candidate queries and keep the ``n_pairs`` selected."""
        segments = self.wrapper.segments
        if segments.size < self.min_segments:
            return [], float("nan")
        rows = segments.rows_with_frames() if self._hooks.needs_frames else segments.newest_rows()
        if self.query_window is not None:
            rows = rows[-self.query_window :]
        if len(rows) < self.query_size:
            return [], float("nan")
        chosen, disagreement = choose_tuples(
            self._rng,
            self.wrapper.learned_reward,
            segments,
            rows,
            n_pairs,
            self.query_size,
            self.candidate_factor,
            self.selector,
            self.focus_recent,
        )
        queries = queries_of(chosen, rows, segments, self._next_query_id)
        self._next_query_id += len(queries)
        return queries, disagreement

    def reward_diagnostics(self, n_segments: int = 64) -> dict[str, float]:
        """Reward-hacking signals (see :mod:`prefwrap.diagnostics`); also sets :attr:`focus_recent`.

        Returns:
            ``{"learned_true_corr": ..., "disagreement_ratio": ...}``, nan where not yet defined.
        """
        signals = reward_signals(self.wrapper, self.dataset, n_segments)
        self.focus_recent = signals["disagreement_ratio"] > DISAGREEMENT_WARNING
        return signals

    def state_dict(self) -> dict[str, Any]:
        """Everything besides the store, the reward weights and the segments that a resumed run
        needs to ask and fit as the uninterrupted run would: the fitter's and dataset's state, every
        generator (candidates, a random selector's, the demonstrations'), whether candidates focus on
        recent segments, and how many of the stored labels the reward was last fitted on (plain types
        and tensors). A background fit still running is waited for but not installed: its weights
        (in the fitter's state), start step and report are saved, and a resumed run installs them
        when the uninterrupted run would have."""
        generators = {"candidates": self._rng.bit_generator.state}
        if isinstance(self.selector, RandomSelector):
            generators["selector"] = self.selector.state_dict()
        if self.demonstrations is not None:
            generators["demonstrations"] = self.demonstrations.state_dict()
        return {
            **self.refitting.state_dict(),
            "dataset": self.dataset.state_dict(),
            "rng": generators,
            "focus_recent": self.focus_recent,
            "fitted_labels": self._labels_read - self.refitting.labels_since_fit,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` into a learner built on the same store (its labels re-read):
        labels the reward was already fitted on are not fitted on again.

        Raises:
            ValueError: The state holds more labels than the store gave back.
        """
        self.refitting.load_state_dict(state)
        self.dataset.load_state_dict(state["dataset"])
        # states saved before every generator was: only the candidates' one, under "rng"
        generators = state["rng"] if "candidates" in state["rng"] else {"candidates": state["rng"]}
        self._rng.bit_generator.state = generators["candidates"]
        if isinstance(self.selector, RandomSelector) and "selector" in generators:
            self.selector.load_state_dict(generators["selector"])
        if self.demonstrations is not None and "demonstrations" in generators:
            self.demonstrations.load_state_dict(generators["demonstrations"])
        self.focus_recent = bool(state.get("focus_recent", False))
        self.refitting.labels_since_fit = max(0, self._labels_read - int(state["fitted_labels"]))

    def log_to(self, record: Callable[[str, float], None]) -> None:
        """Record the learner's state with an SB3-style ``record(key, value)`` function under ``pref/``."""
        record("pref/labels", self._n_answered)
        record("pref/pending_queries", len(self._pending))
        record("pref/training_labels", len(self.dataset))
        if self.demonstrations is not None:
            record("pref/demo_labels", self.n_demo_labels)
        if self.last_fit is not None:
            record("pref/train_loss", self.last_fit.train_loss)
            record("pref/val_loss", self.last_fit.validation_loss)
            record("pref/val_accuracy", self.last_fit.validation_accuracy)
            record("pref/l2_coef", self.last_fit.l2_coef)
            record("pref/refit_seconds", self.last_fit.seconds)
