"""How a run is scored: one owner for what every later step (recommend, report, export, load_results) reads.

A *run* is one student seed of one trial. It is scored at its **best validation epoch** (the earliest on
ties): the objective is the validation metric there, and the test metric reported for it is the one at that
same epoch, never the best test epoch (test metrics are reported, never selected on).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from typing import TypeGuard

from kdtune.core.selection import first_best
from kdtune.tasks.base import Objective
from kdtune.trial_io import SEARCH_PARAMS


CONFIDENCE = 0.95


#: What a run is scored on: the objective of the study's task (:class:`kdtune.tasks.base.Objective`: the
#: validation column selected on, its direction, the test column reported). ``kdtune.tasks.objective_of(spec)``.
Metric = Objective


class ParamsView:
    """alpha and T read from a ``params`` tuple in :data:`~kdtune.trial_io.SEARCH_PARAMS` order."""

    params: tuple[Any, ...]

    @property
    def alpha(self) -> float:
        return float(self.params[0])

    @property
    def temperature(self) -> float | None:
        return None if self.params[1] is None else float(self.params[1])


@dataclass(frozen=True)
class ScoredRun(ParamsView):
    """One run at its best validation epoch: its configuration (``params`` in ``SEARCH_PARAMS`` order), phase,
    trial state, seed, objective, test metric and the whole row of that epoch."""

    condition: str
    trial_id: str
    phase: str
    state: str  # COMPLETE | PRUNED | FAIL | RUNNING
    seed: int
    params: tuple[Any, ...]
    objective: float
    test: float
    row: dict[str, Any]

    def param_dict(self) -> dict[str, Any]:
        """The parameters that apply to the run: another task's columns (an image run's divergence, a linear
        run's temperature) are null in its rows and left out."""
        return {name: value for name, value in zip(SEARCH_PARAMS, self.params) if value is not None}


def score_runs(rows: Iterable[dict[str, Any]], metric: Metric) -> list[ScoredRun]:
    """Every run of ``rows`` (results rows with their ``trial_state``) at its best validation epoch; runs
    without a finite validation value are left out."""
    by_run: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        by_run.setdefault((str(row["trial_id"]), int(row["seed"])), []).append(row)
    runs = []
    for (trial_id, seed), run_rows in by_run.items():
        scored = [r for r in run_rows if finite(r[metric.column])]
        if not scored:
            continue
        best = first_best(sorted(scored, key=lambda r: int(r["epoch"])), lambda r: float(r[metric.column]), metric.mode)
        assert best is not None
        test = best[metric.test_column]
        runs.append(ScoredRun(condition=best["condition"], trial_id=trial_id, phase=best["phase"],
                              state=best["trial_state"], seed=seed, params=tuple(clean(best[p]) for p in SEARCH_PARAMS),
                              objective=float(best[metric.column]), test=float(test) if finite(test) else math.nan,
                              row=best))
    return runs


def finite(value: Any) -> TypeGuard[float]:
    """A real number (not a bool, not missing) that is neither NaN nor infinite: what a figure may draw, a mean
    may include or a W&B run may log."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def clean(value: Any) -> Any:
    """A parameter value as a configuration key: floats rounded (12 significant digits), NaN as None."""
    if isinstance(value, float):
        return None if math.isnan(value) else float(f"{value:.12g}")
    return value


def t_estimate(values: Iterable[float]) -> dict[str, Any]:
    """Mean with a two-sided ``CONFIDENCE`` t-interval over seeds (None with fewer than two values)."""
    import numpy as np
    from scipy.special import stdtrit  # the t quantile; scipy.stats would cost 0.7 s to import

    x = np.asarray([v for v in values if finite(v)], dtype=float)
    if len(x) == 0:
        return {"mean": None, "low": None, "high": None, "n": 0}
    mean = float(x.mean())
    if len(x) < 2:
        return {"mean": mean, "low": None, "high": None, "n": 1}
    half = float(stdtrit(len(x) - 1, 0.5 + CONFIDENCE / 2) * x.std(ddof=1) / math.sqrt(len(x)))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": len(x)}
