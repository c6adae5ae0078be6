"""The store's writes of queries and labels, shared by :class:`~prefwrap.store.PreferenceStore`'s methods.

Each function runs inside the caller's write transaction; none commits.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Sequence
from typing import Any

from prefwrap.records import Answer, Label, Preference, Query, Ranking, Segment, normalize_answer
from prefwrap.store.codec import SegmentRow, encode_segment
from prefwrap.store.database import Database
from prefwrap.store.errors import AlreadyLabeledError, UnknownQueryError

__all__ = ["insert_label", "insert_queries", "insert_segment", "segment_ids"]


def insert_segment(db: Database, row: SegmentRow) -> None:
    """Insert one encoded segment, or check that the stored one with its id is the same.

    ``ON CONFLICT DO NOTHING`` rather than look-then-insert: on PostgreSQL two processes adding the
    same segment at once both succeed (the second waits for the first and inserts nothing).

    Raises:
        ValueError: A stored segment with this id has different content.
    """
    inserted = db.execute(
        "INSERT INTO segments (segment_id, length, env_index, timestep, observations, actions, "
        "true_rewards, terminated) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (segment_id) DO NOTHING",
        (row.segment_id, *row.core),
    ).rowcount
    if inserted:
        if row.frames is not None:
            db.execute(
                "INSERT INTO segment_frames (segment_id, frames) VALUES (?, ?)", (row.segment_id, row.frames)
            )
        return
    stored = db.fetchone(
        "SELECT length, env_index, timestep, observations, actions, true_rewards, terminated "
        "FROM segments WHERE segment_id = ?",
        (row.segment_id,),
    )
    if stored != row.core:
        # Frames are not compared: a caller may drop them from memory once they were stored.
        raise ValueError(
            f"segment {row.segment_id} is already stored with different content; segment ids must "
            "be unique within a run (when resuming, continue from next_segment_id())"
        )


def insert_queries(db: Database, queries: Sequence[Query]) -> None:
    """Insert queries and their segments not stored yet, or check stored ones have the same segments.

    Raises:
        ValueError: A stored query with the same id compares other segments; a segment as in
            :func:`_insert_segment`.
    """
    rows = []
    seen: dict[int, Segment] = {}
    for query in queries:
        for segment in query.segments:
            if seen.get(segment.segment_id) is not segment:  # encode each segment object once
                seen[segment.segment_id] = segment
                rows.append(encode_segment(segment))
    for row in rows:
        insert_segment(db, row)
    now = time.time()
    for query in queries:
        query_id = operator.index(query.query_id)
        ids = tuple(int(segment.segment_id) for segment in query.segments)
        inserted = db.execute(
            "INSERT INTO queries (query_id, left_id, right_id, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (query_id) DO NOTHING",
            (query_id, ids[0], ids[1], now),
        ).rowcount
        if inserted and len(ids) > 2:
            for position, segment_id in enumerate(ids):
                db.execute(
                    "INSERT INTO query_segments (query_id, position, segment_id) VALUES (?, ?, ?)",
                    (query_id, position, segment_id),
                )
        if not inserted:
            pair = db.fetchone("SELECT left_id, right_id FROM queries WHERE query_id = ?", (query_id,))
            stored = segment_ids(db, query_id, pair)
            if stored != ids:
                raise ValueError(
                    f"query {query_id} is already stored comparing segments {stored}, not {ids}; "
                    "query ids must be unique within a run (see next_query_id())"
                )


def segment_ids(db: Database, query_id: int, pair: tuple[Any, ...] | None) -> tuple[int, ...]:
    """All segment ids of a stored query in display order: ``query_segments``, else its pair."""
    rows = db.execute(
        "SELECT segment_id FROM query_segments WHERE query_id = ? ORDER BY position", (query_id,)
    ).fetchall()
    if rows:
        return tuple(int(segment_id) for (segment_id,) in rows)
    return tuple(pair or ())


def insert_label(
    db: Database, where: str, query_id: int, answer: Answer, labeler: str, created_at: float
) -> Label:
    """Insert one label (the caller holds ``lock_labels``); see :meth:`PreferenceStore.add_label`."""
    answer = answer if isinstance(answer, Ranking) else Preference(answer)
    if not isinstance(labeler, str):
        raise TypeError(f"labeler must be a str, got {type(labeler).__name__}")
    pair = db.fetchone("SELECT left_id, right_id FROM queries WHERE query_id = ?", (query_id,))
    if pair is None:
        raise UnknownQueryError(f"cannot label query {query_id}: it is not in {where}")
    existing = db.fetchone("SELECT preference, labeler FROM labels WHERE query_id = ?", (query_id,))
    if existing is not None:
        raise AlreadyLabeledError(
            f"query {query_id} is already labeled ({existing[0]!r} by {existing[1]!r}); "
            "labels are never overwritten"
        )
    ids = segment_ids(db, query_id, pair)
    try:
        answer = normalize_answer(answer, len(ids))
    except ValueError as error:
        raise ValueError(f"query {query_id}: {error}") from error
    ranking = answer.to_json() if isinstance(answer, Ranking) else None
    db.execute(
        "INSERT INTO labels (seq, query_id, preference, labeler, created_at, ranking) "
        "VALUES ((SELECT COALESCE(MAX(seq) + 1, 0) FROM labels), ?, ?, ?, ?, ?)",
        (query_id, answer.value, labeler, created_at, ranking),
    )
    return Label(query_id, ids[0], ids[1], answer, labeler, created_at, ids)
