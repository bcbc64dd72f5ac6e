"""Progress of a study per condition and phase: trials planned, ended, complete / pruned / failed / running, the best
objective, ETA.

One summary, two sources: the live display feeds it Tune's in-memory trials while the study runs, and
``kdtune status DIR`` feeds it the study folder's files (so it works from another terminal, during the run or
after it, and after a crash).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from kdtune.spec.rules import AFTER_SEARCH


if TYPE_CHECKING:
    from kdtune.spec.rules import TrialBudget
    from kdtune.spec.workload import Workload


@dataclass(frozen=True)
class TrialView:
    condition: str
    phase: str  # search | baseline | confirm (kdtune.spec.rules.PHASES)
    state: str  # PENDING | RUNNING | COMPLETE | PRUNED | FAIL
    objective: float | None
    seeds: tuple[int, ...] = ()  # a confirmation trial's seeds name its round
    epoch: int = 0  # epochs its seeds have run
    runs: int = 0  # its seeds (0: budget.repeats, a search or baseline trial's)


#: The rows of a condition: the search (the sampler's proposals and the alpha = 1 and alpha = 0 baselines, one
#: budget) and the confirmation rounds.
ROW_PHASES = ("search", "confirm")
#: The counted states, by their key in a summary.
STATES = {"complete": "COMPLETE", "pruned": "PRUNED", "failed": "FAIL", "running": "RUNNING"}
#: How much the plan's pace weighs in the time left, as a share of the study's expected work.
PLAN_WEIGHT = 0.25


def planned_costs(meta: dict[str, Any]) -> tuple[float, float] | None:
    """The plan's wall seconds per seed-epoch and per report that ``kdtune run`` kept in ``study.json``."""
    costs = meta.get("planned_costs_s")
    return (float(costs["seed_epoch"]), float(costs["report"])) if costs else None


def summarise(trials: list[TrialView], *, conditions: list[str], budget: TrialBudget, confirm_rounds: int,
              mode: str, elapsed: float, finished: bool = False, work: Workload | None = None,
              repeats: int = 1, planned: tuple[float, float] | None = None) -> dict[str, Any]:
    """Per condition and phase: trials planned (at most: confirmation stops once a verdict is clear), ended, and
    complete / pruned / failed / running, the best objective; totals and, given the conditions' ``work``
    (:func:`kdtune.spec.workload.workload`), the time left (:func:`time_left`, from the ``planned`` costs too when
    the plan had them; None before any seed-epoch ran). A
    finished study's trials have all ended, however few of the planned ones ran."""
    rows: list[dict[str, Any]] = []
    for condition in conditions:
        mine = [t for t in trials if t.condition == condition]
        phases = {phase: _phase(mine, phase, planned, mode)
                  for phase, planned in zip(ROW_PHASES, (budget.search, budget.confirm))}
        rows.append({"condition": condition, **_totals(phases.values()), "phases": phases})
    totals = _totals(rows)
    eta = None if finished or work is None else time_left(trials, conditions, work, repeats=repeats, elapsed=elapsed,
                                                          planned=planned)
    return {"conditions": rows, **totals, "confirm_rounds": confirm_rounds, "finished": finished,
            "elapsed_seconds": elapsed, "eta_seconds": eta}


