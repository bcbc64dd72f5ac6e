"""What a study will cost, before it runs (``kdtune plan``; ``kdtune run`` prints the wall-time line first).

The cost model, its formulas and its worst-case assumptions are ``kdtune plan --help``'s
(:mod:`kdtune.commands.plan`); this module implements them. No Ray, no study folder, nothing trained or written;
torch is imported only to time the steps.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from typing import Any

from kdtune.cache import LogitCache
from kdtune.errors import SpecError
from kdtune.errors import one_line
from kdtune.spec.conditions import expand
from kdtune.spec.rules import locate_trials
from kdtune.spec.rules import preparation_cpus
from kdtune.spec.rules import sweep_trials
from kdtune.spec.rules import transfer_seeds
from kdtune.spec.rules import transfer_trials
from kdtune.spec.rules import trial_budget
from kdtune.spec.workload import Workload
from kdtune.spec.workload import workload
from kdtune.study.preflight import CheckedInputs
from kdtune.study.preflight import check_inputs


#: Ray Tune's cost per trial with reused trial actors (Optuna ask/tell, actor reset, bookkeeping), and per epoch
#: (a trial waits for the driver to process each report): measured with benchmarks/study_throughput.py.
TUNE_TRIAL_OVERHEAD_S = 0.3
TUNE_REPORT_S = 0.025
#: CPU the driver's side spends per reported epoch (Tune's loop, the results recorder, the progress, ASHA, W&B and
#: Ray's own processes), taken from the trials' cores: 55 s over the quickstart's 770 reports on 2 cores (the
#: driver 42-43 s, Ray 6-7 s, W&B 6 s; benchmarks/quickstart_time.py, three runs), where the plan without it
#: read the trial phase 20-25% short.
DRIVER_CPU_PER_REPORT_S = 0.07
#: What one reported epoch costs in all, on the trial's core and the driver's side.
REPORT_COST_S = TUNE_REPORT_S + DRIVER_CPU_PER_REPORT_S
#: Tune and Optuna set-up before the first trial (storage, searcher, scheduler), on top of one worker start.
TUNE_SETUP_S = 3.0
CALIBRATION_STEPS = 20
#: ... and at least this long: a small model's 20 steps take a few milliseconds, too few to time on a busy CPU.
CALIBRATION_SECONDS = 1.0
WARMUP_STEPS = 3
CALIBRATION_IMAGES = 1024  # of a dataset on disk, decoded for the calibration
#: The plan's three figures: each verdict clear at the first look that can give it (min_directional_pairs),
#: every round run (both with ASHA's expected stopping), and the worst case (ASHA stops nothing, every round runs).
SCENARIOS = ("expected", "all_rounds", "worst")
ASSUMPTIONS = [
    "about: ASHA stops proposals as Ray's rule does for proposals of exchangeable quality (simulated); a sampler "
    "that improves stops fewer; the range: each verdict clear at the first look that can give it .. every round run",
    "at most: ASHA stops no trial early and every confirmation round runs; teacher patience stops nothing",
    f"Tune overhead: {TUNE_TRIAL_OVERHEAD_S} s per trial + {TUNE_REPORT_S * 1000:g} ms per epoch (trial actors are reused), "
    f"and {DRIVER_CPU_PER_REPORT_S * 1000:g} ms of the driver's CPU per reported epoch, taken from the trials' cores",
    f"start-up: {TUNE_SETUP_S} s of Tune/Optuna set-up + two worker starts, measured as python -c 'import torch, "
    "ray.tune' (+ two more to start a local Ray)",
    f"step times from {CALIBRATION_STEPS} timed steps (at least {CALIBRATION_SECONDS:g} s of them) after "
    f"{WARMUP_STEPS} warm-up steps on this machine: a "
    "student's on the threads a trial has (resources.cpu), a teacher's on its preparation's share of the CPUs",
    "searched epochs at their maximum, searched batch sizes at their minimum",
]


def make_plan(spec: Any, *, checked: CheckedInputs | None = None, cache_dir: str | None = None,
              cpus: int | None = None, max_concurrent: int | None = None, ray_running: bool = False,
              worker_start_s: float | None = None) -> dict[str, Any]:
    """The plan as a JSON-ready dict (``kdtune plan --format json``); nothing is trained or written.

    ``checked``: what the study's checks found for ``spec`` (``kdtune run`` has run them: its conditions, task and
    the data they loaded are reused); else the inputs are checked here. ``worker_start_s``: seconds a Ray worker
    takes to start, if known; else measured in a fresh process.
    """
    checked = checked or check_inputs(spec, expand(spec), stand_in=True)  # missing data: planned on stand-ins
    conditions, task = checked.conditions, checked.task
    cache = LogitCache(cache_dir)
    budget = trial_budget(spec)
    trials = budget.search
    # Confirmation at its most: every round run (rounds stop early once the verdict is clear).
    confirm_trials = budget.confirm
    confirm_runs = (spec.budget.confirm_top_k + 1) * spec.budget.confirm_max_repeats if confirm_trials else 0
    confirm_runs += locate_trials(spec) * spec.budget.locate_seeds  # the locate stage, after a "distil" verdict
    # the transfer check, and the alphas a failed one adds
    confirm_runs += (transfer_trials(spec) + sweep_trials(spec)) * len(transfer_seeds(spec))
    runs = trials * spec.budget.repeats + confirm_runs
    cpus = cpus or os.cpu_count() or 1
    concurrency = int(max_concurrent or spec.resources.max_concurrent or max(1, int(cpus // spec.resources.cpu)))
    epochs, batch_size = _worst_case_student(spec)
    work = workload(spec, epochs=epochs, asha=task.by_epochs)
    full_search = None if spec.fidelity is None else workload(spec.model_copy(update={"fidelity": None}),
                                                               epochs=epochs, asha=task.by_epochs)
    worker_start_s = _worker_start_seconds() if worker_start_s is None else worker_start_s
    calibrations: dict[str, dict[str, float]] = {"worker start": {"seconds": worker_start_s}}
    teacher_threads = preparation_cpus(cpus, cpus, len(conditions))  # one machine of `cpus` cores
    loaded: dict[tuple[Any, ...], tuple[Any, float]] = dict(checked.loaded)
    rows = []
    for cond in conditions:
        row: dict[str, Any] = {"key": cond.key, "description": cond.describe(), "trials": trials,
                               "confirm_trials": confirm_trials, "runs": runs}
        if cond.teacher_size is not None or cond.student_size is not None:  # what its sizes resolve to
            row["models"] = {"teacher": {"size": cond.teacher_size, "arch": spec.teacher.arch,
                                         "kwargs": cond.teacher_kwargs(spec)},
                             "student": {"size": cond.student_size, "arch": cond.student_arch,
                                         "kwargs": cond.student_kwargs(spec)}}
        own = task.plan_condition(spec, cond, cache_dir=cache_dir, epochs=epochs, batch_size=batch_size,
                                  threads=max(1, int(spec.resources.cpu)), teacher_threads=teacher_threads)
        if own is not None:  # the task plans its data, teacher and runs itself
            load_s, teacher_s, run_s = own.pop("data_load_s"), own.pop("teacher_s"), own.pop("run_s")
            row.update(own)
        else:
            run_s, teacher_s, load_s = _shared_plan(spec, task, cond, row, cache, calibrations, loaded, epochs,
                                                    batch_size, teacher_threads)
            _mark_missing(row, checked.missing.get((cond.dataset, cond.noise_level, cond.noise_type)))
        cond_work = work
        if spec.fidelity is not None and own is None and task.by_epochs:  # the cheap student, measured
            cond_work = dataclasses.replace(work, search_cost=_cheap_cost(spec, task, cond, calibrations, loaded,
                                                                          batch_size, run_s / work.epochs))
        trials_s = _trial_seconds(cond_work, run_s / work.epochs, spec.budget.repeats)
        row["phases_s"] = _phase_seconds(cond_work, run_s / work.epochs, spec.budget.repeats)
        if full_search is not None:  # what the search would have cost at full fidelity
            row["phases_s"]["search_at_full_fidelity"] = _phase_seconds(full_search, run_s / work.epochs,
                                                                        spec.budget.repeats)["search"]
        row["estimate"] = {"data_load_s": load_s, "teacher_s": teacher_s, "run_s": run_s,
                           "trial_s": spec.budget.repeats * run_s + _overhead_s(work.epochs),
                           "cpu_s": load_s + teacher_threads * teacher_s + trials_s["expected"][0],
                           "cpu_s_worst": load_s + teacher_threads * teacher_s + trials_s["worst"][0],
                           "longest_trial_s": trials_s["worst"][1]}
        row["trials_s"] = trials_s
        rows.append(row)
    prep = [r["estimate"]["data_load_s"] + r["estimate"]["teacher_s"] for r in rows]
    # one Ray task per condition, as many at once as their shares of the CPUs allow
    prep_wall = max(max(prep), sum(prep) / max(1, cpus // teacher_threads))
    scenarios = {}
    for name in SCENARIOS:
        parts = [r["trials_s"][name] for r in rows]
        scenarios[name] = max(max(p[1] for p in parts), sum(p[0] for p in parts) / concurrency)
    for r in rows:
        del r["trials_s"]
    startup = TUNE_SETUP_S + worker_start_s * (2 if ray_running else 4)  # + the trial actors' one start
    result = {
        "spec": spec.name,
        "conditions": rows,
        "total": {"conditions": len(rows), "trials": (trials + confirm_trials) * len(rows), "runs": runs * len(rows),
                  "epochs_per_run": epochs if task.by_epochs else None,
                  "teachers_to_train": sum(r["teacher"]["action"] == "train teacher" for r in rows),
                  "logits_to_compute": sum(r["teacher"]["action"] == "compute logits" for r in rows),
                  "cached": sum(r["teacher"]["action"] == "cached" for r in rows),
                  "cpu_s": sum(r["estimate"]["cpu_s"] for r in rows),
                  "wall_s": startup + prep_wall + scenarios["expected"],
                  "wall_s_all_rounds": startup + prep_wall + scenarios["all_rounds"],
                  "wall_s_worst": startup + prep_wall + scenarios["worst"],
                  "wall_parts_s": {"startup": startup, "teachers": prep_wall, "trials": scenarios["expected"],
                                   "trials_all_rounds": scenarios["all_rounds"], "trials_worst": scenarios["worst"]},
                  "seed_epochs": {name: getattr(work, name) * len(rows) for name in SCENARIOS},
                  "phases_s": {name: sum(r["phases_s"].get(name, 0.0) for r in rows)
                               for name in rows[0]["phases_s"]}},
        "resources": {"cpus": cpus, "cpu_per_trial": spec.resources.cpu, "gpu_per_trial": spec.resources.gpu,
                      "concurrency": concurrency, "teacher_threads": teacher_threads},
        "calibration": calibrations,
        "assumptions": ASSUMPTIONS + (["the calibration ran on this machine's CPU; a GPU study is usually faster"]
                                      if spec.resources.gpu > 0 else [])
                       + ([STAND_IN_ASSUMPTION] if checked.missing else []),
    }
    result["total"]["stages"] = stages_line(spec, result)
    return result


def _overhead_s(trial_epochs: float) -> float:
    """Tune's cost of a trial of ``trial_epochs`` reported epochs."""
    return TUNE_TRIAL_OVERHEAD_S + REPORT_COST_S * trial_epochs


