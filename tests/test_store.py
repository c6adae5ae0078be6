"""Tests for prefwrap.store on every backend: round trips, the label life cycle, schema, no pickle.

Each test taking ``store`` or ``target`` runs on SQLite, and on PostgreSQL when
``PREFWRAP_TEST_POSTGRES_URL`` names a server (``eval "$(bash scripts/postgres.sh env)"`` starts a
throw-away one); each PostgreSQL test gets a schema of its own, dropped afterwards. Other processes and
kill -9 are in ``test_store_processes.py``, PostgreSQL-only behaviour in ``test_store_postgres.py``,
copies between backends in ``test_store_copy.py``.
"""

from __future__ import annotations

import importlib.util
import io
import os
import pathlib
import pickle
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import numpy as np
import pytest

from prefwrap.records import Label, Preference, Query, Segment
from prefwrap.store import (
    AlreadyLabeledError,
    PreferenceStore,
    StoreError,
    UnknownQueryError,
    UnknownSegmentError,
)
from prefwrap.store.database import Database, open_database

POSTGRES_URL = os.environ.get("PREFWRAP_TEST_POSTGRES_URL", "")


def _postgres_skip_reason() -> str:
    if not POSTGRES_URL:
        return (
            'PREFWRAP_TEST_POSTGRES_URL is not set (eval "$(bash scripts/postgres.sh env)" starts a server)'
        )
    if importlib.util.find_spec("psycopg") is None:
        return 'psycopg is not installed (pip install "prefwrap[postgres]")'
    return ""


POSTGRES_SKIP = _postgres_skip_reason()
needs_postgres = pytest.mark.skipif(bool(POSTGRES_SKIP), reason=POSTGRES_SKIP)
BACKENDS = ["sqlite", pytest.param("postgres", marks=needs_postgres)]

DOCS = Path(__file__).resolve().parents[1] / "docs" / "store.md"
SCHEMA = {
    "meta": ["key", "value"],
    "segments": [
        *("segment_id", "length", "env_index", "timestep", "observations", "actions", "true_rewards"),
        "terminated",
    ],
    "segment_frames": ["segment_id", "frames"],
    "queries": ["query_id", "left_id", "right_id", "created_at"],
    "query_segments": ["query_id", "position", "segment_id"],
    "labels": ["seq", "query_id", "preference", "labeler", "created_at", "ranking"],
}


def make_segment(segment_id: int, horizon: int = 4, frames: bool = False, **arrays: np.ndarray) -> Segment:
    """A small segment whose content depends on its id."""
    rng = np.random.default_rng(segment_id)
    return Segment(
        segment_id=segment_id,
        observations=arrays.get("observations", rng.normal(size=(horizon, 3)).astype(np.float32)),
        actions=arrays.get("actions", rng.normal(size=(horizon, 2)).astype(np.float32)),
        true_rewards=arrays.get("true_rewards", rng.normal(size=horizon).astype(np.float32)),
        length=horizon,
        frames=rng.integers(0, 256, size=(horizon, 5, 6, 3), dtype=np.uint8) if frames else None,
        env_index=segment_id % 3,
        timestep=100 * segment_id,
    )


def make_query(query_id: int) -> Query:
    return Query(query_id, make_segment(2 * query_id), make_segment(2 * query_id + 1))


def assert_same_segment(actual: Segment, expected: Segment, frames: bool = True) -> None:
    assert actual.segment_id == expected.segment_id
    for name in ("observations", "actions", "true_rewards") + (("frames",) if frames else ()):
        got, want = getattr(actual, name), getattr(expected, name)
        if want is None:
            assert got is None, name
            continue
        assert got.dtype == want.dtype, name
        assert got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=name)
    assert (actual.length, actual.env_index, actual.timestep) == (
        expected.length,
        expected.env_index,
        expected.timestep,
    )


def postgres_url(schema: str) -> str:
    """The test server's URL with ``schema`` as the store's schema (one per run)."""
    separator = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextmanager
