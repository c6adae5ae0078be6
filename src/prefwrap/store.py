"""Durable storage of segments, queries and labels in one SQLite file.

Human labels are the most expensive data of a run, so every label is committed (and fsynced) before
:meth:`PreferenceStore.add_label` returns, and a run killed at any moment restarts with all of them.
The file is SQLite in WAL mode: a trainer and a labeling UI in separate processes share it, readers
never block the writer, and a label written by one process is visible to the other's next read.

Schema (version 2; the full description, part of the public interface, is in ``docs/store.md``):

- ``meta(key TEXT PRIMARY KEY, value TEXT)``: ``schema_version`` (``"2"``) and run metadata.
- ``segments(segment_id INTEGER PRIMARY KEY, length, env_index, timestep, observations BLOB,
  actions BLOB, true_rewards BLOB)``: arrays as ``.npy`` bytes (never pickled).
- ``segment_frames(segment_id INTEGER PRIMARY KEY, frames BLOB)``: optional rendered frames as
  zlib-compressed ``.npy`` bytes (11-140x smaller), kept apart so that they are read only when wanted.
- ``queries(query_id INTEGER PRIMARY KEY, left_id, right_id, created_at REAL)``: pairs to compare.
- ``labels(seq INTEGER PRIMARY KEY, query_id UNIQUE, preference TEXT, labeler TEXT, created_at REAL)``:
  answers; ``seq`` is the 0-based arrival index. Append-only: a query without a label is pending.

A :class:`PreferenceStore` object wraps one connection and must be used from the thread that created it
(SQLite's ``check_same_thread`` enforces this); other threads or processes open their own store on the
same path. Never carry an open store across ``fork``.
"""

from __future__ import annotations

import io
import operator
import os
import sqlite3
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from prefwrap.records import Label, Preference, Query, Segment

__all__ = ["PreferenceStore", "StoreError"]

_MEMORY = ":memory:"
_BUSY_TIMEOUT_MS = 30_000  # how long a writer waits for another process's write to finish
_SEGMENT_ARRAYS = ("observations", "actions", "true_rewards")
_FRAMES_ZLIB_LEVEL = 1  # 11x smaller MuJoCo clips at ~20 ms per 30-frame clip; higher levels gain ~3 %
_NPY_MAGIC = b"\x93NUMPY"

