"""What every panel draws with: the :class:`Figure` record (a PNG and what its axes show), the one alpha
label, subplots, saving, colours and the mean with its t-interval.

alpha is the weight on the true labels: alpha = 1 means no distillation. Every axis that shows alpha is labelled
:data:`ALPHA_LABEL`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from kdtune.analysis.scoring import finite
from kdtune.analysis.scoring import t_estimate


if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure as MplFigure


#: The one label of every axis that shows alpha (tests check that every figure uses it).
ALPHA_LABEL = "alpha (weight on true labels; 1 = no distillation)"
DPI = 100
PARAM_LABELS = {"alpha": ALPHA_LABEL, "temperature": "temperature T"}


@dataclass
class Figure:
    """One PNG of the report and what its axes show."""

    name: str
    title: str
    caption: str
    file: Path
    axes: list[dict[str, Any]]
    legend: list[str] = field(default_factory=list)  # the figure's own legend (comparison: one entry per study)
    notes: list[str] = field(default_factory=list)
    #: What the figure says in words, shown beside it on the page (the transfer check's verdict per condition)
    summary: list[str] = field(default_factory=list)


def subplots(rows: int, cols: int, size: tuple[float, float]) -> tuple[MplFigure, list[Axes]]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False, layout="constrained")
    return fig, list(axes.flat)


def figure_grid(n: int, one: tuple[float, float], each: tuple[float, float]) -> tuple[MplFigure, list[Axes]]:
    """``n`` subplots: one of size ``one``, or up to three a row of size ``each``."""
    if n == 1:
        return subplots(1, 1, one)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = subplots(rows, cols, (each[0] * cols, each[1] * rows))
    for axis in axes[n:]:
        axis.set_visible(False)
    return fig, axes[:n]


def save_figure(fig: MplFigure, folder: Path, name: str, title: str, caption: str) -> Figure:
    import matplotlib.pyplot as plt

    path = folder / f"{name}.png"
    fig.savefig(path, dpi=DPI)
    axes = [_axis_info(ax) for ax in fig.axes if ax.get_visible()]
    legend = [t.get_text() for found in fig.legends for t in found.get_texts()]
    plt.close(fig)
    return Figure(name=name, title=title, caption=caption, file=path, axes=axes, legend=legend)


def _axis_info(ax: Axes) -> dict[str, Any]:
    """What an axis shows, for figures.json: labels, limits, legend, its annotations, the lines that join
    points (x and y of every drawn line through two or more distinct x: a joined series, not a marker or a
    vertical rule) and the labelled markers drawn without a line (label, x and y of each such series), so that
    what a line or a point claims can be checked without reading pixels."""
    import numpy as np

    legend = ax.get_legend()
    lines, points = [], []
    for line in ax.get_lines():
        x, y = ([float(value) for value in np.asarray(v, dtype=float).ravel()] for v in line.get_data())
        joined = line.get_linestyle() not in ("None", "", " ")
        if joined and len(set(x)) > 1:
            lines.append({"x": x, "y": y})
        elif not joined and line.get_marker() not in ("None", "", " ", None) and x \
                and not str(line.get_label()).startswith("_"):
            points.append({"label": line.get_label(), "x": x, "y": y})
    return {"xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(), "title": ax.get_title(),
            "ylim": [float(v) for v in ax.get_ylim()],
            "xticklabels": [t.get_text() for t in ax.get_xticklabels()],
            "yticklabels": [t.get_text() for t in ax.get_yticklabels()],
            "series": ax.get_legend_handles_labels()[1],
            "legend": [t.get_text() for t in legend.get_texts()] if legend else [],
            "texts": [t.get_text() for t in ax.texts], "lines": lines, "points": points}


#: What the markers of the alpha panels mean (:func:`marker_legend`): (marker, filled, words).
ALPHA_MARKERS = (("s", True, "search configuration: mean, 95% CI"), ("s", False, "baseline alpha = 1 (no distillation)"),
                 ("^", False, "baseline alpha = 0 (pure distillation)"),
                 ("D", True, "confirmation runs (fresh seeds): mean, 95% CI"))


def marker_legend(ax: Axes, entries: tuple[tuple[str, bool, str], ...] = ALPHA_MARKERS) -> None:
    """Add to the axis's legend what each marker shape means (in grey: the colours say which condition or
    study), keeping the entries it has."""
    from matplotlib.lines import Line2D

    own = ax.get_legend()
    kept = [(h, t.get_text()) for h, t in zip(own.legend_handles, own.get_texts()) if h is not None] if own else []
    handles: list[Any] = [h for h, _ in kept]
    labels = [t for _, t in kept]
    for marker, filled, words in entries:
        handles.append(Line2D([], [], marker=marker, linestyle="none", color="#555555", markersize=6,
                              markerfacecolor="#555555" if filled else "white"))
        labels.append(words)
    ax.legend(handles, labels, fontsize=7, loc="best")


def palette_color(index: int) -> str:
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf")
    return palette[index % len(palette)]


def mean_interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its t-interval (0 for a single value): :func:`~kdtune.analysis.scoring.t_estimate`."""
    estimate = t_estimate(values)
    return estimate["mean"], 0.0 if estimate["low"] is None else estimate["mean"] - estimate["low"]


def as_float(value: Any) -> float:
    return float(value) if finite(value) else math.nan
