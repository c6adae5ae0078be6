"""HTTP-level tests of the web labeling page: validation, leases, overlap, agreement (no browser)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from prefwrap.records import Preference, Query, Ranking, Segment
from prefwrap.store import PreferenceStore
from prefwrap.web.agreement import annotator_stats, cohen_kappa, pair_answers, report
from prefwrap.web.journal import AnnotationJournal, journal_path
from prefwrap.web.leases import LeaseTable, is_overlap

pytest.importorskip("fastapi", reason='the web page needs fastapi: pip install "prefwrap[web]"')
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")
from fastapi.testclient import TestClient

from prefwrap.web.app import MAX_BODY, create_app

H, FRAME_H, FRAME_W = 15, 48, 64
StoreAt = TypeVar("StoreAt", Path, str)  # a store file, or a postgresql:// URL (test_web_postgres.py)


def make_segment(segment_id: int, colour: tuple[int, int, int], length: int = H) -> Segment:
    """A segment whose frame ``t`` is ``colour`` with a white square moving right (frames differ)."""
    frames = np.empty((H, FRAME_H, FRAME_W, 3), np.uint8)
    frames[:] = colour
    for t in range(H):
        frames[t, 18:30, 4 * t : 4 * t + 8] = 255
    zeros = np.zeros((H, 2), np.float32)
    return Segment(segment_id, zeros, zeros, np.zeros(H, np.float32), length, frames=frames)


def make_store(path: StoreAt, n_queries: int, first_id: int = 0) -> StoreAt:
    """A store (a file, or a ``postgresql://`` URL) with ``n_queries`` pending queries whose clips can
    be shown."""
    queries = [
        Query(q, make_segment(2 * q, (40, 90, 200)), make_segment(2 * q + 1, (210, 110, 40)))
        for q in range(first_id, first_id + n_queries)
    ]
    with PreferenceStore(path) as store:
        store.add_queries(queries)
        store.set_meta("render_fps", "10")
    return path


CLIP_COLOURS = ((40, 90, 200), (210, 110, 40), (60, 170, 90), (160, 90, 210), (40, 170, 180), (220, 80, 140))


def make_ranked_store(path: StoreAt, n_queries: int, k: int) -> StoreAt:
    """A store with ``n_queries`` pending queries of ``k`` segments, clip ``i`` in ``CLIP_COLOURS[i]``."""
    queries = [
        Query.of(q, [make_segment(k * q + i, CLIP_COLOURS[i]) for i in range(k)]) for q in range(n_queries)
    ]
    with PreferenceStore(path) as store:
        store.add_queries(queries)
        store.set_meta("render_fps", "10")
    return path


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return make_store(tmp_path / "preferences.sqlite", 6)


def client_for(store_path: Path, **kwargs: object) -> TestClient:
    return TestClient(create_app(store_path, **kwargs))


def session(client: TestClient, name: str) -> str:
    response = client.post("/api/session", json={"name": name})
    assert response.status_code == 200, response.text
    return response.json()["session"]


def next_id(client: TestClient, sid: str) -> int | None:
    query = client.post("/api/next", json={"session": sid}).json()["query"]
    return None if query is None else query["query_id"]


def answer(client: TestClient, sid: str, query_id: int, preference: str = "left", seconds: float = 1.5):
    return client.post(
        "/api/answer",
        json={"session": sid, "query_id": query_id, "preference": preference, "seconds": seconds},
    )


def rank(client: TestClient, sid: str, query_id: int, ranking: object):
    return client.post(
        "/api/answer", json={"session": sid, "query_id": query_id, "ranking": ranking, "seconds": 2.0}
    )


def test_an_answer_is_in_the_store_with_its_labeler_before_the_reply(store_path: Path) -> None:
    client = client_for(store_path)
    sid = session(client, "alice")
    query_id = next_id(client, sid)
    response = answer(client, sid, query_id, "right")
    assert response.status_code == 200 and response.json()["saved"] is True
    assert response.json()["n_labels"] == 1
    with PreferenceStore(store_path) as store:  # another connection: the label is committed
        (label,) = store.labels()
    assert (label.query_id, label.preference, label.labeler) == (query_id, Preference.RIGHT, "human:alice")


def test_two_annotators_never_hold_the_same_query(store_path: Path) -> None:
    client = client_for(store_path)
    alice, bob = session(client, "alice"), session(client, "bob")
    held = {"alice": [next_id(client, alice), next_id(client, alice)], "bob": [next_id(client, bob)]}
    assert len(set(held["alice"] + held["bob"])) == 3
    assert answer(client, bob, held["alice"][0]).status_code == 409  # shown to alice
    response = client.post("/api/leave", json={"session": alice})
    assert response.status_code == 200
    assert next_id(client, bob) == held["alice"][0]  # alice's tab closed: her queries go to bob


def test_leases_expire_without_heartbeat_and_are_capped_per_page() -> None:
    now = [0.0]
    table = LeaseTable(60.0, max_per_session=2, clock=lambda: now[0])
    assert table.claim("a", 1) and table.claim("a", 2) and not table.claim("a", 3)
    assert not table.claim("b", 1)
    now[0] = 50.0
    assert table.renew("a") == 2
    now[0] = 100.0  # renewed at 50: alive until 110
    assert not table.claim("b", 1)
    now[0] = 111.0
    assert table.claim("b", 1) and table.holder(2) is None


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"session": "S", "query_id": 999, "preference": "left", "seconds": 1}, 404),
        ({"session": "S", "query_id": 0, "preference": "better", "seconds": 1}, 400),
        ({"session": "S", "query_id": 0, "preference": "left", "seconds": -1}, 422),
        ({"session": "S", "query_id": "0", "preference": "left", "seconds": 1}, 422),
        ({"session": "S", "query_id": 2**70, "preference": "left", "seconds": 1}, 422),
        ({"session": "S", "query_id": 0, "preference": "left"}, 422),
        ({"session": "S", "query_id": 0, "preference": "left", "seconds": 1, "extra": 1}, 422),
        ({"session": "nope", "query_id": 0, "preference": "left", "seconds": 1}, 410),
        ([1, 2, 3], 422),
    ],
)
def test_bad_answers_are_4xx_with_a_message_and_store_nothing(
    store_path: Path, body: object, status: int
) -> None:
    client = client_for(store_path)
    sid = session(client, "alice")
    if isinstance(body, dict) and body.get("session") == "S":
        body = {**body, "session": sid}
    response = client.post("/api/answer", json=body)
    assert response.status_code == status, response.text
    assert response.json()["detail"]
    with PreferenceStore(store_path) as store:
        assert store.n_labels() == 0


def test_malformed_oversized_and_unknown_requests_are_4xx(store_path: Path) -> None:
    client = client_for(store_path)
    sid = session(client, "alice")
    bad_json = client.post("/api/answer", content=b"{not json", headers={"content-type": "application/json"})
    assert bad_json.status_code == 422 and "malformed" in bad_json.json()["detail"]
    huge = client.post(
        "/api/answer", content=b"x" * (MAX_BODY + 1), headers={"content-type": "application/json"}
    )
    assert huge.status_code == 413 and str(MAX_BODY) in huge.json()["detail"]

    def chunks():  # no content-length: the limit holds while reading
        for _ in range(10):
            yield b"x" * 1000

    chunked = client.post("/api/answer", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413
    assert client.get("/api/clip/999/left").status_code == 404
    assert client.get("/api/clip/0/middle").status_code == 422
    assert client.get(f"/api/clip/{2**70}/left").status_code in (404, 422)
    assert client.post("/api/session", json={"name": "<script>"}).status_code == 400
    assert client.post("/api/session", json={"name": ""}).status_code == 400
    assert client.post("/api/heartbeat", json={"session": "gone"}).status_code == 410
    assert next_id(client, sid) == 0


def test_an_answered_query_is_409_and_a_retry_is_not_a_second_label(store_path: Path) -> None:
    client = client_for(store_path)
    alice, bob = session(client, "alice"), session(client, "bob")
    query_id = next_id(client, alice)
    assert answer(client, alice, query_id).status_code == 200
    retry = answer(client, alice, query_id)  # the reply was lost, the page sends again
    assert retry.status_code == 200 and retry.json()["duplicate"] is True
    late = answer(client, bob, query_id, "right")
    assert late.status_code == 409 and "never overwritten" in late.json()["detail"]
    with PreferenceStore(store_path) as store:
        assert [label.preference for label in store.labels()] == [Preference.LEFT]


def test_clips_are_sprite_sheets_with_their_layout(store_path: Path) -> None:
    client = client_for(store_path)
    response = client.get("/api/clip/0/right")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert (response.headers["x-frames"], response.headers["x-frame-width"]) == (str(H), str(FRAME_W))
    import io

    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
    columns = int(response.headers["x-columns"])
    assert image.shape[1] == columns * FRAME_W
    assert tuple(image[0, 0]) == (210, 110, 40)  # the right clip's colour, losslessly


def test_a_token_is_required_when_set(store_path: Path) -> None:
    client = client_for(store_path, token="s3cret")
    assert client.get("/api/status").status_code == 401
    assert client.get("/api/status", headers={"X-Prefwrap-Token": "wrong"}).status_code == 401
    assert client.get("/api/status?token=s3cret").status_code == 200
    assert client.get("/").status_code == 200  # the page itself holds no data


def test_status_says_what_training_does_before_the_first_query(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite"
    with PreferenceStore(path) as store:
        store.set_meta("first_queries_at", "5000")
        store.set_meta("timestep", "1200")
    status = client_for(path).get("/api/status").json()
    assert status["message"] == "Training: the first queries come in about 3,800 steps."
    assert (status["n_labels"], status["n_waiting"]) == (0, 0)


def test_overlap_queries_get_a_second_opinion_in_the_journal(tmp_path: Path) -> None:
    path = make_store(tmp_path / "p.sqlite", 20)
    overlap_ids = [q for q in range(20) if is_overlap(q, 0.25)]
    assert overlap_ids
    client = client_for(path, overlap=0.25)
    alice, bob = session(client, "alice"), session(client, "bob")
    for _ in range(20):  # alice answers everything she is given
        query_id = next_id(client, alice)
        if query_id is None:
            break
        assert answer(client, alice, query_id, "left").status_code == 200
    seconds = []
    while (query_id := next_id(client, bob)) is not None:  # bob gets only the overlap queries
        seconds.append(query_id)
        assert answer(client, bob, query_id, "left" if query_id % 2 else "right").json()["role"] == "second"
    assert sorted(seconds) == overlap_ids
    with PreferenceStore(path) as store:
        assert store.n_labels() == 20 and {label.labeler for label in store.labels()} == {"human:alice"}
        stats = {s.labeler: s for s in annotator_stats(store)}
        text = report(store)
    assert stats["human:bob"].n_overlap == len(overlap_ids) and stats["human:alice"].n_labels == 20
    assert stats["human:bob"].median_seconds == pytest.approx(1.5, abs=0.05)
    assert "human:alice" in text and "kappa" in text


def test_cohen_kappa() -> None:
    L, R, E = Preference.LEFT, Preference.RIGHT, Preference.EQUAL
    assert cohen_kappa([L, R, E], [L, R, E]) == pytest.approx(1.0)
    assert cohen_kappa([L, L, R, R], [L, R, R, R]) == pytest.approx(0.5)
    assert np.isnan(cohen_kappa([L, L], [L, L])) and np.isnan(cohen_kappa([], []))
    with pytest.raises(ValueError, match="same items"):
        cohen_kappa([L], [])


def test_journal_is_append_only_per_annotator(tmp_path: Path) -> None:
    journal = AnnotationJournal(journal_path(tmp_path / "p.sqlite"))
    assert journal.path.name == "p.annotations.sqlite"
    assert journal.add(3, "alice", Preference.LEFT, "label", shown_at=1.0, answered_at=3.5)
    assert not journal.add(3, "alice", Preference.RIGHT, "label")
    assert [e.seconds for e in journal.entries()] == [2.5]
    journal.close()


def test_importing_prefwrap_web_does_not_import_fastapi() -> None:
    import subprocess
    import sys

    code = "import sys, prefwrap.web, prefwrap.web.agreement; print('fastapi' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_human_oracle_web_serves_the_run_store_while_training(store_path: Path) -> None:
    import json
    import socket
    import urllib.request

    from prefwrap.oracles.base import OracleContext
    from prefwrap.oracles.human import HumanOracle

    with pytest.raises(ValueError, match="interface"):
        HumanOracle(interface="curses")  # type: ignore[arg-type]
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    oracle = HumanOracle(interface="web", port=port)
    with PreferenceStore(store_path) as store:
        queries = store.pending_queries(with_frames=False)
    oracle.connect(OracleContext(10.0, store_path, lambda query, answer: None))
    try:
        assert oracle.label(queries) == [None] * len(queries)  # answers arrive through the store
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=10) as response:
            assert json.load(response)["n_waiting"] == len(queries)
    finally:
        oracle.close()
    assert not oracle._session.is_alive()


# ------------------------------------------------------------------------------------------- rankings


def test_a_ranking_is_stored_and_a_second_opinion_goes_to_the_journal(tmp_path: Path) -> None:
    path = make_ranked_store(tmp_path / "p.sqlite", 2, 4)
    client = client_for(path, overlap=1.0)
    alice, bob = session(client, "alice"), session(client, "bob")
    query = client.post("/api/next", json={"session": alice}).json()["query"]
    assert query == {"query_id": 0, "second_opinion": False, "size": 4}
    response = rank(client, alice, 0, [[2], [3, 0], [1]])
    assert response.status_code == 200 and response.json()["role"] == "label", response.text
    assert client.post("/api/next", json={"session": bob}).json()["query"] == {
        "query_id": 0, "second_opinion": True, "size": 4,
    }  # fmt: skip
    assert rank(client, bob, 0, [[2], [0], [1, 3]]).json()["role"] == "second"
    assert rank(client, bob, 0, [[2], [0], [1, 3]]).json()["duplicate"] is True  # a retry
    with PreferenceStore(path) as store:
        (label,) = store.labels()
        stats = {s.labeler: s for s in annotator_stats(store)}
    assert (label.preference, label.labeler) == (Ranking([[2], [0, 3], [1]]), "human:alice")
    journal = AnnotationJournal(journal_path(path))
    assert [(e.annotator, e.preference, e.role) for e in journal.entries()] == [
        ("alice", Ranking([[2], [0, 3], [1]]), "label"),
        ("bob", Ranking([[2], [0], [1, 3]]), "second"),
    ]
    journal.close()
    # 6 pairs; they differ on (0, 3) (tie vs 0 better) and (1, 3) (3 better vs tie): 4 / 6 agree
    assert stats["human:bob"].n_overlap == 1 and stats["human:bob"].agreement == pytest.approx(4 / 6)


def test_a_pairs_ranking_is_stored_as_its_preference(store_path: Path) -> None:
    client = client_for(store_path)
    sid = session(client, "alice")
    assert next_id(client, sid) == 0
    assert rank(client, sid, 0, [[1], [0]]).status_code == 200
    with PreferenceStore(store_path) as store:
        assert [label.preference for label in store.labels()] == [Preference.RIGHT]


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        (
            {"ranking": [[0], [0, 1]]},
            400,
            r"ranking \[\[0\], \[0, 1\]\] is not an ordering of the 3 clips of query 0",
        ),
        ({"ranking": [[0], [1]]}, 400, r"list every clip 0 to 2 exactly once.*e\.g\. \[\[2\], \[0, 1\]\]"),
        ({"ranking": [[0], [1], [3]]}, 400, "not an ordering of the 3 clips"),
        ({"ranking": [[0], [-1, 1], [2]]}, 400, "not an ordering of the 3 clips"),
        ({"ranking": [[0], [1], [2], [3]]}, 400, "not an ordering of the 3 clips"),
        ({"ranking": [[0, 1, 2], []]}, 422, "ranking.1: List should have at least 1 item"),
        ({"ranking": []}, 422, "ranking: List should have at least 1 item"),
        ({"ranking": [["0"], [1, 2]]}, 422, "ranking.0.0: Input should be a valid integer"),
        ({"ranking": [[0.0], [1, 2]]}, 422, "ranking.0.0: Input should be a valid integer"),
        ({"ranking": "[[0], [1, 2]]"}, 422, "ranking: Input should be a valid list"),
        ({"ranking": [[0], [1], [2]], "preference": "left"}, 400, "either a preference .* or a ranking"),
        ({}, 400, "not both and not neither"),
        ({"preference": "left"}, 400, "'left' answers a pair, but query 0 has 3 clips: send a ranking"),
        ({"preference": "ranked"}, 400, "preference must be one of left, right, equal, skip"),
    ],
)
def test_malformed_rankings_are_refused_with_one_clear_message(
    tmp_path: Path, fields: dict[str, object], status: int, message: str
) -> None:
    path = make_ranked_store(tmp_path / "p.sqlite", 1, 3)
    client = client_for(path)
    sid = session(client, "alice")
    response = client.post("/api/answer", json={"session": sid, "query_id": 0, "seconds": 1.0, **fields})
    assert response.status_code == status, response.text
    assert re.search(message, response.json()["detail"]), response.json()["detail"]
    with PreferenceStore(path) as store:
        assert store.n_labels() == 0
    assert rank(client, sid, 0, [[1], [2, 0]]).status_code == 200  # a valid one after the refusals
    assert answer(client, session(client, "bob"), 0, "skip").status_code == 409  # answered


def test_each_clip_of_a_ranked_query_is_its_own_sheet(tmp_path: Path) -> None:
    import io

    from PIL import Image

    client = client_for(make_ranked_store(tmp_path / "p.sqlite", 1, 4))
    for position in range(4):
        response = client.get(f"/api/clip/0/{position}")
        assert response.status_code == 200
        image = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
        assert tuple(image[0, 0]) == CLIP_COLOURS[position]
    assert client.get("/api/clip/0/left").content == client.get("/api/clip/0/0").content
    missing = client.get("/api/clip/0/4")
    assert missing.status_code == 404 and "has 4 clips: 0 to 3" in missing.json()["detail"]
    assert client.get("/api/clip/0/-1").status_code == 422


def test_pair_answers_of_a_ranking_are_hand_computed() -> None:
    L, R, E = Preference.LEFT, Preference.RIGHT, Preference.EQUAL
    # ranks: clip 0 -> 1, 1 -> 2, 2 -> 0, 3 -> 1; pairs (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
    assert pair_answers(Ranking([[2], [0, 3], [1]])) == [L, R, E, R, R, L]
    assert pair_answers(Ranking([[0, 1, 2]])) == [E, E, E]
    assert pair_answers(R) == [R]
    with pytest.raises(ValueError, match="SKIP"):
        pair_answers(Preference.SKIP)


def test_agreement_counts_the_pairs_of_clips_rankings_order(tmp_path: Path) -> None:
    path = tmp_path / "p.sqlite"
    with PreferenceStore(path) as store:
        ranked = [Query.of(q, [make_segment(3 * q + i, CLIP_COLOURS[i]) for i in range(3)]) for q in range(3)]
        store.add_queries([*ranked, Query(3, make_segment(9, (0, 0, 0)), make_segment(10, (9, 9, 9)))])
        firsts = [Ranking([[0], [1], [2]]), Ranking([[2], [1], [0]]), Preference.SKIP, Preference.LEFT]
        for query_id, first in enumerate(firsts):
            store.add_label(query_id, first, "human:alice")
    journal = AnnotationJournal(journal_path(path))
    seconds = [Ranking([[0], [1, 2]]), Ranking([[2], [1], [0]]), Ranking([[0], [1], [2]]), Preference.RIGHT]
    for query_id, second in enumerate(seconds):
        journal.add(query_id, "bob", second, "second", shown_at=0.0, answered_at=2.0)
    journal.close()
    with PreferenceStore(path) as store:
        stats = {s.labeler: s for s in annotator_stats(store)}
    # query 0: pairs L L L vs L L E (2 of 3); query 1: R R R vs R R R (3 of 3); query 2: a SKIP, left
    # out; query 3: L vs R (0 of 1). Agreement 5 / 7. Kappa: alice L 4 R 3, bob L 2 E 1 R 4:
    # p_e = 4/7 * 2/7 + 3/7 * 4/7 = 20/49, p_o = 35/49, kappa = 15/49 / (29/49) = 15/29.
    for who in ("human:alice", "human:bob"):
        assert stats[who].n_overlap == 3
        assert stats[who].agreement == pytest.approx(5 / 7)
        assert stats[who].kappa == pytest.approx(15 / 29)


def test_a_journal_from_before_rankings_is_read_and_extended(tmp_path: Path) -> None:
    import sqlite3

    path = journal_path(tmp_path / "p.sqlite")
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE answers (seq INTEGER PRIMARY KEY, query_id INTEGER NOT NULL, annotator TEXT NOT NULL, "
        "preference TEXT NOT NULL, role TEXT NOT NULL CHECK (role IN ('label', 'second')), "
        "shown_at REAL NOT NULL, answered_at REAL NOT NULL, UNIQUE (query_id, annotator));"
        "INSERT INTO answers (query_id, annotator, preference, role, shown_at, answered_at) "
        "VALUES (0, 'alice', 'left', 'label', 1.0, 2.0);"
    )
    old.close()
    journal = AnnotationJournal(path)
    assert journal.add(1, "alice", Ranking([[1], [0, 2]]), "label")
    assert [e.preference for e in journal.entries()] == [Preference.LEFT, Ranking([[1], [0, 2]])]
    assert journal.answer_of(1, "alice").preference == Ranking([[1], [0, 2]])  # type: ignore[union-attr]
    journal.close()
