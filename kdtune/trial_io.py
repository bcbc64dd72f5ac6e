"""What crosses into and out of a Ray Tune trial, as types: the configuration the searcher hands out and the
result the trial reports each epoch. Tune passes both as plain dicts (they are pickled and logged as JSON), so
they are ``TypedDict``s: the searcher, the trial, the driver's callbacks and the W&B tracker index the same keys.

No imports beyond the standard library: every layer may use these names.
"""

from __future__ import annotations

from typing import Any
from typing import Final
from typing import NotRequired
from typing import TypedDict
from typing import cast


#: The key of the value Optuna and ASHA compare, in every result a trial reports.
METRIC: Final = "objective"  # Final: a literal type, so it indexes TrialResult
#: The parameters a study may search, in one order: the results tables' columns and every configuration's keys.
#: alpha is the weight on the true labels (alpha = 1: no distillation). The language task adds the divergence
#: (forward_kl | reverse_kl | jsd), JSD's beta, and the k a run reads of a top-k target cache.
SEARCH_PARAMS = ("alpha", "temperature", "lr", "batch_size", "epochs", "divergence", "beta", "top_k")


class TrialConfig(TypedDict):
    """One configuration of one condition, run with all its seeds (``ConditionSearcher.suggest``)."""

    condition: str  # the condition's key (``Condition.key``)
    phase: str  # one of ``kdtune.spec.rules.PHASES``
    params: dict[str, Any]  # a value for each of SEARCH_PARAMS that applies (no temperature for the linear task)
    seeds: list[int]  # the student seeds, trained in lockstep inside the trial
    # A cheap trial's settings (``kdtune.spec.fidelity.FidelitySpec.trial``): data_fraction, epochs, width_factor,
    # student, student_kwargs. Absent or None: full fidelity, ``params`` as they are.
    fidelity: NotRequired[dict[str, Any] | None]


class TrialResult(TypedDict, total=False):
    """What a trial reports after each epoch (the linear task: once). Tune adds its own keys (``time_total_s``,
    ``training_iteration``, ...), so readers use ``.get`` for anything a failed trial may lack."""

    objective: float  # METRIC: the mean over seeds of each seed's best validation objective so far
    epoch: int  # epochs done
    rows: list[dict[str, Any]]  # per seed, this epoch's metrics (plus rows replayed after a restore)
    node_id: str  # the Ray node that ran it
    nan: bool  # a loss or the objective became NaN or infinite: the trial stops
    scores: list[list[float]]  # [seed, objective, test metric] per seed, at each seed's best validation epoch
    time_total_s: float  # added by Tune


def config_of(trial: Any) -> TrialConfig:
    """A Tune ``Trial``'s configuration: what the searcher handed out for it."""
    return cast(TrialConfig, trial.config)


def last_result_of(trial: Any) -> TrialResult:
    """A Tune ``Trial``'s last reported result (``{}`` before its first)."""
    return cast(TrialResult, trial.last_result or {})
