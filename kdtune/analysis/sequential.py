"""Repeated confidence intervals for the paired gain of a confirmed configuration over alpha = 1.

Confirmation adds fresh paired seeds in rounds and stops as soon as the verdict is clear, so the interval
must stay valid whatever the stopping rule. kdtune uses **repeated confidence intervals** (Jennison &
Turnbull 1989, "Interim analyses: the repeated confidence interval approach", JRSS B 51:305-361) with a
**Pocock-type constant nominal level** (Pocock 1977, Biometrika 64:191-199): at every planned look
(``confirm_repeats``, ``2 * confirm_repeats``, ... up to ``confirm_max_repeats`` paired seeds) the interval is
the two-sided paired t-interval at one nominal level ``p*``, chosen so that the intervals of *all* looks cover
the true mean gain together with probability ``1 - alpha``. Because the coverage is simultaneous over the
looks, a verdict read at any look, chosen by any rule, errs with probability at most ``alpha``.

The unknown variance is handled with the significance-level approach of Jennison & Turnbull (2000, "Group
Sequential Methods with Applications to Clinical Trials", section 11.1): ``p*`` is the level at which
P(any look's t-test p-value <= p*) = alpha for i.i.d. Gaussian differences. This probability does not depend
on the mean or the variance, so ``p*`` is computed once per design by simulation (a fixed seed; 200,000 sequences;
the Monte Carlo error of the family-wise level is below 0.001). The differences are assumed i.i.d. Gaussian
across student seeds: each is a difference of two test accuracies averaged over many test images.

**Looks added after the study started.** ``kdtune resume DIR --confirm-max-repeats N`` continues an inconclusive
confirmation past its planned maximum on new seeds. Recomputing Pocock's constant for the larger design would
be valid only had the earlier looks been read at that (smaller) level; they were read at the planned one, and
a design that spent its whole level at its planned looks has none left: any further look adds error on top.
So every design is an error-spending design (Lan & DeMets 1983, "Discrete sequential boundaries for clinical
trials", Biometrika 70:659-663) whose spending is fixed when the study starts and does not depend on whether,
or how far, it is extended. The planned looks (up to ``planned`` paired seeds) share ``1 - EXTENSION_RESERVE``
of the level at Pocock's constant ``p*`` (as above); the reserve is spent over the looks that may follow, in
rounds of ``round_size`` from ``planned`` on, ``EXTENSION_RESERVE * alpha * (1 - planned / n)`` by ``n`` paired
seeds (half of it by twice the planned seeds), each such look at its own increment as its two-sided level
(Bonferroni: no simulation, and no bound on how many looks follow). By the union bound every look, planned or
added, covers the true gain together with probability at least ``1 - alpha``, whenever and however far the
confirmation is continued. The price: the planned looks are read at ``p*`` for ``0.8 * alpha`` instead of
``alpha`` (their intervals are about 2% wider at mnist_noise's design).

**Skewed differences.** A paired difference need not be Gaussian: a distilled run may usually gain a little and
sometimes lose a lot. The t-interval's error then sits in one tail, and at the small per-look levels of a
sequential design the normal approximation is far off even at 30 pairs. Two guards:

* Every look's interval is **Hall's skewness-corrected t-interval** (Hall 1992, "On the removal of skewness by
  transformation", JRSS B 54:221-228; Johnson 1978, JASA 73:536-544, is its first-order form): with the
  sample skewness ``g`` and ``a = g / (3 sqrt(n))``, the pivot ``T = t + a t^2 + a^2 t^3 / 3 + a / 2`` is monotone
  in the t statistic ``t = sqrt(n) (mean - mu) / sd`` and removes the skewness term of its Edgeworth expansion.
  The interval is the set of means ``mu`` with ``|T| <= c``, ``c`` the t quantile at the look's level:
  ``[mean - g^-1(c) sd / sqrt(n), mean - g^-1(-c) sd / sqrt(n)]``, ``g^-1(x) = (cbrt(1 + 3 a (x - a / 2)) - 1) / a``.
  Symmetric differences (``g`` near 0) give the t-interval.
* A directional verdict ("distil", "hurts") waits for enough pairs that a failure hitting
  ``budget.confirm_failure_rate`` of the distilled runs (0.1 by default) would have shown with probability
  above the interval's confidence: a failure that no run showed cannot be corrected for. At the 1.25% of each
  of four conditions, 0.9^42 < 1.25%: 42 pairs (:func:`kdtune.spec.rules.min_directional_pairs`). Earlier looks
  may still end in "no gain".

``benchmarks/recommend_calibration.py`` measures both through the real searcher, with heavy-tailed, skewed and
rare-failure differences of mean zero (``docs/recommendation_schema.md``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np


SIMULATIONS = 200_000
SIMULATION_SEED = 20261206
_CHUNK = 20_000
#: The share of a confirmation's level that its planned looks leave for looks added after the study started.
EXTENSION_RESERVE = 0.2


@dataclass(frozen=True)
class Design:
    """The looks of one confirmation: ``round_size`` more paired seeds per look, at most ``max_n``; the study
    planned ``planned_n`` (None: ``max_n``) and ``kdtune resume --confirm-max-repeats`` added the rest."""

    round_size: int
    max_n: int
    planned_n: int | None = None
    failure_rate: float = 0.0  # budget.confirm_failure_rate: how long a directional verdict waits (module docstring)

    @classmethod
    def of(cls, budget: Any) -> Design:
        """The design of a spec's ``budget`` section (:class:`kdtune.spec.sections.BudgetSpec`)."""
        return cls(budget.confirm_repeats, budget.confirm_max_repeats, budget.planned_confirm_repeats,
                   budget.confirm_failure_rate)

    @property
    def planned(self) -> int:
        return self.max_n if self.planned_n is None else self.planned_n

    @property
    def looks(self) -> tuple[int, ...]:
        """Paired seeds at each look; the last planned look may be a short round."""
        from kdtune.spec.rules import confirmation_looks

        return tuple(n for n in confirmation_looks(self.round_size, self.planned, self.max_n) if n >= 2)

    def level(self, n: int, alpha: float) -> float:
        """The two-sided nominal level of the look that judges ``n`` paired seeds (the first look at or past
        ``n``: a round short of a failed run keeps its look's level), for a design of overall level ``alpha``:
        Pocock's ``p*`` for the planned looks, a share of the reserve for a look past them (module docstring)."""
        planned = tuple(n for n in self.looks if n <= self.planned)
        if n <= self.planned:
            return nominal_level(planned, (1 - EXTENSION_RESERVE) * alpha)
        after = self.planned + math.ceil((n - self.planned) / self.round_size) * self.round_size
        return EXTENSION_RESERVE * alpha * (self.planned / (after - self.round_size) - self.planned / after)


