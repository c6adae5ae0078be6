"""Entering a ranking step by step (prefwrap.oracles.ranking_entry), without a window."""

from __future__ import annotations

import pytest

from prefwrap.oracles.ranking_entry import RankingEntry, answer_text, ordinal
from prefwrap.records import Preference, Ranking


def run(size: int, *steps: int | str) -> tuple[RankingEntry, object]:
    """Apply steps (a clip position, or "=", "rest", "undo") until one finishes the ranking."""
    entry = RankingEntry(size)
    for step in steps:
        if step == "=":
            entry.tie()
        elif step == "undo":
            entry.undo()
        elif step == "rest":
            return entry, entry.rest_equal()
        else:
            done = entry.place(int(step))
            if done is not None:
                return entry, done
    return entry, None


@pytest.mark.parametrize(
    ("size", "steps", "expected"),
    [
        (3, (2, 0), Ranking([[2], [0], [1]])),  # K - 1 presses; the last clip takes the last rank
        (3, (1, "rest"), Ranking([[1], [0, 2]])),
        (3, ("rest",), Ranking([[0, 1, 2]])),  # all equal
        (4, (2, 0, "=", 3), Ranking([[2], [0, 3], [1]])),  # a tie in the middle
        (4, (2, "=", 0, 3), Ranking([[0, 2], [3], [1]])),
        (4, (1, 0, "rest"), Ranking([[1], [0], [2, 3]])),
        (4, (3, 2, "undo", 0, 1), Ranking([[3], [0], [1], [2]])),
        (4, (3, "=", "undo", 2, 1), Ranking([[3], [2], [1], [0]])),  # undo takes back a tie not yet used
        (2, (1,), Preference.RIGHT),  # a pair's ranking is the Preference it means
        (2, (0,), Preference.LEFT),
        (2, ("rest",), Preference.EQUAL),
    ],
)
def test_steps_give_the_exact_answer(size: int, steps: tuple[int | str, ...], expected: object) -> None:
    _, answer = run(size, *steps)
    assert answer == expected


def test_steps_that_do_not_apply_change_nothing_and_say_why() -> None:
    entry = RankingEntry(4)
    entry.tie()
    assert "rank a clip first" in entry.notice and not entry.tie_pending
    assert entry.place(2) is None
    assert entry.place(2) is None and "clip 3 is ranked already" in entry.notice
    assert entry.place(7) is None and "press 1 to 4" in entry.notice
    assert entry.groups == [[2]]
    assert entry.undo() and entry.groups == [] and not entry.undo()
    assert "nothing to undo" in entry.notice


def test_ranks_so_far_and_their_text() -> None:
    entry, answer = run(5, 2, 0, "=", 4)
    assert answer is None
    assert [entry.rank_of(p) for p in range(5)] == [1, None, 0, None, 1]
    assert [entry.is_tied(p) for p in range(5)] == [True, False, False, False, True]
    assert entry.text() == "3 > 1 = 5"
    entry.tie()
    assert entry.text() == "3 > 1 = 5 = ..."
    assert entry.unplaced == [1, 3]


def test_answer_text_and_ordinals() -> None:
    assert answer_text(Ranking([[2], [0, 3], [1]])) == "3 > 1 = 4 > 2"
    assert answer_text(Preference.SKIP) == "SKIP (can't tell)"
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="at least 2"):
        RankingEntry(1)
