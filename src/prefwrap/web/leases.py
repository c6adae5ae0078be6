"""Query leases: several annotators label one run, and no two of them see the same query at once.

A page that shows a query holds a *lease* on it. Leases expire after ``lease_seconds`` without a
heartbeat, so a closed tab or a laptop put to sleep gives its queries back to the others within a
minute. A lease is advisory for what is *shown*; what is *stored* is decided by the store, where the
first answer to a query wins (:class:`~prefwrap.store.AlreadyLabeledError` for the others).

Overlap queries (:func:`is_overlap`) are chosen by a hash of the query id, not at random, so that a
restarted server picks the same ones: after its first answer such a query is leased once more, to a
different annotator, as a *second opinion*.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Lease", "LeaseTable", "is_overlap"]

_GOLDEN = 2654435761  # Knuth's multiplicative hash: consecutive ids spread evenly over [0, 2**32)


def is_overlap(query_id: int, fraction: float) -> bool:
    """Whether query ``query_id`` is one of the ``fraction`` shown to two annotators.

    Deterministic in ``query_id``, so every server process (and a restarted one) agrees.

    Raises:
        ValueError: ``fraction`` is not in ``[0, 1]``.

    Example:
        >>> sum(is_overlap(q, 0.1) for q in range(1000))
        100
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"overlap fraction must be in [0, 1], got {fraction}")
    return (query_id * _GOLDEN) % 2**32 < fraction * 2**32


@dataclass
class Lease:
    """One query held by one page (a browser tab).

    Attributes:
        query_id: The query shown.
        session: The page's session id.
        expires_at: Clock time after which the query goes back to the others.
        second_opinion: The query is answered already and is shown again for agreement.
    """

    query_id: int
    session: str
    expires_at: float
    second_opinion: bool = False


class LeaseTable:
    """Who shows which query now. Thread-safe; the clock is injectable for tests.

    Args:
        lease_seconds: Lifetime of a lease without a heartbeat.
        max_per_session: Leases one page may hold: the query on screen, the next one (preloaded so it
            plays at once) and the previous one while its undo window is open.
        clock: Monotonic seconds.

    Raises:
        ValueError: ``lease_seconds`` is not positive or ``max_per_session`` is below 1.
    """

    def __init__(
        self,
        lease_seconds: float = 60.0,
        *,
        max_per_session: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not lease_seconds > 0:
            raise ValueError(f"lease_seconds must be positive, got {lease_seconds}")
        if max_per_session < 1:
            raise ValueError(f"max_per_session must be at least 1, got {max_per_session}")
        self.lease_seconds = float(lease_seconds)
        self.max_per_session = int(max_per_session)
        self.clock = clock
        self._leases: dict[int, Lease] = {}
        self._lock = threading.Lock()

    def holder(self, query_id: int) -> Lease | None:
        """The live lease on a query, or ``None``."""
        with self._lock:
            self._expire()
            return self._leases.get(query_id)

    def held_by(self, session: str) -> list[Lease]:
        """The live leases of one page."""
        with self._lock:
            self._expire()
            return [lease for lease in self._leases.values() if lease.session == session]

    def leased_ids(self) -> set[int]:
        """Queries held by any page now."""
        with self._lock:
            self._expire()
            return set(self._leases)

    def claim(self, session: str, query_id: int, *, second_opinion: bool = False) -> bool:
        """Lease ``query_id`` to ``session``; ``False`` if another page holds it or this one holds its
        maximum (renewing a lease the page already holds succeeds)."""
        with self._lock:
            self._expire()
            lease = self._leases.get(query_id)
            if lease is not None and lease.session != session:
                return False
            if (
                lease is None
                and sum(x.session == session for x in self._leases.values()) >= self.max_per_session
            ):
                return False
            self._leases[query_id] = Lease(
                query_id, session, self.clock() + self.lease_seconds, second_opinion
            )
            return True

    def renew(self, session: str) -> int:
        """Extend every lease of a page (its heartbeat); returns how many it holds."""
        with self._lock:
            self._expire()
            deadline = self.clock() + self.lease_seconds
            held = [lease for lease in self._leases.values() if lease.session == session]
            for lease in held:
                lease.expires_at = deadline
            return len(held)

    def release(self, session: str, query_id: int | None = None) -> None:
        """Give back one query of a page, or all of them (``query_id=None``: the tab closed)."""
        with self._lock:
            for qid in [query_id] if query_id is not None else list(self._leases):
                lease = self._leases.get(qid)
                if lease is not None and lease.session == session:
                    del self._leases[qid]

    def _expire(self) -> None:
        now = self.clock()
        for qid in [qid for qid, lease in self._leases.items() if lease.expires_at <= now]:
            del self._leases[qid]
