"""The study's pure rules: phases, budgets, seeds and how an ended trial is classified.

They are shared by the Ray Tune plugin (:mod:`kdtune.study.search`), the results writer, ``kdtune status`` and
``kdtune plan``, and need neither Ray nor torch, so the read-only commands stay light.

Phases: ``search`` (proposed by the condition's sampler), ``baseline`` (alpha = 1, no distillation, and
alpha = 0, pure distillation, enqueued in every condition) and ``confirm`` (the recommended configuration and
alpha = 1 re-run on fresh student seeds, in rounds, until the verdict is clear or the budget is spent).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kdtune.trial_io import METRIC


if TYPE_CHECKING:
    from kdtune.spec.schema import StudySpec
    from kdtune.trial_io import TrialResult


PHASES = ("search", "baseline", "confirm")
UNPRUNED_PHASES = ("baseline", "confirm")  # trials that ASHA never stops (see search.StratifiedASHA)
#: Confirmation seeds start here (after ``budget.seed``), far from the search's seeds, so they are fresh.
CONFIRM_SEED_OFFSET = 1000


def preparation_cpus(cluster_cpus: float, node_cpus: float, conditions: int) -> int:
    """The cores each condition's preparation task reserves: an equal share of the cluster's, at least one (1
    condition on 2 cores: 2; 3 on 2: 1 each, two at a time), and never more than the largest node has: a task
    runs on one node, so a larger reservation could never be scheduled. A teacher grows beyond its share while
    it trains, as other preparations end (``kdtune.study.driver``); ``kdtune plan`` times teachers at the share."""
    return max(1, int(min(cluster_cpus // max(1, conditions), node_cpus)))


def optuna_study_name(prefix: str, condition: str) -> str:
    """A condition's Optuna study: ``prefix`` is the study's (``<spec name>/<study id>``), so two studies of one
    spec on one storage never share one (:meth:`kdtune.records.folder.StudyFolder.optuna_prefix`)."""
    return f"{prefix}/{condition}"


def trial_outcome(result: TrialResult | None, error: bool, epochs: int) -> tuple[str, str | None]:
    """(state, reason) of an ended trial, decided the same way for Optuna and for ``trials.parquet``."""
    if error:
        return "FAIL", "the trial raised an error (see the Tune trial log)"
    if not result or METRIC not in result:
        return "FAIL", "the trial reported no result"
    if result.get("nan") or not math.isfinite(result[METRIC]):
        return "FAIL", "the loss or objective became NaN or infinite"
    if result.get("epoch", 0) < epochs:
        return "PRUNED", f"stopped early by ASHA after epoch {result.get('epoch')}"
    return "COMPLETE", None


def trials_per_condition(spec: StudySpec) -> int:
    """Search trials per condition: the sampler's proposals plus the baselines it does not already contain
    (confirmation trials come on top: :func:`confirmation_trials`)."""
    from kdtune.spec.space import baselines
    from kdtune.spec.space import grid
    from kdtune.spec.space import grid_size

    if spec.sampler != "grid":
        return spec.budget.trials_per_condition + len(baselines(spec))
    points = grid(spec.search)
    extra = sum(any(p.get(k) not in v for k, v in points.items()) for p in baselines(spec))
    return grid_size(spec.search) + extra


def confirmation_rounds(spec: StudySpec) -> int:
    """The most confirmation rounds per condition: ``confirm_repeats`` fresh seeds each, until
    ``confirm_max_repeats`` seeds (0 without confirmation)."""
    if spec.budget.confirm_top_k == 0:
        return 0
    return math.ceil(spec.budget.confirm_max_repeats / spec.budget.confirm_repeats)


def confirmation_seeds(spec: StudySpec, round_index: int) -> list[int]:
    """The fresh student seeds of confirmation round ``round_index`` (0-based); the last round may be short."""
    first = spec.budget.seed + CONFIRM_SEED_OFFSET + round_index * spec.budget.confirm_repeats
    last = spec.budget.seed + CONFIRM_SEED_OFFSET + spec.budget.confirm_max_repeats
    return list(range(first, min(first + spec.budget.confirm_repeats, last)))


def confirmation_trials(spec: StudySpec) -> int:
    """At most this many confirmation trials per condition: per round, the ``confirm_top_k`` candidates and
    the alpha = 1 baseline. Rounds stop early once the verdict is clear, so a study usually runs fewer."""
    return confirmation_rounds(spec) * (spec.budget.confirm_top_k + 1)


@dataclass(frozen=True)
class TrialBudget:
    """The most trials one condition runs: ``search`` (:func:`trials_per_condition`) and ``confirm``
    (:func:`confirmation_trials`, every round run)."""

    search: int
    confirm: int

    @property
    def total(self) -> int:
        return self.search + self.confirm


def trial_budget(spec: StudySpec) -> TrialBudget:
    """A condition's trial budget, from one place: ``kdtune plan``'s estimate, ``kdtune status`` and the live
    progress of ``kdtune run`` all read it here."""
    return TrialBudget(search=trials_per_condition(spec), confirm=confirmation_trials(spec))
