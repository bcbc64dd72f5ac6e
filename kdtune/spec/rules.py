"""The study's pure rules: phases, budgets, seeds and how an ended trial is classified.

They are shared by the Ray Tune plugin (:mod:`kdtune.study.search`), the results writer, ``kdtune status`` and
``kdtune plan``, and need neither Ray nor torch, so the read-only commands stay light.

Phases: ``search`` (proposed by the condition's sampler), ``baseline`` (alpha = 1, no distillation, and
alpha = 0, pure distillation, enqueued in every condition), ``transfer`` (with a ``fidelity`` section, whose search and
baselines run cheapened: the cheap search's best ``fidelity.transfer_top`` configurations and both baselines re-run
at full fidelity on paired seeds, :mod:`kdtune.analysis.transfer`), ``confirm`` (the recommended configuration and
alpha = 1 re-run on fresh student seeds, in rounds, until the verdict is clear or the budget is spent) and
``locate`` (after a "distil" verdict, ``budget.locate_alphas`` more alphas at the confirmed temperature on the first
round's seeds: :mod:`kdtune.analysis.locate`).

Student seeds come from two streams that cannot meet: the search's are ``budget.seed``, ``budget.seed + 1``, ...
(``budget.repeats`` of them); the confirmation's are drawn from numpy's ``SeedSequence(budget.seed,
spawn_key=(CONFIRM_STREAM,))`` as 32-bit words, each mapped onto the 32-bit seeds outside the search's block,
skipping any drawn before. Whatever ``budget.repeats`` is, no confirmation run repeats a search run (the
winner's curse would come back), and two studies with different ``budget.seed`` draw unrelated confirmation seeds.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kdtune.errors import SpecError
from kdtune.trial_io import METRIC


if TYPE_CHECKING:
    from kdtune.spec.schema import StudySpec
    from kdtune.spec.sections import BudgetSpec
    from kdtune.trial_io import TrialResult


PHASES = ("search", "baseline", "transfer", "confirm", "locate")
UNPRUNED_PHASES = ("baseline", "transfer", "confirm", "locate")  # trials ASHA never stops (study.asha.StratifiedASHA)
#: The phases after a condition's search: the transfer check (with a ``fidelity`` section), its confirmation rounds,
#: then, after a "distil" verdict, its locate stage.
AFTER_SEARCH = ("transfer", "confirm", "locate")
#: The phases a ``fidelity`` section cheapens; every other runs at full fidelity (the training the user will run).
CHEAP_PHASES = ("search", "baseline")
#: The fewest seeds a locate stage runs on (kdtune.analysis.locate.MIN_SEEDS: a bootstrap over fewer says nothing).
MIN_LOCATE_SEEDS = 3
#: The alphas a failed transfer check adds at full fidelity before confirming (0, 0.2, ..., 0.8 on [0, 1]).
SWEEP_ALPHAS = 5
#: The spawn key of the confirmation's seed stream (see the module docstring).
CONFIRM_STREAM = 1
#: The confidence that every interval of a recommendation covers its true gain, all conditions and looks together.
FAMILY_CONFIDENCE = 0.95
_SEED_SPACE = 2**32  # student seeds are 32-bit (kdtune.spec.sections.MAX_SEED)


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


def phase_epochs(spec: StudySpec, phase: str) -> int:
    """The epochs a trial of ``phase`` trains when it runs to the end: ``fidelity.epochs`` in the phases a fidelity
    section cheapens, else the task's (``student.epochs``; one step for a task without epochs)."""
    from kdtune.tasks import task_for

    full = task_for(spec).epochs(spec)
    if spec.fidelity is not None and phase in CHEAP_PHASES:
        return spec.fidelity.cheap_epochs(full)
    return full


def epochs_by_phase(spec: StudySpec) -> dict[str, int]:
    """:func:`phase_epochs` of every phase: what a trial of each must have trained to be COMPLETE."""
    return {phase: phase_epochs(spec, phase) for phase in PHASES}


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


