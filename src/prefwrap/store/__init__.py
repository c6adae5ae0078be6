"""Durable storage of segments, queries and labels: one SQLite file, or a PostgreSQL database.

Human labels are the most expensive data of a run, so every label is committed (and fsynced) before
:meth:`PreferenceStore.add_label` returns, and a run killed at any moment restarts with all of them.
``PreferenceStore("runs/x/prefs.db")`` keeps them in a SQLite file in WAL mode: a trainer and a
labeling UI in separate processes on one machine share it, readers never block the writer, and a
label written by one process is visible to the other's next read.
``PreferenceStore("postgresql://user@host/db")`` (the ``postgres`` extra) gives the same guarantees to
processes on different machines: trainer on a GPU node, labeling page where annotators can reach it.
:func:`copy_store` moves a run's store from one to the other and checks that nothing was lost.

Schema (version 4; the full description, part of the public interface, is in ``docs/store.md``):

- ``meta(key TEXT PRIMARY KEY, value TEXT)``: ``schema_version`` (``"3"``) and run metadata.
- ``segments(segment_id INTEGER PRIMARY KEY, length, env_index, timestep, observations BLOB,
  actions BLOB, true_rewards BLOB, terminated)``: arrays as ``.npy`` bytes (never pickled).
- ``segment_frames(segment_id INTEGER PRIMARY KEY, frames BLOB)``: optional rendered frames as
  zlib-compressed ``.npy`` bytes (11-140x smaller), kept apart so that they are read only when wanted.
- ``queries(query_id INTEGER PRIMARY KEY, left_id, right_id, created_at REAL)``: pairs to compare, or
  the first two segments of a query of more.
- ``query_segments(query_id, position, segment_id)``: every segment of a query of more than two.
- ``labels(seq INTEGER PRIMARY KEY, query_id UNIQUE, preference TEXT, labeler TEXT, created_at REAL,
  ranking TEXT)``: answers (``'ranked'`` with the ranking as JSON for a query of more than two);
  ``seq`` is the 0-based arrival index. Append-only: a query without a label is pending.

(On PostgreSQL the types are ``BIGINT``, ``BYTEA`` and ``DOUBLE PRECISION``.) A
:class:`PreferenceStore` object wraps one connection and must be used from the thread that created
it; other threads or processes open their own store on the same path or URL. Never carry an open
store across ``fork``.

Modules: ``preference_store`` (the class), ``schema`` (tables, version check, migrations),
``database`` (the backend interface) with ``sqlite_database`` and ``postgres_database``, ``copy``
(between backends), ``codec`` (arrays and frames to ``.npy`` bytes and back), ``errors``.
"""

from __future__ import annotations

from prefwrap.store.copy import CopyReport, copy_store
from prefwrap.store.errors import AlreadyLabeledError, StoreError, UnknownQueryError, UnknownSegmentError
from prefwrap.store.preference_store import PreferenceStore

__all__ = [
    "AlreadyLabeledError",
    "CopyReport",
    "PreferenceStore",
    "StoreError",
    "UnknownQueryError",
    "UnknownSegmentError",
    "copy_store",
]