def _trial_seconds(work: Workload, unit_s: float, repeats: int) -> dict[str, tuple[float, float]]:
    """A condition's trials in each of :data:`SCENARIOS`: (CPU seconds of its trials, the longest trial's), from
    its :class:`~kdtune.spec.workload.Workload` and the seconds of one seed-epoch."""
    rounds = work.round_units
    round_s = [units * unit_s + work.round_trials * _overhead_s(work.epochs) for units in rounds]
    longest_round_trial = max(rounds) / max(1, work.round_trials) * unit_s if rounds else 0.0
    longest_transfer_trial = work.transfer_units / work.transfer_trials * unit_s if work.transfer_trials else 0.0
    longest = max(repeats * work.search_epochs * work.search_cost * unit_s, longest_round_trial,
                  longest_transfer_trial) + _overhead_s(work.epochs)
    search_s = {"expected": work.search_units, "worst": work.search_units_worst}
    out = {}
    for name in SCENARIOS:
        units = search_s["worst" if name == "worst" else "expected"]
        cpu = units * work.search_cost * unit_s + work.search_trials * TUNE_TRIAL_OVERHEAD_S
        cpu += units / repeats * REPORT_COST_S  # a report per trial-epoch
        cpu += sum(round_s[:work.deciding_rounds]) if name == "expected" else sum(round_s)
        cpu += work.locate_units * unit_s + work.locate_trials * _overhead_s(work.epochs)
        cpu += work.transfer_units * unit_s + work.transfer_trials * _overhead_s(work.epochs)
        if name == "worst":  # a failed transfer check's alphas
            cpu += work.sweep_units * unit_s
        out[name] = (cpu, longest)
    return out


