"""Every answer given on the web page, with who gave it and how long they looked: the annotation journal.

The preference store keeps one label per query, which is what training uses. People's behaviour
needs more: how long each answer took, and the second answer to a query shown to two annotators on
purpose (overlap). Both live here, beside the store's tables rather than in them, so the store's
schema (``docs/store.md``) stays the store's:

- **SQLite store**: a small SQLite file of its own next to the store, table ``answers``
  (``preferences.sqlite`` -> ``preferences.annotations.sqlite``), as since the first web page, so
  journals written before keep opening as they are.
- **PostgreSQL store**: table ``annotation_answers`` in the store's own database and schema (the
  URL's ``search_path``), created when missing. The label server, the trainer and
  ``prefwrap annotators`` may each run on another machine, where a file next to a URL would not be
  found; the prefix keeps the table apart from the store's, whose schema check ignores it.

The SQL is written once over the store's :class:`~prefwrap.store.database.Database` (``?``
placeholders, ``INSERT ... ON CONFLICT``; column types from ``Database.types``), with the same
durability as the store: every answer is one committed (fsynced) statement before
:meth:`AnnotationJournal.add` returns. Like the store the journal is append-only, and like the
store's ``labels`` table it keeps a ranking as ``preference = 'ranked'`` with the ranking's JSON in
``ranking`` (a journal file from before rankings gets that column when it is opened).

Roles:

- ``label``: the answer that became the query's label in the store (written after the store commit).
- ``second``: a second annotator's answer to an overlap query; the store's label (the first answer)
  stands, this one only feeds the agreement report.
"""

from __future__ import annotations

import os
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefwrap.records import Answer, Preference, Ranking
from prefwrap.store.database import Database, is_postgres_url, open_database
from prefwrap.store.errors import StoreError
from prefwrap.store.sqlite_database import MEMORY

__all__ = [
    "DATABASE_TABLE",
    "FILE_TABLE",
    "AnnotationJournal",
    "JournalEntry",
    "copy_journal",
    "journal_location",
    "journal_path",
    "read_journal",
]

FILE_TABLE = "answers"
"""The journal's table in a journal file of its own (next to a SQLite store)."""
DATABASE_TABLE = "annotation_answers"
"""The journal's table in a PostgreSQL store's schema, next to the store's tables."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    seq {serial},
    query_id {int} NOT NULL,
    annotator TEXT NOT NULL,
    preference TEXT NOT NULL,
    ranking TEXT,
    role TEXT NOT NULL CHECK (role IN ('label', 'second')),
    shown_at {real} NOT NULL,
    answered_at {real} NOT NULL,
    UNIQUE (query_id, annotator)
)
"""


def journal_path(store_path: str | os.PathLike[str]) -> Path:
    """The journal file that belongs to a store file: ``x.sqlite`` -> ``x.annotations.sqlite``."""
    path = Path(store_path)
    return path.with_name(f"{path.stem}.annotations.sqlite")


def journal_location(store_location: str | os.PathLike[str]) -> str:
    """What :class:`AnnotationJournal` opens for a store: its own ``postgresql://`` URL, or the file
    next to a SQLite store (:func:`journal_path`)."""
    if is_postgres_url(store_location):
        return str(store_location)
    return str(journal_path(store_location))


@dataclass(frozen=True)
class JournalEntry:
    """One answer from the web page.

    Attributes:
        query_id: The answered query.
        annotator: The name the person entered (the store's labeler is ``human:<annotator>``).
        preference: The answer: a :class:`~prefwrap.records.Preference` for a pair or a skip, a
            :class:`~prefwrap.records.Ranking` for a larger query.
        role: ``"label"`` (it is the store's label) or ``"second"`` (second opinion on an overlap query).
        shown_at: Unix time at which the page had both clips (the clock of thinking time starts).
        answered_at: Unix time at which the server received the answer.
    """

    query_id: int
    annotator: str
    preference: Answer
    role: str
    shown_at: float
    answered_at: float

    @property
    def seconds(self) -> float:
        """Seconds the annotator took (never negative)."""
        return max(0.0, self.answered_at - self.shown_at)