@dataclass(frozen=True)
class Interval:
    """A repeated confidence interval for the mean paired difference, at one look."""

    mean: float
    low: float
    high: float
    n: int
    sd: float
    nominal_level: float  # the two-sided per-look level p* of the design
    confidence: float  # the simultaneous (family-wise) confidence over all looks
    skewness: float = 0.0  # the differences' sample skewness, which Hall's correction used

    def as_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n_pairs": self.n, "sd": self.sd,
                "skewness": self.skewness, "nominal_level": self.nominal_level, "confidence": self.confidence}


@functools.lru_cache(maxsize=256)
def nominal_level(looks: tuple[int, ...], alpha: float) -> float:
    """The per-look two-sided level ``p*`` with P(some look's paired t-test p <= p*) = ``alpha`` under the
    null, for i.i.d. Gaussian differences observed at ``looks`` (cumulative counts); ``alpha`` for one look."""
    from scipy.special import stdtr  # the t distribution; scipy.stats would cost 0.7 s to import

    if len(looks) == 1:
        return alpha
    rng = np.random.default_rng(SIMULATION_SEED)
    n = np.array(looks)
    blocks = np.diff(n, prepend=0)  # the differences added at each look
    smallest = []
    for start in range(0, SIMULATIONS, _CHUNK):
        size = min(_CHUNK, SIMULATIONS - start)
        # A block of k standard normals enters the t statistic only through its sum S ~ N(0, k) and its sum of
        # squares S^2 / k + chi2(k - 1), the chi-square independent of S: two draws a look instead of k.
        sums = rng.standard_normal((size, len(n))) * np.sqrt(blocks)
        squares = sums * sums / blocks + rng.chisquare(np.maximum(blocks - 1, 1), (size, len(n))) * (blocks > 1)
        total, sum_squares = np.cumsum(sums, axis=1), np.cumsum(squares, axis=1)
        mean = total / n
        sd = np.sqrt(np.maximum(sum_squares - n * mean * mean, 0.0) / (n - 1))
        t = np.abs(mean) * np.sqrt(n) / sd
        smallest.append(np.min(2 * stdtr(n - 1, -t), axis=1))
    return float(np.quantile(np.concatenate(smallest), alpha, method="inverted_cdf"))


