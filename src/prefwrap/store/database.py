"""The connection backends under :class:`~prefwrap.store.PreferenceStore`: one interface, two engines.

The store's logic (``preference_store``, ``schema``, ``copy``) is written once, in SQL that both
SQLite (3.24 or newer) and PostgreSQL accept: ``?`` placeholders, ``INSERT ... ON CONFLICT``,
``COALESCE(MAX(...) + 1, 0)``. A :class:`Database` carries what differs between the engines and
nothing more: the driver and its placeholders (``?`` for sqlite3, ``%s`` for psycopg 3), the column
types of the DDL (``BLOB``/``REAL``/``INTEGER`` vs ``BYTEA``/``DOUBLE PRECISION``/``BIGINT``), how a
write transaction takes its lock, how labels are serialised, and how tables and columns are listed.

No ORM: the store is five tables and some twenty statements whose exact transactions and locks are
its guarantees (one commit per label, a gap-free ``seq``); an ORM (SQLAlchemy) would hide exactly the
statements that have to be reviewed, add a dependency to the core install for one extra engine, and
bring its own session and identity-map semantics to reason about across processes.

:func:`open_database` picks the backend from the target: ``postgresql://`` or ``postgres://`` URLs
open PostgreSQL (psycopg, the ``postgres`` extra, imported only then); anything else is a SQLite file.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, ClassVar, Protocol

__all__ = ["POSTGRES_SCHEMES", "Cursor", "Database", "is_postgres_url", "open_database"]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
LOCK_TIMEOUT_S = 30  # how long a writer waits for another process's write to finish (both engines)


class Cursor(Protocol):
    """What both drivers' cursors offer (a DB-API 2 subset)."""

    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Database(ABC):
    """One open connection to a store's database, with the engine's differences behind methods.

    Attributes:
        engine: ``"sqlite"`` or ``"postgresql"``.
        engine_name: ``"SQLite"`` or ``"PostgreSQL"``, for messages.
        location: What to pass to :func:`open_database` (or ``PreferenceStore``) to open the same store
            from another process: a file path, ``":memory:"`` or the URL as given (password included).
        display: ``location`` fit for messages and logs: a URL's password is replaced by ``***``.
        path: The SQLite file, or ``None`` (in memory, or PostgreSQL).
        types: The DDL column types by role: ``int``, ``real``, ``blob``, and ``serial``: an integer
            primary key the database numbers itself (for append-only logs beside the store, such as
            the web page's annotation journal; the store's own ids are the caller's).
    """

    engine: ClassVar[str]
    engine_name: ClassVar[str]
    types: ClassVar[dict[str, str]]

    def __init__(self, location: str, display: str, path: Path | None) -> None:
        self.location = location
        self.display = display
        self.path = path

    @abstractmethod
    def execute(self, sql: str, parameters: Sequence[object] = ()) -> Cursor:
        """Run one statement written with ``?`` placeholders.

        Raises:
            StoreError: The connection is closed or lost, or a lock was not free within 30 s.
        """

    def fetchone(self, sql: str, parameters: Sequence[object] = ()) -> tuple[Any, ...] | None:
        """The first row of a query, or ``None``.

        Raises:
            StoreError: As :meth:`execute`.
        """
        row = self.execute(sql, parameters).fetchone()
        return None if row is None else tuple(row)

    @abstractmethod
    def transaction(self) -> AbstractContextManager[None]:
        """A write transaction, committed on success (durably: fsynced) and rolled back on any error.

        Raises:
            StoreError: The write lock was not free within 30 s, or the connection is closed or lost.
        """

    @abstractmethod
    def snapshot(self) -> AbstractContextManager[None]:
        """A read-only transaction whose reads all see one consistent state (for copies and checks).

        Raises:
            StoreError: The connection is closed or lost.
        """

    @abstractmethod
    def lock_labels(self) -> None:
        """Inside :meth:`transaction`: wait until no other writer can add a label before this commits.

        After it, ``MAX(seq) + 1`` is the next arrival index and stays so until the commit.
        """

    @abstractmethod
    def lock_schema(self) -> None:
        """Inside :meth:`transaction`: serialise creating or migrating the tables with other processes."""

    @abstractmethod
    def tables(self) -> set[str]:
        """Names of the tables of this store (its file, or its PostgreSQL schema)."""

    @abstractmethod
    def columns(self, table: str) -> list[str]:
        """Column names of ``table`` in table order."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection; idempotent and never raises."""


def is_postgres_url(target: str | os.PathLike[str]) -> bool:
    """Whether ``target`` names a PostgreSQL database (a ``postgresql://`` or ``postgres://`` URL)."""
    return isinstance(target, str) and target.lower().startswith(POSTGRES_SCHEMES)


def open_database(target: str | os.PathLike[str]) -> Database:
    """Connect to a store's database (not yet checking or creating its schema).

    Args:
        target: A SQLite file path, ``":memory:"``, or a ``postgresql://`` URL.

    Raises:
        StoreError: The database cannot be opened or reached (see the backends).
        ImportError: A PostgreSQL URL without psycopg installed (the ``postgres`` extra).
        OSError: The SQLite file's parent directory cannot be created.
    """
    if is_postgres_url(target):
        from prefwrap.store.postgres_database import PostgresDatabase

        return PostgresDatabase(str(target))
    from prefwrap.store.sqlite_database import SQLiteDatabase

    return SQLiteDatabase(target)
