"""The report's panels of the answer itself, read from the study's recommendation
(:func:`kdtune.analysis.recommendation.recommend`, the same numbers as ``kdtune recommend``): the gain of each
condition with its interval (a forest plot across conditions), and the recommended alpha on the alpha axis with
the fitted curve it comes from.

Apart from :mod:`kdtune.report.panels` (the search's own panels) because these draw the recommendation's
numbers, not the runs' aggregates. Each panel takes a :class:`~kdtune.report.view.View` and the figures' folder
and returns a :class:`~kdtune.report.figures.Figure`, a note saying why it is left out, or None.

alpha is the weight on the true labels: alpha = 1 means no distillation.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from kdtune.analysis.scoring import finite
from kdtune.analysis.wording import config_words
from kdtune.analysis.wording import recommended_words
from kdtune.report.data import StudyData
from kdtune.report.figures import ALPHA_LABEL
from kdtune.report.figures import Figure
from kdtune.report.figures import mean_interval
from kdtune.report.figures import save_figure
from kdtune.report.figures import subplots
from kdtune.report.view import Series
from kdtune.report.view import View


if TYPE_CHECKING:
    from matplotlib.axes import Axes


MARGIN_COLOR = "#bbbbbb"


def gain_units(data: StudyData) -> tuple[float, str]:
    """A gain's scale (one unit in the test metric's own units) and the words of its axis: points of accuracy,
    else the test metric's unit, as a reduction where lower is better."""
    objective = data.objective
    if objective.margin_unit and objective.margin_scale == 0.01:
        return 0.01, f"gain in {objective.test_label} over no distillation (points)"
    if objective.mode == "min":
        return 1.0, f"reduction of {objective.test_label} vs no distillation"
    return 1.0, f"gain in {objective.test_label} over no distillation"


