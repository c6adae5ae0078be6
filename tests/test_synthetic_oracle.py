"""Tests for SyntheticOracle: each B-Pref teacher parameter against its definition."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest

from prefwrap.oracles import synthetic
from prefwrap.oracles.base import BaseOracle, Oracle
from prefwrap.oracles.synthetic import SyntheticOracle
from prefwrap.records import Preference, Query, Segment

L, R, E, S = Preference.LEFT, Preference.RIGHT, Preference.EQUAL, Preference.SKIP


def make_segment(segment_id: int, rewards, length: int | None = None, pad=None) -> Segment:
    """A segment with the given rewards; ``pad`` values are appended after the valid steps."""
    valid = list(rewards)
    length = len(valid) if length is None else length
    values = np.asarray(valid + list(pad or []), dtype=np.float32)
    horizon = len(values)
    return Segment(
        segment_id, np.zeros((horizon, 2), np.float32), np.zeros((horizon, 1), np.float32), values, length
    )


def with_return(segment_id: int, value: float) -> Segment:
    return make_segment(segment_id, [value])


def pairs(*returns: tuple[float, float]) -> list[Query]:
    """One query per (left return, right return) pair, from one-step segments."""
    return [Query(i, with_return(2 * i, a), with_return(2 * i + 1, b)) for i, (a, b) in enumerate(returns)]


def repeated(left: Segment, right: Segment, n: int) -> list[Query]:
    return [Query(i, left, right) for i in range(n)]


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# --- protocol and rational default -----------------------------------------------------------


def test_satisfies_the_oracle_protocol_and_labeler_is_settable():
    oracle = SyntheticOracle()
    assert isinstance(oracle, Oracle) and isinstance(oracle, BaseOracle)
    assert oracle.needs_frames is False and oracle.labeler_for(3) == "synthetic"
    assert oracle.labeler == "synthetic"
    assert SyntheticOracle(labeler="teacher-7").labeler == "teacher-7"
    oracle.labeler = "renamed"
    assert oracle.labeler == "renamed"
    assert oracle.label([]) == []


def test_default_is_rational_with_equal_only_on_exact_ties():
    rng = np.random.default_rng(0)
    rewards = rng.integers(0, 3, size=(400, 4)).astype(np.float32)  # many exact ties
    segments = [make_segment(i, row) for i, row in enumerate(rewards)]
    queries = [Query(i, segments[2 * i], segments[2 * i + 1]) for i in range(200)]
    answers = SyntheticOracle().label(queries)
    assert isinstance(answers, list) and len(answers) == 200
    for query, answer in zip(queries, answers, strict=True):
        difference = query.left.true_return - query.right.true_return
        assert answer == (L if difference > 0 else R if difference < 0 else E)
    assert E in answers and L in answers and R in answers
    # A tiny but real difference is not a tie.
    assert SyntheticOracle().label(pairs((1.0, 1.0 + 1e-6), (0.5, 0.5))) == [R, E]


def test_padding_beyond_length_is_ignored():
    short = make_segment(0, [1.0, 1.0], length=2, pad=[np.nan, 1e30])
    longer = make_segment(1, [0.5, 0.5, 0.5, -1e30], length=3)  # true return 1.5 < 2
    oracle = SyntheticOracle(gamma=0.9, skip_fraction=0.1, equal_fraction=0.1)
    assert oracle.label([Query(0, short, longer)]) == [L]
    assert oracle.effective_skip_threshold == pytest.approx(1.5 + 0.1 * 0.5)
    assert math.isfinite(oracle.effective_equal_threshold)
    # Mixed horizons in one batch.
    mixed = make_segment(2, [3.0], length=1, pad=[-100.0] * 7)
    assert SyntheticOracle().label([Query(0, short, mixed), Query(1, mixed, longer)]) == [R, L]


# --- mistake eps ---------------------------------------------------------------------------------


def test_mistake_flip_rate_matches_eps():
    better, worse = with_return(0, 1.0), with_return(1, 0.0)
    answers = SyntheticOracle(eps=0.1, seed=0).label(repeated(better, worse, 20_000))
    assert set(answers) == {L, R}
    assert answers.count(R) / len(answers) == pytest.approx(0.1, abs=0.01)


def test_eps_one_flips_every_choice_but_never_equal_or_skip():
    oracle = SyntheticOracle(eps=1.0, skip_threshold=0.0, equal_threshold=0.5, seed=0)
    queries = pairs((2.0, 1.0), (1.0, 2.0), (1.0, 1.25), (-1.0, -2.0), (3.0, 3.0))
    assert oracle.label(queries) == [R, L, E, S, E]
    # A rational exact tie (EQUAL from the choice step) is not flipped either.
    assert SyntheticOracle(eps=1.0, seed=0).label(pairs((1.0, 1.0))) == [E]


# --- Boltzmann beta ------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 3.0])
def test_boltzmann_probability_matches_sigmoid_with_fixed_scale(beta):
    n = 4000
    differences = [-2.0, -0.5, 0.0, 0.5, 2.0]
    right = with_return(0, 0.0)
    queries = [
        Query(k * n + i, with_return(1 + k, d), right) for k, d in enumerate(differences) for i in range(n)
    ]
    answers = np.array(SyntheticOracle(beta=beta, beta_scale=1.0, seed=1).label(queries)).reshape(5, n)
    for d, row in zip(differences, answers, strict=True):
        assert set(row) <= {L, R}
        assert np.mean(row == L) == pytest.approx(sigmoid(beta * d), abs=0.03)


def test_beta_scale_is_running_std_of_returns_seen():
    rng = np.random.default_rng(3)
    seen = rng.normal(50.0, 20.0, size=2000).astype(np.float32)
    oracle = SyntheticOracle(beta=1.0, seed=2)
    oracle.observe(make_segment(i, [value]) for i, value in enumerate(seen))
    assert oracle.effective_beta_scale == pytest.approx(np.std(seen.astype(np.float64)), rel=1e-9)
    # The batch being answered joins the statistics first (each appearance of a segment counts).
    n = 5000
    left, right = with_return(10_000, 70.0), with_return(10_001, 50.0)
    answers = oracle.label(repeated(left, right, n))
    expected_scale = np.std(np.concatenate([seen, np.full(n, 70.0), np.full(n, 50.0)]))
    assert oracle.effective_beta_scale == pytest.approx(expected_scale, rel=1e-9)
    assert answers.count(L) / n == pytest.approx(sigmoid(20.0 / expected_scale), abs=0.02)


@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_return_stats_equal_the_exact_statistics_of_the_stream(offset):
    """SB3's RunningMeanStd (no prior count) + min/max give the statistics of everything seen."""
    rng = np.random.default_rng(7)
    stats = synthetic._ReturnStats()
    assert (stats.count, stats.std, stats.min, stats.max) == (0, 0.0, math.inf, -math.inf)
    seen = []
    for size in [1, 0, 7, 1, 300, 2, 50]:  # uneven batches, an empty one, single returns
        batch = offset + rng.normal(3.0, 10.0, size=size)
        stats.update(batch)
        seen.append(batch)
        everything = np.concatenate(seen)
        if everything.size:
            assert stats.count == everything.size
            assert stats.std == pytest.approx(np.std(everything), rel=1e-9, abs=1e-12)
            assert (stats.min, stats.max) == (everything.min(), everything.max())


