"""What each colour of a figure is: one study's conditions, or several studies side by side (:class:`View`),
with the conditions matched across studies by the values of the condition axes that vary in any of them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any

from kdtune.report.data import StudyData
from kdtune.report.figures import palette_color


if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure as MplFigure

    from kdtune.tasks import Task


@dataclass(frozen=True, eq=False)
class Series:
    """One colour of a figure: one condition of one study."""

    data: StudyData
    condition: str  # the study's condition key
    match: str  # the condition as matched across studies (one study: its key)
    label: str  # its legend entry: the condition (one study) or the study (comparison)
    where: str  # how notes name it
    color: str


@dataclass(frozen=True, eq=False)
class Cell:
    """Series drawn together: one subplot, or one group of bars."""

    title: str
    series: list[Series]


class View:
    """The studies of a report and how its figures split them.

    One study: a colour per condition, and the overlay panels draw every condition on one axis. Several (a
    comparison): a colour per study and a subplot (or group of bars) per condition, conditions matched across
    studies by the values of the condition axes that vary in any of them; what is constant within a study
    (its dataset, its student, ...) is what the comparison is about.
    """

    def __init__(self, studies: list[StudyData]) -> None:
        self.studies = studies
        self.compare = len(studies) > 1
        self.labels = _study_labels(studies) if self.compare else [studies[0].spec.name]
        self.colors = [palette_color(i) for i in range(len(studies))]
        self.match_axes = _varying_axes(studies) if self.compare else []
        self.series: list[Series] = []
        for data, label, color in zip(studies, self.labels, self.colors):
            values = {c["key"]: c for c in data.meta.get("conditions", [])}
            for k, key in enumerate(data.conditions):
                if self.compare:
                    match = ",".join(f"{a}={values[key].get(a)}" for a in self.match_axes) or "all"
                    self.series.append(Series(data, key, match, label, f"{label}, {key}", color))
                else:
                    self.series.append(Series(data, key, key, key, key, palette_color(k)))
        self.matches = list(dict.fromkeys(s.match for s in self.series))

    @property
    def task(self) -> Task:
        return self.studies[0].task


    @property
    def objective_label(self) -> str:
        return self.studies[0].objective_label

    def any_runs(self) -> bool:
        return any(d.runs for d in self.studies)

    def label(self, data: StudyData) -> str:
        return self.labels[next(i for i, d in enumerate(self.studies) if d is data)]

    def cells(self, *, split: bool = True, keep: Callable[[Series], bool] = lambda s: True) -> list[Cell]:
        """The series (those ``keep`` keeps) grouped by matched condition; one study and not ``split``: one
        cell with every condition. Empty cells are left out."""
        if self.compare or split:
            cells = [Cell(m, [s for s in self.series if s.match == m and keep(s)]) for m in self.matches]
        else:
            cells = [Cell("", [s for s in self.series if keep(s)])]
        return [c for c in cells if c.series]

    def tiles(self, keep: Callable[[Series], bool]) -> tuple[list[Series | None], int]:
        """One subplot per kept series, and the number of columns: a study per row when comparing."""
        kept = [s for s in self.series if keep(s)]
        if not self.compare:
            return list(kept), min(3, len(kept))
        matches = [m for m in self.matches if any(s.match == m for s in kept)]
        tiles: list[Series | None] = []
        for data in self.studies:
            if any(s.data is data for s in kept):
                tiles += [next((s for s in kept if s.data is data and s.match == m), None) for m in matches]
        return tiles, len(matches)

    def skipped(self, keep: Callable[[StudyData], bool], why: str) -> list[str]:
        """Comparison notes for the studies a panel does not apply to."""
        return [f"{label}: not shown ({why})" for d, label in zip(self.studies, self.labels) if not keep(d)]

    def nowhere(self, why: str) -> str:
        """The end of a note for a panel that applies to no study."""
        return f"{why} in any of the studies" if self.compare else f"{why} in this study"

    def bar_style(self, series: Series, role: str) -> dict[str, Any]:
        """One study: a colour per role (teacher, no distillation, best); comparison: the study's colour,
        solid for the best configuration and hatched for the others."""
        if not self.compare:
            return {"color": _ROLE_COLORS[role]}
        solid = role == "best"
        return {"facecolor": series.color if solid else "white", "edgecolor": series.color,
                "hatch": _ROLE_HATCH[role], "linewidth": 0.8}

    def bar_label(self, series: Series, role: str, text: str) -> str:
        """One study: the role; comparison: the study, on its solid bars (the figure legend shows it)."""
        if not self.compare:
            return text
        return series.label if role == "best" else "_nolegend_"

    def axis_legend(self, ax: Axes, **kwargs: Any) -> None:
        """The axis's own legend of what it draws, without the study entries a comparison's figure legend holds."""
        pairs = [(h, t) for h, t in zip(*ax.get_legend_handles_labels()) if not (self.compare and t in self.labels)]
        if pairs:
            ax.legend([h for h, _ in pairs], [t for _, t in pairs], **kwargs)

    def legends(self, fig: MplFigure, axes: list[Axes], *, on: list[Axes], title: str | None = None,
                styles: tuple[tuple[str, str], ...] = (), **kwargs: Any) -> None:
        """One study: a legend on each axis of ``on``. Comparison: a figure legend with one entry per study
        drawn, and on ``on`` what else is drawn (teacher rates, α*) and what the bar styles mean."""
        from matplotlib.patches import Patch

        if not self.compare:
            for ax in on:
                if ax.get_legend_handles_labels()[0]:
                    ax.legend(fontsize=8, title=title if len(self.series) > 1 else None, **kwargs)
            return
        for ax in on:
            pairs = [(h, t) for h, t in zip(*ax.get_legend_handles_labels()) if t not in self.labels]
            pairs += [(Patch(label=text, facecolor="#777777" if role == "best" else "white",
                             edgecolor="#555555", hatch=_ROLE_HATCH[role]), text) for text, role in styles]
            if pairs:
                ax.legend([h for h, _ in pairs], [t for _, t in pairs], fontsize=7, **kwargs)
        drawn = {t for ax in axes for t in ax.get_legend_handles_labels()[1]}
        handles = [Patch(facecolor=c, edgecolor=c, label=t) for t, c in zip(self.labels, self.colors) if t in drawn]
        if handles:
            fig.legend(handles=handles, title="study", loc="outside right upper", fontsize=8)


_ROLE_COLORS = {"teacher": "#dd8452", "baseline": "#999999", "best": "#4c72b0"}
_ROLE_HATCH = {"teacher": "..", "baseline": "///", "best": None}


def _study_labels(studies: list[StudyData]) -> list[str]:
    """Legend entries: each study's name; where names clash, its folder's name (numbered if those clash too)."""
    names = [d.spec.name for d in studies]
    labels = [n if names.count(n) == 1 else d.path.resolve().name for n, d in zip(names, studies)]
    return [t if labels.count(t) == 1 else f"{t}#{i + 1}" for i, t in enumerate(labels)]


def _varying_axes(studies: list[StudyData]) -> list[str]:
    """The condition axes (noise_level, teacher_select, ...) that vary within any of the studies."""
    axes: dict[str, None] = {}
    for data in studies:
        conditions = data.meta.get("conditions", [])
        for name in conditions[0] if conditions else {}:
            if name != "key" and len({json.dumps(c.get(name)) for c in conditions}) > 1:
                axes[name] = None
    return list(axes)


def titled(title: str, cell: Cell) -> str:
    return f"{title} ({cell.title})" if cell.title else title