def _phase_seconds(work: Workload, unit_s: float, repeats: int) -> dict[str, float]:
    """A condition's expected CPU seconds per stage: the (cheap) search with its baselines, the transfer check,
    the confirmation rounds up to the deciding look, and the locate stage."""
    search = work.search_units * work.search_cost * unit_s + work.search_trials * TUNE_TRIAL_OVERHEAD_S
    search += work.search_units / repeats * REPORT_COST_S
    confirm = sum(units * unit_s + work.round_trials * _overhead_s(work.epochs)
                  for units in work.round_units[:work.deciding_rounds])
    return {"search": search,
            "transfer": work.transfer_units * unit_s + work.transfer_trials * _overhead_s(work.epochs),
            "confirm": confirm,
            "locate": work.locate_units * unit_s + work.locate_trials * _overhead_s(work.epochs)}


def _cheap_cost(spec: Any, task: Any, cond: Any, calibrations: dict[str, dict[str, float]],
                loaded: dict[tuple[Any, ...], tuple[Any, float]], batch_size: int, full_epoch_s: float) -> float:
    """One seed-epoch of the cheap search in full ones, measured: the cheap student's training steps on its share of
    the training set, plus the evaluation every epoch runs on the whole validation and test splits."""
    f = spec.fidelity
    data = loaded[(cond.dataset, cond.noise_level, cond.noise_type)][0]
    arch = f.student or cond.student_arch
    kwargs = dict(f.student_kwargs) if f.student else cond.student_kwargs(spec)
    if f.width_factor is not None:
        kwargs = task.narrower(arch, kwargs, f.width_factor)
    cal = _calibrate(calibrations, "cheap student", arch, kwargs, data, batch_size, distil=True,
                     threads=max(1, int(spec.resources.cpu)))
    steps = math.ceil(math.ceil(f.data_fraction * len(data.train)) / batch_size)
    evaluated = len(data.val) + len(data.test) + int(data.train.flipped.sum())
    return (steps * cal["step_s"] + evaluated * cal["predict_per_sample_s"]) / full_epoch_s