def test_beta_means_the_same_noise_at_any_reward_scale():
    rng = np.random.default_rng(4)
    rewards = rng.normal(size=(2000, 5)).astype(np.float32)

    def queries(scale: float) -> list[Query]:
        segments = [make_segment(i, row * scale) for i, row in enumerate(rewards)]
        return [Query(i, segments[2 * i], segments[2 * i + 1]) for i in range(1000)]

    def stochastic(scale: float) -> list[Preference]:
        return SyntheticOracle(beta=1.0, seed=5).label(queries(scale))

    assert stochastic(1.0) == stochastic(1024.0) == stochastic(1 / 64)  # powers of two: exact rescaling
    # Not a rational teacher in disguise: some pairs go to the lower return.
    assert stochastic(1.0) != SyntheticOracle().label(queries(1.0))


def test_beta_scale_uses_myopic_returns_when_gamma_below_one():
    segments = [make_segment(i, [float(i), 0.0, float(i % 3)]) for i in range(30)]
    oracle = SyntheticOracle(beta=1.0, gamma=0.5)
    oracle.observe(segments)
    myopic = [s.true_rewards[0] * 0.25 + s.true_rewards[2] for s in segments]
    assert oracle.effective_beta_scale == pytest.approx(np.std(myopic))


# --- myopic gamma --------------------------------------------------------------------------------