def gain_panel(view: View, folder: Path) -> Figure | str | None:
    """A forest plot: per condition, the gain of the configuration the verdict judged over alpha = 1, with its
    interval, the zero line and the equivalence margin."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rows: list[tuple[Series, dict[str, Any], dict[str, Any]]] = []
    notes = []
    for series in view.series:
        entry = series.data.entry(series.condition)
        gain = (entry or {}).get("gain") or {}
        if entry is None:
            notes.append(f"{series.where}: no recommendation yet")
        elif gain.get("mean") is None:
            notes.append(f"{series.where}: no gain ({entry['verdict']['kind']})")
        else:
            rows.append((series, entry, gain))
    if not rows:
        return "No gain panel: " + "; ".join(notes) + "." if notes else None
    scale, words = gain_units(view.studies[0])
    fig, axes = subplots(1, 1, (9.0, 1.6 + 0.75 * len(rows)))
    ax = axes[0]
    ticks, labelled, kinds = [], set(), set()
    edges = [0.0]
    for i, (series, entry, gain) in enumerate(rows):
        y = len(rows) - 1 - i
        margin = (series.data.recommendation or {}).get("margin")
        if margin is not None:
            ax.fill_betweenx([y - 0.35, y + 0.35], -margin / scale, margin / scale, color=MARGIN_COLOR, alpha=0.35,
                             linewidth=0)
            edges += [-margin / scale, margin / scale]
        confirmed = gain["source"] == "confirm"
        kinds.add(confirmed)
        mean = gain["mean"] / scale
        xerr = None
        if gain["low"] is not None:
            low, high = gain["low"] / scale, gain["high"] / scale
            xerr = [[mean - low], [high - mean]]
            edges += [low, high]
        edges.append(mean)
        label = series.label if view.compare and series.label not in labelled else "_nolegend_"
        labelled.add(series.label)
        bars = ax.errorbar(mean, y, xerr=xerr, fmt="o", color=series.color, markersize=8, capsize=5,
                           elinewidth=2, markerfacecolor=series.color if confirmed else "white", label=label)
        if not confirmed:
            for line in bars[2]:
                line.set_linestyle("--")
        name = f"{series.label}: {series.match}" if view.compare else series.condition
        ticks.append((y, f"{name}\n{entry['verdict']['kind']}: {config_words(gain['params'])}"))
    ax.axvline(0.0, color="black", linewidth=1)
    low, high = min(edges), max(edges)
    pad = 0.12 * (high - low or 1.0)
    ax.set_xlim(low - pad, high + pad)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_yticks([y for y, _ in ticks], [t for _, t in ticks], fontsize=8)
    ax.set_xlabel(f"{words}; > 0: distillation is better")
    ax.set_title("Gain over no distillation (alpha = 1), per condition")
    proxies: list[Any] = []
    if True in kinds:
        proxies.append(Line2D([], [], marker="o", color="#555555", label="confirmed: repeated CI, fresh paired seeds"))
    if False in kinds:
        proxies.append(Line2D([], [], marker="o", color="#555555", markerfacecolor="white", linestyle="--",
                              label="search only: 95% CI, optimistic"))
    if any((d.recommendation or {}).get("margin") is not None for d in view.studies):
        proxies.append(Patch(color=MARGIN_COLOR, alpha=0.6, label="± margin: no gain inside"))
    ax.legend(handles=proxies, fontsize=8, loc="lower right" if len(rows) > 1 else "best")
    if view.compare:
        view.legends(fig, [ax], on=[])
    figure = save_figure(fig, folder, "gain", "Gain over no distillation, per condition",
                         "Per condition, the paired gain in the test metric of the configuration the verdict judged "
                         "over alpha = 1 (no distillation), on the same seeds, and its interval: filled, the "
                         "confirmation runs on fresh seeds with the repeated confidence interval the verdict reads "
                         "(simultaneous over the planned looks, Bonferroni over the conditions); hollow and dashed, "
                         "no confirmation: the search's best distilled configuration on the search's own seeds "
                         "with a 95% t-interval, optimistic (it won the selection on those seeds). Shaded: the "
                         "equivalence margin (an interval inside it says 'no gain'). Each row names its verdict "
                         "and configuration; the numbers are those of kdtune recommend.")
    figure.notes = notes
    return figure


def alpha_panel(view: View, folder: Path) -> Figure | str | None:
    """Per condition, on the validation objective the search selects on: the search configurations, the
    baselines as points, the fitted curve with its band, the recommended alpha with its interval and the fitted
    optimum where it is not the recommended alpha."""
    def recommended(series: Series) -> bool:
        return ((series.data.entry(series.condition) or {}).get("recommended")) is not None

    tiles, cols = view.tiles(recommended)
    if not tiles:
        notes = [d.recommendation_note for d in view.studies if d.recommendation_note]
        return f"No recommended-alpha panel: {'; '.join(notes) or 'no recommendation yet'}." if view.any_runs() else None
    import math

    rows = math.ceil(len(tiles) / cols)
    fig, axes = subplots(rows, cols, (6.6 * cols, 4.8 * rows))
    drawn = []
    for axis, series in zip(axes, tiles):
        if series is None:
            axis.set_visible(False)
            continue
        drawn.append(axis)
        _alpha_answer(axis, series, view)
        axis.set_title(f"{series.label}: {series.match}" if view.compare else series.condition,
                       color=series.color if view.compare else "black", fontsize=10)
    for axis in axes[len(tiles):]:
        axis.set_visible(False)
    for axis in drawn:
        view.axis_legend(axis, fontsize=7, loc="best")
    if view.compare:
        view.legends(fig, drawn, on=[])
    better = "higher" if view.studies[0].objective.mode == "max" else "lower"
    figure = save_figure(fig, folder, "recommended_alpha", f"The recommended alpha ({better} is better)",
                         "On the validation objective the search selects on: each search configuration's mean over "
                         "its complete search runs (dots; pruned ones are left out), the baselines alpha = 1 "
                         "(square) and alpha = 0 (triangle) with 95% t-intervals over the search seeds, and the "
                         "surface fitted to the configurations' means along alpha at one temperature (line) with "
                         "its pointwise 95% confidence band, where a fit exists (at least 4 configurations). The "
                         "solid vertical line is the recommended alpha: the confirmed configuration, alpha = 1 when "
                         "confirmation found no gain, or the fitted optimum without confirmation; shaded, the alphas "
                         "that may be best (the fit's bootstrap interval joined with the configurations the search "
                         "cannot tell from its best). Dotted: the fitted optimum, where it is not the recommended "
                         "alpha; ringed: the best search configuration. Confirmation runs are on other seeds: their "
                         "gain is in the gain panel.")
    return figure


def _alpha_answer(ax: Axes, series: Series, view: View) -> None:
    import numpy as np

    from kdtune.analysis.alpha_fit import surface_curve

    data = series.data
    entry = data.entry(series.condition) or {}
    rec = entry["recommended"]
    color = series.color
    ys: list[float] = []
    if view.compare:  # the study's entry in the figure legend, whatever this condition drew
        ax.plot([], [], color=color, label=series.label)
    label: str | None = "search configurations (mean of search runs)"
    for config in data.configurations(series.condition):
        values = [r.objective for r in config.complete() if finite(r.objective)]
        if not values:
            continue
        mean, half = mean_interval(values)
        ys.append(mean)
        baseline = any(r.phase == "baseline" for r in config.runs) and config.alpha in (0.0, 1.0)
        if baseline:
            marker, text = ("s", "no distillation (alpha = 1)") if config.alpha == 1.0 else ("^", "pure distillation (alpha = 0)")
            ax.errorbar(config.alpha, mean, yerr=half, fmt=marker, color=color, markersize=7, capsize=3,
                        markerfacecolor="white", markeredgewidth=1.5, label=text, zorder=4)
            ys += [mean - half, mean + half]
        else:
            ax.scatter([config.alpha], [mean], s=22, color=color, alpha=0.7, label=label, zorder=3)
            label = None
    best = entry.get("best_observed")
    if best is not None:
        match = next((c for c in data.configurations(series.condition) if c.param_dict_matches(best["params"])), None)
        if match is not None and finite(match.mean()):
            ax.scatter([match.alpha], [match.mean()], s=160, facecolors="none", edgecolors="black", linewidths=1.2,
                       label="best search configuration", zorder=5)
    low_bound, high_bound = _alpha_bounds(data)
    if rec.get("surface") is not None:
        temperature = (rec["temperature"] or {}).get("value") or rec["fitted"]["temperature"]
        alphas = list(np.linspace(low_bound, high_bound, 101))
        fitted, low, high = surface_curve(rec["terms"], rec["surface"], alphas, temperature)
        at = f" at T = {temperature:.3g}" if temperature is not None and any("u" in t for t in rec["terms"]) else ""
        ax.plot(alphas, fitted, color=color, linewidth=1.6, label=f"fitted curve{at}, 95% band")
        ax.fill_between(alphas, low, high, color=color, alpha=0.15, linewidth=0)
        ys += fitted
    value = rec["alpha"]["value"]
    located = rec.get("located")
    span = ("where the best alpha lies (95%, located on "
            f"{located['seeds']} fresh seeds)" if located else "alphas that may be best (95%)")
    ax.axvspan(rec["alpha"]["low"], rec["alpha"]["high"], color=color, alpha=0.08, label=span)
    if located:
        ax.axvline(located["alpha"], color="#444444", linestyle="-.", linewidth=1.4,
                   label=f"located optimum: alpha ≈ {located['alpha']:.3g}")
    source = {"fit": "fitted, not confirmed", "best_observed": "best search configuration, not confirmed"}.get(
        rec["source"], f"verdict: {entry['verdict']['kind']}")
    words = recommended_words(rec).split(" (")[0] if value != 1.0 else "alpha = 1"
    temperature_words = f", T {rec['temperature']['value']:.3g}" if rec["temperature"] and value != 1.0 else ""
    ax.axvline(value, color=color, linewidth=2.2, label=f"recommended: {words}{temperature_words} ({source})")
    fitted_alpha = rec["fitted"]["alpha"]
    if fitted_alpha is not None and f"{fitted_alpha:.3g}" != f"{value:.3g}":
        t = rec["fitted"]["temperature"]
        ax.axvline(fitted_alpha, color="#444444", linestyle=":", linewidth=1.4,
                   label=f"fitted optimum: alpha ≈ {fitted_alpha:.3g}" + (f", T ≈ {t:.3g}" if t and fitted_alpha != 1 else ""))
    star = (entry.get("closed_form") or {}).get("alpha_star")
    if finite(star):
        ax.axvline(star, color="#444444", linestyle="--", linewidth=1.2, label=f"α* = {star:.3g} (closed form)")
    if ys:
        bottom, top = min(ys), max(ys)
        pad = 0.1 * (top - bottom or abs(top) or 1.0)
        ax.set_ylim(bottom - pad, top + pad)
    ax.set_xlim(low_bound - 0.03, high_bound + 0.03)
    ax.set_xlabel(ALPHA_LABEL)
    ax.set_ylabel(f"{data.objective_label}, search runs")


def _alpha_bounds(data: StudyData) -> tuple[float, float]:
    space = data.spec.search["alpha"]
    values = [float(v) for v in space.choices or []] if space.type == "categorical" else \
        [float(v) for v in (space.low, space.high) if v is not None]
    return min([0.0, *values]), max([1.0, *values])

