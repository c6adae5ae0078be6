"""A ranking of a query's clips, entered one key press at a time: best clip first.

:class:`RankingEntry` is what the labeling window (:mod:`prefwrap.oracles.labeling_window`) keeps
while a person ranks ``K`` clips; it knows nothing about pygame. The web page does the same in
``prefwrap/web/static/ranking.js``, with the same rules:

- *place* a clip (its number key): it takes the next rank, below the clips placed so far;
- *tie* (``=``): the next clip placed shares the rank of the one placed last;
- *rest equal* (Space): all clips not placed yet share the last rank, which ends the ranking;
- *undo*: takes back the last step (a tie not yet used, else the last clip placed);
- once a single clip is left it takes the last rank by itself, which ends the ranking.

So a ranking of ``K`` clips takes at most ``K - 1`` presses (3 then 1 ranks three clips:
``[[2], [0], [1]]``), and any ordering with ties can be entered (3, 1, ``=``, 4 gives
``[[2], [0, 3], [1]]``).
"""

from __future__ import annotations

from prefwrap.records import Answer, Preference, Ranking, normalize_answer

__all__ = ["RankingEntry", "answer_text", "ordinal"]

_PAIR_TEXT = {
    Preference.LEFT: "LEFT is better",
    Preference.RIGHT: "RIGHT is better",
    Preference.EQUAL: "EQUAL",
    Preference.SKIP: "SKIP (can't tell)",
}


def ordinal(rank: int) -> str:
    """``1`` -> ``"1st"``, ``2`` -> ``"2nd"``, ... (ranks shown to people start at 1)."""
    suffix = "th" if rank % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(rank % 10, "th")
    return f"{rank}{suffix}"


def answer_text(answer: Answer) -> str:
    """An answer as a person reads it: ``"LEFT is better"``, or a ranking by clip numbers from 1.

    Example:
        >>> answer_text(Ranking([[2], [0, 3], [1]]))
        '3 > 1 = 4 > 2'
    """
    if isinstance(answer, Preference):
        return _PAIR_TEXT[answer]
    return " > ".join(" = ".join(str(p + 1) for p in group) for group in answer.groups)


class RankingEntry:
    """The ranking of ``size`` clips entered so far (see the module docstring for the rules).

    Every step returns the finished answer once the ranking is complete, else ``None``. A step that
    does not apply (a clip placed twice, a tie before any clip) changes nothing and says why in
    :attr:`notice`.

    Args:
        size: ``K``, the number of clips (2 to 6).

    Attributes:
        groups: The ranks given so far, best first; each a list of clip positions (from 0).
        tie_pending: The next clip placed joins the last group.
        notice: Why the last step did nothing (``""`` after a step that did something).

    Raises:
        ValueError: ``size`` is below 2.

    Example:
        >>> entry = RankingEntry(4)
        >>> entry.place(2), entry.place(0), entry.tie()
        (None, None, None)
        >>> entry.place(3)
        Ranking(groups=((2,), (0, 3), (1,)))
    """

    def __init__(self, size: int) -> None:
        if size < 2:
            raise ValueError(f"a ranking orders at least 2 clips, got {size}")
        self.size = size
        self.groups: list[list[int]] = []
        self.tie_pending = False
        self.notice = ""

    @property
    def unplaced(self) -> list[int]:
        """Clips not ranked yet, in display order."""
        placed = {p for group in self.groups for p in group}
        return [p for p in range(self.size) if p not in placed]

    def rank_of(self, position: int) -> int | None:
        """The rank (0 = best) given to clip ``position`` so far, or ``None``."""
        for rank, group in enumerate(self.groups):
            if position in group:
                return rank
        return None

    def is_tied(self, position: int) -> bool:
        """Whether clip ``position`` shares its rank with another clip."""
        rank = self.rank_of(position)
        return rank is not None and len(self.groups[rank]) > 1

    def text(self) -> str:
        """The ranking so far by clip numbers from 1, e.g. ``"3 > 1 = ..."`` after 3, 1, ``=``."""
        text = " > ".join(" = ".join(str(p + 1) for p in group) for group in self.groups)
        return text + (" = ..." if self.tie_pending else "")

    def place(self, position: int) -> Answer | None:
        """Give clip ``position`` the next rank (or the last one's, after :meth:`tie`)."""
        self.notice = ""
        if not 0 <= position < self.size:
            self.notice = f"there are {self.size} clips: press 1 to {self.size}"
            return None
        if self.rank_of(position) is not None:
            self.notice = f"clip {position + 1} is ranked already (undo takes it back)"
            return None
        if self.tie_pending:
            self.groups[-1].append(position)
            self.tie_pending = False
        else:
            self.groups.append([position])
        rest = self.unplaced
        return self._finish([*self.groups, rest]) if len(rest) == 1 else None

    def tie(self) -> None:
        """Make the next clip placed share the rank of the clip placed last."""
        self.notice = ""
        if not self.groups:
            self.notice = "= ties the next clip with the one ranked last: rank a clip first"
            return
        self.tie_pending = True

    def rest_equal(self) -> Answer:
        """All clips not placed yet share the last rank: the finished answer."""
        self.notice = ""
        rest = self.unplaced
        return self._finish([*self.groups, rest] if rest else self.groups)

    def undo(self) -> bool:
        """Take back the last step; ``False`` (and a :attr:`notice`) when there is none."""
        self.notice = ""
        if self.tie_pending:
            self.tie_pending = False
            return True
        if not self.groups:
            self.notice = "nothing to undo on this query"
            return False
        self.groups[-1].pop()
        if not self.groups[-1]:
            self.groups.pop()
        return True

    def _finish(self, groups: list[list[int]]) -> Answer:
        # a pair's ranking is stored and shown as the Preference it means (LEFT, RIGHT, EQUAL)
        return normalize_answer(Ranking(groups), self.size)