def test_myopic_weights_are_gamma_to_the_steps_before_the_end():
    early = make_segment(0, [1.0, 0.0, 0.0])  # myopic return 0.5**2 = 0.25
    oracle = SyntheticOracle(gamma=0.5)
    late = [make_segment(1 + i, [0.0, 0.0, r]) for i, r in enumerate([0.2, 0.25, 0.3])]
    assert oracle.label([Query(i, early, seg) for i, seg in enumerate(late)]) == [L, E, R]
    assert SyntheticOracle().label([Query(i, early, seg) for i, seg in enumerate(late)]) == [L, L, L]
    # H is the valid length: the last valid step has weight 1, padding does not count.
    padded = make_segment(4, [1.0, 0.0], length=2, pad=[0.0, 0.0])  # myopic 0.5, not 0.125
    assert oracle.label([Query(0, padded, make_segment(5, [0.0, 0.5]))]) == [E]


def test_myopic_teacher_changes_the_answer():
    early = make_segment(0, [1.0, 0.0, 0.0, 0.0])  # return 1.0, myopic 0.9**3 = 0.729
    late = make_segment(1, [0.0, 0.0, 0.0, 0.8])  # return 0.8, myopic 0.8
    assert SyntheticOracle().label([Query(0, early, late)]) == [L]
    assert SyntheticOracle.teacher("myopic").label([Query(0, early, late)]) == [R]


# --- skip and equal thresholds -------------------------------------------------------------------


def test_skip_absolute_threshold_is_strict_on_both_returns():
    oracle = SyntheticOracle(skip_threshold=2.0)
    queries = pairs((1.5, 1.75), (1.5, 2.0), (2.0, 1.0), (1.99, 1.99), (-5.0, 3.0))
    assert oracle.label(queries) == [S, R, L, S, R]
    assert SyntheticOracle(skip_threshold=-8.0).label(pairs((-9.0, -8.5), (-9.0, -8.0))) == [S, R]


def test_skip_fraction_is_relative_to_the_range_seen():
    oracle = SyntheticOracle(skip_fraction=0.25)
    assert oracle.effective_skip_threshold == -math.inf
    oracle.observe([with_return(0, 0.0), with_return(1, 8.0)])
    assert oracle.effective_skip_threshold == 2.0  # 0 + 0.25 * (8 - 0)
    assert oracle.label(pairs((1.5, 1.75), (1.5, 2.0), (0.0, 0.0))) == [S, R, S]
    # Negative rewards: the threshold sits in the bottom quarter of [-10, -2].
    negative = SyntheticOracle(skip_fraction=0.25)
    negative.observe([with_return(0, -10.0), with_return(1, -2.0)])
    assert negative.effective_skip_threshold == -8.0
    assert negative.label(pairs((-9.0, -8.5), (-9.0, -8.0))) == [S, R]


def test_equal_absolute_threshold_is_strict():
    oracle = SyntheticOracle(equal_threshold=2.0)
    assert oracle.label(pairs((3.5, 2.0), (4.0, 2.0), (2.0, 4.0), (1.0, 2.99))) == [E, L, R, E]


def test_equal_fraction_is_relative_to_the_range_seen():
    oracle = SyntheticOracle(equal_fraction=0.25)
    oracle.observe([with_return(0, -4.0), with_return(1, 4.0)])
    assert oracle.effective_equal_threshold == 2.0  # 0.25 * (4 - -4)
    assert oracle.label(pairs((3.5, 2.0), (4.0, 2.0), (-2.0, 0.0))) == [E, L, R]


def test_statistics_include_the_batch_being_answered():
    oracle = SyntheticOracle(skip_fraction=0.25, equal_fraction=0.25)
    # First call, nothing observed: range [0, 8] comes from this batch.
    assert oracle.label(pairs((0.0, 8.0), (1.0, 1.5), (5.0, 6.5))) == [R, S, E]
    assert (oracle.effective_skip_threshold, oracle.effective_equal_threshold) == (2.0, 2.0)
    # The range only widens: a later batch never shrinks the thresholds.
    oracle.label(pairs((4.0, 4.5)))
    assert (oracle.effective_skip_threshold, oracle.effective_equal_threshold) == (2.0, 2.0)
    oracle.label(pairs((-8.0, 8.0)))
    assert (oracle.effective_skip_threshold, oracle.effective_equal_threshold) == (-4.0, 4.0)


