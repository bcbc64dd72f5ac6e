"""The transfer check: does the cheap search's answer hold at the fidelity the user will train at?

A study with a ``fidelity`` section (:mod:`kdtune.spec.fidelity`) searches cheaply, then re-runs the cheap search's
best ``fidelity.transfer_top`` configurations, alpha = 1 and alpha = 0 at full fidelity on paired seeds (phase
``transfer``). From those runs, on the validation objective:

* **rank agreement**: Spearman's rank correlation between the configurations' cheap and full means, with a
  percentile bootstrap interval (Efron & Tibshirani 1993, ch. 13) that resamples each fidelity's seeds, the
  configurations staying paired within a fidelity;
* **regret**: how much the cheap search's choice (its best distilled configuration) loses at full fidelity against
  the best of the re-run configurations, in the objective's units, with the same bootstrap's interval (the best is
  chosen again in each draw, so the interval includes the winner's curse of picking it);
* **recovered**: the share of the best full-fidelity gain over alpha = 1 that the cheap choice keeps;
* **near-optimal set**: the re-run configurations whose regret's interval reaches down to the tolerance (the
  margin): none of them is shown to lose more.

The verdict: ``fails`` when the cheap choice is shown to lose more than the tolerance at full fidelity (its regret's
lower bound is above it), ``holds`` when it is shown to lose at most that (the upper bound is within it), else
``unclear``. After ``fails`` the study confirms and recommends from the full-fidelity runs; it never reports the
cheap optimum as the answer. The check covers student-seed noise only; the calibration
(``benchmarks/recommend_calibration.py --scenarios shifted``) measures how often it flags a shifted optimum and how
often one that is not there.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


DRAWS = 1000
LEVEL = 0.05  # two-sided: every interval is a 95% percentile interval
VERDICTS = ("holds", "fails", "unclear")


@dataclass(frozen=True)
class Rerun:
    """One configuration of the transfer check: its cheap search runs and its full-fidelity runs, seed -> objective."""

    params: dict[str, Any]
    cheap: Mapping[Any, float]
    full: Mapping[Any, float]


@dataclass(frozen=True)
class Transfer:
    """The transfer check of one condition (see the module docstring)."""

    verdict: str
    spearman: float | None
    spearman_low: float | None
    spearman_high: float | None
    regret: float
    regret_low: float
    regret_high: float
    recovered: float | None
    cheap_choice: dict[str, Any]
    full_best: dict[str, Any]
    near_optimal: list[dict[str, Any]]
    tolerance: float
    configurations: list[dict[str, Any]]
    seeds: dict[str, int]

    @property
    def choice_near_optimal(self) -> bool:
        return self.cheap_choice in self.near_optimal

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "spearman": {"value": self.spearman, "low": self.spearman_low,
                                                      "high": self.spearman_high},
                "regret": {"value": self.regret, "low": self.regret_low, "high": self.regret_high},
                "recovered": self.recovered, "cheap_choice": self.cheap_choice, "full_best": self.full_best,
                "cheap_choice_near_optimal": self.choice_near_optimal, "near_optimal": self.near_optimal,
                "tolerance": self.tolerance, "configurations": self.configurations, "seeds": self.seeds,
                "confidence": 1 - LEVEL, "draws": DRAWS, "method": "percentile bootstrap over each fidelity's seeds"}


def check_transfer(reruns: Sequence[Rerun], *, choice: int, baseline: int | None, sign: float, tolerance: float,
                   seed: int = 0) -> Transfer | None:
    """The transfer check of ``reruns``, where ``reruns[choice]`` is the cheap search's choice and
    ``reruns[baseline]`` alpha = 1 (None: not among them). None when fewer than two configurations, or fewer than two
    seeds at either fidelity, ran in every configuration."""
    cheap, cheap_seeds = _matrix([r.cheap for r in reruns])
    full, full_seeds = _matrix([r.full for r in reruns])
    if len(reruns) < 2 or cheap_seeds < 2 or full_seeds < 2:
        return None
    rng = np.random.default_rng(seed)
    cheap_draws = cheap[:, rng.integers(0, cheap_seeds, (DRAWS, cheap_seeds))].mean(axis=2)  # (configs, draws)
    full_draws = full[:, rng.integers(0, full_seeds, (DRAWS, full_seeds))].mean(axis=2)
    cheap_mean, full_mean = cheap.mean(axis=1), full.mean(axis=1)
    regrets = sign * (full_draws.max(axis=0) if sign > 0 else full_draws.min(axis=0))[None, :] - sign * full_draws
    regret_low, regret_high = np.quantile(regrets, [LEVEL / 2, 1 - LEVEL / 2], axis=1)
    observed = sign * (full_mean.max() if sign > 0 else full_mean.min()) - sign * full_mean
    rhos = _spearman_columns(cheap_draws, full_draws)
    rho = _spearman(cheap_mean, full_mean)
    near = [i for i in range(len(reruns)) if regret_low[i] <= tolerance]
    if regret_low[choice] > tolerance:
        verdict = "fails"
    elif regret_high[choice] <= tolerance:
        verdict = "holds"
    else:
        verdict = "unclear"
    best = int(np.argmax(sign * full_mean))
    recovered = None
    if baseline is not None:
        gain = sign * (full_mean[best] - full_mean[baseline])
        if gain > 0:
            recovered = float(sign * (full_mean[choice] - full_mean[baseline]) / gain)
    rho_low, rho_high = (None, None) if not rhos else (float(v) for v in np.quantile(rhos, [LEVEL / 2, 1 - LEVEL / 2]))
    configurations = [{"params": r.params, "cheap": _estimate(cheap[i]), "full": _estimate(full[i]),
                       "regret": {"value": float(observed[i]), "low": float(regret_low[i]),
                                  "high": float(regret_high[i])}}
                      for i, r in enumerate(reruns)]
    return Transfer(verdict=verdict, spearman=rho, spearman_low=rho_low, spearman_high=rho_high,
                    regret=float(observed[choice]), regret_low=float(regret_low[choice]),
                    regret_high=float(regret_high[choice]), recovered=recovered,
                    cheap_choice=dict(reruns[choice].params), full_best=dict(reruns[best].params),
                    near_optimal=[dict(reruns[i].params) for i in near], tolerance=float(tolerance),
                    configurations=configurations, seeds={"cheap": cheap_seeds, "full": full_seeds})


def _matrix(runs: Sequence[Mapping[Any, float]]) -> tuple[np.ndarray, int]:
    """(configurations x seeds) objectives on the seeds every configuration ran (finite values only)."""
    common = set.intersection(*(set(s for s, v in r.items() if np.isfinite(v)) for r in runs)) if runs else set()
    seeds = sorted(common, key=repr)
    return np.array([[r[s] for s in seeds] for r in runs], dtype=float).reshape(len(runs), len(seeds)), len(seeds)


def _spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None where either side is constant."""
    ra, rb = _ranks(a), _ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