def new_target(backend: str, folder: Path) -> Iterator[str]:
    """What to open a new, empty store with: a file in ``folder``, or a new PostgreSQL schema."""
    if backend == "sqlite":
        yield str(folder / f"prefs-{uuid.uuid4().hex[:8]}.db")
        return
    schema = f"test_{uuid.uuid4().hex[:12]}"
    try:
        yield postgres_url(schema)
    finally:
        drop_schema(schema)


@contextmanager
def raw(target: str) -> Iterator[Database]:
    """The store's database without the store, in one write transaction (to tamper with it)."""
    with closing(open_database(target)) as db, db.transaction():
        db.lock_schema()  # PostgreSQL: creates the schema if missing
        yield db


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def target(backend: str, tmp_path: Path) -> Iterator[str]:
    with new_target(backend, tmp_path / "run") as opened:
        yield opened


@pytest.fixture
def store(target: str) -> Iterator[PreferenceStore]:
    with PreferenceStore(target) as opened:
        yield opened


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    "observations",
    [
        np.arange(12, dtype=np.float32).reshape(4, 3),
        np.arange(4 * 6 * 6 * 1, dtype=np.uint8).reshape(4, 6, 6, 1),
        np.linspace(0, 1, 8).reshape(4, 2),  # float64
        np.arange(8, dtype=">f4").reshape(4, 2),  # big-endian
        np.asfortranarray(np.arange(12, dtype=np.int64).reshape(4, 3)),
        np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2],  # not contiguous
        np.zeros((4, 0), dtype=np.float32),
        np.array([[True], [False], [True], [True]]),
    ],
    ids=["float32", "uint8-image", "float64", "big-endian", "fortran", "strided", "empty", "bool"],
)
def test_segment_round_trip_keeps_dtype_shape_and_values(store: PreferenceStore, observations: np.ndarray):
    segment = make_segment(7, observations=observations)
    store.add_segments([segment])
    loaded = store.segment(7)
    assert_same_segment(loaded, segment)
    assert loaded.observations.flags.writeable


def test_frames_are_optional_and_loaded_only_when_asked(store: PreferenceStore):
    with_frames, without = make_segment(1, frames=True), make_segment(2)
    store.add_segments([with_frames, without])
    assert_same_segment(store.segment(1), with_frames)
    assert_same_segment(store.segment(2), without)
    assert store.segment(1, with_frames=False).frames is None
    store.add_queries([Query(0, with_frames, without)])
    assert store.query(0).left.frames is not None
    assert store.query(0, with_frames=False).left.frames is None
    assert store.pending_queries(with_frames=False)[0].left.frames is None


def test_everything_survives_close_and_reopen(target: str, backend: str):
    path = target
    queries = [make_query(i) for i in range(3)]
    with PreferenceStore(path) as store:
        assert store.location == target
        assert store.path == (Path(target) if backend == "sqlite" else None)
        store.add_segments([make_segment(10, frames=True)])
        store.add_queries(queries)
        store.add_label(1, Preference.LEFT, "alice")
        store.set_meta("env_id", "CartPole-v1")
    with PreferenceStore(path) as store:
        assert_same_segment(store.segment(10), make_segment(10, frames=True))
        for query in queries:
            loaded = store.query(query.query_id)
            assert_same_segment(loaded.left, query.left)
            assert_same_segment(loaded.right, query.right)
        assert [q.query_id for q in store.pending_queries()] == [0, 2]
        assert [(x.query_id, x.preference, x.labeler) for x in store.labels()] == [
            (1, Preference.LEFT, "alice")
        ]
        assert store.get_meta("env_id") == "CartPole-v1"
        assert store.next_segment_id() == 11
        assert store.next_query_id() == 3


def test_an_in_memory_store_has_no_path():
    with PreferenceStore(":memory:") as store:
        assert store.path is None and store.location == ":memory:"
        store.add_queries([make_query(0)])
        assert store.n_labels() == 0


def test_next_ids_start_at_zero_and_follow_the_largest_id(store: PreferenceStore):
    assert (store.next_segment_id(), store.next_query_id()) == (0, 0)
    store.add_queries([Query(5, make_segment(40), make_segment(3))])
    assert (store.next_segment_id(), store.next_query_id()) == (41, 6)


# ---------------------------------------------------------------- queries and labels


