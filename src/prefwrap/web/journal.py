"""Every answer given on the web page, with who gave it and how long they looked: the annotation journal.

The preference store keeps one label per query, which is what training uses. People's behaviour
needs more: how long each answer took, and the second answer to a query shown to two annotators on
purpose (overlap). Both live here, in a small SQLite file of its own next to the store
(``preferences.sqlite`` -> ``preferences.annotations.sqlite``), so the store's schema stays the
store's. Like the store it is append-only, committed and fsynced per answer, and like the store's
``labels`` table it keeps a ranking as ``preference = 'ranked'`` with the ranking's JSON in
``ranking`` (a journal from before rankings gets that column when it is opened).

Roles:

- ``label``: the answer that became the query's label in the store (written after the store commit).
- ``second``: a second annotator's answer to an overlap query; the store's label (the first answer)
  stands, this one only feeds the agreement report.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefwrap.records import Answer, Preference, Ranking

__all__ = ["AnnotationJournal", "JournalEntry", "journal_path"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    seq INTEGER PRIMARY KEY,
    query_id INTEGER NOT NULL,
    annotator TEXT NOT NULL,
    preference TEXT NOT NULL,
    ranking TEXT,
    role TEXT NOT NULL CHECK (role IN ('label', 'second')),
    shown_at REAL NOT NULL,
    answered_at REAL NOT NULL,
    UNIQUE (query_id, annotator)
);
"""


def journal_path(store_path: str | os.PathLike[str]) -> Path:
    """The journal file that belongs to a store file: ``x.sqlite`` -> ``x.annotations.sqlite``."""
    path = Path(store_path)
    return path.with_name(f"{path.stem}.annotations.sqlite")


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
        path: The journal file; created with its parent directory when missing.

    Raises:
        sqlite3.DatabaseError: ``path`` is not a SQLite file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        # the same durability as the store: a second answer acknowledged to a person survives kill -9
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(_SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(answers)")}
        if "ranking" not in columns:  # a journal written before rankings: its rows are all pairs
            self._conn.execute("ALTER TABLE answers ADD COLUMN ranking TEXT")

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
        """
        if role not in ("label", "second"):
            raise ValueError(f"role must be 'label' or 'second', got {role!r}")
        now = time.time() if answered_at is None else answered_at
        try:
            self._conn.execute(
                "INSERT INTO answers (query_id, annotator, preference, ranking, role, shown_at, answered_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
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
        except sqlite3.IntegrityError:  # UNIQUE(query_id, annotator): a retried request, not a new answer
            return False
        return True

    def entries(self) -> list[JournalEntry]:
        """All answers in arrival order."""
        rows = self._conn.execute(f"SELECT {_COLUMNS} FROM answers ORDER BY seq").fetchall()
        return [_entry(row) for row in rows]

    def has_second(self, query_id: int) -> bool:
        """Whether an overlap query already has its second answer."""
        row = self._conn.execute(
            "SELECT 1 FROM answers WHERE query_id = ? AND role = 'second' LIMIT 1", (query_id,)
        ).fetchone()
        return row is not None

    def answer_of(self, query_id: int, annotator: str) -> JournalEntry | None:
        """This annotator's answer to a query, if any."""
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM answers WHERE query_id = ? AND annotator = ?", (query_id, annotator)
        ).fetchone()
        return None if row is None else _entry(row)

    def close(self) -> None:
        """Close the file; every answer is already committed."""
        self._conn.close()


_COLUMNS = "query_id, annotator, preference, ranking, role, shown_at, answered_at"


def _entry(row: tuple[Any, ...]) -> JournalEntry:
    """A journal row (:data:`_COLUMNS`) as an entry."""
    query_id, annotator, preference, ranking, role, shown_at, answered_at = row
    answer = Preference(preference) if ranking is None else Ranking.parse(ranking)
    return JournalEntry(query_id, annotator, answer, role, shown_at, answered_at)
