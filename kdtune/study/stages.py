"""What a condition runs after its search, for :class:`kdtune.study.search.ConditionSearcher`: the transfer check of
a cheap search (:mod:`kdtune.analysis.transfer`), with the alphas a failed one adds at full fidelity; the adaptive
confirmation rounds (:mod:`kdtune.analysis.verdicts`); the locate stage after a "distil" verdict
(:mod:`kdtune.analysis.locate`). Each stage queues its trials and judges them once they have all ended, on the
per-seed scores the searcher keeps; the searcher hands the queued trials out and routes their ends here.

A mixin apart from the searcher's Tune and Optuna plumbing so that each module stays one concern.
alpha is the weight on the true labels: alpha = 1 means no distillation.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING
from typing import Any

from kdtune.spec.rules import CHEAP_PHASES
from kdtune.spec.rules import locate_trials
from kdtune.spec.rules import transfer_seeds


if TYPE_CHECKING:
    from kdtune.spec.schema import StudySpec


logger = logging.getLogger("kdtune.study.search")


class AfterSearchStages:
    """The stages after a condition's search (see the module docstring). The state they read and write lives on the
    searcher, which saves it (counters, queues and the completed trials' per-seed scores)."""

    scores: dict[str, list[dict[str, Any]]]
    conditions: list[str]
    confirm_queue: dict[str, list[dict[str, Any]]]
    confirm_done: dict[str, bool]
    confirm_round: dict[str, int]
    confirm_arms: dict[str, list[dict[str, Any]]]
    confirm_pending: dict[str, int]
    locate_queue: dict[str, list[dict[str, Any]]]
    locate_pending: dict[str, int]
    transfer_queue: dict[str, list[dict[str, Any]]]
    transfer_pending: dict[str, int]
    transfer_verdict: dict[str, str | None]
    transfer_swept: dict[str, bool]

    @property
    def spec(self) -> StudySpec:  # the searcher's
        raise NotImplementedError

    def _context(self) -> Any:
        from kdtune.analysis.recommendation import Context
        from kdtune.analysis.sequential import Design
        from kdtune.tasks import objective_of

        spec = self.spec
        return Context(spec=spec, metric=objective_of(spec), margin=spec.margin, design=Design.of(spec.budget),
                       conditions=len(self.conditions))

    def _arms(self, condition: str, phases: tuple[str, ...]) -> dict[str, Any]:
        """The condition's completed trials of ``phases`` as :class:`kdtune.analysis.arms.Arm` (seed-level runs)."""
        from kdtune.analysis.arms import Arm
        from kdtune.analysis.arms import Run
        from kdtune.analysis.arms import runs_of

        arms: dict[str, Arm] = {}
        for trial in self.scores[condition]:
            if trial["phase"] not in phases:
                continue
            arm = arms.setdefault(_key(trial["params"]), Arm(params=dict(trial["params"])))
            arm.phases.add(trial["phase"])
            for seed, objective, test in trial["scores"]:
                run = Run(trial_id="", phase=trial["phase"], seed=("", int(seed)), objective=objective, test=test)
                runs_of(arm, trial["phase"])[run.seed] = run
        return arms

    def _start_transfer(self, condition: str) -> None:
        """After the condition's last (cheap) search trial: queue the transfer check, the cheap search's best
        ``fidelity.transfer_top`` distilled configurations and the two baselines at full fidelity (or confirm at
        once when nothing completed to re-run)."""
        from kdtune.analysis.recommendation import baseline_arm
        from kdtune.analysis.recommendation import confirmation_candidates

        assert self.spec.fidelity is not None
        arms = self._arms(condition, CHEAP_PHASES)
        reruns = confirmation_candidates(list(arms.values()), self._context(), self.spec.fidelity.transfer_top)
        for alpha in (1.0, 0.0):
            baseline = baseline_arm(arms, alpha, self.spec.default_temperature)
            if baseline is not None and dict(baseline.params) not in reruns:
                reruns.append(dict(baseline.params))
        if len(reruns) < 2:
            logger.warning("%s: too few completed configurations for a transfer check", condition)
            self._start_confirmation(condition)
            return
        logger.info("%s: transfer check: %d configurations at full fidelity on %d paired seeds", condition,
                    len(reruns), len(transfer_seeds(self.spec)))
        self.transfer_queue[condition] = reruns
        self.transfer_pending[condition] = len(reruns)

    def _after_transfer(self, condition: str) -> None:
        """Judge the transfer check and confirm: the cheap search's best unless the check says its answer fails at
        full fidelity; then, once :meth:`_sweep`'s alphas have run, the full-fidelity runs' best."""
        outcome = self._transfer(condition)
        self.transfer_verdict[condition] = None if outcome is None else outcome.verdict
        logger.info("%s: transfer check: %s", condition, "too few runs" if outcome is None else outcome.verdict)
        if self.transfer_verdict[condition] == "fails" and not self.transfer_swept[condition] and self._sweep(condition):
            return
        self._start_confirmation(condition)

    def _sweep(self, condition: str) -> bool:
        """After a failed transfer check: :data:`~kdtune.spec.rules.SWEEP_ALPHAS` alphas over the searched range at
        full fidelity, at the other parameters of the full-fidelity runs' best distilled configuration, on the
        transfer seeds (phase ``transfer``). The cheap search's choices cluster where the cheap optimum lies, which
        the check has just shown to be the wrong place; in simulation, confirming among them alone ended at alpha =
        1, a point below the full optimum (``docs/multi_fidelity.md``). False when there is nothing to add."""
        from kdtune.analysis.locate import locate_points
        from kdtune.analysis.recommendation import confirmation_candidates
        from kdtune.analysis.recommendation import full_fidelity_view
        from kdtune.analysis.recommendation import search_bounds
        from kdtune.spec.rules import SWEEP_ALPHAS

        self.transfer_swept[condition] = True
        full = full_fidelity_view(self._arms(condition, ("transfer",)))
        best = confirmation_candidates(list(full.values()), self._context(), 1)
        if not best:
            return False
        others = {k: v for k, v in best[0].items() if k != "alpha"}
        taken = {a.alpha for a in full.values() if {k: v for k, v in a.params.items() if k != "alpha"} == others}
        low, high = search_bounds(self.spec.search["alpha"])
        alphas = [a for a in locate_points(low, high, SWEEP_ALPHAS) if a not in taken]
        if not alphas:
            return False
        logger.info("%s: the transfer check failed: alpha %s at full fidelity before confirming", condition,
                    ", ".join(f"{a:g}" for a in alphas))
        self.transfer_queue[condition] = [{**best[0], "alpha": a} for a in alphas]
        self.transfer_pending[condition] = len(alphas)
        return True

    def _transfer(self, condition: str) -> Any:
        """The :class:`kdtune.analysis.transfer.Transfer` of the condition's transfer runs (None: too few)."""
        from kdtune.analysis.recommendation import transfer_check

        return transfer_check(self._arms(condition, (*CHEAP_PHASES, "transfer")), self._context())

    def _start_confirmation(self, condition: str) -> None:
        """After the condition's last search trial (or its transfer check): pick what to confirm, queue round 0 (or
        finish). The candidates come from the full-fidelity runs where the transfer check failed."""
        from kdtune.analysis.recommendation import baseline_arm
        from kdtune.analysis.recommendation import confirmation_candidates
        from kdtune.analysis.recommendation import full_fidelity_view

        if self.confirm_done[condition]:
            return
        if self.spec.budget.confirm_top_k == 0:  # a cheap search's transfer check ended: nothing to confirm
            self.confirm_done[condition] = True
            return
        arms = self._arms(condition, CHEAP_PHASES)
        if self.transfer_verdict[condition] == "fails":
            arms = full_fidelity_view(self._arms(condition, ("transfer",)))
        candidates = confirmation_candidates(list(arms.values()), self._context(), self.spec.budget.confirm_top_k)
        # alpha = 1 at the default temperature: the enqueued baseline, or the grid point that stood in for it
        no_kd = baseline_arm(arms, 1.0, self.spec.default_temperature)
        if not candidates or no_kd is None:
            logger.warning("%s: no %s completed, so nothing can be confirmed", condition,
                           "distilled configuration" if not candidates else "alpha = 1 baseline")
            self.confirm_done[condition] = True
            return
        self.confirm_arms[condition] = [*candidates, dict(no_kd.params)]
        self._queue_round(condition)

    def _queue_round(self, condition: str) -> None:
        self.confirm_round[condition] += 1
        self.confirm_queue[condition] = [dict(p) for p in self.confirm_arms[condition]]
        self.confirm_pending[condition] = len(self.confirm_arms[condition])

    def _after_round(self, condition: str) -> None:
        """Judge the confirmation so far; another round unless the verdict is clear or the budget spent."""
        from kdtune.analysis.verdicts import DECISIVE
        from kdtune.spec.rules import confirmation_rounds

        outcome = self._confirmation(condition)
        kind = "inconclusive" if outcome is None else outcome.kind
        if kind in DECISIVE or self.confirm_round[condition] + 1 >= confirmation_rounds(self.spec):
            logger.info("%s: confirmation ends after round %d: %s", condition, self.confirm_round[condition] + 1, kind)
            if kind == "distil" and outcome is not None and self._start_locate(condition, outcome.chosen.params):
                return
            self.confirm_done[condition] = True
        else:
            self._queue_round(condition)

    def _start_locate(self, condition: str, confirmed: dict[str, Any]) -> bool:
        """Queue the locate stage after a "distil" verdict: the added alphas at the confirmed configuration's other
        parameters (:func:`kdtune.analysis.locate.locate_points`; none that the confirmation ran). False when
        there is none to run."""
        from kdtune.analysis.locate import locate_points
        from kdtune.analysis.recommendation import search_bounds

        low, high = search_bounds(self.spec.search["alpha"])
        taken = {float(confirmed["alpha"]), 1.0}
        alphas = [a for a in locate_points(low, high, locate_trials(self.spec)) if a not in taken]
        if not alphas:
            return False
        logger.info("%s: locate stage: alpha %s on %d paired seeds", condition,
                    ", ".join(f"{a:g}" for a in alphas), self.spec.budget.locate_seeds)
        self.locate_queue[condition] = [{**confirmed, "alpha": a} for a in alphas]
        self.locate_pending[condition] = len(alphas)
        return True

    def _verdict(self, condition: str) -> str:
        """The verdict of the condition's confirmation runs so far (the rule ``kdtune recommend`` applies)."""
        outcome = self._confirmation(condition)
        return "inconclusive" if outcome is None else outcome.kind

    def _confirmation(self, condition: str) -> Any:
        """The :class:`kdtune.analysis.verdicts.Confirmation` of the condition's confirmation runs so far (None
        before both arms have runs)."""
        from kdtune.analysis.verdicts import confirm

        context = self._context()
        arms = self._arms(condition, ("confirm",))
        *wanted, no_kd = [arms.get(_key(p)) for p in self.confirm_arms[condition]]
        candidates = [a for a in wanted if a is not None]
        if not candidates or no_kd is None:
            return None
        return confirm([a.confirmed() for a in candidates], no_kd.confirmed(), sign=context.metric.sign,
                       design=context.design, conditions=context.conditions, margin=context.margin)


def _key(params: dict[str, Any]) -> str:
    """A configuration's identity as :mod:`kdtune.analysis.scoring` keys it (floats to 12 significant digits)."""
    from kdtune.analysis.scoring import clean

    return json.dumps({k: clean(v) for k, v in params.items()}, sort_keys=True)
