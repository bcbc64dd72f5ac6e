"""The report's figures, one function per panel: each takes a :class:`~kdtune.report.view.View` and the figures'
folder and returns a :class:`~kdtune.report.figures.Figure`, a note saying why it is left out, or None.

This module holds the page order (:func:`panels_for`) and the search's panels, which aggregate the search's runs
only (phases search and baseline; confirmation runs appear as themselves); the panels of the answer (the gain
per condition, the recommended alpha) are in :mod:`kdtune.report.answer_panels`, the transfer check of a study
that searched cheap in :mod:`kdtune.report.transfer_panel`, those on what the models learned (per class, flipped
labels, teacher vs student) in :mod:`kdtune.report.learned_panels`."""

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
from kdtune.report.answer_panels import alpha_panel
from kdtune.report.answer_panels import gain_panel
from kdtune.report.data import SEARCH_PHASES
from kdtune.report.data import StudyData
from kdtune.report.figures import ALPHA_LABEL
from kdtune.report.figures import PARAM_LABELS
from kdtune.report.figures import Figure
from kdtune.report.figures import figure_grid
from kdtune.report.figures import marker_legend
from kdtune.report.figures import mean_interval
from kdtune.report.figures import save_figure
from kdtune.report.figures import subplots
from kdtune.report.learned_panels import flips_panel
from kdtune.report.learned_panels import per_class_panel
from kdtune.report.learned_panels import teacher_vs_student_panel
from kdtune.report.transfer_panel import transfer_panel
from kdtune.report.view import Series
from kdtune.report.view import View
from kdtune.report.view import titled


if TYPE_CHECKING:
    from matplotlib.axes import Axes


HEATMAP_BINS = 8
NICE_TEMPERATURES = (0.5, 1, 1.5, 2, 3, 4, 5, 7, 10, 15, 20, 30, 50, 100)
#: Complete Optuna trials a condition needs before the report shows parameter importances. A judgement, not a
#: calibration: quickstart's ~6 complete trials per condition are below it, the MNIST specs' 18-26 above.
MIN_IMPORTANCE_TRIALS = 12


Panel = Callable[[View, Path], "Figure | str | None"]


def panels_for(view: View) -> list[Panel]:
    """The report's panels in page order: the study's task's own (:data:`TASK_PANELS`), else those of a task
    trained by epochs (each reads the objective's column, direction and words)."""
    return TASK_PANELS.get(view.task.name, [gain_panel, alpha_panel, transfer_panel, _accuracy_vs_alpha,
                                            _alpha_temperature, _learning_curves, _importances, per_class_panel,
                                            flips_panel, teacher_vs_student_panel, _search_progress])


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
        axis.set_title(cell.title or f"{test.capitalize()} vs alpha (search runs; confirmation means as diamonds)")
    view.legends(fig, axes, on=axes, title="condition")
    for axis in axes:
        marker_legend(axis)
    better = "higher" if view.studies[0].objective.mode == "max" else "lower"
    return save_figure(fig, folder, "accuracy_vs_alpha", f"{test.capitalize()} vs alpha ({better} is better)",
                       "Each dot is a search run (one seed) at its best validation epoch; a small square with a bar "
                       f"is the mean of a search configuration's complete runs with a {CONFIDENCE:.0%} t-interval "
                       "over seeds. The baselines alpha = 1 (large square) and alpha = 0 (triangle) are points, "
                       "never joined; lines join only search configurations of the same temperature T "
                       "(labelled), where there are several. Diamonds: the confirmation runs' means (fresh seeds, "
                       "kept apart from the search's means) with their 95% t-intervals. Hollow dots: running or "
                       "pruned trials (not in the means).")


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
    for axis in axes:
        marker_legend(axis)
    return save_figure(fig, folder, "mse_vs_alpha", "Linear task: MSE vs alpha",
                       "Each dot is a search run (one seed); small squares are search configuration means with a "
                       f"{CONFIDENCE:.0%} t-interval, joined by a line (the linear task has no temperature); the "
                       "baselines alpha = 1 (large square) and alpha = 0 (triangle) are points of their own; "
                       "diamonds are confirmation runs' means (fresh seeds). Dashed: the closed-form optimum "
                       "α* = B / (B + V) of the same draws, where teachers.json records it.")


