"""An oracle that reads answers from a labels file written by an external tool or crowd platform.

The file format (JSONL or CSV, keyed by ``query_id``) and its parser live in
:mod:`prefwrap.oracles.label_file`; the schema is documented in ``docs/oracles-file.md``.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Literal

from prefwrap.oracles.base import BaseOracle, OracleContext
from prefwrap.oracles.label_file import (
    SUFFIXES,
    FileAnswer,
    LabelFileError,
    LabelProblem,
    check_answers,
    read_label_file,
)
from prefwrap.records import Answer, Preference, Query, normalize_answer

__all__ = ["FileOracle"]


class FileOracle(BaseOracle):
    """Answers queries from a labels file that an annotation tool or crowd platform fills in.

    Lines answer pairs with a ``label`` and queries of more segments with a ``ranking`` (see
    ``docs/oracles-file.md``).

    The file (``.jsonl`` or ``.csv``, schema in ``docs/oracles-file.md``) is re-read whenever its
    modification time or size changes, so it can be appended to while training runs. The oracle
    never writes to it.

    By default ``label`` **waits**: it polls the file every ``poll_interval`` seconds until every
    query of the batch is answered (or ``timeout`` seconds pass, or Ctrl-C), as a person at the
    :class:`~prefwrap.oracles.human.HumanOracle` window makes training wait. Each new batch of
    unanswered queries is announced once (with ``verbose``): how many, the file to write and how to
    export their clips (``export_command``, e.g. the CLI's ``prefwrap export RUN_DIR``). With
    ``wait=False`` it reads the file once and training goes on with the reward learned so far.

    Queries still unanswered get ``None`` with ``missing="wait"`` (the caller asks again later; a
    file that does not exist yet counts as empty) or :attr:`Preference.SKIP` with ``missing="skip"``
    (the file must exist; such a finished file is read once unless ``wait`` or ``timeout`` is given).

    A file with problems (bad JSON, missing or unknown fields, non-integer ids, an unknown label,
    differing duplicates, contradicting answers, ``left_id``/``right_id``/``segment_ids`` that do not
    match an asked query, a ranking of another number of segments than the query holds, or a pair's
    label for a larger query) makes ``label`` raise
    :class:`~prefwrap.oracles.label_file.LabelFileError` listing every problem with file and line,
    before anything is returned; after the file is fixed, the next call reads it again and every
    valid line counts. With ``on_error="warn"`` the problems are warned about once per file version
    instead, valid lines are used, and the queries with faulty answers
    stay unanswered.

    A line's optional ``labeler`` field overrides the oracle's ``labeler``; the learner reads it back
    with :meth:`labeler_for` to store who answered.

    Args:
        path: The labels file, ``.jsonl`` or ``.csv``; it need not exist yet with ``missing="wait"``.
        missing: What a query still unanswered gets: ``"wait"`` (``None``: ask again later) or ``"skip"``.
        wait: Block in ``label`` until every query of the batch is answered. Default: True, except
            with ``missing="skip"`` and no ``timeout``. ``False`` reads the file once.
        timeout: The longest ``label`` waits, in seconds; ``None``: until answered; ``0``: read once.
        poll_interval: Seconds between two reads while waiting.
        labeler: Who answered, for lines without a ``labeler`` field.
        on_error: ``"raise"`` a :class:`~prefwrap.oracles.label_file.LabelFileError` for a file with
            problems, or ``"warn"`` and use its valid lines.
        needs_frames: Keep rendered frames with every queried segment, so that ``prefwrap export``
            can write clips of the queries for the annotators (the CLI's ``--oracle file:PATH``).
        export_command: How the people answering get the clips, printed with each new batch (the
            CLI passes ``prefwrap export RUN_DIR``); default: a hint to ``export_queries``.
        verbose: ``1``: announce each new batch of unanswered queries on stdout; ``0``: silent.

    Raises:
        ValueError: ``path`` does not end in ``.jsonl`` or ``.csv``, another argument is out of
            range (the message names it and its value), or ``wait=False`` with a ``timeout > 0``.

    Example:
        >>> import pathlib, tempfile
        >>> import numpy as np
        >>> from prefwrap.records import Query, Segment
        >>> seg = lambda i: Segment(i, np.zeros((2, 1)), np.zeros((2, 1)), np.zeros(2), 2)
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "labels.jsonl"
        >>> _ = path.write_text('{"query_id": 7, "label": "right", "labeler": "bob"}\\n')
        >>> oracle = FileOracle(path, wait=False, verbose=0)  # read once; say nothing
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
        wait: bool | None = None,
        timeout: float | None = None,
        poll_interval: float = 1.0,
        labeler: str = "file",
        on_error: Literal["raise", "warn"] = "raise",
        needs_frames: bool = False,
        export_command: str | None = None,
        verbose: int = 1,
    ) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in SUFFIXES:
            raise ValueError(f"labels file must end in .jsonl or .csv, got {str(self.path)!r}")
        if missing not in ("wait", "skip"):
            raise ValueError(f"missing must be 'wait' or 'skip', got {missing!r}")
        if on_error not in ("raise", "warn"):
            raise ValueError(f"on_error must be 'raise' or 'warn', got {on_error!r}")
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 (or None: no limit), got {timeout}")
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval}")
        if wait is False and timeout:
            raise ValueError(
                f"timeout={timeout} limits how long wait=True waits; wait=False reads the file once"
            )
        self.missing = missing
        # A timeout asks to wait; a "skip" file is a finished one, read once unless asked otherwise.
        self.wait = bool(wait) if wait is not None else (missing == "wait" or timeout is not None)
        self.wait = self.wait and timeout != 0  # timeout=0: read once (as before waiting was the default)
        self.timeout = None if timeout is None else float(timeout)
        self.poll_interval = float(poll_interval)
        self.labeler = labeler
        self.on_error = on_error
        # `or`: a subclass that declares `needs_frames = True` (BaseOracle's way) keeps it.
        self.needs_frames = bool(needs_frames) or type(self).needs_frames
        self.export_command = export_command
        self.verbose = verbose
        self._store_path: str | None = None
        self._announced: set[int] = set()  # query ids already told about: once per batch, not per rollout
        self._said_how = False
        self._signature: tuple[int, int] | None = None  # (mtime_ns, size) of the file as last read
        self._answers: dict[int, FileAnswer] = {}
        self._problems: list[LabelProblem] = []
        self._warned: set[str] = set()

    def connect(self, context: OracleContext) -> None:
        """Remember the run's store, named in the export hint when no ``export_command`` is given."""
        self._store_path = str(context.store_path)

    def label(self, queries: Sequence[Query]) -> list[Answer | None]:
        """Return the file's answer for each query, waiting for them unless ``wait=False``.

        A pair gets a :class:`Preference` (a ``ranking`` of two segments is turned into one), a
        larger query a :class:`~prefwrap.records.Ranking` or ``SKIP``.

        Raises:
            LabelFileError: The file has problems (``on_error="raise"``).
            FileNotFoundError: The file does not exist and ``missing="skip"``.
            OSError: The file exists but cannot be read.
            KeyboardInterrupt: Ctrl-C while waiting (nothing is lost: the queries stay pending).
        """
        result = self._answer(queries)
        self._announce([q for q, r in zip(queries, result, strict=True) if r is None])
        if self.wait:
            deadline = None if self.timeout is None else time.monotonic() + self.timeout
            while any(r is None for r in result):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                time.sleep(self.poll_interval if remaining is None else min(self.poll_interval, remaining))
                result = self._answer(queries)
        fallback = Preference.SKIP if self.missing == "skip" else None
        return [fallback if r is None else r for r in result]

    def _announce(self, unanswered: Sequence[Query]) -> None:
        """Say once per new batch which queries wait for answers, where to write them and how to see them."""
        new = {q.query_id for q in unanswered} - self._announced
        if not new:
            return
        self._announced |= new
        if not self.verbose:
            return
        n = len(unanswered)
        what = f"{n} query waits" if n == 1 else f"{n} queries wait"
        ids = sorted(q.query_id for q in unanswered)
        example = f'{{"query_id": {ids[0]}, "label": "left"}}'
        if self.export_command:
            clips = f"Write their clips with: {self.export_command}"
        else:
            store = self._store_path if self._store_path and self._store_path != ":memory:" else "STORE"
            clips = (
                "Write their clips with: prefwrap.oracles.export.export_queries("
                f"PreferenceStore({store!r}).pending_queries(), OUT_DIR)"
            )
        if self._said_how:  # the how-to once; later batches in one line
            clips = f" (clips: {self.export_command})" if self.export_command else ""
            print(f"FileOracle: {what} for answers in {self.path}{clips}.", file=sys.stdout, flush=True)
            return
        self._said_how = True
        if not self.wait:
            then = "Training goes on without them; they are asked again at every rollout."
        elif self.timeout is None:
            then = "Training waits until every one is answered (Ctrl-C stops it)."
        else:
            then = f"Training waits up to {self.timeout:g} s for them."
        print(
            f"FileOracle: {what} for answers in {self.path} (one line per query, e.g. {example}; "
            f"docs/oracles-file.md).\n  {clips}\n  {then}",
            file=sys.stdout,
            flush=True,
        )

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

    def _answer(self, queries: Sequence[Query]) -> list[Answer | None]:
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
        result: list[Answer | None] = []
        for query in queries:
            answer = self._answers.get(query.query_id)
            fits = answer is not None and answer.matches(query)
            result.append(normalize_answer(answer.preference, query.size) if fits else None)
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
