"""Verdicts from confirmation runs: one rule shared by the study's adaptive confirmation and ``recommend``.

A verdict compares a confirmed configuration with alpha = 1 (no distillation) on **confirmation runs only**:
both re-run on the same fresh student seeds, never used in the search, so the comparison is paired and free
of the search's selection bias (the winner's curse: Cawley & Talbot 2010, JMLR 11:2079-2107). The gain is the
paired test-metric difference per seed, positive when better than no distillation, with a repeated
confidence interval (:mod:`kdtune.analysis.sequential`) that stays valid however many rounds were run.

* ``distil``: the interval lies above 0, on enough pairs (below);
* ``hurts``: the interval lies below 0, on enough pairs: a directional verdict waits for
  :func:`~kdtune.spec.rules.min_directional_pairs` paired seeds, so that a failure hitting
  ``budget.confirm_failure_rate`` of the distilled runs would have shown (:mod:`kdtune.analysis.sequential`,
  "Skewed differences");
* ``no_gain``: the interval lies inside +-margin: any gain or loss is smaller than the margin (equivalence by
  the interval-inclusion form of two one-sided tests, Schuirmann 1987);
* ``inconclusive``: none of these (the interval crosses 0 and reaches past the margin): more seeds needed;
* ``unconfirmed``: no confirmation runs: the search's gain is shown, flagged as optimistic.

Multiplicity: the intervals of a recommendation are Bonferroni-adjusted over its conditions and, within a
condition, over its confirmed candidates (at most ``budget.confirm_top_k``), so all of them cover their true
gains together, at every look, with probability at least 95%. Bonferroni is the first step of Holm (1979);
Holm's later steps would call more conditions but give intervals that no longer match the verdicts, so kdtune
keeps one rule for both. Either way it is valid under any dependence between conditions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kdtune.analysis.sequential import Design
from kdtune.analysis.sequential import Interval
from kdtune.analysis.sequential import repeated_interval
from kdtune.spec.rules import FAMILY_CONFIDENCE
from kdtune.spec.rules import family_level
from kdtune.spec.rules import min_directional_pairs


__all__ = ["DECISIVE", "FAMILY_CONFIDENCE", "Confirmation", "ConfirmedArm", "classify", "confirm", "family_level"]

DECISIVE = ("distil", "hurts", "no_gain")


@dataclass(frozen=True)
class ConfirmedArm:
    """One configuration's confirmation runs: seed -> (validation objective, test metric)."""

    params: dict[str, Any]
    runs: dict[Any, tuple[float, float]]

    @property
    def alpha(self) -> float:
        return float(self.params["alpha"])


@dataclass(frozen=True)
class Confirmation:
    """The confirmed verdict of one condition."""

    kind: str
    chosen: ConfirmedArm
    interval: Interval | None
    level: float  # the error rate this condition's interval was given (after Bonferroni)


def classify(interval: Interval | None, margin: float | None, min_pairs: int) -> str:
    """The verdict an interval supports (see the module docstring)."""
    if interval is None:
        return "inconclusive"
    if interval.low > 0 and interval.n >= min_pairs:
        return "distil"
    if interval.high < 0 and interval.n >= min_pairs:
        return "hurts"
    if margin is not None and -margin < interval.low and interval.high < margin:
        return "no_gain"
    return "inconclusive"


def confirm(candidates: list[ConfirmedArm], baseline: ConfirmedArm, *, sign: float, design: Design,
            conditions: int, margin: float | None) -> Confirmation:
    """Choose among the confirmed candidates on their confirmation validation runs (ties to the larger alpha),
    then judge the chosen one's paired test gain over alpha = 1 (``sign`` +1 when larger is better)."""
    def score(arm: ConfirmedArm) -> tuple[float, float]:
        values = [v for v, _ in arm.runs.values()]
        return (sign * sum(values) / len(values) if values else float("-inf"), arm.alpha)

    chosen = max(candidates, key=score)
    level = family_level(conditions, len(candidates))
    common = sorted(set(chosen.runs) & set(baseline.runs), key=str)
    differences = [sign * (chosen.runs[s][1] - baseline.runs[s][1]) for s in common]
    interval = repeated_interval(differences, design, level)
    kind = classify(interval, margin, min_directional_pairs(level, design.failure_rate))
    return Confirmation(kind=kind, chosen=chosen, interval=interval, level=level)
