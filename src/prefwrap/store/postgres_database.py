"""The PostgreSQL backend (psycopg 3, the ``postgres`` extra): a store shared by processes on many machines.

Guarantees, the same as SQLite's:

- **One commit per label.** Each write is one transaction; ``synchronous_commit`` is raised to ``on``
  if the server has it ``off``, so ``COMMIT`` returns only once the WAL is flushed on the server.
- **Visible at once.** The connection is in autocommit mode: every read outside a write is its own
  statement and sees everything committed before it (``READ COMMITTED``).
- **Gap-free, race-free** ``seq``. :meth:`PostgresDatabase.lock_labels` takes
  ``LOCK TABLE labels IN SHARE ROW EXCLUSIVE MODE`` for the rest of the transaction. That mode
  conflicts with itself and with every ``INSERT``/``UPDATE``/``DELETE`` of ``labels``, and not with
  plain ``SELECT`` (``ACCESS SHARE``): label writers queue, readers never wait. Since each statement of
  a ``READ COMMITTED`` transaction takes a new snapshot, the ``MAX(seq) + 1`` read after the lock sees
  the previous writer's committed label. Chosen over a transaction-level advisory lock because it is
  scoped to the table itself (so to the run's schema), shows in ``pg_locks`` under the table's name,
  and also stops a foreign tool's plain ``INSERT`` from slipping between our read and write; and over
  ``SERIALIZABLE`` with retries because 8 writers on one ``MAX(seq)`` would mostly fail and retry.
- **Runs share a database through schemas.** The tables live in the connection's ``current_schema``:
  give each run its own with ``?options=-csearch_path%3Drun1``; a missing schema (the first name of
  ``search_path``) is created on first open. Creating it and the tables is serialised across processes
  with a transaction-level advisory lock keyed by the schema's name.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

from prefwrap.store.database import LOCK_TIMEOUT_S, Cursor, Database
from prefwrap.store.errors import StoreError

__all__ = ["PostgresDatabase", "redact_url"]

_CONNECT_TIMEOUT_S = 10
_INSTALL_HINT = 'install the postgres extra: pip install "prefwrap[postgres]"'


class PostgresDatabase(Database):
    """A store in one PostgreSQL schema, through one psycopg 3 connection in autocommit mode."""

    engine = "postgresql"
    engine_name = "PostgreSQL"
    types = {"int": "BIGINT", "real": "DOUBLE PRECISION", "blob": "BYTEA"}  # noqa: RUF012

    def __init__(self, url: str) -> None:
        """Connect and set the session's durability and lock-wait settings.

        Args:
            url: ``postgresql://user[:password]@host[:port]/database[?options=-csearch_path%3Dschema]``.

        Raises:
            ImportError: psycopg is not installed (names the ``postgres`` extra).
            StoreError: The server cannot be reached, refuses the login, or has no such database (one
                line naming the URL without its password, and the fix).
        """
        super().__init__(url, redact_url(url), None)
        try:
            import psycopg
        except ImportError as error:
            raise ImportError(f"{self.display} needs psycopg 3 for PostgreSQL: {_INSTALL_HINT}") from error
        self._errors = psycopg.OperationalError
        options: dict[str, Any] = {"autocommit": True, "application_name": "prefwrap"}
        if "connect_timeout" not in url:
            options["connect_timeout"] = _CONNECT_TIMEOUT_S
        try:
            self._conn: Any = psycopg.connect(url, **options)
        except psycopg.Error as error:
            reason = " ".join(str(error).split())
            raise StoreError(
                f"cannot connect to the PostgreSQL preference store {self.display}: {reason} "
                "(check that the server is running and that the user, host, port and database of the URL "
                "are right; `createdb NAME` makes a missing database)"
            ) from error
        try:
            self.execute(f"SET lock_timeout = '{LOCK_TIMEOUT_S}s'")
            # psycopg prepares a statement after 5 runs, and PostgreSQL may then pick one generic plan for
            # every value: for a poll's `seq >= ?` that is a scan of all labels (6 ms at 10,000) instead
            # of an index range (0.1 ms). Custom plans cost ~0.1 ms of planning on these small statements.
            self.execute("SET plan_cache_mode = force_custom_plan")
            if self.fetchone("SHOW synchronous_commit") == ("off",):
                # a label must be on the server's disk when add_label returns
                self.execute("SET synchronous_commit = on")
        except BaseException:
            self.close()
            raise

    @property
    def connection(self) -> Any:
        """The psycopg connection (tests and tools; the store goes through :meth:`execute`).

        Raises:
            StoreError: The database is closed.
        """
        if self._conn is None:
            raise StoreError(f"the preference store {self.display} is closed")
        return self._conn

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> Cursor:
        """Run one statement written with ``?`` placeholders (turned into psycopg's ``%s``).

        Raises:
            StoreError: The connection is lost, or a lock was not free within 30 s.
        """
        try:
            return self.connection.execute(_placeholders(sql), parameters)
        except self._errors as error:
            self._raise(error)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """``BEGIN`` ... ``COMMIT`` (``READ COMMITTED``), rolled back on any error.

        Raises:
            StoreError: The connection is lost, or a lock was not free within 30 s.
        """
        try:
            with self.connection.transaction():
                yield
        except self._errors as error:
            self._raise(error)

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """A ``REPEATABLE READ READ ONLY`` transaction: one snapshot for all its reads, no locks.

        Raises:
            StoreError: The connection is lost.
        """
        with self.transaction():
            self.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield

    def lock_labels(self) -> None:
        """Queue behind other label writers until this transaction ends (see the module docstring)."""
        self.execute("LOCK TABLE labels IN SHARE ROW EXCLUSIVE MODE")

    def lock_schema(self) -> None:
        """Serialise schema creation by schema name, and create the schema if it does not exist.

        Raises:
            StoreError: ``search_path`` names no schema to create the tables in.
        """
        (search_path,) = self.fetchone("SELECT current_setting('search_path')") or ("",)
        names = [name.strip().strip('"') for name in search_path.split(",")]
        names = [name for name in names if name and name != "$user"]
        (current,) = self.fetchone("SELECT current_schema()") or (None,)
        key = current or (names[0] if names else "")
        self.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (f"prefwrap.store:{key}",))
        if current is None:
            if not names:
                raise StoreError(f"{self.display}: search_path {search_path!r} names no schema for the store")
            from psycopg import sql

            self.connection.execute(
                sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(names[0]))
            )

    def tables(self) -> set[str]:
        """Tables of the connection's current schema."""
        rows = self.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        ).fetchall()
        return {name for (name,) in rows}

    def columns(self, table: str) -> list[str]:
        """Column names of ``table`` of the current schema in table order."""
        rows = self.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
            (table,),
        ).fetchall()
        return [name for (name,) in rows]

    def close(self) -> None:
        """Close the connection; idempotent and never raises (an open transaction is rolled back)."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def _raise(self, error: Exception) -> NoReturn:
        reason = " ".join(str(error).split())
        if type(error).__name__ == "LockNotAvailable":
            reason = f"waited {LOCK_TIMEOUT_S} s for another writer's lock ({reason})"
        raise StoreError(f"PostgreSQL preference store {self.display}: {reason}") from error


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs).

    Example:
        >>> redact_url("postgresql://me:secret@db.lab:5432/runs?options=-csearch_path%3Drun1")
        'postgresql://me:***@db.lab:5432/runs?options=-csearch_path%3Drun1'
    """
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user.split(':', 1)[0]}:***@{host}"))


@functools.lru_cache(maxsize=256)
def _placeholders(sql: str) -> str:
    """psycopg's ``%s`` for the store's ``?``, a literal ``%`` escaped (no ``?`` may stand in a literal)."""
    return sql.replace("%", "%%").replace("?", "%s")