def _alpha_series(ax: Axes, series: Series, attr: str) -> None:
    """Search runs as points (hollow when not in the means); search configuration means with t-intervals, lines
    joining only several search configurations of one temperature; the baselines as points of their own; the
    confirmation runs' means apart, as diamonds."""
    color = series.color
    runs = [r for r in series.data.search_runs(series.condition) if finite(getattr(r, attr))]
    done = [r for r in runs if r.state == "COMPLETE"]
    other = [r for r in runs if not r.state == "COMPLETE"]
    ax.scatter([r.alpha for r in done], [getattr(r, attr) for r in done], s=14, color=color, alpha=0.5)
    if other:
        ax.scatter([r.alpha for r in other], [getattr(r, attr) for r in other], s=18, facecolors="none",
                   edgecolors=color, alpha=0.8)
    by_temperature: dict[float | None, list[tuple[float, float, float]]] = {}
    label: str | None = series.label
    for config in series.data.configurations(series.condition):
        values = [getattr(r, attr) for r in config.complete() if finite(getattr(r, attr))]
        if not values:
            continue
        mean, half = mean_interval(values)
        if any(r.phase == "baseline" for r in config.runs) and config.alpha in (0.0, 1.0):
            ax.errorbar([config.alpha], [mean], yerr=[half], color=color, marker="s" if config.alpha == 1.0 else "^",
                        markersize=8, markerfacecolor="white", markeredgewidth=1.5, capsize=3, linewidth=0,
                        elinewidth=1, label=label, zorder=4)
            label = None
        else:
            by_temperature.setdefault(config.temperature, []).append((config.alpha, mean, half))
    for temperature, points in by_temperature.items():
        x, means, halves = (list(v) for v in zip(*points))
        ax.errorbar(x, means, yerr=halves, color=color, marker="s", markersize=3.5, capsize=2, linewidth=0,
                    elinewidth=1, label=label)
        label = None
        if len(points) > 1:  # several of the same T: a line means something (the T-free linear task has one group)
            ax.plot(x, means, color=color, linewidth=1.2, alpha=0.8)
            if temperature is not None:
                ax.annotate(f"T={temperature:.3g}", (x[-1], means[-1]), textcoords="offset points", xytext=(4, 4),
                            fontsize=7, color=color)
    for config in series.data.confirmations(series.condition):
        values = [getattr(r, attr) for r in config.complete() if finite(getattr(r, attr))]
        if values:
            mean, half = mean_interval(values)
            ax.errorbar([config.alpha], [mean], yerr=[half], color=color, marker="D", markersize=7,
                        markeredgecolor="black", capsize=4, linewidth=0, elinewidth=1.5, zorder=5)


def _searches_temperature(data: StudyData) -> bool:
    return "temperature" in data.spec.search and "alpha" in data.spec.search


