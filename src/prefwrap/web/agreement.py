"""How each annotator labels: count, speed, and agreement with the others (``prefwrap annotators RUN_DIR``).

Agreement comes from overlap queries (:mod:`prefwrap.web.leases`): the store's label (the first
answer) against the second answer kept in the annotation journal. A pair where either said SKIP is
left out: "can't tell" is not a judgement to agree with. Cohen's kappa corrects the raw agreement for
what two people answering at random with their own answer rates would reach:
``kappa = (p_o - p_e) / (1 - p_e)``.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from prefwrap.records import Preference
from prefwrap.store import PreferenceStore
from prefwrap.web.journal import AnnotationJournal, journal_path

__all__ = ["AnnotatorStats", "annotator_stats", "cohen_kappa", "report"]

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
        agreement: Fraction of those where the two answers are the same (``nan`` without any).
        kappa: Cohen's kappa over those pairs (``nan`` without any, or when undefined).
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


def annotator_stats(store: PreferenceStore) -> list[AnnotatorStats]:
    """Per-labeler statistics of a store and its annotation journal (if the web page wrote one).

    Returns:
        One entry per labeler, most labels first.

    Raises:
        StoreError: The store is closed.
    """
    labels = store.labels()
    entries = []
    if store.path is not None and journal_path(store.path).is_file():
        journal = AnnotationJournal(journal_path(store.path))
        try:
            entries = journal.entries()
        finally:
            journal.close()
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
    pairs: dict[str, list[tuple[Preference, Preference]]] = defaultdict(list)
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
        pairs[labeler].append((entry.preference, other_answer))
        pairs[other].append((other_answer, entry.preference))
    stats = []
    for labeler, n in counts.items():
        mine = pairs.get(labeler, [])
        stats.append(
            AnnotatorStats(
                labeler=labeler,
                n_labels=n,
                median_seconds=statistics.median(seconds[labeler]) if seconds[labeler] else float("nan"),
                n_overlap=len(mine),
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
        "overlap: queries two annotators answered (SKIPs left out); training uses the first answer, "
        "the second only measures agreement."
    )
    return "\n".join(lines)


def _number(value: float, spec: str, suffix: str = "") -> str:
    return "-" if value != value else f"{value:{spec}}{suffix}"  # value != value: nan
