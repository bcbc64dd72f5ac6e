"""The recommendation given out: written to its JSON, marked in the study's Optuna studies, and printed as a table
with each condition's verdict. ``kdtune recommend`` and the end of ``kdtune run`` and ``kdtune resume`` give it
the same way, through these functions.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def recommend_and_record(study_dirs: Sequence[str | os.PathLike[str]], *, margin: float | None = None,
                         out: str | os.PathLike[str] | None = None) -> tuple[dict[str, Any], Path]:
    """The recommendation of ``study_dirs`` (pooled per condition), written to ``out`` (default:
    ``recommendation.json`` in the first folder) and, for one study, marked in its Optuna studies for Optuna's
    dashboard. Returns the recommendation and where it was written."""
    from kdtune.analysis.recommendation import default_output
    from kdtune.analysis.recommendation import recommend
    from kdtune.analysis.recommendation import write_recommendation
    from kdtune.records.dashboard import mark_recommendation

    report = recommend(study_dirs, margin=margin)
    path = write_recommendation(report, out or default_output(study_dirs))
    if len(study_dirs) == 1:
        mark_recommendation(Path(study_dirs[0]), report)
    return report, path


def finish_run(study_dir: Path) -> None:
    """The end of a finished ``kdtune run`` or ``kdtune resume``: the answer, as ``kdtune recommend`` gives it
    (written, marked and printed), then the commands that show more. (An interrupted study never gets here: the
    driver raises :class:`kdtune.errors.Interrupted`.)"""
    print_recommendation(*recommend_and_record([study_dir]))
    print(f"study folder: {study_dir}")
    print(f"  kdtune report {study_dir}      # HTML report with plots")
    print(f"  kdtune status {study_dir}      # trials per condition")


def print_recommendation(report: dict[str, Any], path: Path | str) -> None:
    """The table and per-condition verdicts, and where the JSON was written."""
    from rich.markup import escape
    from rich.measure import Measurement

    from kdtune.tables import console as make_console
    from kdtune.tables import fold

    console = make_console()
    table = _table(report, compact=False)
    natural = Measurement.get(console, console.options.update_width(10_000), table).maximum
    if natural > console.width:  # a log (120 wide) or a narrow terminal
        table = _table(report, compact=True)
    table = fold(table)  # a cell too wide for a terminal or a log wraps, never cut
    names = [c["key"] for c in report["conditions"]]
    table.columns[0].no_wrap, table.columns[0].min_width = True, max(len(n) for n in ["condition", *names])
    console.print(table)
    for condition in report["conditions"]:
        console.print(f"[bold]{escape(condition['key'])}[/bold] ({condition['verdict']['kind']}): "
                      f"{escape(condition['verdict']['text'])}")
        if condition["recommended"] is not None:
            console.print(f"  {escape(condition['recommended']['why'])}")
        for note in condition["notes"]:
            console.print(f"  note: {escape(note)}")
    for note in report["notes"]:
        console.print(f"note: {escape(note)}")
    console.print(f"written to {escape(str(path))}")


def _table(report: dict[str, Any], *, compact: bool) -> Any:
    """The answer per condition. ``compact``: where the whole table would not fit (a log is 120 characters wide),
    the test results' columns are left to each condition's lines under the table, and columns are set apart by
    spaces instead of rules."""
    from rich import box
    from rich.table import Table

    from kdtune.tasks import TASKS

    objective = next(o for task in TASKS.values() for o in task.objectives if o.name == report["objective"])
    percent = objective.margin_scale == 0.01  # accuracies print as percentages, gains in points
    closed_form = any(c.get("closed_form") for c in report["conditions"])
    checked = any(c.get("transfer") for c in report["conditions"])  # a study that searched cheap
    test = objective.test_label
    results = ("the test results are in each condition's lines below" if compact else
               f"{test}: the distilled configuration the gain is measured on, on its confirmation seeds (its search "
               "seeds where seeds says search), and alpha = 1 on the same seeds (95% t-intervals)")
    table = Table(
        title="recommendation per condition (alpha = weight on the true labels; 1 = no distillation)",
        caption="alpha, T: the recommended configuration (the line under each verdict says which and why), with the "
        "alphas and T that may be best (95%); near-opt alpha: the alphas within the margin of the best (on the "
        f"fitted curve; without a fit, among the search configurations); {results}; gain: the measured "
        f"configuration - no distillation, paired by seed{', in points' if percent else ''}, repeated CI "
        "(Bonferroni over conditions) when confirmed"
        + _transfer_caption(checked, compact),
        box=None if compact else box.HEAVY_HEAD,
        pad_edge=not compact,
    )
    columns = COMPACT_COLUMNS if compact else COLUMNS + (("transfer",) if checked else ())
    for header in columns:
        shown = {"test": f"{test}: distilled", "teacher": "α*" if closed_form else "teacher"}.get(header, header)
        table.add_column(shown, justify="left" if header in ("condition", "verdict", "transfer") else "right",
                         no_wrap=compact and header == "gain")
    for c in report["conditions"]:
        cells = dict(zip((*COLUMNS, "transfer"), _row(c, objective.test_column, percent)))
        table.add_row(*(cells[header] for header in columns))
    return table


def _transfer_caption(checked: bool, compact: bool) -> str:
    """What the transfer column says, in a study that searched cheap; a compact table leaves the column out (a log's
    line would wrap) and says where the check is instead."""
    if not checked:
        return ""
    where = ("is in each condition's verdict below" if compact else
             "its column, with its numbers at the end of each condition's verdict below")
    return f"; the transfer check (whether the cheap search's answer holds at full fidelity) {where}"


COLUMNS = ("condition", "alpha", "T", "near-opt alpha", "test", "alpha = 1", "teacher", "gain", "seeds", "verdict")
COMPACT_COLUMNS = ("condition", "verdict", "gain", "seeds", "alpha", "T", "near-opt alpha")


def _row(c: dict[str, Any], test_column: str, percent: bool) -> list[str]:
    rec = c["recommended"] or {}
    value = _pct if percent else _plain
    gain = c["gain"] or {}
    closed_form = c.get("closed_form")
    last = _num(closed_form.get("alpha_star")) if closed_form else value((c["teacher"] or {}).get(test_column))
    near = rec["located"]["near_optimal"] if rec.get("located") else rec.get("near_optimal")
    shown = c["confirmed"] or _searched(c["best_observed"], gain.get("params"))
    return [
        c["key"],
        _interval(rec.get("alpha"), _num),
        _interval(rec.get("temperature"), _num),
        "-" if near is None else f"{_num(near['alpha_low'])}-{_num(near['alpha_high'])}",
        _estimate(shown.get("test"), value),
        _estimate((c["no_distillation"] or {}).get("test"), value),
        last,
        _gain(gain, percent),
        str(gain.get("n_pairs", "-")) + ("" if gain.get("source") != "search" else " (search)"),
        c["verdict"]["kind"],
        (c.get("transfer") or {}).get("verdict", "-"),
    ]


def _searched(best: dict[str, Any] | None, measured: dict[str, Any] | None) -> dict[str, Any]:
    """Without confirmation: the best search configuration's runs, where it is the one the gain is measured on
    (the best distilled one; it is not when alpha = 1 won the search)."""
    return best if best is not None and best["params"] == measured else {}


def _gain(gain: dict[str, Any], percent: bool) -> str:
    """Mean and 95% CI: in points of accuracy, or in the test metric's own units (a reduction for a loss)."""
    if gain.get("mean") is None:
        return "-"
    if gain["low"] is None:
        return _signed(gain["mean"], percent)
    low, high = _signed(gain["low"], percent), _signed(gain["high"], percent)
    return f"{_signed(gain['mean'], percent)} ({low} to {high})"


def _interval(block: dict[str, Any] | None, fmt: Callable[[float | None], str]) -> str:
    if block is None:
        return "-"
    if block["low"] is None:
        return fmt(block["value"])
    return f"{fmt(block['value'])} ({fmt(block['low'])}-{fmt(block['high'])})"


def _estimate(block: dict[str, Any] | None, fmt: Callable[[float | None], str]) -> str:
    if block is None or block["mean"] is None:
        return "-"
    if block["low"] is None:
        return fmt(block["mean"])
    return f"{fmt(block['mean'])} ({fmt(block['low'])}-{fmt(block['high'])})"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _plain(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _signed(value: float, percent: bool) -> str:
    return f"{100 * value:+.1f}" if percent else f"{value:+.4f}"