def test_label_life_cycle_pending_to_labeled(store: PreferenceStore):
    store.add_queries([make_query(i) for i in range(4)])
    assert [q.query_id for q in store.pending_queries()] == [0, 1, 2, 3]
    before = time.time()
    label = store.add_label(2, Preference.RIGHT, "human:bob")
    assert label == Label(2, 4, 5, Preference.RIGHT, "human:bob", label.created_at)
    assert before <= label.created_at <= time.time()
    store.add_label(0, Preference.SKIP, "human:bob")  # a skip answers the query too
    store.add_label(3, Preference.EQUAL, "synthetic")
    assert [q.query_id for q in store.pending_queries()] == store.pending_query_ids() == [1]
    assert store.n_labels() == 3
    assert store.labels() == [label, *store.labels(after=1)]  # arrival order, not id order
    assert [x.query_id for x in store.labels()] == [2, 0, 3]
    assert [x.preference for x in store.labels(after=2)] == [Preference.EQUAL]
    assert store.labels(after=3) == [] and store.labels(after=10) == []
    with pytest.raises(ValueError, match="after"):
        store.labels(after=-1)


def test_labels_are_never_overwritten_or_invented(store: PreferenceStore):
    store.add_queries([make_query(0)])
    store.add_label(0, Preference.LEFT, "alice")
    with pytest.raises(AlreadyLabeledError, match=r"query 0 is already labeled \('left' by 'alice'\)"):
        store.add_label(0, Preference.RIGHT, "bob")
    with pytest.raises(UnknownQueryError, match="query 42"):
        store.add_label(42, Preference.LEFT, "alice")
    with pytest.raises(ValueError):
        store.add_label(0, "maybe", "alice")  # type: ignore[arg-type]
    assert [(x.preference, x.labeler) for x in store.labels()] == [(Preference.LEFT, "alice")]


def test_adding_again_is_a_no_op_but_a_reused_id_is_an_error(store: PreferenceStore):
    first = make_segment(1, frames=True)
    store.add_segments([first])
    store.add_segments([Segment(**{**vars(first), "frames": None})])  # same content, frames dropped: no-op
    assert_same_segment(store.segment(1), first)
    with pytest.raises(ValueError, match="segment 1 is already stored with different content"):
        store.add_segments([make_segment(2), Segment(**{**vars(first), "timestep": 5})])
    with pytest.raises(KeyError):
        store.segment(2)  # one transaction: nothing of the failed batch was written

    query = make_query(0)
    store.add_queries([query])
    store.add_queries([query])  # no-op
    with pytest.raises(ValueError, match="query 0 is already stored"):
        store.add_queries([make_query(1), Query(0, query.right, query.left)])
    assert store.next_query_id() == 1
    assert [q.query_id for q in store.pending_queries()] == [0]


def test_query_size_counts_a_query_s_segments_without_reading_them(store: PreferenceStore):
    triple = Query.of(1, [make_segment(10), make_segment(11), make_segment(12)])
    store.add_queries([make_query(0), triple])
    assert [store.query_size(0), store.query_size(1)] == [2, 3] == [store.query(i).size for i in (0, 1)]


def test_unknown_ids_raise_key_errors_naming_the_id(store: PreferenceStore):
    with pytest.raises(UnknownSegmentError, match="segment 3") as segment_error:
        store.segment(3)
    with pytest.raises(UnknownQueryError, match="query 4") as query_error:
        store.query(4)
    assert isinstance(segment_error.value, KeyError) and isinstance(query_error.value, KeyError)
    with pytest.raises(UnknownQueryError, match="query 4"):
        store.query_size(4)
    assert str(query_error.value).startswith("query 4")  # the message itself, not KeyError's quoted repr


def test_label_errors_are_distinct_and_still_value_errors(store: PreferenceStore):
    """Callers tell 'answered meanwhile' from 'no such query'; ``except ValueError`` still catches both."""
    store.add_queries([make_query(0)])
    store.add_label(0, Preference.LEFT, "alice")
    with pytest.raises(AlreadyLabeledError) as already:
        store.add_label(0, Preference.LEFT, "alice")
    with pytest.raises(UnknownQueryError) as unknown:
        store.add_label(1, Preference.LEFT, "alice")
    assert not isinstance(already.value, UnknownQueryError)
    assert not isinstance(unknown.value, AlreadyLabeledError)
    assert isinstance(already.value, ValueError) and isinstance(unknown.value, ValueError)


