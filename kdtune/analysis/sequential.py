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
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np


SIMULATIONS = 200_000
SIMULATION_SEED = 20261206
_CHUNK = 20_000


@dataclass(frozen=True)
class Design:
    """The planned looks of one confirmation: ``round_size`` more paired seeds per look, at most ``max_n``."""

    round_size: int
    max_n: int

    @property
    def looks(self) -> tuple[int, ...]:
        """Paired seeds at each look; the last look may be a short round."""
        looks = list(range(self.round_size, self.max_n + 1, self.round_size))
        if not looks or looks[-1] != self.max_n:
            looks.append(self.max_n)
        return tuple(n for n in looks if n >= 2)


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

    def as_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n_pairs": self.n, "sd": self.sd,
                "nominal_level": self.nominal_level, "confidence": self.confidence}


@functools.lru_cache(maxsize=256)
def nominal_level(looks: tuple[int, ...], alpha: float) -> float:
    """The per-look two-sided level ``p*`` with P(some look's paired t-test p <= p*) = ``alpha`` under the
    null, for i.i.d. Gaussian differences observed at ``looks`` (cumulative counts); ``alpha`` for one look."""
    from scipy.special import stdtr  # the t distribution; scipy.stats would cost 0.7 s to import

    if len(looks) == 1:
        return alpha
    rng = np.random.default_rng(SIMULATION_SEED)
    n = np.array(looks)
    smallest = []
    for start in range(0, SIMULATIONS, _CHUNK):
        x = rng.standard_normal((min(_CHUNK, SIMULATIONS - start), looks[-1]))
        total = np.cumsum(x, axis=1)[:, n - 1]
        squares = np.cumsum(x * x, axis=1)[:, n - 1]
        mean = total / n
        sd = np.sqrt(np.maximum(squares - n * mean * mean, 0.0) / (n - 1))
        t = np.abs(mean) * np.sqrt(n) / sd
        smallest.append(np.min(2 * stdtr(n - 1, -t), axis=1))
    return float(np.quantile(np.concatenate(smallest), alpha, method="inverted_cdf"))


def repeated_interval(differences: list[float] | np.ndarray, design: Design, alpha: float) -> Interval | None:
    """The design's repeated confidence interval at the look with these differences (None below 2 pairs).

    A look off the plan (a failed run, a pooled study) uses the design's ``p*`` with its own count: the
    coverage then holds approximately.
    """
    from scipy.special import stdtrit  # the t quantile (scipy.stats: 0.7 s to import)

    d = np.asarray([x for x in differences if math.isfinite(x)], dtype=float)
    if len(d) < 2:
        return None
    level = nominal_level(design.looks, alpha)
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    half = float(stdtrit(len(d) - 1, 1 - level / 2)) * sd / math.sqrt(len(d))
    return Interval(mean=mean, low=mean - half, high=mean + half, n=len(d), sd=sd, nominal_level=level,
                    confidence=1 - alpha)


def seeds_to_resolve(interval: Interval, margin: float | None) -> int | None:
    """About how many paired seeds in all would resolve an inconclusive interval at the observed spread, were
    the observed mean the true gain: the fewest whose t-interval half-width (at the design's nominal level)
    excludes 0, or (with a margin) fits inside +-margin, whichever comes first. A planning figure, not a
    guarantee; None when the spread is 0 or nothing would resolve it within 100,000 seeds."""
    from scipy.special import stdtrit  # the t quantile (scipy.stats: 0.7 s to import)

    targets = [abs(interval.mean)] if interval.mean != 0 else []
    if margin is not None and abs(interval.mean) < margin:
        targets.append(margin - abs(interval.mean))
    if interval.sd == 0 or not targets:
        return None
    target = max(targets)
    n = np.arange(2, 100_001)
    half = stdtrit(n - 1, 1 - interval.nominal_level / 2) * interval.sd / np.sqrt(n)
    enough = np.flatnonzero(half < target)
    return int(n[enough[0]]) if len(enough) else None
