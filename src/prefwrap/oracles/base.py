"""The oracle contract: the one method every oracle has, and the optional hooks, declared with defaults.

A user's own oracle is any object with ``labeler`` and ``label(queries)`` (the :class:`Oracle`
protocol): no inheritance needed. Oracles that want more from the learner (show clips, store each
answer the moment a person gives it, show progress, say who answered) subclass :class:`BaseOracle`
and override the hooks they need; the learner calls every hook through :func:`oracle_hooks`, which
gives a plain protocol oracle the defaults.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from prefwrap.records import Answer, Query


@runtime_checkable
class Oracle(Protocol):
    """Answers preference queries.

    ``label`` receives a batch of queries and returns one entry per query, in order: an
    :data:`~prefwrap.records.Answer` (a :class:`~prefwrap.records.Preference` for a pair, a
    :class:`~prefwrap.records.Ranking` or ``SKIP`` for a query of more than two segments), or
    ``None`` when that query has no answer yet (an asynchronous labeler or a labels file that is
    still being filled); unanswered queries are asked again later. ``labeler`` names who answers,
    so mixed human/synthetic data stay apart.
    """

    labeler: str

    def label(self, queries: Sequence[Query]) -> Sequence[Answer | None]:
        """Return one answer (or ``None`` = not yet) per query."""
        ...


@dataclass(frozen=True)
class OracleContext:
    """What the learner tells an oracle when it connects it (:meth:`BaseOracle.connect`).

    Attributes:
        env_fps: The env's ``metadata["render_fps"]`` (frames per second of a clip), or ``None``.
        store_path: The run's preference store (an SQLite file path, ``":memory:"``, or a
            ``postgresql://`` URL: what :class:`~prefwrap.store.PreferenceStore` opens), for oracles
            that label from another process through the store.
        record_answer: ``record_answer(query, answer)`` stores one answer durably at once, for
            oracles that answer over time (a person): nothing given is lost if the run dies mid-batch.
        load_query: ``load_query(query_id)`` reads a query with its frames back from the run's store:
            a query asked again while still pending comes without its rendered frames (the learner
            drops them to bound memory), so an oracle that shows it again reads them here.
    """

    env_fps: float | None
    store_path: str | os.PathLike[str]
    record_answer: Callable[[Query, Answer], None]
    load_query: Callable[[int], Query] | None = None


class BaseOracle:
    """Base class declaring every optional oracle hook with its default (override what you need).

    Subclasses implement :meth:`label` and set :attr:`labeler`; the defaults make an oracle that
    needs no clips, wants no context, shows no progress and answers under one labeler name.

    Attributes:
        labeler: Who answers (stored with every label), e.g. ``"synthetic"`` or ``"human:alice"``.
        needs_frames: True when the oracle shows clips to a person or writes them to files: only
            segments with frames are queried, and the learner refuses a wrapper that records none.
    """

    labeler: str = "oracle"
    needs_frames: bool = False

    def label(self, queries: Sequence[Query]) -> Sequence[Answer | None]:
        """Return one answer (or ``None`` = not yet) per query.

        Raises:
            NotImplementedError: The subclass does not implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement label(queries)")

    def connect(self, context: OracleContext) -> None:
        """Called once by the learner before the first query, with the run's context."""

    def show_progress(self, text: str) -> None:
        """Called before each :meth:`label` round with e.g. ``"12 / 700 labels, 3 queries waiting"``."""

    def labeler_for(self, query_id: int) -> str:
        """Who answered query ``query_id`` (e.g. a name in a labels file); default :attr:`labeler`."""
        return self.labeler

    def close(self) -> None:
        """Release windows, files or processes; called when training ends."""


class _ProtocolOracleHooks(BaseOracle):
    """The default hooks around a plain :class:`Oracle` that does not subclass :class:`BaseOracle`."""

    def __init__(self, oracle: Oracle) -> None:
        self._oracle = oracle
        self.labeler = str(getattr(oracle, "labeler", type(oracle).__name__))

    def label(self, queries: Sequence[Query]) -> Sequence[Answer | None]:
        return self._oracle.label(queries)


def oracle_hooks(oracle: Oracle) -> BaseOracle:
    """The oracle itself when it subclasses :class:`BaseOracle`, else its default hooks.

    Raises:
        TypeError: ``oracle`` has no callable ``label`` method.
    """
    if isinstance(oracle, BaseOracle):
        return oracle
    if not callable(getattr(oracle, "label", None)):
        raise TypeError(f"{oracle!r} is not an oracle: it needs a method label(queries) -> answers")
    return _ProtocolOracleHooks(oracle)
