"""The store shared by processes, on every backend: labels cross at once, 8 writers, kill -9 loses nothing.

Writers and trainers are forked from a "zygote" process that has imported prefwrap and psycopg once
(and opened no store), so that 8 writers start together and 20 kill -9 trials cost milliseconds each,
not an interpreter start each. A process acknowledges a label by appending a line to its own file
with one ``write`` right after ``add_label`` returns: whatever is in that file was acknowledged.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_store import make_query, needs_postgres, new_target

from prefwrap.records import Preference
from prefwrap.store import PreferenceStore

PREFERENCES = [Preference.LEFT, Preference.RIGHT, Preference.EQUAL]  # the answer to query q: [q % 3]

_ZYGOTE = textwrap.dedent(
    """
    import os, random, sys, time, traceback
    import numpy as np
    from prefwrap.records import Preference, Query, Segment
    from prefwrap.store import AlreadyLabeledError, PreferenceStore
    try:
        import psycopg  # noqa: F401  (imported once here, not in every child)
    except ImportError:
        pass

    PREFERENCES = [Preference.LEFT, Preference.RIGHT, Preference.EQUAL]

    def segment(i):
        return Segment(i, np.full((8, 4), i, np.float32), np.zeros((8, 2), np.float32),
                       np.ones(8, np.float32), length=8, frames=np.zeros((8, 4, 4, 3), np.uint8))

    def ack(fd, *words):
        os.write(fd, (" ".join(map(str, words)) + "\\n").encode())  # one write: all or nothing

    def trainer(store, fd, rng, name):
        # What a trainer does with the store: new queries, its oracle's labels, polling for others'.
        seen, query_id = 0, store.next_query_id()
        while True:
            store.add_queries([Query(query_id, segment(2 * query_id), segment(2 * query_id + 1))])
            ack(fd, "q", query_id)
            if rng.random() < 0.3:
                try:
                    store.add_label(query_id, PREFERENCES[query_id % 3], name)
                    ack(fd, "l", query_id, name)
                except AlreadyLabeledError:
                    pass
            seen += len(store.labels(after=seen))
            query_id += 1

    def writer(store, fd, rng, name):
        # A labeling page: answers whatever is pending, racing the other writers.
        while True:
            pending = [q.query_id for q in store.pending_queries(with_frames=False)]
            rng.shuffle(pending)
            for query_id in pending:
                try:
                    store.add_label(query_id, PREFERENCES[query_id % 3], name)
                    ack(fd, "l", query_id, name)
                except AlreadyLabeledError:
                    pass
            if not pending:
                time.sleep(0.002)

    def racer(store, fd, rng, name):
        # Waits for the start signal (so no racer finishes before the others start on a busy machine),
        # then tries to label every stored query once, in its own order, and exits.
        go = os.path.join(os.path.dirname(os.readlink(f"/proc/self/fd/{fd}")), "go")
        deadline = time.monotonic() + 60
        while not os.path.exists(go) and time.monotonic() < deadline:
            time.sleep(0.001)
        query_ids = list(range(store.next_query_id()))
        rng.shuffle(query_ids)
        for query_id in query_ids:
            try:
                store.add_label(query_id, PREFERENCES[query_id % 3], name)
                ack(fd, "l", query_id, name)
            except AlreadyLabeledError:
                pass
            # a pause between labels lets the others run: on a loaded 2-core machine one racer
            # could otherwise label all queries within its time slice, and nothing would race
            time.sleep(0.0005)

    ROLES = {"trainer": trainer, "writer": writer, "racer": racer}
    for line in sys.stdin:
        command, *args = line.split()
        if command == "spawn":
            role, name, target, ack_path, seed = args
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                    with PreferenceStore(target) as store:
                        ROLES[role](store, fd, random.Random(int(seed)), name)
                except BaseException:
                    traceback.print_exc()
                    code = 1
                os._exit(code)
            print(pid, flush=True)
        elif command == "reap":
            _, status = os.waitpid(int(args[0]), 0)
            print(os.waitstatus_to_exitcode(status), flush=True)
    """
)


class Zygote:
    """A process that forks writers and trainers on request, and reaps them."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def _ask(self, line: str) -> int:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        assert answer, "the zygote died"
        return int(answer)

    def spawn(self, role: str, name: str, target: str, ack_path: Path, seed: int) -> int:
        return self._ask(f"spawn {role} {name} {target} {ack_path} {seed}")

    def reap(self, pid: int) -> int:
        """The child's exit code (``-9`` when killed by SIGKILL)."""
        return self._ask(f"reap {pid}")

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.process.wait(timeout=30) == 0


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    forker = Zygote()
    yield forker
    forker.close()


def acknowledged(folder: Path) -> tuple[dict[int, str], set[int]]:
    """Labels (query id -> labeler) and queries that the processes acknowledged, from their files.

    A query acknowledged as labeled twice fails the test: that would be a duplicated label.
    """
    labels: dict[int, str] = {}
    queries: set[int] = set()
    for path in folder.glob("*.ack"):
        for line in path.read_text().splitlines():
            kind, query_id, *name = line.split()
            if kind == "q":
                queries.add(int(query_id))
            else:
                assert int(query_id) not in labels, f"query {query_id} acknowledged twice"
                labels[int(query_id)] = name[0]
    return labels, queries