def _alpha_temperature(view: View, folder: Path) -> Figure | str | None:
    if not any(_searches_temperature(d) for d in view.studies):
        return f"No alpha x temperature panel: {view.nowhere('temperature is not searched')}."
    if not any(d.runs for d in view.studies if _searches_temperature(d)):
        return None
    import numpy as np
    from matplotlib.ticker import FixedLocator
    from matplotlib.ticker import FuncFormatter
    from matplotlib.ticker import NullFormatter

    tiles, cols = view.tiles(lambda s: _searches_temperature(s.data))
    rows = math.ceil(len(tiles) / cols)
    fig, axes = subplots(rows, cols, (5.2 * cols, 4.4 * rows))
    drawn, spans = [], []
    for axis, series in zip(axes, tiles):
        if series is None:
            axis.set_visible(False)
            continue
        drawn.append(axis)
        # One colour scale per condition: conditions differ by more (noise costs accuracy) than the
        # configurations inside one, which a shared scale would paint in one colour.
        configs_all = series.data.configurations(series.condition)
        vmin, vmax = _colour_range([c.mean() for c in configs_all if finite(c.mean())], series.data)
        spans.append(f"{_span_words(series.data, vmin, vmax)} ({series.where})")
        cmap = "viridis" if series.data.sign > 0 else "viridis_r"  # yellow is better either way
        a_edges, t_edges, log = _heatmap_edges(series.data)
        # (configuration, its temperature): the ones with a temperature, which is what places them
        configs = [(c, c.temperature) for c in configs_all if c.temperature is not None]
        sums = np.zeros((HEATMAP_BINS, HEATMAP_BINS))
        counts = np.zeros((HEATMAP_BINS, HEATMAP_BINS))
        for c, temperature in configs:
            if finite(c.mean()):
                i = min(max(int(np.searchsorted(t_edges, temperature, side="right")) - 1, 0), HEATMAP_BINS - 1)
                j = min(max(int(np.searchsorted(a_edges, c.alpha, side="right")) - 1, 0), HEATMAP_BINS - 1)
                sums[i, j] += c.mean()
                counts[i, j] += 1
        grid = np.ma.masked_where(counts == 0, sums / np.maximum(counts, 1))
        mesh = axis.pcolormesh(a_edges, t_edges, grid, cmap=cmap, vmin=vmin, vmax=vmax, shading="flat")
        edge = series.color if view.compare else "black"
        scored = [(c, t) for c, t in configs if finite(c.mean())]
        pending = [(c, t) for c, t in configs if not finite(c.mean())]
        axis.scatter([c.alpha for c, _ in scored], [t for _, t in scored], c=[c.mean() for c, _ in scored],
                     cmap=cmap, vmin=vmin, vmax=vmax, edgecolors=edge, s=30, zorder=3, clip_on=False,
                     label=series.label if view.compare else "configuration (complete runs)")
        if pending:
            axis.scatter([c.alpha for c, _ in pending], [t for _, t in pending], facecolors="none",
                         edgecolors=edge, s=30, zorder=3, clip_on=False,
                         label=_hollow_words(series.data))
        _mark_recommended(axis, series)
        if log:
            axis.set_yscale("log")
            axis.yaxis.set_major_locator(FixedLocator([t for t in NICE_TEMPERATURES if t_edges[0] <= t <= t_edges[-1]]))
            axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            axis.yaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel(ALPHA_LABEL)
        axis.set_ylabel("temperature T")
        if view.compare:
            axis.set_title(f"{series.label}: {series.match}", color=series.color)
        else:
            axis.set_title(series.condition)
        better = "higher" if series.data.sign > 0 else "lower"
        fig.colorbar(mesh, ax=axis).set_label(f"{view.objective_label}\n{better} is better")
        view.axis_legend(axis, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    for axis in axes[len(tiles):]:
        axis.set_visible(False)
    if view.compare:
        view.legends(fig, drawn, on=[])
    figure = save_figure(fig, folder, "alpha_temperature", "Objective over alpha and temperature",
                         f"The mean {view.objective_label} of each search configuration's complete runs (the search's "
                         f"seeds only), averaged within {HEATMAP_BINS}x{HEATMAP_BINS} bins of the searched ranges; "
                         "dots are the configurations. Hollow: no complete run (in a finished study: pruned by ASHA "
                         "or failed; while it runs, also still running). Star: the recommended configuration; a "
                         "vertical line where it is alpha = 1, which has no temperature. Each condition has its own "
                         "colour scale, at least twice the equivalence margin wide so that differences inside the "
                         "margin do not look large; yellow is better. Colour ranges: " + "; ".join(spans) + ".")
    figure.notes = view.skipped(_searches_temperature, "temperature is not searched") if view.compare else []
    return figure


def _colour_range(values: list[float], data: StudyData) -> tuple[float, float]:
    """The data's range, widened about its middle to twice the equivalence margin (in objective units) where
    it is narrower: a 0.2-point spread painted from purple to yellow reads as a large effect."""
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    margin = (data.recommendation or {}).get("margin", data.spec.margin)
    floor = 2 * margin if margin else 1e-6 * max(1.0, abs(high))
    if high - low < floor:
        middle = (low + high) / 2
        low, high = middle - floor / 2, middle + floor / 2
    return low, high


def _span_words(data: StudyData, low: float, high: float) -> str:
    if data.objective.margin_scale == 0.01:
        return f"{100 * low:.1f}–{100 * high:.1f}%"
    return f"{low:.4g}–{high:.4g}"


def _hollow_words(data: StudyData) -> str:
    return ("no complete run: pruned or failed" if data.finished
            else "no complete run yet: running, pruned or failed")


def _mark_recommended(axis: Axes, series: Series) -> None:
    """The recommended configuration on the alpha x T plane: a star, or a line at alpha = 1 (no temperature)."""
    rec = (series.data.entry(series.condition) or {}).get("recommended")
    if rec is None:
        return
    alpha = rec["params"]["alpha"]
    if rec["temperature"] is None:
        axis.axvline(alpha, color="red", linewidth=1.6, linestyle="--", label=f"recommended: alpha = {alpha:.3g}")
        return
    axis.scatter([alpha], [rec["temperature"]["value"]], marker="*", s=260, color="red", edgecolors="white",
                 linewidths=1.0, zorder=6, clip_on=False,
                 label=f"recommended: alpha {alpha:.3g}, T {rec['temperature']['value']:.3g}")


def _heatmap_edges(data: StudyData) -> tuple[Any, Any, bool]:
    """Bin edges over the searched ranges (a categorical temperature: its choices' range), log-spaced in T where
    the search is (or the choices span a factor of 4 or more)."""
    import numpy as np

    t_spec, a_spec = data.spec.search["temperature"], data.spec.search["alpha"]
    a_low, a_high = _range(a_spec, 0.0, 1.0)
    t_low, t_high = _range(t_spec, 1.0, 20.0)
    a_edges = np.linspace(a_low, a_high, HEATMAP_BINS + 1)
    log = bool(t_spec.log) if t_spec.type != "categorical" else t_high >= 4 * t_low
    t_edges = (np.geomspace(t_low, t_high, HEATMAP_BINS + 1) if log
               else np.linspace(t_low, t_high, HEATMAP_BINS + 1))
    return a_edges, t_edges, log


def _range(space: Any, low: float, high: float) -> tuple[float, float]:
    if space.type == "categorical":
        values = [float(v) for v in space.choices or []]
        if len(set(values)) > 1:
            return min(values), max(values)
        return low, high
    return float(space.low if space.low is not None else low), float(space.high if space.high is not None else high)


def _learning_curves(view: View, folder: Path) -> Figure | str | None:
    """Validation objective per epoch of every trial, with where ASHA stopped the pruned ones."""
    from matplotlib.ticker import MaxNLocator

    tiles = [s for s in view.series if any(c[0] == s.condition for c in s.data.curves.values())]
    if not tiles:
        return None
    fig, axes = figure_grid(len(tiles), (8, 4.8), (6.4, 4.4))
    starts = []
    for axis, series in zip(axes, tiles):
        spec = series.data.spec
        label = series.label  # on the study's first line: a comparison's figure legend names each study once
        shown: list[float] = []
        start = _first_decision(spec)
        starts.append(start)
        for trial_id, (condition, state, phase, points) in series.data.curves.items():
            if condition != series.condition or not points:
                continue
            epochs, values = zip(*points)
            shown += [v for e, v in points if e >= start]
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
        if shown:  # the range where ASHA decides, not the first epochs' (far worse) values
            low, high = min(shown), max(shown)
            pad = 0.06 * (high - low or abs(high) or 1.0)
            axis.set_ylim(low - pad, high + pad)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(f"{view.objective_label}\nmean over seeds of the best so far")
        if view.compare:
            axis.set_title(f"{series.label}: {series.match}", color=series.color)
        else:
            axis.set_title(series.condition)
    view.legends(fig, axes, on=[])
    start = min(starts)
    figure = save_figure(fig, folder, "learning_curves", "Learning curves and early stopping",
                   "Each line is a trial: after each epoch, the mean over its seeds of each seed's best validation "
                   "objective so far (the number ASHA compares at its rungs and Optuna records as the trial's "
                   "intermediate value), so every line only improves. Solid: complete; grey dotted ending in a "
                   "cross: stopped by ASHA at that epoch; dashed: still running; thick: baselines and "
                   "confirmation runs, which ASHA never stops. Vertical dotted lines: ASHA's rungs. The y-axis "
                   f"spans the values from epoch {start} on" + (" (ASHA's first rung)" if start > 1 else "")
                   + "; earlier epochs may lie outside it.")
    return figure


def _first_decision(spec: Any) -> int:
    """The first epoch whose values the y-axis must show: ASHA's first rung, else the second epoch (the first
    is often far from everything after it)."""
    if spec.scheduler.type == "asha":
        return int(spec.scheduler.grace_period)
    return min(2, int(spec.student.epochs))


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
    caption = ("The best objective of complete search trials so far (baselines included, confirmation trials not: "
               "they are not part of the search), per condition; dots are each trial's objective (hollow: pruned or "
               "failed, not counted).")
    running = sum(d.running_trials for d in view.studies)
    if running:
        caption += f" {running} running trial(s) are not shown yet."
    figure = save_figure(fig, folder, "search_progress", "Search progress", caption)
    if view.compare:
        figure.notes = view.skipped(lambda d: bool(d.trials), "no trial has ended yet")
    return figure


def _progress_series(ax: Axes, series: Series) -> None:
    data = series.data
    ended = sorted((t for t in data.trials if t["condition"] == series.condition and t["phase"] in SEARCH_PHASES),
                   key=lambda t: t["ended_at"])
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
TASK_PANELS: dict[str, list[Panel]] = {"linear": [gain_panel, alpha_panel, _mse_vs_alpha, _importances, _search_progress]}
