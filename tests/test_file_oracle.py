"""Tests for prefwrap.oracles.file.FileOracle (the file format itself: tests/test_label_file.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from prefwrap.oracles.base import BaseOracle, Oracle, oracle_hooks
from prefwrap.oracles.file import FileOracle
from prefwrap.oracles.label_file import LabelFileError
from prefwrap.records import Preference, Query, Segment


def make_segment(segment_id: int) -> Segment:
    return Segment(segment_id, np.zeros((3, 2), np.float32), np.zeros((3, 1)), np.zeros(3, np.float32), 3)


def make_query(query_id: int, left_id: int | None = None, right_id: int | None = None) -> Query:
    left_id = 100 + 2 * query_id if left_id is None else left_id
    right_id = left_id + 1 if right_id is None else right_id
    return Query(query_id, make_segment(left_id), make_segment(right_id))


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_is_an_oracle_with_the_base_hooks(tmp_path: Path) -> None:
    oracle = FileOracle(tmp_path / "labels.jsonl")
    assert isinstance(oracle, Oracle) and isinstance(oracle, BaseOracle)
    assert oracle_hooks(oracle) is oracle  # the learner calls its own labeler_for, not a default
    assert oracle.needs_frames is False


def test_needs_frames_is_a_constructor_argument(tmp_path: Path) -> None:
    """The CLI asks for clips (for ``prefwrap export``) without setting attributes from outside."""
    assert FileOracle(tmp_path / "labels.jsonl", needs_frames=True).needs_frames is True
    assert FileOracle(tmp_path / "other.jsonl").needs_frames is False  # not shared through the class

    class ClipFileOracle(FileOracle):
        needs_frames = True  # declared as BaseOracle documents it: the constructor's default keeps it

    assert ClipFileOracle(tmp_path / "labels.jsonl").needs_frames is True


def test_jsonl_happy_path(tmp_path: Path) -> None:
    path = write(
        tmp_path / "labels.jsonl",
        "# answers from the annotation tool\n"
        '{"query_id": 0, "label": "LEFT"}\n'
        "\n"
        '{"query_id": 1, "label": " Right ", "left_id": 102, "right_id": 103, "labeler": "alice"}\n'
        '{"query_id": "2", "label": "equal", "labeler": "bob"}\n'
        '{"query_id": 3.0, "label": "skip"}\n',
    )
    oracle = FileOracle(path, labeler="crowd")
    queries = [make_query(i) for i in range(4)]
    assert oracle.label(queries) == [Preference.LEFT, Preference.RIGHT, Preference.EQUAL, Preference.SKIP]
    assert [oracle.labeler_for(i) for i in range(4)] == ["crowd", "alice", "bob", "crowd"]
    assert oracle.labeler_for(99) == "crowd"
    assert oracle.validate(queries) == []


def test_csv_happy_path(tmp_path: Path) -> None:
    path = write(
        tmp_path / "labels.csv",
        "\ufeffquery_id, label ,left_id,right_id,labeler\n"
        "# a comment\n"
        "0,left,100,101,\n"
        "1,EQUAL,,,carol\n"
        "\n"
        "2,right,,,\n",
    )
    oracle = FileOracle(path)
    assert oracle.label([make_query(i) for i in range(3)]) == [
        Preference.LEFT,
        Preference.EQUAL,
        Preference.RIGHT,
    ]
    assert oracle.labeler_for(1) == "carol"
    assert oracle.labeler_for(0) == "file"


def test_wait_returns_none_and_skip_answers_skip(tmp_path: Path) -> None:
    path = write(tmp_path / "labels.jsonl", '{"query_id": 0, "label": "left"}\n')
    queries = [make_query(0), make_query(1)]
    assert FileOracle(path, wait=False).label(queries) == [Preference.LEFT, None]
    assert FileOracle(path, missing="skip").label(queries) == [Preference.LEFT, Preference.SKIP]


def test_missing_file_waits_or_fails(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    assert FileOracle(path, wait=False).label([make_query(0)]) == [None]
    with pytest.raises(FileNotFoundError, match=r"labels\.jsonl"):
        FileOracle(path, missing="skip").label([make_query(0)])


def test_reread_after_append(tmp_path: Path) -> None:
    path = write(tmp_path / "labels.jsonl", '{"query_id": 0, "label": "left"}\n')
    oracle = FileOracle(path, wait=False)
    queries = [make_query(0), make_query(1)]
    assert oracle.label(queries) == [Preference.LEFT, None]
    with path.open("a", encoding="utf-8") as f:
        f.write('{"query_id": 1, "label": "right", "labeler": "dave"}\n')
    assert oracle.label(queries) == [Preference.LEFT, Preference.RIGHT]
    assert oracle.labeler_for(1) == "dave"


def test_unterminated_last_line_is_pending(tmp_path: Path) -> None:
    path = write(tmp_path / "labels.jsonl", '{"query_id": 0, "label": "left"}\n{"query_id": 1, "la')
    oracle = FileOracle(path, wait=False)
    queries = [make_query(0), make_query(1)]
    assert oracle.label(queries) == [Preference.LEFT, None]
    with path.open("a", encoding="utf-8") as f:
        f.write('bel": "right"}\n')
    assert oracle.label(queries) == [Preference.LEFT, Preference.RIGHT]


def test_timeout_polls_until_answered(tmp_path: Path) -> None:
    path = write(tmp_path / "labels.jsonl", "")

    def answer_later() -> None:
        time.sleep(0.2)
        with path.open("a", encoding="utf-8") as f:
            f.write('{"query_id": 0, "label": "equal"}\n')

    thread = threading.Thread(target=answer_later)
    thread.start()
    start = time.monotonic()
    result = FileOracle(path, timeout=5.0, poll_interval=0.02).label([make_query(0)])
    thread.join()
    assert result == [Preference.EQUAL]
    assert time.monotonic() - start < 4.0


def test_timeout_expires(tmp_path: Path) -> None:
    path = write(tmp_path / "labels.jsonl", "")
    start = time.monotonic()
    assert FileOracle(path, timeout=0.15, poll_interval=0.05).label([make_query(0)]) == [None]
    assert FileOracle(path, missing="skip", timeout=0.05, poll_interval=0.05).label([make_query(0)]) == [
        Preference.SKIP
    ]
    assert 0.15 <= time.monotonic() - start < 2.0


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        ("labels.jsonl", '{"query_id": 0, "label": "left"}\n{"query_id": 1, "label": "better"}\n', 2),
        ("labels.csv", "query_id,label\n0,left\n1,maybe\n", 3),
    ],
)
def test_a_malformed_line_raises_naming_file_and_line(
    tmp_path: Path, name: str, text: str, line: int
) -> None:
    path = write(tmp_path / name, text)
    with pytest.raises(LabelFileError) as info:
        FileOracle(path).label([make_query(0)])  # even though query 0's own line is fine
    assert [(p.path, p.line) for p in info.value.problems] == [(path, line)]
    assert f"{path}:{line}: label must be one of left/right/equal/skip" in str(info.value)


def test_all_problems_listed_and_valid_lines_kept(tmp_path: Path) -> None:
    path = write(
        tmp_path / "labels.jsonl",
        '{"query_id": 0, "label": "left"}\n'
        "not json\n"
        '{"query_id": 1, "label": "right"}\n'
        '{"query_id": 2, "label": "nope"}\n'
        '{"query_id": 1, "label": "left"}\n'
        '{"query_id": 3, "label": "equal"}\n',
    )
    queries = [make_query(i) for i in range(4)]
    with pytest.raises(LabelFileError) as info:
        FileOracle(path).label(queries)
    assert [p.line for p in info.value.problems] == [2, 4, 5]
    assert "3 problem(s)" in str(info.value)

    oracle = FileOracle(path, on_error="warn", wait=False)
    with pytest.warns(UserWarning, match="3 problem"):
        assert oracle.label(queries) == [Preference.LEFT, None, None, Preference.EQUAL]
    # the same problems are not warned about twice
    assert oracle.label(queries) == [Preference.LEFT, None, None, Preference.EQUAL]

    write(path, '{"query_id": 0, "label": "left"}\n{"query_id": 1, "label": "right"}\n')
    assert FileOracle(path).label(queries[:2]) == [Preference.LEFT, Preference.RIGHT]


def test_segment_id_mismatch(tmp_path: Path) -> None:
    path = write(
        tmp_path / "labels.jsonl",
        '{"query_id": 0, "label": "left", "left_id": 101, "right_id": 100}\n'
        '{"query_id": 1, "label": "left", "right_id": 999}\n'
        '{"query_id": 2, "label": "right", "left_id": 104}\n',
    )
    queries = [make_query(0, 100, 101), make_query(1, 102, 103), make_query(2, 104, 105)]
    with pytest.raises(LabelFileError) as info:
        FileOracle(path).label(queries)
    assert [p.line for p in info.value.problems] == [1, 2]
    assert "query 0: left_id/right_id (101, 100) do not match the query's segments (100, 101) (swapped?)" in (
        info.value.problems[0].message
    )
    assert "(None, 999)" in info.value.problems[1].message
    # only the asked queries are checked: query 2's partial ids match
    assert FileOracle(path).label(queries[2:]) == [Preference.RIGHT]


def test_unknown_ids_are_not_errors_but_validate_reports_them(tmp_path: Path) -> None:
    path = write(
        tmp_path / "labels.jsonl", '{"query_id": 0, "label": "left"}\n{"query_id": 42, "label": "right"}\n'
    )
    oracle = FileOracle(path)
    assert oracle.label([make_query(0)]) == [Preference.LEFT]
    assert oracle.validate() == []
    problems = oracle.validate(known_ids={0, 1})
    assert [(p.line, p.message) for p in problems] == [(2, "query_id 42 was never issued by this run")]


def test_constructor_validation(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"labels\.txt"):
        FileOracle(tmp_path / "labels.txt")
    with pytest.raises(ValueError, match="'later'"):
        FileOracle(tmp_path / "l.jsonl", missing="later")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="-1"):
        FileOracle(tmp_path / "l.jsonl", timeout=-1)
    with pytest.raises(ValueError, match="poll_interval"):
        FileOracle(tmp_path / "l.jsonl", poll_interval=0)
    with pytest.raises(ValueError, match="on_error"):
        FileOracle(tmp_path / "l.jsonl", on_error="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="wait=False reads the file once"):
        FileOracle(tmp_path / "l.jsonl", wait=False, timeout=5)


# ------------------------------------------------------------------- waiting, made visible


def answer_after(path: Path, delay: float, lines: str) -> threading.Thread:
    """Append ``lines`` to ``path`` after ``delay`` seconds, from another thread (an annotation tool)."""

    def append() -> None:
        time.sleep(delay)
        with path.open("a", encoding="utf-8") as f:
            f.write(lines)

    thread = threading.Thread(target=append)
    thread.start()
    return thread


def test_waits_by_default_until_every_query_is_answered(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"  # not written yet, as when `prefwrap train --oracle file:` starts
    oracle = FileOracle(path, poll_interval=0.02, verbose=0)
    assert oracle.wait is True and oracle.timeout is None
    thread = answer_after(path, 0.3, '{"query_id": 0, "label": "left"}\n{"query_id": 1, "label": "skip"}\n')
    start = time.monotonic()
    assert oracle.label([make_query(0), make_query(1)]) == [Preference.LEFT, Preference.SKIP]
    thread.join()
    assert time.monotonic() - start >= 0.3  # it waited for both answers instead of returning None


def test_waiting_defaults(tmp_path: Path) -> None:
    path = tmp_path / "l.jsonl"
    assert FileOracle(path).wait is True
    assert FileOracle(path, wait=False).wait is False
    assert FileOracle(path, missing="skip").wait is False  # a finished file: read once
    assert FileOracle(path, missing="skip", timeout=3).wait is True  # a timeout asks to wait
    assert FileOracle(path, timeout=0).wait is False  # 0: read once


def test_each_new_batch_is_announced_once_with_the_export_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "labels.jsonl"
    oracle = FileOracle(path, wait=False, export_command="prefwrap export runs/x")
    assert oracle.label([make_query(0), make_query(1)]) == [None, None]
    first = capsys.readouterr().out
    assert f"FileOracle: 2 queries wait for answers in {path}" in first
    assert "Write their clips with: prefwrap export runs/x" in first
    assert "Training goes on without them" in first
    assert oracle.label([make_query(0), make_query(1)]) == [None, None]  # the next rollout: said already
    assert capsys.readouterr().out == ""
    assert oracle.label([make_query(0), make_query(1), make_query(2)]) == [None, None, None]
    assert capsys.readouterr().out.strip() == (
        f"FileOracle: 3 queries wait for answers in {path} (clips: prefwrap export runs/x)."
    )
    write(path, '{"query_id": 0, "label": "left"}\n')  # answered before asked: nothing to say
    assert FileOracle(path, wait=False).label([make_query(0)]) == [Preference.LEFT]
    assert capsys.readouterr().out == ""


def test_the_python_hint_names_the_runs_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from prefwrap.oracles.base import OracleContext

    oracle = FileOracle(tmp_path / "labels.jsonl", timeout=0.05, poll_interval=0.01)
    oracle.connect(OracleContext(None, tmp_path / "prefs.sqlite", lambda query, answer: None))
    assert oracle.label([make_query(0)]) == [None]
    out = capsys.readouterr().out
    assert (
        f"export_queries(PreferenceStore({str(tmp_path / 'prefs.sqlite')!r}).pending_queries(), OUT_DIR)"
        in out
    )
    assert "Training waits up to 0.05 s" in out
    assert FileOracle(tmp_path / "labels.jsonl", wait=False, verbose=0).label([make_query(0)]) == [None]
    assert capsys.readouterr().out == ""