_SCHEMA = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE segments (
    segment_id INTEGER PRIMARY KEY,
    length INTEGER NOT NULL,
    env_index INTEGER NOT NULL,
    timestep INTEGER NOT NULL,
    observations BLOB NOT NULL,
    actions BLOB NOT NULL,
    true_rewards BLOB NOT NULL
);
CREATE TABLE segment_frames (
    segment_id INTEGER PRIMARY KEY REFERENCES segments (segment_id),
    frames BLOB NOT NULL
);
CREATE TABLE queries (
    query_id INTEGER PRIMARY KEY,
    left_id INTEGER NOT NULL REFERENCES segments (segment_id),
    right_id INTEGER NOT NULL REFERENCES segments (segment_id),
    created_at REAL NOT NULL
);
CREATE TABLE labels (
    seq INTEGER PRIMARY KEY,
    query_id INTEGER NOT NULL UNIQUE REFERENCES queries (query_id),
    preference TEXT NOT NULL CHECK (preference IN ('left', 'right', 'equal', 'skip')),
    labeler TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""
_TABLES = frozenset({"meta", "segments", "segment_frames", "queries", "labels"})


class StoreError(RuntimeError):
    """The file cannot be used as a preference store (not SQLite, another app's, newer schema...)."""


class PreferenceStore:
    """Segments, queries and labels of one run, kept in a SQLite file that survives crashes.

    Writes are one transaction each (one commit per label); a label is on disk when
    :meth:`add_label` returns. Ids are the caller's: use :meth:`next_segment_id` and
    :meth:`next_query_id` when resuming so that ids continue. Use one store per thread and per process.

    Example:
        >>> import numpy as np
        >>> from prefwrap.records import Preference, Query, Segment
        >>> def seg(i):
        ...     return Segment(i, np.zeros((4, 3), np.float32), np.zeros((4, 1), np.float32),
        ...                    np.full(4, i, np.float32), length=4)
        >>> with PreferenceStore(":memory:") as store:
        ...     store.add_queries([Query(0, seg(0), seg(1))])
        ...     label = store.add_label(0, Preference.RIGHT, labeler="alice")
        ...     [q.query_id for q in store.pending_queries()], store.n_labels()
        ([], 1)

    Attributes:
        path: The database file, or ``None`` for an in-memory store.
    """

    SCHEMA_VERSION: int = 2

    def __init__(self, path: str | os.PathLike[str]) -> None:
        """Open the store at ``path``, creating the file (and its parent directory) if needed.

        Args:
            path: Database file, or ``":memory:"`` for a throwaway store (tests).

        Raises:
            StoreError: The file is not a SQLite database, belongs to another application, has a
                newer schema than this prefwrap knows, or cannot be opened in WAL mode.
        """
        if os.fspath(path) == _MEMORY:
            self.path: Path | None = None
            target = _MEMORY
        else:
            self.path = Path(path).expanduser()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            target = str(self.path)
        self._conn: sqlite3.Connection | None = self._open(target)

    # ------------------------------------------------------------------ opening

    def _open(self, target: str) -> sqlite3.Connection:
        """Connect, set the durability pragmas and check or create the schema."""
        try:
            # isolation_level=None: no implicit transactions; every write below opens its own.
            conn = sqlite3.connect(target, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except sqlite3.Error as error:
            raise StoreError(f"cannot open the preference store {target}: {error}") from error
        try:
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if target != _MEMORY and str(mode).lower() != "wal":
                raise StoreError(
                    f"{target}: SQLite refused WAL journal mode (got {mode!r}); the preference store "
                    "needs a local filesystem with shared-memory support (not a network share)"
                )
            # FULL: fsync the WAL at every commit, so a returned label survives power loss too.
            # (NORMAL is crash-safe against kill -9 but may lose the last commits on power loss.)
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            with _transaction(conn):
                self._check_or_create_schema(conn, target)
        except sqlite3.DatabaseError as error:
            conn.close()
            if _is_not_a_database(error):
                raise StoreError(
                    f"{target} is not a SQLite database; expected a prefwrap preference store "
                    "(or a new or empty file to create one)"
                ) from error
            raise StoreError(f"cannot open the preference store {target}: {error}") from error
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_or_create_schema(self, conn: sqlite3.Connection, target: str) -> None:
        """Create the schema in an empty file, or check the version of an existing store."""
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        tables = {name for (name,) in rows if not name.startswith("sqlite_")}
        if not tables:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(self.SCHEMA_VERSION),)
            )
            return
        if "meta" not in tables:
            raise StoreError(
                f"{target} is a SQLite database but not a prefwrap preference store "
                f"(it has tables {sorted(tables)} and no 'meta' table)"
            )
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = row[0] if row else None
        if version is None or not str(version).isdigit():
            raise StoreError(f"{target} has no valid schema_version in its meta table (found {version!r})")
        if int(version) > self.SCHEMA_VERSION:
            raise StoreError(
                f"{target} has store schema version {int(version)}, but this prefwrap reads only "
                f"version {self.SCHEMA_VERSION} or older; upgrade prefwrap to open it"
            )
        if int(version) < 1 or not tables >= _TABLES:
            raise StoreError(
                f"{target} claims schema version {version} but its tables are {sorted(tables)}; "
                f"expected {sorted(_TABLES)}"
            )
        if int(version) == 1:  # version 2 only compresses new frames; version 1's raw .npy stay readable
            version_now = (str(self.SCHEMA_VERSION),)
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", version_now)

    # ------------------------------------------------------------------ segments

    def add_segments(self, segments: Sequence[Segment]) -> None:
        """Store segments in one transaction; re-adding an already stored ``segment_id`` is a no-op.

        Raises:
            ValueError: An array holds Python objects (the store never pickles), the arrays disagree
                on the horizon, or a stored segment with the same id has different content.
        """
        encoded = [_encode_segment(segment) for segment in segments]  # validate before writing
        with self._write() as conn:
            for row in encoded:
                self._insert_segment(conn, row)

    def segment(self, segment_id: int, *, with_frames: bool = True) -> Segment:
        """Load one segment.

        Args:
            segment_id: Its id.
            with_frames: Also load its rendered frames (if it has any); ``False`` skips that read.

        Raises:
            KeyError: No segment with this id.
        """
        segment_id = operator.index(segment_id)
        frames_column = "f.frames" if with_frames else "NULL"
        row = self._fetch_one(
            "SELECT s.segment_id, s.length, s.env_index, s.timestep, s.observations, s.actions, "
            f"s.true_rewards, {frames_column} FROM segments AS s "
            "LEFT JOIN segment_frames AS f ON f.segment_id = s.segment_id WHERE s.segment_id = ?",
            (segment_id,),
        )
        if row is None:
            raise KeyError(f"segment {segment_id} is not in the preference store {self._where}")
        sid, length, env_index, timestep, obs, actions, rewards, frames = row
        return Segment(
            segment_id=sid,
            observations=_decode(obs, f"segments.observations of segment {sid}"),
            actions=_decode(actions, f"segments.actions of segment {sid}"),
            true_rewards=_decode(rewards, f"segments.true_rewards of segment {sid}"),
            length=length,
            frames=None if frames is None else _decode_frames(frames, f"segment_frames of segment {sid}"),
            env_index=env_index,
            timestep=timestep,
        )

    def next_segment_id(self) -> int:
        """Largest stored ``segment_id`` plus one (0 for an empty store), so ids continue on resume."""
        return self._count("SELECT COALESCE(MAX(segment_id) + 1, 0) FROM segments")

    # ------------------------------------------------------------------ queries

    def add_queries(self, queries: Sequence[Query]) -> None:
        """Store queries (pending) and any of their segments not stored yet, in one transaction.

        Re-adding a stored ``query_id`` with the same two segments is a no-op.

        Raises:
            ValueError: As :meth:`add_segments`, or a stored query with the same id compares other
                segments.
        """
        rows = []
        seen: dict[int, Segment] = {}
        for query in queries:
            for segment in (query.left, query.right):
                if seen.get(segment.segment_id) is not segment:  # encode each segment object once
                    seen[segment.segment_id] = segment
                    rows.append(_encode_segment(segment))
        now = time.time()
        with self._write() as conn:
            for row in rows:
                self._insert_segment(conn, row)
            for query in queries:
                query_id = operator.index(query.query_id)
                pair = (int(query.left.segment_id), int(query.right.segment_id))
                stored = conn.execute(
                    "SELECT left_id, right_id FROM queries WHERE query_id = ?", (query_id,)
                ).fetchone()
                if stored is None:
                    conn.execute(
                        "INSERT INTO queries (query_id, left_id, right_id, created_at) VALUES (?, ?, ?, ?)",
                        (query_id, *pair, now),
                    )
                elif tuple(stored) != pair:
                    raise ValueError(
                        f"query {query_id} is already stored comparing segments {tuple(stored)}, "
                        f"not {pair}; query ids must be unique within a run (see next_query_id())"
                    )

    def query(self, query_id: int, *, with_frames: bool = True) -> Query:
        """Load one query with both segments (frames too unless ``with_frames=False``).

        Raises:
            KeyError: No query with this id.
        """
        query_id = operator.index(query_id)
        row = self._fetch_one("SELECT left_id, right_id FROM queries WHERE query_id = ?", (query_id,))
        if row is None:
            raise KeyError(f"query {query_id} is not in the preference store {self._where}")
        left = self.segment(row[0], with_frames=with_frames)
        right = left if row[1] == row[0] else self.segment(row[1], with_frames=with_frames)
        return Query(query_id, left, right)

    def pending_queries(self, *, with_frames: bool = True) -> list[Query]:
        """Queries that have no label yet, oldest (lowest ``query_id``) first."""
        rows = (
            self._connection()
            .execute(
                "SELECT q.query_id FROM queries AS q WHERE NOT EXISTS "
                "(SELECT 1 FROM labels AS l WHERE l.query_id = q.query_id) ORDER BY q.query_id"
            )
            .fetchall()
        )
        return [self.query(query_id, with_frames=with_frames) for (query_id,) in rows]

    def next_query_id(self) -> int:
        """Largest stored ``query_id`` plus one (0 for an empty store), so ids continue on resume."""
        return self._count("SELECT COALESCE(MAX(query_id) + 1, 0) FROM queries")

    # ------------------------------------------------------------------ labels

    def add_label(self, query_id: int, preference: Preference, labeler: str) -> Label:
        """Record the answer to a pending query; it is committed to disk before this returns.

        Args:
            query_id: A stored, not yet labeled query.
            preference: The answer (``SKIP`` is stored too: the query is answered, not pending).
            labeler: Who answered, e.g. ``"human:alice"`` or ``"synthetic"``.

        Raises:
            ValueError: The query is unknown or already labeled (labels are never overwritten), or
                ``preference`` is not a :class:`~prefwrap.records.Preference`.
        """
        query_id = operator.index(query_id)
        preference = Preference(preference)
        if not isinstance(labeler, str):
            raise TypeError(f"labeler must be a str, got {type(labeler).__name__}")
        created_at = time.time()
        with self._write() as conn:
            pair = conn.execute(
                "SELECT left_id, right_id FROM queries WHERE query_id = ?", (query_id,)
            ).fetchone()
            if pair is None:
                raise ValueError(f"cannot label query {query_id}: it is not in the store {self._where}")
            existing = conn.execute(
                "SELECT preference, labeler FROM labels WHERE query_id = ?", (query_id,)
            ).fetchone()
            if existing is not None:
                raise ValueError(
                    f"query {query_id} is already labeled ({existing[0]!r} by {existing[1]!r}); "
                    "labels are never overwritten"
                )
            # seq is the arrival index; the IMMEDIATE transaction makes MAX + 1 race-free across processes.
            conn.execute(
                "INSERT INTO labels (seq, query_id, preference, labeler, created_at) "
                "VALUES ((SELECT COALESCE(MAX(seq) + 1, 0) FROM labels), ?, ?, ?, ?)",
                (query_id, preference.value, labeler, created_at),
            )
        return Label(query_id, pair[0], pair[1], preference, labeler, created_at)

    def labels(self, after: int = 0) -> list[Label]:
        """Labels in arrival order, skipping the first ``after`` (those a poller has already seen).

        ``store.labels(after=n)`` equals ``store.labels()[n:]`` but reads only the new rows, so a
        trainer can poll for labels written by another process cheaply.
        """
        after = operator.index(after)
        if after < 0:
            raise ValueError(f"after must be >= 0 (the number of labels already seen), got {after}")
        rows = self._connection().execute(
            "SELECT l.query_id, q.left_id, q.right_id, l.preference, l.labeler, l.created_at "
            "FROM labels AS l JOIN queries AS q ON q.query_id = l.query_id WHERE l.seq >= ? ORDER BY l.seq",
            (after,),
        )
        return [
            Label(query_id, left_id, right_id, Preference(value), labeler, created_at)
            for query_id, left_id, right_id, value, labeler, created_at in rows
        ]

    def n_labels(self) -> int:
        """Number of stored labels (``SKIP`` answers included)."""
        return self._count("SELECT COUNT(*) FROM labels")

    # ------------------------------------------------------------------ metadata

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        """Value stored under ``key`` in the ``meta`` table, or ``default``."""
        row = self._fetch_one("SELECT value FROM meta WHERE key = ?", (key,))
        return default if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        """Store run metadata (e.g. the env id); ``schema_version`` is reserved."""
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"meta keys and values are str, got {type(key).__name__}: {type(value).__name__}")
        if key == "schema_version":
            raise ValueError("'schema_version' is managed by the store and cannot be set")
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # ------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        """Close the connection (idempotent). Every write is already committed."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

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
        return _MEMORY if self.path is None else str(self.path)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the preference store {self._where} is closed")
        return self._conn

    def _fetch_one(self, sql: str, parameters: tuple[object, ...] = ()) -> tuple[Any, ...] | None:
        return self._connection().execute(sql, parameters).fetchone()

    def _count(self, sql: str) -> int:
        (value,) = self._connection().execute(sql).fetchone()
        return int(value)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        with _transaction(conn):
            yield conn

    @staticmethod
    def _insert_segment(conn: sqlite3.Connection, row: _SegmentRow) -> None:
        """Insert one encoded segment, or check that the stored one with its id is the same."""
        stored = conn.execute(
            "SELECT length, env_index, timestep, observations, actions, true_rewards "
            "FROM segments WHERE segment_id = ?",
            (row.segment_id,),
        ).fetchone()
        if stored is None:
            conn.execute(
                "INSERT INTO segments (segment_id, length, env_index, timestep, observations, actions, "
                "true_rewards) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (row.segment_id, *row.core),
            )
            if row.frames is not None:
                conn.execute(
                    "INSERT INTO segment_frames (segment_id, frames) VALUES (?, ?)",
                    (row.segment_id, row.frames),
                )
        elif tuple(stored) != row.core:
            # Frames are not compared: a caller may drop them from memory once they were stored.
            raise ValueError(
                f"segment {row.segment_id} is already stored with different content; segment ids must "
                "be unique within a run (when resuming, continue from next_segment_id())"
            )