# SQLite's trace and plan; test_store_postgres checks PostgreSQL's index
@pytest.mark.parametrize("backend", ["sqlite"])
def test_has_label_is_one_indexed_lookup(store: PreferenceStore):
    store.add_queries([make_query(i) for i in range(3)])
    store.add_label(0, Preference.LEFT, "alice")
    store.add_label(1, Preference.SKIP, "alice")
    statements: list[str] = []
    raw = store._connection()
    raw.set_trace_callback(statements.append)
    try:
        answers = [store.has_label(query_id) for query_id in (0, 1, 2, 99)]
    finally:
        raw.set_trace_callback(None)
    assert answers == [True, True, False, False]  # a skip answers; an unknown id has no label
    assert len(statements) == 4  # one statement per call
    plan = " ".join(row[-1] for row in raw.execute(f"EXPLAIN QUERY PLAN {statements[0]}"))
    assert "SEARCH labels USING" in plan and "INDEX" in plan and "SCAN" not in plan, plan


def test_invalid_segments_are_rejected_before_writing(store: PreferenceStore):
    with pytest.raises(ValueError, match="horizon"):
        store.add_segments([make_segment(0, true_rewards=np.zeros(5, np.float32))])
    with pytest.raises(ValueError, match="length"):
        store.add_segments([Segment(**{**vars(make_segment(0)), "length": 9})])
    assert store.next_segment_id() == 0


def test_meta(store: PreferenceStore):
    assert store.get_meta("env_id") is None
    assert store.get_meta("env_id", "none") == "none"
    store.set_meta("env_id", "Hopper-v5")
    store.set_meta("env_id", "Walker2d-v5")
    assert store.get_meta("env_id") == "Walker2d-v5"
    assert store.get_meta("schema_version") == "4"
    with pytest.raises(ValueError, match="schema_version"):
        store.set_meta("schema_version", "4")


# ---------------------------------------------------------------- no pickle


def test_object_arrays_are_rejected(store: PreferenceStore):
    objects = np.empty((4, 1), dtype=object)
    objects[:] = {"a": 1}
    with pytest.raises(ValueError, match="holds Python objects"):
        store.add_segments([make_segment(0), make_segment(1, observations=objects)])
    with pytest.raises(ValueError, match="never pickles"):
        store.add_queries([Query(0, make_segment(2), make_segment(3, actions=objects))])
    assert (store.next_segment_id(), store.next_query_id()) == (0, 0)


