"""The study report: ``DIR/report.html`` (self-contained: figures as base64 PNGs, inline CSS, opens offline),
the PNGs behind it in ``DIR/report/`` with ``figures.json`` (each figure's axes and labels), and the same
comparison as a W&B Report (:func:`build_wandb_report`, published by ``kdtune report DIR --wandb``).

alpha is the weight on the true labels: alpha = 1 means no distillation. Every axis that shows alpha is
labelled :data:`ALPHA_LABEL`.

A *run* (one seed of one trial) is scored the way :mod:`kdtune.scoring` says: the validation objective at the
run's best validation epoch selects, the test metric at that same epoch is reported. Means and intervals use
the runs of COMPLETE trials; runs of RUNNING (snapshot of a study still going) or PRUNED trials are drawn
hollow and left out of the means. The panels:

* test accuracy vs alpha, one line per condition (runs as points, mean with a 95% t-interval band);
* alpha x temperature: the objective binned over the searched ranges, per condition;
* Optuna parameter importances per condition (from the study's Optuna storage);
* per-class test accuracy of the best configuration (selected on validation) vs no distillation (alpha = 1);
* flipped-label correction and memorisation vs alpha (conditions with label noise);
* teacher vs student test accuracy per condition;
* search progress: best objective vs trial index per condition;
* linear task (objective val_mse): validation and test excess MSE vs alpha, with the closed-form alpha*.

:func:`write_comparison` (``kdtune report DIR1 DIR2 ...``) puts several studies side by side in one report
(``report-compare.html``, PNGs in ``report-compare/``): the same panels through the same functions (a
:class:`View` says what each colour is), one colour per study, conditions matched across studies by the values
of the condition axes that vary in any of them, and each study's own recommendation in its section. The
studies may differ in dataset, teacher and student; a linear (regression) study is not compared with
classification ones.

Matplotlib with the Agg backend; no Ray, no W&B (except in :func:`build_wandb_report`).
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import math
import warnings
from collections.abc import Callable
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from kdtune.errors import MAX_NOTE
from kdtune.errors import StudyError
from kdtune.errors import UsageError
from kdtune.errors import one_line
from kdtune.scoring import METRICS
from kdtune.scoring import ParamsView
from kdtune.scoring import ScoredRun as Run
from kdtune.scoring import finite
from kdtune.scoring import score_runs
from kdtune.study_folder import atomic_write


if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure as MplFigure

    from kdtune.spec import StudySpec

#: The one label of every axis that shows alpha (tests check that every figure uses it).
ALPHA_LABEL = "alpha (weight on true labels; 1 = no distillation)"
REPORT_HTML = "report.html"
FIGURES_DIR = "report"
COMPARE_HTML = "report-compare.html"  # a comparison's default, in the current directory
MANIFEST = "figures.json"
CONFIDENCE = 0.95
HEATMAP_BINS = 8
#: Complete Optuna trials a condition needs before the report shows parameter importances. A judgement, not a
#: calibration: quickstart's ~6 complete trials per condition are below it, the MNIST specs' 18-26 above.
MIN_IMPORTANCE_TRIALS = 12
DPI = 100
_PARAM_LABELS = {"alpha": ALPHA_LABEL, "temperature": "temperature T"}


# ------------------------------------------------------------------------------------------------ reading

@dataclass
class Configuration(ParamsView):
    """One point of the search space in one condition, with its runs."""

    condition: str
    params: tuple[Any, ...]
    runs: list[Run] = field(default_factory=list)

    def complete(self) -> list[Run]:
        return [r for r in self.runs if r.state == "COMPLETE"]

    def mean(self, attr: str = "objective") -> float:
        values = [getattr(r, attr) for r in self.complete() if finite(getattr(r, attr))]
        return sum(values) / len(values) if values else math.nan

    def describe(self) -> str:
        words = [f"alpha {self.alpha:.3g}"]
        if self.temperature is not None and self.alpha != 1.0:
            words.append(f"T {self.temperature:.3g}")
        return ", ".join(words)


@dataclass
class StudyData:
    path: Path
    meta: dict[str, Any]
    spec: StudySpec
    conditions: list[str]
    teachers: dict[str, Any]
    runs: list[Run]
    trials: list[dict[str, Any]]
    running_trials: int
    #: trial id -> (condition, state, phase, [(epoch, mean validation objective over the trial's seeds)])
    curves: dict[str, tuple[str, str, str, list[tuple[int, float]]]] = field(default_factory=dict)

    @property
    def regression(self) -> bool:
        return self.spec.task == "regression"

    @property
    def sign(self) -> float:
        return -1.0 if self.regression else 1.0

    @property
    def objective_label(self) -> str:
        return "validation MSE (objective)" if self.regression else "validation accuracy (objective)"

    @property
    def finished(self) -> bool:
        return self.meta.get("finished_at") is not None

    def configurations(self, condition: str) -> list[Configuration]:
        configs: dict[tuple[Any, ...], Configuration] = {}
        for run in self.runs:
            if run.condition == condition:
                configs.setdefault(run.params, Configuration(condition, run.params)).runs.append(run)
        return sorted(configs.values(), key=lambda c: (c.alpha, c.temperature or 0.0))

    def best(self, condition: str) -> Configuration | None:
        """The configuration with the best mean objective over its complete runs (ties: larger alpha)."""
        scored = [c for c in self.configurations(condition) if finite(c.mean())]
        if not scored:
            return None
        return max(scored, key=lambda c: (self.sign * c.mean(), c.alpha))

    def no_distillation(self, condition: str) -> Configuration | None:
        """The alpha = 1 baseline (phase ``baseline``) with complete runs."""
        for config in self.configurations(condition):
            runs = [r for r in config.complete() if r.phase == "baseline"]
            if config.alpha == 1.0 and runs:
                return Configuration(condition, config.params, runs)
        return None


def load_study(study_dir: Path) -> StudyData:
    """Read a study folder (finished, or a snapshot of one still running)."""
    from kdtune.results import read_results
    from kdtune.results import read_trials
    from kdtune.study_folder import StudyFolder

    study_dir = Path(study_dir)
    folder = StudyFolder(study_dir)
    meta = folder.meta()
    spec = folder.spec()
    teachers = folder.teachers()
    rows = read_results(study_dir).to_pylist()
    metric = METRICS[spec.objective_name]
    runs = score_runs(rows, metric)
    trials = read_trials(study_dir).to_pylist()
    ended = {t["trial_id"] for t in trials}
    running = len({r["trial_id"] for r in rows if r["trial_id"] not in ended})
    return StudyData(path=study_dir, meta=meta, spec=spec, conditions=[c["key"] for c in meta["conditions"]],
                     teachers=teachers, runs=runs, trials=trials, running_trials=running,
                     curves=_curves(rows, metric.column))


def _curves(rows: list[dict[str, Any]], select: str) -> dict[str, tuple[str, str, str, list[tuple[int, float]]]]:
    """Each trial's validation objective per epoch, the mean over its seeds (what ASHA compares at its rungs)."""
    by_epoch: dict[str, dict[int, list[float]]] = {}
    about: dict[str, tuple[str, str, str]] = {}
    for row in rows:
        if finite(row[select]):
            by_epoch.setdefault(row["trial_id"], {}).setdefault(int(row["epoch"]), []).append(float(row[select]))
            about[row["trial_id"]] = (row["condition"], row["trial_state"], row["phase"])
    return {t: (*about[t], [(e, sum(v) / len(v)) for e, v in sorted(epochs.items())]) for t, epochs in by_epoch.items()}