def _shared_plan(spec: Any, task: Any, cond: Any, row: dict[str, Any], cache: Any,
                 calibrations: dict[str, dict[str, float]], loaded: dict[tuple[Any, ...], tuple[Any, float]],
                 epochs: int, batch_size: int, teacher_threads: int) -> tuple[float, float, float]:
    """A condition's data, teacher and run cost for the tasks that keep their data in memory and their teachers in
    the logit cache: (one run's seconds, the teacher's, loading the data's); fills ``row``."""
    data_key = (cond.dataset, cond.noise_level, cond.noise_type)
    if data_key not in loaded:
        start = time.perf_counter()
        loaded[data_key] = (cond.load_data(spec), time.perf_counter() - start)
    data, load_s = loaded[data_key]
    row["samples"] = {"train": len(data.train), "val": len(data.val), "test": len(data.test)}
    if not task.by_epochs:  # closed form: the teacher is drawn, each run is one least-squares solve
        row["teacher"] = {"source": "closed form", "action": "none (closed form)", "teacher_key": None,
                          "logits_key": None, "teacher_cached": None, "logits_cached": None}
        return 0.01, 0.0, load_s  # a least-squares solve per seed
    teacher_spec = cond.teacher_spec(spec)
    row["teacher"] = cache.plan(teacher_spec, data, dtype=spec.cache.logits_dtype)
    student = _calibrate(calibrations, "student", cond.student_arch, cond.student_kwargs(spec), data,
                         batch_size, distil=True, threads=max(1, int(spec.resources.cpu)))
    run_s = epochs * _epoch_seconds(student, data, batch_size)
    teacher_s = _teacher_seconds(calibrations, row["teacher"]["action"], teacher_spec, data, teacher_threads)
    if spec.student.augmented:
        row["views"] = _views(spec, cache, row["teacher"], data)
        if not row["views"]["cached"]:  # V teacher forward passes over the training split
            cal = _calibrate(calibrations, "teacher", teacher_spec.arch, dict(teacher_spec.kwargs), data,
                             teacher_spec.batch_size, distil=False, threads=teacher_threads)
            teacher_s += row["views"]["views"] * len(data.train) * cal["predict_per_sample_s"]
    return run_s, teacher_s, load_s


STAND_IN_ASSUMPTION = ("data missing on this machine: planned on random stand-in images of the dataset's published "
                       "size and shape (kdtune.tasks.image.standin), with its teacher to be trained")


