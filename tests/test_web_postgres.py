"""The web labeling page on a PostgreSQL store, next to SQLite: the same API, journal, agreement and errors.

Tests taking ``target`` run on SQLite, and on PostgreSQL when ``PREFWRAP_TEST_POSTGRES_URL`` names a
server (``eval "$(bash scripts/postgres.sh env)"`` starts a throw-away one); each PostgreSQL test
gets a schema of its own, dropped afterwards (see ``test_store.py``). The error tests need no server.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from test_store import BACKENDS, needs_postgres, new_target
from test_web import answer, make_ranked_store, make_store, next_id, rank, session

from prefwrap.records import Preference, Ranking
from prefwrap.store import PreferenceStore, StoreError
from prefwrap.store.database import is_postgres_url, open_database
from prefwrap.store.schema import TABLES
from prefwrap.web.agreement import annotator_stats, report
from prefwrap.web.journal import (
    DATABASE_TABLE,
    AnnotationJournal,
    journal_location,
    journal_path,
    read_journal,
)

pytest.importorskip("fastapi", reason='the web page needs fastapi: pip install "prefwrap[web]"')
from fastapi.testclient import TestClient

from prefwrap.web.app import create_app
from prefwrap.web.server import WebServer, resolve_store, start_server_process

L, R = Preference.LEFT, Preference.RIGHT
UNREACHABLE = "postgres://alice:s3cret@127.0.0.1:1/runs?connect_timeout=2"  # nothing listens on port 1


@pytest.fixture(params=BACKENDS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty store: a SQLite file, or a PostgreSQL schema of its own."""
    with new_target(request.param, tmp_path / "run") as opened:
        yield opened


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    """A new PostgreSQL schema (tests using it are marked ``needs_postgres``)."""
    with new_target("postgres", tmp_path) as opened:
        yield opened


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(port: int, path: str, body: dict[str, object]) -> Any:
    """POST ``body`` to ``/api/<path>`` of the page on ``port``; the reply's JSON."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/{path}", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def journal_rows(target: str) -> list[tuple[int, str, object, str]]:
    return [(e.query_id, e.annotator, e.preference, e.role) for e in read_journal(target)]


def test_answers_go_to_the_store_and_second_opinions_to_the_journal(target: str, tmp_path: Path) -> None:
    make_store(target, 4)
    with TestClient(create_app(target, overlap=1.0)) as client:  # every query gets a second opinion
        alice, bob = session(client, "alice"), session(client, "bob")
        for query_id in (0, 1):
            assert next_id(client, alice) == query_id
            assert answer(client, alice, query_id, "left").json()["role"] == "label"
        query = client.post("/api/next", json={"session": bob}).json()["query"]
        assert query == {"query_id": 0, "second_opinion": True, "size": 2}
        assert answer(client, bob, 0, "right").json()["role"] == "second"
        late = answer(client, session(client, "carol"), 0, "equal")
        assert late.status_code == 409 and "never overwritten" in late.json()["detail"]
    with PreferenceStore(target) as store:  # another connection: everything is committed
        labels = [(x.query_id, x.preference, x.labeler) for x in store.labels()]
    assert labels == [(0, L, "human:alice"), (1, L, "human:alice")]
    assert journal_rows(target) == [
        (0, "alice", L, "label"),
        (1, "alice", L, "label"),
        (0, "bob", R, "second"),
    ]
    if is_postgres_url(target):  # the journal is a table of the store's schema; no file anywhere
        with closing(open_database(target)) as db:
            assert db.tables() == {*TABLES, DATABASE_TABLE}
        assert not list(tmp_path.rglob("*.sqlite"))
    else:
        assert journal_path(target).is_file()


def test_a_restarted_page_keeps_labels_journal_and_waiting_second_opinions(
    target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make_store(target, 4)
    with TestClient(create_app(target, overlap=1.0)) as client:
        alice = session(client, "alice")
        for query_id in (0, 1):
            assert next_id(client, alice) == query_id
            assert answer(client, alice, query_id, "left").status_code == 200
        bob = session(client, "bob")
        assert next_id(client, bob) == 0
        assert answer(client, bob, 0, "right").json()["role"] == "second"
    with TestClient(create_app(target, overlap=1.0)) as client:  # a new server on the same store
        alice = session(client, "alice")
        retry = answer(client, alice, 1, "left")  # a page resends an answer saved before the restart
        assert retry.status_code == 200 and retry.json()["duplicate"] is True
        assert retry.json()["mine"] == 2 and retry.json()["n_labels"] == 2
        bob = session(client, "bob")
        query = client.post("/api/next", json={"session": bob}).json()["query"]
        assert query == {"query_id": 1, "second_opinion": True, "size": 2}  # 0 has its second already
        assert answer(client, bob, 1, "left").json()["role"] == "second"
        assert next_id(client, alice) == 2
    with PreferenceStore(target) as store:
        stats = {s.labeler: s for s in annotator_stats(store)}
        text = report(store)
    assert stats["human:alice"].n_labels == stats["human:bob"].n_labels == 2
    assert stats["human:bob"].n_overlap == 2 and stats["human:bob"].agreement == pytest.approx(0.5)
    assert stats["human:bob"].median_seconds == pytest.approx(1.5, abs=0.05)  # the page's timing
    assert "human:bob" in text and "kappa" in text
    from prefwrap.cli import main

    assert main(["annotators", str(tmp_path), "--store", target]) == 0
    assert "human:bob" in capsys.readouterr().out


def test_a_ranked_second_opinion_round_trips_through_the_journal(target: str) -> None:
    make_ranked_store(target, 1, 3)
    with TestClient(create_app(target, overlap=1.0)) as client:
        alice, bob = session(client, "alice"), session(client, "bob")
        assert next_id(client, alice) == 0
        assert rank(client, alice, 0, [[2], [0, 1]]).json()["role"] == "label"
        assert next_id(client, bob) == 0
        assert rank(client, bob, 0, [[2], [1], [0]]).json()["role"] == "second"
    assert journal_rows(target) == [
        (0, "alice", Ranking([[2], [0, 1]]), "label"),
        (0, "bob", Ranking([[2], [1], [0]]), "second"),
    ]
    with PreferenceStore(target) as store:  # pairs (0, 1), (0, 2), (1, 2): E R R vs R R R
        stats = {s.labeler: s for s in annotator_stats(store)}
    assert stats["human:bob"].agreement == pytest.approx(2 / 3)


def test_the_journal_is_append_only_on_either_engine(target: str) -> None:
    assert read_journal(target) == []  # no store, no journal: nothing is created by reading
    PreferenceStore(target).close()
    assert read_journal(target) == []
    journal = AnnotationJournal(journal_location(target))
    try:
        assert journal.add(3, "alice", Ranking([[1], [0, 2]]), "label", shown_at=1.0, answered_at=3.5)
        assert not journal.add(3, "alice", R, "label")  # a retried request: the first answer stands
        assert journal.add(3, "bob", L, "second", shown_at=2.0, answered_at=2.25)
        assert journal.has_second(3) and not journal.has_second(4)
        assert journal.answer_of(3, "alice").preference == Ranking([[1], [0, 2]])  # type: ignore[union-attr]
        assert journal.answer_of(3, "carol") is None
    finally:
        journal.close()
    reopened = AnnotationJournal(journal_location(target))  # an existing journal opens as it is
    reopened.close()
    assert [(e.annotator, e.seconds) for e in read_journal(target)] == [("alice", 2.5), ("bob", 0.25)]


@needs_postgres
def test_a_postgres_journal_needs_a_store_in_its_schema(url: str) -> None:
    with pytest.raises(StoreError, match="holds no prefwrap preference store"):
        AnnotationJournal(url)  # a mistyped schema: refused, and left without a stray table
    PreferenceStore(url).close()  # which would have made the store refuse the schema
    with closing(open_database(url)) as db:
        assert DATABASE_TABLE not in db.tables()


def test_resolve_store_passes_a_url_and_finds_a_run_directory_store(tmp_path: Path) -> None:
    assert resolve_store("postgresql://me@db.lab/runs") == "postgresql://me@db.lab/runs"
    store = make_store(tmp_path / "preferences.sqlite", 1)
    assert resolve_store(tmp_path) == resolve_store(store) == str(store)
    with pytest.raises(FileNotFoundError, match="start training first"):
        resolve_store(tmp_path / "nothing")


def test_an_unreachable_database_is_one_line_without_its_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("psycopg", reason='psycopg is not installed (pip install "prefwrap[postgres]")')
    from prefwrap.cli import main
    from prefwrap.web.__main__ import main as web_main

    with pytest.raises(StoreError) as error:
        WebServer(UNREACHABLE, port=0)
    assert "\n" not in str(error.value) and "s3cret" not in str(error.value)
    assert "postgres://alice:***@127.0.0.1:1/runs" in str(error.value)
    with pytest.raises(SystemExit) as exit_info:
        main(["label", str(tmp_path), "--web", "--store", UNREACHABLE, "--port", "0"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot connect" in err and "s3cret" not in err
    with pytest.raises(SystemExit) as exit_info:
        web_main([UNREACHABLE, "--port", "0"])
    assert "cannot connect" in str(exit_info.value.code) and "\n" not in str(exit_info.value.code)


def test_without_psycopg_the_page_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from prefwrap.cli import main

    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg -> ImportError
    with pytest.raises(SystemExit) as exit_info:
        main(["label", str(tmp_path), "--web", "--store", "postgresql://me@127.0.0.1/runs", "--port", "0"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "prefwrap[postgres]"' in err


def test_a_page_process_that_cannot_start_says_why_in_one_line() -> None:
    pytest.importorskip("psycopg", reason='psycopg is not installed (pip install "prefwrap[postgres]")')
    with pytest.raises(OSError, match="did not start: cannot connect to the PostgreSQL") as error:
        start_server_process(UNREACHABLE, port=0)
    assert "\n" not in str(error.value) and "s3cret" not in str(error.value)


@needs_postgres
def test_human_oracle_web_serves_a_postgres_store_from_its_own_process(url: str) -> None:
    from prefwrap.oracles.base import OracleContext
    from prefwrap.oracles.human import HumanOracle

    make_store(url, 3)
    port = free_port()
    oracle = HumanOracle(interface="web", port=port, overlap=1.0)
    oracle.connect(OracleContext(10.0, url, lambda query, answer: None))
    try:
        alice, bob = (post(port, "session", {"name": name})["session"] for name in ("alice", "bob"))
        assert post(port, "next", {"session": alice})["query"]["query_id"] == 0
        post(port, "answer", {"session": alice, "query_id": 0, "preference": "right", "seconds": 1.0})
        assert post(port, "next", {"session": bob})["query"]["second_opinion"] is True
        post(port, "answer", {"session": bob, "query_id": 0, "preference": "right", "seconds": 1.0})
    finally:
        oracle.close()
    with PreferenceStore(url) as store:  # the trainer's view, through its own connection
        assert [(x.query_id, x.labeler) for x in store.labels()] == [(0, "human:alice")]
    assert journal_rows(url) == [(0, "alice", R, "label"), (0, "bob", R, "second")]


def test_kill_9_of_the_page_process_loses_no_saved_answer(target: str) -> None:
    make_store(target, 4)
    port = free_port()

    def start() -> subprocess.Popen[str]:
        command = [sys.executable, "-m", "prefwrap.web", target, "--port", str(port), "--overlap", "1"]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    return process
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[0]
            time.sleep(0.1)

    def say(sid: str, query_id: int, preference: str) -> Any:
        body = {"session": sid, "query_id": query_id, "preference": preference, "seconds": 1}
        return post(port, "answer", body)

    process = start()
    try:
        alice, bob = (post(port, "session", {"name": name})["session"] for name in ("alice", "bob"))
        for query_id in (0, 1):
            assert post(port, "next", {"session": alice})["query"]["query_id"] == query_id
            assert say(alice, query_id, "left")["saved"]
        post(port, "next", {"session": bob})
        assert say(bob, 0, "right")["saved"]
        process.kill()  # SIGKILL: no shutdown code runs
        process.wait(timeout=10)
        process = start()
        bob = post(port, "session", {"name": "bob"})["session"]  # the page signs in again
        query = post(port, "next", {"session": bob})["query"]
        assert query == {"query_id": 1, "second_opinion": True, "size": 2}
        retry = say(bob, 0, "right")  # a reply lost in the kill: the page sends the answer again
        assert retry["duplicate"] is True and retry["n_labels"] == 2
    finally:
        process.kill()
        process.wait(timeout=10)
    assert journal_rows(target) == [
        (0, "alice", L, "label"),
        (1, "alice", L, "label"),
        (0, "bob", R, "second"),
    ]


@pytest.mark.parametrize("via", BACKENDS)
def test_store_copy_carries_the_journal_across_backends_and_back(
    target: str, via: str, tmp_path: Path
) -> None:
    """``prefwrap store copy`` copies the journal too: times, second opinions and rankings survive."""
    from prefwrap.cli import main

    make_store(target, 3)
    with PreferenceStore(target) as store:
        store.add_label(0, L, "human:alice")
    journal = AnnotationJournal(journal_location(target))
    journal.add(0, "alice", L, "label", shown_at=100.0, answered_at=103.5)
    journal.add(0, "bob", Ranking([[1], [0]]), "second", shown_at=101.0, answered_at=104.0)
    journal.close()
    with new_target(via, tmp_path / "middle") as middle, new_target("sqlite", tmp_path / "back") as back:
        assert main(["store", "copy", target, middle]) == 0
        assert main(["store", "copy", middle, back]) == 0
        assert read_journal(back) == read_journal(middle) == read_journal(target)
        assert [e.seconds for e in read_journal(back)] == [3.5, 3.0]
        with PreferenceStore(target) as original, PreferenceStore(back) as copied:
            assert report(copied) == report(original)
