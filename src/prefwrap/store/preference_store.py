"""The :class:`PreferenceStore`: segments, queries and labels of one run, in SQLite or PostgreSQL.

The logic is written once over :class:`~prefwrap.store.database.Database`; see ``database`` for what
the two backends differ in.
"""

from __future__ import annotations

import operator
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from prefwrap.records import Answer, Label, Preference, Query, Ranking, Segment
from prefwrap.store import schema
from prefwrap.store.codec import decode_array, decode_frames, encode_segment
from prefwrap.store.database import Database, open_database
from prefwrap.store.errors import StoreError, UnknownQueryError, UnknownSegmentError
from prefwrap.store.writes import insert_label, insert_queries, insert_segment, segment_ids

__all__ = ["PreferenceStore"]


class PreferenceStore:
    """Segments, queries and labels of one run, kept in a SQLite file or a PostgreSQL database.

    Writes are one transaction each (one commit per label); a label is on disk when
    :meth:`add_label` returns. Ids are the caller's: use :meth:`next_segment_id` and
    :meth:`next_query_id` when resuming so that ids continue. Use one store per thread and per process.

    Every method raises :class:`~prefwrap.store.StoreError` once the store is closed or its server
    connection is lost, and every write raises it if another process holds the write lock for longer
    than 30 s.

    Example:
        >>> import numpy as np
        >>> from prefwrap.records import Preference, Query, Segment
        >>> def seg(i):
        ...     return Segment(i, np.zeros((4, 3), np.float32), np.zeros((4, 1), np.float32),
        ...                    np.full(4, i, np.float32), length=4)
        >>> with PreferenceStore(":memory:") as store:
        ...     store.add_queries([Query(0, seg(0), seg(1))])
        ...     label = store.add_label(0, Preference.RIGHT, labeler="alice")
        ...     [q.query_id for q in store.pending_queries()], store.n_labels(), store.has_label(0)
        ([], 1, True)

    Attributes:
        path: The SQLite file, or ``None`` for an in-memory or PostgreSQL store.
        location: What opens this same store from another process or thread: the file path,
            ``":memory:"`` (which no other can open) or the PostgreSQL URL as given.
        SCHEMA_VERSION: The schema version this prefwrap writes (and the newest it reads).
    """

    SCHEMA_VERSION: int = schema.SCHEMA_VERSION

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open the store at ``path``, creating its tables (and a SQLite file's directory) if needed.

        Args:
            path: A SQLite file; ``":memory:"`` for a throwaway store (tests); or a
                ``postgresql://user[:password]@host[:port]/database`` URL (``postgres://`` too; the
                ``postgres`` extra). Runs sharing one database each take a schema of their own:
                ``...?options=-csearch_path%3Drun1`` (created when missing).

        Raises:
            StoreError: The file is not a SQLite database or cannot be opened in WAL mode; the server
                cannot be reached; the database belongs to another application or has a newer schema
                than this prefwrap knows.
            ImportError: A PostgreSQL URL without psycopg installed.
            OSError: A SQLite file's parent directory cannot be created.
        """
        db = open_database(path)
        try:
            schema.create_or_check(db)
        except BaseException:
            db.close()
            raise
        self._db: Database | None = db
        self.path: Path | None = db.path
        self.location: str = db.location
        self._display = db.display

    # ------------------------------------------------------------------ segments

    def add_segments(self, segments: Sequence[Segment]) -> None:
        """Store segments in one transaction; re-adding an already stored ``segment_id`` is a no-op.

        Raises:
            ValueError: An array holds Python objects (the store never pickles), the arrays disagree
                on the horizon, or a stored segment with the same id has different content.
            TypeError: An id, ``length``, ``env_index`` or ``timestep`` is not an integer.
            StoreError: The store is closed.
        """
        rows = [encode_segment(segment) for segment in segments]  # validate before writing
        with self._write() as db:
            for row in rows:
                insert_segment(db, row)

    def segment(self, segment_id: int, *, with_frames: bool = True) -> Segment:
        """Load one segment.

        Args:
            segment_id: Its id.
            with_frames: Also load its rendered frames (if it has any); ``False`` skips that read.

        Raises:
            UnknownSegmentError: No segment with this id (a ``KeyError``).
            TypeError: ``segment_id`` is not an integer.
            StoreError: A stored array is not plain ``.npy``, or the store is closed.
        """
        segment_id = operator.index(segment_id)
        frames_column = "f.frames" if with_frames else "NULL"
        row = self._fetch_one(
            "SELECT s.segment_id, s.length, s.env_index, s.timestep, s.observations, s.actions, "
            f"s.true_rewards, s.terminated, {frames_column} FROM segments AS s "
            "LEFT JOIN segment_frames AS f ON f.segment_id = s.segment_id WHERE s.segment_id = ?",
            (segment_id,),
        )
        if row is None:
            raise UnknownSegmentError(f"segment {segment_id} is not in the preference store {self._where}")
        sid, length, env_index, timestep, obs, actions, rewards, terminated, frames = row
        return Segment(
            segment_id=sid,
            observations=decode_array(obs, f"segments.observations of segment {sid}"),
            actions=decode_array(actions, f"segments.actions of segment {sid}"),
            true_rewards=decode_array(rewards, f"segments.true_rewards of segment {sid}"),
            length=length,
            frames=None if frames is None else decode_frames(frames, f"segment_frames of segment {sid}"),
            env_index=env_index,
            timestep=timestep,
            terminated=bool(terminated),
        )

    def next_segment_id(self) -> int:
        """Largest stored ``segment_id`` plus one (0 for an empty store), so ids continue on resume.

        Raises:
            StoreError: The store is closed.
        """
        return self._count("SELECT COALESCE(MAX(segment_id) + 1, 0) FROM segments")

    # ------------------------------------------------------------------ queries

    def add_queries(self, queries: Sequence[Query]) -> None:
        """Store queries (pending) and any of their segments not stored yet, in one transaction.

        Re-adding a stored ``query_id`` with the same segments is a no-op. The segments of a query of
        more than two are also listed in ``query_segments`` (schema version 4).

        Raises:
            ValueError: As :meth:`add_segments`, or a stored query with the same id compares other
                segments.
            TypeError: As :meth:`add_segments`, or a ``query_id`` is not an integer.
            StoreError: The store is closed.
        """
        with self._write() as db:
            insert_queries(db, queries)

    def add_answered_queries(self, queries: Sequence[Query], answers: Sequence[Answer], labeler: str) -> None:
        """Store queries with their answers in one transaction: never seen pending by another process.

        For answers that need no person (demonstrations): a labeling UI polling
        :meth:`pending_queries` can never show one of these queries.

        Raises:
            ValueError: As :meth:`add_queries` and :meth:`add_label`, or ``answers`` is not one per query.
            AlreadyLabeledError: A query is labeled already.
            TypeError: As :meth:`add_queries`.
            StoreError: The store is closed.
        """
        if len(answers) != len(queries):
            raise ValueError(f"{len(answers)} answers for {len(queries)} queries: give one per query")
        created_at = time.time()
        with self._write() as db:
            insert_queries(db, queries)
            db.lock_labels()
            for query, answer in zip(queries, answers, strict=True):
                insert_label(db, self._where, operator.index(query.query_id), answer, labeler, created_at)

    def query(self, query_id: int, *, with_frames: bool = True) -> Query:
        """Load one query with all its segments (frames too unless ``with_frames=False``).

        Raises:
            UnknownQueryError: No query with this id (a ``KeyError``).
            TypeError: ``query_id`` is not an integer.
            StoreError: A stored array is not plain ``.npy``, or the store is closed.
        """
        query_id = operator.index(query_id)
        row = self._fetch_one("SELECT left_id, right_id FROM queries WHERE query_id = ?", (query_id,))
        if row is None:
            raise UnknownQueryError(f"query {query_id} is not in the preference store {self._where}")
        ids = segment_ids(self._database(), query_id, tuple(row))
        loaded: dict[int, Segment] = {}
        for segment_id in ids:
            if segment_id not in loaded:
                loaded[segment_id] = self.segment(segment_id, with_frames=with_frames)
        return Query.of(query_id, [loaded[i] for i in ids])

    def pending_queries(self, *, with_frames: bool = True) -> list[Query]:
        """Queries that have no label yet, oldest (lowest ``query_id``) first.

        Raises:
            StoreError: A stored array is not plain ``.npy``, or the store is closed.
        """
        return [self.query(query_id, with_frames=with_frames) for query_id in self.pending_query_ids()]

    def pending_query_ids(self) -> list[int]:
        """Ids of the queries that have no label yet, ascending; reads no arrays (cheap to poll).

        Raises:
            StoreError: The store is closed.
        """
        rows = (
            self._database()
            .execute(
                "SELECT q.query_id FROM queries AS q WHERE NOT EXISTS "
                "(SELECT 1 FROM labels AS l WHERE l.query_id = q.query_id) ORDER BY q.query_id"
            )
            .fetchall()
        )
        return [int(query_id) for (query_id,) in rows]

    def query_size(self, query_id: int) -> int:
        """The number of segments of a stored query (2 for a pair, ``K`` for a ranking); reads no arrays.

        Raises:
            UnknownQueryError: No query with this id (a ``KeyError``).
            StoreError: The store is closed.
        """
        query_id = operator.index(query_id)
        row = self._fetch_one("SELECT left_id, right_id FROM queries WHERE query_id = ?", (query_id,))
        if row is None:
            raise UnknownQueryError(f"query {query_id} is not in the preference store {self._where}")
        return len(segment_ids(self._database(), query_id, tuple(row)))

    def next_query_id(self) -> int:
        """Largest stored ``query_id`` plus one (0 for an empty store), so ids continue on resume.

        Raises:
            StoreError: The store is closed.
        """
        return self._count("SELECT COALESCE(MAX(query_id) + 1, 0) FROM queries")

    # ------------------------------------------------------------------ labels

    def add_label(self, query_id: int, preference: Answer, labeler: str) -> Label:
        """Record the answer to a pending query; it is committed to disk before this returns.

        Args:
            query_id: A stored, not yet labeled query.
            preference: The answer: a :class:`~prefwrap.records.Preference` (or its value) for a pair,
                a :class:`~prefwrap.records.Ranking` of the query's segments, or ``SKIP`` for any query
                (stored too: the query is answered, not pending). A ranking of a pair is stored as the
                preference it means.
            labeler: Who answered, e.g. ``"human:alice"`` or ``"synthetic"``.

        Returns:
            The stored label, with its query's segment ids and its ``created_at`` (Unix time, s).

        Raises:
            UnknownQueryError: The query is not in the store (a ``ValueError``).
            AlreadyLabeledError: The query is labeled already (labels are never overwritten).
            ValueError: ``preference`` is no answer to this query: not a Preference (or its value) or a
                Ranking, ``LEFT``/``RIGHT``/``EQUAL`` for more than two segments, or a ranking of
                another number of segments.
            TypeError: ``query_id`` is not an integer, or ``labeler`` is not a str.
            StoreError: The store is closed.
        """
        query_id = operator.index(query_id)
        created_at = time.time()
        with self._write() as db:
            # Before any read: other label writers queue here until this transaction commits, so the
            # checks below and MAX(seq) + 1 are race-free across processes (SQLite: BEGIN IMMEDIATE
            # holds the file's write lock already; PostgreSQL: LOCK TABLE labels).
            db.lock_labels()
            return insert_label(db, self._where, query_id, preference, labeler, created_at)

    def has_label(self, query_id: int) -> bool:
        """Whether query ``query_id`` has been answered (a skip counts); ``False`` for an unknown id.

        One lookup in the index of ``labels.query_id``, whatever the number of labels.

        Raises:
            TypeError: ``query_id`` is not an integer.
            StoreError: The store is closed.
        """
        row = self._fetch_one("SELECT 1 FROM labels WHERE query_id = ?", (operator.index(query_id),))
        return row is not None

    def labels(self, after: int = 0) -> list[Label]:
        """Labels in arrival order, skipping the first ``after`` (those a poller has already seen).

        ``store.labels(after=n)`` equals ``store.labels()[n:]`` but reads only the new rows, so a
        trainer can poll for labels written by another process cheaply.

        A label's ``segment_ids`` lists all its query's segments when it is a ranking; a skipped query
        of more than two segments gives its first two (call :meth:`query` for the rest).

        Raises:
            ValueError: ``after`` is negative.
            TypeError: ``after`` is not an integer.
            StoreError: The store is closed.
        """
        after = operator.index(after)
        if after < 0:
            raise ValueError(f"after must be >= 0 (the number of labels already seen), got {after}")
        db = self._database()
        rows = db.execute(
            "SELECT l.query_id, q.left_id, q.right_id, l.preference, l.labeler, l.created_at, l.ranking "
            "FROM labels AS l JOIN queries AS q ON q.query_id = l.query_id WHERE l.seq >= ? ORDER BY l.seq",
            (after,),
        ).fetchall()
        more: dict[int, list[int]] = {}  # segments of the queries of more than two, read at once
        if any(row[6] is not None for row in rows):  # ranked answers (a skip of K > 2 reads as a pair's)
            for query_id, segment_id in db.execute(
                "SELECT s.query_id, s.segment_id FROM query_segments AS s JOIN labels AS l "
                "ON l.query_id = s.query_id WHERE l.seq >= ? ORDER BY s.query_id, s.position",
                (after,),
            ):
                more.setdefault(query_id, []).append(segment_id)
        return [
            Label(
                query_id,
                left_id,
                right_id,
                Preference(value) if ranking is None else Ranking.parse(ranking),
                labeler,
                created_at,
                tuple(more.get(query_id, (left_id, right_id))),
            )
            for query_id, left_id, right_id, value, labeler, created_at, ranking in rows
        ]

    def n_labels(self) -> int:
        """Number of stored labels (``SKIP`` answers included).

        Raises:
            StoreError: The store is closed.
        """
        return self._count("SELECT COUNT(*) FROM labels")

    # ------------------------------------------------------------------ metadata

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        """Value stored under ``key`` in the ``meta`` table, or ``default``.

        Raises:
            StoreError: The store is closed.
        """
        row = self._fetch_one("SELECT value FROM meta WHERE key = ?", (key,))
        return default if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        """Store run metadata (e.g. the env id); ``schema_version`` is reserved.

        Raises:
            TypeError: ``key`` or ``value`` is not a str.
            ValueError: ``key`` is ``"schema_version"``.
            StoreError: The store is closed.
        """
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"meta keys and values are str, got {type(key).__name__}: {type(value).__name__}")
        if key == "schema_version":
            raise ValueError("'schema_version' is managed by the store and cannot be set")
        with self._write() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the connection; idempotent and never raises. Every write is already committed."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def __enter__(self) -> PreferenceStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PreferenceStore({self._where!r})"

    # ------------------------------------------------------------------ internals

    @property
    def _where(self) -> str:
        return self._display  # a URL's password is never shown

    def _database(self) -> Database:
        if self._db is None:
            raise StoreError(f"the preference store {self._where} is closed")
        return self._db

    def _connection(self) -> Any:
        """The driver's connection (``sqlite3.Connection`` or ``psycopg.Connection``), for tests and tools."""
        return self._database().connection  # type: ignore[attr-defined]

    def _fetch_one(self, sql: str, parameters: tuple[object, ...] = ()) -> tuple[Any, ...] | None:
        return self._database().fetchone(sql, parameters)

    def _count(self, sql: str) -> int:
        (value,) = self._database().fetchone(sql) or (0,)
        return int(value)

    @contextmanager
    def _write(self) -> Iterator[Database]:
        db = self._database()
        with db.transaction():
            yield db
