"""How each annotator labels: count, speed, and agreement with the others (``prefwrap annotators RUN_DIR``).

Agreement comes from overlap queries (:mod:`prefwrap.web.leases`): the store's label (the first
answer) against the second answer kept in the annotation journal. A query where either said SKIP is
left out: "can't tell" is not a judgement to agree with. Cohen's kappa corrects the raw agreement for
what two people answering at random with their own answer rates would reach:
``kappa = (p_o - p_e) / (1 - p_e)`` (Cohen 1960, "A coefficient of agreement for nominal scales").

Rankings (queries of ``K > 2`` clips) are compared pair by pair (:func:`pair_answers`): a ranking
says, for each of its ``K (K - 1) / 2`` pairs of clips ``i < j``, LEFT (``i`` ranked better), RIGHT
(``j`` better) or EQUAL (tied), and each pair is one item, agreed on when both annotators' rankings
say the same of it. A reversed pair and a tie against an order both count as a disagreement, as
they would between two answers to that pair asked on its own. Why this rule:

- it is the rule for pairs applied to every pair a ranking implies, so a pair query is exactly one
  item and agreement means the same for every ``K`` ("of the pairs of clips two people judged, the
  fraction they judged alike"), and kappa keeps its three categories;
- counting the pairs two rankings order alike is how rankings have been compared since Kendall
  (1938, "A new measure of rank correlation", Biometrika 30: 81-93): for rankings without ties the
  agreement ``a`` is Kendall's tau as ``tau = 2 a - 1``; the pairwise view of rankings with ties is
  Kemeny and Snell's (1962, "Mathematical Models in the Social Sciences", ch. 2);
- a query of ``K`` clips weighs as much as its ``K (K - 1) / 2`` pairs, which is what its answer
  tells: one disagreement on one pair of a ranking of 6 counts 1 of 15, not a whole query.

The pairs of one ranking are not independent (an order is transitive), so kappa over them is a
description of the annotators, not a test statistic.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from prefwrap.records import Answer, Preference
from prefwrap.store import PreferenceStore
from prefwrap.web.journal import read_journal

__all__ = ["AnnotatorStats", "annotator_stats", "cohen_kappa", "pair_answers", "report"]

MAX_GAP = 300.0
"""Gaps between a labeler's consecutive labels longer than this (s) are breaks, not labeling time."""


@dataclass(frozen=True)
class AnnotatorStats:
    """One labeler's numbers.

    Attributes:
        labeler: As stored with the labels, e.g. ``"human:alice"``.
        n_labels: Answers given: store labels plus second opinions.
        median_seconds: Median seconds per answer (``nan`` when unknown).
        n_overlap: Overlap queries this labeler and another both answered (SKIPs left out).
        agreement: Fraction of the pairs of clips in those queries (one for a pair query,
            ``K (K - 1) / 2`` for a ranking, see the module docstring) that both judged alike
            (``nan`` without any).
        kappa: Cohen's kappa over those pairs of clips (``nan`` without any, or when undefined).
    """

    labeler: str
    n_labels: int
    median_seconds: float
    n_overlap: int
    agreement: float
    kappa: float


def cohen_kappa(first: Sequence[Preference], second: Sequence[Preference]) -> float:
    """Cohen's kappa of two raters' answers to the same items.

    Returns:
        Kappa in ``[-1, 1]``; ``nan`` for no items, or when both raters always gave one same answer
        (chance agreement is then 1 and kappa is undefined).

    Raises:
        ValueError: The sequences differ in length.

    Example:
        >>> L, R = Preference.LEFT, Preference.RIGHT
        >>> round(cohen_kappa([L, L, R, R], [L, R, R, R]), 2)
        0.5
    """
    if len(first) != len(second):
        raise ValueError(f"both raters need the same items, got {len(first)} and {len(second)} answers")
    n = len(first)
    if n == 0:
        return float("nan")
    observed = sum(a == b for a, b in zip(first, second, strict=True)) / n
    categories = set(first) | set(second)
    chance = sum((list(first).count(c) / n) * (list(second).count(c) / n) for c in categories)
    if chance >= 1.0:
        return float("nan")
    return (observed - chance) / (1.0 - chance)