class _Payload:
    """Unpickling this creates a file: proof that something was unpickled."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return pathlib.Path.touch, (self.target,)


def _npy_object_array(payload: _Payload) -> bytes:
    array = np.empty(2, dtype=object)
    array[:] = [payload, payload]
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


@pytest.mark.parametrize("craft", [_npy_object_array, pickle.dumps], ids=["npy-object-array", "raw-pickle"])
def test_loading_never_unpickles_a_crafted_blob(target: str, tmp_path: Path, craft):
    path, marker = target, tmp_path / "unpickled"
    with PreferenceStore(path) as store:
        store.add_queries([make_query(0)])
    with raw(path) as db:
        db.execute("UPDATE segments SET observations = ? WHERE segment_id = 1", (craft(_Payload(marker)),))
    with PreferenceStore(path) as store:
        with pytest.raises(StoreError, match=r"segments\.observations of segment 1 .*never unpickles"):
            store.segment(1)
        with pytest.raises(StoreError):
            store.pending_queries()
        assert_same_segment(store.segment(0), make_segment(0))
    assert not marker.exists()


# ---------------------------------------------------------------- files, schema, durability settings


def test_schema_matches_the_documented_one(store: PreferenceStore):
    db = store._database()
    assert db.tables() == set(SCHEMA)
    docs = DOCS.read_text()
    for table, columns in SCHEMA.items():
        assert db.columns(table) == columns
        assert f"`{table}`" in docs, table
        for column in columns:
            assert re.search(rf"\|\s*`{column}`\s*\|", docs), f"{table}.{column} is not documented"


@pytest.mark.parametrize("backend", ["sqlite"])  # PostgreSQL's settings: test_store_postgres.py
def test_wal_full_sync_and_busy_timeout(store: PreferenceStore):
    raw = store._connection()
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert raw.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    assert raw.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    store.add_queries([make_query(0)])
    store.add_label(0, Preference.LEFT, "alice")
    assert not raw.in_transaction  # every call commits before returning


def test_a_text_file_is_refused_with_its_path(tmp_path: Path):
    path = tmp_path / "labels.txt"
    path.write_text("query,preference\n0,left\n" * 100)
    with pytest.raises(StoreError, match=rf"{re.escape(str(path))} is not a SQLite database"):
        PreferenceStore(path)
    assert path.read_text().startswith("query,preference")  # untouched


def test_another_apps_database_is_refused(target: str):
    with raw(target) as db:
        db.execute("CREATE TABLE users (name TEXT)")
    with pytest.raises(StoreError, match=r"not a prefwrap preference store.*'users'"):
        PreferenceStore(target)


def test_a_directory_is_refused(tmp_path: Path):
    with pytest.raises(StoreError, match=re.escape(str(tmp_path))):
        PreferenceStore(tmp_path)


def test_a_newer_schema_version_is_refused(target: str):
    PreferenceStore(target).close()
    with raw(target) as db:
        db.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    with pytest.raises(StoreError, match=rf"{re.escape(target)} has store schema version 5.*version 4"):
        PreferenceStore(target)


def test_frames_are_compressed_and_version_1_stores_migrate(target: str):
    path = target
    smooth = np.repeat(np.arange(8, dtype=np.uint8)[:, None, None, None], 3, axis=3) * np.ones(
        (8, 32, 32, 3), np.uint8
    )  # clips are mostly flat colour, like rendered scenes
    clip = Segment(**{**vars(make_segment(1, horizon=8)), "frames": smooth})
    with PreferenceStore(path) as store:
        store.add_segments([clip, make_segment(2, frames=True)])
    with raw(path) as db:
        (blob,) = db.fetchone("SELECT frames FROM segment_frames WHERE segment_id = 1")
        assert len(blob) < smooth.nbytes / 10
        raw_npy = io.BytesIO()
        np.save(raw_npy, smooth, allow_pickle=False)  # what version 1 wrote
        db.execute("UPDATE segment_frames SET frames = ? WHERE segment_id = 1", (raw_npy.getvalue(),))
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    with PreferenceStore(path) as store:
        assert store.get_meta("schema_version") == "4"
        np.testing.assert_array_equal(store.segment(1).frames, smooth)
        assert_same_segment(store.segment(2), make_segment(2, frames=True))


def test_terminations_are_stored_and_version_2_stores_migrate(target: str):
    path = target
    ended = Segment(**{**vars(make_segment(1, horizon=8)), "length": 5, "terminated": True})
    with PreferenceStore(path) as store:
        store.add_segments([ended, make_segment(2)])
        assert store.segment(1).terminated and store.segment(1).absorbing_steps == 3
        assert not store.segment(2).terminated
    with raw(path) as db:  # what version 2 wrote: no terminated column
        db.execute("DELETE FROM segments WHERE segment_id = 1")
        db.execute("ALTER TABLE segments DROP COLUMN terminated")
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    with PreferenceStore(path) as store:
        assert store.get_meta("schema_version") == "4"
        assert not store.segment(2).terminated
        store.add_segments([ended])
        assert store.segment(1).terminated


def test_a_closed_store_is_refused(target: str):
    store = PreferenceStore(target)
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.n_labels()
    with pytest.raises(StoreError, match="closed"):
        store.add_label(0, Preference.LEFT, "alice")


def test_other_threads_are_refused_by_sqlite(tmp_path: Path):
    store = PreferenceStore(tmp_path / "prefs.db")
    errors: list[BaseException] = []

    def use_from_thread() -> None:
        try:
            store.n_labels()
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=use_from_thread)
    thread.start()
    thread.join()
    assert len(errors) == 1 and isinstance(errors[0], sqlite3.ProgrammingError)
    store.close()
