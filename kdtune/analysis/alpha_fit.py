"""The recommended alpha (and temperature) from a smooth curve fitted to the search, with its interval.

An argmax over raw configurations is noisy (each point is a mean over a few seeds) and follows where the
sampler looked most. kdtune fits one smooth surface to the configurations' mean validation objectives and
takes the recommendation from its maximum:

    f(alpha, T) = b0 + b1 z + b2 z^2 + b3 z^3 + z (b4 u + b5 u^2),   z = 1 - alpha,  u = log T - centre

``z`` is the weight on the teacher, so T acts only through the distillation term and vanishes at alpha = 1,
where every temperature gives the same student; the cubic term lets the curve fall more steeply on one side
of its optimum than on the other (a real curve often drops fast towards alpha = 1). Without a searched
temperature (or for the linear task, whose excess risk is exactly quadratic in alpha) the surface is the
polynomial in ``z`` alone. Fewer configurations than a term needs drop it (the temperature's square first,
then the cubic, then the temperature), keeping two residual degrees of freedom; below four configurations the
best observed one is used.

The configurations' means are paired (every search configuration trains the same student seeds), so the
seed effects are common to all of them and the fit is ordinary least squares on the means. The interval is
a parametric bootstrap of the fit (Efron & Tibshirani 1993, "An Introduction to the Bootstrap", ch. 6):
coefficients are drawn from their estimated sampling distribution (a multivariate t with the residual
degrees of freedom; the residual variance includes lack of fit, which widens it) and the maximum of each
draw is found on a grid. Its coverage of the true optimum is measured by
``benchmarks/recommend_calibration.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


DRAWS = 1000
DRAW_SEED = 0
CONFIDENCE = 0.95
ALPHA_GRID = 101
LOG_T_GRID = 25
MIN_CONFIGURATIONS = 4


@dataclass(frozen=True)
class Point:
    """One configuration's mean validation objective over its paired search seeds."""

    alpha: float
    temperature: float | None
    objective: float


@dataclass(frozen=True)
class Fit:
    """The fitted recommendation: the maximum of the curve and its bootstrap interval."""

    alpha: float
    temperature: float | None
    alpha_low: float
    alpha_high: float
    temperature_low: float | None
    temperature_high: float | None
    near_optimal: tuple[float, float]  # alphas whose fitted objective is within the tolerance of the best
    tolerance: float
    method: str  # "polynomial surface" or "best observed"
    terms: tuple[str, ...]  # the surface's terms (z = 1 - alpha, u = log T - centre)
    configurations: int
    surface: Surface | None = None  # the fitted polynomial itself (None: best observed, nothing fitted)

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "terms": list(self.terms), "configurations": self.configurations,
                "near_optimal": {"alpha_low": self.near_optimal[0], "alpha_high": self.near_optimal[1],
                                 "tolerance": self.tolerance},
                "surface": None if self.surface is None else self.surface.as_dict()}


@dataclass(frozen=True)
class Surface:
    """The fitted polynomial, in the objective's own units and direction (not sign-adjusted), so that a plot
    of the curve and its band needs nothing but this: coefficients in the order of the fit's terms, their
    covariance (residual variance included), the residual degrees of freedom and the centre of log T."""

    coefficients: tuple[float, ...]
    covariance: tuple[tuple[float, ...], ...]
    df: int
    log_t_centre: float

    def as_dict(self) -> dict[str, Any]:
        return {"coefficients": list(self.coefficients), "covariance": [list(row) for row in self.covariance],
                "df": self.df, "log_t_centre": self.log_t_centre}


def surface_curve(terms: list[str], surface: dict[str, Any], alphas: list[float], temperature: float | None,
                  confidence: float = CONFIDENCE) -> tuple[list[float], list[float], list[float]]:
    """The fitted objective along ``alphas`` at one ``temperature`` (ignored without temperature terms) and its
    pointwise ``confidence`` band: the fitted mean ± the t quantile (residual degrees of freedom) times its
    standard error. ``terms`` and ``surface`` are a recommendation's ``recommended.terms`` and
    ``recommended.surface``. Returns (fitted, low, high)."""
    from scipy.special import stdtrit  # the t quantile, without scipy.stats's import cost

    z = 1.0 - np.asarray(alphas, dtype=float)
    u = np.full_like(z, 0.0 if temperature is None else math.log(temperature) - surface["log_t_centre"])
    design = _features(z, u, tuple(terms))
    fitted = design @ np.asarray(surface["coefficients"], dtype=float)
    se = np.sqrt(np.einsum("ij,jk,ik->i", design, np.asarray(surface["covariance"], dtype=float), design))
    half = float(stdtrit(surface["df"], 0.5 + confidence / 2)) * se
    return [float(v) for v in fitted], [float(v) for v in fitted - half], [float(v) for v in fitted + half]


