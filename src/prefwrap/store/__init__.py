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

Modules: ``preference_store`` (the class), ``schema`` (the SQLite file: pragmas, tables, migrations),
``codec`` (arrays and frames to ``.npy`` bytes and back), ``errors``.
"""

from __future__ import annotations

from prefwrap.store.errors import AlreadyLabeledError, StoreError, UnknownQueryError, UnknownSegmentError
from prefwrap.store.preference_store import PreferenceStore

__all__ = ["AlreadyLabeledError", "PreferenceStore", "StoreError", "UnknownQueryError", "UnknownSegmentError"]