@dataclass(frozen=True)
class _SegmentRow:
    """A segment encoded for the ``segments`` and ``segment_frames`` tables."""

    segment_id: int
    core: tuple[int, int, int, bytes, bytes, bytes]  # length, env_index, timestep, and the three arrays
    frames: bytes | None


def _encode_segment(segment: Segment) -> _SegmentRow:
    """Validate a segment and turn its arrays into ``.npy`` bytes."""
    segment_id = operator.index(segment.segment_id)
    arrays = [np.asarray(getattr(segment, name)) for name in _SEGMENT_ARRAYS]
    horizons = {name: a.shape[0] if a.ndim else None for name, a in zip(_SEGMENT_ARRAYS, arrays, strict=True)}
    if None in horizons.values() or len(set(horizons.values())) != 1:
        raise ValueError(
            f"segment {segment_id}: arrays must share their first dimension (the horizon), got {horizons}"
        )
    horizon = arrays[2].shape[0]
    length = operator.index(segment.length)
    if not 0 <= length <= horizon:
        raise ValueError(f"segment {segment_id}: length must be in [0, {horizon}], got {length}")
    blobs = [_encode(a, f"segment {segment_id} {n}") for n, a in zip(_SEGMENT_ARRAYS, arrays, strict=True)]
    frames = None
    if segment.frames is not None:
        frames = zlib.compress(_encode(segment.frames, f"segment {segment_id} frames"), _FRAMES_ZLIB_LEVEL)
    env_index, timestep = operator.index(segment.env_index), operator.index(segment.timestep)
    return _SegmentRow(segment_id, (length, env_index, timestep, blobs[0], blobs[1], blobs[2]), frames)


