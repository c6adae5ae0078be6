"""What the labeling page can ask of a run, without HTTP: sessions, leases, answers, status.

:class:`LabelingService` is the logic behind :mod:`prefwrap.web.app`; the app only translates HTTP.
Every method touches the store, so the app calls them all from one thread (the store's thread):
that also makes "check the lease, then commit" one step that no other request interleaves with.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prefwrap.records import Answer, Preference, Query, Ranking
from prefwrap.store import AlreadyLabeledError, PreferenceStore, UnknownQueryError
from prefwrap.web.journal import AnnotationJournal, journal_location
from prefwrap.web.leases import LeaseTable, is_overlap

__all__ = ["LabelingService", "RequestError"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,39}$")
_MAX_SECONDS = 3600.0  # a clip looked at for longer than this was left open, not studied


class RequestError(Exception):
    """A request the page (or a person with curl) got wrong: the app answers ``status`` with ``message``.

    Attributes:
        status: The HTTP status, 4xx.
        message: What was wrong, for a person.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Session:
    annotator: str
    last_seen: float


class LabelingService:
    """Sessions, leases and answers of one run's store for the web page.

    Args:
        store_path: The run's preference store: its SQLite file or its ``postgresql://`` URL. The
            annotation journal goes next to it (:mod:`prefwrap.web.journal`).
        overlap: Fraction of queries shown to a second annotator (:func:`~prefwrap.web.leases.is_overlap`).
        lease_seconds: How long a query stays with a page that stopped sending heartbeats.
        clock: Monotonic seconds for leases (tests pass a fake one).

    Raises:
        ValueError: ``overlap`` is not in ``[0, 1]`` or ``lease_seconds`` is not positive.
        StoreError: ``store_path`` is not a prefwrap store, or its database cannot be reached.
        ImportError: A PostgreSQL URL without psycopg installed (the ``postgres`` extra).
    """

    def __init__(
        self,
        store_path: str | os.PathLike[str],
        *,
        overlap: float = 0.0,
        lease_seconds: float = 60.0,
        clock: Any = time.monotonic,
    ) -> None:
        is_overlap(0, overlap)  # validates the fraction
        self.store = PreferenceStore(store_path)
        try:  # after the store: a PostgreSQL journal goes into the schema the store has created
            self.journal = AnnotationJournal(journal_location(self.store.location))
        except BaseException:
            self.store.close()
            raise
        self.overlap = float(overlap)
        self.leases = LeaseTable(lease_seconds, clock=clock)
        self._sessions: dict[str, _Session] = {}
        self._clock = clock
        entries = self.journal.entries()
        self._answered = Counter(entry.annotator for entry in entries)
        # overlap queries answered once on this page, waiting for a second annotator: id -> first annotator
        seconds = {entry.query_id for entry in entries if entry.role == "second"}
        self._open_overlap = {
            e.query_id: e.annotator
            for e in entries
            if e.role == "label" and e.query_id not in seconds and is_overlap(e.query_id, self.overlap)
        }

    # -- sessions ------------------------------------------------------------------------------

    def open_session(self, name: str) -> dict[str, Any]:
        """Start a page's session for annotator ``name``.

        Raises:
            RequestError: 400 if the name is not 1-40 letters, digits, spaces, ``_``, ``.`` or ``-``.
        """
        name = name.strip() if isinstance(name, str) else ""
        if not _NAME.match(name):
            raise RequestError(
                400,
                "a name is 1-40 letters, digits, spaces, '_', '.' or '-', starting with a letter or digit",
            )
        session = secrets.token_urlsafe(12)
        self._sessions[session] = _Session(name, self._clock())
        return {"session": session, "annotator": name, "labeler": f"human:{name}"}

    def heartbeat(self, session: str) -> int:
        """Keep a page's leases alive; returns how many it holds.

        Raises:
            RequestError: 410 if the session is unknown (e.g. the server restarted).
        """
        self._session(session)
        return self.leases.renew(session)

    def leave(self, session: str) -> None:
        """The tab is closing: give its queries back at once."""
        self.leases.release(session)
        self._sessions.pop(session, None)

    # -- queries -------------------------------------------------------------------------------

    def next_query(self, session: str) -> dict[str, Any] | None:
        """Lease one more query to a page: a second opinion if one is waiting, else the oldest pending.

        Returns:
            ``{"query_id", "second_opinion", "size"}`` (``size``: the query's number of clips,
            ``K``), or ``None`` when nothing is available for this page.

        Raises:
            RequestError: 410 if the session is unknown.
        """
        me = self._session(session)
        held = {lease.query_id for lease in self.leases.held_by(session)}
        if len(held) >= self.leases.max_per_session:
            return None
        taken = self.leases.leased_ids()
        for query_id, first in sorted(self._open_overlap.items()):
            if (
                first != me.annotator
                and query_id not in taken
                and self.leases.claim(session, query_id, second_opinion=True)
            ):
                size = self.store.query_size(query_id)
                return {"query_id": query_id, "second_opinion": True, "size": size}
        # ids only: a run far ahead of its annotators has thousands of pending queries
        for query_id in self.store.pending_query_ids():
            if query_id not in taken and self.leases.claim(session, query_id):
                size = self.store.query_size(query_id)
                return {"query_id": query_id, "second_opinion": False, "size": size}
        return None

    def query_with_frames(self, query_id: int) -> Query:
        """A stored query with its frames, for its clips.

        Raises:
            RequestError: 404 if no such query is stored.
        """
        try:
            return self.store.query(query_id)
        except UnknownQueryError:
            raise RequestError(404, f"query {query_id} is not in this run's store") from None

    def answer(
        self,
        session: str,
        query_id: int,
        preference: str | None,
        seconds: float,
        ranking: Sequence[Sequence[int]] | None = None,
    ) -> dict[str, Any]:
        """Record a page's answer; it is committed (store or journal) before this returns.

        Args:
            session: The page's session.
            query_id: The query answered.
            preference: ``"left"``, ``"right"``, ``"equal"`` (a pair) or ``"skip"`` (any query);
                ``None`` when ``ranking`` is given.
            seconds: How long the annotator looked at the query.
            ranking: The query's clips (positions from 0) in groups, best group first, e.g.
                ``[[2], [0, 3], [1]]``; ``None`` when ``preference`` is given. A ranking of a pair
                is stored as the preference it means.

        Returns:
            ``{"saved": True, "role": "label" | "second", "duplicate": bool, "query_id": int}``;
            ``duplicate`` is true for a retried request whose answer was stored the first time.

        Raises:
            RequestError: 400 for a bad answer (neither or both of ``preference`` and ``ranking``,
                an unknown preference, a pair's preference for a larger query, or a ranking that
                does not list each of the query's clips exactly once) or time, 404 for an unknown
                query, 409 for a query another page holds or another annotator answered, 410 for an
                unknown session.
        """
        me = self._session(session)
        if not (isinstance(seconds, int | float) and 0 <= seconds < float("inf")):
            raise RequestError(400, f"seconds must be a non-negative number, got {seconds!r}")
        if (preference is None) == (ranking is None):
            raise RequestError(
                400,
                "send either a preference (left, right, equal, skip) or a ranking (the clips in groups, "
                "best first, e.g. [[2], [0, 1]]), not both and not neither",
            )
        answer = _parse_answer(preference, ranking, query_id, self._query_size(query_id))
        lease = self.leases.holder(query_id)
        if lease is not None and lease.session != session:
            raise RequestError(409, f"query {query_id} is shown to another annotator")
        now = time.time()
        shown_at = now - min(float(seconds), _MAX_SECONDS)
        previous = self.journal.answer_of(query_id, me.annotator)
        if previous is not None:  # a retry of a request that was committed: answer as the first time
            self.leases.release(session, query_id)
            return {"saved": True, "role": previous.role, "duplicate": True, "query_id": query_id}
        if self._open_overlap.get(query_id, me.annotator) != me.annotator:
            self.journal.add(query_id, me.annotator, answer, "second", shown_at=shown_at, answered_at=now)
            del self._open_overlap[query_id]
            role = "second"
        else:
            try:
                self.store.add_label(query_id, answer, f"human:{me.annotator}")
            except AlreadyLabeledError:
                if self._stored_by(query_id, f"human:{me.annotator}", answer):
                    # committed, then the server died before the journal line and the reply: a retry
                    self.leases.release(session, query_id)
                    return {"saved": True, "role": "label", "duplicate": True, "query_id": query_id}
                raise RequestError(
                    409, f"query {query_id} is answered already; labels are never overwritten"
                ) from None
            # after the store commit: the journal only adds the thinking time to a label that is safe
            self.journal.add(query_id, me.annotator, answer, "label", shown_at=shown_at, answered_at=now)
            if is_overlap(query_id, self.overlap):
                self._open_overlap[query_id] = me.annotator
            role = "label"
        self._answered[me.annotator] += 1
        self.leases.release(session, query_id)
        return {"saved": True, "role": role, "duplicate": False, "query_id": query_id}

    def _query_size(self, query_id: int) -> int:
        """The number of clips of a stored query (reads no frames).

        Raises:
            RequestError: 404 if no such query is stored.
        """
        try:
            return self.store.query_size(query_id)
        except UnknownQueryError:
            raise RequestError(404, f"query {query_id} is not in this run's store") from None

    def release(self, session: str, query_id: int) -> None:
        """Give one query back (the page will not show it).

        Raises:
            RequestError: 410 if the session is unknown.
        """
        self._session(session)
        self.leases.release(session, query_id)

    # -- progress ------------------------------------------------------------------------------

    def status(self, session: str | None = None) -> dict[str, Any]:
        """Progress for the page: labels, queries waiting, this annotator's count, a training message."""
        pending = self.store.pending_query_ids()
        taken = self.leases.leased_ids()
        mine = 0
        if session is not None and session in self._sessions:
            mine = self._answered[self._sessions[session].annotator]
        waiting = sum(qid not in taken for qid in pending)
        message = ""
        if self.store.next_query_id() == 0:
            message = self._training_message()
        elif not pending:
            message = "All queries are answered: more come as the agent trains."
        return {
            "n_labels": self.store.n_labels(),
            "n_pending": len(pending),
            "n_waiting": waiting,
            "mine": mine,
            "message": message,
            "fps": float(self.store.get_meta("render_fps") or 20.0),
        }

    def close(self) -> None:
        """Close the store and the journal."""
        self.store.close()
        self.journal.close()

    def _training_message(self) -> str:
        """What the page says before the run has made its first queries (from the trainer's meta)."""
        try:
            due = int(float(self.store.get_meta("first_queries_at") or "nan"))
            now = int(float(self.store.get_meta("timestep") or 0))
        except ValueError:
            return "Training: waiting for the first queries..."
        return f"Training: the first queries come in about {max(due - now, 0):,} steps."

    def _stored_by(self, query_id: int, labeler: str, answer: Answer) -> bool:
        """Whether the store's label of a query is this labeler's answer (a full read: rare path)."""
        return any(
            x.query_id == query_id and x.labeler == labeler and x.preference == answer
            for x in self.store.labels()
        )

    def _session(self, session: str) -> _Session:
        found = self._sessions.get(session) if isinstance(session, str) else None
        if found is None:
            raise RequestError(410, "unknown session (the server restarted?): enter your name again")
        found.last_seen = self._clock()
        return found