def _spearman_columns(a: np.ndarray, b: np.ndarray) -> list[float]:
    """:func:`_spearman` of every column pair of two (configurations x draws) arrays at once (average ranks for
    ties), leaving out the draws where either side is constant."""
    ra, rb = _column_ranks(a), _column_ranks(b)
    ra, rb = ra - ra.mean(axis=0), rb - rb.mean(axis=0)
    norm = np.sqrt((ra**2).sum(axis=0) * (rb**2).sum(axis=0))
    defined = norm > 0
    return [float(v) for v in (ra * rb).sum(axis=0)[defined] / norm[defined]]


def _column_ranks(values: np.ndarray) -> np.ndarray:
    """Each column's average ranks (0-based): the values below, plus half the other values equal to it."""
    below = (values[None, :, :] < values[:, None, :]).sum(axis=1)
    equal = (values[None, :, :] == values[:, None, :]).sum(axis=1)
    return below + (equal - 1) / 2


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=float)
    for value in np.unique(values):  # ties share their average rank
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def _estimate(row: np.ndarray) -> dict[str, float]:
    return {"mean": float(row.mean()), "sd": float(row.std(ddof=1)) if len(row) > 1 else 0.0, "n": int(len(row))}


def transfer_words(transfer: Transfer, scale: float, unit: str | None, label: str) -> str:
    """The transfer check in words, for the verdict and the report. ``scale``: one point of the objective (a point
    of accuracy: 0.01) where ``unit`` names one, else the objective's own units; ``label``: the objective's name."""
    in_points = unit is not None and scale == 0.01  # a point of accuracy; other units: the objective's own

    def amount(value: float) -> str:
        return f"{value / scale:.2f}" if in_points else f"{value:.4g}"

    rho = ("the rank correlation of cheap and full is not defined (one side is constant)" if transfer.spearman is None
           else f"rank correlation of cheap and full {transfer.spearman:.2f}"
           + ("" if transfer.spearman_low is None else f" [{transfer.spearman_low:.2f}, {transfer.spearman_high:.2f}]"))
    points = " points" if in_points else ""
    regret = (f"the cheap choice trails the best re-run configuration at full fidelity by {amount(transfer.regret)} "
              f"[{amount(transfer.regret_low)}, {amount(transfer.regret_high)}]{points} of {label}")
    head = {"holds": "the cheap search's answer holds at full fidelity",
            "fails": "the cheap search's answer does not hold at full fidelity, so the recommendation comes from "
                     "the full-fidelity runs",
            "unclear": "whether the cheap search's answer holds at full fidelity cannot be told from "
                       f"{transfer.seeds['full']} seeds"}[transfer.verdict]
    return (f"Transfer check on {len(transfer.configurations)} configurations: {head} ({rho}; {regret}; 95% "
            "bootstrap intervals)")
