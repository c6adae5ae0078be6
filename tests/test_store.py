"""Tests for prefwrap.store: round trips, the label life cycle, other processes, kill -9, no pickle."""

from __future__ import annotations

import io
import os
import pathlib
import pickle
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
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

DOCS = Path(__file__).resolve().parents[1] / "docs" / "store.md"
SCHEMA = {
    "meta": ["key", "value"],
    "segments": [
        *("segment_id", "length", "env_index", "timestep", "observations", "actions", "true_rewards"),
        "terminated",
    ],
    "segment_frames": ["segment_id", "frames"],
    "queries": ["query_id", "left_id", "right_id", "created_at"],
    "labels": ["seq", "query_id", "preference", "labeler", "created_at"],
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


@pytest.fixture
def store(tmp_path: Path):
    with PreferenceStore(tmp_path / "run" / "prefs.db") as opened:
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


def test_everything_survives_close_and_reopen(tmp_path: Path):
    path = tmp_path / "deep" / "dir" / "prefs.db"
    queries = [make_query(i) for i in range(3)]
    with PreferenceStore(path) as store:
        assert store.path == path
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


def test_next_ids_start_at_zero_and_follow_the_largest_id():
    with PreferenceStore(":memory:") as store:
        assert store.path is None
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
    assert [q.query_id for q in store.pending_queries()] == [1]
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


def test_unknown_ids_raise_key_errors_naming_the_id(store: PreferenceStore):
    with pytest.raises(UnknownSegmentError, match="segment 3") as segment_error:
        store.segment(3)
    with pytest.raises(UnknownQueryError, match="query 4") as query_error:
        store.query(4)
    assert isinstance(segment_error.value, KeyError) and isinstance(query_error.value, KeyError)
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
    assert store.get_meta("schema_version") == "3"
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
def test_loading_never_unpickles_a_crafted_blob(tmp_path: Path, craft):
    path, marker = tmp_path / "prefs.db", tmp_path / "unpickled"
    with PreferenceStore(path) as store:
        store.add_queries([make_query(0)])
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE segments SET observations = ? WHERE segment_id = 1", (craft(_Payload(marker)),))
    raw.close()
    with PreferenceStore(path) as store:
        with pytest.raises(StoreError, match=r"segments\.observations of segment 1 .*never unpickles"):
            store.segment(1)
        with pytest.raises(StoreError):
            store.pending_queries()
        assert_same_segment(store.segment(0), make_segment(0))
    assert not marker.exists()


# ---------------------------------------------------------------- files, schema, durability settings


def test_schema_matches_the_documented_one(store: PreferenceStore):
    raw = store._connection()
    tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == set(SCHEMA)
    docs = DOCS.read_text()
    for table, columns in SCHEMA.items():
        assert [row[1] for row in raw.execute(f"PRAGMA table_info({table})")] == columns
        assert f"`{table}`" in docs, table
        for column in columns:
            assert re.search(rf"\|\s*`{column}`\s*\|", docs), f"{table}.{column} is not documented"


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


def test_another_apps_database_is_refused(tmp_path: Path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE users (name TEXT)")
    raw.close()
    with pytest.raises(StoreError, match=r"not a prefwrap preference store.*'users'"):
        PreferenceStore(path)


def test_a_directory_is_refused(tmp_path: Path):
    with pytest.raises(StoreError, match=re.escape(str(tmp_path))):
        PreferenceStore(tmp_path)


def test_a_newer_schema_version_is_refused(tmp_path: Path):
    path = tmp_path / "prefs.db"
    PreferenceStore(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    raw.close()
    with pytest.raises(StoreError, match=rf"{re.escape(str(path))} has store schema version 4.*version 3"):
        PreferenceStore(path)


def test_frames_are_compressed_and_version_1_stores_migrate(tmp_path: Path):
    path = tmp_path / "prefs.db"
    smooth = np.repeat(np.arange(8, dtype=np.uint8)[:, None, None, None], 3, axis=3) * np.ones(
        (8, 32, 32, 3), np.uint8
    )  # clips are mostly flat colour, like rendered scenes
    clip = Segment(**{**vars(make_segment(1, horizon=8)), "frames": smooth})
    with PreferenceStore(path) as store:
        store.add_segments([clip, make_segment(2, frames=True)])
    with sqlite3.connect(path) as raw:
        (blob,) = raw.execute("SELECT frames FROM segment_frames WHERE segment_id = 1").fetchone()
        assert len(blob) < smooth.nbytes / 10
        raw_npy = io.BytesIO()
        np.save(raw_npy, smooth, allow_pickle=False)  # what version 1 wrote
        raw.execute("UPDATE segment_frames SET frames = ? WHERE segment_id = 1", (raw_npy.getvalue(),))
        raw.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    raw.close()
    with PreferenceStore(path) as store:
        assert store.get_meta("schema_version") == "3"
        np.testing.assert_array_equal(store.segment(1).frames, smooth)
        assert_same_segment(store.segment(2), make_segment(2, frames=True))


def test_terminations_are_stored_and_version_2_stores_migrate(tmp_path: Path):
    path = tmp_path / "prefs.db"
    ended = Segment(**{**vars(make_segment(1, horizon=8)), "length": 5, "terminated": True})
    with PreferenceStore(path) as store:
        store.add_segments([ended, make_segment(2)])
        assert store.segment(1).terminated and store.segment(1).absorbing_steps == 3
        assert not store.segment(2).terminated
    with sqlite3.connect(path) as raw:  # what version 2 wrote: no terminated column
        raw.execute("DELETE FROM segments WHERE segment_id = 1")
        raw.execute("ALTER TABLE segments DROP COLUMN terminated")
        raw.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    raw.close()
    with PreferenceStore(path) as store:
        assert store.get_meta("schema_version") == "3"
        assert not store.segment(2).terminated
        store.add_segments([ended])
        assert store.segment(1).terminated


def test_closed_store_and_other_threads_are_refused(tmp_path: Path):
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
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.n_labels()


# ---------------------------------------------------------------- other processes

_LABELING_UI = textwrap.dedent(
    """
    import sys
    from prefwrap.records import Preference
    from prefwrap.store import PreferenceStore

    store = PreferenceStore(sys.argv[1])
    print("ready", flush=True)
    for line in sys.stdin:
        command, *args = line.split()
        if command == "pending":
            print(" ".join(str(q.query_id) for q in store.pending_queries(with_frames=False)), flush=True)
        elif command == "label":
            label = store.add_label(int(args[0]), Preference(args[1]), "ui")
            print("ok", label.query_id, flush=True)
        elif command == "labels":
            print(" ".join(str(x.query_id) for x in store.labels()), flush=True)
        elif command == "label-range":
            for query_id in range(int(args[0]), int(args[1])):
                store.add_label(query_id, Preference.LEFT, "ui")
            print("done", flush=True)
    """
)


def _spawn(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
    )


def _ask(process: subprocess.Popen[str], command: str) -> str:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(command + "\n")
    process.stdin.flush()
    return process.stdout.readline().strip()


def test_labels_and_queries_cross_between_processes(tmp_path: Path):
    path = tmp_path / "prefs.db"
    with PreferenceStore(path) as trainer:
        trainer.add_queries([make_query(0), make_query(1)])
        ui = _spawn(_LABELING_UI, str(path))
        try:
            assert ui.stdout is not None and ui.stdout.readline().strip() == "ready"
            assert _ask(ui, "pending") == "0 1"
            assert _ask(ui, "label 1 right") == "ok 1"
            # The trainer's long-open connection sees the other process's label at once.
            assert [(x.query_id, x.preference, x.labeler) for x in trainer.labels()] == [
                (1, Preference.RIGHT, "ui")
            ]
            assert [q.query_id for q in trainer.pending_queries()] == [0]
            trainer.add_queries([make_query(2)])
            trainer.add_label(0, Preference.EQUAL, "synthetic")
            assert _ask(ui, "pending") == "2"
            assert _ask(ui, "labels") == "1 0"

            # Both processes write labels at the same time: none is lost, arrival order stays exact.
            trainer.add_queries([make_query(i) for i in range(3, 83)])
            ui.stdin.write("label-range 3 43\n")  # type: ignore[union-attr]
            ui.stdin.flush()  # type: ignore[union-attr]
            for query_id in range(43, 83):
                trainer.add_label(query_id, Preference.RIGHT, "trainer")
            assert ui.stdout.readline().strip() == "done"
        finally:
            ui.stdin.close()  # type: ignore[union-attr]
            assert ui.wait(timeout=30) == 0
        labels = trainer.labels()
        assert trainer.n_labels() == len(labels) == 82
        assert sorted(x.query_id for x in labels) == [0, 1, *range(3, 83)]  # query 2 stays pending
        assert trainer.labels(after=50) == labels[50:]
        assert {x.labeler for x in labels if x.query_id >= 3} == {"ui", "trainer"}
        assert all((x.labeler == "ui") == (x.query_id < 43) for x in labels if x.query_id >= 3)


_LABEL_UNTIL_KILLED = textwrap.dedent(
    """
    import sys
    import numpy as np
    from prefwrap.records import Preference, Query, Segment
    from prefwrap.store import PreferenceStore

    def segment(i):
        return Segment(i, np.full((8, 4), i, np.float32), np.zeros((8, 2), np.float32),
                       np.ones(8, np.float32), length=8, frames=np.zeros((8, 4, 4, 3), np.uint8))

    store = PreferenceStore(sys.argv[1])
    query_id = store.next_query_id()
    while True:  # runs until SIGKILL
        store.add_queries([Query(query_id, segment(2 * query_id), segment(2 * query_id + 1))])
        store.add_label(query_id, [Preference.LEFT, Preference.RIGHT][query_id % 2], "human")
        print(query_id, flush=True)
        query_id += 1
    """
)


def test_kill_9_loses_no_reported_label(tmp_path: Path):
    path = tmp_path / "prefs.db"
    with PreferenceStore(path) as store:  # labels from an earlier session must survive too
        store.add_queries([make_query(0)])
        store.add_label(0, Preference.EQUAL, "human")
    process = _spawn(_LABEL_UNTIL_KILLED, str(path))
    assert process.stdout is not None
    reported = [int(process.stdout.readline()) for _ in range(25)]
    os.kill(process.pid, signal.SIGKILL)  # mid-way: the child is writing as fast as it can
    reported += [int(line) for line in process.stdout.read().split()]  # printed before the kill
    assert process.wait(timeout=30) == -signal.SIGKILL
    assert reported[0] == 1 and reported == list(range(1, len(reported) + 1))

    with PreferenceStore(path) as store:
        raw = store._connection()
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
        labels = {x.query_id: x.preference for x in store.labels()}
        assert labels[0] == Preference.EQUAL
        for query_id in reported:
            assert labels[query_id] == [Preference.LEFT, Preference.RIGHT][query_id % 2]
            query = store.query(query_id)
            assert query.left.observations[0, 0] == 2 * query_id and query.left.frames is not None
        assert store.n_labels() == len(store.labels()) >= len(reported) + 1
        # The store is usable again: a resumed run labels what was left pending and goes on.
        pending = [q.query_id for q in store.pending_queries(with_frames=False)]
        assert len(pending) <= 1
        for query_id in pending:
            store.add_label(query_id, Preference.SKIP, "human")
        store.add_queries([make_query(store.next_query_id())])
        assert store.n_labels() == store.next_query_id() - 1
