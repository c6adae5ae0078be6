"""Move a run's store between backends (SQLite <-> PostgreSQL), checking that nothing was lost.

Rows are copied as they are stored (arrays stay the same ``.npy`` and zlib bytes, timestamps and
``seq`` unchanged), so a copy is bit-for-bit the same store in the other engine. The source is read
in one snapshot (a trainer may keep writing to it meanwhile: labels written after the snapshot are
not copied); the destination is written in one transaction, so a failed copy leaves it empty. Then
every table is read back from the destination and compared with what was read from the source: row
counts and a SHA-256 of the rows in key order.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> PreferenceStore(folder / "a.db").close()
    >>> copy_store(folder / "a.db", folder / "b.db").counts["labels"]
    0
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prefwrap.store.database import Database
from prefwrap.store.errors import StoreError
from prefwrap.store.preference_store import PreferenceStore
from prefwrap.store.schema import TABLES

__all__ = ["CopyReport", "copy_store", "table_digests"]

_COLUMNS = {  # table -> (columns, key): every column, the key first
    "meta": ("key, value", "key"),
    "segments": (
        "segment_id, length, env_index, timestep, observations, actions, true_rewards, terminated",
        "segment_id",
    ),
    "segment_frames": ("segment_id, frames", "segment_id"),
    "queries": ("query_id, left_id, right_id, created_at", "query_id"),
    "query_segments": ("query_id, position, segment_id", "query_id, position"),
    "labels": ("seq, query_id, preference, labeler, created_at, ranking", "seq"),
}
_PAGE = 64  # rows per read: segments with frames can be megabytes each


@dataclass(frozen=True)
class CopyReport:
    """What :func:`copy_store` copied and checked.

    Attributes:
        source: The source store (a URL's password hidden).
        destination: The destination store (a URL's password hidden).
        counts: Rows per table, the same in both.
        digests: SHA-256 (hex) of each table's rows in key order, the same in both.
    """

    source: str
    destination: str
    counts: dict[str, int] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        tables = ", ".join(f"{self.counts[table]} {table}" for table in TABLES)
        checked = "checked (counts and SHA-256 of every table)"
        return f"copied {self.source} -> {self.destination}: {tables}; {checked}"


def copy_store(source: str | os.PathLike[str], destination: str | os.PathLike[str]) -> CopyReport:
    """Copy every segment, frame, query, label and metadata entry of one store into a new, empty one.

    Args:
        source: The store to copy (SQLite file or ``postgresql://`` URL); opened, so migrated to the
            current schema version if older, and never written otherwise.
        destination: The store to create (a new file, or an empty PostgreSQL schema).

    Returns:
        Counts and digests of the copied tables, equal in both stores.

    Raises:
        StoreError: The two name the same store, the destination already holds data, either cannot
            be opened, or the check after the copy found a difference (the destination then holds the
            copy as written, for inspection).
        ImportError: A PostgreSQL URL without psycopg installed.
    """
    with PreferenceStore(source) as src, PreferenceStore(destination) as dst:
        src_db, dst_db = src._database(), dst._database()
        if src.location == dst.location:
            raise StoreError(f"cannot copy the preference store {src_db.display} onto itself")
        held = {table: _count(dst_db, table) for table in TABLES}
        held["meta"] -= 1  # schema_version
        if any(held.values()):
            raise StoreError(
                f"{dst_db.display} already holds {', '.join(f'{n} {t}' for t, n in held.items() if n)}; "
                "copy into a new file or an empty PostgreSQL schema"
            )
        counts: dict[str, int] = {}
        digests: dict[str, str] = {}
        with src_db.snapshot(), dst_db.transaction():
            dst_db.lock_labels()
            for table in TABLES:
                counts[table], digests[table] = _copy_table(src_db, dst_db, table)
        report = CopyReport(src_db.display, dst_db.display, counts, digests)
        written = table_digests(dst_db)
        wrong = [table for table in TABLES if written[table] != (counts[table], digests[table])]
        if wrong:
            raise StoreError(f"copy check failed: {dst_db.display} differs from {src_db.display} in {wrong}")
        n_labels, last_seq = dst_db.fetchone("SELECT COUNT(*), COALESCE(MAX(seq), -1) FROM labels") or (0, -1)
        if last_seq != n_labels - 1:
            raise StoreError(f"copy check failed: labels.seq of {dst_db.display} is not 0..{n_labels - 1}")
        return report


def table_digests(db: Database) -> dict[str, tuple[int, str]]:
    """Row count and SHA-256 (hex) of the rows in key order, per table, read in one snapshot.

    Two stores with equal digests hold the same rows, whatever their engine.

    Raises:
        StoreError: The connection is closed or lost.
    """
    with db.snapshot():
        return {table: _read_table(db, table, None) for table in TABLES}


def _copy_table(src: Database, dst: Database, table: str) -> tuple[int, str]:
    columns = _COLUMNS[table][0]
    placeholders = ", ".join("?" * (columns.count(",") + 1))
    insert = f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"
    if table == "meta":  # schema_version is already there
        insert += " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    return _read_table(src, table, lambda row: dst.execute(insert, row))


def _read_table(
    db: Database, table: str, each_row: Callable[[tuple[object, ...]], object] | None
) -> tuple[int, str]:
    """Read ``table`` page by page in key order, hashing every row and passing it to ``each_row``."""
    columns, key = _COLUMNS[table]
    width = key.count(",") + 1  # a composite key pages by row value: (query_id, position) > (?, ?)
    digest, n_rows, last = hashlib.sha256(), 0, None
    while True:
        where = "" if last is None else f"WHERE ({key}) > ({', '.join('?' * width)}) "
        rows = db.execute(
            f"SELECT {columns} FROM {table} {where}ORDER BY {key} LIMIT {_PAGE}",
            () if last is None else last,
        ).fetchall()
        for row in rows:
            row = tuple(row)
            _hash_row(digest, row)
            if each_row is not None:
                each_row(row)
        n_rows += len(rows)
        if len(rows) < _PAGE:
            return n_rows, digest.hexdigest()
        last = tuple(rows[-1][:width])


def _hash_row(digest: Any, row: tuple[object, ...]) -> None:
    """Feed one row to ``digest`` in a form that is the same whichever driver read it."""
    for value in row:
        if value is None:
            digest.update(b"N;")
        elif isinstance(value, int):
            digest.update(b"i%d;" % value)
        elif isinstance(value, float):
            digest.update(b"f" + value.hex().encode() + b";")
        elif isinstance(value, str):
            data = value.encode()
            digest.update(b"s%d:" % len(data) + data)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            digest.update(b"b%d:" % len(data) + data)
        else:
            raise StoreError(f"unexpected {type(value).__name__} value in a store row: {value!r}")
    digest.update(b"\n")


def _count(db: Database, table: str) -> int:
    (n,) = db.fetchone(f"SELECT COUNT(*) FROM {table}") or (0,)
    return int(n)
