"""Which candidate queries to ask about: highest ensemble disagreement (the paper) or uniformly random.

A query is a tuple of ``K`` segments (``K = 2``: a pair). The disagreement of a tuple is the mean,
over its ``K(K-1)/2`` pairs, of the variance over ensemble members of the predicted P[i ≻ j]: for a
pair that is the paper's criterion exactly, and for a ranking it favours tuples in which many pairs
are uncertain, which is what a ranking answer resolves at once.

A selector is any object with ``select(candidates, member_returns, n) -> indices``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch

from prefwrap.records import Query, Segment
from prefwrap.reward.fitting import segment_returns
from prefwrap.reward.learned import PREDICTION_CHUNK_STEPS, LearnedReward, step_chunks
from prefwrap.segment_buffer import SegmentBuffer, valid_step_mask


@runtime_checkable
class PairSelector(Protocol):
    """Chooses ``n`` of the candidate queries (pairs or ``K``-tuples) to send to the oracle."""

    def select(self, pairs: np.ndarray, member_returns: torch.Tensor, n: int) -> np.ndarray:
        """Indices into ``pairs`` (shape ``(P, K)`` of segment positions) of the ``n`` queries to ask.

        ``member_returns`` is ``(E, S)``: each member's predicted return of every segment position.
        """
        ...


def preference_disagreement(tuples: np.ndarray, member_returns: torch.Tensor) -> np.ndarray:
    """Disagreement of each candidate query, ``(P,)`` float.

    Args:
        tuples: ``(P, K)`` int segment positions (``K = 2``: pairs, left then right).
        member_returns: ``(E, S)`` predicted return of every position by every member.

    Returns:
        The mean over the tuple's pairs ``(i, j)`` of the variance over members of
        ``sigmoid(R_i - R_j)``; for pairs, the variance of the predicted P[left ≻ right].
    """
    k = tuples.shape[1]
    first, second = np.triu_indices(k, k=1)
    left = torch.as_tensor(tuples[:, first])  # (P, K(K-1)/2)
    right = torch.as_tensor(tuples[:, second])
    p_first = torch.sigmoid(member_returns[:, left] - member_returns[:, right])  # (E, P, pairs)
    return p_first.var(dim=0, unbiased=False).mean(dim=-1).cpu().numpy()


class DisagreementSelector:
    """Picks the queries on which ensemble members disagree most about which segment is better."""

    def select(self, pairs: np.ndarray, member_returns: torch.Tensor, n: int) -> np.ndarray:
        scores = preference_disagreement(pairs, member_returns)
        return np.argsort(-scores, kind="stable")[:n]


class RandomSelector:
    """Picks queries uniformly at random (the ablation baseline)."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)

    def select(self, pairs: np.ndarray, member_returns: torch.Tensor, n: int) -> np.ndarray:
        return self._rng.choice(len(pairs), size=min(n, len(pairs)), replace=False)

    def state_dict(self) -> dict[str, object]:
        """The generator's state (a resumed run picks what the uninterrupted run would)."""
        return dict(self._rng.bit_generator.state)

    def load_state_dict(self, state: dict[str, object]) -> None:
        """Restore :meth:`state_dict`."""
        self._rng.bit_generator.state = state


def make_selector(selection: str | PairSelector, seed: int | None) -> PairSelector:
    """The selector named by ``selection`` (``"disagreement"`` or ``"random"``), or ``selection`` itself.

    Raises:
        ValueError: ``selection`` is neither a known name nor a :class:`PairSelector`.
    """
    if selection == "disagreement":
        return DisagreementSelector()
    if selection == "random":
        return RandomSelector(seed)
    if isinstance(selection, PairSelector):
        return selection
    raise ValueError(f"selection must be 'disagreement', 'random' or a PairSelector, got {selection!r}")


