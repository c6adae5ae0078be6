"""The oracle protocol: any object with a ``label`` method of this shape plugs into prefwrap."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from prefwrap.records import Preference, Query


@runtime_checkable
class Oracle(Protocol):
    """Answers preference queries.

    ``label`` receives a batch of queries and returns one entry per query, in order: a
    :class:`~prefwrap.records.Preference`, or ``None`` when that query has no answer yet (an
    asynchronous labeler or a labels file that is still being filled); unanswered queries are
    asked again later. ``labeler`` names who answers, so mixed human/synthetic data stay apart.

    Optional attributes the learner honours: ``needs_frames = True`` (the oracle shows rendered
    clips, so only segments with frames are queried), ``on_label`` (set by the learner to store each
    answer the moment it is given, for oracles that answer over time, like a person),
    ``labeler_for(query_id) -> str`` (a per-answer labeler id, e.g. from a labels file),
    ``env_fps`` and ``progress_text`` (set for display), and ``store_path`` (set for oracles that
    label from another process through the store).
    """

    labeler: str

    def label(self, queries: Sequence[Query]) -> Sequence[Preference | None]:
        """Return one answer (or ``None`` = not yet) per query."""
        ...
