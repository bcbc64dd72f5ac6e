"""kdtune from Python (a notebook, a script): the commands' work as functions, imported lazily by ``kdtune``.

alpha is the weight on the true labels: alpha = 1 means no distillation (Hinton et al.'s lambda = 1 - alpha).

    import kdtune
    study = kdtune.run_study("search_spaces/quickstart.yaml", out="runs/quickstart")
    runs = kdtune.load_results(study)          # pandas: one row per run at its best validation epoch
    trials = kdtune.load_trials(study)         # pandas: one row per trial, with its Optuna trial number
    verdicts = kdtune.recommend(study)         # what `kdtune recommend` prints, as a dict
    kdtune.write_report(study)                 # runs/quickstart/report.html
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any


if TYPE_CHECKING:
    import pandas as pd

    from kdtune.spec.schema import StudySpec

PathLike = str | os.PathLike[str]
logger = logging.getLogger(__name__)


def run_study(spec: PathLike | dict[str, Any] | StudySpec, out: PathLike | None = None, *,
              overrides: Sequence[str] = (), storage: str | None = None, address: str | None = None,
              cache_dir: str | None = None, max_concurrent: int | None = None, progress: bool = True) -> Path:
    """Run a study (as ``kdtune run``) and return its folder (default ``runs/<spec name>``).

    ``spec``: a YAML file, a mapping with the spec's sections, or a :class:`~kdtune.spec.schema.StudySpec`;
    ``overrides``: ``key.path=value`` strings, as ``--set``. The recommendation is not computed here: call
    :func:`recommend` on the folder.
    """
    from kdtune.spec.schema import StudySpec
    from kdtune.spec.schema import load_spec
    from kdtune.spec.schema import parse_spec
    from kdtune.study.driver import RunOptions
    from kdtune.study.driver import run_study as run
    from kdtune.study.interrupts import catching_signals

    if isinstance(spec, StudySpec):
        resolved = spec
    elif isinstance(spec, dict):
        resolved = parse_spec(spec)
    else:
        resolved = load_spec(spec, overrides=list(overrides))
    folder = (Path(out) if out is not None else Path("runs") / resolved.name).absolute()
    with catching_signals():  # Ctrl-C leaves the study for resume_study (kdtune.errors.Interrupted)
        return run(resolved, RunOptions(out=folder, storage=storage or os.environ.get("KDTUNE_STORAGE"),
                                        address=address or os.environ.get("RAY_ADDRESS"), cache_dir=cache_dir,
                                        max_concurrent=max_concurrent, progress=progress))


def resume_study(study_dir: PathLike, *, address: str | None = None, max_concurrent: int | None = None,
                 progress: bool = True, confirm_max_repeats: int | None = None) -> Path:
    """Continue an interrupted study (as ``kdtune resume``); finished trials are not run again.
    ``confirm_max_repeats`` raises the confirmation budget (``--confirm-max-repeats``): inconclusive conditions
    continue their confirmation on new seeds, the looks already taken accounted for."""
    from kdtune.study.driver import resume_study as resume
    from kdtune.study.interrupts import catching_signals

    with catching_signals():
        return resume(Path(study_dir).absolute(), address=address or os.environ.get("RAY_ADDRESS"),
                      max_concurrent=max_concurrent, progress=progress, confirm_max_repeats=confirm_max_repeats)


def load_results(study_dir: PathLike) -> pd.DataFrame:
    """One row per run (one seed of one trial) at its best validation epoch, scored by :mod:`kdtune.analysis.scoring` as
    the recommendation and the report score it.

    The validation objective selects the epoch (the earliest on ties); the row holds every metric at that
    epoch, the trial's final ``trial_state`` (COMPLETE, PRUNED, FAIL, or RUNNING while the study runs) and
    ``best_epoch``. Runs without a finite validation value are left out.
    """
    import pandas as pd

    from kdtune.analysis.scoring import score_runs
    from kdtune.records.folder import StudyFolder
    from kdtune.records.results import RESULT_SCHEMA
    from kdtune.records.results import read_results
    from kdtune.tasks import objective_of

    spec = StudyFolder(study_dir).spec()
    runs = score_runs(read_results(Path(study_dir)).to_pylist(), objective_of(spec))
    columns = [("best_epoch" if n == "epoch" else n) for n in [*RESULT_SCHEMA.names, "trial_state"]]
    frame = pd.DataFrame([{**r.row, "best_epoch": r.row["epoch"]} for r in runs], columns=columns)
    return frame.sort_values(["condition", "trial_id", "seed"]).reset_index(drop=True)


def load_trials(study_dir: PathLike) -> pd.DataFrame:
    """One row per trial (one configuration with all its seeds), in the spirit of Optuna's
    ``Study.trials_dataframe()``, for all of a study's conditions and phases; works while the study runs.

    Columns: ``study``, ``condition``, ``phase`` (``search``, ``baseline``: alpha = 1 and alpha = 0, or
    ``confirm``: a confirmation round on fresh seeds), ``trial_id`` (Tune's, as in :func:`load_results`), ``number``
    (the trial's number in its condition's Optuna study, to join on ``trials_dataframe()``; <NA> for confirmation
    trials, which Optuna never proposed, and when the storage cannot be opened here), ``state`` (COMPLETE, PRUNED,
    FAIL, or RUNNING), ``objective`` (what Optuna was told: the mean over the seeds of each seed's validation
    objective at its best epoch; for a pruned trial the value when it was stopped; NaN while running),
    ``seeds`` and ``best_epochs`` (each seed's best validation epoch, in the order of ``seeds``: the seeds' own
    epochs, since the objective averages them), ``epochs_done``, ``params_<name>`` for each parameter of a run
    (alpha is the weight on the true labels: 1 = no distillation), ``seconds`` (the trial's time in Ray),
    ``ended_at`` (a UTC time; NaT while running) and ``error``. Sorted by condition, Optuna number, end.
    """
    import json

    import pandas as pd

    from kdtune.analysis.scoring import score_runs
    from kdtune.records.folder import StudyFolder
    from kdtune.records.results import read_results
    from kdtune.records.results import read_trials
    from kdtune.tasks import objective_of
    from kdtune.trial_io import SEARCH_PARAMS

    folder = StudyFolder(study_dir)
    spec = folder.spec()
    results = read_results(Path(study_dir)).to_pylist()
    best: dict[str, dict[int, int]] = {}
    for run in score_runs(results, objective_of(spec)):
        best.setdefault(run.trial_id, {})[run.seed] = int(run.row["epoch"])
    trials = read_trials(Path(study_dir)).to_pylist()
    ended = {t["trial_id"] for t in trials}
    running: dict[str, dict[str, Any]] = {}  # trials with rows but no end yet: their first row, epochs done
    for row in results:
        if row["trial_id"] not in ended:
            first = running.setdefault(row["trial_id"], {
                "trial_id": row["trial_id"], "condition": row["condition"], "phase": row["phase"], "state": "RUNNING",
                "params": json.dumps({k: row[k] for k in SEARCH_PARAMS}), "objective": None, "epochs_done": 0})
            first["epochs_done"] = max(first["epochs_done"], row["epoch"])
    numbers = _optuna_numbers(folder)
    rows = []
    for trial in [*trials, *running.values()]:
        params = json.loads(trial["params"])
        seeds = sorted(best.get(trial["trial_id"], {}))
        rows.append({"study": spec.name, "condition": trial["condition"], "phase": trial["phase"],
                     "trial_id": trial["trial_id"], "number": numbers.get(trial["trial_id"]), "state": trial["state"],
                     "objective": trial["objective"], "seeds": seeds,
                     "best_epochs": [best[trial["trial_id"]][s] for s in seeds], "epochs_done": trial["epochs_done"],
                     **{f"params_{k}": params.get(k) for k in SEARCH_PARAMS},
                     "seconds": trial.get("seconds"), "ended_at": trial.get("ended_at"), "error": trial.get("error")})
    frame = pd.DataFrame(rows, columns=["study", "condition", "phase", "trial_id", "number", "state", "objective",
                                        "seeds", "best_epochs", "epochs_done", *(f"params_{k}" for k in SEARCH_PARAMS),
                                        "seconds", "ended_at", "error"])
    frame = frame.drop(columns=[f"params_{k}" for k in SEARCH_PARAMS if frame[f"params_{k}"].isna().all()])
    frame["number"] = frame["number"].astype("Int64")
    frame["objective"] = frame["objective"].astype("float64")
    frame["ended_at"] = pd.to_datetime(frame["ended_at"], unit="s", utc=True)
    return frame.sort_values(["condition", "number", "ended_at"], na_position="last").reset_index(drop=True)


def _optuna_numbers(folder: Any) -> dict[str, int]:
    """Tune trial id -> its number in its condition's Optuna study (the searcher records the Tune id on each Optuna
    trial it asks for); empty, with a warning, when the storage cannot be opened here (a password not known in
    this process). Read only: a folder without its SQLite file has no numbers."""
    import optuna

    from kdtune.records.optuna_storage import make_storage
    from kdtune.spec.rules import optuna_study_name

    url = folder.storage_url() if folder.meta().get("storage_url") else None
    if not url or (url.startswith("sqlite") and not folder.optuna_db.exists()):
        return {}
    try:
        storage = make_storage(url)
    except Exception as exc:  # the trials stand without their numbers
        logger.warning("Optuna trial numbers not read: the storage could not be opened (%s)", exc)
        return {}
    numbers: dict[str, int] = {}
    for condition in folder.meta()["conditions"]:
        try:
            study = optuna.load_study(study_name=optuna_study_name(folder.optuna_prefix(), condition["key"]),
                                      storage=storage)
        except KeyError:  # not created yet
            continue
        for trial in study.get_trials(deepcopy=False):  # by number: a trial asked again after a crash wins
            if trial.user_attrs.get("tune_trial_id"):
                numbers[trial.user_attrs["tune_trial_id"]] = trial.number
    return numbers


def recommend(study_dirs: PathLike | Sequence[PathLike], *, margin: float | None = None) -> dict[str, Any]:
    """The recommendation per condition (``docs/recommendation_schema.md``); several folders are pooled.

    ``margin`` (points of test accuracy, as ``kdtune recommend --margin``) replaces the margin the study fixed when
    it started; another value still gives verdicts, marked "margin chosen after the study". Nothing is written:
    :func:`kdtune.analysis.recommendation.write_recommendation` writes the JSON.
    """
    from kdtune.analysis.recommendation import recommend as make

    dirs = [study_dirs] if isinstance(study_dirs, (str, os.PathLike)) else list(study_dirs)
    return make(dirs, margin=margin)


def write_report(study_dirs: PathLike | Sequence[PathLike], out: PathLike | None = None) -> Path:
    """Write the HTML report (as ``kdtune report``; several folders: the comparison) and return its path."""
    from kdtune.report import write_comparison
    from kdtune.report import write_report as write

    target = Path(out) if out is not None else None
    if isinstance(study_dirs, (str, os.PathLike)):
        return write(Path(study_dirs), out=target).html
    return write_comparison([Path(d) for d in study_dirs], out=target).html
