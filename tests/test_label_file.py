"""Tests for prefwrap.oracles.label_file: the JSONL/CSV labels-file format and its checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prefwrap.oracles.label_file import (
    FileAnswer,
    LabelFileError,
    LabelProblem,
    check_answers,
    read_label_file,
)
from prefwrap.records import Preference, Query, Segment


def make_segment(segment_id: int) -> Segment:
    return Segment(segment_id, np.zeros((3, 2), np.float32), np.zeros((3, 1)), np.zeros(3, np.float32), 3)


def make_query(query_id: int, left_id: int | None = None, right_id: int | None = None) -> Query:
    left_id = 100 + 2 * query_id if left_id is None else left_id
    right_id = left_id + 1 if right_id is None else right_id
    return Query(query_id, make_segment(left_id), make_segment(right_id))


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def summary(
    answers: dict[int, FileAnswer],
) -> dict[int, tuple[Preference, int | None, int | None, str | None]]:
    return {i: (a.preference, a.left_id, a.right_id, a.labeler) for i, a in answers.items()}


def test_jsonl_fields_comments_and_integer_spellings(tmp_path: Path) -> None:
    path = write(
        tmp_path / "labels.jsonl",
        "# answers from the annotation tool\n"
        '{"query_id": 0, "label": "LEFT"}\n'
        "\n"
        '{"query_id": 1, "label": " Right ", "left_id": 102, "right_id": 103, "labeler": " alice "}\n'
        '{"query_id": "2", "label": "equal", "labeler": "bob"}\n'
        '{"query_id": 3.0, "label": "skip"}\n',
    )
    answers, problems = read_label_file(path)
    assert problems == []
    assert summary(answers) == {
        0: (Preference.LEFT, None, None, None),
        1: (Preference.RIGHT, 102, 103, "alice"),
        2: (Preference.EQUAL, None, None, "bob"),
        3: (Preference.SKIP, None, None, None),
    }
    assert [answers[i].line for i in range(4)] == [2, 4, 5, 6]


def test_csv_bom_comments_blank_cells_and_any_column_order(tmp_path: Path) -> None:
    path = write(
        tmp_path / "labels.csv",
        "\ufeffquery_id, label ,left_id,right_id,labeler\n"
        "# a comment\n"
        "0,left,100,101,\n"
        "1,EQUAL,,,carol\n"
        "\n"
        "2,right,,,\n",
    )
    answers, problems = read_label_file(path)
    assert problems == []
    assert summary(answers) == {
        0: (Preference.LEFT, 100, 101, None),
        1: (Preference.EQUAL, None, None, "carol"),
        2: (Preference.RIGHT, None, None, None),
    }
    assert [answers[i].line for i in range(3)] == [3, 4, 6]  # the file's own line numbers
    answers, problems = read_label_file(write(tmp_path / "short.csv", "label,query_id\nleft,5\n"))
    assert (summary(answers), problems) == ({5: (Preference.LEFT, None, None, None)}, [])


def test_empty_and_comment_only_files_are_valid(tmp_path: Path) -> None:
    assert read_label_file(write(tmp_path / "a.jsonl", "")) == ({}, [])
    assert read_label_file(write(tmp_path / "b.jsonl", "# nothing yet\n")) == ({}, [])
    assert read_label_file(write(tmp_path / "c.csv", "")) == ({}, [])


def test_unterminated_last_line_is_still_being_written(tmp_path: Path) -> None:
    path = write(tmp_path / "labels.jsonl", '{"query_id": 0, "label": "left"}\n{"query_id": 1, "la')
    answers, problems = read_label_file(path)
    assert (sorted(answers), problems) == ([0], [])
    with path.open("a", encoding="utf-8") as f:
        f.write('bel": "right"}\n')
    answers, problems = read_label_file(path)
    assert (sorted(answers), problems) == ([0, 1], [])
    # a complete line in the middle that does not parse is an error, terminated or not
    _, problems = read_label_file(write(path, 'oops\n{"query_id": 1, "label": "left"}'))
    assert [p.line for p in problems] == [1]


def test_json_string_with_a_unicode_line_separator_is_one_line(tmp_path: Path) -> None:
    path = write(tmp_path / "labels.jsonl", '{"query_id": 0, "label": "left", "labeler": "a\u2028b"}\n')
    answers, problems = read_label_file(path)
    assert problems == [] and answers[0].labeler == "a\u2028b"


def test_text_that_is_not_utf8_is_one_problem_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path / "labels.jsonl", b'{"query_id": 0, "label": "left"}\n{"labeler": "\xff"}\n')
    answers, problems = read_label_file(path)
    assert answers == {}
    assert [(p.line, p.message.split(" (")[0]) for p in problems] == [(2, "not UTF-8 text")]


JSONL_CASES = {
    "bad json": ('{"query_id": 1, "label": "left"', "invalid JSON"),
    "not an object": ('[1, "left"]', "expected a JSON object, got list"),
    "missing query_id": ('{"label": "left"}', "missing required field 'query_id'"),
    "missing label": ('{"query_id": 1}', "missing required field 'label'"),
    "unknown field": ('{"query_id": 1, "label": "left", "score": 3}', "unknown field(s) 'score'"),
    "float id": ('{"query_id": 1.5, "label": "left"}', "query_id must be an integer, got 1.5"),
    "text id": ('{"query_id": "one", "label": "left"}', "query_id must be an integer, got 'one'"),
    "bool id": ('{"query_id": true, "label": "left"}', "query_id must be an integer, got True"),
    "bad segment id": ('{"query_id": 1, "label": "left", "left_id": "x"}', "left_id must be an integer"),
    "bad label": (
        '{"query_id": 1, "label": "better"}',
        "label must be one of left/right/equal/skip, got 'better'",
    ),
    "bad labeler": ('{"query_id": 1, "label": "left", "labeler": 7}', "labeler must be a non-empty string"),
    "contradiction": (
        '{"query_id": 0, "label": "right"}',
        "contradicting answers for query 0: 'right' here, 'left' on line 1",
    ),
    "differing duplicate": (
        '{"query_id": 0, "label": "left", "labeler": "eve"}',
        "duplicate answer for query 0 differs from line 1",
    ),
}


@pytest.mark.parametrize("case", JSONL_CASES)
def test_malformed_jsonl_names_file_line_and_problem(tmp_path: Path, case: str) -> None:
    bad_line, message = JSONL_CASES[case]
    path = write(tmp_path / "labels.jsonl", f'{{"query_id": 0, "label": "left"}}\n{bad_line}\n')
    _, problems = read_label_file(path)
    assert len(problems) == 1
    assert (problems[0].path, problems[0].line) == (path, 2)
    assert message in problems[0].message
    assert str(problems[0]).startswith(f"{path}:2: ")


CSV_CASES = {
    "unknown column": ("query_id,label,score\n0,left,1\n", 1, "bad header: unknown column 'score'"),
    "missing column": ("query_id\n0\n", 1, "bad header: missing column 'label'"),
    "duplicate column": ("query_id,label,label\n0,left,left\n", 1, "bad header: duplicate column 'label'"),
    "cell count": ("query_id,label\n0,left\n1,left,extra\n", 3, "expected 2 cells"),
    "text id": ("query_id,label\n0,left\nabc,left\n", 3, "query_id must be an integer, got 'abc'"),
    "bad label": ("query_id,label\n0,left\n1,maybe\n", 3, "label must be one of left/right/equal/skip"),
    "missing label": ("query_id,label\n0,left\n1,\n", 3, "missing required field 'label'"),
}


@pytest.mark.parametrize("case", CSV_CASES)
def test_malformed_csv_names_file_line_and_problem(tmp_path: Path, case: str) -> None:
    text, line, message = CSV_CASES[case]
    path = write(tmp_path / "labels.csv", text)
    _, problems = read_label_file(path)
    assert [(p.path, p.line) for p in problems] == [(path, line)]
    assert message in problems[0].message


def test_every_problem_is_listed_and_contradicted_queries_are_dropped(tmp_path: Path) -> None:
    path = write(
        tmp_path / "labels.jsonl",
        '{"query_id": 0, "label": "left"}\n'
        "not json\n"
        '{"query_id": 1, "label": "right"}\n'
        '{"query_id": 2, "label": "nope"}\n'
        '{"query_id": 1, "label": "left"}\n'
        '{"query_id": 3, "label": "equal"}\n',
    )
    answers, problems = read_label_file(path)
    assert sorted(answers) == [0, 3]  # query 1 is contradicted, so neither answer counts
    assert [p.line for p in problems] == [2, 4, 5]
    error = LabelFileError(problems)
    assert error.problems == problems and isinstance(error, ValueError)
    assert str(error).splitlines() == ["3 problem(s) in labels file:", *(f"  {p}" for p in problems)]


def test_identical_duplicates_are_tolerated(tmp_path: Path) -> None:
    line = '{"query_id": 0, "label": "left", "labeler": "ann"}\n'
    answers, problems = read_label_file(write(tmp_path / "labels.jsonl", line + line.replace("left", "LEFT")))
    assert (answers[0].line, problems) == (1, [])  # the first line is the answer


def test_other_extensions_are_refused_and_a_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"labels\.txt"):
        read_label_file(write(tmp_path / "labels.txt", ""))
    with pytest.raises(FileNotFoundError):
        read_label_file(tmp_path / "absent.jsonl")


def test_check_answers_reports_mismatching_and_swapped_segment_ids(tmp_path: Path) -> None:
    path = write(
        tmp_path / "labels.jsonl",
        '{"query_id": 0, "label": "left", "left_id": 101, "right_id": 100}\n'
        '{"query_id": 1, "label": "left", "right_id": 999}\n'
        '{"query_id": 2, "label": "right", "left_id": 104}\n',
    )
    answers, _ = read_label_file(path)
    queries = [make_query(0, 100, 101), make_query(1, 102, 103), make_query(2, 104, 105)]
    problems = check_answers(path, answers, queries)
    assert [p.line for p in problems] == [1, 2]
    assert problems[0].message == (
        "query 0: left_id/right_id (101, 100) do not match the query's segments (100, 101) (swapped?)"
    )
    assert "(None, 999)" in problems[1].message and "swapped" not in problems[1].message
    assert [answers[i].matches(q) for i, q in enumerate(queries)] == [False, False, True]
    assert check_answers(path, answers) == []  # without queries nothing is compared


def test_check_answers_reports_ids_a_run_never_issued(tmp_path: Path) -> None:
    answers = {
        0: FileAnswer(0, Preference.LEFT, line=1),
        42: FileAnswer(42, Preference.RIGHT, line=2),
    }
    problems = check_answers(tmp_path / "labels.jsonl", answers, known_ids={0, 1})
    assert problems == [
        LabelProblem(tmp_path / "labels.jsonl", 2, "query_id 42 was never issued by this run")
    ]
