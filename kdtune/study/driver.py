"""Run and resume a study: the driver that wires spec, cache, Ray Tune, Optuna and the results.

It calls down, in order: the checks (:mod:`kdtune.study.preflight`) and, for ``kdtune run``, the estimate built on
what they found (:mod:`kdtune.study.estimate`); Ray for the study's duration (:func:`kdtune.study.ray_runtime.ray_session`);
the teachers (:mod:`kdtune.study.preparation`); Tune with the searcher, scheduler and callbacks. What a study folder
holds, and every read and write of its files, is :mod:`kdtune.records.folder`'s.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from kdtune.errors import Interrupted
from kdtune.errors import StudyError
from kdtune.errors import UsageError
from kdtune.records.folder import StudyFolder
from kdtune.spec.conditions import Condition
from kdtune.spec.conditions import expand
from kdtune.spec.schema import StudySpec
from kdtune.study.interrupts import received


if TYPE_CHECKING:
    from ray.tune import Callback

    from kdtune.study.preflight import CheckedInputs


logger = logging.getLogger(__name__)

EXPERIMENT = "kdtune"


@dataclass(frozen=True)
class RunOptions:
    """How (not what) to run: where, on which cluster, with which storage."""

    out: Path
    storage: str | None = None  # Optuna storage URL; default: SQLite in the study folder
    address: str | None = None  # Ray cluster; default: a local Ray
    cache_dir: str | None = None
    tune_storage: str | None = None  # Tune's storage_path (trial checkpoints); default: <study>/tune
    max_concurrent: int | None = None
    progress: bool = True
    imports_s: float | None = None  # seconds this process took to import torch and Ray Tune (see _estimate)


def run_study(spec: StudySpec, options: RunOptions, *,
              announce: Callable[[dict[str, Any] | None], None] | None = None) -> Path:
    """Run a new study into ``options.out`` (refused if that folder already holds one: use resume).

    ``--out`` is checked first; then the study folder is created (mode 0700) and locked for this process
    (:class:`kdtune.records.folder.StudyLock`: a second ``run`` or ``resume`` of it is refused), and its
    ``study.json`` written. Everything else that can be checked without training is checked next, once
    (:mod:`kdtune.study.preflight`); ``announce``, if given, is handed the estimate made from what the checks found
    (``kdtune plan``'s, :func:`_estimate`) and says what is about to run; Ray starts and the trial's resources are
    checked against it. A mistake found before the first trial starts removes what this call
    wrote, so the corrected command is never refused; Ctrl-C or SIGTERM at any point after the folder exists
    leaves it for ``kdtune resume`` (:class:`kdtune.errors.Interrupted`), with every finished teacher in the
    cache. A Ray that this call started is stopped on every way out. Credentials in ``--cache-dir`` /
    ``--tune-storage`` S3 URIs move to the environment (``docs/security.md``): the study records the URIs
    without them.
    """
    from kdtune.study.preflight import check_folder
    from kdtune.study.ray_runtime import ray_session

    study_dir = options.out
    folder = StudyFolder(study_dir)
    if folder.has_study():
        _refuse_existing(folder)
    check_folder("--out", study_dir)
    options = _without_credentials(options)
    conditions = expand(spec)
    created = _first_missing(study_dir)  # the study folder, or the parent of it that this run creates
    before = set() if created else set(study_dir.iterdir())
    study_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    with folder.writer_lock():
        if folder.has_study():  # another run created it while this one was starting, and has ended
            raise StudyError(f"{study_dir} already holds a study: continue it with `kdtune resume {study_dir}` "
                             "or choose another --out")
        try:
            storage = options.storage or folder.default_storage_url()
            _write_study_json(study_dir, spec, conditions, options)  # from here on, Ctrl-C leaves a study to resume
            costs = _check(spec, conditions, options, announce)
            if costs is not None:
                folder.update(planned_costs_s=costs)  # the time left starts from the plan's pace
            with ray_session(options.address, extra_env=_worker_env(options)):
                check_shared_storage(storage, options)
                check_resources(spec, options)  # a refusal leaves no study folder behind
                return _execute(spec, conditions, study_dir, storage, options, resume=False)
        except BaseException:
            if received() is not None and folder.has_study():
                raise Interrupted(study_dir, received() or 2) from None
            if "trials_started_at" not in folder.meta(missing_ok=True) and received() is None:
                _remove_written(study_dir, created, before)
            raise


def _check(spec: StudySpec, conditions: list[Condition], options: RunOptions,
           announce: Callable[[dict[str, Any] | None], None] | None) -> dict[str, float] | None:
    """The study's checks, once; the estimate (for ``announce``) reuses what they found, data included, which is
    let go when this returns. Returns the estimate's wall seconds per seed-epoch and per report (a trial-epoch),
    the time left's starting pace (:func:`kdtune.records.status.time_left`), when there is an estimate."""
    from kdtune.study.preflight import check_study

    checked = check_study(spec, conditions, out=options.out, storage=options.storage,
                          cache_dir=options.cache_dir or os.environ.get("KDTUNE_CACHE_DIR"),
                          tune_storage=options.tune_storage)
    if announce is None:
        return None
    from kdtune.study.estimate import REPORT_COST_S

    plan = _estimate(checked, options)
    announce(plan)
    epochs = plan["total"]["epochs_per_run"] if plan is not None else None
    if plan is None or not epochs:
        return None
    concurrency = plan["resources"]["concurrency"]
    runs = [row["estimate"]["run_s"] for row in plan["conditions"]]
    return {"seed_epoch": sum(runs) / len(runs) / epochs / concurrency, "report": REPORT_COST_S / concurrency}


def _estimate(checked: CheckedInputs, options: RunOptions) -> dict[str, Any] | None:
    """``kdtune plan``'s estimate of a study about to run, from what its checks found (nothing checked twice);
    None when it cannot be made (what the estimate could not do, the study may), except for a model that fails
    in its timed training steps, which would fail every trial.

    The plan's worker start (a fresh Python importing torch and Ray Tune) is ``options.imports_s``, this process's
    own imports of them (``kdtune run`` times them before the checks import torch), else measured in a fresh
    process.
    """
    from kdtune.errors import KdtuneError
    from kdtune.errors import SpecError
    from kdtune.study.estimate import make_plan

    try:
        return make_plan(checked.spec, checked=checked, cache_dir=options.cache_dir,
                         max_concurrent=options.max_concurrent, ray_running=options.address is not None,
                         worker_start_s=options.imports_s)
    except SpecError as exc:
        if exc.field.endswith(".arch"):
            raise
        return None
    except KdtuneError:
        return None


def _refuse_existing(folder: StudyFolder) -> None:
    holder = folder.writer_lock().holder()
    if holder is not None:
        raise StudyError(f"{folder.path} is being written by {holder}: one `kdtune run` or `kdtune resume` per "
                         "study folder at a time")
    raise StudyError(f"{folder.path} already holds a study: continue it with `kdtune resume {folder.path}` or "
                     "choose another --out")


def resume_study(study_dir: Path, *, address: str | None = None, max_concurrent: int | None = None,
                 progress: bool = True, confirm_max_repeats: int | None = None) -> Path:
    """Finish a study after Ctrl-C, a crash or ``kill -9`` of the driver, without re-running finished trials;
    with ``confirm_max_repeats``, raise its confirmation budget first (:mod:`kdtune.study.extension`), so that
    conditions that ended inconclusive continue their confirmation.

    The folder may have been moved or copied: everything is found under ``study_dir`` (its lock, its
    SQLite storage, Tune's experiment), and nothing outside it is written but a shared storage (PostgreSQL),
    which a copy shares with its original (said in one line).
    """
    import sys

    from kdtune.study.ray_runtime import ray_session

    folder = StudyFolder(study_dir)
    folder.spec()  # a missing or damaged study.json is refused before the lock file is written
    with folder.writer_lock():
        meta = folder.meta()
        if confirm_max_repeats is not None:
            from ray import tune

            from kdtune.study.extension import extend_confirmation

            tune_dir = meta.get("tune_storage") or str(folder.tune_dir.resolve())
            extend_confirmation(folder, confirm_max_repeats,
                                restorable=tune.Tuner.can_restore(experiment_path(tune_dir)))
        spec = folder.spec()
        storage = folder.storage_url() or _refuse_redacted(meta)
        if folder.storage_is_shared():
            from kdtune.secrets import redact_url

            print(f"kdtune: the study's Optuna storage {redact_url(storage)} is outside its folder: copies of "
                  f"the folder share it (Optuna studies {folder.optuna_prefix()}/...)", file=sys.stderr)
        options = RunOptions(out=study_dir, storage=storage, address=address, cache_dir=meta.get("cache_dir"),
                             tune_storage=meta.get("tune_storage"), max_concurrent=max_concurrent, progress=progress)
        try:
            with ray_session(address, extra_env=_worker_env(options)):
                check_shared_storage(storage, options)
                return _execute(spec, expand(spec), study_dir, storage, options, resume=True)
        except BaseException:
            if received() is not None:
                raise Interrupted(study_dir, received() or 2) from None
            raise


def _execute(spec: StudySpec, conditions: list[Condition], study_dir: Path, storage: str, options: RunOptions,
             *, resume: bool) -> Path:
    import functools

    from ray import tune

    from kdtune.records.optuna_storage import make_storage
    from kdtune.records.optuna_storage import remember_storage
    from kdtune.records.status import planned_costs
    from kdtune.study.callbacks import Progress
    from kdtune.study.callbacks import ResultsRecorder
    from kdtune.study.interrupts import tune_loop
    from kdtune.study.preparation import prepare_conditions
    from kdtune.study.ray_runtime import keep_credentials_out_of_tune
    from kdtune.study.search import ConditionSearcher
    from kdtune.study.search import StudySearchGenerator
    from kdtune.study.search import create_studies
    from kdtune.study.tracking import tracking_callbacks
    from kdtune.study.trial import run_trial

    remember_storage(storage)  # a searcher restored by Tune holds the URL without its password
    keep_credentials_out_of_tune()
    say = functools.partial(print, flush=True) if options.progress else None  # a line per teacher start and end
    payloads, teachers = prepare_conditions(spec, conditions, options.cache_dir, say=say)
    folder = StudyFolder(study_dir)
    folder.write_teachers(teachers)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, payloads=payloads, study=_trial_context(spec, conditions)),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )
    callbacks: list[Callback] = [ResultsRecorder(study_dir, spec, conditions)]
    callbacks += tracking_callbacks(spec, study_dir, conditions, teachers)  # W&B runs; [] if tracking: none
    if options.progress:
        callbacks.append(Progress(spec, [c.key for c in conditions], teachers,
                                  planned=planned_costs(folder.meta())))
    tune_dir = options.tune_storage or str(folder.tune_dir.resolve())
    if "://" not in tune_dir:  # Tune's state (tuner.pkl, the searcher's) is the user's alone
        Path(tune_dir).mkdir(parents=True, exist_ok=True, mode=0o700)
    experiment = experiment_path(tune_dir)
    prefix = folder.optuna_prefix()
    if resume and tune.Tuner.can_restore(experiment):
        # The restored run keeps the searcher, scheduler and callbacks it pickled (all resume-safe); what they
        # hold of the folder's location is pointed at study_dir (kdtune.records.folder.running_study).
        tuner = tune.Tuner.restore(experiment, trainable=trainable, resume_errored=True)
    else:
        create_studies(spec, make_storage(storage), [c.key for c in conditions], prefix=prefix, join=resume)
        searcher = ConditionSearcher(spec=spec, storage_url=storage, conditions=[c.key for c in conditions],
                                     study_dir=study_dir, optuna_prefix=prefix)
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=StudySearchGenerator(searcher, _concurrency(spec, options)),
                                        scheduler=_scheduler(spec), num_samples=-1,
                                        trial_dirname_creator=trial_dirname,
                                        # A fresh actor costs a process start and a torch import per trial
                                        # (seconds); run_trial keeps no state between trials.
                                        reuse_actors=True),
            run_config=tune.RunConfig(
                name=EXPERIMENT, storage_path=tune_dir, callbacks=callbacks, verbose=0,
                failure_config=tune.FailureConfig(max_failures=2),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            ),
        )
    folder.update(trials_started_at=time.time())  # teachers are ready: Tune's part begins
    with tune_loop():
        grid = tuner.fit()
    if received() is not None:
        raise Interrupted(study_dir, received() or 2)
    if grid.num_terminated + grid.num_errors < len(grid):  # Tune stopped without a signal of ours
        raise Interrupted(study_dir, 2)
    _finish(study_dir)
    check_some_trial_ran(study_dir)
    return study_dir