# ----------------------------------------------------------------------------------------------- figures

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


@dataclass
class ReportResult:
    html: Path
    figures: list[Figure]
    notes: list[str]
    verdicts: dict[str, str]  # per condition; in a comparison per "study: condition"
    snapshot: bool  # a study had not finished
    studies: list[str] = field(default_factory=list)  # the studies' legend entries (comparison)


def write_report(study_dir: Path | str, *, out: Path | None = None) -> ReportResult:
    """Write ``report.html`` and ``report/*.png`` (+ ``report/figures.json``) for a study folder."""
    study_dir = Path(study_dir)
    html_path = Path(out) if out else study_dir / REPORT_HTML
    return _write(View([load_study(study_dir)]), html_path, html_path.parent / FIGURES_DIR)


def write_comparison(study_dirs: Sequence[Path | str], *, out: Path | None = None) -> ReportResult:
    """Several studies side by side in one report (default ``./report-compare.html``, the PNGs and
    ``figures.json`` in a folder named after it): the same figures, one colour per study, conditions matched
    by their values. The studies may differ in dataset, teacher and student, but not in task: a linear
    regression study is not compared with classification studies."""
    if len(study_dirs) < 2:
        raise UsageError("a comparison needs at least two study folders")
    studies = [load_study(Path(d)) for d in study_dirs]
    regression = [str(d.path) for d in studies if d.regression]
    if regression and len(regression) < len(studies):
        classification = [str(d.path) for d in studies if not d.regression]
        raise UsageError(f"cannot compare the linear regression (MSE) study {', '.join(regression)} with the "
                         f"classification (accuracy) study {', '.join(classification)}: compare like with like")
    html_path = Path(out) if out else Path(COMPARE_HTML)
    folder = html_path.with_suffix("") if html_path.suffix else html_path.with_name(f"{html_path.name}-figures")
    return _write(View(studies), html_path, folder)


