"""Where the best alpha lies: the optimum located on fresh paired seeds, its interval, and the alphas within the
margin of the best.

alpha is the weight on the true labels: alpha = 1 means no distillation.

Why a stage of its own: the search runs each configuration on a few seeds, at the alphas and temperatures its
sampler chose, so a curve fitted to it locates the optimum poorly (calibration: median interval width 0.9-1.0 of
the alpha range, fitted optimum 0.17 off). Once a condition's confirmation says "distil", the study spends seeds
where they locate alpha (:class:`kdtune.study.search.ConditionSearcher`): ``budget.locate_alphas`` alphas spread
evenly over the searched range (:func:`locate_points`), at the confirmed configuration's temperature and other
parameters, on the first ``budget.locate_repeats`` seeds of the confirmation's first round. The confirmed
configuration and alpha = 1 already ran on those seeds, so every alpha of the stage shares every seed: a balanced,
paired design in which the seeds' common effects cancel from every comparison.

The curve is a split parabola, one parabola on each side of the optimum ``a0`` with its own curvature:

    f(alpha) = h - kL (alpha - a0)^2 [alpha < a0] - kR (alpha - a0)^2 [alpha >= a0],    kL, kR >= 0

fitted by least squares to each alpha's mean validation objective and profiled over ``a0`` on a grid of
:data:`GRID` points (the non-negative curvatures by enumerating the active sets, which is exact for two
constraints). Near its optimum any smooth curve is a parabola; the split lets it fall faster on one side, as a
distillation curve usually does towards alpha = 1. In simulation a symmetric parabola or a cubic put an optimum at
0.8 a mean 0.16-0.26 away, and their intervals never covered it (``docs/recommendation_schema.md``). Alphas more
than :data:`WINDOW` margins below the best mean are left out of the fit (:func:`_window`): a tail that falls
steeply, far from the top, pulled the vertex of a curve that is no parabola (a cubic: coverage 0% at 0.75, 89%
without that tail).

The interval is the nonparametric percentile bootstrap over seeds (Efron & Tibshirani 1993, "An Introduction to the
Bootstrap", ch. 13): a seed's runs at every alpha are drawn together, which keeps the pairing, the curve is refitted
and its optimum taken. It covers the alpha that maximises the expected validation objective at that temperature,
over student-seed noise only (data, teacher and validation set are fixed). The near-optimal set is the alphas whose
fitted objective is within the tolerance (the margin) of the fitted best in at least :data:`CONFIDENCE` of the
draws, pointwise: where the curve is flat, that is the answer ("any alpha in 0.2-0.7 is within 0.5 points").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kdtune.spec.rules import MIN_LOCATE_SEEDS


CONFIDENCE = 0.95
DRAWS = 1000
DRAW_SEED = 0
GRID = 101
MIN_ALPHAS = 4  # a split parabola has four parameters
MIN_SEEDS = MIN_LOCATE_SEEDS
WINDOW = 4.0  # the fit keeps the alphas within this many tolerances (margins) of the best mean (see _window)


@dataclass(frozen=True)
class Located:
    """The located optimum of one condition's alpha curve at one temperature."""

    alpha: float  # the fitted curve's maximum
    low: float  # CONFIDENCE bootstrap interval of the optimum
    high: float
    near_optimal: tuple[float, float] | None  # alphas within ``tolerance`` of the best in CONFIDENCE of draws
    tolerance: float
    alphas: tuple[float, ...]  # the alphas the stage compared (the confirmed one and alpha = 1 included)
    seeds: int  # paired seeds every alpha ran on
    params: dict[str, Any]  # the other parameters they shared (temperature, ...), alpha not among them

    def as_dict(self) -> dict[str, Any]:
        near = None if self.near_optimal is None else {"alpha_low": self.near_optimal[0],
                                                       "alpha_high": self.near_optimal[1]}
        return {"alpha": self.alpha, "low": self.low, "high": self.high, "confidence": CONFIDENCE,
                "near_optimal": near, "tolerance": self.tolerance, "alphas": list(self.alphas), "seeds": self.seeds,
                "params": self.params,
                "method": "split parabola, percentile bootstrap over seeds"}


def locate_points(low: float, high: float, count: int) -> list[float]:
    """The ``count`` alphas the locate stage adds, evenly spread over the searched range [low, high]. alpha = 1
    already runs in the confirmation, so a range that reaches 1 spreads them over [low, 1) (5 on [0, 1]: 0, 0.2,
    0.4, 0.6, 0.8)."""
    if count <= 0:
        return []
    if high >= 1.0:
        points = np.linspace(low, 1.0, count + 1)[:-1]
    else:
        points = np.linspace(low, high, count) if count > 1 else np.array([(low + high) / 2])
    return [round(float(a), 4) for a in points]