def _finish(study_dir: Path) -> None:
    """Every trial ended and the search is over: one file per results table, and the study marked finished
    (the only place ``finished_at`` is set: an interrupted study never is)."""
    from kdtune.records.results import compact

    compact(study_dir)  # the parts written every few seconds become one file per table
    StudyFolder(study_dir).update(finished_at=time.time())


def check_some_trial_ran(study_dir: Path) -> None:
    """A study in which every trial failed is a failure (exit code 1), with the most common reason."""
    from collections import Counter

    from kdtune.records.results import read_trials

    try:
        trials = read_trials(study_dir).select(["state", "error"]).to_pylist()
    except (FileNotFoundError, KeyError, OSError):
        return  # no trial ended (e.g. cut short before the first): nothing to judge
    if trials and all(t["state"] == "FAIL" for t in trials):
        reason, _ = Counter(t["error"] or "unknown" for t in trials).most_common(1)[0]
        raise StudyError(f"all {len(trials)} trials failed: {reason} (details: the Tune trial logs under "
                         f"{StudyFolder(study_dir).tune_dir})")


def _worker_env(options: RunOptions) -> dict[str, str] | None:
    """What Ray's workers need of the run's options: the cache, as a URI without credentials
    (:func:`_without_credentials`: Ray logs its runtime env)."""
    return {"KDTUNE_CACHE_DIR": options.cache_dir} if options.cache_dir else None


