"""The Ray Tune searcher that keeps conditions apart: one Optuna study per condition (ASHA per condition is
:mod:`kdtune.study.asha`).

:class:`ConditionSearcher` hands out trials across conditions fairly (the condition with the fewest trials
so far goes next) and asks the condition's own Optuna study for each configuration, so that TPE never
learns across noise levels. It tells Optuna what really happened: COMPLETE with the trial's objective,
PRUNED (with the last value as a user attribute) when ASHA stopped it early, FAIL with the reason on an error
or a NaN. Once a condition's search has ended it confirms: its best distilled configuration(s) and
alpha = 1 re-run on fresh paired seeds, round after round, until :func:`kdtune.analysis.verdicts.confirm` gives a
clear verdict or ``budget.confirm_max_repeats`` seeds are spent (the rule ``kdtune recommend`` applies to the
same runs). With a ``fidelity`` section the search and its baselines run cheap, and before confirming it runs the
transfer check: the cheap search's best ``fidelity.transfer_top`` configurations, alpha = 1 and alpha = 0 at full
fidelity on paired seeds (:mod:`kdtune.analysis.transfer`); confirmation then runs at full fidelity, on the cheap
search's best configuration(s), or on the full-fidelity runs' best where the check says the cheap answer fails.
After a "distil" verdict it locates alpha: ``budget.locate_alphas`` more alphas at the confirmed
configuration's temperature, on the first round's seeds (:mod:`kdtune.analysis.locate`). The stages after the
search are :mod:`kdtune.study.stages`. Its state is the Optuna storage plus counters and the completed trials'
per-seed scores (JSON), so it resumes after a driver crash; a resume that raised ``budget.confirm_max_repeats`` (``kdtune resume
--confirm-max-repeats``) continues the conditions that ended inconclusive (:meth:`ConditionSearcher.follow_budget`).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search import Searcher
from ray.tune.search import SearchGenerator

from kdtune.errors import StudyError
from kdtune.records.dashboard import name_metric
from kdtune.records.optuna_storage import full_storage_url
from kdtune.records.optuna_storage import make_storage
from kdtune.records.optuna_storage import remember_storage
from kdtune.records.optuna_storage import retrying
from kdtune.spec.rules import CHEAP_PHASES
from kdtune.spec.rules import confirmation_seeds
from kdtune.spec.rules import locate_seeds
from kdtune.spec.rules import optuna_study_name
from kdtune.spec.rules import phase_epochs
from kdtune.spec.rules import search_seeds
from kdtune.spec.rules import tpe_startup_trials
from kdtune.spec.rules import transfer_seeds
from kdtune.spec.rules import trial_outcome
from kdtune.spec.rules import trials_per_condition
from kdtune.study.stages import AfterSearchStages
from kdtune.trial_io import METRIC
from kdtune.trial_io import TrialConfig
from kdtune.trial_io import TrialResult


if TYPE_CHECKING:

    from kdtune.spec.schema import StudySpec


logger = logging.getLogger(__name__)


def make_sampler(spec: StudySpec, index: int) -> optuna.samplers.BaseSampler:
    from kdtune.spec.space import grid

    seed = spec.budget.seed + index
    if spec.sampler == "grid":
        return UnstoppedGridSampler(grid(spec.search), seed=seed)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=tpe_startup_trials(spec))


class UnstoppedGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its stop. Told its last grid point, ``GridSampler`` calls ``study.stop()``,
    which works only inside ``Study.optimize``; kdtune asks and tells instead, so that ``tell`` raised, the
    searcher never counted the trial as ended, and its condition never confirmed (``suggest`` waited forever).
    The grid's end is the searcher's: it hands out ``trials_per_condition`` trials, every grid point once."""

    def after_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial, state: TrialState,
                    values: Any) -> None:
        return None


