"""Tests for prefwrap.learner: budget, pending queries, the store as the source of labels, resume."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_go_right
from stable_baselines3.common.env_util import make_vec_env

from prefwrap.learner import PreferenceLearner
from prefwrap.oracles.base import BaseOracle, OracleContext
from prefwrap.oracles.synthetic import SyntheticOracle
from prefwrap.records import Preference, Query
from prefwrap.schedule import DecayingSchedule, UniformLabelSchedule
from prefwrap.store import PreferenceStore
from prefwrap.wrapper import PreferenceRewardWrapper

TOTAL_STEPS = 10_000


def recorded_wrapper(n_steps: int = 60, n_envs: int = 2, segment_length: int = 5) -> PreferenceRewardWrapper:
    """A wrapper whose segment buffer holds ``n_steps * n_envs / segment_length`` random-policy segments."""
    venv = PreferenceRewardWrapper(
        make_vec_env(make_go_right(max_steps=20, start_noise=0.5), n_envs=n_envs, seed=0),
        segment_length=segment_length,
        hidden_sizes=(16,),
    )
    record(venv, n_steps)
    return venv


def record(venv: PreferenceRewardWrapper, n_steps: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    if venv._last_obs is None:
        venv.reset()
    for _ in range(n_steps):
        venv.step(rng.uniform(-1, 1, (venv.num_envs, 1)).astype(np.float32))


def make_learner(
    wrapper: PreferenceRewardWrapper, oracle=None, total_labels: int = 20, **kwargs
) -> PreferenceLearner:
    kwargs.setdefault("min_segments", 10)
    kwargs.setdefault("initial_fit_epochs", 5)
    kwargs.setdefault("fit_epochs", 2)
    kwargs.setdefault("seed", 0)
    return PreferenceLearner(wrapper, oracle or SyntheticOracle(), total_labels, **kwargs)


class ScriptedOracle:
    """Answers rationally, but only from call ``answer_from`` on; records every batch it is asked."""

    labeler = "scripted"

    def __init__(self, answer_from: int = 0, answer: Preference | None = None) -> None:
        self.answer_from = answer_from
        self.answer = answer
        self.calls: list[list[int]] = []

    def label(self, queries: Sequence[Query]) -> list[Preference | None]:
        self.calls.append([q.query_id for q in queries])
        if len(self.calls) <= self.answer_from:
            return [None] * len(queries)
        if self.answer is not None:
            return [self.answer] * len(queries)
        return [
            Preference.LEFT if q.left.true_return >= q.right.true_return else Preference.RIGHT
            for q in queries
        ]


class NeverOracle(ScriptedOracle):
    def __init__(self) -> None:
        super().__init__(answer_from=10**9)


# ---------------------------------------------------------------------------------- budget


def test_budget_is_never_exceeded() -> None:
    wrapper = recorded_wrapper(100)
    learner = make_learner(wrapper, total_labels=30, query_batch_size=3)
    for timestep in [*range(0, TOTAL_STEPS + 1, TOTAL_STEPS // 25), 2 * TOTAL_STEPS, 3 * TOTAL_STEPS]:
        round_ = learner.collect_labels(timestep, TOTAL_STEPS)
        assert learner.n_labels + learner.n_pending <= 30
        assert learner.store.n_labels() <= 30
        assert round_.answered <= round_.asked
        if round_.new_training_labels:
            learner.refit()
            record(wrapper, 10, seed=timestep)
    asked_ids = [label.query_id for label in learner.store.labels()]
    assert len(asked_ids) == len(set(asked_ids)) == learner.n_labels
    # Rounds smaller than query_batch_size are not asked, so up to a batch may stay unspent.
    assert 30 - 3 < learner.n_labels <= 30 and learner.n_pending == 0


def test_first_batch_follows_the_schedule() -> None:
    learner = make_learner(recorded_wrapper(60), total_labels=40, schedule=DecayingSchedule(40))
    round_ = learner.collect_labels(0, TOTAL_STEPS)
    assert round_.asked == round_.answered == learner.n_labels == 10  # 25% at t = 0
    assert np.isnan(round_.mean_disagreement)  # the first batch is random: the ensemble is unfitted


def test_no_query_before_min_segments() -> None:
    wrapper = recorded_wrapper(10)  # 2 envs x 10 steps / 5 = 4 segments
    learner = make_learner(wrapper, min_segments=8)
    assert learner.collect_labels(0, TOTAL_STEPS).asked == 0
    record(wrapper, 10)
    assert learner.collect_labels(0, TOTAL_STEPS).asked > 0


def test_skips_use_the_budget_but_do_not_train() -> None:
    oracle = ScriptedOracle(answer=Preference.SKIP)
    learner = make_learner(
        recorded_wrapper(60), oracle, total_labels=8, schedule=UniformLabelSchedule(8, 1.0)
    )
    round_ = learner.collect_labels(0, TOTAL_STEPS)
    assert round_.answered == learner.n_labels == 8
    assert round_.new_training_labels == 0 and len(learner.dataset) == 0
    assert learner.refit() is None
    assert learner.collect_labels(TOTAL_STEPS, TOTAL_STEPS).asked == 0


# ---------------------------------------------------------------------------- pending queries


def test_pending_queries_are_asked_again_until_answered() -> None:
    oracle = ScriptedOracle(answer_from=2)
    learner = make_learner(recorded_wrapper(60), oracle, total_labels=20)
    first = learner.collect_labels(0, TOTAL_STEPS)
    assert first.asked == 5 and first.answered == 0 and learner.n_pending == 5
    second = learner.collect_labels(100, TOTAL_STEPS)  # nothing more due: the pending count towards it
    assert second.answered == 0
    assert oracle.calls[1] == oracle.calls[0]
    third = learner.collect_labels(200, TOTAL_STEPS)
    assert third.answered == 5 and learner.n_pending == 0 and learner.n_labels == 5
    assert oracle.calls[2] == oracle.calls[0]
    assert sorted(label.query_id for label in learner.store.labels()) == sorted(oracle.calls[0])


def test_wrong_number_of_answers_is_a_clear_error() -> None:
    class ShortOracle:
        labeler = "short"

        def label(self, queries: Sequence[Query]) -> list[Preference]:
            return [Preference.LEFT]

    learner = make_learner(recorded_wrapper(60), ShortOracle(), total_labels=20)
    with pytest.raises(ValueError, match=r"ShortOracle.label returned 1 answers for 5 queries"):
        learner.collect_labels(0, TOTAL_STEPS)


def test_answers_given_through_record_answer_are_stored_once() -> None:
    class EagerOracle(BaseOracle):
        """Like a human UI: stores each answer via record_answer as it is given, then returns them all."""

        labeler = "eager"
        context: OracleContext | None = None
        progress: tuple[str, ...] = ()

        def connect(self, context: OracleContext) -> None:
            self.context = context

        def show_progress(self, text: str) -> None:
            self.progress += (text,)

        def label(self, queries: Sequence[Query]) -> list[Preference]:
            assert self.context is not None
            answers = [Preference.RIGHT for _ in queries]
            for query, answer in zip(queries, answers, strict=True):
                self.context.record_answer(query, answer)
            return answers

    oracle = EagerOracle()
    learner = make_learner(recorded_wrapper(60), oracle, total_labels=20)
    assert oracle.context is not None and oracle.context.store_path == ":memory:"
    learner.collect_labels(0, TOTAL_STEPS)
    assert oracle.progress == ("0 / 20 labels, 5 queries waiting",)
    assert learner.n_labels == learner.store.n_labels() == 5
    assert {label.labeler for label in learner.store.labels()} == {"eager"}


def test_labeler_for_names_each_answer() -> None:
    class TwoPeople(ScriptedOracle, BaseOracle):
        def labeler_for(self, query_id: int) -> str:
            return f"person{query_id % 2}"

    learner = make_learner(recorded_wrapper(60), TwoPeople(), total_labels=20)
    learner.collect_labels(0, TOTAL_STEPS)
    assert {label.labeler for label in learner.store.labels()} == {"person0", "person1"}


# ---------------------------------------------------------------------------------- the store


def test_labels_are_written_to_the_store_before_they_are_used(tmp_path: Path) -> None:
    path = tmp_path / "prefs.sqlite"
    learner = make_learner(recorded_wrapper(60), total_labels=20, store=path)
    reader = PreferenceStore(path)  # another connection: sees only what is committed
    seen: list[int] = []
    add = learner.dataset.add

    def checked_add(query: Query, preference: Preference) -> None:
        stored = {label.query_id: label.preference for label in reader.labels()}
        assert stored.get(query.query_id) == preference, "a label was used before it was stored"
        seen.append(query.query_id)
        add(query, preference)

    learner.dataset.add = checked_add
    learner.collect_labels(0, TOTAL_STEPS)
    assert len(seen) == 5
    reader.close()


def test_a_new_learner_on_the_same_store_resumes(tmp_path: Path) -> None:
    path = tmp_path / "prefs.sqlite"
    first = make_learner(recorded_wrapper(60), total_labels=30, store=path, query_batch_size=2)
    first.collect_labels(0, TOTAL_STEPS)
    first.refit()
    first.collect_labels(TOTAL_STEPS // 2, TOTAL_STEPS)
    n_labels, n_training = first.n_labels, len(first.dataset)
    max_query_id = max(label.query_id for label in first.store.labels())
    max_segment_id = first.store.next_segment_id() - 1
    assert n_labels > 10
    first.store.close()

    wrapper = recorded_wrapper(0)
    second = make_learner(wrapper, total_labels=30, store=path, query_batch_size=2)
    assert second.n_labels == n_labels and len(second.dataset) == n_training
    assert wrapper.segments.next_segment_id > max_segment_id
    record(wrapper, 60)
    assert wrapper.segments.segment(int(wrapper.segments.newest_rows(1)[0])).segment_id > max_segment_id
    second.collect_labels(TOTAL_STEPS, TOTAL_STEPS)
    new_ids = {label.query_id for label in second.store.labels()[n_labels:]}
    assert new_ids and min(new_ids) > max_query_id
    assert second.n_labels == 30


def test_refit_right_after_resuming_with_an_empty_buffer(tmp_path: Path) -> None:
    """Resuming a finished labelling run: the first refit happens before the new env recorded anything."""
    path = tmp_path / "prefs.sqlite"
    first = make_learner(recorded_wrapper(60), total_labels=10, store=path)
    first.collect_labels(TOTAL_STEPS, TOTAL_STEPS)
    first.store.close()
    second = make_learner(recorded_wrapper(0), total_labels=10, store=path)
    assert second.refit() is not None
    reward = second.wrapper.learned_reward
    assert reward.fitted
    assert np.isfinite(reward.predict(np.zeros((3, 2), np.float32), np.zeros((3, 1), np.float32))).all()


def test_labels_from_another_process_are_ingested(tmp_path: Path) -> None:
    path = tmp_path / "prefs.sqlite"
    learner = make_learner(recorded_wrapper(60), NeverOracle(), total_labels=20, store=path)
    learner.collect_labels(0, TOTAL_STEPS)
    assert learner.n_pending == 5 and learner.n_labels == 0
    other = PreferenceStore(path)  # e.g. a labelling UI in another terminal
    pending = other.pending_queries(with_frames=False)
    assert [q.query_id for q in pending] == sorted(q.query_id for q in learner._pending)
    other.add_label(pending[0].query_id, Preference.LEFT, "human:alice")
    other.add_label(pending[1].query_id, Preference.SKIP, "human:alice")
    other.close()
    round_ = learner.collect_labels(0, TOTAL_STEPS)
    assert round_.answered == 2 and round_.new_training_labels == 1
    assert learner.n_labels == 2 and learner.n_pending == 3 and len(learner.dataset) == 1
    assert learner.refit() is not None


# ---------------------------------------------------------------------------- choosing pairs


def test_candidates_come_from_the_query_window() -> None:
    wrapper = recorded_wrapper(200)  # 80 segments
    oracle = ScriptedOracle()
    learner = make_learner(wrapper, oracle, total_labels=40, query_window=10)
    learner.collect_labels(0, TOTAL_STEPS)
    newest = set(wrapper.segments.segment_ids[wrapper.segments.newest_rows(10)].tolist())
    for label in learner.store.labels():
        assert {label.left_id, label.right_id} <= newest


def test_one_round_never_asks_the_same_pair_twice() -> None:
    wrapper = recorded_wrapper(40)  # 16 segments: 120 distinct pairs
    learner = make_learner(wrapper, total_labels=80, schedule=UniformLabelSchedule(80, 0.5))
    learner.collect_labels(0, TOTAL_STEPS)
    learner.refit()
    learner.collect_labels(TOTAL_STEPS, TOTAL_STEPS)
    pairs = [frozenset((label.left_id, label.right_id)) for label in learner.store.labels()]
    assert len(pairs) > 40
    assert all(len(pair) == 2 for pair in pairs)  # never a segment against itself
    assert len(set(pairs[:40])) == 40 and len(set(pairs[40:])) == len(pairs[40:])


def test_disagreement_selection_is_used_once_the_reward_is_fitted() -> None:
    class SpySelector:
        def __init__(self) -> None:
            self.calls = 0

        def select(self, pairs: np.ndarray, member_returns, n: int) -> np.ndarray:
            self.calls += 1
            assert member_returns.shape[0] == 3 and member_returns.shape[1] > pairs.max()  # (E, S)
            return np.arange(min(n, len(pairs)))

    selector = SpySelector()
    learner = make_learner(recorded_wrapper(60), total_labels=20, selection=selector, query_batch_size=2)
    learner.collect_labels(0, TOTAL_STEPS)
    assert selector.calls == 0  # first batch: random, the ensemble knows nothing yet
    learner.refit()
    round_ = learner.collect_labels(TOTAL_STEPS, TOTAL_STEPS)
    assert selector.calls == 1 and np.isfinite(round_.mean_disagreement)


# ---------------------------------------------------------------------------------- fitting


def test_refit_fits_and_normalises_the_reward() -> None:
    wrapper = recorded_wrapper(100)
    learner = make_learner(wrapper, total_labels=40, normalization_segments=20)
    assert learner.refit() is None  # nothing to fit yet
    learner.collect_labels(TOTAL_STEPS, TOTAL_STEPS)
    report = learner.refit()
    assert report is not None and learner.last_fit is report
    assert wrapper.learned_reward.fitted
    rewards = wrapper.learned_reward.predict_features(*wrapper.segments.valid_steps(20))
    assert abs(rewards.mean()) < 1e-3 and rewards.std() == pytest.approx(1.0, rel=1e-2)
    assert learner.refit() is None  # no new labels since


def test_log_to_records_pref_keys() -> None:
    learner = make_learner(recorded_wrapper(60), total_labels=20)
    learner.collect_labels(0, TOTAL_STEPS)
    learner.refit()
    logged: dict[str, float] = {}
    learner.log_to(lambda key, value: logged.__setitem__(key, value))
    assert logged["pref/labels"] == 5 and logged["pref/training_labels"] == 5
    assert {"pref/train_loss", "pref/val_loss", "pref/l2_coef", "pref/refit_seconds"} <= set(logged)
    assert all(key.startswith("pref/") for key in logged)


# ------------------------------------------------------------------------------- validation


def test_constructor_validation() -> None:
    wrapper = recorded_wrapper(0)
    with pytest.raises(TypeError, match="PreferenceRewardWrapper itself"):
        PreferenceLearner(wrapper.venv, SyntheticOracle())
    with pytest.raises(TypeError, match="not an oracle"):
        PreferenceLearner(wrapper, object())
    with pytest.raises(ValueError, match="total_labels"):
        PreferenceLearner(wrapper, SyntheticOracle(), 0)
    with pytest.raises(ValueError, match="exceeds total_labels"):
        PreferenceLearner(wrapper, SyntheticOracle(), 10, schedule=DecayingSchedule(20))
    with pytest.raises(ValueError, match="selection"):
        PreferenceLearner(wrapper, SyntheticOracle(), 10, selection="best")

    class FrameOracle(ScriptedOracle, BaseOracle):
        needs_frames = True

    with pytest.raises(ValueError, match="record_frames=True"):
        PreferenceLearner(wrapper, FrameOracle(), 10)


def test_state_dict_round_trips_through_a_weights_only_file(tmp_path: Path) -> None:
    path = tmp_path / "prefs.sqlite"
    wrapper = recorded_wrapper(60)
    first = make_learner(wrapper, total_labels=20, store=path)
    first.collect_labels(0, TOTAL_STEPS)
    first.refit()
    torch.save(first.state_dict(), tmp_path / "state.pt")
    state = torch.load(tmp_path / "state.pt", weights_only=True)  # safe loading: plain types only
    resumed = make_learner(wrapper, total_labels=20, store=path)  # re-reads the stored labels
    assert resumed.needs_refit  # without the state, it would fit again on labels already fitted
    resumed.load_state_dict(state)
    assert not resumed.needs_refit
    assert resumed.fitter.l2_coef == first.fitter.l2_coef
    assert resumed.last_fit == first.last_fit
    np.testing.assert_array_equal(np.stack(resumed.dataset._counts), np.stack(first.dataset._counts))
    assert resumed.dataset._rng.bit_generator.state == first.dataset._rng.bit_generator.state


def test_pending_queries_drop_their_frames_and_an_oracle_reads_them_back_from_the_store() -> None:
    """A slow labeler leaves many queries pending: they must not hold their clips in memory."""

    class SlowPerson(BaseOracle):
        needs_frames = True
        labeler = "human:slow"

        def __init__(self) -> None:
            self.batches: list[list[Query]] = []

        def connect(self, context: OracleContext) -> None:
            self.context = context

        def label(self, queries: Sequence[Query]) -> list[Preference | None]:
            self.batches.append(list(queries))
            return [None] * len(queries)  # not yet

    venv = framed_wrapper()
    oracle = SlowPerson()
    learner = make_learner(venv, oracle, total_labels=20)
    learner.collect_labels(TOTAL_STEPS // 2, TOTAL_STEPS)
    first = oracle.batches[-1]
    assert first and all(s.frames is not None for q in first for s in q.segments)  # new: with frames
    assert learner.n_pending == len(first)
    learner.collect_labels(TOTAL_STEPS // 2, TOTAL_STEPS)
    again = oracle.batches[-1]
    assert [q.query_id for q in again] == [q.query_id for q in first]
    assert all(s.frames is None for q in again for s in q.segments)  # pending: no clips held
    stored = oracle.context.load_query(again[0].query_id)
    np.testing.assert_array_equal(stored.left.frames, first[0].left.frames)


def framed_wrapper(n_steps: int = 60) -> PreferenceRewardWrapper:
    """A wrapper recording frames (for oracles that show clips) with ``n_steps`` random steps."""
    venv = PreferenceRewardWrapper(
        make_vec_env(make_go_right(max_steps=20, render_mode="rgb_array"), n_envs=2, seed=0),
        segment_length=5,
        hidden_sizes=(16,),
        record_frames=True,
    )
    record(venv, n_steps)
    return venv


class PersonAnsweringTwo(BaseOracle):
    """Shows clips (``needs_frames``) and answers only the two oldest queries it is asked per call."""

    needs_frames = True
    labeler = "human:two"

    def label(self, queries: Sequence[Query]) -> list[Preference | None]:
        return [Preference.LEFT if i < 2 else None for i in range(len(queries))]


def test_people_slower_than_the_schedule_get_fresh_queries_not_a_backlog() -> None:
    """Without a bound the run would keep ~all due labels pending (rendered and stored for nothing)."""
    venv = framed_wrapper()
    learner = make_learner(venv, PersonAnsweringTwo(), total_labels=100)  # query_batch_size 5
    assert learner.max_pending == 10  # default: 2 * query_batch_size for oracles that show clips
    for timestep in range(0, TOTAL_STEPS + 1, TOTAL_STEPS // 20):
        learner.collect_labels(timestep, TOTAL_STEPS)
        assert learner.n_pending <= 10
        assert learner.store.next_query_id() <= learner.n_labels + 10  # nothing asked beyond the bound
        record(venv, 5, seed=timestep)
    assert learner.n_labels == 2 * 21  # answered two per round throughout: never starved of queries
    assert learner.store.pending_query_ids() == [q.query_id for q in learner.store.pending_queries()]


def test_max_pending_bounds_the_backlog_and_answering_oracles_are_not_bounded() -> None:
    learner = make_learner(framed_wrapper(), PersonAnsweringTwo(), total_labels=100, max_pending=3)
    learner.collect_labels(TOTAL_STEPS, TOTAL_STEPS)  # all 100 due at once
    assert (learner.n_labels, learner.n_pending) == (2, 1)
    assert make_learner(recorded_wrapper(), total_labels=100).max_pending == 100  # synthetic: no bound
    with pytest.raises(ValueError, match="max_pending must be >= 1"):
        make_learner(recorded_wrapper(), total_labels=100, max_pending=0)