@dataclass
class _Section:
    """What the report says about one study besides the figures."""

    data: StudyData
    label: str
    color: str
    verdicts: dict[str, str]
    notes: list[str]


def _write(view: View, html_path: Path, folder: Path) -> ReportResult:
    import matplotlib

    matplotlib.use("Agg")
    folder.mkdir(parents=True, exist_ok=True)
    sections = []
    for data, label, color in zip(view.studies, view.labels, view.colors):
        verdicts, verdict_note = _verdicts(data.path)
        study_notes = [verdict_note] if verdict_note else []
        if not data.runs:
            study_notes.append("No run has reported an epoch yet: the figures appear once trials report results.")
        sections.append(_Section(data, label, color, verdicts, study_notes))
    figures, notes = [], []
    for make in _panels(view):
        built = make(view, folder)
        if isinstance(built, Figure):
            figures.append(built)
        elif built:
            notes.append(built)
    manifest: dict[str, Any] = {"alpha_label": ALPHA_LABEL, "figures": [
        {"name": f.name, "file": f.file.name, "title": f.title, "axes": f.axes, "legend": f.legend,
         "notes": f.notes}
        for f in figures]}
    if view.compare:
        manifest["studies"] = [{"label": s.label, "name": s.data.spec.name, "path": str(s.data.path),
                                "color": s.color} for s in sections]
        verdicts = {f"{s.label}: {k}": v for s in sections for k, v in s.verdicts.items()}
        all_notes = notes + [f"{s.label}: {n}" for s in sections for n in s.notes]
    else:
        manifest["study"] = view.studies[0].spec.name
        verdicts = sections[0].verdicts
        notes = all_notes = sections[0].notes + notes
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    atomic_write(html_path, _html(view, figures, notes, sections), mode=None)
    return ReportResult(html=html_path, figures=figures, notes=all_notes, verdicts=verdicts,
                        snapshot=not all(d.finished for d in view.studies),
                        studies=view.labels if view.compare else [])


# ------------------------------------------------------------------------ what each colour of a figure is

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
        self.colors = [_color(i) for i in range(len(studies))]
        self.match_axes = _varying_axes(studies) if self.compare else []
        self.series: list[Series] = []
        for data, label, color in zip(studies, self.labels, self.colors):
            values = {c["key"]: c for c in data.meta.get("conditions", [])}
            for k, key in enumerate(data.conditions):
                if self.compare:
                    match = ",".join(f"{a}={values[key].get(a)}" for a in self.match_axes) or "all"
                    self.series.append(Series(data, key, match, label, f"{label}, {key}", color))
                else:
                    self.series.append(Series(data, key, key, key, key, _color(k)))
        self.matches = list(dict.fromkeys(s.match for s in self.series))

    @property
    def regression(self) -> bool:
        return self.studies[0].regression

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


def _titled(title: str, cell: Cell) -> str:
    return f"{title} ({cell.title})" if cell.title else title


# ------------------------------------------------------------------------------------------------ panels

Panel = Callable[[View, Path], "Figure | str | None"]


def _panels(view: View) -> list[Panel]:
    if view.regression:
        return [_mse_vs_alpha, _importances, _search_progress]
    return [_accuracy_vs_alpha, _alpha_temperature, _learning_curves, _importances, _per_class, _flips,
            _teacher_vs_student, _search_progress]


def _accuracy_vs_alpha(view: View, folder: Path) -> Figure | str | None:
    if not view.any_runs():
        return None
    cells = view.cells(split=False)
    fig, axes = _grid(len(cells), (8, 5), (6.4, 4.4))
    for axis, cell in zip(axes, cells):
        for series in cell.series:
            _alpha_series(axis, series, "test")
        axis.set_xlabel(ALPHA_LABEL)
        axis.set_ylabel("test accuracy (at best validation epoch)")
        axis.set_title(cell.title or "Test accuracy vs alpha (lines join one temperature)")
    view.legends(fig, axes, on=axes, title="condition")
    return _save(fig, folder, "accuracy_vs_alpha", "Test accuracy vs alpha",
                 "Each point is a run (one seed) at its best validation epoch; a square with a bar is the mean of a "
                 f"configuration's complete runs with a {CONFIDENCE:.0%} t-interval over seeds. Lines join only "
                 "configurations of the same temperature T (labelled), never points of different T. "
                 "Hollow points: running or pruned trials (not in the means).")