def create_studies(spec: StudySpec, storage: optuna.storages.BaseStorage, conditions: list[str], *, prefix: str,
                   join: bool) -> None:
    """Create each condition's Optuna study once, before any worker starts (concurrent creation races on
    PostgreSQL), and enqueue the baselines alpha = 1 and alpha = 0 unless the grid already holds them.

    Names start with ``prefix`` (:meth:`kdtune.records.folder.StudyFolder.optuna_prefix`, unique per study).
    Only ``kdtune resume`` of the same study (``join``) may find them already there: a new study whose names
    exist in the storage is refused, never merged into another study's trials.
    """
    from kdtune.spec.space import baselines
    from kdtune.spec.space import grid
    from kdtune.tasks import objective_of

    direction = objective_of(spec).direction
    if not join:
        taken = sorted({s.study_name for s in retrying(storage.get_all_studies)}
                       & {optuna_study_name(prefix, c) for c in conditions})
        if taken:
            raise StudyError(f"the Optuna storage already holds study {taken[0]} (of another kdtune study): "
                             "continue that study with `kdtune resume` of its folder, or use another storage")
    for condition in conditions:
        name = optuna_study_name(prefix, condition)
        study = retrying(functools.partial(optuna.create_study, study_name=name, storage=storage,
                                            direction=direction, load_if_exists=True))
        if study.direction.name.lower() != direction:
            raise StudyError(f"Optuna study {name} exists in the storage with direction {study.direction.name}, "
                             f"but this spec's objective needs {direction}: use another study name or storage")
        name_metric(study, spec.objective_name)
        if study.trials:
            continue  # created by an earlier run of this study
        points = grid(spec.search) if spec.sampler == "grid" else None
        for params in baselines(spec):
            if points is None or any(params.get(k) not in v for k, v in points.items()):
                study.enqueue_trial(params, user_attrs={"phase": "baseline"})


class StudySearchGenerator(SearchGenerator):
    """Tune's wrapper of the study's searcher (what Tune builds around a plain searcher), which also keeps a
    resumed study's new trials in the folder being resumed, and hands out trials again when a resume raised the
    confirmation budget of a study whose searcher had finished.

    Tune saves this wrapper's experiment, storage path included, and creates every new trial of a restored run
    from it: the trials Tune restores follow a moved experiment folder, but new ones went to the folder Tune saved,
    so a resumed copy of a study wrote its new trials' checkpoints into the original. Where the study keeps
    Tune's folder inside its own (no ``--tune-storage``), the restored storage points at the folder being resumed.
    """

    def __init__(self, searcher: ConditionSearcher, max_concurrent: int) -> None:
        super().__init__(ConcurrencyLimiter(searcher, max_concurrent=max_concurrent))

    def set_state(self, state: dict[str, Any]) -> None:
        import copy

        from kdtune.records.folder import StudyFolder
        from kdtune.records.folder import running_folder

        super().set_state(state)
        if self._finished and self.searcher.searcher.has_work():  # type: ignore[attr-defined]
            self._finished = False  # its confirmation budget was raised (ConditionSearcher.follow_budget)
        here = running_folder()
        if here is None or self._experiment is None or StudyFolder(here).meta().get("tune_storage"):
            return
        storage = copy.copy(self._experiment.storage)
        storage.storage_fs_path = StudyFolder(here).tune_dir.resolve().as_posix()
        self._experiment.storage = storage
        self._experiment.spec["storage"] = storage