def time_left(trials: list[TrialView], conditions: list[str], work: Workload, *, repeats: int,
              elapsed: float, planned: tuple[float, float] | None = None) -> float | None:
    """Seconds left: the training still to run at the pace so far.

    What is left, per condition (:mod:`kdtune.spec.workload`): its search trials not yet begun at their expected
    length under ASHA, its begun trials to their full length, and its confirmation rounds at full length: those up
    to the first look that can end in "distil" (``kdtune.spec.rules.min_directional_pairs``), or the one under way
    if later. A later round is counted once it begins, and the log says so when it does; so the time left grows
    only with a line that says why. None before any seed-epoch ran.

    How fast it goes: training is counted in seed-epochs (one seed trained for one epoch) and reports (one per
    trial-epoch, which the driver processes), at the plan's wall seconds of each (``planned``: ``kdtune plan``'s,
    which ``kdtune run`` keeps in the study). A search trial of 5 seeds pays a report for every 5 seed-epochs, a
    confirmation trial of 18 seeds one for every 18, so the work left is not the work done over again: counting
    seed-epochs alone read the quickstart's confirmation 40% slow. The run's measured pace scales the plan's
    costs: elapsed over the plan's cost of the work done, shrunk towards 1 (the plan as it is) with the weight of
    :data:`PLAN_WEIGHT` of the study's expected work, since the first trials pay for worker starts and warm-up.
    Without a plan, seed-epochs alone at the measured pace.
    """
    seed_epoch_s, report_s = planned or (1.0, 0.0)

    def cost(seed_epochs: float, runs: float) -> float:
        return seed_epochs * seed_epoch_s + seed_epochs / max(runs, 1.0) * report_s

    done = sum(cost(t.epoch * (t.runs or repeats) * work.cost(t.phase), t.runs or repeats) for t in trials)
    if done <= 0 or elapsed <= 0:
        return None
    left = 0.0
    for condition in conditions:
        mine = [t for t in trials if t.condition == condition]
        left += sum(cost((t.runs or repeats) * max(0, work.length(t.phase) - t.epoch) * work.cost(t.phase),
                         t.runs or repeats) for t in mine if t.state in ("RUNNING", "PENDING"))
        unbegun = max(0, work.search_trials - sum(t.phase not in AFTER_SEARCH for t in mine))
        left += unbegun * cost(work.search_trial_units, repeats)
        if work.transfer_trials:
            per_transfer = work.transfer_units / work.transfer_trials
            begun = sum(t.phase == "transfer" for t in mine)
            left += max(0, work.transfer_trials - begun) * cost(per_transfer, per_transfer / work.epochs)
        if work.locate_trials:  # counted as if the condition ends in "distil" (kdtune.spec.workload)
            per_locate = work.locate_units / work.locate_trials
            begun = sum(t.phase == "locate" for t in mine)
            left += max(0, work.locate_trials - begun) * cost(per_locate, per_locate / work.epochs)
        confirm = [t for t in mine if t.phase == "confirm"]
        if work.round_trials and work.round_units:
            rounds = max(work.deciding_rounds, len({t.seeds[0] for t in confirm if t.seeds}))
            per_trial = work.round_units[min(rounds, len(work.round_units)) - 1] / work.round_trials
            left += max(0, rounds * work.round_trials - len(confirm)) * cost(per_trial, per_trial / work.epochs)
    if planned is None:
        return left * elapsed / done
    prior = PLAN_WEIGHT * cost(work.expected * len(conditions), repeats)
    return left * (elapsed + prior) / (done + prior)


def _phase(trials: list[TrialView], phase: str, planned: int, mode: str) -> dict[str, Any]:
    mine = [t for t in trials if (t.phase in AFTER_SEARCH) == (phase == "confirm")]  # the row counts locate too
    counts = {key: sum(t.state == state for t in mine) for key, state in STATES.items()}
    values = [t.objective for t in mine if t.state == "COMPLETE" and t.objective is not None
              and math.isfinite(t.objective)]
    best = (max(values) if mode == "max" else min(values)) if values else None
    rounds = len({t.seeds[0] for t in mine if t.seeds and t.phase == "confirm"}) if phase == "confirm" else None
    return {"planned": planned, "ended": counts["complete"] + counts["pruned"] + counts["failed"], **counts,
            "best": best, "rounds": rounds}


def _totals(parts: Any) -> dict[str, int]:
    keys = ("planned", "ended", *STATES)
    parts = list(parts)
    return {key: sum(int(p[key]) for p in parts) for key in keys}