def fit_alpha(points: list[Point], *, sign: float, alpha_bounds: tuple[float, float],
              log_t_bounds: tuple[float, float] | None, tolerance: float, draws: int = DRAWS,
              seed: int = DRAW_SEED) -> Fit:
    """Fit the surface to ``points`` (``sign`` +1 when larger is better) and maximise it over the searched
    box: alpha in ``alpha_bounds`` and log T in ``log_t_bounds`` (None: the temperature is not searched)."""
    y = sign * np.array([p.objective for p in points], dtype=float)
    z = 1.0 - np.array([p.alpha for p in points], dtype=float)
    distilled = [p for p in points if p.alpha != 1.0 and p.temperature is not None]
    use_t = log_t_bounds is not None and len({p.temperature for p in distilled}) >= 3
    centre = float(np.mean(log_t_bounds)) if log_t_bounds is not None else 0.0
    u = np.array([math.log(p.temperature) - centre if p.temperature else 0.0 for p in points])
    terms = _terms(len(points), use_t)
    if len(terms) < 3:
        return _best_observed(points, y, tolerance)
    use_t = "z u" in terms  # too few configurations for a temperature term: alpha alone
    design = _features(z, u, terms)
    beta, *_ = np.linalg.lstsq(design, y, rcond=None)
    df = len(points) - len(terms)
    residual = float(np.sum((y - design @ beta) ** 2) / df)
    cov = residual * np.linalg.pinv(design.T @ design)
    alpha_grid = np.round(np.linspace(alpha_bounds[0], alpha_bounds[1], ALPHA_GRID), 4)
    u_grid = (np.linspace(log_t_bounds[0], log_t_bounds[1], LOG_T_GRID) - centre
              if use_t and log_t_bounds is not None else np.zeros(1))
    grid_z, grid_u = np.meshgrid(1.0 - alpha_grid, u_grid, indexing="ij")
    grid = _features(grid_z.ravel(), grid_u.ravel(), terms)  # (alphas * temperatures, terms)
    rng = np.random.default_rng(seed)
    # multivariate t draws: Gaussian draws scaled by sqrt(df / chi2_df)
    normal = rng.multivariate_normal(np.zeros(len(terms)), cov, size=draws, method="svd")
    scale = np.sqrt(df / rng.chisquare(df, size=draws))[:, None]
    betas = beta + normal * scale
    best = np.argmax(betas @ grid.T, axis=1)  # (draws,)
    fitted = (grid @ beta).reshape(len(alpha_grid), len(u_grid))
    i, j = np.unravel_index(int(np.argmax(fitted)), fitted.shape)
    tail = (1 - CONFIDENCE) / 2
    a_draws = alpha_grid[best // len(u_grid)]
    alpha = float(alpha_grid[i])
    temperature = low_t = high_t = None
    if use_t and log_t_bounds is not None:
        t_draws = np.exp(u_grid[best % len(u_grid)] + centre)
        temperature = float(f"{math.exp(u_grid[j] + centre):.3g}")
        if alpha != 1.0:
            keep = a_draws != 1.0
            low_t, high_t = _quantiles(t_draws[keep] if keep.any() else t_draws, tail, temperature)
    low_a, high_a = _quantiles(a_draws, tail, alpha)
    by_alpha = fitted.max(axis=1)
    near = alpha_grid[by_alpha >= by_alpha.max() - tolerance]
    surface = Surface(coefficients=tuple(float(sign * b) for b in beta),
                      covariance=tuple(tuple(float(c) for c in row) for row in cov), df=df, log_t_centre=centre)
    return Fit(alpha=alpha, temperature=temperature, alpha_low=low_a, alpha_high=high_a, temperature_low=low_t,
               temperature_high=high_t, near_optimal=(float(near.min()), float(near.max())), tolerance=tolerance,
               method="polynomial surface", terms=terms, configurations=len(points), surface=surface)


#: The surface's terms, in the order they are dropped from the end when configurations are few.
TERMS_WITH_T = ("1", "z", "z^2", "z u", "z^3", "z u^2")
TERMS_ALPHA_ONLY = ("1", "z", "z^2", "z^3")


def _terms(configurations: int, use_t: bool) -> tuple[str, ...]:
    """The most terms the data support with at least 2 residual degrees of freedom (empty: too few to fit)."""
    names = TERMS_WITH_T if use_t else TERMS_ALPHA_ONLY
    if configurations < MIN_CONFIGURATIONS:
        return ()
    return names[:min(len(names), configurations - 2)]


def _features(z: np.ndarray, u: np.ndarray, terms: tuple[str, ...]) -> np.ndarray:
    columns = {"1": np.ones_like(z), "z": z, "z^2": z * z, "z^3": z ** 3, "z u": z * u, "z u^2": z * u * u}
    return np.stack([columns[t] for t in terms], axis=1)


def _quantiles(values: np.ndarray, tail: float, value: float) -> tuple[float, float]:
    low, high = np.quantile(values, [tail, 1 - tail], method="inverted_cdf")
    return min(float(low), value), max(float(high), value)


def _best_observed(points: list[Point], y: np.ndarray, tolerance: float) -> Fit:
    """Too few configurations to fit: the best observed one (ties to the larger alpha), no interval."""
    order = sorted(range(len(points)), key=lambda k: (-y[k], -points[k].alpha))
    best = points[order[0]]
    near = [p.alpha for k, p in enumerate(points) if y[k] >= y[order[0]] - tolerance]
    return Fit(alpha=best.alpha, temperature=best.temperature, alpha_low=best.alpha, alpha_high=best.alpha,
               temperature_low=None, temperature_high=None, near_optimal=(min(near), max(near)),
               tolerance=tolerance, method="best observed", terms=(), configurations=len(points))