def _mark_missing(row: dict[str, Any], problem: str | None) -> None:
    """A condition planned on stand-in images: the row says its data are missing, and nothing about the cache (the
    stand-in's keys are no real entry's)."""
    if problem is None:
        return
    row["data"] = {"missing": problem, "stand_in": True}
    row["teacher"] = {"source": row["teacher"]["source"], "action": "train teacher", "teacher_key": None,
                      "teacher_cached": None, "logits_key": None, "logits_cached": None,
                      "problem": f"data missing here, planned on stand-in images of its shape: {problem}"}
    if "views" in row:
        row["views"].update(key=None, cached=False)


def _views(spec: Any, cache: Any, teacher: dict[str, Any], data: Any) -> dict[str, Any]:
    """The per-view teacher logits of ``student.augment``: their size against ``cache.max_bytes``, and whether
    the cache holds them (known only once the teacher's logits entry is)."""
    from kdtune.tasks.image.views import student_views
    from kdtune.tasks.image.views import view_cache_bytes

    view_spec = student_views(spec.student.model_dump(), spec.dataset.seed)
    assert view_spec is not None
    top_k = spec.cache.top_k
    cached = False
    key = None
    if teacher.get("logits_key"):
        key, cached = cache.views_cached(teacher["logits_key"], view_spec, top_k)
    return {"views": view_spec.views, "images": len(data.train), "classes": data.num_classes, "top_k": top_k,
            "bytes": view_cache_bytes(len(data.train), data.num_classes, view_spec.views, top_k),
            "max_bytes": spec.cache.max_bytes, "key": key, "cached": cached}


def _worker_start_seconds() -> float:
    """Seconds a fresh Python process needs to import torch and Ray Tune: what every Ray worker pays."""
    import subprocess

    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch, ray.tune"], check=False, capture_output=True)
    return time.perf_counter() - start


def _worst_case_student(spec: Any) -> tuple[int, int]:
    """Epochs and batch size of the most expensive configuration the search can propose."""
    epochs, batch_size = spec.student.epochs, spec.student.batch_size
    for name, default, pick in (("epochs", epochs, max), ("batch_size", batch_size, min)):
        d = spec.search.get(name)
        if d is None:
            continue
        values = d.choices if d.type == "categorical" else [d.low, d.high]
        value = int(pick(v for v in values if v is not None)) if values else default
        if name == "epochs":
            epochs = value
        else:
            batch_size = value
    return epochs, batch_size


def _teacher_seconds(calibrations: dict[str, dict[str, float]], action: str, spec: Any, data: Any,
                     threads: int) -> float:
    """Wall seconds of a condition's teacher preparation on ``threads`` threads: training, then its logits (each
    member of an ensemble)."""
    if action in ("cached", "missing"):
        return 0.0
    cal = _calibrate(calibrations, "teacher", spec.arch, dict(spec.kwargs), data, spec.batch_size, distil=False,
                     threads=threads)
    members = spec.ensemble  # an ensemble trains and runs each of its members in turn
    total = len(data.train) + len(data.val) + len(data.test)
    logits_s = members * cal["predict_per_sample_s"] * total
    if action == "compute logits":
        return logits_s
    return members * spec.epochs * _epoch_seconds(cal, data, spec.batch_size) + logits_s


def _epoch_seconds(cal: dict[str, float], data: Any, batch_size: int) -> float:
    """Training steps of one epoch plus its evaluation (validation, test and the flipped training samples)."""
    steps = math.ceil(len(data.train) / batch_size)
    evaluated = len(data.val) + len(data.test) + int(data.train.flipped.sum())
    return steps * cal["step_s"] + evaluated * cal["predict_per_sample_s"]


def _calibrate(calibrations: dict[str, dict[str, float]], role: str, arch: str, kwargs: dict[str, Any], data: Any,
               batch_size: int, *, distil: bool, threads: int) -> dict[str, float]:
    """Seconds per training step and per evaluated sample of ``arch`` on ``data`` with ``threads`` torch threads,
    measured once per setting."""
    name = (f"{role} {arch} {json.dumps(kwargs, sort_keys=True)} batch {batch_size} input {tuple(data.input_shape)}"
            f" threads {threads}")
    if name not in calibrations:
        calibrations[name] = _measure(arch, kwargs, data, batch_size, distil=distil, field=f"{role}.arch",
                                      threads=threads)
    return calibrations[name]


