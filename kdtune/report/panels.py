"""The report's figures, one function per panel: each takes a :class:`~kdtune.report.view.View` and the figures'
folder and returns a :class:`~kdtune.report.figures.Figure`, a note saying why it is left out, or None.

This module holds the page order (:func:`panels_for`) and the search's panels; the panels on what the models
learned (per class, flipped labels, teacher vs student) are in :mod:`kdtune.report.learned_panels`."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from kdtune.analysis.scoring import CONFIDENCE
from kdtune.analysis.scoring import finite
from kdtune.errors import MAX_NOTE
from kdtune.errors import one_line
from kdtune.report.data import StudyData
from kdtune.report.figures import ALPHA_LABEL
from kdtune.report.figures import PARAM_LABELS
from kdtune.report.figures import Figure
from kdtune.report.figures import figure_grid
from kdtune.report.figures import mean_interval
from kdtune.report.figures import save_figure
from kdtune.report.figures import subplots
from kdtune.report.learned_panels import flips_panel
from kdtune.report.learned_panels import per_class_panel
from kdtune.report.learned_panels import teacher_vs_student_panel
from kdtune.report.view import Series
from kdtune.report.view import View
from kdtune.report.view import titled


if TYPE_CHECKING:
    from matplotlib.axes import Axes


HEATMAP_BINS = 8
#: Complete Optuna trials a condition needs before the report shows parameter importances. A judgement, not a
#: calibration: quickstart's ~6 complete trials per condition are below it, the MNIST specs' 18-26 above.
MIN_IMPORTANCE_TRIALS = 12


Panel = Callable[[View, Path], "Figure | str | None"]


def panels_for(view: View) -> list[Panel]:
    """The report's panels in page order: the study's task's own (:data:`TASK_PANELS`), else those of a task
    trained by epochs (each reads the objective's column, direction and words)."""
    return TASK_PANELS.get(view.task.name, [_accuracy_vs_alpha, _alpha_temperature, _learning_curves, _importances,
                                            per_class_panel, flips_panel, teacher_vs_student_panel, _search_progress])


def _accuracy_vs_alpha(view: View, folder: Path) -> Figure | str | None:
    if not view.any_runs():
        return None
    cells = view.cells(split=False)
    test = view.studies[0].objective.test_label
    fig, axes = figure_grid(len(cells), (8, 5), (6.4, 4.4))
    for axis, cell in zip(axes, cells):
        for series in cell.series:
            _alpha_series(axis, series, "test")
        axis.set_xlabel(ALPHA_LABEL)
        axis.set_ylabel(f"{test} (at best validation epoch)")
        axis.set_title(cell.title or f"{test.capitalize()} vs alpha (lines join one temperature)")
    view.legends(fig, axes, on=axes, title="condition")
    better = "higher" if view.studies[0].objective.mode == "max" else "lower"
    return save_figure(fig, folder, "accuracy_vs_alpha", f"{test.capitalize()} vs alpha ({better} is better)",
                 "Each point is a run (one seed) at its best validation epoch; a square with a bar is the mean of a "
                 f"configuration's complete runs with a {CONFIDENCE:.0%} t-interval over seeds. Lines join only "
                 "configurations of the same temperature T (labelled), never points of different T. "
                 "Hollow points: running or pruned trials (not in the means).")


def _mse_vs_alpha(view: View, folder: Path) -> Figure | str | None:
    if not view.any_runs():
        return None
    cells = view.cells(split=False)
    fig, axes = subplots(len(cells), 2, (12, 4.8 * len(cells)))
    for row, cell in enumerate(cells):
        pair = axes[2 * row: 2 * row + 2]
        for series in cell.series:
            _alpha_series(pair[0], series, "objective")
            _alpha_series(pair[1], series, "test")
            star = ((series.data.teachers.get(series.condition) or {}).get("linear") or {}).get("alpha_star")
            if finite(star):
                for axis in pair:
                    axis.axvline(star, color=series.color, linestyle="--", linewidth=1,
                                 label=f"α* = {star:.3g} (closed form), {series.label}")
        pair[0].set_ylabel("validation MSE (noisy targets; objective)")
        pair[1].set_ylabel("test excess MSE (vs noise-free targets)")
        for axis, title in zip(pair, ("Validation MSE vs alpha", "Test excess MSE vs alpha")):
            axis.set_xlabel(ALPHA_LABEL)
            axis.set_title(titled(title, cell))
    view.legends(fig, axes, on=axes[1::2], title="condition")
    return save_figure(fig, folder, "mse_vs_alpha", "Linear task: MSE vs alpha",
                 "Each point is a run (one seed); lines join configuration means with a "
                 f"{CONFIDENCE:.0%} t-interval band. Dashed: the closed-form optimum α* = B / (B + V) of the "
                 "same draws, where teachers.json records it.")


def _alpha_series(ax: Axes, series: Series, attr: str) -> None:
    """Runs as points (hollow when not in the means), configuration means as a line with a t-interval band."""
    color = series.color
    runs = [r for r in series.data.runs if r.condition == series.condition and finite(getattr(r, attr))]
    done = [r for r in runs if r.state == "COMPLETE"]
    other = [r for r in runs if not r.state == "COMPLETE"]
    ax.scatter([r.alpha for r in done], [getattr(r, attr) for r in done], s=14, color=color, alpha=0.6)
    if other:
        ax.scatter([r.alpha for r in other], [getattr(r, attr) for r in other], s=18, facecolors="none",
                   edgecolors=color, alpha=0.8)
    by_temperature: dict[float | None, list[tuple[float, float, float]]] = {}
    for config in series.data.configurations(series.condition):
        values = [getattr(r, attr) for r in config.complete() if finite(getattr(r, attr))]
        if values:
            mean, half = mean_interval(values)
            by_temperature.setdefault(config.temperature, []).append((config.alpha, mean, half))
    label: str | None = series.label
    for temperature, points in by_temperature.items():
        x, means, halves = (list(v) for v in zip(*points))
        ax.errorbar(x, means, yerr=halves, color=color, marker="s", markersize=4, capsize=2, linewidth=0,
                    elinewidth=1, label=label)
        label = None
        if len(points) > 1:  # the same T: a line means something (the T-free linear task has one group)
            ax.plot(x, means, color=color, linewidth=1.2, alpha=0.8)
            if temperature is not None:
                ax.annotate(f"T={temperature:.3g}", (x[-1], means[-1]), textcoords="offset points", xytext=(4, 4),
                            fontsize=7, color=color)


def _searches_temperature(data: StudyData) -> bool:
    return "temperature" in data.spec.search and "alpha" in data.spec.search


def _alpha_temperature(view: View, folder: Path) -> Figure | str | None:
    if not any(_searches_temperature(d) for d in view.studies):
        return f"No alpha x temperature panel: {view.nowhere('temperature is not searched')}."
    if not any(d.runs for d in view.studies if _searches_temperature(d)):
        return None
    import numpy as np

    tiles, cols = view.tiles(lambda s: _searches_temperature(s.data))
    rows = math.ceil(len(tiles) / cols)
    fig, axes = subplots(rows, cols, (5.2 * cols, 4.4 * rows))
    drawn = []
    for axis, series in zip(axes, tiles):
        if series is None:
            axis.set_visible(False)
            continue
        drawn.append(axis)
        # One colour scale per condition: conditions differ by more (noise costs accuracy) than the
        # configurations inside one, which a shared scale would paint in one colour.
        values = [c.mean() for c in series.data.configurations(series.condition) if finite(c.mean())]
        vmin, vmax = (min(values), max(values)) if values else (0.0, 1.0)
        if vmin == vmax:
            vmin, vmax = vmin - 1e-6, vmax + 1e-6
        a_edges, t_edges, log = _heatmap_edges(series.data)
        # (configuration, its temperature): the ones with a temperature, which is what places them
        configs = [(c, c.temperature) for c in series.data.configurations(series.condition) if c.temperature is not None]
        sums = np.zeros((HEATMAP_BINS, HEATMAP_BINS))
        counts = np.zeros((HEATMAP_BINS, HEATMAP_BINS))
        for c, temperature in configs:
            if finite(c.mean()):
                i = min(max(int(np.searchsorted(t_edges, temperature, side="right")) - 1, 0), HEATMAP_BINS - 1)
                j = min(max(int(np.searchsorted(a_edges, c.alpha, side="right")) - 1, 0), HEATMAP_BINS - 1)
                sums[i, j] += c.mean()
                counts[i, j] += 1
        grid = np.ma.masked_where(counts == 0, sums / np.maximum(counts, 1))
        mesh = axis.pcolormesh(a_edges, t_edges, grid, cmap="viridis", vmin=vmin, vmax=vmax, shading="flat")
        edge = series.color if view.compare else "black"
        scored = [(c, t) for c, t in configs if finite(c.mean())]
        pending = [(c, t) for c, t in configs if not finite(c.mean())]
        axis.scatter([c.alpha for c, _ in scored], [t for _, t in scored], c=[c.mean() for c, _ in scored],
                     cmap="viridis", vmin=vmin, vmax=vmax, edgecolors=edge, s=30, zorder=3, clip_on=False,
                     label=series.label)
        if pending:
            axis.scatter([c.alpha for c, _ in pending], [t for _, t in pending], facecolors="none",
                         edgecolors=edge, s=30, zorder=3, clip_on=False)
        if log:
            axis.set_yscale("log")
        axis.set_xlabel(ALPHA_LABEL)
        axis.set_ylabel("temperature T")
        if view.compare:
            axis.set_title(f"{series.label}: {series.match}", color=series.color)
        else:
            axis.set_title(series.condition)
        fig.colorbar(mesh, ax=axis).set_label(view.objective_label)
    for axis in axes[len(tiles):]:
        axis.set_visible(False)
    view.legends(fig, drawn, on=[])
    figure = save_figure(fig, folder, "alpha_temperature", "Objective over alpha and temperature",
                   f"The mean {view.objective_label} of each configuration's complete runs, averaged within "
                   f"{HEATMAP_BINS}x{HEATMAP_BINS} bins of the searched ranges; dots are the configurations "
                   "(hollow: no complete run yet). Each condition has its own colour scale: compare colours "
                   "within a panel, values across panels.")
    figure.notes = view.skipped(_searches_temperature, "temperature is not searched") if view.compare else []
    return figure


def _heatmap_edges(data: StudyData) -> tuple[Any, Any, bool]:
    import numpy as np

    t_spec, a_spec = data.spec.search["temperature"], data.spec.search["alpha"]
    a_edges = np.linspace(float(a_spec.low or 0.0), float(a_spec.high or 1.0), HEATMAP_BINS + 1)
    t_low, t_high = float(t_spec.low or 1.0), float(t_spec.high or 20.0)
    t_edges = (np.geomspace(t_low, t_high, HEATMAP_BINS + 1) if t_spec.log
               else np.linspace(t_low, t_high, HEATMAP_BINS + 1))
    return a_edges, t_edges, bool(t_spec.log)


def _learning_curves(view: View, folder: Path) -> Figure | str | None:
    """Validation objective per epoch of every trial, with where ASHA stopped the pruned ones."""
    from matplotlib.ticker import MaxNLocator

    tiles = [s for s in view.series if any(c[0] == s.condition for c in s.data.curves.values())]
    if not tiles:
        return None
    fig, axes = figure_grid(len(tiles), (8, 4.8), (6.4, 4.4))
    for axis, series in zip(axes, tiles):
        spec = series.data.spec
        label = series.label  # on the study's first line: a comparison's figure legend names each study once
        for trial_id, (condition, state, phase, points) in series.data.curves.items():
            if condition != series.condition:
                continue
            epochs, values = zip(*points)
            style = {"COMPLETE": "-", "RUNNING": "--"}.get(state, ":")
            axis.plot(epochs, values, style, color=series.color if state != "PRUNED" else "grey",
                      linewidth=1.4 if phase in ("baseline", "confirm") else 0.8, alpha=0.8,
                      label=label if state != "PRUNED" else "_nolegend_")
            label = "_nolegend_" if state != "PRUNED" else label
            if state == "PRUNED":
                axis.scatter([epochs[-1]], [values[-1]], marker="x", color="black", s=22, zorder=3)
        if spec.scheduler.type == "asha":
            rung = spec.scheduler.grace_period
            while rung < spec.student.epochs:
                axis.axvline(rung, color="black", linestyle=(0, (1, 3)), linewidth=0.8)
                rung = math.ceil(rung * spec.scheduler.reduction_factor)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(f"{view.objective_label}, mean over seeds")
        if view.compare:
            axis.set_title(f"{series.label}: {series.match}", color=series.color)
        else:
            axis.set_title(series.condition)
    view.legends(fig, axes, on=[])
    figure = save_figure(fig, folder, "learning_curves", "Learning curves and early stopping",
                   "Each line is a trial: its validation objective per epoch, the mean over its seeds of each "
                   "seed's best so far (the number ASHA compares). Solid: complete; grey dotted ending in a "
                   "cross: stopped by ASHA at that epoch; dashed: still running; thick: baselines and "
                   "confirmation runs, which ASHA never stops. Vertical dotted lines: ASHA's rungs.")
    return figure


def _importances(view: View, folder: Path) -> Figure | str | None:
    found: dict[Series, dict[str, float]] = {}
    notes = []
    for data in view.studies:
        prefix = f"{view.label(data)}: " if view.compare else ""
        searched = list(data.spec.search)
        if len(searched) < 2:
            notes.append(f"{prefix}only {', '.join(searched)} is searched")
            continue
        storage, why = _optuna_storage(data)
        if storage is None:
            notes.append(f"{prefix}{why}")
            continue
        for series in (s for s in view.series if s.data is data):
            importances, why = _condition_importances(data, series.condition, storage)
            if importances is None:
                notes.append(f"{series.where}: {why}")
            else:
                found[series] = importances
    if not found:
        return "No parameter-importance panel: " + "; ".join(notes) + "."
    import numpy as np

    params = list(dict.fromkeys(p for d in view.studies for p in d.spec.search))
    cells = view.cells(keep=lambda s: s in found)
    k = max(len(c.series) for c in cells)
    fig, axes = subplots(1, len(cells), (6.5 * len(cells), (0.6 + 0.3 * (k - 1)) * len(params) + 2.2))
    for axis, cell in zip(axes, cells):
        names = [p for p in params if any(p in found[s] for s in cell.series)][::-1]
        y = np.arange(len(names))
        height = 0.8 / len(cell.series)
        for j, series in enumerate(cell.series):
            offset = ((len(cell.series) - 1) / 2 - j) * height  # the first study on top
            axis.barh(y + offset, [found[series].get(p, math.nan) for p in names], height=height,
                      label=series.label, **view.bar_style(series, "best"))
        axis.set_yticks(y, [PARAM_LABELS.get(p, p) for p in names])
        axis.set_xlabel("importance (fANOVA, share of objective variance)")
        axis.set_title(cell.title)
        axis.set_xlim(0, 1)
    view.legends(fig, axes, on=[])
    figure = save_figure(fig, folder, "importances", "Optuna parameter importances",
                   "fANOVA importances of the searched parameters for each condition's Optuna study "
                   f"(complete trials only; conditions with at least {MIN_IMPORTANCE_TRIALS}).")
    figure.notes = notes
    return figure


def _condition_importances(data: StudyData, condition: str, storage: Any) -> tuple[dict[str, float] | None, str]:
    import optuna

    from kdtune.records.folder import StudyFolder
    from kdtune.spec.rules import optuna_study_name

    try:
        study = optuna.load_study(study_name=optuna_study_name(StudyFolder(data.path).optuna_prefix(), condition),
                                  storage=storage)
    except Exception as exc:  # a missing study or an unreadable database: a note, not a failure
        return None, f"no Optuna study readable ({one_line(exc, MAX_NOTE)})"
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < MIN_IMPORTANCE_TRIALS:
        return None, (f"too few complete trials for importances ({len(complete)}; at least "
                      f"{MIN_IMPORTANCE_TRIALS}: fANOVA fits a random forest to them, and on fewer points its "
                      "shares say little)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return dict(optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))), ""
    except Exception as exc:
        return None, f"importances could not be computed ({one_line(exc, MAX_NOTE)})"


def _optuna_storage(data: StudyData) -> tuple[Any, str]:
    from kdtune.records.folder import StudyFolder
    from kdtune.records.optuna_storage import make_storage

    url = StudyFolder(data.path).storage_url()
    if url is None:
        return None, "the Optuna storage URL has a password; set $KDTUNE_STORAGE to the full URL to include it"
    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        return None, "the study's Optuna database (optuna.db) is missing"
    try:
        return make_storage(url), ""
    except Exception as exc:
        from kdtune.secrets import redact_url

        return None, f"the Optuna storage {redact_url(url)} could not be opened ({one_line(exc, MAX_NOTE)})"


def _search_progress(view: View, folder: Path) -> Figure | str | None:
    from matplotlib.ticker import MaxNLocator

    if not any(d.trials for d in view.studies):
        return "No search-progress panel: no trial has ended yet."
    cells = view.cells(split=False)
    fig, axes = figure_grid(len(cells), (8, 4.8), (6.4, 4.4))
    for axis, cell in zip(axes, cells):
        for series in cell.series:
            _progress_series(axis, series)
        axis.set_xlabel("trial index (order of ending, per condition)")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(f"best {view.objective_label} so far")
        axis.set_title(titled("Search progress", cell))
    view.legends(fig, axes, on=axes)
    caption = ("The best objective of complete trials so far, per condition; dots are each trial's objective "
               "(hollow: pruned or failed, not counted).")
    running = sum(d.running_trials for d in view.studies)
    if running:
        caption += f" {running} running trial(s) are not shown yet."
    figure = save_figure(fig, folder, "search_progress", "Search progress", caption)
    if view.compare:
        figure.notes = view.skipped(lambda d: bool(d.trials), "no trial has ended yet")
    return figure


def _progress_series(ax: Axes, series: Series) -> None:
    data = series.data
    ended = sorted((t for t in data.trials if t["condition"] == series.condition), key=lambda t: t["ended_at"])
    best, xs, ys = math.nan, [], []
    for n, trial in enumerate(ended, start=1):
        value = trial["objective"]
        if trial["state"] == "COMPLETE" and finite(value):
            best = value if not finite(best) else (max if data.sign > 0 else min)(best, value)
            ax.scatter([n], [value], s=14, color=series.color, alpha=0.6)
        elif finite(value):
            ax.scatter([n], [value], s=18, facecolors="none", edgecolors=series.color)
        xs.append(n)
        ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color=series.color, label=series.label)


#: Panels of a task that has its own page (by task name, :data:`kdtune.tasks.TASKS`): the linear task draws the
#: validation and test excess MSE against alpha with the closed-form α*, and has no temperature or epochs.
TASK_PANELS: dict[str, list[Panel]] = {"linear": [_mse_vs_alpha, _importances, _search_progress]}