class ConditionSearcher(AfterSearchStages, Searcher):
    """Suggests ``{"condition", "phase", "params", "seeds"}`` configurations; see the module docstring."""

    def __init__(
        self,
        *,
        spec: StudySpec,
        storage_url: str,
        conditions: list[str],
        study_dir: Path,
        optuna_prefix: str,
        start_time: float | None = None,
    ) -> None:
        from kdtune.secrets import redact_url

        super().__init__(metric=METRIC, mode=spec.mode)
        self.spec_dict = spec.to_dict()
        # Tune saves this object (searcher state, tuner.pkl): it keeps the URL without its password and finds
        # the full one in this driver (remember_storage), as a resumed driver does after being given it again.
        remember_storage(storage_url)
        self.storage_url = redact_url(storage_url)
        self.study_dir = Path(study_dir)
        self.optuna_prefix = optuna_prefix
        self.conditions = list(conditions)
        self.budget = trials_per_condition(spec)
        self.deadline = None
        if spec.budget.max_wall_minutes is not None:
            self.deadline = (start_time or time.time()) + 60 * spec.budget.max_wall_minutes
        self.handed_out = {c: 0 for c in conditions}
        self.ended = {c: 0 for c in conditions}
        self.confirm_queue: dict[str, list[dict[str, Any]]] = {c: [] for c in conditions}
        # without confirmation a condition is done after its search, or after its transfer check (a fidelity section)
        self.confirm_done = {c: spec.budget.confirm_top_k == 0 and spec.fidelity is None for c in conditions}
        self.confirm_round = {c: -1 for c in conditions}  # the last round queued
        self.confirm_arms: dict[str, list[dict[str, Any]]] = {c: [] for c in conditions}  # candidates, then alpha = 1
        self.confirm_pending = {c: 0 for c in conditions}  # trials of the current round not ended yet
        self.locate_queue: dict[str, list[dict[str, Any]]] = {c: [] for c in conditions}
        self.locate_pending = {c: 0 for c in conditions}  # locate trials not ended yet
        self.transfer_queue: dict[str, list[dict[str, Any]]] = {c: [] for c in conditions}
        self.transfer_pending = {c: 0 for c in conditions}  # transfer-check trials not ended yet
        self.transfer_verdict: dict[str, str | None] = {c: None for c in conditions}  # after the check
        self.transfer_swept = {c: False for c in conditions}  # a failed check's alphas at full fidelity were queued
        self.scores: dict[str, list[dict[str, Any]]] = {c: [] for c in conditions}  # completed trials' seeds
        self.live: dict[str, dict[str, Any]] = {}  # tune trial id -> condition, phase, optuna number
        self.cut_short = False
        self._spec: StudySpec | None = None
        self._studies: dict[str, optuna.Study] | None = None
        self._storage: optuna.storages.BaseStorage | None = None
        self._trial_ids: dict[tuple[str, int], int] = {}  # (condition, number) -> the storage's trial id

    # -- state: counters only; the Optuna studies reconnect to their storage on demand ----------------
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_studies", "_spec", "_storage", "_trial_ids")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        from kdtune.records.folder import StudyFolder
        from kdtune.records.folder import running_study
        from kdtune.secrets import redact_url

        self.__dict__.update(state)
        empty: dict[str, Any] = {"locate_queue": [], "locate_pending": 0, "transfer_queue": [], "transfer_pending": 0,
                                 "transfer_verdict": None, "transfer_swept": False}
        for name, value in empty.items():  # saved before the locate stage or the transfer check existed
            if name not in state:
                self.__dict__[name] = {c: list(value) if isinstance(value, list) else value for c in state["conditions"]}
        saved = Path(state["study_dir"])
        self.study_dir = running_study(saved)
        if "optuna_prefix" not in state:  # saved before Optuna study names carried the study's id
            self.optuna_prefix = self.spec_dict["name"]
        if self.study_dir != saved:  # Tune saved another folder's path: this one was moved or copied from it
            url = StudyFolder(self.study_dir).storage_url()
            if url:
                remember_storage(url)
                self.storage_url = redact_url(url)
        self._studies = None
        self._spec = None
        self._storage = None
        self._trial_ids = {}

    def save(self, checkpoint_path: str) -> None:
        """Tune's experiment checkpoint of the searcher: JSON, written atomically."""
        from kdtune.records.folder import atomic_write

        atomic_write(checkpoint_path, json.dumps({**self.__getstate__(), "study_dir": str(self.study_dir)}))

    def restore(self, checkpoint_path: str) -> None:
        state = json.loads(Path(checkpoint_path).read_text())
        state["study_dir"] = Path(state["study_dir"])
        self.__setstate__(state)
        self._fail_orphans()
        self.follow_budget()

    def follow_budget(self) -> None:
        """Take up a confirmation budget raised since Tune saved this searcher (``kdtune resume
        --confirm-max-repeats`` records it in ``study.json``, :mod:`kdtune.study.extension`): the conditions whose
        confirmation ended inconclusive at the old maximum get their next round, on the next seeds of the
        confirmation's stream. Their looks continue the same sequential design: its planned looks are the
        study's, and the added ones spend only the level those left (:mod:`kdtune.analysis.sequential`)."""
        from kdtune.records.folder import StudyFolder

        budget = StudyFolder(self.study_dir).spec().budget
        if budget.confirm_max_repeats <= self.spec.budget.confirm_max_repeats:
            return
        self.spec_dict = {**self.spec_dict, "budget": budget.model_dump(mode="json")}
        self._spec = None
        for condition in self.conditions:
            if self.confirm_done[condition] and self.confirm_arms[condition] and self._verdict(condition) == "inconclusive":
                logger.info("%s: confirmation continues past %d paired seeds", condition,
                            budget.planned_confirm_repeats)
                self.confirm_done[condition] = False
                self._queue_round(condition)

    def has_work(self) -> bool:
        """Whether trials remain to hand out (a resumed searcher whose budget was raised has some again)."""
        return not all(self.confirm_done.values()) or any(self.handed_out[c] < self.budget for c in self.conditions)

    def _fail_orphans(self) -> None:
        """Optuna trials asked for just before a driver crash never reached Tune's saved state: Tune will
        ask again, so the orphans are closed as FAIL instead of staying RUNNING forever."""
        live = {(e["condition"], e["number"]) for e in self.live.values()}
        for condition, study in self.studies().items():
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                if (condition, t.number) not in live:
                    self._tell(condition, t.number, "FAIL", "orphaned by a driver crash; asked again on resume", None)

    @property
    def spec(self) -> StudySpec:
        from kdtune.spec.schema import StudySpec

        if self._spec is None:
            self._spec = StudySpec.model_validate(self.spec_dict)
        return self._spec

    def studies(self) -> dict[str, optuna.Study]:
        if self._studies is None:
            self._storage = storage = self.open_storage()
            self._studies = {
                c: optuna.load_study(study_name=optuna_study_name(self.optuna_prefix, c), storage=storage,
                                     sampler=make_sampler(self.spec, i))
                for i, c in enumerate(self.conditions)
            }
        return self._studies

    def open_storage(self) -> optuna.storages.BaseStorage:
        """The Optuna storage of the study's URL. The one seam for driving the searcher without Ray Tune:
        ``benchmarks/calibration_sim.py`` gives it an in-memory storage and runs it on simulated trials."""
        return make_storage(full_storage_url(self.storage_url))

    # -- Searcher API ----------------------------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict[str, Any], **spec: Any) -> bool:
        return True  # metric and mode are fixed by the study spec

    def suggest(self, trial_id: str) -> TrialConfig | str | None:  # type: ignore[override]
        # (Tune types it dict | None, but Searcher.FINISHED is a str, and a TypedDict is no dict[Any, Any])
        if self.deadline is not None and time.time() > self.deadline:
            if not self.cut_short:
                from kdtune.records.folder import StudyFolder

                logger.warning("budget.max_wall_minutes reached: no new trials; running ones finish")
                StudyFolder(self.study_dir).update(cut_short=True)
            self.cut_short = True
            return Searcher.FINISHED
        open_conditions = [c for c in self.conditions if self.handed_out[c] < self.budget]
        if open_conditions:
            condition = min(open_conditions, key=lambda c: self.handed_out[c])
            return self._ask(trial_id, condition)
        for phase, queues in (("transfer", self.transfer_queue), ("confirm", self.confirm_queue),
                              ("locate", self.locate_queue)):
            for condition, queue in queues.items():
                if queue:
                    config = self._config(condition, phase, queue.pop(0))
                    self.live[trial_id] = {"condition": condition, "phase": phase, "number": None,
                                           "params": config["params"]}
                    return config
        return None if not all(self.confirm_done.values()) else Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: TrialResult) -> None:  # type: ignore[override]
        """Each epoch's objective becomes the Optuna trial's intermediate value (one storage write; a replayed
        epoch overwrites its value), so Optuna's dashboard draws learning curves and shows where ASHA stopped
        a trial."""
        entry = self.live.get(trial_id)
        value = result.get(METRIC)
        if entry is None or entry["number"] is None or value is None or not math.isfinite(value):
            return
        optuna_id = self._optuna_id(entry["condition"], entry["number"])
        try:
            self._storage.set_trial_intermediate_value(optuna_id, int(result.get("epoch", 0)), float(value))  # type: ignore[union-attr]
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # a trial replayed after `kdtune resume` whose Optuna trial was closed before the crash

    def on_trial_complete(self, trial_id: str, result: TrialResult | None = None,  # type: ignore[override]
                          error: bool = False) -> None:
        if result and not error:
            self.on_trial_result(trial_id, result)  # Tune skips on_trial_result for the report it stops on
        entry = self.live.pop(trial_id, None)
        if entry is None:
            return  # already told (a resumed driver may repeat a completion)
        state, reason = trial_outcome(result, error, self._epochs(entry))
        condition = entry["condition"]
        if entry["number"] is not None:
            self._tell(condition, entry["number"], state, reason, result)
        if state == "COMPLETE" and result is not None:
            self.scores[condition].append({"phase": entry["phase"], "params": entry["params"],
                                           "scores": result.get("scores", [])})
        if entry["phase"] == "confirm":
            self.confirm_pending[condition] -= 1
            if self.confirm_pending[condition] == 0:
                self._after_round(condition)
        elif entry["phase"] == "transfer":
            self.transfer_pending[condition] -= 1
            if self.transfer_pending[condition] == 0:
                self._after_transfer(condition)
        elif entry["phase"] == "locate":
            self.locate_pending[condition] -= 1
            if self.locate_pending[condition] == 0:
                logger.info("%s: locate stage ended", condition)
                self.confirm_done[condition] = True
        else:
            self.ended[condition] += 1
            if self.ended[condition] >= self.budget and self.confirm_round[condition] < 0:
                if self.spec.fidelity is not None:
                    self._start_transfer(condition)
                else:
                    self._start_confirmation(condition)

    # -- helpers -----------------------------------------------------------------------------------------
    def _ask(self, trial_id: str, condition: str) -> TrialConfig:
        from kdtune.spec.space import to_optuna

        study = self.studies()[condition]
        with warnings.catch_warnings():
            # alpha = 0 is a baseline even where the searched range or grid does not contain it.
            warnings.filterwarnings("ignore", message="Fixed parameter .* is out of range")
            ot_trial = study.ask(fixed_distributions=to_optuna(self.spec.search))
        # Baselines were enqueued with phase=baseline, except where the grid holds them: that grid point is one.
        phase = ot_trial.user_attrs.get("phase") or ("baseline" if ot_trial.params in self._grid_baselines() else "search")
        ot_trial.set_user_attr("phase", phase)
        ot_trial.set_user_attr("tune_trial_id", trial_id)
        self.handed_out[condition] += 1
        config = self._config(condition, phase, dict(ot_trial.params))
        self.live[trial_id] = {"condition": condition, "phase": phase, "number": ot_trial.number,
                               "params": config["params"]}
        return config

    def _grid_baselines(self) -> list[dict[str, Any]]:
        """The baselines a grid holds (so :func:`create_studies` enqueued none for them)."""
        from kdtune.spec.space import baselines
        from kdtune.spec.space import grid

        if self.spec.sampler != "grid":
            return []
        points = grid(self.spec.search)
        return [b for b in baselines(self.spec) if all(b.get(k) in v for k, v in points.items())]

    def _config(self, condition: str, phase: str, searched: dict[str, Any]) -> TrialConfig:
        from kdtune.spec.conditions import expand
        from kdtune.tasks import task_for

        s = self.spec
        # the linear task: one step, no temperature; the language task: the condition's k (conditions.top_k)
        params = task_for(s).run_params(s, searched, next(c for c in expand(s) if c.key == condition))
        if phase == "confirm":
            seeds = confirmation_seeds(s, self.confirm_round[condition])
        elif phase == "locate":
            seeds = locate_seeds(s)
        elif phase == "transfer":
            seeds = transfer_seeds(s)
        else:
            seeds = search_seeds(s)
        cheap = s.fidelity is not None and phase in CHEAP_PHASES
        fidelity = s.fidelity.trial(phase_epochs(s, "confirm")) if cheap and s.fidelity is not None else None
        return {"condition": condition, "phase": phase, "params": params, "seeds": seeds, "fidelity": fidelity}

    def _epochs(self, entry: dict[str, Any]) -> int:
        return phase_epochs(self.spec, entry["phase"])

    def _tell(self, condition: str, number: int, state: str, reason: str | None, result: TrialResult | None) -> None:
        study = self.studies()[condition]
        storage = self._storage
        assert storage is not None
        trial_id = self._optuna_id(condition, number)
        if storage.get_trial(trial_id).state.is_finished():
            return
        if result and METRIC in result:
            storage.set_trial_user_attr(trial_id, "last_value", float(result[METRIC]))
            storage.set_trial_user_attr(trial_id, "epochs_done", int(result.get("epoch", 0)))
        if reason:
            storage.set_trial_user_attr(trial_id, "reason", reason)
        if state == "COMPLETE":
            study.tell(number, float(result[METRIC]))  # type: ignore[index]
        else:
            study.tell(number, state=TrialState.PRUNED if state == "PRUNED" else TrialState.FAIL)

    def _optuna_id(self, condition: str, number: int) -> int:
        """The storage's id of a trial, by its number in the condition's study (user attributes and intermediate
        values are set by id: an ``optuna.Study`` has no public setter by number)."""
        if (condition, number) not in self._trial_ids:
            if self._storage is None:
                self.studies()
            storage = self._storage
            assert storage is not None
            study_id = storage.get_study_id_from_name(optuna_study_name(self.optuna_prefix, condition))
            self._trial_ids[(condition, number)] = storage.get_trial_id_from_study_id_trial_number(study_id, number)
        return self._trial_ids[(condition, number)]
