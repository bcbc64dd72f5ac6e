"""Weights & Biases tracking from the driver: one W&B run per run (one seed of one trial), one per teacher, and
one per condition holding its recommendation.

Logging happens in a driver-side Tune callback, so every run lands under the study folder
(``<study>/wandb/offline-run-*``) even on a cluster and trials need no network. Runs are plain
``wandb.init(..., reinit="create_new")`` run objects, several open at once (a few tenths of a second per trial;
Ray's ``WandbLoggerCallback`` costs ~2 s per trial).

What a run holds (``docs/tracking.md``):

* project from ``tracking.wandb.project`` (``kdtune run --wandb-project`` overrides it), group = the study's
  name and id (:func:`kdtune.wandb_settings.study_group`: a rerun is a new group), job type = the condition key
  (``teacher`` for teachers), a readable name (``noise_level=0.2 alpha=0.35 T=4.1 seed=1``);
* config: the resolved parameters, with alpha's meaning spelled out (``alpha`` and ``alpha_meaning``), the
  condition's values, trial id, phase, seed, objective; never a secret (storage URLs are redacted);
* history: every per-epoch metric of the run at step = epoch, per-class test accuracy as
  ``test_class_accuracy/<class>``;
* summary: the metrics at the run's best validation epoch (``best_epoch``) and the trial's ``state``
  (COMPLETE / PRUNED / FAIL, decided by :func:`kdtune.spec.rules.trial_outcome`). W&B's own run state knows no
  "pruned" (a non-zero exit code reads "Failed"): a pruned run exits 0 and carries the tag ``pruned``, which the
  runs table shows and filters on; a failed trial's runs exit 1 ("Failed").

At the end of ``kdtune run`` and ``kdtune resume``, :func:`log_recommendation` adds one run per condition (job
type ``recommendation``) whose summary is the condition's answer: verdict, gain with its interval, recommended
alpha with its interval and configuration; in W&B's runs table they are the recommendation, one row per condition.

Every W&B call runs on one background thread, in order: ``wandb.init``, ``run.log`` and ``run.finish`` each
wait for a round trip to W&B's service process, which on a busy machine took 0.5 s per epoch report inside
Tune's event loop (Tune's "``callbacks.on_trial_result`` ... performance bottleneck" warning) and held up every
trial waiting for its report. The Tune hooks only queue work; the end of the experiment waits for the queue.

Offline by default (no account or key). Online when ``tracking.wandb.mode: online`` or ``WANDB_MODE=online``
with a key configured; ``WANDB_MODE=offline`` forces offline. When W&B is unreachable or refuses the key,
tracking warns once and goes on offline: a study never hangs or fails because of tracking.
``tracking: none`` (or ``WANDB_MODE=disabled``) means no callback, and W&B is never imported.
"""

from __future__ import annotations

import json
import logging
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from ray.tune import Callback

from kdtune.analysis.scoring import finite
from kdtune.errors import MAX_NOTE
from kdtune.errors import one_line
from kdtune.records.folder import StudyFolder
from kdtune.records.folder import atomic_write
from kdtune.spec.rules import epochs_by_phase
from kdtune.tasks import task_for
from kdtune.trial_io import TrialResult
from kdtune.trial_io import config_of
from kdtune.trial_io import last_result_of
from kdtune.wandb_settings import condition_id
from kdtune.wandb_settings import credentials_configured
from kdtune.wandb_settings import env_mode
from kdtune.wandb_settings import resolve_mode
from kdtune.wandb_settings import study_group
from kdtune.wandb_settings import sync_command


if TYPE_CHECKING:
    from ray.tune.experiment import Trial

    from kdtune.spec.conditions import Condition
    from kdtune.spec.schema import StudySpec

logger = logging.getLogger(__name__)

