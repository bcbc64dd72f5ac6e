"""Writing a report: one study (:func:`write_report`) or several side by side (:func:`write_comparison`):
the panels' PNGs, ``figures.json`` (each figure's axes and labels) and the HTML page."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any

from kdtune.errors import UsageError
from kdtune.records.folder import FIGURES_DIR
from kdtune.records.folder import StudyFolder
from kdtune.records.folder import atomic_write
from kdtune.report.data import load_study
from kdtune.report.figures import ALPHA_LABEL
from kdtune.report.figures import Figure
from kdtune.report.html import Section
from kdtune.report.html import render_html
from kdtune.report.panels import panels_for
from kdtune.report.view import View
from kdtune.tasks import TASKS


COMPARE_HTML = "report-compare.html"  # a comparison's default, in the current directory
MANIFEST = "figures.json"


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
    html_path = Path(out) if out else StudyFolder(study_dir).report
    return _write(View([load_study(Path(study_dir))]), html_path, html_path.parent / FIGURES_DIR)


def write_comparison(study_dirs: Sequence[Path | str], *, out: Path | None = None) -> ReportResult:
    """Several studies side by side in one report (default ``./report-compare.html``, the PNGs and
    ``figures.json`` in a folder named after it): the same figures, one colour per study, conditions matched
    by their values. The studies may differ in dataset, teacher and student, but not in task: a linear
    regression study is not compared with classification studies."""
    if len(study_dirs) < 2:
        raise UsageError("a comparison needs at least two study folders")
    studies = [load_study(Path(d)) for d in study_dirs]
    by_task = {name: [d for d in studies if d.task.name == name] for name in TASKS}
    kinds = [f"{group[0].task.kind} ({group[0].objective.label.removeprefix('validation ')}) study "
             f"{', '.join(str(d.path) for d in group)}" for group in by_task.values() if group]
    if len(kinds) > 1:
        raise UsageError(f"cannot compare the {' with the '.join(kinds)}: compare like with like")
    html_path = Path(out) if out else Path(COMPARE_HTML)
    folder = html_path.with_suffix("") if html_path.suffix else html_path.with_name(f"{html_path.name}-figures")
    return _write(View(studies), html_path, folder)


def _write(view: View, html_path: Path, folder: Path) -> ReportResult:
    import matplotlib

    matplotlib.use("Agg")
    folder.mkdir(parents=True, exist_ok=True)
    sections = []
    for data, label, color in zip(view.studies, view.labels, view.colors):
        study_notes = [data.recommendation_note] if data.recommendation_note else []
        if not data.runs:
            study_notes.append("No run has reported an epoch yet: the figures appear once trials report results.")
        sections.append(Section(data, label, color, study_notes))
    figures, notes = [], []
    for make in panels_for(view):
        built = make(view, folder)
        if isinstance(built, Figure):
            figures.append(built)
        elif built:
            notes.append(built)
    manifest: dict[str, Any] = {"alpha_label": ALPHA_LABEL, "figures": [
        {"name": f.name, "file": f.file.name, "title": f.title, "axes": f.axes, "legend": f.legend,
         "notes": f.notes, "summary": f.summary}
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
    atomic_write(folder / MANIFEST, json.dumps(manifest, indent=2), mode=None)
    atomic_write(html_path, render_html(view, figures, notes, sections), mode=None)
    return ReportResult(html=html_path, figures=figures, notes=all_notes, verdicts=verdicts,
                        snapshot=not all(d.finished for d in view.studies),
                        studies=view.labels if view.compare else [])