class AnnotationJournal:
    """The append-only journal of web answers (see the module docstring).

    One object belongs to the thread that opened it, as with the store.

    Args:
        location: The journal file (created with its parent directory when missing), or a
            PostgreSQL store's URL (:func:`journal_location` gives either for a store).

    Attributes:
        location: What was opened: the file path or the URL as given.
        path: The journal file, or ``None`` in a PostgreSQL database.

    Raises:
        StoreError: The file is not a SQLite database, the database cannot be reached, or (PostgreSQL)
            the URL's schema holds no preference store: the journal's table goes next to a store's.
        ImportError: A PostgreSQL URL without psycopg installed (the ``postgres`` extra).

    Example:
        >>> journal = AnnotationJournal(journal_location(store.location))  # doctest: +SKIP
        >>> journal.add(0, "alice", Preference.LEFT, "label", shown_at=10.0)  # doctest: +SKIP
        True
    """

    def __init__(self, location: str | os.PathLike[str]) -> None:
        self._db: Database = open_database(location)
        self.location = self._db.location
        self.path = self._db.path
        self._table = DATABASE_TABLE if self._db.engine == "postgresql" else FILE_TABLE
        try:
            with self._db.transaction():
                # PostgreSQL: creates the URL's schema if missing, and serialises this CREATE with
                # other processes creating tables there (two of them would otherwise race)
                self._db.lock_schema()
                if self._table == DATABASE_TABLE and "meta" not in self._db.tables():
                    # a mistyped schema: a lone journal table there would also make it unusable as a store
                    raise StoreError(
                        f"{self._db.display} holds no prefwrap preference store: open the store first"
                    )
                self._db.execute(_SCHEMA.format(table=self._table, **self._db.types))
                if "ranking" not in self._db.columns(self._table):  # a file from before rankings
                    self._db.execute(f"ALTER TABLE {self._table} ADD COLUMN ranking TEXT")
        except BaseException:
            self._db.close()
            raise

    def add(
        self,
        query_id: int,
        annotator: str,
        preference: Answer,
        role: str,
        *,
        shown_at: float | None = None,
        answered_at: float | None = None,
    ) -> bool:
        """Append one answer and commit; ``False`` if this annotator already answered this query.

        Raises:
            ValueError: ``role`` is not ``"label"`` or ``"second"``.
            StoreError: The journal is closed, its connection is lost, or it stayed locked for 30 s.
        """
        if role not in ("label", "second"):
            raise ValueError(f"role must be 'label' or 'second', got {role!r}")
        now = time.time() if answered_at is None else answered_at
        # one statement in autocommit mode: committed (and fsynced) before it returns, on both engines;
        # a conflict on UNIQUE (query_id, annotator) is a retried request, not a new answer
        cursor = self._db.execute(
            f"INSERT INTO {self._table} "
            "(query_id, annotator, preference, ranking, role, shown_at, answered_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (query_id, annotator) DO NOTHING",
            (
                query_id,
                annotator,
                preference.value,
                preference.to_json() if isinstance(preference, Ranking) else None,
                role,
                now if shown_at is None else shown_at,
                now,
            ),
        )
        return cursor.rowcount == 1

    def entries(self) -> list[JournalEntry]:
        """All answers in arrival order."""
        return _entries(self._db, self._table)

    def has_second(self, query_id: int) -> bool:
        """Whether an overlap query already has its second answer."""
        row = self._db.fetchone(
            f"SELECT 1 FROM {self._table} WHERE query_id = ? AND role = 'second' LIMIT 1", (query_id,)
        )
        return row is not None

    def answer_of(self, query_id: int, annotator: str) -> JournalEntry | None:
        """This annotator's answer to a query, if any."""
        row = self._db.fetchone(
            f"SELECT {_COLUMNS} FROM {self._table} WHERE query_id = ? AND annotator = ?",
            (query_id, annotator),
        )
        return None if row is None else _entry(row)

    def close(self) -> None:
        """Close the file or connection; every answer is already committed."""
        self._db.close()


def read_journal(store_location: str | os.PathLike[str]) -> list[JournalEntry]:
    """Every answer journaled for a store, in arrival order; none if the page never wrote a journal.

    Creates and changes nothing, so a report can read a store it may not write.

    Args:
        store_location: The store's file, ``":memory:"`` (never journaled) or PostgreSQL URL.

    Raises:
        StoreError: The journal file is not a SQLite database, or the database cannot be reached.
    """
    if is_postgres_url(store_location):
        target, table = str(store_location), DATABASE_TABLE
    else:
        if os.fspath(store_location) == MEMORY or not journal_path(store_location).is_file():
            return []
        target, table = str(journal_path(store_location)), FILE_TABLE
    with closing(open_database(target)) as db:
        if table not in db.tables():
            return []
        ranking = "ranking" if "ranking" in db.columns(table) else "NULL"  # a file from before rankings
        return _entries(db, table, ranking)


def copy_journal(source: str | os.PathLike[str], destination: str | os.PathLike[str]) -> int:
    """Copy a store's journal to another store's (``prefwrap store copy`` does, after the store).

    Entries keep their order, answers and times. The destination's journal (its file, or its
    table in a PostgreSQL store) is created; the destination store must exist.

    Returns:
        The number of answers copied (0 where the source has no journal; nothing is then created).

    Raises:
        StoreError: The destination journal already holds answers, either cannot be opened, or the
            answers read back from the destination differ from the source's.
    """
    entries = read_journal(source)
    if not entries:
        return 0
    journal = AnnotationJournal(journal_location(destination))
    try:
        if journal.entries():
            raise StoreError(f"the annotation journal of {journal.location} already holds answers")
        for entry in entries:
            journal.add(
                entry.query_id,
                entry.annotator,
                entry.preference,
                entry.role,
                shown_at=entry.shown_at,
                answered_at=entry.answered_at,
            )
        if journal.entries() != entries:
            raise StoreError(f"journal copy check failed: {journal.location} differs from the source")
    finally:
        journal.close()
    return len(entries)


_COLUMNS = "query_id, annotator, preference, ranking, role, shown_at, answered_at"


def _entries(db: Database, table: str, ranking: str = "ranking") -> list[JournalEntry]:
    """All rows of a journal table in arrival order (``ranking``: that column, or ``NULL``)."""
    columns = _COLUMNS.replace("ranking", ranking)
    return [_entry(tuple(row)) for row in db.execute(f"SELECT {columns} FROM {table} ORDER BY seq")]


def _entry(row: tuple[Any, ...]) -> JournalEntry:
    """A journal row (:data:`_COLUMNS`) as an entry."""
    query_id, annotator, preference, ranking, role, shown_at, answered_at = row
    answer = Preference(preference) if ranking is None else Ranking.parse(ranking)
    return JournalEntry(query_id, annotator, answer, role, shown_at, answered_at)