def _mse_vs_alpha(view: View, folder: Path) -> Figure | str | None:
    if not view.any_runs():
        return None
    cells = view.cells(split=False)
    fig, axes = _subplots(len(cells), 2, (12, 4.8 * len(cells)))
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
            axis.set_title(_titled(title, cell))
    view.legends(fig, axes, on=axes[1::2], title="condition")
    return _save(fig, folder, "mse_vs_alpha", "Linear task: MSE vs alpha",
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
            mean, half = _mean_interval(values)
            by_temperature.setdefault(config.temperature, []).append((config.alpha, mean, half))
    label: str | None = series.label
    for temperature, points in by_temperature.items():
        x, mean, half = (list(v) for v in zip(*points))
        ax.errorbar(x, mean, yerr=half, color=color, marker="s", markersize=4, capsize=2, linewidth=0,
                    elinewidth=1, label=label)
        label = None
        if len(points) > 1:  # the same T: a line means something (the T-free linear task has one group)
            ax.plot(x, mean, color=color, linewidth=1.2, alpha=0.8)
            if temperature is not None:
                ax.annotate(f"T={temperature:.3g}", (x[-1], mean[-1]), textcoords="offset points", xytext=(4, 4),
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
    fig, axes = _subplots(rows, cols, (5.2 * cols, 4.4 * rows))
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
        configs = [c for c in series.data.configurations(series.condition) if c.temperature is not None]
        sums = np.zeros((HEATMAP_BINS, HEATMAP_BINS))
        counts = np.zeros((HEATMAP_BINS, HEATMAP_BINS))
        for c in configs:
            if finite(c.mean()):
                i = min(max(np.searchsorted(t_edges, c.temperature, side="right") - 1, 0), HEATMAP_BINS - 1)
                j = min(max(np.searchsorted(a_edges, c.alpha, side="right") - 1, 0), HEATMAP_BINS - 1)
                sums[i, j] += c.mean()
                counts[i, j] += 1
        grid = np.ma.masked_where(counts == 0, sums / np.maximum(counts, 1))
        mesh = axis.pcolormesh(a_edges, t_edges, grid, cmap="viridis", vmin=vmin, vmax=vmax, shading="flat")
        edge = series.color if view.compare else "black"
        scored = [c for c in configs if finite(c.mean())]
        pending = [c for c in configs if not finite(c.mean())]
        axis.scatter([c.alpha for c in scored], [c.temperature for c in scored], c=[c.mean() for c in scored],
                     cmap="viridis", vmin=vmin, vmax=vmax, edgecolors=edge, s=30, zorder=3, clip_on=False,
                     label=series.label)
        if pending:
            axis.scatter([c.alpha for c in pending], [c.temperature for c in pending], facecolors="none",
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
    figure = _save(fig, folder, "alpha_temperature", "Objective over alpha and temperature",
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
    fig, axes = _grid(len(tiles), (8, 4.8), (6.4, 4.4))
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
    figure = _save(fig, folder, "learning_curves", "Learning curves and early stopping",
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
    fig, axes = _subplots(1, len(cells), (6.5 * len(cells), (0.6 + 0.3 * (k - 1)) * len(params) + 2.2))
    for axis, cell in zip(axes, cells):
        names = [p for p in params if any(p in found[s] for s in cell.series)][::-1]
        y = np.arange(len(names))
        height = 0.8 / len(cell.series)
        for j, series in enumerate(cell.series):
            offset = ((len(cell.series) - 1) / 2 - j) * height  # the first study on top
            axis.barh(y + offset, [found[series].get(p, math.nan) for p in names], height=height,
                      label=series.label, **view.bar_style(series, "best"))
        axis.set_yticks(y, [_PARAM_LABELS.get(p, p) for p in names])
        axis.set_xlabel("importance (fANOVA, share of objective variance)")
        axis.set_title(cell.title)
        axis.set_xlim(0, 1)
    view.legends(fig, axes, on=[])
    figure = _save(fig, folder, "importances", "Optuna parameter importances",
                   "fANOVA importances of the searched parameters for each condition's Optuna study "
                   f"(complete trials only; conditions with at least {MIN_IMPORTANCE_TRIALS}).")
    figure.notes = notes
    return figure


def _condition_importances(data: StudyData, condition: str, storage: Any) -> tuple[dict[str, float] | None, str]:
    import optuna

    from kdtune.rules import optuna_study_name

    try:
        study = optuna.load_study(study_name=optuna_study_name(data.spec.name, condition), storage=storage)
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
    from kdtune.optuna_storage import make_storage
    from kdtune.study_folder import StudyFolder

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


def _per_class(view: View, folder: Path) -> Figure | str | None:
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
    fig, axes = _subplots(len(cells), 1, (10, 3.2 * len(cells)))
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
    figure = _save(fig, folder, "per_class", "Per-class test accuracy: best configuration vs no distillation",
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


def _flips(view: View, folder: Path) -> Figure | str | None:
    cells = view.cells(split=False, keep=_has_flips)
    if not cells:
        return f"No correction/memorisation panel: {view.nowhere('no condition has flipped training labels')}."
    fig, axes = _subplots(len(cells), 2, (12, 4.8 * len(cells)))
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
            axis.set_title(_titled(f"Flipped-label {what} vs alpha", cell))
    view.legends(fig, axes, on=axes[1::2])
    figure = _save(fig, folder, "flips", "Flipped-label correction and memorisation vs alpha",
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


def _teacher_vs_student(view: View, folder: Path) -> Figure | str | None:
    import numpy as np

    bars: dict[Series, list[tuple[float, float | None]]] = {}
    for series in view.series:
        teacher = ((series.data.teachers.get(series.condition) or {}).get("diagnostics") or {}).get("test_accuracy")
        base, best = series.data.no_distillation(series.condition), series.data.best(series.condition)
        bars[series] = [(_nan(teacher), None), _mean_test(base), _mean_test(best)]
    if not any(finite(v) for b in bars.values() for v, _ in b[:2]):
        return "No teacher vs student panel: no teacher diagnostics and no complete baseline yet."
    cells = view.cells()
    roles = (("teacher", "teacher"), ("baseline", "student, no distillation (alpha = 1)"),
             ("best", "student, best on validation"))
    k = max(len(c.series) for c in cells)
    fig, axes = _subplots(1, 1, (max(6.0, 2.2 * len(cells) * k), 4.8))
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
    axes[0].set_ylim(0.0, 1.15)
    axes[0].set_xticks(np.arange(len(cells)), [c.title for c in cells], rotation=15)
    axes[0].set_xlabel("condition")
    axes[0].set_ylabel("test accuracy")
    axes[0].set_title("Teacher vs student per condition")
    view.legends(fig, axes, on=axes, styles=tuple((text, role) for role, text in roles),
                 loc="upper center", ncol=3, frameon=False)
    figure = _save(fig, folder, "teacher_vs_student", "Teacher vs student test accuracy",
                   "The teacher's test accuracy at its selected checkpoint (teachers.json), the student trained "
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
    return _mean_interval(tests) if tests else (math.nan, 0.0)


def _search_progress(view: View, folder: Path) -> Figure | str | None:
    from matplotlib.ticker import MaxNLocator

    if not any(d.trials for d in view.studies):
        return "No search-progress panel: no trial has ended yet."
    cells = view.cells(split=False)
    fig, axes = _grid(len(cells), (8, 4.8), (6.4, 4.4))
    for axis, cell in zip(axes, cells):
        for series in cell.series:
            _progress_series(axis, series)
        axis.set_xlabel("trial index (order of ending, per condition)")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.set_ylabel(f"best {view.objective_label} so far")
        axis.set_title(_titled("Search progress", cell))
    view.legends(fig, axes, on=axes)
    caption = ("The best objective of complete trials so far, per condition; dots are each trial's objective "
               "(hollow: pruned or failed, not counted).")
    running = sum(d.running_trials for d in view.studies)
    if running:
        caption += f" {running} running trial(s) are not shown yet."
    figure = _save(fig, folder, "search_progress", "Search progress", caption)
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


# ----------------------------------------------------------------------------------- figure utilities

def _subplots(rows: int, cols: int, size: tuple[float, float]) -> tuple[MplFigure, list[Axes]]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False, layout="constrained")
    return fig, list(axes.flat)


def _grid(n: int, one: tuple[float, float], each: tuple[float, float]) -> tuple[MplFigure, list[Axes]]:
    """``n`` subplots: one of size ``one``, or up to three a row of size ``each``."""
    if n == 1:
        return _subplots(1, 1, one)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = _subplots(rows, cols, (each[0] * cols, each[1] * rows))
    for axis in axes[n:]:
        axis.set_visible(False)
    return fig, axes[:n]


def _save(fig: MplFigure, folder: Path, name: str, title: str, caption: str) -> Figure:
    import matplotlib.pyplot as plt

    path = folder / f"{name}.png"
    fig.savefig(path, dpi=DPI)
    axes = [_axis_info(ax) for ax in fig.axes if ax.get_visible()]
    legend = [t.get_text() for found in fig.legends for t in found.get_texts()]
    plt.close(fig)
    return Figure(name=name, title=title, caption=caption, file=path, axes=axes, legend=legend)


def _axis_info(ax: Axes) -> dict[str, Any]:
    return {"xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(), "title": ax.get_title(),
            "ylim": [float(v) for v in ax.get_ylim()],
            "xticklabels": [t.get_text() for t in ax.get_xticklabels()],
            "yticklabels": [t.get_text() for t in ax.get_yticklabels()],
            "series": ax.get_legend_handles_labels()[1],
            "legend": [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []}


def _color(index: int) -> str:
    palette = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
               "#bcbd22", "#17becf")
    return palette[index % len(palette)]


def _mean_interval(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its t-interval (0 for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    from scipy import stats

    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)) * sd / math.sqrt(n)


# ------------------------------------------------------------------------------------------ verdicts, HTML

def _verdicts(study_dir: Path) -> tuple[dict[str, str], str | None]:
    """Per condition, the verdict of :func:`kdtune.recommendation.recommend` on this study alone (or a note why
    there is none)."""
    from kdtune.errors import KdtuneError
    from kdtune.recommendation import recommend

    try:
        result = recommend([study_dir])
    except KdtuneError as exc:
        return {}, f"No recommendation yet: {exc}"
    except Exception as exc:  # the report stands without verdicts
        return {}, f"No recommendation: kdtune.recommendation failed ({type(exc).__name__}: {one_line(exc, MAX_NOTE)})"
    return {c["key"]: (c.get("verdict") or {}).get("text", "") for c in result.get("conditions", [])}, None


_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:2em auto;max-width:1200px;
color:#222;padding:0 1em;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:.2em;
margin-top:1.8em}
.status{color:#555}.snapshot{background:#fff4d6;border:1px solid #e6c36a;padding:.5em .8em;border-radius:4px}
img{max-width:100%;height:auto;border:1px solid #eee}.caption{color:#444;font-size:.92em}
table{border-collapse:collapse;font-size:.92em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f6f6f6}.notes li{color:#555;font-size:.92em}footer{margin-top:3em;color:#888;font-size:.85em}
.swatch{display:inline-block;width:.9em;height:.9em;margin-right:.4em;vertical-align:-.1em;border-radius:2px}
"""
_SCORING = ("Each run is scored at its best validation epoch (the validation objective selects, the test metric "
            "at that epoch is reported).")


def _html(view: View, figures: list[Figure], notes: list[str], sections: list[_Section]) -> str:
    from kdtune._version import __version__

    esc = html.escape
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    alpha = f"alpha is the {esc(ALPHA_LABEL[len('alpha ('):-1])}."
    if view.compare:
        title = "comparison of " + ", ".join(view.labels)
        matched = (f"conditions are matched across studies by {', '.join(view.match_axes)}"
                   if view.match_axes else "each study has one condition: one panel shows them all")
        header = [f"<h1>kdtune {esc(title)}</h1>",
                  f"<p>{alpha} {_SCORING} One colour per study in every figure; {esc(matched)}. Each study's "
                  "recommendation (its own, not pooled) is in its section below the figures.</p>"]
        summary = "<section id=\"studies\"><h2>Studies</h2>" + _studies_table(sections) + "</section>"
    else:
        one = sections[0]
        title = one.data.spec.name
        header = [f"<h1>kdtune study {esc(title)}</h1>", _study_status(one.data, now), f"<p>{alpha} {_SCORING}</p>"]
        summary = ("<section id=\"summary\"><h2>Conditions</h2>" + _summary_table(one.data, one.verdicts)
                   + "</section>")
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>kdtune report: {esc(title)}</title><style>{_CSS}</style></head><body>",
             "<header>" + "\n".join(header) + "</header>", summary]
    for figure in figures:
        encoded = base64.b64encode(figure.file.read_bytes()).decode("ascii")
        parts.append(f"<section id=\"fig-{esc(figure.name)}\"><h2>{esc(figure.title)}</h2>"
                     f"<img alt=\"{esc(figure.title)}\" src=\"data:image/png;base64,{encoded}\">"
                     f"<p class=\"caption\">{esc(figure.caption)}</p>"
                     + _list(figure.notes) + "</section>")
    if view.compare:
        for i, section in enumerate(sections, start=1):
            parts.append(f"<section id=\"study-{i}\"><h2>{_swatch(section.color)}Study {esc(section.label)}</h2>"
                         + _study_status(section.data, now) + _summary_table(section.data, section.verdicts)
                         + _list(section.notes) + _trials_table(section.data) + "</section>")
    else:
        parts.append("<section id=\"trials\"><h2>Trials</h2>" + _trials_table(sections[0].data) + "</section>")
    if notes:
        parts.append("<section id=\"notes\"><h2>Notes</h2>" + _list(notes) + "</section>")
    sources = ", ".join(str(d.path) for d in view.studies)
    parts.append(f"<footer>kdtune {esc(__version__)}, {esc(now)}, from {esc(sources)}</footer></body></html>\n")
    return "\n".join(parts)


def _study_status(data: StudyData, now: str) -> str:
    text = f"<p class=\"status\">{html.escape(_status_line(data))}</p>"
    if not data.finished:
        text += (f"\n<p class=\"snapshot\">Snapshot taken {html.escape(now)}: the study has not finished (still "
                 f"running, or interrupted). {data.running_trials} trial(s) had not ended; their runs are drawn "
                 "hollow and left out of means and selections.</p>")
    return text


def _status_line(data: StudyData) -> str:
    counts: dict[str, int] = {}
    for trial in data.trials:
        counts[trial["state"]] = counts.get(trial["state"], 0) + 1
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())) or "no trial ended yet"
    finished = "finished" if data.finished else "not finished"
    cut = " (cut short by budget.max_wall_minutes)" if data.meta.get("cut_short") else ""
    return (f"{data.spec.task} study on {data.spec.dataset.name}, objective {data.spec.objective_name}, "
            f"{len(data.conditions)} condition(s), {finished}{cut}: {states}, {data.running_trials} running.")


def _summary_table(data: StudyData, verdicts: dict[str, str]) -> str:
    esc = html.escape
    test_name = "test excess MSE" if data.regression else "test accuracy"
    head = ("<table><tr><th>condition</th><th>best on validation</th>"
            f"<th>{esc(data.objective_label)}</th><th>{test_name}</th><th>runs</th><th>verdict</th></tr>")
    rows = []
    for condition in data.conditions:
        best = data.best(condition)
        runs = [r for r in data.runs if r.condition == condition]
        verdict = verdicts.get(condition, "")
        if best is None:
            cells = ["-", "-", "-"]
        else:
            cells = [best.describe(), f"{best.mean():.4g}", f"{best.mean('test'):.4g}"]
        rows.append(f"<tr><td>{esc(condition)}</td>" + "".join(f"<td>{esc(c)}</td>" for c in cells)
                    + f"<td>{len(runs)}</td><td>{esc(verdict)}</td></tr>")
    return head + "".join(rows) + "</table>"


def _trials_table(data: StudyData) -> str:
    """Every ended trial, by condition and then objective (best first), in a folded table."""
    esc = html.escape
    test_name = "test excess MSE" if data.regression else "test accuracy"
    tests: dict[str, list[float]] = {}
    for run in data.runs:
        if finite(run.test):
            tests.setdefault(run.trial_id, []).append(run.test)
    order = {c: i for i, c in enumerate(data.conditions)}
    trials = sorted(data.trials, key=lambda t: (order.get(t["condition"], len(order)), t["state"] != "COMPLETE",
                                                -data.sign * (t["objective"] if finite(t["objective"]) else 0.0)))
    rows = []
    for t in trials:
        params = json.loads(t["params"])
        temperature = params.get("temperature")
        test = tests.get(t["trial_id"])
        cells = [t["condition"], t["trial_id"], t["phase"], f"{params['alpha']:.3g}",
                 "-" if temperature is None else f"{temperature:.3g}", t["state"], str(t["epochs_done"]),
                 f"{t['objective']:.4g}" if finite(t["objective"]) else "-",
                 f"{sum(test) / len(test):.4g}" if test else "-"]
        rows.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in cells) + "</tr>")
    head = ("<table><tr><th>condition</th><th>trial</th><th>phase</th><th>alpha</th><th>T</th><th>state</th>"
            f"<th>epochs</th><th>{esc(data.objective_label)}</th><th>{test_name} (mean of runs)</th></tr>")
    return (f"<details><summary>{len(rows)} ended trials: parameters, state, objective (mean over seeds, each at "
            "its best validation epoch) and test metric at the same epochs</summary>"
            + head + "".join(rows) + "</table></details>")


def _studies_table(sections: list[_Section]) -> str:
    esc = html.escape
    rows = ["<table><tr><th>study</th><th>name</th><th>dataset</th><th>teacher</th><th>student</th>"
            "<th>conditions</th><th>status</th><th>folder</th></tr>"]
    for s in sections:
        spec = s.data.spec
        cells = [spec.name, spec.dataset.name, _model_words(spec.teacher), _model_words(spec.student),
                 ", ".join(s.data.conditions), "finished" if s.data.finished else "not finished", str(s.data.path)]
        rows.append(f"<tr><td>{_swatch(s.color)}{esc(s.label)}</td>" + "".join(f"<td>{esc(c)}</td>" for c in cells)
                    + "</tr>")
    return "".join(rows) + "</table>"


def _model_words(section: Any) -> str:
    kwargs = getattr(section, "kwargs", None)
    return f"{section.arch} {json.dumps(dict(kwargs))}" if kwargs else str(section.arch)


def _swatch(color: str) -> str:
    return f"<span class=\"swatch\" style=\"background:{color}\"></span>"


def _list(items: list[str]) -> str:
    return "<ul class=\"notes\">" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>" if items else ""


# --------------------------------------------------------------------------------------- the W&B Report

def build_wandb_report(study_dir: Path | str, *, entity: str, project: str | None = None) -> Any:
    """The W&B Report of a study, built without network (call ``.save()`` to publish it).

    Run sets filter on group = study name and, per condition, on ``config.condition_id`` (the condition key
    with ``:`` for ``=``, which W&B's filter expressions cannot hold inside a value); teachers on job type
    ``teacher``.
    """
    try:
        import wandb_workspaces.reports.v2 as wr
    except ImportError:
        raise UsageError("W&B Reports need the wandb-workspaces package: pip install 'kdtune[wandb-reports]'") from None

    from kdtune.tracking import condition_id

    data = load_study(Path(study_dir))
    spec = data.spec
    project = project or (spec.tracking.wandb.project if spec.tracking.wandb else "kdtune")
    group = f"Group = '{spec.name}'"
    select, test = ("val_loss", "test_excess_mse") if data.regression else ("val_accuracy", "test_accuracy")

    def runset(name: str, extra: str) -> Any:
        return wr.Runset(entity=entity, project=project, name=name, filters=f"{group} and {extra}")

    def condition_runset(condition: str) -> Any:
        return runset(condition, f"Config('condition_id') = '{condition_id(condition)}'")

    def alpha_scatter(metric: str, what: str) -> Any:
        return wr.ScatterPlot(title=f"{what} vs {ALPHA_LABEL}", x=wr.Config("alpha"), y=wr.SummaryMetric(metric))

    verdicts, _ = _verdicts(Path(study_dir))
    blocks: list[Any] = [
        wr.H1(f"kdtune study {spec.name}"),
        wr.P(f"alpha is the {ALPHA_LABEL[len('alpha ('):-1]}. Every run's summary holds its metrics at its best "
             f"validation epoch; the objective is {spec.objective_name}."),
    ]
    if verdicts:
        blocks.append(wr.MarkdownBlock("\n".join(f"* **{k}**: {v}" for k, v in verdicts.items())))
    blocks += [wr.H2("All conditions"), wr.PanelGrid(
        runsets=[condition_runset(c) for c in data.conditions],
        panels=[alpha_scatter(test, "test metric at the best validation epoch"),
                alpha_scatter(select, "validation objective")])]
    for condition in data.conditions:
        panels = [alpha_scatter(test, "test metric at the best validation epoch"),
                  wr.LinePlot(title=f"{select} per epoch", x="Step", y=[select]),
                  wr.ParallelCoordinatesPlot(title="configurations", columns=[
                      wr.ParallelCoordinatesPlotColumn(metric=wr.Config(p)) for p in spec.search
                  ] + [wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(m)) for m in (select, test)])]
        if len(spec.search) > 1:
            panels.append(wr.ParameterImportancePlot(with_respect_to=select))
        if "temperature" in spec.search:
            panels.append(wr.ScatterPlot(title=f"temperature vs {ALPHA_LABEL}", x=wr.Config("alpha"),
                                         y=wr.Config("temperature")))
        if any(r.condition == condition and finite(r.row.get("correction_rate")) for r in data.runs):
            panels += [alpha_scatter("correction_rate", "flipped-label correction"),
                       alpha_scatter("memorisation_rate", "flipped-label memorisation")]
        blocks += [wr.H2(f"Condition {condition}"), wr.PanelGrid(runsets=[condition_runset(condition)],
                                                                 panels=panels)]
    if not data.regression:
        blocks += [wr.H2("Teachers"), wr.PanelGrid(
            runsets=[runset("teachers", "JobType = 'teacher'")],
            panels=[wr.LinePlot(title="teacher accuracy per epoch", x="Step", y=["val_accuracy", "test_accuracy"])])]
    return wr.Report(entity=entity, project=project, title=f"kdtune: {spec.name}",
                     description=f"alpha/temperature study {spec.name}, one section per condition", blocks=blocks)


def publish_wandb_report(study_dir: Path | str, *, entity: str | None = None) -> str:
    """Save the study's W&B Report to the W&B server (network, API key) and return its URL."""
    import wandb

    spec = load_study(Path(study_dir)).spec
    entity = entity or (spec.tracking.wandb.entity if spec.tracking.wandb else None) or wandb.Api().default_entity
    if not entity:
        raise StudyError("no W&B entity: set tracking.wandb.entity in the spec or log in with `wandb login`")
    report = build_wandb_report(study_dir, entity=entity)
    report.save()
    return str(report.url)


# ----------------------------------------------------------------------------------------------- helpers



def _nan(value: Any) -> float:
    return float(value) if finite(value) else math.nan




__all__ = ["ALPHA_LABEL", "ReportResult", "Figure", "StudyData", "build_wandb_report", "load_study",
           "publish_wandb_report", "write_report"]
