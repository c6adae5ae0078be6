"""The store's tables (schema version 4) in either engine, and the check or migration when opening one.

The schema is part of the public interface (``docs/store.md``): other tools read the tables directly,
so a change here needs a new :data:`SCHEMA_VERSION`, a migration in :func:`create_or_check` and a
row in the docs' version table. The DDL is written once; only the column types differ by engine
(:attr:`~prefwrap.store.database.Database.types`: ``BIGINT``, ``DOUBLE PRECISION`` and ``BYTEA`` on
PostgreSQL, whose ``INTEGER`` is 32-bit and ``REAL`` single precision).
"""

from __future__ import annotations

from prefwrap.store.database import Database
from prefwrap.store.errors import StoreError
from prefwrap.store.sqlite_database import MEMORY

__all__ = ["MEMORY", "SCHEMA_VERSION", "TABLES", "create_or_check"]

SCHEMA_VERSION = 4

_SCHEMA = """
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE segments (
    segment_id {int} PRIMARY KEY,
    length {int} NOT NULL,
    env_index {int} NOT NULL,
    timestep {int} NOT NULL,
    observations {blob} NOT NULL,
    actions {blob} NOT NULL,
    true_rewards {blob} NOT NULL,
    terminated {int} NOT NULL DEFAULT 0 CHECK (terminated IN (0, 1))
);
CREATE TABLE segment_frames (
    segment_id {int} PRIMARY KEY REFERENCES segments (segment_id),
    frames {blob} NOT NULL
);
CREATE TABLE queries (
    query_id {int} PRIMARY KEY,
    left_id {int} NOT NULL REFERENCES segments (segment_id),
    right_id {int} NOT NULL REFERENCES segments (segment_id),
    created_at {real} NOT NULL
);
"""
# version 4: every segment of a query of more than two, by its position in the query
_QUERY_SEGMENTS = """
CREATE TABLE query_segments (
    query_id {int} NOT NULL REFERENCES queries (query_id),
    position {int} NOT NULL CHECK (position >= 0 AND position < 6),
    segment_id {int} NOT NULL REFERENCES segments (segment_id),
    PRIMARY KEY (query_id, position)
)
"""
# version 4: 'ranked' answers, with the ranking as JSON (docs/store.md); written once for creation
# and for the migration of older stores, which rebuilds the table under another name first
_LABELS = """
CREATE TABLE {labels} (
    seq {int} PRIMARY KEY,
    query_id {int} NOT NULL UNIQUE REFERENCES queries (query_id),
    preference TEXT NOT NULL CHECK (preference IN ('left', 'right', 'equal', 'skip', 'ranked')),
    labeler TEXT NOT NULL,
    created_at {real} NOT NULL,
    ranking TEXT CHECK ((preference = 'ranked') = (ranking IS NOT NULL))
)
"""
# in the order rows may be copied
TABLES = ("meta", "segments", "segment_frames", "queries", "query_segments", "labels")
_TABLES_V3 = ("meta", "segments", "segment_frames", "queries", "labels")


def create_or_check(db: Database) -> None:
    """Create the schema in an empty database, or check the version of an existing store and migrate it.

    Runs in one write transaction, serialised with other processes opening the same store.

    Raises:
        StoreError: The database belongs to another application, has a newer schema than
            :data:`SCHEMA_VERSION`, or claims a version its tables do not match.
    """
    with db.transaction():
        db.lock_schema()
        _create_or_check(db)


def _create_or_check(db: Database) -> None:
    where = db.display
    tables = db.tables()
    if not tables:
        for statement in _SCHEMA.format(**db.types).split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(_QUERY_SEGMENTS.format(**db.types))
        db.execute(_LABELS.format(labels="labels", **db.types))
        db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        return
    if "meta" not in tables:
        raise StoreError(
            f"{where} is a {db.engine_name} database but not a prefwrap preference store "
            f"(it has tables {sorted(tables)} and no 'meta' table)"
        )
    row = db.fetchone("SELECT value FROM meta WHERE key = 'schema_version'")
    version = row[0] if row else None
    if version is None or not str(version).isdigit():
        raise StoreError(f"{where} has no valid schema_version in its meta table (found {version!r})")
    if int(version) > SCHEMA_VERSION:
        raise StoreError(
            f"{where} has store schema version {int(version)}, but this prefwrap reads only "
            f"version {SCHEMA_VERSION} or older; upgrade prefwrap to open it"
        )
    expected = TABLES if int(version) >= 4 else _TABLES_V3
    if int(version) < 1 or not tables >= set(expected):
        raise StoreError(
            f"{where} claims schema version {version} but its tables are {sorted(tables)}; "
            f"expected {sorted(expected)}"
        )
    # version 2 only compresses new frames (version 1's raw .npy stay readable); version 3 records
    # which segments end in a termination (older segments were all stored as not terminated)
    if "terminated" not in db.columns("segments"):
        db.execute(
            f"ALTER TABLE segments ADD COLUMN terminated {db.types['int']} NOT NULL DEFAULT 0 "
            "CHECK (terminated IN (0, 1))"
        )
    if int(version) < 4:
        _migrate_to_rankings(db, tables)
    if int(version) < SCHEMA_VERSION:
        db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))


def _migrate_to_rankings(db: Database, tables: set[str]) -> None:
    """Version 3 to 4: add ``query_segments`` and rebuild ``labels`` with ``'ranked'`` and ``ranking``.

    A CHECK constraint cannot be altered in SQLite, so ``labels`` is copied into a new table (rows,
    ``seq`` and timestamps unchanged, ``ranking`` NULL) that then takes its name; the same statements
    run on PostgreSQL (where the new table's index names keep the ``labels_v4`` prefix).
    """
    if "query_segments" not in tables:
        db.execute(_QUERY_SEGMENTS.format(**db.types))
    if "ranking" in db.columns("labels"):
        return
    db.execute(_LABELS.format(labels="labels_v4", **db.types))
    db.execute(
        "INSERT INTO labels_v4 (seq, query_id, preference, labeler, created_at) "
        "SELECT seq, query_id, preference, labeler, created_at FROM labels"
    )
    db.execute("DROP TABLE labels")
    db.execute("ALTER TABLE labels_v4 RENAME TO labels")