ALPHA_MEANING = "weight on true labels; 1 = no distillation"
TEACHER_JOB_TYPE = "teacher"
RECOMMENDATION_JOB_TYPE = "recommendation"
PRUNED_TAG = "pruned"
JOB_TYPE_MAX = 64  # W&B's limit on a job type; the full condition key is always in the config
INIT_TIMEOUT_S = 20.0  # an online wandb.init waits this long for the server before tracking goes offline
FINISH_TIMEOUT_S = 60.0  # an online run.finish() waits at most this long for its uploads
PER_CLASS_KEY = "test_class_accuracy"
#: Study folders whose tracking went offline in this process: the recommendation's runs at the end of the run
#: (:func:`log_recommendation`) follow them offline, without a second wait for W&B or a second warning.
_OFFLINE_STUDIES: set[Path] = set()
_SKIP_KEYS = frozenset({"seed", "test_per_class_accuracy"})


def tracking_callbacks(spec: StudySpec, study_dir: Path, conditions: list[Condition],
                       teachers: dict[str, Any]) -> list[Callback]:
    """The driver's tracking callbacks for this study (none when tracking is off); logs the teacher runs."""
    _skip_ray_callback_census()
    if spec.tracking.wandb is None or env_mode() == "disabled":
        return []
    tracker = WandbTracker(study_dir, spec, conditions)
    tracker.log_teachers(teachers)
    return [tracker]


@dataclass
class _OpenRun:
    run: Any
    last_epoch: int = 0
    best: dict[str, Any] = field(default_factory=dict)  # the logged metrics at the best validation epoch