def check_resources(spec: StudySpec, options: RunOptions) -> None:
    """On the local Ray kdtune started, refuse a trial that no node can hold (Tune would wait forever).

    A cluster (``--address``) may add nodes on demand, so there the request is left to its autoscaler.
    """
    from kdtune.errors import SpecError
    from kdtune.study.ray_runtime import cluster_nodes

    if options.address is not None:
        return
    nodes = [n.get("Resources", {}) for n in cluster_nodes()]
    for field, name, asked in (("resources.cpu", "CPU", spec.resources.cpu), ("resources.gpu", "GPU", spec.resources.gpu)):
        most = max((float(n.get(name, 0)) for n in nodes), default=0.0)
        if asked > most:
            raise SpecError(field, asked, f"must be at most {most:g}: this machine's Ray has {most:g} {name}s, and a "
                            "trial that needs more would wait forever")


def _without_credentials(options: RunOptions) -> RunOptions:
    """Take S3 credentials out of the cache and Tune storage URIs and into this process's environment.

    The URIs are then recorded in study.json, saved in Tune's state and handed to Ray as they are; pyarrow (in
    this driver and in the local Ray workers, which inherit its environment) finds the credentials in
    ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``. The nodes of a remote cluster
    need their own (``cluster/``).
    """
    import dataclasses

    from kdtune.secrets import split_credentials

    cache_dir = options.cache_dir or os.environ.get("KDTUNE_CACHE_DIR")
    found: dict[str, str] = {}
    clean: dict[str, str | None] = {}
    for flag, name, value in (("--cache-dir", "cache_dir", cache_dir), ("--tune-storage", "tune_storage",
                                                                        options.tune_storage)):
        if value is None:
            clean[name] = None
            continue
        clean[name], env = split_credentials(value, flag)
        for var, secret in env.items():
            if found.setdefault(var, secret) != secret:
                raise UsageError(f"--cache-dir and --tune-storage carry different {var}; give one set of "
                                 "credentials in the environment instead")
    os.environ.update(found)
    if cache_dir is not None and options.cache_dir is None:
        os.environ["KDTUNE_CACHE_DIR"] = clean["cache_dir"] or ""
    return dataclasses.replace(options, cache_dir=clean["cache_dir"] if options.cache_dir else None,
                               tune_storage=clean["tune_storage"])


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` that does not exist yet (None when ``path`` exists)."""
    missing = None
    for folder in (path.absolute(), *path.absolute().parents):
        if folder.exists():
            return missing
        missing = folder
    return missing


def _remove_written(study_dir: Path, created: Path | None, before: set[Path]) -> None:
    """Undo a study folder whose trials never started: the folders this run created, else its new files."""
    import shutil

    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
        return
    for path in set(study_dir.iterdir()) - before:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def experiment_path(tune_dir: str) -> str:
    """Tune's experiment folder under ``tune_dir``, a path or a URI whose query (``?endpoint_override=...``
    for an S3-compatible store) must stay at the end: ``s3://b/tune?q`` -> ``s3://b/tune/kdtune?q``."""
    import urllib.parse

    if "://" not in tune_dir:
        return f"{tune_dir.rstrip('/')}/{EXPERIMENT}"
    parts = urllib.parse.urlsplit(tune_dir)
    return urllib.parse.urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{EXPERIMENT}"))


def check_shared_storage(storage: str, options: RunOptions) -> None:
    """On a cluster of several nodes, refuse what only one node can see.

    SQLite relies on file locks that fail on network filesystems; a plain folder for the cache or for Tune's
    checkpoints exists on the driver's node only. Shared storage is a URI: ``s3://``, ``gs://``, or
    ``file://`` for a filesystem the user has mounted on every node (NFS).
    """
    from kdtune.study.ray_runtime import cluster_nodes

    nodes = len(cluster_nodes())
    if nodes < 2:
        return
    if storage.startswith("sqlite"):
        raise StudyError(f"this Ray cluster has {nodes} nodes: SQLite storage cannot be shared (its file locks "
                         "fail on network filesystems); pass --storage postgresql://USER@HOST/DB")
    for flag, value in (("--cache-dir", options.cache_dir or os.environ.get("KDTUNE_CACHE_DIR")),
                        ("--tune-storage", options.tune_storage)):
        if not value or "://" not in value:
            raise StudyError(f"this Ray cluster has {nodes} nodes: {flag} {value or '(default)'} is a folder "
                             f"on one node that the others cannot see; pass {flag} s3://BUCKET/PREFIX "
                             f"(or file:///PATH on a filesystem mounted on every node)")


def trial_dirname(trial: Any) -> str:
    """Tune's default folder name spells out the whole config; the trial id is enough."""
    return str(trial.trial_id)


def _scheduler(spec: StudySpec) -> Any:
    from ray.tune.schedulers import FIFOScheduler

    from kdtune.spec.rules import phase_epochs
    from kdtune.study.asha import StratifiedASHA
    from kdtune.tasks import task_for

    if spec.scheduler.type == "fifo" or not task_for(spec).by_epochs:  # a closed-form run has no epoch to stop at
        return FIFOScheduler()
    # ASHA stops only search trials, which a fidelity section shortens (kdtune.spec.rules.phase_epochs)
    return StratifiedASHA(mode=spec.mode, max_t=phase_epochs(spec, "search"), grace_period=spec.scheduler.grace_period,
                          reduction_factor=spec.scheduler.reduction_factor)


def _concurrency(spec: StudySpec, options: RunOptions) -> int:
    """Explicit limit, else as many trials as the cluster's CPUs (or GPUs) hold at the trial's resources."""
    import ray

    if options.max_concurrent or spec.resources.max_concurrent:
        return int(options.max_concurrent or spec.resources.max_concurrent)  # type: ignore[arg-type]
    resources = ray.cluster_resources()
    by_cpu = int(resources.get("CPU", 1) // spec.resources.cpu)
    if spec.resources.gpu > 0:
        return max(1, min(by_cpu, int(resources.get("GPU", 0) // spec.resources.gpu)))
    return max(1, by_cpu)


def _trial_context(spec: StudySpec, conditions: list[Condition]) -> dict[str, Any]:
    from kdtune.tasks import task_for

    return {"task": task_for(spec).name, "objective": spec.objective, "student": spec.student.model_dump(),
            "cpus_per_trial": spec.resources.cpu,
            "students": {c.key: {"arch": c.student_arch, "kwargs": c.student_kwargs(spec)} for c in conditions}}


def _write_study_json(study_dir: Path, spec: StudySpec, conditions: list[Condition], options: RunOptions) -> None:
    """study.json: the study's id (which names its Optuna studies), spec and storage, with no path of the folder
    itself in it (the default storage is :data:`~kdtune.records.folder.FOLDER_STORAGE`): it can be moved."""
    import secrets

    import yaml

    from kdtune._version import __version__
    from kdtune.records.folder import FOLDER_STORAGE
    from kdtune.secrets import redact_url

    storage = options.storage or FOLDER_STORAGE
    safe_storage = redact_url(storage)
    study_dir.chmod(0o700)  # study.json and Tune's state say where the data is: the user's eyes only
    meta = {
        "id": secrets.token_hex(6),
        "kdtune_version": __version__,
        "spec": spec.to_dict(),
        "conditions": [c.as_dict() for c in conditions],
        "created_at": time.time(),
        "storage_url": safe_storage,
        "storage_redacted": safe_storage != storage,
        "cache_dir": options.cache_dir,
        "tune_storage": options.tune_storage,
        "margin": spec.margin,  # fixed before the data: `kdtune recommend --margin` with another one is marked
        "cut_short": False,
    }
    StudyFolder(study_dir).create(meta, yaml.safe_dump(spec.to_dict(), sort_keys=False))


def _refuse_redacted(meta: dict[str, Any]) -> str:
    raise StudyError(f"the study's storage URL has a password ({meta['storage_url']}); "
                     "pass it again with --storage or $KDTUNE_STORAGE")