def from_files(study_dir: Path) -> dict[str, Any]:
    """The summary of a study folder, from ``study.json``, ``trials.parquet`` and ``results.parquet``, with
    ``notes``: why a finished study ran fewer trials than planned (:func:`kdtune.records.progress_lines.shortfall_lines`)."""
    from kdtune.records.folder import StudyFolder
    from kdtune.records.progress_lines import shortfall_lines
    from kdtune.records.results import read_results
    from kdtune.records.results import read_trials
    from kdtune.spec.rules import confirmation_rounds
    from kdtune.spec.rules import trial_budget
    from kdtune.spec.workload import workload
    from kdtune.tasks import task_for

    folder = StudyFolder(study_dir)
    meta = folder.meta()
    spec = folder.spec()
    results = read_results(study_dir).select(["trial_id", "condition", "phase", "seed", "epoch"]).to_pylist()
    seeds: dict[str, set[int]] = {}
    epochs: dict[str, int] = {}
    for row in results:
        seeds.setdefault(row["trial_id"], set()).add(int(row["seed"]))
        epochs[row["trial_id"]] = max(epochs.get(row["trial_id"], 0), int(row["epoch"] or 0))
    ended = read_trials(study_dir).to_pylist()

    def view(trial_id: str, condition: str, phase: str, state: str, objective: float | None, epoch: int) -> TrialView:
        mine = tuple(sorted(seeds.get(trial_id, ())))
        return TrialView(condition, phase, state, objective, mine, epoch, len(mine))

    views = [view(t["trial_id"], t["condition"], t["phase"], t["state"], t["objective"], int(t["epochs_done"] or 0))
             for t in ended]
    finished = meta.get("finished_at") is not None
    done_ids = {t["trial_id"] for t in ended}
    running = {r["trial_id"]: r for r in results if r["trial_id"] not in done_ids}
    if not finished:
        views += [view(t, r["condition"], r["phase"], "RUNNING", None, epochs[t]) for t, r in running.items()]
    end = meta.get("finished_at") or time.time()
    task = task_for(spec)
    work = workload(spec, epochs=task.epochs(spec), asha=task.by_epochs)
    summary = summarise(views, conditions=[c["key"] for c in meta["conditions"]], budget=trial_budget(spec),
                        confirm_rounds=confirmation_rounds(spec), mode=spec.mode,
                        elapsed=end - meta.get("trials_started_at", meta["created_at"]), finished=finished,
                        work=work, repeats=spec.budget.repeats, planned=planned_costs(meta))
    summary.update(study=spec.name, cut_short=meta.get("cut_short", False), objective=spec.objective_name)
    summary["notes"] = shortfall_lines(summary)
    teachers = teacher_summaries(folder.teachers())
    for row in summary["conditions"]:
        row["teacher"] = teachers.get(row["condition"])
    return summary


def teacher_summaries(teachers: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What the progress table shows of each condition's teacher (``teachers.json`` content)."""
    return {key: {"selected_epoch": t.get("selected_epoch"), **(t.get("diagnostics") or {})}
            for key, t in teachers.items()}


def render(summary: dict[str, Any]) -> Any:
    """A rich table of the summary: one row per condition and phase."""
    from rich.table import Table

    from kdtune.records.progress_lines import duration
    from kdtune.tables import fold
    from kdtune.tables import name_column

    eta = summary["eta_seconds"]
    counts = f"{summary['complete']} complete, {summary['pruned']} pruned, {summary['failed']} failed"
    if summary.get("finished"):
        title = f"{summary.get('study', 'study')}: finished, {summary['ended']} trials ({counts})"
    else:
        title = (f"{summary.get('study', 'study')}: {summary['ended']} of at most {summary['planned']} trials ended "
                 f"({counts}), {summary['running']} running, {duration(summary['elapsed_seconds'])} elapsed"
                 + ("" if eta is None else f", ~{duration(eta)} left"))
    table = Table(title=title, caption="trials: ended / planned (≤: at most; confirmation stops once its verdict is "
                  "clear); search: the sampler's proposals and the alpha = 1 and alpha = 0 baselines (cheap where the spec has "
                  "a fidelity section); confirm: every trial after the search (a cheap search's transfer check, the "
                  "confirmation rounds, the locate stage); best: of complete "
                  "trials; teacher: clean test accuracy at its selected epoch, and the share of flipped training "
                  "labels it predicts as the noisy label (memorised)")
    headers = ("condition", "phase", "trials", "complete", "pruned", "failed", "running",
               f"best {summary.get('objective', '')}", "teacher acc (epoch)", "teacher memorised")
    name_column(table, headers[0], [row["condition"] for row in summary["conditions"]])
    for header in headers[1:]:
        table.add_column(header, justify="left" if header == "phase" else "right")
    for row in summary["conditions"]:
        teacher = _teacher_cells(row.get("teacher"))
        for phase, cells in row["phases"].items():
            if phase == "confirm" and cells["planned"] == 0 and cells["ended"] + cells["running"] == 0:
                continue  # a study without confirmation
            first = phase == "search"
            table.add_row(row["condition"] if first else "", phase, _trials_cell(phase, cells),
                          *(str(cells[k]) for k in STATES), _value(cells["best"]),
                          *(teacher if first else ("", "")))
    return fold(table)


def _trials_cell(phase: str, cells: dict[str, Any]) -> str:
    ceiling = "≤" if phase == "confirm" else ""
    return f"{cells['ended']}/{ceiling}{cells['planned']}"


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _teacher_cells(teacher: dict[str, Any] | None) -> tuple[str, str]:
    if not teacher or teacher.get("test_accuracy") is None:
        return "-", "-"
    memorised = teacher.get("memorisation_rate")
    return (f"{teacher['test_accuracy']:.3f} ({teacher.get('selected_epoch')})",
            "-" if memorised is None else f"{memorised:.0%}")
