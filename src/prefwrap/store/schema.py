"""The store's SQLite file: connection settings, the schema (version 3) and its migrations.

The schema is part of the public interface (``docs/store.md``): other tools read the file directly,
so a change here needs a new :data:`SCHEMA_VERSION`, a migration in ``_create_or_check`` and a
row in the docs' version table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from prefwrap.store.errors import StoreError

__all__ = ["MEMORY", "SCHEMA_VERSION", "connect", "transaction"]

SCHEMA_VERSION = 3
MEMORY = ":memory:"  # SQLite's name for a throwaway in-memory database
_BUSY_TIMEOUT_MS = 30_000  # how long a writer waits for another process's write to finish

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
    true_rewards BLOB NOT NULL,
    terminated INTEGER NOT NULL DEFAULT 0 CHECK (terminated IN (0, 1))
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


def connect(target: str) -> sqlite3.Connection:
    """Open ``target``, set the durability pragmas, and create, check or migrate its schema.

    Args:
        target: A database file path, or :data:`MEMORY`.

    Returns:
        A connection in autocommit mode (``isolation_level=None``): every write opens its own
        :func:`transaction`.

    Raises:
        StoreError: The file is not a SQLite database, belongs to another application, has a newer
            schema than :data:`SCHEMA_VERSION`, or cannot be opened in WAL mode.
    """
    try:
        conn = sqlite3.connect(target, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error as error:
        raise StoreError(f"cannot open the preference store {target}: {error}") from error
    try:
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if target != MEMORY and str(mode).lower() != "wal":
            raise StoreError(
                f"{target}: SQLite refused WAL journal mode (got {mode!r}); the preference store "
                "needs a local filesystem with shared-memory support (not a network share)"
            )
        # FULL: fsync the WAL at every commit, so a returned label survives power loss too.
        # (NORMAL is crash-safe against kill -9 but may lose the last commits on power loss.)
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        with transaction(conn):
            _create_or_check(conn, target)
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


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, committed on success and rolled back on any error.

    ``BEGIN IMMEDIATE`` takes the write lock up front: with a deferred transaction a reader that later
    writes can fail at once with "database is locked" instead of waiting for ``busy_timeout``.

    Raises:
        sqlite3.OperationalError: The write lock was not free within ``busy_timeout``.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _create_or_check(conn: sqlite3.Connection, target: str) -> None:
    """Create the schema in an empty file, or check the version of an existing store and migrate it."""
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    tables = {name for (name,) in rows if not name.startswith("sqlite_")}
    if not tables:
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
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
    if int(version) > SCHEMA_VERSION:
        raise StoreError(
            f"{target} has store schema version {int(version)}, but this prefwrap reads only "
            f"version {SCHEMA_VERSION} or older; upgrade prefwrap to open it"
        )
    if int(version) < 1 or not tables >= _TABLES:
        raise StoreError(
            f"{target} claims schema version {version} but its tables are {sorted(tables)}; "
            f"expected {sorted(_TABLES)}"
        )
    # version 2 only compresses new frames (version 1's raw .npy stay readable); version 3 records
    # which segments end in a termination (older segments were all stored as not terminated)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(segments)")}
    if "terminated" not in columns:
        conn.execute(
            "ALTER TABLE segments ADD COLUMN terminated INTEGER NOT NULL DEFAULT 0 "
            "CHECK (terminated IN (0, 1))"
        )
    if int(version) < SCHEMA_VERSION:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


def _is_not_a_database(error: sqlite3.DatabaseError) -> bool:
    name = getattr(error, "sqlite_errorname", None)  # Python >= 3.11
    return name == "SQLITE_NOTADB" or "file is not a database" in str(error)