def tpe_startup_trials(spec: StudySpec) -> int:
    """The TPE sampler's random proposals per condition before it models what it has seen."""
    return max(4, spec.budget.trials_per_condition // 4)


def confirmation_looks(round_size: int, planned: int, max_n: int) -> tuple[int, ...]:
    """Paired seeds at each look of a condition's confirmation: ``round_size`` more per round up to the ``planned``
    maximum (the last planned round may be short), then ``round_size`` more per round up to ``max_n`` where
    ``kdtune resume --confirm-max-repeats`` raised the maximum after the study started (its looks keep the
    planned ones and continue from them: :mod:`kdtune.analysis.sequential`)."""
    looks = list(range(round_size, planned + 1, round_size))
    if not looks or looks[-1] != planned:
        looks.append(planned)
    return (*looks, *range(planned + round_size, max_n + 1, round_size))


def budget_looks(budget: BudgetSpec) -> tuple[int, ...]:
    """:func:`confirmation_looks` of a spec's budget."""
    return confirmation_looks(budget.confirm_repeats, budget.planned_confirm_repeats, budget.confirm_max_repeats)


def family_level(conditions: int, candidates: int) -> float:
    """The error rate of one condition's interval: the family's 5% shared (Bonferroni) by the conditions and
    their confirmed candidates (:mod:`kdtune.analysis.verdicts`)."""
    return (1 - FAMILY_CONFIDENCE) / (max(1, conditions) * max(1, candidates))


def min_directional_pairs(level: float, failure_rate: float) -> int:
    """The fewest paired seeds a "distil" or "hurts" verdict at error rate ``level`` rests on: enough that a
    failure hitting ``failure_rate`` of the distilled runs is missed by all of them with probability at most
    ``level``, ``(1 - failure_rate)^n <= level``. No interval can see a failure that no run showed; once one
    shows, the skewness-corrected interval accounts for it (:mod:`kdtune.analysis.sequential`). 2 when
    ``failure_rate`` is 0."""
    if failure_rate <= 0:
        return 2
    return max(2, math.ceil(math.log(level) / math.log1p(-failure_rate) - 1e-9))


def check_confirmation_budget(budget: BudgetSpec, conditions: int) -> None:
    """Refuse a new study whose confirmation could never end in "distil" or "hurts": fewer seeds than
    :func:`min_directional_pairs`. A study already run is re-read with its own budget, whatever it is."""
    if not budget.confirm_top_k:
        return
    need = min_directional_pairs(family_level(conditions, budget.confirm_top_k), budget.confirm_failure_rate)
    if budget.confirm_max_repeats < need:
        start = budget.confirm_planned_repeats or 0  # whole rounds from the planned looks on
        rounds = start + -(-(need - start) // budget.confirm_repeats) * budget.confirm_repeats
        raise SpecError("budget.confirm_max_repeats", budget.confirm_max_repeats,
                        f"must be at least {need}: a distil or hurts verdict rests on {need} paired seeds here, so "
                        f"that a failure in {budget.confirm_failure_rate:g} of distilled runs shows ({conditions} "
                        f"condition(s) x {budget.confirm_top_k} candidate(s) share a 5% error rate); raise it "
                        f"(e.g. to {rounds}: whole rounds of {budget.confirm_repeats}) or lower budget.confirm_failure_rate")


def confirmation_rounds(spec: StudySpec) -> int:
    """The most confirmation rounds per condition: one per look of :func:`budget_looks` (0 without
    confirmation)."""
    if spec.budget.confirm_top_k == 0:
        return 0
    return len(budget_looks(spec.budget))


def search_seeds(spec: StudySpec) -> list[int]:
    """The student seeds of every search and baseline trial: ``budget.seed`` onwards, the same for every
    configuration (paired)."""
    return list(range(spec.budget.seed, spec.budget.seed + spec.budget.repeats))


def transfer_seeds(spec: StudySpec) -> list[int]:
    """The student seeds of the transfer check: ``budget.seed`` onwards, ``fidelity.transfer_repeats`` of them, so
    its full-fidelity runs pair with the cheap search's on the seeds they share (none without a fidelity section)."""
    if spec.fidelity is None:
        return []
    return list(range(spec.budget.seed, spec.budget.seed + spec.fidelity.repeats(spec.budget)))


def search_block(spec: StudySpec) -> int:
    """How many seeds from ``budget.seed`` on the search and the transfer check use: the confirmation's stream is
    mapped outside them (a spec without a fidelity section: ``budget.repeats``, as before the transfer check)."""
    return max(spec.budget.repeats, len(transfer_seeds(spec)))


def transfer_trials(spec: StudySpec) -> int:
    """The transfer check's trials per condition: the cheap search's best ``fidelity.transfer_top`` distilled
    configurations, alpha = 1 and alpha = 0; none without a fidelity section."""
    return 0 if spec.fidelity is None else spec.fidelity.transfer_top + 2


def sweep_trials(spec: StudySpec) -> int:
    """The most trials a failed transfer check adds: :data:`SWEEP_ALPHAS` alphas at full fidelity, so that the study
    confirms from full-fidelity runs that span the alpha range, not only the cheap search's choices."""
    return 0 if spec.fidelity is None else SWEEP_ALPHAS


def confirmation_seeds(spec: StudySpec, round_index: int) -> list[int]:
    """The fresh student seeds of confirmation round ``round_index`` (0-based): the confirmation stream's seeds
    from the previous look's count to this look's (the last planned round may be short)."""
    looks = budget_looks(spec.budget)
    start = looks[round_index - 1] if round_index > 0 else 0
    return list(_confirmation_stream(spec.budget.seed, search_block(spec), looks[round_index])[start:])


@functools.lru_cache(maxsize=64)
def _confirmation_stream(seed: int, repeats: int, count: int) -> tuple[int, ...]:
    """The first ``count`` seeds of the confirmation's stream (see the module docstring): the 32-bit words of
    ``SeedSequence(seed, spawn_key=(CONFIRM_STREAM,))``, each mapped onto the 32-bit seeds that are not search
    seeds (counted past the search's block), skipping one drawn before. A SeedSequence's first words do not depend
    on how many are asked for, so each round's seeds follow the last."""
    import numpy as np

    block = len(range(seed, min(seed + repeats, _SEED_SPACE)))  # the search seeds among the 32-bit ones
    free = _SEED_SPACE - block
    if free < count:
        raise SpecError("budget.repeats", repeats, f"leaves fewer than {count} 32-bit student seeds for confirmation")
    source = np.random.SeedSequence(seed, spawn_key=(CONFIRM_STREAM,))
    size = count
    while True:
        drawn: dict[int, None] = {}
        for word in source.generate_state(size, dtype=np.uint32).tolist():
            index = word % free
            drawn.setdefault(index if index < seed else index + block)
            if len(drawn) == count:
                return tuple(drawn)
        size *= 2


def locate_seeds(spec: StudySpec) -> list[int]:
    """The student seeds of the locate stage: the first ``budget.locate_seeds`` of confirmation round 0, on which
    the confirmed configuration and alpha = 1 ran too (paired)."""
    return confirmation_seeds(spec, 0)[:spec.budget.locate_seeds]


def locate_trials(spec: StudySpec) -> int:
    """The locate stage's trials per condition: one per added alpha; none without confirmation, or where the first
    confirmation round has fewer than :data:`MIN_LOCATE_SEEDS` seeds to run them on."""
    if not spec.budget.confirm_top_k or spec.budget.locate_seeds < MIN_LOCATE_SEEDS:
        return 0
    return spec.budget.locate_alphas


def confirmation_trials(spec: StudySpec) -> int:
    """At most this many trials per condition after its search: the transfer check's (with a fidelity section, and
    the alphas a failed one adds),
    per round the ``confirm_top_k`` candidates and the alpha = 1 baseline, then the locate stage's. Rounds stop
    early once the verdict is clear, and the locate stage runs only after "distil", so a study usually runs fewer."""
    return (confirmation_rounds(spec) * (spec.budget.confirm_top_k + 1) + locate_trials(spec) + transfer_trials(spec)
            + sweep_trials(spec))


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
