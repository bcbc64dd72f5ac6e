"""The study report: ``DIR/report.html`` (self-contained: figures as base64 PNGs, inline CSS, opens offline),
the PNGs behind it in ``DIR/report/`` with ``figures.json`` (each figure's axes and labels), and the same
comparison as a W&B Report (:func:`build_wandb_report`, published by ``kdtune report DIR --wandb``).

alpha is the weight on the true labels: alpha = 1 means no distillation. Every axis that shows alpha is
labelled :data:`ALPHA_LABEL`.

A *run* (one seed of one trial) is scored the way ``conventions.md`` says: the validation objective at the
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

Matplotlib with the Agg backend; no Ray, no W&B (except in :func:`build_wandb_report`).
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

from kdtune.errors import StudyError
from kdtune.errors import UsageError


if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure as MplFigure

    from kdtune.spec import StudySpec

#: The one label of every axis that shows alpha (tests check that every figure uses it).
ALPHA_LABEL = "alpha (weight on true labels; 1 = no distillation)"
REPORT_HTML = "report.html"
FIGURES_DIR = "report"
MANIFEST = "figures.json"
PARAMS = ("alpha", "temperature", "lr", "batch_size", "epochs")
STATES_IN_MEANS = ("COMPLETE",)
CONFIDENCE = 0.95
HEATMAP_BINS = 8
DPI = 100
RECOMMEND_HOOK = ("Recommendation hook: kdtune.recommend.recommend() is not available in this installation; "
                  "its per-condition verdicts appear here when it is.")
_PARAM_LABELS = {"alpha": ALPHA_LABEL, "temperature": "temperature T"}


# ------------------------------------------------------------------------------------------------ reading

@dataclass(frozen=True)
class Run:
    """One seed of one trial, at its best validation epoch so far."""

    condition: str
    trial_id: str
    phase: str
    state: str  # COMPLETE | PRUNED | FAIL | RUNNING
    seed: int
    params: tuple[Any, ...]  # values of PARAMS
    objective: float
    test: float
    row: dict[str, Any]

    @property
    def alpha(self) -> float:
        return float(self.params[0])

    @property
    def temperature(self) -> float | None:
        return None if self.params[1] is None else float(self.params[1])

    @property
    def in_means(self) -> bool:
        return self.state in STATES_IN_MEANS


@dataclass
class Configuration:
    """One point of the search space in one condition, with its runs."""

    condition: str
    params: tuple[Any, ...]
    runs: list[Run] = field(default_factory=list)

    @property
    def alpha(self) -> float:
        return float(self.params[0])

    @property
    def temperature(self) -> float | None:
        return None if self.params[1] is None else float(self.params[1])

    def complete(self) -> list[Run]:
        return [r for r in self.runs if r.in_means]

    def mean(self, attr: str = "objective") -> float:
        values = [getattr(r, attr) for r in self.complete() if _finite(getattr(r, attr))]
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
        scored = [c for c in self.configurations(condition) if _finite(c.mean())]
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
    from kdtune.spec import StudySpec
    from kdtune.study import load_study_json

    study_dir = Path(study_dir)
    meta = load_study_json(study_dir)
    spec = StudySpec.model_validate(meta["spec"])
    teachers_file = study_dir / "teachers.json"
    teachers = json.loads(teachers_file.read_text()) if teachers_file.exists() else {}
    select = "val_loss" if spec.task == "regression" else "val_accuracy"
    test = "test_excess_mse" if spec.task == "regression" else "test_accuracy"
    sign = -1.0 if spec.task == "regression" else 1.0
    rows = read_results(study_dir).to_pylist()
    by_run: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        by_run.setdefault((row["trial_id"], row["seed"]), []).append(row)
    runs = []
    for (trial_id, seed), run_rows in by_run.items():
        scored = [r for r in run_rows if _finite(r[select])]
        if not scored:
            continue
        best = max(scored, key=lambda r: (sign * r[select], -r["epoch"]))
        runs.append(Run(condition=best["condition"], trial_id=trial_id, phase=best["phase"],
                        state=best["trial_state"], seed=int(seed), params=tuple(_clean(best[p]) for p in PARAMS),
                        objective=float(best[select]), test=_float(best[test]), row=best))
    trials = read_trials(study_dir).to_pylist()
    ended = {t["trial_id"] for t in trials}
    running = len({r["trial_id"] for r in rows if r["trial_id"] not in ended})
    return StudyData(path=study_dir, meta=meta, spec=spec, conditions=[c["key"] for c in meta["conditions"]],
                     teachers=teachers, runs=runs, trials=trials, running_trials=running)


# ----------------------------------------------------------------------------------------------- figures

@dataclass
class Figure:
    """One PNG of the report and what its axes show."""

    name: str
    title: str
    caption: str
    file: Path
    axes: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)


@dataclass
class ReportResult:
    html: Path
    figures: list[Figure]
    notes: list[str]
    verdicts: dict[str, str]
    snapshot: bool


def write_report(study_dir: Path | str, *, out: Path | None = None) -> ReportResult:
    """Write ``report.html`` and ``report/*.png`` (+ ``report/figures.json``) for a study folder."""
    import matplotlib

    matplotlib.use("Agg")
    study_dir = Path(study_dir)
    data = load_study(study_dir)
    html_path = Path(out) if out else study_dir / REPORT_HTML
    folder = html_path.parent / FIGURES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    if not data.runs:
        notes.append("No run has reported an epoch yet: the figures appear once trials report results.")
    figures = []
    for make in _panels(data):
        built = make(data, folder)
        if isinstance(built, Figure):
            figures.append(built)
        elif built:
            notes.append(built)
    verdicts, verdict_note = _verdicts(study_dir)
    if verdict_note:
        notes.insert(0, verdict_note)
    manifest = {"study": data.spec.name, "alpha_label": ALPHA_LABEL, "figures": [
        {"name": f.name, "file": f.file.name, "title": f.title, "axes": f.axes} for f in figures]}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    _atomic_write(html_path, _html(data, figures, notes, verdicts))
    return ReportResult(html=html_path, figures=figures, notes=notes, verdicts=verdicts,
                        snapshot=not data.finished)


Panel = Callable[[StudyData, Path], "Figure | str | None"]


def _panels(data: StudyData) -> list[Panel]:
    if data.regression:
        return [_mse_vs_alpha, _importances, _search_progress]
    return [_accuracy_vs_alpha, _alpha_temperature, _importances, _per_class, _flips, _teacher_vs_student,
            _search_progress]


def _accuracy_vs_alpha(data: StudyData, folder: Path) -> Figure | str | None:
    if not data.runs:
        return None
    fig, ax = _subplots(1, 1, (8, 5))
    for i, condition in enumerate(data.conditions):
        _alpha_series(ax[0], data, condition, i, "test")
    ax[0].set_xlabel(ALPHA_LABEL)
    ax[0].set_ylabel("test accuracy (at best validation epoch)")
    ax[0].set_title("Test accuracy vs alpha, one line per condition")
    _legend(ax[0], data)
    return _save(fig, folder, "accuracy_vs_alpha", "Test accuracy vs alpha",
                 "Each point is a run (one seed) at its best validation epoch; the line joins the mean of each "
                 f"configuration's complete runs and the band is a {CONFIDENCE:.0%} t-interval over seeds. "
                 "Hollow points: running or pruned trials (not in the means).")


def _mse_vs_alpha(data: StudyData, folder: Path) -> Figure | str | None:
    if not data.runs:
        return None
    fig, ax = _subplots(1, 2, (12, 4.8))
    for i, condition in enumerate(data.conditions):
        _alpha_series(ax[0], data, condition, i, "objective")
        _alpha_series(ax[1], data, condition, i, "test")
        star = ((data.teachers.get(condition) or {}).get("linear") or {}).get("alpha_star")
        if _finite(star):
            for axis in ax:
                axis.axvline(star, color=_color(i), linestyle="--", linewidth=1,
                             label=f"α* = {star:.3g} (closed form), {condition}")
    ax[0].set_ylabel("validation MSE (noisy targets; objective)")
    ax[1].set_ylabel("test excess MSE (vs noise-free targets)")
    for axis, title in zip(ax, ("Validation MSE vs alpha", "Test excess MSE vs alpha")):
        axis.set_xlabel(ALPHA_LABEL)
        axis.set_title(title)
    _legend(ax[1], data)
    return _save(fig, folder, "mse_vs_alpha", "Linear task: MSE vs alpha",
                 "Each point is a run (one seed); lines join configuration means with a "
                 f"{CONFIDENCE:.0%} t-interval band. Dashed: the closed-form optimum α* = B / (B + V) of the "
                 "same draws, where teachers.json records it.")


def _alpha_series(ax: Axes, data: StudyData, condition: str, index: int, attr: str) -> None:
    """Runs as points (hollow when not in the means), configuration means as a line with a t-interval band."""
    color = _color(index)
    runs = [r for r in data.runs if r.condition == condition and _finite(getattr(r, attr))]
    done = [r for r in runs if r.in_means]
    other = [r for r in runs if not r.in_means]
    ax.scatter([r.alpha for r in done], [getattr(r, attr) for r in done], s=14, color=color, alpha=0.6)
    if other:
        ax.scatter([r.alpha for r in other], [getattr(r, attr) for r in other], s=18, facecolors="none",
                   edgecolors=color, alpha=0.8)
    points = []
    for config in data.configurations(condition):
        values = [getattr(r, attr) for r in config.complete() if _finite(getattr(r, attr))]
        if values:
            mean, half = _mean_interval(values)
            points.append((config.alpha, mean, half))
    if points:
        x, mean, half = (list(v) for v in zip(*points))
        ax.plot(x, mean, color=color, marker="o", markersize=4, label=condition)
        ax.fill_between(x, [m - h for m, h in zip(mean, half)], [m + h for m, h in zip(mean, half)], color=color,
                        alpha=0.15, linewidth=0)


def _alpha_temperature(data: StudyData, folder: Path) -> Figure | str | None:
    search = data.spec.search
    if "temperature" not in search or "alpha" not in search:
        return "No alpha x temperature panel: temperature is not searched in this study."
    if not data.runs:
        return None
    import numpy as np

    n = len(data.conditions)
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig, axes = _subplots(rows, cols, (5.2 * cols, 4.4 * rows))
    t_spec, a_spec = search["temperature"], search["alpha"]
    a_edges = np.linspace(float(a_spec.low or 0.0), float(a_spec.high or 1.0), HEATMAP_BINS + 1)
    t_low, t_high = float(t_spec.low or 1.0), float(t_spec.high or 20.0)
    t_edges = (np.geomspace(t_low, t_high, HEATMAP_BINS + 1) if t_spec.log
               else np.linspace(t_low, t_high, HEATMAP_BINS + 1))
    values = [c.mean() for cond in data.conditions for c in data.configurations(cond) if _finite(c.mean())]
    vmin, vmax = (min(values), max(values)) if values else (0.0, 1.0)
    mesh = None
    for axis, condition in zip(axes, data.conditions):
        configs = [c for c in data.configurations(condition) if c.temperature is not None]
        sums = np.zeros((HEATMAP_BINS, HEATMAP_BINS))
        counts = np.zeros((HEATMAP_BINS, HEATMAP_BINS))
        for c in configs:
            if _finite(c.mean()):
                i = min(max(np.searchsorted(t_edges, c.temperature, side="right") - 1, 0), HEATMAP_BINS - 1)
                j = min(max(np.searchsorted(a_edges, c.alpha, side="right") - 1, 0), HEATMAP_BINS - 1)
                sums[i, j] += c.mean()
                counts[i, j] += 1
        grid = np.ma.masked_where(counts == 0, sums / np.maximum(counts, 1))
        mesh = axis.pcolormesh(a_edges, t_edges, grid, cmap="viridis", vmin=vmin, vmax=vmax, shading="flat")
        scored = [c for c in configs if _finite(c.mean())]
        pending = [c for c in configs if not _finite(c.mean())]
        axis.scatter([c.alpha for c in scored], [c.temperature for c in scored], c=[c.mean() for c in scored],
                     cmap="viridis", vmin=vmin, vmax=vmax, edgecolors="black", s=30, zorder=3, clip_on=False)
        if pending:
            axis.scatter([c.alpha for c in pending], [c.temperature for c in pending], facecolors="none",
                         edgecolors="black", s=30, zorder=3, clip_on=False)
        if t_spec.log:
            axis.set_yscale("log")
        axis.set_xlabel(ALPHA_LABEL)
        axis.set_ylabel("temperature T")
        axis.set_title(condition)
    for axis in axes[n:]:
        axis.set_visible(False)
    if mesh is not None:
        bar = fig.colorbar(mesh, ax=axes[:n])
        bar.set_label(data.objective_label)
    return _save(fig, folder, "alpha_temperature", "Objective over alpha and temperature",
                 f"The mean {data.objective_label} of each configuration's complete runs, averaged within "
                 f"{HEATMAP_BINS}x{HEATMAP_BINS} bins of the searched ranges; dots are the configurations "
                 "(hollow: no complete run yet).")


def _importances(data: StudyData, folder: Path) -> Figure | str | None:
    searched = [p for p in data.spec.search]
    if len(searched) < 2:
        return f"No parameter-importance panel: only {', '.join(searched)} is searched."
    storage, why = _optuna_storage(data)
    if storage is None:
        return f"No parameter-importance panel: {why}."
    import optuna

    from kdtune.search import optuna_study_name

    found: dict[str, dict[str, float]] = {}
    notes = []
    for condition in data.conditions:
        try:
            study = optuna.load_study(study_name=optuna_study_name(data.spec.name, condition), storage=storage)
        except Exception as exc:  # a missing study or an unreadable database: a note, not a failure
            notes.append(f"{condition}: no Optuna study readable ({_first_line(exc)})")
            continue
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if len(complete) < 2:
            notes.append(f"{condition}: too few complete trials for importances ({len(complete)}; at least 2)")
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                found[condition] = optuna.importance.get_param_importances(
                    study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
        except Exception as exc:
            notes.append(f"{condition}: importances could not be computed ({_first_line(exc)})")
    if not found:
        return "No parameter-importance panel: " + "; ".join(notes) + "."
    n = len(found)
    fig, axes = _subplots(1, n, (6.5 * n, 0.6 * len(searched) + 2.2))
    for axis, (condition, importances) in zip(axes, found.items()):
        names = [p for p in searched if p in importances][::-1]
        axis.barh([_PARAM_LABELS.get(p, p) for p in names], [importances[p] for p in names], color="#4c72b0")
        axis.set_xlabel("importance (fANOVA, share of objective variance)")
        axis.set_title(condition)
        axis.set_xlim(0, 1)
    figure = _save(fig, folder, "importances", "Optuna parameter importances",
                   "fANOVA importances of the searched parameters for each condition's Optuna study "
                   "(complete trials only).")
    figure.notes = notes
    return figure


def _optuna_storage(data: StudyData) -> tuple[Any, str]:
    from kdtune.search import make_storage

    url = data.meta.get("storage_url") or f"sqlite:///{data.path / 'optuna.db'}"
    if data.meta.get("storage_redacted"):
        url = os.environ.get("KDTUNE_STORAGE") or ""
        if not url:
            return None, "the Optuna storage URL has a password; set $KDTUNE_STORAGE to the full URL to include it"
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):])
        if not path.exists():
            path = data.path / "optuna.db"  # the study folder was moved
            if not path.exists():
                return None, "the study's Optuna database (optuna.db) is missing"
            url = f"sqlite:///{path}"
    try:
        return make_storage(url), ""
    except Exception as exc:
        from kdtune.secrets import redact_url

        return None, f"the Optuna storage {redact_url(url)} could not be opened ({_first_line(exc)})"


def _per_class(data: StudyData, folder: Path) -> Figure | str | None:
    pairs = []
    notes = []
    for condition in data.conditions:
        best, base = data.best(condition), data.no_distillation(condition)
        if best is None or base is None:
            notes.append(f"{condition}: no complete " + ("runs" if best is None else "alpha = 1 baseline"))
            continue
        pairs.append((condition, best, base))
    if not pairs:
        return "No per-class panel: " + "; ".join(notes) + "." if notes else None
    import numpy as np

    fig, axes = _subplots(len(pairs), 1, (10, 3.2 * len(pairs)))
    for axis, (condition, best, base) in zip(axes, pairs):
        best_acc, base_acc = _per_class_mean(best), _per_class_mean(base)
        x = np.arange(len(best_acc))
        axis.bar(x - 0.2, base_acc, width=0.4, color="#999999", label="no distillation (alpha = 1 baseline)")
        axis.bar(x + 0.2, best_acc, width=0.4, color="#4c72b0", label=f"best on validation ({best.describe()})")
        axis.set_xticks(x)
        axis.set_xlabel("class")
        axis.set_ylabel("test accuracy per class")
        axis.set_ylim(0.0, 1.15)
        axis.set_title(condition)
        axis.legend(fontsize=8, loc="upper center", ncol=2, frameon=False)
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


def _flips(data: StudyData, folder: Path) -> Figure | str | None:
    noisy = [c for c in data.conditions
             if any(r.condition == c and _finite(r.row.get("correction_rate")) for r in data.runs)]
    if not noisy:
        return "No correction/memorisation panel: no condition has flipped training labels."
    fig, axes = _subplots(1, 2, (12, 4.8))
    for i, condition in enumerate(data.conditions):
        if condition not in noisy:
            continue
        teacher = (data.teachers.get(condition) or {}).get("diagnostics") or {}
        for axis, key in zip(axes, ("correction_rate", "memorisation_rate")):
            _rate_series(axis, data, condition, i, key)
            if _finite(teacher.get(key)):
                axis.axhline(teacher[key], color=_color(i), linestyle=":", linewidth=1,
                             label=f"teacher, {condition}")
    for axis, what in zip(axes, ("correction", "memorisation")):
        axis.set_xlabel(ALPHA_LABEL)
        axis.set_ylabel(f"{what} rate of flipped training labels")
        axis.set_title(f"Flipped-label {what} vs alpha")
    axes[1].legend(fontsize=8)
    return _save(fig, folder, "flips", "Flipped-label correction and memorisation vs alpha",
                 "Share of the flipped training samples the student predicts as their clean label (correction) "
                 "or as their noisy label (memorisation), at each run's best validation epoch; lines join "
                 "configuration means, dotted lines are the teacher's rates.")


def _rate_series(ax: Axes, data: StudyData, condition: str, index: int, key: str) -> None:
    runs = [r for r in data.runs if r.condition == condition and _finite(r.row.get(key))]
    ax.scatter([r.alpha for r in runs if r.in_means], [r.row[key] for r in runs if r.in_means], s=12,
               color=_color(index), alpha=0.6)
    means = []
    for config in data.configurations(condition):
        values = [r.row[key] for r in config.complete() if _finite(r.row.get(key))]
        if values:
            means.append((config.alpha, sum(values) / len(values)))
    if means:
        ax.plot(*zip(*means), color=_color(index), marker="o", markersize=3, label=condition)


def _teacher_vs_student(data: StudyData, folder: Path) -> Figure | str | None:
    import numpy as np

    rows = []
    for condition in data.conditions:
        teacher = ((data.teachers.get(condition) or {}).get("diagnostics") or {}).get("test_accuracy")
        base, best = data.no_distillation(condition), data.best(condition)
        rows.append((condition, teacher, base, best))
    if not any(t is not None or b is not None for _, t, b, _ in rows):
        return "No teacher vs student panel: no teacher diagnostics and no complete baseline yet."
    fig, axes = _subplots(1, 1, (max(6.0, 2.2 * len(rows)), 4.8))
    x = np.arange(len(rows))
    width = 0.27
    series = [("teacher", "#dd8452", [_nan(t) for _, t, _, _ in rows], None),
              ("student, no distillation (alpha = 1)", "#999999", *_means([b for _, _, b, _ in rows])),
              ("student, best on validation", "#4c72b0", *_means([s for _, _, _, s in rows]))]
    for k, (label, color, values, errors) in enumerate(series):
        axes[0].bar(x + (k - 1) * width, values, width=width, color=color, label=label, yerr=errors, capsize=3)
    finite = [v for _, _, values, _ in series for v in values if _finite(v)]
    low = max(0.0, min(finite, default=0.0) - 0.05)
    axes[0].set_ylim(low, 1.0 + 0.15 * (1.0 - low))
    axes[0].set_xticks(x, [c for c, *_ in rows], rotation=15)
    axes[0].set_xlabel("condition")
    axes[0].set_ylabel("test accuracy")
    axes[0].set_title("Teacher vs student per condition")
    axes[0].legend(fontsize=8, loc="upper center", ncol=3, frameon=False)
    return _save(fig, folder, "teacher_vs_student", "Teacher vs student test accuracy",
                 "The teacher's test accuracy at its selected checkpoint (teachers.json), the student trained "
                 "alone (alpha = 1 baseline) and the best configuration on validation; students are means over "
                 f"complete runs with {CONFIDENCE:.0%} t-intervals.")


def _means(configs: list[Configuration | None]) -> tuple[list[float], list[float]]:
    values, errors = [], []
    for config in configs:
        tests = [r.test for r in config.complete() if _finite(r.test)] if config else []
        mean, half = _mean_interval(tests) if tests else (math.nan, 0.0)
        values.append(mean)
        errors.append(half)
    return values, errors


def _search_progress(data: StudyData, folder: Path) -> Figure | str | None:
    if not data.trials:
        return "No search-progress panel: no trial has ended yet."
    fig, axes = _subplots(1, 1, (8, 4.8))
    ax = axes[0]
    for i, condition in enumerate(data.conditions):
        ended = sorted((t for t in data.trials if t["condition"] == condition), key=lambda t: t["ended_at"])
        best, xs, ys = math.nan, [], []
        for n, trial in enumerate(ended, start=1):
            value = trial["objective"]
            if trial["state"] == "COMPLETE" and _finite(value):
                best = value if not _finite(best) else (max if data.sign > 0 else min)(best, value)
                ax.scatter([n], [value], s=14, color=_color(i), alpha=0.6)
            elif _finite(value):
                ax.scatter([n], [value], s=18, facecolors="none", edgecolors=_color(i))
            xs.append(n)
            ys.append(best)
        if xs:
            ax.step(xs, ys, where="post", color=_color(i), label=condition)
    ax.set_xlabel("trial index (order of ending, per condition)")
    ax.set_ylabel(f"best {data.objective_label} so far")
    ax.set_title("Search progress")
    ax.legend(fontsize=8)
    caption = ("The best objective of complete trials so far, per condition; dots are each trial's objective "
               "(hollow: pruned or failed, not counted).")
    if data.running_trials:
        caption += f" {data.running_trials} running trial(s) are not shown yet."
    return _save(fig, folder, "search_progress", "Search progress", caption)


# ----------------------------------------------------------------------------------- figure utilities

def _subplots(rows: int, cols: int, size: tuple[float, float]) -> tuple[MplFigure, list[Axes]]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False, layout="constrained")
    return fig, list(axes.flat)


def _save(fig: MplFigure, folder: Path, name: str, title: str, caption: str) -> Figure:
    import matplotlib.pyplot as plt

    path = folder / f"{name}.png"
    fig.savefig(path, dpi=DPI)
    axes = [_axis_info(ax) for ax in fig.axes if ax.get_visible()]
    plt.close(fig)
    return Figure(name=name, title=title, caption=caption, file=path, axes=axes)


def _axis_info(ax: Axes) -> dict[str, Any]:
    return {"xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(), "title": ax.get_title(),
            "xticklabels": [t.get_text() for t in ax.get_xticklabels()],
            "yticklabels": [t.get_text() for t in ax.get_yticklabels()],
            "legend": [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []}


def _legend(ax: Axes, data: StudyData) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, title="condition" if len(data.conditions) > 1 else None)


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
    """Per condition, the verdict of :func:`kdtune.recommend.recommend` (or a note why there is none)."""
    try:
        from kdtune.recommend import recommend
    except ImportError:
        return {}, RECOMMEND_HOOK
    from kdtune.errors import KdtuneError

    try:
        result = recommend([study_dir])
    except KdtuneError as exc:
        return {}, f"No recommendation yet: {exc}"
    except Exception as exc:  # the report stands without verdicts
        return {}, f"No recommendation: kdtune.recommend failed ({type(exc).__name__}: {_first_line(exc)})"
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
"""


def _html(data: StudyData, figures: list[Figure], notes: list[str], verdicts: dict[str, str]) -> str:
    from kdtune import __version__

    esc = html.escape
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<title>kdtune report: {esc(data.spec.name)}</title><style>{_CSS}</style></head><body>",
             f"<header><h1>kdtune study {esc(data.spec.name)}</h1>",
             f"<p class=\"status\">{esc(_status_line(data))}</p>"]
    if not data.finished:
        parts.append(f"<p class=\"snapshot\">Snapshot taken {esc(now)}: the study has not finished (still running, "
                     f"or interrupted). {data.running_trials} trial(s) had not ended; their runs are drawn hollow "
                     "and left out of means and selections.</p>")
    parts.append(f"<p>alpha is the {esc(ALPHA_LABEL[len('alpha ('):-1])}. Each run is scored at its best "
                 "validation epoch (the validation objective selects, the test metric at that epoch is "
                 "reported).</p></header>")
    parts.append("<section id=\"summary\"><h2>Conditions</h2>" + _summary_table(data, verdicts) + "</section>")
    for figure in figures:
        encoded = base64.b64encode(figure.file.read_bytes()).decode("ascii")
        parts.append(f"<section id=\"fig-{esc(figure.name)}\"><h2>{esc(figure.title)}</h2>"
                     f"<img alt=\"{esc(figure.title)}\" src=\"data:image/png;base64,{encoded}\">"
                     f"<p class=\"caption\">{esc(figure.caption)}</p>"
                     + _list(figure.notes) + "</section>")
    if notes:
        parts.append("<section id=\"notes\"><h2>Notes</h2>" + _list(notes) + "</section>")
    parts.append(f"<footer>kdtune {esc(__version__)}, {esc(now)}, from {esc(str(data.path))}</footer>"
                 "</body></html>\n")
    return "\n".join(parts)


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
        if any(r.condition == condition and _finite(r.row.get("correction_rate")) for r in data.runs):
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

def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _float(value: Any) -> float:
    return float(value) if _finite(value) else math.nan


def _nan(value: Any) -> float:
    return float(value) if _finite(value) else math.nan


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else float(f"{value:.12g}")
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


__all__ = ["ALPHA_LABEL", "ReportResult", "Figure", "StudyData", "build_wandb_report", "load_study",
           "publish_wandb_report", "write_report"]