def pair_answers(answer: Answer) -> list[Preference]:
    """What an answer says of each pair of its clips ``i < j``, in the order (0, 1), (0, 2), ... (1, 2), ...

    A pair's answer is its one pair; a ranking's pair ``(i, j)`` is LEFT when ``i`` is ranked
    better, RIGHT when ``j`` is, EQUAL when they are tied.

    Raises:
        ValueError: ``answer`` is SKIP (it says nothing of any pair).

    Example:
        >>> from prefwrap.records import Ranking
        >>> pair_answers(Ranking([[2], [0, 1]]))  # pairs (0, 1), (0, 2), (1, 2)
        [<Preference.EQUAL: 'equal'>, <Preference.RIGHT: 'right'>, <Preference.RIGHT: 'right'>]
    """
    if answer is Preference.SKIP:
        raise ValueError("SKIP says nothing of any pair of clips")
    if isinstance(answer, Preference):
        return [answer]
    ranks = answer.ranks()
    return [
        Preference.LEFT
        if ranks[i] < ranks[j]
        else Preference.RIGHT
        if ranks[i] > ranks[j]
        else Preference.EQUAL
        for i in range(answer.size)
        for j in range(i + 1, answer.size)
    ]


def annotator_stats(store: PreferenceStore) -> list[AnnotatorStats]:
    """Per-labeler statistics of a store and its annotation journal (if the web page wrote one).

    The journal is the file next to a SQLite store or the ``annotation_answers`` table of a
    PostgreSQL store (:mod:`prefwrap.web.journal`); it is read, never created.

    Returns:
        One entry per labeler, most labels first.

    Raises:
        StoreError: The store is closed, or its journal cannot be read.
    """
    labels = store.labels()
    entries = read_journal(store.location)
    timed = {(f"human:{e.annotator}", e.query_id): e.seconds for e in entries}
    seconds: dict[str, list[float]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    last_at: dict[str, float] = {}
    first_answer = {}
    for label in labels:
        counts[label.labeler] += 1
        first_answer[label.query_id] = (label.labeler, label.preference)
        if (label.labeler, label.query_id) in timed:
            seconds[label.labeler].append(timed[label.labeler, label.query_id])
        elif label.labeler in last_at and label.created_at - last_at[label.labeler] <= MAX_GAP:
            seconds[label.labeler].append(label.created_at - last_at[label.labeler])  # no page timing: gaps
        last_at[label.labeler] = label.created_at
    pairs: dict[str, list[tuple[Preference, Preference]]] = defaultdict(list)  # per pair of clips
    n_overlap: dict[str, int] = defaultdict(int)
    for entry in entries:
        if entry.role != "second":
            continue
        labeler = f"human:{entry.annotator}"
        counts[labeler] += 1
        seconds[labeler].append(entry.seconds)
        if entry.query_id not in first_answer:
            continue
        other, other_answer = first_answer[entry.query_id]
        if Preference.SKIP in (entry.preference, other_answer):
            continue
        mine, theirs = pair_answers(entry.preference), pair_answers(other_answer)
        pairs[labeler].extend(zip(mine, theirs, strict=True))
        pairs[other].extend(zip(theirs, mine, strict=True))
        n_overlap[labeler] += 1
        n_overlap[other] += 1
    stats = []
    for labeler, n in counts.items():
        mine = pairs.get(labeler, [])
        stats.append(
            AnnotatorStats(
                labeler=labeler,
                n_labels=n,
                median_seconds=statistics.median(seconds[labeler]) if seconds[labeler] else float("nan"),
                n_overlap=n_overlap[labeler],
                agreement=sum(a == b for a, b in mine) / len(mine) if mine else float("nan"),
                kappa=cohen_kappa([a for a, _ in mine], [b for _, b in mine]),
            )
        )
    return sorted(stats, key=lambda s: (-s.n_labels, s.labeler))


def report(store: PreferenceStore) -> str:
    """The table ``prefwrap annotators RUN_DIR`` prints (one row per labeler).

    Raises:
        StoreError: The store is closed.
    """
    stats = annotator_stats(store)
    if not stats:
        return "No labels yet."
    header = f"{'labeler':<24} {'labels':>6} {'median s/label':>14} {'overlap':>7} {'agree':>6} {'kappa':>6}"
    lines = [header, "-" * len(header)]
    for s in stats:
        lines.append(
            f"{s.labeler:<24} {s.n_labels:>6} {_number(s.median_seconds, '.1f'):>14} {s.n_overlap:>7} "
            f"{_number(100 * s.agreement, '.0f', '%'):>6} {_number(s.kappa, '.2f'):>6}"
        )
    lines.append(
        "overlap: queries two annotators answered (SKIPs left out); agree and kappa count each pair of "
        "clips a ranking orders; training uses the first answer, the second only measures agreement."
    )
    return "\n".join(lines)


def _number(value: float, spec: str, suffix: str = "") -> str:
    return "-" if value != value else f"{value:{spec}}{suffix}"  # value != value: nan
