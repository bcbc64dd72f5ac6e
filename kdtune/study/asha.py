"""ASHA per condition: one ASHA bracket state per condition inside one Tune scheduler. A global ASHA would compare
trials whose metrics sit on different scales (noise 0 vs noise 0.2) and cut whole conditions.

The expected length of a proposal under this rule is what :func:`kdtune.spec.workload.asha_expected_epochs`
simulates for the plan and the ETA.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

from ray.tune.schedulers import AsyncHyperBandScheduler
from ray.tune.schedulers import FIFOScheduler
from ray.tune.schedulers import TrialScheduler

from kdtune.spec.rules import UNPRUNED_PHASES
from kdtune.trial_io import METRIC


if TYPE_CHECKING:
    from ray.tune.experiment import Trial


class StratifiedASHA(FIFOScheduler):
    """One :class:`AsyncHyperBandScheduler` per condition, selected by ``trial.config["condition"]``.

    Baselines and confirmation runs are never stopped early: they are what the searched configurations are
    compared with (a pruned alpha = 1 baseline leaves no gain to measure), and confirmation runs exist to give
    full, unbiased numbers. Their results still enter their condition's rungs.
    """

    def __init__(self, *, mode: str, max_t: int, grace_period: int, reduction_factor: float) -> None:
        super().__init__()
        self._kwargs: dict[str, Any] = {"metric": METRIC, "mode": mode, "time_attr": "epoch", "max_t": max_t,
                        "grace_period": grace_period, "reduction_factor": reduction_factor}
        self._by_condition: dict[str, AsyncHyperBandScheduler] = {}

    def _for(self, trial: Trial) -> AsyncHyperBandScheduler:
        condition = trial.config["condition"]
        if condition not in self._by_condition:
            self._by_condition[condition] = AsyncHyperBandScheduler(**self._kwargs)
        return self._by_condition[condition]

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True

    def on_trial_add(self, tune_controller: Any, trial: Trial) -> None:
        self._for(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        if result.get("nan"):
            return TrialScheduler.STOP
        decision = self._for(trial).on_trial_result(tune_controller, trial, result)  # also records the rung value
        return TrialScheduler.CONTINUE if trial.config.get("phase") in UNPRUNED_PHASES else decision

    def on_trial_complete(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> None:
        self._for(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Trial) -> None:
        self._for(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "; ".join(f"{c}: {s.debug_string()}" for c, s in self._by_condition.items())
