"""What each line of a study's log says: trials as they end, a summary every so often, the teachers, each
confirmation round, and why a finished study ran fewer trials than it planned.

The one owner of these words: the driver's progress callback and the teachers' preparation print them, ``kdtune
status`` shows the same notes. Each line stands alone (a log is searched with grep) and fits a log's width after
its time stamp (:data:`kdtune.log_output.TEXT_WIDTH`) unless a condition's name alone is longer; the time stamp
itself is added where the line is written (:mod:`kdtune.log_output`).
"""

from __future__ import annotations

import math
from typing import Any


def trial_line(condition: str, params: dict[str, Any], searched: list[str], phase: str, state: str,
               objective: float | None, objective_name: str, epochs: tuple[int, int]) -> str:
    """One ended trial: condition, configuration, phase, state, objective."""
    names = {"temperature": "T"}
    config = " ".join(f"{names.get(k, k)}={_short(params[k])}" for k in searched if k in params)
    done, total = epochs
    where = f" at epoch {done}/{total}" if state == "PRUNED" else ""
    return f"trial ended: {condition} {config} ({phase}): {state}{where}, {objective_name} {_value(objective)}"


def summary_line(summary: dict[str, Any]) -> str:
    """The whole study in one line (:func:`kdtune.records.status.summarise`): trials ended of the most planned,
    by state, time spent and left. While it runs the total is a ceiling ("at most"): confirmation stops once a
    verdict is clear; a finished study gives what ran, and :func:`shortfall_lines` say why it is fewer."""
    counts = f"{summary['complete']} complete, {summary['pruned']} pruned, {summary['failed']} failed"
    elapsed = duration(summary["elapsed_seconds"])
    if summary.get("finished"):
        return f"progress: finished: {summary['ended']} trials ({counts}) in {elapsed}"
    eta = summary["eta_seconds"]
    left = "" if eta is None else f", ~{duration(eta)} left"
    return (f"progress: {summary['ended']} of at most {summary['planned']} trials ended ({counts}), "
            f"{summary['running']} running, {elapsed} elapsed{left}")


def best_line(summary: dict[str, Any]) -> str:
    """The best objective of each condition's search (search and baselines; confirmation runs, on other seeds,
    are not mixed in)."""
    best = ", ".join(f"{row['condition']} {_value(row['phases']['search']['best'])}" for row in summary["conditions"])
    return f"best {summary.get('objective', 'objective')} of the search{'' if summary.get('finished') else ' so far'}: {best}"


def shortfall_lines(summary: dict[str, Any]) -> list[str]:
    """Why a finished study ran fewer trials than the most it planned: one line per condition and phase that
    did (none when every planned trial ran, or while the study runs)."""
    if not summary.get("finished") or summary["ended"] >= summary["planned"]:
        return []
    lines = [f"trials: {summary['ended']} ran, of at most {summary['planned']} planned:"]
    for row in summary["conditions"]:
        search, confirm = row["phases"]["search"], row["phases"]["confirm"]
        if search["ended"] < search["planned"]:
            lines.append(f"  {row['condition']}: the search ran {search['ended']} of {search['planned']} trials: "
                         f"{_stopped(summary)}")
        if confirm["ended"] < confirm["planned"]:
            lines.append(f"  {row['condition']}: confirmation ran {confirm['ended']} of at most {confirm['planned']} "
                         f"trials: {_confirmation_ended(summary, confirm['rounds'])}")
    return lines


def _stopped(summary: dict[str, Any]) -> str:
    return "budget.max_wall_minutes was reached" if summary.get("cut_short") else "the study was stopped"


def _confirmation_ended(summary: dict[str, Any], rounds: int) -> str:
    if summary.get("cut_short"):
        return _stopped(summary)
    if rounds == 0:
        return "nothing to confirm (no distilled configuration or no alpha = 1 baseline completed)"
    if rounds < summary["confirm_rounds"]:
        return f"its verdict was clear after round {rounds} of up to {summary['confirm_rounds']}"
    return "fewer candidates than budget.confirm_top_k completed the search"


def confirmation_line(condition: str, round_index: int, rounds: int, seeds: list[int]) -> str:
    """A confirmation round starts (``round_index`` 0-based, of at most ``rounds``): its trials come on top of
    the search's, which is why the trials a study runs grow in rounds."""
    return (f"confirmation: {condition} round {round_index + 1} of up to {rounds}: the candidates and alpha = 1 "
            f"on {len(seeds)} fresh seeds")


def locate_line(condition: str, params: dict[str, Any], seeds: int) -> str:
    """The locate stage starts (its first trial): the confirmation said "distil", and more alphas at the confirmed
    configuration's temperature now run on the first round's seeds."""
    at = f" at T {params['temperature']:.3g}" if params.get("temperature") is not None else ""
    return (f"locate: {condition}: distil confirmed; more alphas{at} on {seeds} of its fresh seeds, to say where "
            "the best alpha lies")


def transfer_line(condition: str, seeds: int) -> str:
    """The transfer check starts (its first trial): the cheap search ended, and its best configurations and both
    baselines now run at full fidelity; confirmation follows, at full fidelity too."""
    return (f"transfer check: {condition}: the cheap search's best configurations, alpha = 1 and alpha = 0 at full "
            f"fidelity on {seeds} paired seeds; confirmation follows at full fidelity")


def teacher_started_line(condition: str) -> str:
    return f"teacher {condition}: started (read from the cache if it is there, else trained)"


def teachers_waiting_line(waiting: int, at_once: int) -> str:
    return f"teachers: {waiting} more wait for a core ({at_once} prepared at a time)"


def teacher_ready_line(condition: str, info: dict[str, Any], column: str, seconds: float) -> str:
    """A condition's teacher is ready (``info``: what ``teachers.json`` records of it): how it came (trained or
    read from the cache), the epoch kept, its validation metric there (``column``: the study objective's), and
    ``seconds`` since the teachers' preparation began."""
    epoch = info.get("selected_epoch")
    curve = info.get("curve") or []
    if info.get("trained"):
        how = f"trained {len(curve)} epochs, kept epoch {epoch}" if curve and epoch else "trained"
    elif info.get("cache_hit"):
        how = "read from the cache" + (f" (epoch {epoch} kept)" if epoch else "")
    else:
        how = "ready"
    value = (info.get("diagnostics") or {}).get(column)
    if value is None and epoch and len(curve) >= epoch:
        value = curve[epoch - 1].get(column)
    metric = f", {column} {_value(value)}" if _finite(value) else ""
    return f"teacher {condition}: {how}{metric}, after {duration(seconds)}"


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _value(value: Any) -> str:
    return f"{value:.4f}" if _finite(value) else "-"


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
