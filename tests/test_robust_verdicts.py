"""Verdicts that hold when the paired differences are not Gaussian, measured through the real ``confirm``.

Two guards (:mod:`kdtune.analysis.sequential`, "Skewed differences"): Hall's skewness-corrected interval at
every look, and a directional verdict ("distil", "hurts") only from enough pairs that a failure hitting
``budget.confirm_failure_rate`` of the distilled runs would have shown. The limits are binomial quantiles at the
condition's error rate (one-sided 1e-3), never counts copied from a run; the seeds are fixed.
alpha is the weight on the true labels: alpha = 1 means no distillation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from kdtune.analysis.sequential import Design
from kdtune.analysis.sequential import Interval
from kdtune.analysis.sequential import repeated_interval
from kdtune.analysis.verdicts import ConfirmedArm
from kdtune.analysis.verdicts import classify
from kdtune.analysis.verdicts import confirm
from kdtune.spec.rules import family_level
from kdtune.spec.rules import min_directional_pairs


TAIL = 1e-3
FAILURE_RATE = 0.1  # one distilled run in ten fails ...
FAILURE_LOSS = 10.0  # ... losing 10 paired SDs; the other nine gain 10/9 of one: mean zero


@pytest.mark.parametrize("conditions", [1, 2, 4, 8])
@pytest.mark.parametrize("rate", [0.05, 0.1, 0.25])
def test_a_directional_verdict_waits_until_a_failure_this_common_would_have_shown(conditions: int, rate: float) -> None:
    level = family_level(conditions, 1)
    n = min_directional_pairs(level, rate)
    assert (1 - rate) ** n <= level < (1 - rate) ** (n - 1)


def test_no_failure_rate_means_no_wait() -> None:
    assert min_directional_pairs(0.05, 0.0) == 2


def _interval(low: float, high: float, n: int) -> Interval:
    return Interval(mean=(low + high) / 2, low=low, high=high, n=n, sd=1.0, nominal_level=0.01, confidence=0.95)


def test_an_interval_that_excludes_0_on_too_few_pairs_is_inconclusive_or_no_gain() -> None:
    assert classify(_interval(0.1, 0.9, 28), margin=None, min_pairs=29) == "inconclusive"
    assert classify(_interval(-0.9, -0.1, 28), margin=None, min_pairs=29) == "inconclusive"
    assert classify(_interval(0.1, 0.9, 29), margin=None, min_pairs=29) == "distil"
    assert classify(_interval(-0.9, -0.1, 29), margin=None, min_pairs=29) == "hurts"
    assert classify(_interval(0.1, 0.3, 28), margin=0.5, min_pairs=29) == "no_gain"  # equivalence needs no wait


def test_the_interval_leans_away_from_a_long_left_tail() -> None:
    """Mostly small gains and one large loss (left skew): the t statistic's right tail is long, so Hall's
    interval reaches further below the mean than above it, and further below than the t-interval does."""
    d = np.array([0.4, 0.5, 0.6, 0.45, 0.55, 0.5, 0.35, 0.65, 0.5, 0.4, 0.6, 0.5, 0.45, 0.55, 0.5, -4.0])
    interval = repeated_interval(d, Design(16, 16), 0.05)
    assert interval is not None and interval.skewness < -2
    se = d.std(ddof=1) / math.sqrt(len(d))
    t_half = stats.t.ppf(1 - interval.nominal_level / 2, len(d) - 1) * se
    assert interval.mean - interval.low > interval.high - interval.mean
    assert interval.low < d.mean() - t_half and interval.high < d.mean() + t_half


def test_symmetric_differences_give_the_t_interval() -> None:
    d = np.array([-2.0, -1.0, -0.5, 0.5, 1.0, 2.0]) + 0.3
    interval = repeated_interval(d, Design(6, 6), 0.05)
    assert interval is not None and interval.skewness == pytest.approx(0.0, abs=1e-12)
    half = stats.t.ppf(1 - interval.nominal_level / 2, 5) * d.std(ddof=1) / math.sqrt(6)
    assert (interval.low, interval.high) == pytest.approx((d.mean() - half, d.mean() + half), rel=1e-12)


def _errs(differences: np.ndarray, design: Design, conditions: int) -> bool:
    """One condition of ``conditions`` confirmed look by look through :func:`confirm`, true gain 0: True when it
    says distil or hurts at some look."""
    for n in design.looks:
        chosen = ConfirmedArm({"alpha": 0.5}, {s: (1.0, float(x)) for s, x in enumerate(differences[:n])})
        baseline = ConfirmedArm({"alpha": 1.0}, {s: (0.0, 0.0) for s in range(n)})
        kind = confirm([chosen], baseline, sign=1.0, design=design, conditions=conditions, margin=None).kind
        if kind in ("distil", "hurts"):
            return True
    return False


def test_a_rare_failure_with_mean_zero_rarely_gives_a_false_verdict() -> None:
    """6,000 sequences of paired differences N(0, 1) plus the rare failure (mean zero), in a 2-condition family
    (2.5% each) confirmed in rounds of 18 up to 36 pairs, the quickstart's design: the verdict waits for 36 pairs.

    A correct implementation errs in about 0.8% (the 0.9^36 = 2.3% of sequences with no failure among 36 pairs
    rarely reach significance by chance and skewness-corrected intervals veto most of the rest); the limit is
    the binomial 1e-3 quantile at the condition's 2.5%. Deciding at 18 pairs (no wait) errs in some 15%, the
    t-interval at 36 pairs in some 3.5%: both land above it.
    """
    rng = np.random.default_rng(27)
    design = Design(18, 36, failure_rate=FAILURE_RATE)
    runs = 6000
    failed = rng.random((runs, design.max_n)) < FAILURE_RATE
    shift = np.where(failed, -FAILURE_LOSS, FAILURE_LOSS * FAILURE_RATE / (1 - FAILURE_RATE))
    draws = rng.normal(0.0, 1.0, (runs, design.max_n)) + shift
    wrong = sum(_errs(d, design, conditions=2) for d in draws)
    limit = stats.binom.isf(TAIL, runs, family_level(2, 1))
    assert wrong <= limit, f"{wrong} of {runs} null conditions said distil or hurts; at most {limit:.0f} at 2.5%"


@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_skewed_differences_with_mean_zero_err_within_the_level(sign: float) -> None:
    """4,000 sequences of N(0, 1) plus a centred gamma(0.5) one SD wide, left-skewed (usually a small gain,
    sometimes a large loss) or right-skewed, in mnist_noise's 4-condition family (1.25% each), rounds of 21 up to
    42: false verdicts at most the binomial 1e-3 quantile at 1.25%."""
    rng = np.random.default_rng(28 if sign < 0 else 29)
    design = Design(21, 42, failure_rate=FAILURE_RATE)
    runs = 4000
    skew = (rng.gamma(0.5, 1.0, (runs, design.max_n)) - 0.5) / math.sqrt(0.5)
    draws = rng.normal(0.0, 1.0, (runs, design.max_n)) + sign * skew
    wrong = sum(_errs(d, design, conditions=4) for d in draws)
    limit = stats.binom.isf(TAIL, runs, family_level(4, 1))
    assert wrong <= limit, f"{wrong} of {runs} null conditions said distil or hurts; at most {limit:.0f} at 1.25%"
