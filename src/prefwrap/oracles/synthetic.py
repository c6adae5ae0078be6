"""Simulated teachers that answer from the true reward: the B-Pref teachers (Lee et al., 2021).

The rational teacher prefers the segment with the higher true return. The B-Pref variants add
Boltzmann noise (``beta``), myopia (``gamma``), mistakes (``eps``), skipping (``skip_*``) and
"equally good" answers (``equal_*``). See ``docs/oracles-synthetic.md``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from stable_baselines3.common.running_mean_std import RunningMeanStd

from prefwrap.oracles.base import BaseOracle
from prefwrap.records import Preference, Query, Ranking, Segment

# Answer codes: RIGHT/LEFT are 0/1 so that a mistake is ``1 - code``.
_RIGHT, _LEFT, _EQUAL, _SKIP = 0, 1, 2, 3
_ANSWERS = (Preference.RIGHT, Preference.LEFT, Preference.EQUAL, Preference.SKIP)

# B-Pref's teacher settings (Lee et al., 2021, Sec. 4), by B-Pref's teacher names.
_TEACHERS: dict[str, dict[str, float]] = {
    "oracle": {},
    "stoch": {"beta": 1.0},
    "myopic": {"gamma": 0.9},
    "mistake": {"eps": 0.1},
    "skip": {"skip_fraction": 0.1},
    "equal": {"equal_fraction": 0.1},
}


class _ReturnStats:
    """Running count, mean, std, min and max of a stream of returns.

    Mean and variance are SB3's :class:`~stable_baselines3.common.running_mean_std.RunningMeanStd`
    (Chan et al.'s parallel update, float64); min and max are kept alongside for the thresholds.

    Attributes:
        min: Lowest return seen; ``inf`` before any.
        max: Highest return seen; ``-inf`` before any.
    """

    def __init__(self) -> None:
        # epsilon=0: no prior pseudo-count, so the mean and (population) variance are exactly those
        # of the returns seen, as B-Pref's thresholds and beta scale assume.
        self._moments = RunningMeanStd(epsilon=0.0)
        self.min = math.inf
        self.max = -math.inf

    @property
    def count(self) -> int:
        """Number of returns seen."""
        return int(self._moments.count)

    @property
    def std(self) -> float:
        """Population standard deviation of the returns seen; ``0.0`` before any."""
        return math.sqrt(float(self._moments.var)) if self.count else 0.0

    def update(self, values: np.ndarray) -> None:
        """Merge a batch of returns, shape ``(n,)`` float64; an empty batch changes nothing."""
        if values.size == 0:
            return  # RunningMeanStd would divide by a zero count
        self._moments.update(values)
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))

    def state_dict(self) -> dict[str, float]:
        """Count, mean, variance, min and max as plain floats."""
        moments = self._moments
        return {
            "count": float(moments.count),
            "mean": float(moments.mean),
            "var": float(moments.var),
            "min": self.min,
            "max": self.max,
        }

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore :meth:`state_dict`."""
        self._moments.count = state["count"]
        self._moments.mean = np.float64(state["mean"])
        self._moments.var = np.float64(state["var"])
        self.min, self.max = state["min"], state["max"]


def _segment_returns(segments: Sequence[Segment], gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """True and myopic returns over each segment's valid steps.

    Step ``t`` of a segment with ``length`` valid steps is weighted ``gamma ** (length - 1 - t)``
    in the myopic return. Padding (steps ``length:``) is ignored, whatever it holds.

    Returns:
        ``(returns, myopic_returns)``, each shape ``(n,)``, float64.
    """
    n = len(segments)
    lengths = np.fromiter((s.length for s in segments), dtype=np.int64, count=n)
    horizons = {s.true_rewards.shape[0] for s in segments}
    if len(horizons) == 1:
        rewards = np.stack([s.true_rewards for s in segments]).astype(np.float64)
    else:  # mixed horizons in one batch: pad to the longest
        rewards = np.zeros((n, max(horizons)))
        for i, segment in enumerate(segments):
            rewards[i, : segment.true_rewards.shape[0]] = segment.true_rewards
    steps = np.arange(rewards.shape[1])
    rewards = np.where(steps < lengths[:, None], rewards, 0.0)  # where, not *, so NaN padding vanishes
    returns = rewards.sum(axis=1)
    if gamma == 1.0:
        return returns, returns
    weights = gamma ** np.maximum(lengths[:, None] - 1 - steps, 0)
    return returns, (rewards * weights).sum(axis=1)


class SyntheticOracle(BaseOracle):
    """A simulated teacher answering from the segments' true rewards (B-Pref's teachers).

    Each query is answered in B-Pref's order, from the returns over the valid steps:

    1. **skip**: ``SKIP`` if both returns are ``< skip threshold``;
    2. **equal**: else ``EQUAL`` if ``|R_left - R_right| < equal threshold``;
    3. **choice** on the myopic returns (step ``t`` of ``H`` valid steps weighted
       ``gamma ** (H - 1 - t)``): with ``beta = inf`` the higher one wins and an exact tie is
       ``EQUAL``; otherwise ``P(LEFT) = sigmoid(beta * (R_left - R_right) / scale)``;
    4. **mistake**: a ``LEFT``/``RIGHT`` answer is flipped with probability ``eps``.

    A query of ``K > 2`` segments gets a :class:`~prefwrap.records.Ranking` from the same teacher,
    each step generalised so that ``K = 2`` would give the same answers with the same probabilities:
    **skip** if all ``K`` returns are below the skip threshold; **choice**: with ``beta = inf`` the
    segments in decreasing myopic return (exact ties in one group), otherwise a Plackett-Luce draw
    with scores ``beta * R / scale`` (sorting ``beta * R / scale`` plus Gumbel noise, which for a pair is
    the sigmoid above); **mistake**: with probability ``eps`` the whole ranking is reversed; **equal**:
    going down the ranking, a segment whose true return is within the equal threshold of the one
    before it joins that one's group.

    Thresholds and ``scale`` are relative to the returns the oracle has seen: every segment of
    every query passed to :meth:`label` (the current batch included, before answering it) or to
    :meth:`observe`. With ``lo``/``hi`` the lowest/highest true return seen, the skip threshold
    is ``lo + skip_fraction * (hi - lo)`` ("both in the bottom fraction of the range seen"), the
    equal threshold is ``equal_fraction * (hi - lo)``, and ``scale`` is the standard deviation of
    the (myopic) returns seen, so ``beta`` means the same noise level in every environment.
    Absolute ``skip_threshold``/``equal_threshold``/``beta_scale`` replace these when given.

    Args:
        beta: Rationality; ``inf`` is the rational teacher, ``0`` answers at random.
        gamma: Myopia discount in ``(0, 1]``; ``1`` weighs all steps equally.
        eps: Probability of flipping a ``LEFT``/``RIGHT`` answer, in ``[0, 1]``.
        skip_fraction: Skip threshold as a fraction of the range of returns seen, in ``[0, 1]``.
        equal_fraction: Equal threshold as a fraction of the range of returns seen, in ``[0, 1]``.
        skip_threshold: Absolute skip threshold (a return level; may be negative).
        equal_threshold: Absolute equal threshold, ``>= 0``.
        beta_scale: Fixed divisor of the return difference; ``1.0`` gives B-Pref's raw-return beta.
        seed: Seed of the oracle's own random generator.
        labeler: Id stored with each label.

    Raises:
        ValueError: An argument is out of range, or both a fraction and an absolute threshold are
            given for skip or equal (the message names the argument and its value).

    Example:
        >>> import numpy as np
        >>> from prefwrap.records import Query, Segment
        >>> def segment(i, rewards):
        ...     r = np.asarray(rewards, dtype=np.float32)
        ...     features = np.zeros((len(r), 1), dtype=np.float32)
        ...     return Segment(i, features, features, r, length=len(r))
        >>> good, bad = segment(0, [1.0, 1.0]), segment(1, [0.0, 0.5])
        >>> SyntheticOracle().label([Query(0, good, bad), Query(1, bad, good), Query(2, bad, bad)])
        [<Preference.LEFT: 'left'>, <Preference.RIGHT: 'right'>, <Preference.EQUAL: 'equal'>]
        >>> oracle = SyntheticOracle.teacher("mistake", seed=0)
        >>> oracle.labeler, oracle.eps
        ('synthetic:mistake', 0.1)
    """

    def __init__(
        self,
        *,
        beta: float = math.inf,
        gamma: float = 1.0,
        eps: float = 0.0,
        skip_fraction: float = 0.0,
        equal_fraction: float = 0.0,
        skip_threshold: float | None = None,
        equal_threshold: float | None = None,
        beta_scale: float | None = None,
        seed: int | None = None,
        labeler: str = "synthetic",
    ) -> None:
        if not beta >= 0:  # also rejects NaN
            raise ValueError(f"beta must be >= 0 (inf = rational), got {beta!r}")
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
        if not 0 <= eps <= 1:
            raise ValueError(f"eps must be in [0, 1], got {eps!r}")
        for name, value in (("skip_fraction", skip_fraction), ("equal_fraction", equal_fraction)):
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if skip_threshold is not None and not math.isfinite(skip_threshold):
            raise ValueError(f"skip_threshold must be finite, got {skip_threshold!r}")
        if equal_threshold is not None and not 0 <= equal_threshold < math.inf:
            raise ValueError(f"equal_threshold must be finite and >= 0, got {equal_threshold!r}")
        if beta_scale is not None and not 0 < beta_scale < math.inf:
            raise ValueError(f"beta_scale must be finite and > 0, got {beta_scale!r}")
        if skip_threshold is not None and skip_fraction:
            raise ValueError(f"pass skip_fraction ({skip_fraction!r}) or skip_threshold, not both")
        if equal_threshold is not None and equal_fraction:
            raise ValueError(f"pass equal_fraction ({equal_fraction!r}) or equal_threshold, not both")
        self.beta = float(beta)
        self.gamma = float(gamma)
        self.eps = float(eps)
        self.skip_fraction = float(skip_fraction)
        self.equal_fraction = float(equal_fraction)
        self.skip_threshold = skip_threshold
        self.equal_threshold = equal_threshold
        self.beta_scale = beta_scale
        self.labeler = labeler
        self._rng = np.random.default_rng(seed)
        self._returns = _ReturnStats()  # true returns: thresholds
        self._myopic = self._returns if self.gamma == 1.0 else _ReturnStats()  # choice returns: scale

    @classmethod
    def teacher(cls, name: str, seed: int | None = None) -> SyntheticOracle:
        """Build one of B-Pref's simulated teachers by its B-Pref name, labeled ``"synthetic:<name>"``.

        Args:
            name: ``oracle`` (rational), ``stoch`` (``beta=1``), ``myopic`` (``gamma=0.9``),
                ``mistake`` (``eps=0.1``), ``skip`` (``skip_fraction=0.1``) or ``equal``
                (``equal_fraction=0.1``).
            seed: Seed of the teacher's own random generator.

        Raises:
            ValueError: ``name`` is not one of B-Pref's teachers (the message lists them).
        """
        if name not in _TEACHERS:
            raise ValueError(f"unknown B-Pref teacher {name!r}; valid names: {', '.join(_TEACHERS)}")
        return cls(**_TEACHERS[name], seed=seed, labeler=f"synthetic:{name}")

    @property
    def effective_skip_threshold(self) -> float:
        """The skip threshold now in force; ``-inf`` when skipping is off or nothing is seen yet."""
        if self.skip_threshold is not None:
            return float(self.skip_threshold)
        if self.skip_fraction == 0 or self._returns.count == 0:
            return -math.inf
        return self._returns.min + self.skip_fraction * (self._returns.max - self._returns.min)

    @property
    def effective_equal_threshold(self) -> float:
        """The equal threshold now in force (``0`` = only the rational exact tie)."""
        if self.equal_threshold is not None:
            return float(self.equal_threshold)
        if self._returns.count == 0:
            return 0.0
        return self.equal_fraction * (self._returns.max - self._returns.min)

    @property
    def effective_beta_scale(self) -> float:
        """The divisor of return differences under ``beta``: ``beta_scale``, else the std seen.

        Falls back to ``1.0`` while the std is ``0`` (then every difference seen is ``0`` anyway).
        """
        if self.beta_scale is not None:
            return float(self.beta_scale)
        return self._myopic.std or 1.0

    def observe(self, segments: Iterable[Segment]) -> None:
        """Add segments to the return statistics without answering anything.

        Useful to set the thresholds and the ``beta`` scale from all collected segments rather
        than only the queried ones.
        """
        segments = list(segments)
        if segments:
            self._update(*_segment_returns(segments, self.gamma))

    def label(self, queries: Sequence[Query]) -> list[Preference | Ranking]:
        """Answer each query (never ``None``); updates the statistics with this batch first.

        Pairs get a :class:`Preference`, larger queries a :class:`Ranking` or ``SKIP``.
        """
        if not queries:
            return []
        pairs = [i for i, query in enumerate(queries) if query.size == 2]
        rankings = [i for i, query in enumerate(queries) if query.size > 2]
        segments = [queries[i].left for i in pairs] + [queries[i].right for i in pairs]
        segments += [segment for i in rankings for segment in queries[i].segments]
        returns, myopic = _segment_returns(segments, self.gamma)
        self._update(returns, myopic)
        answers: list[Preference | Ranking] = [Preference.SKIP] * len(queries)
        m = 2 * len(pairs)
        for i, answer in zip(pairs, self._answer_pairs(returns[:m], myopic[:m]), strict=True):
            answers[i] = answer
        for i in rankings:
            k = queries[i].size
            answers[i] = self._rank(returns[m : m + k], myopic[m : m + k])
            m += k
        return answers

    def _answer_pairs(self, returns: np.ndarray, myopic: np.ndarray) -> list[Preference]:
        """Answers to ``n`` pairs from ``(2n,)`` true and myopic returns (lefts first, then rights)."""
        n = len(returns) // 2
        if n == 0:
            return []
        # Decide every query, then let equal and skip override: the same as B-Pref's order,
        # and the generator draws a fixed n numbers per stage whatever the thresholds.
        diff = myopic[:n] - myopic[n:]
        if math.isinf(self.beta):
            codes = np.where(diff > 0, _LEFT, np.where(diff < 0, _RIGHT, _EQUAL))
        else:
            logits = self.beta * diff / self.effective_beta_scale
            p_left = 0.5 * (1.0 + np.tanh(0.5 * logits))  # sigmoid, without overflow
            codes = np.where(self._rng.random(n) < p_left, _LEFT, _RIGHT)
        if self.eps > 0:
            flip = (self._rng.random(n) < self.eps) & (codes != _EQUAL)
            codes = np.where(flip, 1 - codes, codes)
        left, right = returns[:n], returns[n:]
        codes[np.abs(left - right) < self.effective_equal_threshold] = _EQUAL
        skip = self.effective_skip_threshold
        codes[(left < skip) & (right < skip)] = _SKIP
        return [_ANSWERS[code] for code in codes.tolist()]

    def _rank(self, returns: np.ndarray, myopic: np.ndarray) -> Preference | Ranking:
        """The ranking of one query from its ``(K,)`` true and myopic returns (see the class)."""
        if math.isinf(self.beta):
            order = np.argsort(-myopic, kind="stable")
            groups: list[list[int]] = []
            for position in order.tolist():
                if groups and myopic[position] == myopic[groups[-1][-1]]:
                    groups[-1].append(position)  # an exact tie, as a pair's EQUAL
                else:
                    groups.append([position])
        else:
            keys = self.beta * myopic / self.effective_beta_scale + self._rng.gumbel(size=len(myopic))
            groups = [[position] for position in np.argsort(-keys).tolist()]
        if self.eps > 0 and self._rng.random() < self.eps:
            groups.reverse()
        merged: list[list[int]] = []
        threshold = self.effective_equal_threshold
        for group in groups:
            if merged and abs(returns[group[0]] - returns[merged[-1][-1]]) < threshold:
                merged[-1].extend(group)
            else:
                merged.append(list(group))
        if bool((returns < self.effective_skip_threshold).all()):
            return Preference.SKIP
        return Ranking(merged)

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to answer as this oracle would go on answering: its generator and
        the return statistics behind its thresholds and noise scale (plain types, for
        ``torch.load(weights_only=True)``)."""
        return {
            "rng": self._rng.bit_generator.state,
            "returns": self._returns.state_dict(),
            "myopic": self._myopic.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` into an oracle of the same teacher."""
        self._rng.bit_generator.state = state["rng"]
        self._returns.load_state_dict(state["returns"])
        if self._myopic is not self._returns:
            self._myopic.load_state_dict(state["myopic"])

    def _update(self, returns: np.ndarray, myopic: np.ndarray) -> None:
        self._returns.update(returns)
        if self._myopic is not self._returns:
            self._myopic.update(myopic)

    def __repr__(self) -> str:
        return (
            f"SyntheticOracle(labeler={self.labeler!r}, beta={self.beta}, gamma={self.gamma}, "
            f"eps={self.eps}, skip_fraction={self.skip_fraction}, equal_fraction={self.equal_fraction}, "
            f"skip_threshold={self.skip_threshold}, equal_threshold={self.equal_threshold}, "
            f"beta_scale={self.beta_scale})"
        )