def _measure(arch: str, kwargs: dict[str, Any], data: Any, batch_size: int, *, distil: bool,
             field: str, threads: int) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    from kdtune.cache.teacher import build_checked
    from kdtune.core.distill import kd_loss
    from kdtune.core.images import head
    from kdtune.core.train import TrainConfig
    from kdtune.core.train import make_optimizer
    from kdtune.core.train import predict

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = build_checked(arch, data, kwargs=kwargs, field=field, seed=0)
        optimizer = make_optimizer(TrainConfig(lr=1e-3), model.parameters())  # the Adam the study trains with
        # images on disk: a sample decoded once (the plan times the model's steps, not the loader's decoding)
        x = data.train.x if isinstance(data.train.x, torch.Tensor) else head(data.train.x, CALIBRATION_IMAGES)
        y = data.train.y[: len(x)]
        if x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        generator = torch.Generator().manual_seed(0)
        teacher = torch.randn(len(y), data.num_classes, generator=generator) if distil else None
        model.train()

        def step(i: int) -> None:
            idx = torch.randint(len(y), (min(batch_size, len(y)),), generator=generator)
            try:
                out = model(x[idx])
                if teacher is None:
                    loss = F.cross_entropy(out, y[idx])
                else:
                    loss = kd_loss(out, teacher[idx], y[idx], alpha=0.5, temperature=4.0)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            except Exception as exc:  # the user's model: its forward ran once in the checks, training is new
                raise SpecError(field, arch, f"failed in a training step: {type(exc).__name__}: "
                                f"{one_line(exc)}") from None

        for i in range(WARMUP_STEPS):
            step(i)
        start, steps = time.perf_counter(), 0
        while steps < CALIBRATION_STEPS or time.perf_counter() - start < CALIBRATION_SECONDS:
            step(steps)
            steps += 1
        step_s = (time.perf_counter() - start) / steps
        sample = torch.cat([head(data.val.x, 4096), head(data.test.x, 4096)])[:4096]
        predict(model, sample[:64])  # warm-up
        start = time.perf_counter()
        predict(model, sample)
        per_sample = (time.perf_counter() - start) / max(1, len(sample))
    finally:
        torch.set_num_threads(previous)
    return {"step_s": step_s, "predict_per_sample_s": per_sample}


def estimate_line(result: dict[str, Any]) -> str:
    """The plan's wall-time estimate in one line (``kdtune plan``'s summary; ``kdtune run`` prints it first): the
    expected range (the deciding confirmation rounds only .. every round) and the worst case."""
    total, res = result["total"], result["resources"]
    parts = total["wall_parts_s"]
    return (f"wall time: about {_span(total['wall_s'], total['wall_s_all_rounds'])} "
            f"(at most {duration(total['wall_s_worst'])}) for up to {total['trials']} trials, "
            f"{res['concurrency']} at once on {res['cpus']} CPUs (start-up {duration(parts['startup'])}, "
            f"teachers {duration(parts['teachers'])}, trials {_span(parts['trials'], parts['trials_all_rounds'])})")


def stages_line(spec: Any, result: dict[str, Any]) -> str | None:
    """A multi-fidelity study's stages in one line, CPU time each (expected: the deciding rounds), and what the cheap
    search saves against searching at full fidelity; None for a study without a fidelity section."""
    phases = result["total"]["phases_s"]
    if spec.fidelity is None or "search_at_full_fidelity" not in phases:
        return None
    from kdtune.tasks import task_for

    full_epochs = task_for(spec).epochs(spec)
    saved = phases["search_at_full_fidelity"] - phases["search"] - phases["transfer"]
    share = saved / phases["search_at_full_fidelity"] if phases["search_at_full_fidelity"] > 0 else 0.0
    return (f"stages (CPU time): cheap search {duration(phases['search'])} ({spec.fidelity.words(full_epochs)}), "
            f"transfer check {duration(phases['transfer'])} (at full fidelity), full confirmation "
            f"{duration(phases['confirm'])}, locate {duration(phases['locate'])}; the search at full fidelity would "
            f"take {duration(phases['search_at_full_fidelity'])}, so the cheap search and its transfer check "
            + (f"save {duration(saved)} ({share:.0%})" if saved >= 0 else f"cost {duration(-saved)} more"))


def _span(low: float, high: float) -> str:
    """``2.5 min`` or ``2.5-2.9 min``: one figure when the two round to it."""
    a, b = duration(low), duration(high)
    if a == b:
        return a
    unit_a, unit_b = a.rsplit(" ", 1)[1], b.rsplit(" ", 1)[1]
    return f"{a.rsplit(' ', 1)[0]}-{b}" if unit_a == unit_b else f"{a}-{b}"


def duration(seconds: float) -> str:
    """Seconds as an estimate reads: ``42 s``, ``3.5 min``, ``1.2 h``."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
