"""An oracle that reads answers from a labels file written by an external tool or crowd platform.

The schema (JSONL or CSV, keyed by ``query_id``) is documented in ``docs/oracles-file.md``. The
parser here is shared with :func:`prefwrap.export.import_labels`.
"""

from __future__ import annotations

import csv
import json
import time
import warnings
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from prefwrap.records import Preference, Query

FIELDS = ("query_id", "label", "left_id", "right_id", "labeler")
REQUIRED_FIELDS = ("query_id", "label")
SUFFIXES = (".jsonl", ".csv")


@dataclass(frozen=True)
class LabelProblem:
    """One problem found in a labels file; ``line`` is 1-based (0: the file as a whole)."""

    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class LabelFileError(ValueError):
    """A labels file has problems; ``problems`` lists all of them, not just the first."""

    def __init__(self, problems: Sequence[LabelProblem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in labels file:\n{lines}")


@dataclass(frozen=True)
class FileAnswer:
    """One valid answer line of a labels file."""

    query_id: int
    preference: Preference
    line: int
    left_id: int | None = None
    right_id: int | None = None
    labeler: str | None = None


def read_label_file(path: str | Path) -> tuple[dict[int, FileAnswer], list[LabelProblem]]:
    """Parse a ``.jsonl`` or ``.csv`` labels file, collecting every problem instead of stopping.

    Blank lines and lines starting with ``#`` are ignored. Identical duplicate lines for a query
    are tolerated; differing ones are problems, and a query with contradicting labels is left out
    of the answers. An unterminated last line that does not parse is taken as still being written
    and ignored, so that a file being appended to never reads as malformed.

    Args:
        path: The labels file; the format is chosen by its extension.

    Returns:
        The valid answers by query id, and the problems (empty for a clean file).

    Example:
        >>> import pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "labels.jsonl"
        >>> _ = p.write_text('{"query_id": 0, "label": "LEFT"}\\n')
        >>> answers, problems = read_label_file(p)
        >>> answers[0].preference, problems
        (<Preference.LEFT: 'left'>, [])
    """
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise ValueError(f"labels file must end in .jsonl or .csv, got {str(path)!r}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return {}, [LabelProblem(path, raw[: e.start].count(b"\n") + 1, f"not UTF-8 text ({e.reason})")]
    # Split on "\n" only: str.splitlines would also split inside JSON strings (e.g. at U+2028).
    lines = [line + "\n" for line in text.split("\n")]
    if text.endswith("\n") or not text:
        lines.pop()
    records = _csv_records(lines) if path.suffix.lower() == ".csv" else _jsonl_records(lines)
    answers: dict[int, FileAnswer] = {}
    problems: list[LabelProblem] = []
    contradicted: set[int] = set()
    last = len(lines)
    for line, fields, error in records:
        answer, messages = (None, [error]) if error else _parse_fields(fields, line)
        if messages and line == last and not text.endswith("\n"):
            continue  # still being written
        problems += [LabelProblem(path, line, m) for m in messages]
        if answer is None:
            continue
        first = answers.get(answer.query_id)
        if first is None:
            answers[answer.query_id] = answer
        elif first.preference != answer.preference:
            contradicted.add(answer.query_id)
            problems.append(
                LabelProblem(
                    path,
                    line,
                    f"contradicting answers for query {answer.query_id}: '{answer.preference.value}' here, "
                    f"'{first.preference.value}' on line {first.line}",
                )
            )
        elif _key(first) != _key(answer):
            problems.append(
                LabelProblem(
                    path,
                    line,
                    f"duplicate answer for query {answer.query_id} differs from line {first.line} "
                    "(only identical duplicates are allowed)",
                )
            )
    for query_id in contradicted:
        del answers[query_id]
    return answers, sorted(problems, key=lambda p: p.line)


def check_answers(
    path: str | Path,
    answers: Mapping[int, FileAnswer],
    queries: Iterable[Query] = (),
    known_ids: Collection[int] | None = None,
) -> list[LabelProblem]:
    """Check answers against the queries they answer, and optionally against the ids a run issued.

    Args:
        path: The labels file, named in the problems.
        answers: Parsed answers, as returned by :func:`read_label_file`.
        queries: Queries whose answers must name the same ``left_id``/``right_id`` (when given).
        known_ids: If given, answers to query ids outside this set are reported.

    Returns:
        The problems found, in line order.
    """
    path = Path(path)
    problems = []
    for query in queries:
        answer = answers.get(query.query_id)
        if answer is not None and not _ids_match(answer, query):
            expected = (query.left.segment_id, query.right.segment_id)
            swapped = " (swapped?)" if (answer.left_id, answer.right_id) == expected[::-1] else ""
            problems.append(
                LabelProblem(
                    path,
                    answer.line,
                    f"query {query.query_id}: left_id/right_id ({answer.left_id}, {answer.right_id}) "
                    f"do not match the query's segments {expected}{swapped}",
                )
            )
    if known_ids is not None:
        problems += [
            LabelProblem(path, a.line, f"query_id {a.query_id} was never issued by this run")
            for a in answers.values()
            if a.query_id not in known_ids
        ]
    return sorted(problems, key=lambda p: p.line)


class FileOracle:
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
    asked query) makes ``label`` raise :class:`LabelFileError` listing every problem with file and
    line, before anything is returned; after the file is fixed, the next call reads it again and
    every valid line counts. With ``on_error="warn"`` the problems are warned about once per file
    version instead, valid lines are used, and the queries with faulty answers stay unanswered.

    A line's optional ``labeler`` field overrides the oracle's ``labeler``; read it back with
    :meth:`labeler_for` to store who answered.

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
        self._signature: tuple[int, int] | None = None
        self._answers: dict[int, FileAnswer] = {}
        self._problems: list[LabelProblem] = []
        self._warned: set[str] = set()

    def label(self, queries: Sequence[Query]) -> list[Preference | None]:
        """Return the file's answer for each query, or ``None``/``SKIP`` where there is none.

        Raises:
            LabelFileError: The file has problems (``on_error="raise"``).
            FileNotFoundError: The file does not exist and ``missing="skip"``.
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
        """Return all problems in the file now, without raising.

        Args:
            queries: Also check that answers to these queries name their segments.
            known_ids: Also report answers to query ids outside this set (e.g. all ids a run issued).
        """
        if not self.path.exists():
            return [] if self.missing == "wait" else [LabelProblem(self.path, 0, "file does not exist")]
        answers, problems = read_label_file(self.path)
        return sorted(problems + check_answers(self.path, answers, queries, known_ids), key=lambda p: p.line)

    def _answer(self, queries: Sequence[Query]) -> list[Preference | None]:
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
            ok = answer is not None and _ids_match(answer, query)
            result.append(answer.preference if ok else None)
        return result

    def _reload(self) -> None:
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


def _jsonl_records(lines: list[str]) -> Iterable[tuple[int, dict[str, object], str | None]]:
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            fields = json.loads(stripped)
        except json.JSONDecodeError as e:
            yield number, {}, f"invalid JSON: {e.msg} (column {e.colno})"
            continue
        if not isinstance(fields, dict):
            yield number, {}, f"expected a JSON object, got {type(fields).__name__}"
            continue
        yield number, fields, None


def _csv_records(lines: list[str]) -> Iterable[tuple[int, dict[str, object], str | None]]:
    # Comment lines become blank lines so that the reader's line numbers stay those of the file.
    reader = csv.reader("\n" if line.lstrip().startswith("#") else line for line in lines)
    header: list[str] | None = None
    start = 1
    for row in reader:
        line, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = [cell.strip() for cell in row]
            faults = [f"unknown column {name!r}" for name in header if name not in FIELDS]
            faults += [f"missing column {name!r}" for name in REQUIRED_FIELDS if name not in header]
            faults += [f"duplicate column {name!r}" for name in FIELDS if header.count(name) > 1]
            if faults:
                yield line, {}, f"bad header: {'; '.join(faults)} (allowed: {', '.join(FIELDS)})"
                return
            continue
        if len(row) != len(header):
            yield line, {}, f"expected {len(header)} cells (header {header}), got {len(row)}"
            continue
        yield line, {name: cell.strip() for name, cell in zip(header, row, strict=True) if cell.strip()}, None


def _parse_fields(fields: Mapping[str, object], line: int) -> tuple[FileAnswer | None, list[str]]:
    messages = [f"missing required field '{name}'" for name in REQUIRED_FIELDS if fields.get(name) is None]
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        messages.append(f"unknown field(s) {', '.join(map(repr, unknown))} (allowed: {', '.join(FIELDS)})")
    ids = {}
    for name in ("query_id", "left_id", "right_id"):
        value = fields.get(name)
        if value is not None:
            ids[name] = _as_int(value)
            if ids[name] is None:
                messages.append(f"{name} must be an integer, got {value!r}")
    preference = None
    label = fields.get("label")
    if label is not None:
        try:
            preference = Preference(str(label).strip().lower())
        except ValueError:
            messages.append(f"label must be one of left/right/equal/skip, got {label!r}")
    labeler = fields.get("labeler")
    if labeler is not None and (not isinstance(labeler, str) or not labeler.strip()):
        messages.append(f"labeler must be a non-empty string, got {labeler!r}")
    query_id = ids.get("query_id")
    if messages or preference is None or query_id is None:
        return None, messages
    return FileAnswer(
        query_id=query_id,
        preference=preference,
        line=line,
        left_id=ids.get("left_id"),
        right_id=ids.get("right_id"),
        labeler=labeler.strip() if isinstance(labeler, str) else None,
    ), []


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            try:
                number = float(value)
            except ValueError:
                return None
            return int(number) if number.is_integer() else None
    return None


def _key(answer: FileAnswer) -> tuple:
    return (answer.preference, answer.left_id, answer.right_id, answer.labeler)


def _ids_match(answer: FileAnswer, query: Query) -> bool:
    return (answer.left_id is None or answer.left_id == query.left.segment_id) and (
        answer.right_id is None or answer.right_id == query.right.segment_id
    )