def candidate_tuples(
    rng: np.random.Generator, n_rows: int, n_candidates: int, k: int, focus_recent: bool = False
) -> np.ndarray:
    """Up to ``n_candidates`` distinct sets of ``k`` distinct rows (rows newest last), ``(P, k)`` int.

    Pairs (``k = 2``) keep the older row first. Larger tuples are drawn with replacement, tuples with
    a repeated row dropped, and each is put in a random display order. With ``focus_recent``, half
    of the candidates take one row from the newest tenth (the policy's recent segments).

    Args:
        rng: The caller's generator.
        n_rows: Rows to draw from, ``>= k``.
        n_candidates: Draws.
        k: Segments per query.
        focus_recent: Draw half of the candidates' first rows from the newest tenth.
    """
    if k == 2:
        left = rng.integers(0, n_rows, size=n_candidates)
        if focus_recent:
            recent = max(2, n_rows // 10)
            half = n_candidates // 2
            left[:half] = n_rows - 1 - rng.integers(0, recent, size=half)
        right = (left + rng.integers(1, n_rows, size=n_candidates)) % n_rows
        pairs = np.sort(np.stack([left, right], axis=1), axis=1)
        _, first = np.unique(pairs, axis=0, return_index=True)
        return pairs[np.sort(first)]
    draws = rng.integers(0, n_rows, size=(n_candidates, k))
    if focus_recent:
        half = n_candidates // 2
        draws[:half, 0] = n_rows - 1 - rng.integers(0, max(k, n_rows // 10), size=half)
    tuples = np.sort(draws, axis=1)
    tuples = tuples[(np.diff(tuples, axis=1) > 0).all(axis=1)]  # drop tuples with a repeated row
    _, first = np.unique(tuples, axis=0, return_index=True)
    tuples = tuples[np.sort(first)]
    return np.take_along_axis(tuples, np.argsort(rng.random(tuples.shape), axis=1), axis=1)


def choose_tuples(
    rng: np.random.Generator,
    reward: LearnedReward,
    segments: SegmentBuffer,
    rows: np.ndarray,
    n: int,
    k: int,
    candidate_factor: int,
    selector: PairSelector,
    focus_recent: bool = False,
) -> tuple[np.ndarray, float]:
    """The queries to ask: ``n`` of ``n * candidate_factor`` candidate ``k``-tuples of ``rows``.

    A fitted ensemble scores only the segments that appear in a candidate (cheap even for image
    buffers) and ``selector`` picks; an unfitted ensemble's disagreement is noise, so the first
    batch is drawn at random.

    Returns:
        ``(chosen, disagreement)``: ``(n', k)`` positions into ``rows`` (``n' <= n``), and their
        mean :func:`preference_disagreement` (nan before the first fit).
    """
    tuples = candidate_tuples(rng, len(rows), n * candidate_factor, k, focus_recent)
    if not reward.fitted:
        return tuples[rng.choice(len(tuples), size=min(n, len(tuples)), replace=False)], float("nan")
    scored, positions = np.unique(tuples, return_inverse=True)
    positions = positions.reshape(tuples.shape)
    member_returns = buffer_member_returns(reward, segments, rows[scored])
    chosen = selector.select(positions, member_returns, n)
    return tuples[chosen], float(preference_disagreement(positions[chosen], member_returns).mean())


@torch.no_grad()
def buffer_member_returns(reward: LearnedReward, segments: SegmentBuffer, rows: np.ndarray) -> torch.Tensor:
    """``(E, len(rows))``: each ensemble member's predicted return of the given buffer rows.

    Scored in chunks of segments, so memory stays bounded (image stacks are rebuilt per chunk).
    """
    model = reward.model
    model.eval()
    mask = valid_step_mask(segments.lengths[rows], segments.segment_length)
    absorbing = segments.absorbing_steps(rows)
    returns = []
    for chunk in step_chunks(len(rows), PREDICTION_CHUNK_STEPS // segments.segment_length):
        returns.append(
            segment_returns(
                model,
                torch.as_tensor(segments.observations_of(rows[chunk]), device=reward.device),
                torch.as_tensor(segments.actions[rows[chunk]], device=reward.device),
                torch.as_tensor(mask[chunk], dtype=torch.float32, device=reward.device),
                torch.as_tensor(absorbing[chunk], dtype=torch.float32, device=reward.device),
            ).cpu()
        )
    return torch.cat(returns, dim=1)


def queries_of(
    chosen: np.ndarray, rows: np.ndarray, segments: SegmentBuffer, first_query_id: int
) -> list[Query]:
    """Queries ``first_query_id, ...`` of the ``(n, K)`` positions into ``rows`` that
    :func:`choose_tuples` chose; a segment in several queries is copied (and rendered) once."""
    read: dict[int, Segment] = {}

    def segment_at(position: int) -> Segment:
        row = int(rows[position])
        if row not in read:
            read[row] = segments.segment(row)
        return read[row]

    return [
        Query.of(first_query_id + i, [segment_at(p) for p in positions]) for i, positions in enumerate(chosen)
    ]
