"""The errors a :class:`~prefwrap.store.PreferenceStore` raises, one class per case callers tell apart.

All are importable from :mod:`prefwrap.store`. The lookup errors are ``KeyError`` subclasses, as a
dict lookup is, and keep their message readable (``KeyError`` would quote it).
"""

from __future__ import annotations

__all__ = ["AlreadyLabeledError", "StoreError", "UnknownQueryError", "UnknownSegmentError"]


class StoreError(RuntimeError):
    """The store cannot be used: not SQLite, another app's, a newer schema, an unreachable server...

    Also raised for a stored array that is not plain ``.npy`` (the store never unpickles), for any
    use of a closed store, for a write that waited more than 30 s for another process's lock, and for
    a lost connection to a PostgreSQL server (the write in flight was then not stored).
    """


class UnknownSegmentError(KeyError):
    """A segment id is not in the store (:meth:`~prefwrap.store.PreferenceStore.segment`)."""

    __str__ = BaseException.__str__  # the plain message, not KeyError's quoted repr of it


class UnknownQueryError(KeyError, ValueError):
    """A query id is not in the store.

    Raised by :meth:`~prefwrap.store.PreferenceStore.query` (a lookup, hence a ``KeyError``) and by
    :meth:`~prefwrap.store.PreferenceStore.add_label` (an invalid argument, hence a ``ValueError``),
    so that ``except KeyError`` and ``except ValueError`` both keep working.
    """

    __str__ = BaseException.__str__  # the plain message, not KeyError's quoted repr of it


class AlreadyLabeledError(ValueError):
    """A query already has its label: labels are never overwritten.

    Expected when two labelers (two processes, or an oracle's immediate answer and its batch answer)
    answer the same query; the first answer stands.
    """