def repeated_interval(differences: list[float] | np.ndarray, design: Design, alpha: float) -> Interval | None:
    """The design's repeated confidence interval at the look with these differences (None below 2 pairs):
    Hall's skewness-corrected t-interval at the look's level (module docstring).

    A look off the plan (a failed run, a pooled study) uses the level of its look (:meth:`Design.level`) with its
    own count: the coverage then holds approximately.
    """
    from scipy.special import stdtrit  # the t quantile (scipy.stats: 0.7 s to import)

    d = np.asarray([x for x in differences if math.isfinite(x)], dtype=float)
    if len(d) < 2:
        return None
    level = design.level(len(d), alpha)
    n, mean, sd = len(d), float(d.mean()), float(d.std(ddof=1))
    critical = float(stdtrit(n - 1, 1 - level / 2))
    skewness = float(np.mean((d - mean) ** 3) / sd ** 3) if sd > 0 else 0.0
    upper_t, lower_t = _hall_inverse(critical, skewness, n), _hall_inverse(-critical, skewness, n)
    se = sd / math.sqrt(n)
    return Interval(mean=mean, low=mean - upper_t * se, high=mean - lower_t * se, n=n, sd=sd, nominal_level=level,
                    confidence=1 - alpha, skewness=skewness)


def _hall_inverse(x: float, skewness: float, n: int) -> float:
    """The t statistic at which Hall's transformed pivot equals ``x`` (module docstring); ``x`` itself when the
    differences are symmetric."""
    a = skewness / (3 * math.sqrt(n))
    if abs(a) < 1e-12:
        return x
    return (float(np.cbrt(1 + 3 * a * (x - a / 2))) - 1) / a


def seeds_to_resolve(interval: Interval, margin: float | None, design: Design, alpha: float) -> int | None:
    """About how many paired seeds in all would resolve an inconclusive interval at the observed spread, were
    the observed mean the true gain: the first look of the design, continued past its maximum as
    ``kdtune resume --confirm-max-repeats`` continues it (up to :data:`MAX_CONFIRM_REPEATS`), whose t-interval
    half-width at its own level excludes 0 (from the pairs a directional verdict waits for), or (with a margin) fits inside
    +-margin, whichever comes first. A planning figure, not a guarantee (it ignores the skewness correction);
    None when the spread is 0 or no look up to that bound would do."""
    from scipy.special import stdtrit  # the t quantile (scipy.stats: 0.7 s to import)

    from kdtune.spec.rules import confirmation_looks
    from kdtune.spec.rules import min_directional_pairs
    from kdtune.spec.sections import MAX_CONFIRM_REPEATS

    gain = abs(interval.mean)  # excluding 0: a directional verdict, from `fewest` pairs on
    equivalence = margin - gain if margin is not None and gain < margin else 0.0  # inside +-margin: no gain
    if interval.sd == 0 or (gain == 0 and equivalence == 0):
        return None
    fewest = min_directional_pairs(alpha, design.failure_rate)
    looks = [n for n in confirmation_looks(design.round_size, design.planned, MAX_CONFIRM_REPEATS) if n > interval.n]
    for n in looks:
        half = stdtrit(n - 1, 1 - design.level(n, alpha) / 2) * interval.sd / math.sqrt(n)
        if half < equivalence or (half < gain and n >= fewest):
            return n
    return None
