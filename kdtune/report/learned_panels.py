"""The report's panels on what the students and the teacher learned: per-class test accuracy, the flipped
training labels corrected or memorised, and teacher vs student accuracy.

Apart from :mod:`kdtune.report.panels` (the search's own panels: the objective against alpha and temperature,
learning curves, importances, progress) because these read the per-run diagnostics the trainer records
(per-class accuracy, correction and memorisation rates) and the teachers' diagnostics, not the search.
Each panel takes a :class:`~kdtune.report.view.View` and the figures' folder and returns a
:class:`~kdtune.report.figures.Figure`, a note saying why it is left out, or None. The per-class and
teacher-vs-student panels compare the runs the verdict's gain is measured on (the confirmation runs of a
confirmed condition), never a search-only number beside a confirmed one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from kdtune.analysis.scoring import CONFIDENCE
from kdtune.analysis.scoring import finite
from kdtune.report.data import Configuration
from kdtune.report.figures import ALPHA_LABEL
from kdtune.report.figures import ALPHA_MARKERS
from kdtune.report.figures import Figure
from kdtune.report.figures import as_float
from kdtune.report.figures import marker_legend
from kdtune.report.figures import mean_interval
from kdtune.report.figures import save_figure
from kdtune.report.figures import subplots
from kdtune.report.view import Series
from kdtune.report.view import View
from kdtune.report.view import titled


if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from kdtune.tasks import Objective


def per_class_panel(view: View, folder: Path) -> Figure | str | None:
    """Per class, the paired difference in test accuracy between the configuration the verdict judged and
    alpha = 1, on the runs the gain is measured on (the confirmation runs when confirmed): differences, so that
    a one-point change is not lost on an axis from 0 to 1."""
    import numpy as np

    pairs: dict[Series, tuple[list[tuple[float, float]], str, str]] = {}
    notes = []
    for series in view.series:
        compared = series.data.compared(series.condition)
        if compared is None:
            notes.append(f"{series.where}: no gain measured yet (no paired distilled and alpha = 1 runs)")
            continue
        distilled, alone, source = compared
        differences = _per_class_differences(distilled, alone)
        if not differences:
            notes.append(f"{series.where}: the runs record no per-class accuracy")
            continue
        pairs[series] = (differences, distilled.describe(), source)
    if not pairs:
        if notes and all("per-class" in n for n in notes):
            return f"No per-class panel: {view.nowhere('the runs record no per-class accuracy')}."
        return "No per-class panel: " + "; ".join(notes) + "." if notes else None
    cells = view.cells(keep=lambda s: s in pairs)
    fig, axes = subplots(len(cells), 1, (10, 3.4 * len(cells)))
    for axis, cell in zip(axes, cells):
        width = 0.8 / len(cell.series)
        classes = 0
        for j, series in enumerate(cell.series):
            differences, config, source = pairs[series]
            classes = max(classes, len(differences))
            means = [100 * m for m, _ in differences]
            halves = [100 * h for _, h in differences]
            where = {"confirm": "fresh paired seeds", "transfer": "full-fidelity seeds, optimistic"}.get(
                source, "search seeds, optimistic")
            label = series.label if view.compare else f"{config} minus alpha = 1 ({where})"
            axis.bar(np.arange(len(means)) + (j - (len(cell.series) - 1) / 2) * width, means, width=width,
                     yerr=halves, capsize=2, color=series.color, alpha=0.85, label=label)
        axis.axhline(0.0, color="black", linewidth=1)
        axis.set_xticks(np.arange(classes))
        axis.set_xlabel("class")
        axis.set_ylabel("test accuracy difference (points)")
        axis.set_title(cell.title)
    view.legends(fig, axes, on=axes, loc="best")
    figure = save_figure(fig, folder, "per_class",
                         "Per-class test accuracy: the judged configuration minus no distillation",
                         "Per class, the mean over seeds of the paired difference in test accuracy (points) between "
                         "the distilled configuration the verdict judged and alpha = 1 (no distillation), with "
                         f"{CONFIDENCE:.0%} t-intervals over seeds (per class, not corrected for the number of "
                         "classes): on the confirmation runs (fresh seeds, the runs "
                         "of the gain) when the condition was confirmed, else on the search runs of the search's "
                         "best distilled configuration (optimistic). Above 0: distillation is better on that class.")
    figure.notes = notes
    return figure


def _per_class_differences(distilled: Configuration, alone: Configuration) -> list[tuple[float, float]]:
    """Per class, the mean paired difference (distilled - alone) over their common seeds and the half-width of
    its t-interval."""
    def by_seed(config: Configuration) -> dict[int, list[float]]:
        return {r.seed: list(r.row.get("test_per_class_accuracy") or []) for r in config.complete()
                if r.row.get("test_per_class_accuracy")}

    a, b = by_seed(distilled), by_seed(alone)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return []
    classes = min(min(len(a[s]), len(b[s])) for s in seeds)
    return [mean_interval([a[s][k] - b[s][k] for s in seeds]) for k in range(classes)]


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
    for axis in axes[1::2]:
        marker_legend(axis, (("s", True, "search configuration: mean"), *ALPHA_MARKERS[1:3]))
    figure = save_figure(fig, folder, "flips", "Flipped-label correction and memorisation vs alpha",
                   "Share of the flipped training samples the student predicts as their clean label (correction) "
                   "or as their noisy label (memorisation), at each run's best validation epoch, over the search "
                   "runs; small squares are search configuration means, lines join those of one temperature; the "
                   "baselines alpha = 1 (large square) and alpha = 0 (triangle) are points of their own; dotted "
                   "lines are the teacher's rates.")
    if view.compare:
        figure.notes = view.skipped(lambda d: any(_has_flips(s) for s in view.series if s.data is d),
                                    "no condition has flipped training labels")
    return figure


def _rate_series(ax: Axes, series: Series, key: str) -> None:
    """Search runs as points, search configuration means joined only within one temperature, the baselines
    (alpha = 1 square, alpha = 0 triangle) as points of their own."""
    runs = [r for r in series.data.search_runs(series.condition) if finite(r.row.get(key))]
    ax.scatter([r.alpha for r in runs if r.state == "COMPLETE"], [r.row[key] for r in runs if r.state == "COMPLETE"], s=12,
               color=series.color, alpha=0.6)
    means: dict[float | None, list[tuple[float, float]]] = {}
    label: str | None = series.label
    for config in series.data.configurations(series.condition):
        values = [r.row[key] for r in config.complete() if finite(r.row.get(key))]
        if not values:
            continue
        if any(r.phase == "baseline" for r in config.runs) and config.alpha in (0.0, 1.0):
            ax.plot([config.alpha], [sum(values) / len(values)], marker="s" if config.alpha == 1.0 else "^",
                    markersize=7, markerfacecolor="white", color=series.color, linewidth=0, label=label)
            label = None
        else:
            means.setdefault(config.temperature, []).append((config.alpha, sum(values) / len(values)))
    for points in means.values():  # lines join search configurations of one temperature only
        ax.plot(*zip(*points), color=series.color, marker="s", markersize=3, label=label,
                linewidth=1 if len(points) > 1 else 0)
        label = None


def teacher_vs_student_panel(view: View, folder: Path) -> Figure | str | None:
    """Per condition: the teacher, the student alone (alpha = 1) and the distilled configuration the verdict
    judged, on the runs the gain is measured on (fresh seeds when confirmed), as points with intervals on an
    axis fitted to them."""
    import numpy as np

    objective = view.studies[0].objective
    roles = (("teacher", "o", "teacher (its selected checkpoint)"), ("baseline", "s", "student alone (alpha = 1)"),
             ("best", "D", "student, the judged distilled configuration"))
    points: dict[Series, list[tuple[float, float | None]]] = {}
    sources: set[str] = set()
    for series in view.series:
        diagnostics = (series.data.teachers.get(series.condition) or {}).get("diagnostics") or {}
        teacher = (as_float(diagnostics.get(objective.test_column)), None)
        compared = series.data.compared(series.condition)
        if compared is None:
            points[series] = [teacher, _mean_test(series.data.no_distillation(series.condition)), (math.nan, None)]
            continue
        distilled, base, source = compared
        sources.add(source)
        points[series] = [teacher, _mean_test(base), _mean_test(distilled)]
    if not any(finite(v) for p in points.values() for v, _ in p[:2]):
        return "No teacher vs student panel: no teacher diagnostics and no complete baseline yet."
    cells = view.cells()
    k = max(len(c.series) for c in cells)
    fig, axes = subplots(1, 1, (max(6.0, 2.4 * len(cells) * k), 4.8))
    ax = axes[0]
    labelled: set[str] = set()
    for i, cell in enumerate(cells):
        width = 0.8 / (3 * len(cell.series))
        for j, series in enumerate(cell.series):
            for r, ((role, marker, text), (value, half)) in enumerate(zip(roles, points[series])):
                if not finite(value):
                    continue
                label = series.label if view.compare else text
                label = "_nolegend_" if label in labelled else label  # one legend entry per role (or study)
                labelled.add(label)
                x = i + (3 * j + r - (3 * len(cell.series) - 1) / 2) * width
                color = series.color if view.compare else _ROLE_COLORS[role]
                ax.errorbar([x], [value], yerr=None if half is None else [half], fmt=marker, color=color,
                            markersize=8, capsize=4, elinewidth=1.5, label=label)
                ax.annotate(_value_words(value, objective), (x, value), textcoords="offset points", xytext=(7, -3),
                            fontsize=7)
    ax.set_xticks(np.arange(len(cells)), [c.title for c in cells], rotation=15)
    ax.set_xlim(-0.6, len(cells) - 0.4)
    ax.set_xlabel("condition")
    better = "higher" if objective.mode == "max" else "lower"
    ax.set_ylabel(f"{objective.test_label} ({better} is better)")
    ax.set_title("Teacher vs student per condition")
    view.legends(fig, axes, on=axes, loc="best")
    if view.compare:  # the colours are the studies: the shapes say which model
        marker_legend(ax, tuple((marker, True, text) for _, marker, text in roles))
    where = {"confirm": "the confirmation runs (fresh seeds: the runs of the verdict's gain)",
             "search": "the search runs (no confirmation: optimistic for the distilled configuration)",
             "transfer": "the transfer check's full-fidelity runs (no confirmation: optimistic for the distilled "
                         "configuration)"}
    runs = " or ".join(where[s] for s in sorted(sources)) or "the search runs"
    figure = save_figure(fig, folder, "teacher_vs_student", f"Teacher vs student {objective.test_label}",
                         f"The teacher's {objective.test_label} at its selected checkpoint (teachers.json), the student "
                         "trained alone (alpha = 1) and the distilled configuration the verdict judged, the students "
                         f"as means with {CONFIDENCE:.0%} t-intervals over {runs}: the same runs as the verdict's "
                         "numbers. The axis spans the values shown, not zero.")
    if view.compare:
        figure.notes = view.skipped(lambda d: any(finite(v) for s in view.series if s.data is d
                                                  for v, _ in points[s][:2]),
                                    "no teacher diagnostics and no complete baseline yet")
    return figure


_ROLE_COLORS = {"teacher": "#dd8452", "baseline": "#777777", "best": "#4c72b0"}


def _value_words(value: float, objective: Objective) -> str:
    return f"{100 * value:.1f}%" if objective.margin_scale == 0.01 else f"{value:.4g}"


def _mean_test(config: Configuration | None) -> tuple[float, float | None]:
    tests = [r.test for r in config.complete() if finite(r.test)] if config else []
    if not tests:
        return math.nan, None
    mean, half = mean_interval(tests)
    return mean, half if len(tests) > 1 else None
