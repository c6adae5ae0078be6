"""Preference store throughput, SQLite vs PostgreSQL: labels/s committed by concurrent writers, and
the trainer's read of every label at rollout end.

    eval "$(bash scripts/postgres.sh env)"        # a throw-away local server
    .venv/bin/python benchmarks/store_throughput.py --postgres "$PREFWRAP_TEST_POSTGRES_URL"

Each writer is a process with its own store that labels its own queries, one ``add_label`` (one
durable commit) at a time, as a labeling page does; all start together behind a barrier. The read
is ``labels(after=0)`` on a fresh connection to a store holding ``--read-labels`` labels (inserted in
one transaction, as the timing is of the read), the median of 5.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from prefwrap.records import Preference, Query, Segment
from prefwrap.store import PreferenceStore

# ---------------------------------------------------------------- config
WRITERS = (1, 4, 8)
LABELS_PER_WRITER = 150
READ_LABELS = 10_000
HORIZON = 25  # a typical segment: 25 steps of 17 floats (Hopper)


def segment(segment_id: int) -> Segment:
    rng = np.random.default_rng(segment_id)
    return Segment(
        segment_id,
        rng.normal(size=(HORIZON, 17)).astype(np.float32),
        rng.normal(size=(HORIZON, 6)).astype(np.float32),
        rng.normal(size=HORIZON).astype(np.float32),
        length=HORIZON,
    )


def add_queries(store: PreferenceStore, n: int, batch: int = 500) -> None:
    for start in range(0, n, batch):
        ids = range(start, min(n, start + batch))
        store.add_queries([Query(q, segment(2 * q), segment(2 * q + 1)) for q in ids])


def _writer(target: str, query_ids: list[int], barrier, results) -> None:
    with PreferenceStore(target) as store:
        barrier.wait()
        for query_id in query_ids:
            store.add_label(query_id, Preference.LEFT, f"w{os.getpid()}")
    results.put(time.perf_counter())


def labels_per_second(target: str, n_writers: int, per_writer: int) -> float:
    with PreferenceStore(target) as store:
        add_queries(store, n_writers * per_writer)
    context = multiprocessing.get_context("fork")  # no store is open in this process
    barrier, results = context.Barrier(n_writers + 1), context.Queue()
    processes = [
        context.Process(
            target=_writer, args=(target, list(range(k, n_writers * per_writer, n_writers)), barrier, results)
        )
        for k in range(n_writers)
    ]
    for process in processes:
        process.start()
    barrier.wait()
    start = time.perf_counter()
    end = max(results.get(timeout=600) for _ in processes)
    for process in processes:
        process.join()
        assert process.exitcode == 0
    with PreferenceStore(target) as store:
        assert store.n_labels() == n_writers * per_writer
    return n_writers * per_writer / (end - start)


def read_seconds(target: str, n_labels: int) -> tuple[float, float]:
    """Median seconds of ``labels(after=0)`` and of a poll ``labels(after=n - 10)``."""
    with PreferenceStore(target) as store:
        add_queries(store, n_labels)
        db = store._database()
        with db.transaction():  # the stored state is what matters here, not how it was written
            for seq in range(n_labels):
                db.execute(
                    "INSERT INTO labels (seq, query_id, preference, labeler, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (seq, seq, "left", "human", time.time()),
                )
        db.execute("ANALYZE")  # table statistics, as autovacuum keeps them in a live PostgreSQL store
    with PreferenceStore(target) as trainer:
        full, poll = [], []
        for _ in range(5):
            started = time.perf_counter()
            assert len(trainer.labels(after=0)) == n_labels
            full.append(time.perf_counter() - started)
            started = time.perf_counter()
            trainer.labels(after=n_labels - 10)
            poll.append(time.perf_counter() - started)
    return statistics.median(full), statistics.median(poll)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", default=os.environ.get("PREFWRAP_TEST_POSTGRES_URL"), help="server URL")
    parser.add_argument("--writers", type=int, nargs="+", default=list(WRITERS))
    parser.add_argument("--labels-per-writer", type=int, default=LABELS_PER_WRITER)
    parser.add_argument("--read-labels", type=int, default=READ_LABELS)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="prefwrap-bench-"))
    schemas: list[str] = []

    def new_target(engine: str) -> str:
        if engine == "SQLite":
            return str(folder / f"{uuid.uuid4().hex[:8]}.db")
        schemas.append(f"bench_{uuid.uuid4().hex[:8]}")
        separator = "&" if "?" in args.postgres else "?"
        return f"{args.postgres}{separator}options=-csearch_path%3D{schemas[-1]}"

    engines = ["SQLite"] + (["PostgreSQL"] if args.postgres else [])
    rows = []
    try:
        for engine in engines:
            rates = [labels_per_second(new_target(engine), n, args.labels_per_writer) for n in args.writers]
            full, poll = read_seconds(new_target(engine), args.read_labels)
            rows.append((engine, rates, full, poll))
    finally:
        if schemas:
            import psycopg

            with psycopg.connect(args.postgres, autocommit=True) as conn:
                for schema in schemas:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    print(f"{os.cpu_count()} CPUs; {args.labels_per_writer} labels per writer; one durable commit per label")
    writers = " | ".join(f"{n} writer{'s' * (n > 1)} (labels/s)" for n in args.writers)
    print(f"| backend | {writers} | labels(after=0), {args.read_labels} labels | labels(after=n-10) |")
    print("| --- " * (len(args.writers) + 3) + "|")
    for engine, rates, full, poll in rows:
        cells = " | ".join(f"{rate:,.0f}" for rate in rates)
        print(f"| {engine} | {cells} | {full * 1000:.1f} ms | {poll * 1000:.2f} ms |")


if __name__ == "__main__":
    main()