def locate(runs: dict[float, dict[Any, float]], *, sign: float, tolerance: float, params: dict[str, Any],
           draws: int = DRAWS, seed: int = DRAW_SEED) -> Located | None:
    """Locate the optimum from ``runs`` (alpha -> seed -> validation objective; ``sign`` +1 when larger is better)
    on the seeds every alpha ran on. None with fewer than :data:`MIN_ALPHAS` alphas or :data:`MIN_SEEDS` seeds."""
    alphas = sorted(runs)
    common = sorted(set.intersection(*(set(runs[a]) for a in alphas)), key=str) if alphas else []
    if len(alphas) < MIN_ALPHAS or len(common) < MIN_SEEDS:
        return None
    y = sign * np.array([[runs[a][s] for a in alphas] for s in common], dtype=float)  # (seeds, alphas)
    keep = _window(y.mean(axis=0), WINDOW * tolerance)
    x, y = np.array(alphas, dtype=float)[keep], y[:, keep]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(common), size=(draws, len(common)))
    means = np.concatenate([y.mean(axis=0)[None, :], y[picks].mean(axis=1)])  # row 0: the data; then the draws
    a0, k_left, k_right = _fit(x, means)
    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(a0[1:], [tail, 1 - tail], method="inverted_cdf")
    # An optimum fitted at the second or the second-to-last alpha may lie anywhere up to the end one (_fit's range)
    if np.mean(a0[1:] <= x[1] + 1e-12) > tail:
        low = x[0]
    if np.mean(a0[1:] >= x[-2] - 1e-12) > tail:
        high = x[-1]
    grid = np.linspace(x.min(), x.max(), GRID)
    within = _within(grid, a0[1:], k_left[1:], k_right[1:], tolerance).mean(axis=0) >= CONFIDENCE
    near = (float(grid[within].min()), float(grid[within].max())) if within.any() else None
    best = float(a0[0])
    return Located(alpha=round(best, 4), low=round(min(float(low), best), 4), high=round(max(float(high), best), 4),
                   near_optimal=None if near is None else (round(near[0], 4), round(near[1], 4)),
                   tolerance=tolerance, alphas=tuple(alphas), seeds=len(common), params=params)


def _window(means: np.ndarray, depth: float) -> np.ndarray:
    """The alphas the curve is fitted to: from the best mean outwards, the contiguous run of alphas whose means lie
    within ``depth`` of it, widened to :data:`MIN_ALPHAS` by the better neighbour. Alphas far below the best say
    little about where the top is and much about how the curve's tails bend, which a parabola cannot follow."""
    lo = hi = int(np.argmax(means))
    while True:
        options = [i for i in (lo - 1, hi + 1) if 0 <= i < len(means)]
        if not options:
            break
        i = max(options, key=lambda j: means[j])
        if means[i] < means.max() - depth and hi - lo + 1 >= MIN_ALPHAS:
            break
        lo, hi = min(lo, i), max(hi, i)
    return np.arange(lo, hi + 1)


def _fit(x: np.ndarray, means: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The split parabola's least-squares (a0, kL, kR) for each row of ``means`` (rows, alphas), on the grid of a0.

    For each a0 the model is linear in (h, kL, kR); the constrained least squares is the best of the four
    submodels (both curvatures, left only, right only, none) whose own least-squares curvatures are >= 0. Rows
    whose best a0 ties over a range (a flat side) take the middle of it. a0 stays between the second and the
    second-to-last alpha: beyond them one side's curvature would rest on a single alpha, which it fits exactly
    whatever that alpha's value (the fit would drop it), so an optimum there is read as "up to the end alpha"
    (:func:`locate`)."""
    full = np.linspace(x.min(), x.max(), GRID)
    grid = np.unique(np.concatenate([full[(full > x[1]) & (full < x[-2])], x[[1, -2]]]))  # the edges exactly
    d = x[None, :] - grid[:, None]  # (grid, alphas)
    left, right = -(d * d) * (d < 0), -(d * d) * (d >= 0)
    ones = np.ones_like(d)
    rows = means.shape[0]
    best_rss = np.full((len(grid), rows), np.inf)
    best_k = np.zeros((len(grid), rows, 2))
    for use_left, use_right in ((True, True), (True, False), (False, True), (False, False)):
        columns = [ones] + ([left] if use_left else []) + ([right] if use_right else [])
        design = np.stack(columns, axis=2)  # (grid, alphas, terms)
        coef = means[None, :, :] @ np.linalg.pinv(design).transpose(0, 2, 1)  # (grid, rows, terms)
        fitted = coef @ design.transpose(0, 2, 1)  # (grid, rows, alphas)
        rss = ((means[None, :, :] - fitted) ** 2).sum(axis=2)
        k = np.zeros((len(grid), rows, 2))
        j = 1
        if use_left:
            k[..., 0] = coef[..., j]
            j += 1
        if use_right:
            k[..., 1] = coef[..., j]
        feasible = (k >= -1e-12).all(axis=2)
        better = feasible & (rss < best_rss * (1 - 1e-12) - 1e-15)  # an earlier submodel wins ties
        best_rss = np.where(better, rss, best_rss)
        best_k = np.where(better[..., None], np.maximum(k, 0.0), best_k)
    minimum = best_rss.min(axis=0)
    tied = best_rss <= minimum + 1e-9 * np.maximum(1.0, np.abs(minimum))  # (grid, rows)
    first, last = tied.argmax(axis=0), len(grid) - 1 - tied[::-1].argmax(axis=0)
    index = (first + last) // 2
    chosen = best_k[index, np.arange(rows)]
    return grid[index], chosen[:, 0], chosen[:, 1]


def _within(grid: np.ndarray, a0: np.ndarray, k_left: np.ndarray, k_right: np.ndarray,
            tolerance: float) -> np.ndarray:
    """(draws, grid): whether each alpha's fitted objective lies within ``tolerance`` of the draw's maximum."""
    d = grid[None, :] - a0[:, None]
    drop = np.where(d < 0, k_left[:, None], k_right[:, None]) * d * d
    return drop <= tolerance