def test_order_skip_then_equal_then_myopic_choice():
    # Both below the skip threshold and within the equal margin: skip wins.
    both = SyntheticOracle(skip_threshold=2.0, equal_threshold=1.0)
    assert both.label(pairs((1.0, 1.5), (3.0, 3.5))) == [S, E]
    # Equal is judged on true returns, the choice on myopic returns.
    early = make_segment(0, [1.0, 0.0])  # return 1.0, myopic 0.5
    late = make_segment(1, [0.0, 0.75])  # return 0.75, myopic 0.75
    assert SyntheticOracle(gamma=0.5, equal_threshold=0.3).label([Query(0, early, late)]) == [E]
    assert SyntheticOracle(gamma=0.5, equal_threshold=0.2).label([Query(0, early, late)]) == [R]


# --- seeding, presets, validation ----------------------------------------------------------------


def test_reproducible_with_seed():
    rng = np.random.default_rng(6)
    segments = [make_segment(i, row) for i, row in enumerate(rng.normal(size=(600, 3)))]
    queries = [Query(i, segments[2 * i], segments[2 * i + 1]) for i in range(300)]

    def run(seed):
        oracle = SyntheticOracle(beta=1.0, eps=0.2, seed=seed)
        return oracle.label(queries[:100]) + oracle.label(queries[100:])

    assert run(0) == run(0)
    assert run(0) != run(1)
    assert len(run(None)) == 300


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("oracle", {}),
        ("stoch", {"beta": 1.0}),
        ("myopic", {"gamma": 0.9}),
        ("mistake", {"eps": 0.1}),
        ("skip", {"skip_fraction": 0.1}),
        ("equal", {"equal_fraction": 0.1}),
    ],
)
def test_teachers_have_b_pref_values(name, expected):
    oracle = SyntheticOracle.teacher(name, seed=0)
    defaults = {
        "beta": math.inf,
        "gamma": 1.0,
        "eps": 0.0,
        "skip_fraction": 0.0,
        "equal_fraction": 0.0,
        "skip_threshold": None,
        "equal_threshold": None,
        "beta_scale": None,
    }
    assert {key: getattr(oracle, key) for key in defaults} == defaults | expected
    assert oracle.labeler == f"synthetic:{name}"


def test_unknown_teacher_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"teacher 'noisy'.*oracle, stoch, myopic, mistake, skip, equal"):
        SyntheticOracle.teacher("noisy")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beta": -1.0}, "beta .* -1.0"),
        ({"beta": math.nan}, "beta .* nan"),
        ({"gamma": 0.0}, r"gamma .* 0.0"),
        ({"gamma": 1.5}, r"gamma .* 1.5"),
        ({"eps": -0.1}, r"eps .* -0.1"),
        ({"eps": 1.2}, r"eps .* 1.2"),
        ({"skip_fraction": -0.1}, r"skip_fraction .* -0.1"),
        ({"equal_fraction": 1.5}, r"equal_fraction .* 1.5"),
        ({"equal_threshold": -1.0}, r"equal_threshold .* -1.0"),
        ({"skip_threshold": math.inf}, r"skip_threshold .* inf"),
        ({"beta_scale": 0.0}, r"beta_scale .* 0.0"),
        ({"skip_fraction": 0.1, "skip_threshold": 1.0}, r"skip_fraction \(0.1\) or skip_threshold"),
        ({"equal_fraction": 0.1, "equal_threshold": 1.0}, r"equal_fraction \(0.1\) or equal_threshold"),
    ],
)
def test_invalid_arguments_name_the_offending_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SyntheticOracle(**kwargs)


def test_docstring_example_runs():
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner()
    for test in finder.find(synthetic.SyntheticOracle, globs={"SyntheticOracle": SyntheticOracle}):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("name", ["stoch", "myopic", "skip"])
def test_a_restored_oracle_answers_as_the_original_goes_on(name):
    rng = np.random.default_rng(3)
    segments = [make_segment(i, row) for i, row in enumerate(rng.normal(size=(400, 3)))]
    queries = [Query(i, segments[2 * i], segments[2 * i + 1]) for i in range(200)]
    original = SyntheticOracle.teacher(name, seed=0)
    original.label(queries[:100])
    restored = SyntheticOracle.teacher(name, seed=0)
    restored.load_state_dict(original.state_dict())
    assert restored.label(queries[100:]) == original.label(queries[100:])