class WandbTracker(Callback):
    """Logs every run of the study to W&B from the driver (see the module docstring).

    Pickles without its open runs (Tune saves callbacks in its experiment checkpoint); after ``kdtune resume``
    a trial that was running gets a new run holding its whole history (the trial replays its rows).
    """

    def __init__(self, study_dir: Path, spec: StudySpec, conditions: list[Condition]) -> None:
        from kdtune._version import __version__

        wb = spec.tracking.wandb
        assert wb is not None
        self.study_dir = Path(study_dir).resolve()
        self.study_name = spec.name
        self.group = study_group(spec.name, StudyFolder(self.study_dir).meta(missing_ok=True).get("id"))
        self.project = wb.project
        self.entity = wb.entity
        self.mode = resolve_mode(wb.mode)
        task = task_for(spec)
        self.objective = task.objective(spec.objective)  # a run's summary is its best validation epoch's metrics
        self.epochs = epochs_by_phase(spec)  # what a trial of each phase trains when it runs to the end
        self.conditions = {c.key: c.as_dict() for c in conditions}
        self.common = {"study": spec.name, "objective": spec.objective_name, "kdtune_version": __version__,
                       "storage": StudyFolder(self.study_dir).recorded_storage_url()}
        self.teacher_info: dict[str, dict[str, Any]] = {}
        self.disabled = False
        self._warned = False
        self._runs: dict[tuple[str, int], _OpenRun] = {}  # touched by the worker thread only
        self._worker: ThreadPoolExecutor | None = None
        if self.mode == "online" and _OFFLINE_STUDIES & {self.study_dir}:
            self.mode = "offline"  # this process was refused for this study already, and said so
        elif self.mode == "online" and not credentials_configured():
            self._go_offline("online tracking asked for, but no W&B API key is configured "
                             "(WANDB_API_KEY or `wandb login`)")

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_runs": {}, "_worker": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        from kdtune.records.folder import running_study

        self.__dict__.update(state)
        self.study_dir = running_study(self.study_dir)  # Tune saved the folder's path of the time: it may have moved

    # ------------------------------------------------------------------------------------------ Tune hooks

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._guard(self._open_trial, trial)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: TrialResult,  # type: ignore[override]
                        **info: Any) -> None:  # Tune's hook types the result as a plain dict; ours is a TrialResult
        self._guard(self._log_rows, trial, list(result.get("rows", [])))

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._guard(self._finish_trial, trial, last_result_of(trial).copy(), False)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._guard(self._finish_trial, trial, last_result_of(trial).copy(), True)

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self._guard(self._finish_unfinished)
        self.wait()

    def wait(self) -> None:
        """Block until every queued W&B call has run (the end of a study; tests)."""
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None

    # ------------------------------------------------------------------------------------------- teachers

    def log_teachers(self, teachers: dict[str, Any]) -> None:
        """One run per trained teacher (job type ``teacher``), from ``teachers.json``'s curve; once per study."""
        self.teacher_info = {k: {"teacher_cache_key": v.get("cache_key"),
                                 "teacher_selected_epoch": v.get("selected_epoch")} for k, v in teachers.items()}
        self._guard(self._log_teachers, teachers)

    def _log_teachers(self, teachers: dict[str, Any]) -> None:
        marker = StudyFolder(self.study_dir).teachers_logged
        done = json.loads(marker.read_text()) if marker.exists() else {}
        for key, info in teachers.items():
            if not info.get("curve") or done.get(key) == info.get("cache_key"):
                continue  # the linear task has no trained teacher; a resumed study has its runs already
            config = {**self.common, "condition": key, "condition_id": condition_id(key), **self.conditions[key],
                      "teacher": info.get("spec"), "cache_key": info.get("cache_key"),
                      "selected_epoch": info.get("selected_epoch"), "fingerprint": info.get("fingerprint"),
                      "cache_hit": info.get("cache_hit")}
            config.pop("key", None)
            run = self._init(name=f"teacher {key}", job_type=TEACHER_JOB_TYPE, config=config)
            if run is None:
                return
            for row in info["curve"]:
                run.log(_scalars(row), step=int(row["epoch"]), commit=True)
            summary = _scalars(info["curve"][info["selected_epoch"] - 1]) if info.get("selected_epoch") else {}
            summary.update(_flatten(info.get("diagnostics") or {}))
            run.summary.update({**summary, "best_epoch": info.get("selected_epoch"), "state": "COMPLETE"})
            run.finish()
            done[key] = info.get("cache_key")
            atomic_write(marker, json.dumps(done, indent=2, sort_keys=True))

    # --------------------------------------------------------------------------------------------- trials

    def _open_trial(self, trial: Trial) -> None:
        for seed in config_of(trial).get("seeds", []):
            self._run(trial, int(seed))

    def _run(self, trial: Trial, seed: int) -> _OpenRun | None:
        key = (trial.trial_id, seed)
        if key not in self._runs:
            run = self._init(**self._run_identity(trial, seed))
            if run is None:
                return None
            self._runs[key] = _OpenRun(run)
        return self._runs[key]

    def _run_identity(self, trial: Trial, seed: int) -> dict[str, Any]:
        config = config_of(trial)
        condition, params = config["condition"], dict(config["params"])
        words = [condition, f"alpha={params['alpha']:.3g}"]
        if params.get("temperature") is not None:
            words.append(f"T={params['temperature']:.3g}")
        words.append(f"seed={seed}")
        full = {**self.common, **params, "alpha_meaning": ALPHA_MEANING, "condition": condition,
                "condition_id": condition_id(condition), **self.conditions[condition], "trial_id": trial.trial_id,
                "phase": config["phase"], "seed": seed, **self.teacher_info.get(condition, {})}
        full.pop("key", None)
        return {"name": " ".join(words), "job_type": condition[:JOB_TYPE_MAX], "config": full}

    def _log_rows(self, trial: Trial, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            state = self._run(trial, int(row["seed"]))
            epoch = int(row["epoch"])
            if state is None or epoch <= state.last_epoch:
                continue  # rows replayed after a restart are already logged
            metrics = _scalars(row)
            for i, value in enumerate(row.get("test_per_class_accuracy") or []):
                if finite(value):
                    metrics[f"{PER_CLASS_KEY}/{i}"] = float(value)
            state.run.log(metrics, step=epoch, commit=True)  # now: a later summary must win
            state.last_epoch = epoch
            value = metrics.get(self.objective.column)
            if value is not None and (not state.best or self.objective.better(value, state.best[self.objective.column])):
                state.best = metrics

    def _finish_trial(self, trial: Trial, last_result: TrialResult, error: bool) -> None:
        from kdtune.spec.rules import trial_outcome

        state, reason = trial_outcome(last_result, error, self.epochs[config_of(trial)["phase"]])
        outcome = {"state": state, "state_reason": reason or "", "trial_objective": last_result.get("objective")}
        for key in [k for k in self._runs if k[0] == trial.trial_id]:
            self._finish_run(key, outcome, 1 if state == "FAIL" else 0)

    def _finish_unfinished(self) -> None:
        for key in list(self._runs):  # trials that never ended (the study was stopped)
            self._finish_run(key, {"state": "UNFINISHED"}, 0)

    def _finish_run(self, key: tuple[str, int], outcome: dict[str, Any], exit_code: int) -> None:
        state = self._runs.pop(key)
        best = state.best
        state.run.summary.update({**best, "best_epoch": best.get("epoch"), "last_epoch": state.last_epoch,
                                  **{k: v for k, v in outcome.items() if v is not None}})
        if outcome["state"] == "PRUNED":
            state.run.tags = (*(state.run.tags or ()), PRUNED_TAG)
        state.run.finish(exit_code=exit_code)

    # ------------------------------------------------------------------------------------- recommendation

    def log_recommendation(self, report: dict[str, Any]) -> None:
        """One run per condition of ``report`` (``recommendation.json``), its answer in the summary."""
        self._guard(self._log_recommendation, report)

    def _log_recommendation(self, report: dict[str, Any]) -> None:
        for condition in report["conditions"]:
            key = condition["key"]
            config = {**self.common, "alpha_meaning": ALPHA_MEANING, "condition": key,
                      "condition_id": condition_id(key), **self.conditions.get(key, {})}
            config.pop("key", None)
            run = self._init(name=f"recommendation {key}", job_type=RECOMMENDATION_JOB_TYPE, config=config)
            if run is None:
                return
            run.summary.update(recommendation_summary(condition, report))
            run.finish()

    # ------------------------------------------------------------------------------------ W&B, carefully

    def _init(self, *, name: str, job_type: str, config: dict[str, Any]) -> Any:
        """A new run object, online if possible; None once tracking is off. Never raises."""
        if self.disabled:
            return None
        import wandb

        kwargs: dict[str, Any] = {"project": self.project, "entity": self.entity, "group": self.group, "job_type": job_type,
                  "name": name, "config": config, "dir": str(self.study_dir), "reinit": "create_new"}
        folder = StudyFolder(self.study_dir).wandb_dir
        folder.mkdir(parents=True, exist_ok=True)
        if self.mode == "online":
            before = set(folder.glob("run-*"))
            try:
                return wandb.init(mode="online", settings=self._settings(wandb, online=True), **kwargs)
            except Exception as exc:  # unreachable server, refused key, bad key format: all end offline
                for leftover in set(folder.glob("run-*")) - before:
                    shutil.rmtree(leftover, ignore_errors=True)
                self._go_offline(f"W&B is unreachable or refused the key ({one_line(exc, MAX_NOTE)})")
        try:
            return wandb.init(mode="offline", settings=self._settings(wandb, online=False), **kwargs)
        except Exception as exc:
            self._disable(f"W&B could not start an offline run ({one_line(exc, MAX_NOTE)})")
            return None

    @staticmethod
    def _settings(wandb: Any, *, online: bool) -> Any:
        """Lean runs: no console capture, system stats, git, code or requirements (several runs share a process)."""
        extra = {"finish_timeout": FINISH_TIMEOUT_S} if online else {}
        return wandb.Settings(init_timeout=INIT_TIMEOUT_S, silent=True, console="off", x_disable_stats=True,
                              x_disable_machine_info=True, disable_git=True, disable_code=True,
                              x_save_requirements=False, **extra)

    def _go_offline(self, why: str) -> None:
        self.mode = "offline"
        _OFFLINE_STUDIES.add(self.study_dir)
        folder = StudyFolder(self.study_dir).wandb_dir
        self._warn(f"W&B tracking: {why}; continuing offline: runs are kept under {folder} "
                   f"(upload later with `{sync_command(folder)}`)")

    def _disable(self, why: str) -> None:
        self.disabled = True
        self._runs.clear()
        self._warn(f"W&B tracking: {why}; tracking is off for the rest of this study")

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            logger.warning(message)

    def _guard(self, method: Any, *args: Any) -> None:
        """Queue ``method(*args)`` on the W&B thread (see the module docstring)."""
        if self.disabled:
            return
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kdtune-wandb")
        self._worker.submit(self._call, method, *args)

    def _call(self, method: Any, *args: Any) -> None:
        """Tracking must never fail a study: an error turns tracking off with one warning."""
        if self.disabled:
            return
        try:
            method(*args)
        except Exception as exc:
            self._disable(f"logging failed ({type(exc).__name__}: {one_line(exc, MAX_NOTE)})")


def log_recommendation(study_dir: Path) -> None:
    """The study's recommendation (its ``recommendation.json``, written by ``kdtune run`` and ``kdtune resume`` at
    their end) as one W&B run per condition, in the study's group, offline or online as its runs were. Nothing
    when tracking is off (W&B is not imported then); like all tracking, it never fails the command."""
    from kdtune.analysis.recommendation import default_output
    from kdtune.spec.conditions import expand

    spec = StudyFolder(study_dir).spec()
    if spec.tracking.wandb is None or env_mode() == "disabled":
        return
    report = json.loads(Path(default_output([study_dir])).read_text())
    tracker = WandbTracker(study_dir, spec, expand(spec))
    tracker.log_recommendation(report)
    tracker.wait()


def recommendation_summary(condition: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    """A condition's answer as flat summary keys (W&B's runs table makes one column of each): the verdict and its
    text, the gain over no distillation with its interval (``gain_low``/``gain_high``: the repeated confidence
    interval, ``gain_confidence`` its level; in the test metric's units), the recommended configuration
    (``recommended_alpha``, ... ``recommended_temperature``) with the alpha interval, and the test metric of the
    confirmed configuration and of alpha = 1. Missing values are left out."""
    recommended = condition.get("recommended") or {}
    gain = condition.get("gain") or {}
    shown = condition.get("confirmed") or condition.get("best_observed") or {}
    summary: dict[str, Any] = {
        "verdict": (condition.get("verdict") or {}).get("kind"),
        "verdict_text": (condition.get("verdict") or {}).get("text"),
        **{f"recommended_{k}": v for k, v in (recommended.get("params") or {}).items()},
        "recommended_alpha_low": (recommended.get("alpha") or {}).get("low"),
        "recommended_alpha_high": (recommended.get("alpha") or {}).get("high"),
        "recommended_source": recommended.get("source"),
        "gain": gain.get("mean"), "gain_low": gain.get("low"), "gain_high": gain.get("high"),
        "gain_confidence": gain.get("confidence"), "gain_pairs": gain.get("n_pairs"), "gain_source": gain.get("source"),
        "test": (shown.get("test") or {}).get("mean"),
        "no_distillation_test": ((condition.get("no_distillation") or {}).get("test") or {}).get("mean"),
        "objective": report.get("objective"), "test_metric": report.get("test_metric"), "margin": report.get("margin"),
    }
    return {k: v for k, v in summary.items() if v is not None}


# ---------------------------------------------------------------------------------------------- helpers

def _skip_ray_callback_census() -> None:
    """Keep Ray Tune from importing W&B when kdtune does not use it.

    To count the driver's callbacks for its usage statistics, Tune (``ray.air._internal.usage.tag_callbacks``)
    imports its W&B, MLflow and Comet integrations, and so ``wandb`` (~0.5 s), even with usage statistics
    off. With them off the count goes nowhere, so kdtune skips it; with them on, Ray is left alone.
    """
    try:
        from ray._common.usage.usage_lib import usage_stats_enabled
        from ray.air._internal import usage
    except ImportError:  # another Ray layout: nothing to skip
        return
    if not usage_stats_enabled() and hasattr(usage, "tag_callbacks"):
        usage.tag_callbacks = _no_census


def _no_census(callbacks: Any) -> bool:
    return False


def _scalars(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in _SKIP_KEYS and finite(v)}


def _flatten(diagnostics: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"entropy": {"4.0": 0.3}}`` -> ``{"entropy/T=4.0": 0.3}``; numbers only."""
    flat: dict[str, Any] = {}
    for key, value in diagnostics.items():
        if isinstance(value, dict):
            inner = {f"T={k}" if key == "entropy" else k: v for k, v in value.items()}
            flat.update(_flatten(inner, f"{prefix}{key}/"))
        elif finite(value):
            flat[f"{prefix}{key}"] = value
    return flat


