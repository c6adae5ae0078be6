"""Tests for prefwrap.store.copy: a run's store moved between backends, checked, nothing lost."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from test_store import BACKENDS, assert_same_segment, make_query, make_segment, new_target

from prefwrap.records import Preference, Query, Ranking
from prefwrap.store import PreferenceStore, StoreError, copy_store
from prefwrap.store import copy as copy_module
from prefwrap.store.copy import table_digests


def fill(target: str) -> None:
    """A small run: frames, a pending query, labels out of id order (a skip among them), metadata."""
    with PreferenceStore(target) as store:
        store.set_meta("env_id", "Hopper-v5")
        store.add_segments([make_segment(1000, frames=True)])
        store.add_queries([make_query(i) for i in range(70)])  # more than one page of rows
        for query_id in [5, 2, 9, *range(10, 69)]:
            store.add_label(query_id, [Preference.LEFT, Preference.SKIP][query_id % 2], f"h{query_id % 3}")
        # a ranking of four (schema version 4): its segments in query_segments, its answer as JSON
        store.add_queries([Query.of(70, [make_segment(i) for i in (2000, 2001, 2002, 1000)])])
        store.add_label(70, Ranking([[2], [0, 3], [1]]), "h0")


@pytest.fixture(params=BACKENDS)
def source(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with new_target(request.param, tmp_path) as target:
        fill(target)
        yield target


@pytest.mark.parametrize("via", BACKENDS)
def test_a_copy_through_another_backend_and_back_is_the_same_store(source: str, via: str, tmp_path: Path):
    with ExitStack() as stack:
        middle = stack.enter_context(new_target(via, tmp_path))
        back = stack.enter_context(new_target("sqlite", tmp_path))
        first = copy_store(source, middle)
        second = copy_store(middle, back)
        expected = {"meta": 2, "segments": 144, "segment_frames": 1, "queries": 71, "query_segments": 4}
        expected["labels"] = 63
        assert first.counts == second.counts == expected
        assert first.digests == second.digests and "63 labels" in str(first)
        with PreferenceStore(source) as original, PreferenceStore(back) as copied:
            assert table_digests(original._database()) == table_digests(copied._database())
            assert copied.labels() == original.labels()  # arrival order and timestamps kept
            assert [x.query_id for x in copied.labels()[:3]] == [5, 2, 9]
            pending = [q.query_id for q in copied.pending_queries(with_frames=False)]
            assert pending == [0, 1, 3, 4, 6, 7, 8, 69]
            assert_same_segment(copied.segment(1000), make_segment(1000, frames=True))
            assert copied.get_meta("env_id") == "Hopper-v5"
            copied.add_label(69, Preference.RIGHT, "resumed")  # the copy goes on as a run's store
            assert copied.labels(after=63)[0].query_id == 69
            ranked = copied.labels()[62]
            assert ranked.preference == Ranking([[2], [0, 3], [1]])
            assert ranked.segment_ids == (2000, 2001, 2002, 1000)
            assert [s.segment_id for s in copied.query(70).segments] == [2000, 2001, 2002, 1000]


def test_a_destination_with_data_or_the_source_itself_is_refused(source: str, tmp_path: Path):
    with pytest.raises(StoreError, match="onto itself"):
        copy_store(source, source)
    other = tmp_path / "other.db"
    with PreferenceStore(other) as store:
        store.add_queries([make_query(0)])
    with pytest.raises(StoreError, match=r"already holds 2 segments, 1 queries"):
        copy_store(source, other)
    with PreferenceStore(other) as store:
        assert store.n_labels() == 0  # untouched


def test_a_difference_found_by_the_check_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    fill(str(tmp_path / "a.db"))
    real = copy_module.table_digests

    def one_label_lost(db):  # as if the destination had lost a row
        digests = real(db)
        digests["labels"] = (digests["labels"][0] - 1, digests["labels"][1])
        return digests

    monkeypatch.setattr(copy_module, "table_digests", one_label_lost)
    with pytest.raises(StoreError, match=r"copy check failed: .*b\.db differs from .*a\.db in \['labels'\]"):
        copy_store(tmp_path / "a.db", tmp_path / "b.db")
