"""The report's panels on what the students and the teacher learned: per-class test accuracy, the flipped
training labels corrected or memorised, and teacher vs student accuracy.

Apart from :mod:`kdtune.report.panels` (the search's own panels: the objective against alpha and temperature,
learning curves, importances, progress) because these read the per-run diagnostics the trainer records
(per-class accuracy, correction and memorisation rates) and the teachers' diagnostics, not the search.
Each panel takes a :class:`~kdtune.report.view.View` and the figures' folder and returns a
:class:`~kdtune.report.figures.Figure`, a note saying why it is left out, or None.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from kdtune.analysis.scoring import CONFIDENCE
from kdtune.analysis.scoring import finite
from kdtune.report.data import Configuration
from kdtune.report.figures import ALPHA_LABEL
from kdtune.report.figures import Figure
from kdtune.report.figures import as_float
from kdtune.report.figures import mean_interval
from kdtune.report.figures import save_figure
from kdtune.report.figures import subplots
from kdtune.report.view import Series
from kdtune.report.view import View
from kdtune.report.view import titled


if TYPE_CHECKING:
    from matplotlib.axes import Axes


def per_class_panel(view: View, folder: Path) -> Figure | str | None:
    pairs: dict[Series, tuple[Configuration, Configuration]] = {}
    notes = []
    for series in view.series:
        best, base = series.data.best(series.condition), series.data.no_distillation(series.condition)
        if best is None or base is None:
            notes.append(f"{series.where}: no complete " + ("runs" if best is None else "alpha = 1 baseline"))
        else:
            pairs[series] = (best, base)
    if not pairs:
        return "No per-class panel: " + "; ".join(notes) + "." if notes else None
    import numpy as np

    cells = view.cells(keep=lambda s: s in pairs)
    fig, axes = subplots(len(cells), 1, (10, 3.2 * len(cells)))
    for axis, cell in zip(axes, cells):
        width = 0.8 / (2 * len(cell.series))
        classes = 0
        for j, series in enumerate(cell.series):
            best, base = pairs[series]
            bars = (("baseline", base, "no distillation (alpha = 1 baseline)"),
                    ("best", best, f"best on validation ({best.describe()})"))
            for r, (role, config, text) in enumerate(bars):
                values = _per_class_mean(config)
                classes = max(classes, len(values))
                offset = (2 * j + r - (2 * len(cell.series) - 1) / 2) * width
                axis.bar(np.arange(len(values)) + offset, values, width=width,
                         label=view.bar_label(series, role, text), **view.bar_style(series, role))
        axis.set_xticks(np.arange(classes))
        axis.set_xlabel("class")
        axis.set_ylabel("test accuracy per class")
        axis.set_ylim(0.0, 1.15)
        axis.set_title(cell.title)
    view.legends(fig, axes, on=axes, styles=(("no distillation (alpha = 1 baseline)", "baseline"),
                                             ("best on validation", "best")),
                 loc="upper center", ncol=2, frameon=False)
    figure = save_figure(fig, folder, "per_class", "Per-class test accuracy: best configuration vs no distillation",
                   "Mean over the complete runs (each at its best validation epoch) of the configuration with the "
                   "best mean validation objective, next to the alpha = 1 baseline.")
    figure.notes = notes
    return figure


def _per_class_mean(config: Configuration) -> list[float]:
    lists = [r.row.get("test_per_class_accuracy") or [] for r in config.complete()]
    lists = [values for values in lists if values]
    if not lists:
        return []
    return [sum(v[k] for v in lists) / len(lists) for k in range(min(len(v) for v in lists))]


def _has_flips(series: Series) -> bool:
    return any(r.condition == series.condition and finite(r.row.get("correction_rate")) for r in series.data.runs)


def flips_panel(view: View, folder: Path) -> Figure | str | None:
    cells = view.cells(split=False, keep=_has_flips)
    if not cells:
        return f"No correction/memorisation panel: {view.nowhere('no condition has flipped training labels')}."
    fig, axes = subplots(len(cells), 2, (12, 4.8 * len(cells)))
    for row, cell in enumerate(cells):
        pair = axes[2 * row: 2 * row + 2]
        for series in cell.series:
            teacher = (series.data.teachers.get(series.condition) or {}).get("diagnostics") or {}
            for axis, key in zip(pair, ("correction_rate", "memorisation_rate")):
                _rate_series(axis, series, key)
                if finite(teacher.get(key)):
                    axis.axhline(teacher[key], color=series.color, linestyle=":", linewidth=1,
                                 label=f"teacher, {series.label}")
        for axis, what in zip(pair, ("correction", "memorisation")):
            axis.set_xlabel(ALPHA_LABEL)
            axis.set_ylabel(f"{what} rate of flipped training labels")
            axis.set_title(titled(f"Flipped-label {what} vs alpha", cell))
    view.legends(fig, axes, on=axes[1::2])
    figure = save_figure(fig, folder, "flips", "Flipped-label correction and memorisation vs alpha",
                   "Share of the flipped training samples the student predicts as their clean label (correction) "
                   "or as their noisy label (memorisation), at each run's best validation epoch; squares are "
                   "configuration means, lines join those of the same temperature; dotted lines are the teacher's "
                   "rates.")
    if view.compare:
        figure.notes = view.skipped(lambda d: any(_has_flips(s) for s in view.series if s.data is d),
                                    "no condition has flipped training labels")
    return figure


def _rate_series(ax: Axes, series: Series, key: str) -> None:
    runs = [r for r in series.data.runs if r.condition == series.condition and finite(r.row.get(key))]
    ax.scatter([r.alpha for r in runs if r.state == "COMPLETE"], [r.row[key] for r in runs if r.state == "COMPLETE"], s=12,
               color=series.color, alpha=0.6)
    means: dict[float | None, list[tuple[float, float]]] = {}
    for config in series.data.configurations(series.condition):
        values = [r.row[key] for r in config.complete() if finite(r.row.get(key))]
        if values:
            means.setdefault(config.temperature, []).append((config.alpha, sum(values) / len(values)))
    label: str | None = series.label
    for points in means.values():  # lines join configurations of one temperature only
        ax.plot(*zip(*points), color=series.color, marker="s", markersize=3, label=label,
                linewidth=1 if len(points) > 1 else 0)
        label = None


def teacher_vs_student_panel(view: View, folder: Path) -> Figure | str | None:
    import numpy as np

    objective = view.studies[0].objective
    bars: dict[Series, list[tuple[float, float | None]]] = {}
    for series in view.series:
        diagnostics = (series.data.teachers.get(series.condition) or {}).get("diagnostics") or {}
        teacher = diagnostics.get(objective.test_column)
        base, best = series.data.no_distillation(series.condition), series.data.best(series.condition)
        bars[series] = [(as_float(teacher), None), _mean_test(base), _mean_test(best)]
    if not any(finite(v) for b in bars.values() for v, _ in b[:2]):
        return "No teacher vs student panel: no teacher diagnostics and no complete baseline yet."
    cells = view.cells()
    roles = (("teacher", "teacher"), ("baseline", "student, no distillation (alpha = 1)"),
             ("best", "student, best on validation"))
    k = max(len(c.series) for c in cells)
    fig, axes = subplots(1, 1, (max(6.0, 2.2 * len(cells) * k), 4.8))
    labelled: set[str] = set()
    for i, cell in enumerate(cells):
        width = 0.8 / (3 * len(cell.series))
        for j, series in enumerate(cell.series):
            for r, ((role, text), (value, error)) in enumerate(zip(roles, bars[series])):
                label = view.bar_label(series, role, text)
                if label in labelled:
                    label = "_nolegend_"  # one legend entry per role (or study)
                labelled.add(label)
                x = i + (3 * j + r - (3 * len(cell.series) - 1) / 2) * width
                axes[0].bar(x, value, width=width, yerr=error, capsize=3, label=label,
                            **view.bar_style(series, role))
                if finite(value):
                    axes[0].annotate(f"{value:.3f}", (x, value + (error or 0.0)), textcoords="offset points",
                                     xytext=(0, 2),
                                     ha="center", fontsize=7)
    # Bars start at zero (their length is the value); the printed values show differences a zero-based axis
    # makes small.
    if objective.mode == "max":  # an accuracy: the axis spans its whole range
        axes[0].set_ylim(0.0, 1.15)
    axes[0].set_xticks(np.arange(len(cells)), [c.title for c in cells], rotation=15)
    axes[0].set_xlabel("condition")
    axes[0].set_ylabel(objective.test_label)
    axes[0].set_title("Teacher vs student per condition")
    view.legends(fig, axes, on=axes, styles=tuple((text, role) for role, text in roles),
                 loc="upper center", ncol=3, frameon=False)
    figure = save_figure(fig, folder, "teacher_vs_student", f"Teacher vs student {objective.test_label}",
                   f"The teacher's {objective.test_label} at its selected checkpoint (teachers.json), the student trained "
                   "alone (alpha = 1 baseline) and the best configuration on validation; students are means over "
                   f"complete runs with {CONFIDENCE:.0%} t-intervals. The axis starts at zero; each bar is labelled "
                   "with its value.")
    if view.compare:
        figure.notes = view.skipped(lambda d: any(finite(v) for s in view.series if s.data is d
                                                  for v, _ in bars[s][:2]),
                                    "no teacher diagnostics and no complete baseline yet")
    return figure


def _mean_test(config: Configuration | None) -> tuple[float, float]:
    tests = [r.test for r in config.complete() if finite(r.test)] if config else []
    return mean_interval(tests) if tests else (math.nan, 0.0)
