"""PostgreSQL-only behaviour of the store: errors, schemas per run, types, locks, durability settings.

The suite shared with SQLite is in ``test_store.py``; these need ``PREFWRAP_TEST_POSTGRES_URL``, except
the first two, which need no server.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_store import POSTGRES_URL, drop_schema, make_query, needs_postgres, new_target, postgres_url

from prefwrap.records import Preference
from prefwrap.store import PreferenceStore, StoreError


def test_without_psycopg_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg -> ImportError
    with pytest.raises(ImportError, match=r'pip install "prefwrap\[postgres\]"'):
        PreferenceStore("postgresql://me@127.0.0.1/runs")


def test_an_unreachable_server_is_one_line_naming_the_url_without_its_password():
    pytest.importorskip("psycopg", reason='psycopg is not installed (pip install "prefwrap[postgres]")')
    with pytest.raises(StoreError) as error:
        PreferenceStore("postgres://alice:s3cret@127.0.0.1:1/runs?connect_timeout=2")
    message = str(error.value)
    assert "\n" not in message and "s3cret" not in message
    assert "postgres://alice:***@127.0.0.1:1/runs" in message and "server is running" in message


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    with new_target("postgres", tmp_path) as target:  # a new schema, dropped afterwards
        yield target


@needs_postgres
def test_a_missing_database_names_the_fix():
    bad = POSTGRES_URL.rsplit("/", 1)[0] + "/no_such_database_here"
    with pytest.raises(StoreError, match=r"does not exist.*createdb"):
        PreferenceStore(bad)


@needs_postgres
def test_runs_share_a_database_through_schemas_created_on_first_open(url: str):
    other = url.replace("search_path%3D", "search_path%3Dother_")
    try:
        with PreferenceStore(url) as first, PreferenceStore(other) as second:
            first.add_queries([make_query(0)])
            first.add_label(0, Preference.LEFT, "alice")
            assert (second.n_labels(), second.next_query_id()) == (0, 0)
            second.set_meta("env_id", "Hopper-v5")
            assert first.get_meta("env_id") is None
    finally:
        drop_schema(other.rsplit("%3D", 1)[1])


@needs_postgres
def test_stores_opened_at_once_on_an_empty_schema_all_work(url: str):
    errors: list[BaseException] = []

    def open_and_label(k: int) -> None:
        try:
            with PreferenceStore(url) as store:
                store.add_queries([make_query(k)])
                store.add_label(k, Preference.RIGHT, f"t{k}")
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=open_and_label, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with PreferenceStore(url) as store:
        assert sorted(label.query_id for label in store.labels()) == list(range(6))


@needs_postgres
def test_column_types_keep_64_bit_ids_and_exact_timestamps(url: str):
    with PreferenceStore(url) as store:
        types = dict(
            store._database()
            .execute(
                "SELECT table_name || '.' || column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = current_schema()"
            )
            .fetchall()
        )
        assert types["segments.timestep"] == "bigint" and types["segments.observations"] == "bytea"
        assert types["labels.created_at"] == "double precision"
        store.add_queries([make_query(0)])
        label = store.add_label(0, Preference.EQUAL, "alice")
        assert store.labels()[0].created_at == label.created_at  # not rounded to float32
        indexed = store._database().fetchone(
            "SELECT COUNT(*) FROM pg_indexes WHERE schemaname = current_schema() AND tablename = 'labels' "
            "AND indexdef LIKE '%(query_id)'"
        )
        assert indexed == (1,)  # has_label is one index lookup


@needs_postgres
def test_a_label_writer_blocks_other_writers_but_never_readers(url: str):
    with PreferenceStore(url) as holder, PreferenceStore(url) as other:
        holder.add_queries([make_query(0), make_query(1)])
        other._database().execute("SET lock_timeout = '300ms'")
        db = holder._database()
        with db.transaction():
            db.lock_labels()  # as add_label does, held until the commit
            started = time.monotonic()
            assert other.labels() == [] and other.n_labels() == 0  # readers do not wait
            assert [q.query_id for q in other.pending_queries(with_frames=False)] == [0, 1]
            assert time.monotonic() - started < 0.3
            with pytest.raises(StoreError, match=r"waited 30 s for another writer's lock"):
                other.add_label(1, Preference.LEFT, "bob")
        other.add_label(1, Preference.LEFT, "bob")  # free again after the commit
        assert [label.labeler for label in holder.labels()] == ["bob"]


@needs_postgres
def test_commits_are_synchronous_even_where_the_server_says_otherwise(url: str):
    relaxed = url.replace("options=", "options=-csynchronous_commit%3Doff%20")  # as a server may be set
    with PreferenceStore(relaxed) as store:
        assert store._database().fetchone("SHOW synchronous_commit") == ("on",)
        assert store._database().fetchone("SHOW lock_timeout") == ("30s",)


@needs_postgres
def test_a_lost_connection_is_a_store_error_naming_the_store(url: str):
    with PreferenceStore(url) as store, PreferenceStore(url) as admin:
        (pid,) = store._database().fetchone("SELECT pg_backend_pid()")
        admin._database().execute("SELECT pg_terminate_backend(?)", (pid,))
        with pytest.raises(StoreError, match=r"PostgreSQL preference store postgresql://"):
            store.n_labels()


@needs_postgres
def test_the_schema_named_in_the_url_is_where_the_tables_are():
    schema = "run_named_in_url"
    try:
        with PreferenceStore(postgres_url(schema)) as store:
            assert store._database().fetchone("SELECT current_schema()") == (schema,)
            assert store.location == postgres_url(schema)
    finally:
        drop_schema(schema)