def _encode(array: np.ndarray, what: str) -> bytes:
    """``.npy`` bytes of a plain array; object arrays are refused because they would need pickle."""
    array = np.asarray(array)
    if array.dtype.hasobject:
        raise ValueError(
            f"{what} has dtype {array.dtype}, which holds Python objects; the preference store keeps "
            "only plain numeric arrays and never pickles (convert it, e.g. with .astype(np.float32))"
        )
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _decode(blob: bytes, what: str) -> np.ndarray:
    """Array from ``.npy`` bytes, refusing anything that would need unpickling."""
    try:
        array = np.load(io.BytesIO(blob), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise StoreError(f"{what} is not a plain .npy array (the store never unpickles): {error}") from error
    if not isinstance(array, np.ndarray):
        raise StoreError(f"{what} is not a .npy array (found {type(array).__name__})")
    return array


def _decode_frames(blob: bytes, what: str) -> np.ndarray:
    """Frames from zlib-compressed ``.npy`` bytes (or raw ``.npy``, as schema version 1 wrote them)."""
    if not blob.startswith(_NPY_MAGIC):
        try:
            blob = zlib.decompress(blob)
        except zlib.error as error:
            raise StoreError(f"{what} is neither zlib-compressed nor plain .npy: {error}") from error
    return _decode(blob, what)


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, committed on success and rolled back on any error.

    ``BEGIN IMMEDIATE`` takes the write lock up front: with a deferred transaction a reader that later
    writes can fail at once with "database is locked" instead of waiting for ``busy_timeout``.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _is_not_a_database(error: sqlite3.DatabaseError) -> bool:
    name = getattr(error, "sqlite_errorname", None)  # Python >= 3.11
    return name == "SQLITE_NOTADB" or "file is not a database" in str(error)
