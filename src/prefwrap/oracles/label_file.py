"""The labels-file format: answers to preference queries, one per line, in JSONL or CSV.

An annotation tool or crowd platform writes one answer line per query (schema in
``docs/oracles-file.md``); :class:`~prefwrap.oracles.file.FileOracle` answers from such a file while
training runs, and :func:`prefwrap.oracles.export.import_labels` reads one after the fact. Both parse
it here. The fields of a line (JSON object keys, or CSV header columns):

- ``query_id`` (required, integer): the query answered.
- ``label`` (string): ``left``, ``right``, ``equal`` or ``skip``, case-insensitive (``skip`` answers a
  query of any size).
- ``ranking`` (instead of ``label``, for a query of ``K`` segments): the positions ``0..K-1`` of the
  query's segments, best first, as a JSON list of groups of equals, ``[[2], [0, 3], [1]]``, or as text,
  ``"2 > 0 = 3 > 1"`` (a CSV cell takes the text form). Exactly one of ``label`` and ``ranking``.
- ``left_id``, ``right_id`` (optional, integers): the segments shown on each side; checked against
  the query when given.
- ``segment_ids`` (optional): the query's segment ids in position order (a JSON list, or a CSV cell
  of ids separated by spaces); checked against the query when given.
- ``labeler`` (optional, string): who answered; overrides the oracle's ``labeler`` for this line.

The parser never stops at the first problem: it returns the valid answers and a
:class:`LabelProblem` (file, line, message) for every fault, so a person fixes a file in one pass.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from prefwrap.records import Answer, Preference, Query, Ranking, normalize_answer

__all__ = [
    "ANSWER_FIELDS",
    "FIELDS",
    "REQUIRED_FIELDS",
    "SUFFIXES",
    "FileAnswer",
    "LabelFileError",
    "LabelProblem",
    "check_answers",
    "read_label_file",
]

FIELDS = ("query_id", "label", "ranking", "left_id", "right_id", "segment_ids", "labeler")
REQUIRED_FIELDS = ("query_id",)  # and one of ANSWER_FIELDS
ANSWER_FIELDS = ("label", "ranking")
SUFFIXES = (".jsonl", ".csv")

# (1-based line number, the line's fields, or an error message for a line that could not be split)
_Record = tuple[int, dict[str, object], str | None]


@dataclass(frozen=True)
class LabelProblem:
    """One problem found in a labels file.

    Attributes:
        path: The labels file.
        line: 1-based line number; ``0`` for the file as a whole (e.g. it does not exist).
        message: What is wrong, e.g. ``"label must be one of left/right/equal/skip, got 'nope'"``.
    """

    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


class LabelFileError(ValueError):
    """A labels file has problems; ``problems`` lists all of them, not just the first.

    Attributes:
        problems: Every :class:`LabelProblem`, in the order given (callers pass them in line order).
    """

    def __init__(self, problems: Sequence[LabelProblem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in labels file:\n{lines}")


@dataclass(frozen=True)
class FileAnswer:
    """One valid answer line of a labels file.

    Attributes:
        query_id: The query answered.
        preference: The answer: a :class:`Preference` (``label``) or a :class:`Ranking` (``ranking``).
        line: Its 1-based line number in the file.
        left_id: The segment id the annotator saw on the left, or ``None`` when not given.
        right_id: The segment id the annotator saw on the right, or ``None`` when not given.
        labeler: Who answered, or ``None`` when the line does not say.
        segment_ids: The query's segment ids the line names, or ``None`` when not given.
    """

    query_id: int
    preference: Answer
    line: int
    left_id: int | None = None
    right_id: int | None = None
    labeler: str | None = None
    segment_ids: tuple[int, ...] | None = None

    def matches(self, query: Query) -> bool:
        """Whether this answer fits ``query``: its segment ids (if given) and its size."""
        return self.mismatch(query) is None

    def mismatch(self, query: Query) -> str | None:
        """Why this answer does not fit ``query``, or ``None`` when it does."""
        expected = tuple(segment.segment_id for segment in query.segments)
        if (self.left_id is not None and self.left_id != expected[0]) or (
            self.right_id is not None and self.right_id != expected[1]
        ):
            swapped = " (swapped?)" if (self.left_id, self.right_id) == expected[1::-1] else ""
            return (
                f"query {query.query_id}: left_id/right_id ({self.left_id}, {self.right_id}) "
                f"do not match the query's segments {expected[:2]}{swapped}"
            )
        if self.segment_ids is not None and self.segment_ids != expected:
            named = list(self.segment_ids)
            return f"query {query.query_id}: segment_ids {named} are not the query's {list(expected)}"
        try:
            normalize_answer(self.preference, query.size)
        except ValueError as error:
            return f"query {query.query_id}: {error}"
        return None


def read_label_file(path: str | Path) -> tuple[dict[int, FileAnswer], list[LabelProblem]]:
    """Parse a ``.jsonl`` or ``.csv`` labels file, collecting every problem instead of stopping.

    Blank lines and lines starting with ``#`` are ignored. Identical duplicate lines for a query
    are tolerated; differing ones are problems, and a query with contradicting labels is left out
    of the answers. An unterminated last line that does not parse is taken as still being written
    and ignored, so that a file being appended to never reads as malformed.

    Args:
        path: The labels file; the format is chosen by its extension.

    Returns:
        The valid answers by query id, and the problems in line order (empty for a clean file).

    Raises:
        ValueError: ``path`` does not end in ``.jsonl`` or ``.csv``.
        OSError: The file cannot be read (``FileNotFoundError`` when it does not exist).

    Example:
        >>> import pathlib, tempfile
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "labels.jsonl"
        >>> _ = p.write_text('{"query_id": 0, "label": "LEFT"}\\n{"query_id": 1, "label": "maybe"}\\n')
        >>> answers, problems = read_label_file(p)
        >>> answers[0].preference, [problem.line for problem in problems]
        (<Preference.LEFT: 'left'>, [2])
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
            message = (
                f"contradicting answers for query {answer.query_id}: '{_text(answer.preference)}' here, "
                f"'{_text(first.preference)}' on line {first.line}"
            )
            problems.append(LabelProblem(path, line, message))
        elif _content(first) != _content(answer):
            message = (
                f"duplicate answer for query {answer.query_id} differs from line {first.line} "
                "(only identical duplicates are allowed)"
            )
            problems.append(LabelProblem(path, line, message))
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
        queries: Queries whose answers must fit them: the same ``left_id``/``right_id``/``segment_ids``
            (when given), a ranking of as many segments, a pair's label only for a pair.
        known_ids: If given, answers to query ids outside this set are reported.

    Returns:
        The problems found, in line order.
    """
    path = Path(path)
    problems = []
    for query in queries:
        answer = answers.get(query.query_id)
        message = None if answer is None else answer.mismatch(query)
        if message is not None:
            problems.append(LabelProblem(path, answer.line, message))
    if known_ids is not None:
        problems += [
            LabelProblem(path, a.line, f"query_id {a.query_id} was never issued by this run")
            for a in answers.values()
            if a.query_id not in known_ids
        ]
    return sorted(problems, key=lambda p: p.line)


def _jsonl_records(lines: list[str]) -> Iterable[_Record]:
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


def _csv_records(lines: list[str]) -> Iterable[_Record]:
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
            if not set(ANSWER_FIELDS) & set(header):
                faults.append("missing column 'label' (or 'ranking')")
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
    """The answer on one line, or ``None`` and every fault of the line."""
    messages = [f"missing required field '{name}'" for name in REQUIRED_FIELDS if fields.get(name) is None]
    given = [name for name in ANSWER_FIELDS if fields.get(name) is not None]
    if not given:
        messages.append("missing required field 'label' (or 'ranking' for a query of more than 2 segments)")
    elif len(given) > 1:
        messages.append("give either 'label' or 'ranking', not both")
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
    segment_ids = _as_ids(fields.get("segment_ids"))
    if fields.get("segment_ids") is not None and segment_ids is None:
        messages.append(f"segment_ids must be a list of integers, got {fields['segment_ids']!r}")
    answer: Answer | None = None
    label, ranking = fields.get("label"), fields.get("ranking")
    if label is not None:
        try:
            answer = Preference(str(label).strip().lower())
        except ValueError:
            messages.append(f"label must be one of left/right/equal/skip, got {label!r}")
    elif ranking is not None:
        try:
            answer = Ranking.parse(ranking)  # type: ignore[arg-type]
        except (ValueError, TypeError) as error:
            messages.append(f"ranking: {error}")
    labeler = fields.get("labeler")
    if labeler is not None and (not isinstance(labeler, str) or not labeler.strip()):
        messages.append(f"labeler must be a non-empty string, got {labeler!r}")
    query_id = ids.get("query_id")
    if messages or answer is None or query_id is None:
        return None, messages
    return FileAnswer(
        query_id=query_id,
        preference=answer,
        line=line,
        left_id=ids.get("left_id"),
        right_id=ids.get("right_id"),
        labeler=labeler.strip() if isinstance(labeler, str) else None,
        segment_ids=segment_ids,
    ), []


def _text(answer: Answer) -> str:
    """An answer as a file writes it: ``left`` or ``[[2],[0,3],[1]]``."""
    return answer.to_json() if isinstance(answer, Ranking) else answer.value


def _as_ids(value: object) -> tuple[int, ...] | None:
    """Segment ids from a JSON list or a text of ids separated by spaces (or commas); ``None`` if invalid."""
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if not isinstance(value, list) or not value:
        return None
    ids = [_as_int(item) for item in value]
    return None if any(i is None for i in ids) else tuple(ids)  # type: ignore[misc]


def _as_int(value: object) -> int | None:
    """``value`` as an integer: ints, integral floats (``7.0``, as pandas writes them) and their strings.

    ``None`` for anything else, ``bool`` included (``true`` is no query id).
    """
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


def _content(answer: FileAnswer) -> tuple[object, ...]:
    """What two lines for one query must share to count as identical duplicates (not the line)."""
    return (answer.preference, answer.left_id, answer.right_id, answer.labeler, answer.segment_ids)