def assert_store_consistent(target: str, acked: dict[int, str], acked_queries: set[int] = frozenset()) -> int:
    """Every acknowledged label and query is stored; no query has two labels; seq is 0..n-1. Returns n."""
    with PreferenceStore(target) as store:
        db = store._database()
        seqs = [seq for (seq,) in db.execute("SELECT seq FROM labels ORDER BY seq").fetchall()]
        assert seqs == list(range(len(seqs))), "seq has gaps"
        labels = store.labels()
        by_query = {label.query_id: label for label in labels}
        assert len(by_query) == len(labels) == store.n_labels(), "a query has two labels"
        for query_id, name in acked.items():
            assert query_id in by_query, f"acknowledged label of query {query_id} by {name} was lost"
            assert (by_query[query_id].labeler, by_query[query_id].preference) == (
                name,
                PREFERENCES[query_id % 3],
            )
        missing = acked_queries - {q for (q,) in db.execute("SELECT query_id FROM queries").fetchall()}
        assert not missing, f"acknowledged queries {sorted(missing)} were lost"
        return len(labels)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=needs_postgres)])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with new_target(request.param, tmp_path) as opened:
        yield opened


def test_eight_writers_at_once_lose_and_duplicate_nothing(target: str, zygote: Zygote, tmp_path: Path):
    n_queries = 160
    with PreferenceStore(target) as store:
        store.add_queries([make_query(i) for i in range(n_queries)])
    pids = [zygote.spawn("racer", f"w{k}", target, tmp_path / f"w{k}.ack", seed=k) for k in range(8)]
    (tmp_path / "go").touch()  # all 8 start together
    assert [zygote.reap(pid) for pid in pids] == [0] * 8
    acked, _ = acknowledged(tmp_path)
    assert sorted(acked) == list(range(n_queries)), "every query labeled exactly once"
    assert len(set(acked.values())) > 1, "the writers did not overlap"
    assert assert_store_consistent(target, acked) == n_queries


def test_kill_9_of_writers_and_trainer_at_random_points_loses_nothing(
    target: str, zygote: Zygote, tmp_path: Path
):
    """20 trials on one store: a trainer and two labeling pages, each killed at its own random moment."""
    n_trials = 20
    for trial in range(n_trials):
        rng = random.Random(trial)
        names = ["trainer", "w0", "w1"]
        pids = {
            name: zygote.spawn(
                "trainer" if name == "trainer" else "writer",
                name,
                target,
                tmp_path / f"{name}.ack",
                100 * trial + k,
            )
            for k, name in enumerate(names)
        }
        start = time.monotonic()
        for name, at in sorted(((n, rng.uniform(0.05, 0.35)) for n in names), key=lambda pair: pair[1]):
            time.sleep(max(0.0, start + at - time.monotonic()))
            os.kill(pids[name], signal.SIGKILL)
            assert zygote.reap(pids[name]) == -signal.SIGKILL, f"{name} ended before it was killed"
        acked, acked_queries = acknowledged(tmp_path)
        assert_store_consistent(target, acked, acked_queries)
    acked, acked_queries = acknowledged(tmp_path)
    # every kind of process wrote (which writer wins the trainer's queries depends on the machine's load;
    # writers racing each other is the subject of test_eight_writers_at_once_lose_and_duplicate_nothing)
    writers = set(acked.values())
    assert len(acked) >= n_trials and "trainer" in writers and writers & {"w0", "w1"}
    with PreferenceStore(target) as store:  # a resumed run goes on from the store
        query_id = store.next_query_id()
        assert query_id >= max(acked_queries) + 1
        store.add_queries([make_query(query_id)])
        store.add_label(query_id, Preference.LEFT, "resumed")
        assert store.labels()[-1].query_id == query_id


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


def _ask(process: subprocess.Popen[str], command: str) -> str:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(command + "\n")
    process.stdin.flush()
    return process.stdout.readline().strip()


def test_labels_and_queries_cross_between_processes(target: str):
    with PreferenceStore(target) as trainer:
        trainer.add_queries([make_query(0), make_query(1)])
        ui = subprocess.Popen(
            [sys.executable, "-c", _LABELING_UI, target],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
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


def test_a_sqlite_store_killed_mid_write_passes_its_integrity_check(tmp_path: Path, zygote: Zygote):
    path = tmp_path / "prefs.db"
    with PreferenceStore(path) as store:
        store.add_queries([make_query(0)])
    pids = [
        zygote.spawn(role, role, str(path), tmp_path / f"{role}.ack", 1) for role in ("trainer", "writer")
    ]
    time.sleep(0.3)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
        assert zygote.reap(pid) == -signal.SIGKILL
    with PreferenceStore(path) as store:
        raw = store._connection()
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []
    acked, acked_queries = acknowledged(tmp_path)
    assert acked and assert_store_consistent(str(path), acked, acked_queries) >= len(acked)


def _open_at(path: str, start: float) -> str:
    while time.time() < start:  # spin, so that the processes open the file within microseconds
        pass
    try:
        PreferenceStore(path).close()
    except Exception as error:  # the test reports what each process saw
        return f"{type(error).__name__}: {error}"
    return "ok"


def test_processes_opening_a_new_sqlite_store_together_all_get_it(tmp_path: Path):
    # A trainer and labeling pages started together: switching a new file to WAL needs an exclusive
    # lock, and SQLite refuses the second upgrader at once ("database is locked") instead of waiting.
    import multiprocessing

    opened = []
    with multiprocessing.get_context("fork").Pool(6) as pool:
        for trial in range(15):
            path, start = str(tmp_path / f"new{trial}.db"), time.time() + 0.3
            opened += pool.starmap(_open_at, [(path, start)] * 6)
    assert set(opened) == {"ok"}
