"""An oracle that reads answers from a labels file written by an external tool or crowd platform.

The file format (JSONL or CSV, keyed by ``query_id``) and its parser live in
:mod:`prefwrap.oracles.label_file`; the schema is documented in ``docs/oracles-file.md``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Literal

from prefwrap.oracles.base import BaseOracle
from prefwrap.oracles.label_file import (
    SUFFIXES,
    FileAnswer,
    LabelFileError,
    LabelProblem,
    check_answers,
    read_label_file,
)
from prefwrap.records import Preference, Query

__all__ = ["FileOracle"]


class FileOracle(BaseOracle):
    """Answers queries from a labels file that an annotation tool or crowd platform fills in.

    The file (``.jsonl`` or ``.csv``, schema in ``docs/oracles-file.md``) is re-read whenever its
    modification time or size changes, so it can be appended to while training runs. The oracle
    never writes to it.

    Unanswered queries get ``None`` with ``missing="wait"`` (the caller asks again later; a file
    that does not exist yet counts as empty) or :attr:`Preference.SKIP` with ``missing="skip"``
    (the file must exist). With ``timeout > 0``, ``label`` first polls the file for up to
    ``timeout`` seconds until every query in the batch is answered.

    A file with problems (bad JSON, missing or unknown fields, non-integer ids, an unknown label,
    differing duplicates, contradicting answers, ``left_id``/``right_id`` that do not match an
    asked query) makes ``label`` raise :class:`~prefwrap.oracles.label_file.LabelFileError` listing
    every problem with file and line, before anything is returned; after the file is fixed, the next
    call reads it again and every valid line counts. With ``on_error="warn"`` the problems are warned
    about once per file version instead, valid lines are used, and the queries with faulty answers
    stay unanswered.

    A line's optional ``labeler`` field overrides the oracle's ``labeler``; the learner reads it back
    with :meth:`labeler_for` to store who answered.

    Args:
        path: The labels file, ``.jsonl`` or ``.csv``; it need not exist yet with ``missing="wait"``.
        missing: What an unanswered query gets: ``"wait"`` (``None``: ask again later) or ``"skip"``.
        timeout: Seconds ``label`` polls the file for the batch's answers before giving up; ``0``
            reads it once.
        poll_interval: Seconds between two reads while polling.
        labeler: Who answered, for lines without a ``labeler`` field.
        on_error: ``"raise"`` a :class:`~prefwrap.oracles.label_file.LabelFileError` for a file with
            problems, or ``"warn"`` and use its valid lines.
        needs_frames: Keep rendered frames with every queried segment, so that ``prefwrap export``
            can write clips of the queries for the annotators (the CLI's ``--oracle file:PATH``).

    Raises:
        ValueError: ``path`` does not end in ``.jsonl`` or ``.csv``, or another argument is out of
            range (the message names it and its value).

    Example:
        >>> import pathlib, tempfile
        >>> import numpy as np
        >>> from prefwrap.records import Query, Segment
        >>> seg = lambda i: Segment(i, np.zeros((2, 1)), np.zeros((2, 1)), np.zeros(2), 2)
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "labels.jsonl"
        >>> _ = path.write_text('{"query_id": 7, "label": "right", "labeler": "bob"}\\n')
        >>> oracle = FileOracle(path)
        >>> oracle.label([Query(7, seg(0), seg(1)), Query(8, seg(2), seg(3))])
        [<Preference.RIGHT: 'right'>, None]
        >>> oracle.labeler_for(7), oracle.labeler_for(8)
        ('bob', 'file')
    """

    def __init__(
        self,
        path: str | Path,
        *,
        missing: Literal["wait", "skip"] = "wait",
        timeout: float = 0.0,
        poll_interval: float = 1.0,
        labeler: str = "file",
        on_error: Literal["raise", "warn"] = "raise",
        needs_frames: bool = False,
    ) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in SUFFIXES:
            raise ValueError(f"labels file must end in .jsonl or .csv, got {str(self.path)!r}")
        if missing not in ("wait", "skip"):
            raise ValueError(f"missing must be 'wait' or 'skip', got {missing!r}")
        if on_error not in ("raise", "warn"):
            raise ValueError(f"on_error must be 'raise' or 'warn', got {on_error!r}")
        if timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout}")
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval}")
        self.missing = missing
        self.timeout = float(timeout)
        self.poll_interval = float(poll_interval)
        self.labeler = labeler
        self.on_error = on_error
        # `or`: a subclass that declares `needs_frames = True` (BaseOracle's way) keeps it.
        self.needs_frames = bool(needs_frames) or type(self).needs_frames
        self._signature: tuple[int, int] | None = None  # (mtime_ns, size) of the file as last read
        self._answers: dict[int, FileAnswer] = {}
        self._problems: list[LabelProblem] = []
        self._warned: set[str] = set()

    def label(self, queries: Sequence[Query]) -> list[Preference | None]:
        """Return the file's answer for each query, or ``None``/``SKIP`` where there is none.

        Raises:
            LabelFileError: The file has problems (``on_error="raise"``).
            FileNotFoundError: The file does not exist and ``missing="skip"``.
            OSError: The file exists but cannot be read.
        """
        deadline = time.monotonic() + self.timeout
        while True:
            result = self._answer(queries)
            remaining = deadline - time.monotonic()
            if all(r is not None for r in result) or remaining <= 0:
                break
            time.sleep(min(self.poll_interval, remaining))
        fallback = Preference.SKIP if self.missing == "skip" else None
        return [fallback if r is None else r for r in result]

    def labeler_for(self, query_id: int) -> str:
        """Who answered ``query_id`` in the file as last read: the line's ``labeler`` or the oracle's."""
        answer = self._answers.get(query_id)
        return answer.labeler if answer is not None and answer.labeler else self.labeler

    def validate(
        self, queries: Iterable[Query] = (), known_ids: Collection[int] | None = None
    ) -> list[LabelProblem]:
        """Return all problems in the file now, in line order, without raising for them.

        Args:
            queries: Also check that answers to these queries name their segments.
            known_ids: Also report answers to query ids outside this set (e.g. all ids a run issued).

        Raises:
            OSError: The file exists but cannot be read.
        """
        if not self.path.exists():
            return [] if self.missing == "wait" else [LabelProblem(self.path, 0, "file does not exist")]
        answers, problems = read_label_file(self.path)
        return sorted(problems + check_answers(self.path, answers, queries, known_ids), key=lambda p: p.line)

    def _answer(self, queries: Sequence[Query]) -> list[Preference | None]:
        """One read: the file's valid answer per query, or ``None``; raises or warns about problems."""
        self._reload()
        problems = self._problems + check_answers(self.path, self._answers, queries)
        if problems:
            if self.on_error == "raise":
                raise LabelFileError(sorted(problems, key=lambda p: p.line))
            message = str(LabelFileError(problems))
            if message not in self._warned:
                self._warned.add(message)
                warnings.warn(message, stacklevel=3)
        result: list[Preference | None] = []
        for query in queries:
            answer = self._answers.get(query.query_id)
            result.append(answer.preference if answer is not None and answer.matches(query) else None)
        return result

    def _reload(self) -> None:
        """Parse the file again if it changed since the last read (its mtime or size differs)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            if self.missing == "skip":
                raise FileNotFoundError(
                    f"labels file {str(self.path)!r} does not exist (missing='skip' would skip every query)"
                ) from None
            self._signature, self._answers, self._problems = None, {}, []
            return
        signature = (stat.st_mtime_ns, stat.st_size)
        if signature != self._signature:
            self._answers, self._problems = read_label_file(self.path)
            self._signature = signature
