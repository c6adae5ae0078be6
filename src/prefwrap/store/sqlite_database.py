"""The SQLite backend: one file in WAL mode, fsynced at each commit, writers queued by ``BEGIN IMMEDIATE``."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from prefwrap.store.database import LOCK_TIMEOUT_S, Cursor, Database
from prefwrap.store.errors import StoreError

__all__ = ["MEMORY", "SQLiteDatabase"]

MEMORY = ":memory:"  # SQLite's name for a throwaway in-memory database


class SQLiteDatabase(Database):
    """A store in one SQLite file (or in memory), opened with the durability pragmas.

    ``journal_mode=WAL`` lets readers in other processes read while one writes; ``synchronous=FULL``
    fsyncs the WAL at every commit; ``busy_timeout`` makes a writer wait for another's transaction;
    ``foreign_keys=ON`` keeps queries and labels pointing at stored rows. The connection is in
    autocommit mode (``isolation_level=None``): every write opens its own :meth:`transaction`.
    """

    engine = "sqlite"
    engine_name = "SQLite"
    types = {  # noqa: RUF012 (read-only by convention)
        "int": "INTEGER",
        "real": "REAL",
        "blob": "BLOB",
        "serial": "INTEGER PRIMARY KEY",  # the rowid: numbered from the largest + 1
    }

    def __init__(self, target: str | os.PathLike[str]) -> None:
        """Open the file (creating it and its parent directory) and set the pragmas.

        Args:
            target: A database file path, or :data:`MEMORY`.

        Raises:
            StoreError: The file is not a SQLite database, cannot be opened, or refuses WAL mode
                (a network filesystem).
            OSError: The parent directory cannot be created.
        """
        if os.fspath(target) == MEMORY:
            path, location = None, MEMORY
        else:
            path = Path(target).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            location = str(path)
        super().__init__(location, location, path)
        try:
            self._conn: sqlite3.Connection | None = sqlite3.connect(
                location, timeout=LOCK_TIMEOUT_S, isolation_level=None
            )
        except sqlite3.Error as error:
            raise StoreError(f"cannot open the preference store {location}: {error}") from error
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {LOCK_TIMEOUT_S * 1000}")
            mode = _enter_wal_mode(self._conn)
            if path is not None and str(mode).lower() != "wal":
                raise StoreError(
                    f"{location}: SQLite refused WAL journal mode (got {mode!r}); the preference store "
                    "needs a local filesystem with shared-memory support (not a network share; use a "
                    "postgresql:// URL to share a store between machines)"
                )
            # FULL: fsync the WAL at every commit, so a returned label survives power loss too.
            # (NORMAL is crash-safe against kill -9 but may lose the last commits on power loss.)
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as error:
            self.close()
            self._raise(error)
        except BaseException:
            self.close()
            raise

    @property
    def connection(self) -> sqlite3.Connection:
        """The sqlite3 connection (tests and tools; the store goes through :meth:`execute`).

        Raises:
            StoreError: The database is closed.
        """
        if self._conn is None:
            raise StoreError(f"the preference store {self.display} is closed")
        return self._conn

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> Cursor:
        """Run one statement (``?`` placeholders).

        Raises:
            StoreError: The file is locked for longer than 30 s, is not a database, or is closed.
            sqlite3.ProgrammingError: Used from another thread than the one that opened it.
        """
        try:
            return self.connection.execute(sql, parameters)
        except sqlite3.DatabaseError as error:
            if isinstance(error, (sqlite3.IntegrityError, sqlite3.ProgrammingError)):
                raise
            self._raise(error)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``: the write lock is taken up front.

        With a deferred transaction a reader that later writes could fail at once with "database is
        locked" instead of waiting for ``busy_timeout``.

        Raises:
            StoreError: The write lock was not free within 30 s.
        """
        conn = self.connection
        self.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A deferred transaction: in WAL mode its reads see the state at its first read, without locking.

        Raises:
            StoreError: The database is closed.
        """
        conn = self.connection
        self.execute("BEGIN")
        try:
            yield
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def lock_labels(self) -> None:
        """Nothing to do: ``BEGIN IMMEDIATE`` already holds the one write lock of the file."""

    def lock_schema(self) -> None:
        """Nothing to do: ``BEGIN IMMEDIATE`` already holds the one write lock of the file."""

    def tables(self) -> set[str]:
        """Tables of the file (SQLite's own ``sqlite_*`` left out)."""
        rows = self.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return {name for (name,) in rows if not name.startswith("sqlite_")}

    def columns(self, table: str) -> list[str]:
        """Column names of ``table`` in table order (``PRAGMA table_info``)."""
        return [row[1] for row in self.execute(f"PRAGMA table_info({table})")]

    def close(self) -> None:
        """Close the connection; idempotent and never raises."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _raise(self, error: sqlite3.DatabaseError) -> NoReturn:
        name = getattr(error, "sqlite_errorname", None)  # Python >= 3.11
        if name == "SQLITE_NOTADB" or "file is not a database" in str(error):
            raise StoreError(
                f"{self.display} is not a SQLite database; expected a prefwrap preference store "
                "(or a new or empty file to create one)"
            ) from error
        raise StoreError(f"cannot use the preference store {self.display}: {error}") from error


def _enter_wal_mode(conn: sqlite3.Connection) -> str:
    """Switch to WAL, retrying while another process holds the file; return the mode SQLite reports.

    The switch needs an exclusive lock, and SQLite answers "database is locked" at once, without
    its busy handler, when two connections both wait to upgrade (it would deadlock), e.g. a
    trainer and a labeling page opening a new store together. So wait here instead, up to the
    same lock timeout as any write.
    """
    mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    if mode.lower() == "wal":  # already WAL (every store but a new one): nothing to lock
        return mode
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
