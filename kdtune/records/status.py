"""Progress of a study per condition: trials done / running / pruned / failed, best objective, ETA.

One summary, two sources: the live display feeds it Tune's in-memory trials while the study runs, and
``kdtune status DIR`` feeds it the study folder's files (so it works from another terminal, during the run or
after it, and after a crash).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class TrialView:
    condition: str
    state: str  # PENDING | RUNNING | COMPLETE | PRUNED | FAIL
    objective: float | None


def summarise(trials: list[TrialView], *, conditions: list[str], per_condition: int, mode: str,
              elapsed: float, finished: bool = False) -> dict[str, Any]:
    """Counts and best objective per condition, and an ETA from the pace so far (None before any trial ended).

    ``per_condition`` is the most trials a condition can run; confirmation stops early once its verdict is
    clear, so a finished study's budget is the trials it ran.
    """
    rows: list[dict[str, Any]] = []
    for condition in conditions:
        mine = [t for t in trials if t.condition == condition]
        counts = {s: sum(t.state == s for t in mine) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}
        values = [t.objective for t in mine if t.state == "COMPLETE" and t.objective is not None
                  and math.isfinite(t.objective)]
        best = (max(values) if mode == "max" else min(values)) if values else None
        ended = counts["COMPLETE"] + counts["PRUNED"] + counts["FAIL"]
        rows.append({"condition": condition, "budget": ended if finished else per_condition, "done": counts["COMPLETE"],
                     "pruned": counts["PRUNED"], "failed": counts["FAIL"], "running": counts["RUNNING"], "best": best})
    ended = sum(r["done"] + r["pruned"] + r["failed"] for r in rows)
    total = sum(r["budget"] for r in rows)
    eta = elapsed * (total - ended) / ended if ended else None
    return {"conditions": rows, "ended": ended, "total": total, "elapsed_seconds": elapsed,
            "eta_seconds": None if eta is None else max(0.0, eta)}


def epoch_weighted_eta(*, done_units: float, running_left: float, trials_left: int, units_per_trial: float,
                       elapsed: float) -> float | None:
    """Seconds left, from the pace in seed-epochs (one seed trained for one epoch) rather than in trials.

    Trials differ in length (ASHA stops some after a few epochs, confirmation trials run more seeds), so a pace
    in trials misleads early on. ``done_units`` seed-epochs ran in ``elapsed`` seconds; still to run are the
    running trials' remaining seed-epochs and ``trials_left`` trials of ``units_per_trial`` each (the mean so
    far, so that ASHA's pruning counts). None before any seed-epoch ran.
    """
    if done_units <= 0 or elapsed <= 0:
        return None
    return max(0.0, (running_left + trials_left * units_per_trial) * elapsed / done_units)


def from_files(study_dir: Path) -> dict[str, Any]:
    """The summary of a study folder, from ``study.json``, ``trials.parquet`` and ``results.parquet``."""
    from kdtune.records.folder import StudyFolder
    from kdtune.records.results import read_results
    from kdtune.records.results import read_trials
    from kdtune.spec.rules import trial_budget

    folder = StudyFolder(study_dir)
    meta = folder.meta()
    spec = folder.spec()
    ended = read_trials(study_dir).to_pylist()
    views = [TrialView(t["condition"], t["state"], t["objective"]) for t in ended]
    done_ids = {t["trial_id"] for t in ended}
    results = read_results(study_dir)
    running = dict(zip(results.column("trial_id").to_pylist(), results.column("condition").to_pylist()))
    finished = meta.get("finished_at") is not None
    views += [TrialView(c, "RUNNING", None) for t, c in running.items() if t not in done_ids and not finished]
    end = meta.get("finished_at") or time.time()
    summary = summarise(views, conditions=[c["key"] for c in meta["conditions"]],
                        per_condition=trial_budget(spec).total, mode=spec.mode,
                        elapsed=end - meta["created_at"], finished=finished)
    summary.update(study=spec.name, finished=finished, cut_short=meta.get("cut_short", False),
                   objective=spec.objective_name)
    teachers = teacher_summaries(folder.teachers())
    for row in summary["conditions"]:
        row["teacher"] = teachers.get(row["condition"])
    return summary


def teacher_summaries(teachers: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What the progress table shows of each condition's teacher (``teachers.json`` content)."""
    return {key: {"selected_epoch": t.get("selected_epoch"), **(t.get("diagnostics") or {})}
            for key, t in teachers.items()}


def render(summary: dict[str, Any]) -> Any:
    """A rich table of the summary."""
    from rich.table import Table

    from kdtune.tables import name_column

    eta = summary["eta_seconds"]
    title = (f"{summary.get('study', 'study')}: {summary['ended']}/{summary['total']} trials ended, "
             f"{_duration(summary['elapsed_seconds'])} elapsed"
             + ("" if eta is None or summary.get("finished") else f", ~{_duration(eta)} left"))
    table = Table(title=title, caption="teacher: clean test accuracy at its selected epoch, and the share of "
                  "flipped training labels it predicts as the noisy label (memorised)")
    headers = ("condition", "done", "running", "pruned", "failed", f"best {summary.get('objective', '')}",
               "teacher acc (epoch)", "teacher memorised")
    name_column(table, headers[0], [row["condition"] for row in summary["conditions"]])
    for header in headers[1:]:
        table.add_column(header, justify="right")
    for row in summary["conditions"]:
        best = "-" if row["best"] is None else f"{row['best']:.4f}"
        table.add_row(row["condition"], f"{row['done']}/{row['budget']}", str(row["running"]), str(row["pruned"]),
                      str(row["failed"]), best, *_teacher_cells(row.get("teacher")))
    return table


def _teacher_cells(teacher: dict[str, Any] | None) -> tuple[str, str]:
    if not teacher or teacher.get("test_accuracy") is None:
        return "-", "-"
    memorised = teacher.get("memorisation_rate")
    return (f"{teacher['test_accuracy']:.3f} ({teacher.get('selected_epoch')})",
            "-" if memorised is None else f"{memorised:.0%}")


def trial_line(condition: str, params: dict[str, Any], searched: list[str], phase: str, state: str,
               objective: float | None, objective_name: str, epochs: tuple[int, int]) -> str:
    """One ended trial as one plain line, for a log: condition, configuration, state, objective."""
    names = {"temperature": "T"}
    config = " ".join(f"{names.get(k, k)}={_short(params[k])}" for k in searched if k in params)
    value = "-" if objective is None or not math.isfinite(objective) else f"{objective:.4f}"
    done, total = epochs
    where = f" at epoch {done}/{total}" if state == "PRUNED" else ""
    return f"trial ended: {condition} {config} ({phase}): {state}{where}, {objective_name} {value}"


def summary_line(summary: dict[str, Any]) -> str:
    """The whole study in one plain line, for a log: trials ended / running, best per condition, time left."""
    rows = summary["conditions"]
    counts = {k: sum(r[k] for r in rows) for k in ("done", "pruned", "failed", "running")}
    best = "; ".join(f"{r['condition']} {'-' if r['best'] is None else format(r['best'], '.4f')}" for r in rows)
    eta = summary["eta_seconds"]
    left = "" if eta is None else f", ~{_duration(eta)} left"
    return (f"progress: {summary['ended']}/{summary['total']} trials ended ({counts['done']} complete, "
            f"{counts['pruned']} pruned, {counts['failed']} failed), {counts['running']} running, "
            f"{_duration(summary['elapsed_seconds'])} elapsed{left}; best {summary.get('objective', '')}: {best}")


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