def _parse_answer(
    preference: str | None, ranking: Sequence[Sequence[int]] | None, query_id: int, size: int
) -> Answer:
    """The answer a page sent for query ``query_id`` of ``size`` clips (exactly one of the two given).

    Raises:
        RequestError: 400 with what was wrong and what a right answer looks like.
    """
    example = f"[[{size - 1}], [{', '.join(str(p) for p in range(size - 1))}]]"
    if ranking is not None:
        try:
            answer = Ranking(ranking)
        except (ValueError, TypeError):
            answer = None
        if answer is None or answer.size != size:
            raise RequestError(
                400,
                f"ranking {[list(group) for group in ranking]} is not an ordering of the {size} clips of "
                f"query {query_id}: list every clip 0 to {size - 1} exactly once, in groups of equally "
                f"good clips, best group first (e.g. {example})",
            )
        return answer.as_preference() if size == 2 else answer  # pairs are stored as Preference
    try:
        answer = Preference(preference)
    except ValueError:
        raise RequestError(
            400, f"preference must be one of left, right, equal, skip; got {preference!r}"
        ) from None
    if answer is not Preference.SKIP and size != 2:
        raise RequestError(
            400,
            f"{answer.value!r} answers a pair, but query {query_id} has {size} clips: send a ranking "
            f"(e.g. {example}) or 'skip'",
        )
    return answer
