"""The study report: HTML (self-contained, rendered in headless Chromium), its figures and their alpha axes, a
running study's snapshot, the linear task's panels, and the W&B Report built offline.

Run: ``.venv/bin/python -m pytest -q tests/test_report.py``
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import require_service

from kdtune.cli import main
from kdtune.report import ALPHA_LABEL
from kdtune.report import FIGURES_DIR
from kdtune.report import MANIFEST
from kdtune.report import build_wandb_report
from kdtune.report import load_study
from kdtune.report import write_report


CLASSIFICATION_FIGURES = {"accuracy_vs_alpha", "alpha_temperature", "flips", "teacher_vs_student",
                          "search_progress", "learning_curves"}
ALPHA_X_FIGURES = {"accuracy_vs_alpha", "alpha_temperature", "flips", "mse_vs_alpha"}
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--host-resolver-rules=MAP * ~NOTFOUND"]
IMAGES_PROBE = ("<script>window.addEventListener('load', function () {"
                "var i = Array.prototype.slice.call(document.images);"
                "document.body.setAttribute('data-kdtune-images', i.filter(function (x) {"
                "return x.complete && x.naturalWidth > 0; }).length + '/' + i.length); });</script>")


def _copy_study(study: Path, into: Path) -> Path:
    """A copy of a study folder to write into (the shared study stays untouched); Tune's folder is not needed."""
    target = into / study.name
    shutil.copytree(study, target, ignore=shutil.ignore_patterns("tune", "wandb", "report*"))
    return target


def _manifest(study: Path) -> dict[str, Any]:
    return json.loads((study / FIGURES_DIR / MANIFEST).read_text())


def _alpha_texts(manifest: dict[str, Any]) -> list[str]:
    texts = []
    for figure in manifest["figures"]:
        for axis in figure["axes"]:
            texts += [axis["xlabel"], axis["ylabel"], *axis["xticklabels"], *axis["yticklabels"]]
    return [t for t in texts if "alpha" in t.lower()]


def _check_alpha_axes(manifest: dict[str, Any]) -> None:
    assert manifest["alpha_label"] == ALPHA_LABEL == "alpha (weight on true labels; 1 = no distillation)"
    assert all(text == ALPHA_LABEL for text in _alpha_texts(manifest))  # one wording everywhere
    for figure in manifest["figures"]:
        if figure["name"] in ALPHA_X_FIGURES:
            plotted = [a for a in figure["axes"] if a["title"]]  # colour bars have no title
            assert plotted and all(a["xlabel"] == ALPHA_LABEL for a in plotted), figure["name"]


@pytest.fixture(scope="module")
def reported(small_study: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the small study with its report written by the CLI."""
    study = _copy_study(small_study, tmp_path_factory.mktemp("report"))
    assert main(["report", str(study)]) == 0
    return study


@pytest.mark.slow
def test_report_is_self_contained_html_with_every_panel(reported: Path) -> None:
    page = (reported / "report.html").read_text()
    manifest = _manifest(reported)
    names = {f["name"] for f in manifest["figures"]}
    assert CLASSIFICATION_FIGURES <= names
    data = load_study(reported)
    baselines = [c for c in data.conditions if data.no_distillation(c) is not None]
    assert ("per_class" in names) == bool(baselines)
    assert "importances" in names or "too few complete trials for importances" in page
    images = re.findall(r'<img alt="[^"]*" src="([^"]*)"', page)
    assert len(images) == len(manifest["figures"]) == page.count("<img")
    for src, figure in zip(images, manifest["figures"]):
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) == (reported / FIGURES_DIR / figure["file"]).read_bytes()
    assert not re.search(r"(src|href)=\"(https?:)?//", page) and "<link" not in page and "url(" not in page
    assert "<style>" in page and "Snapshot" not in page
    for condition in ("noise_level=0.0", "noise_level=0.2"):
        assert f"<td>{condition}</td>" in page
    trials = page[page.index('<section id="trials">'):]
    assert trials.count("<tr><td>noise_level=") == len(data.trials)  # the table of trials: one row each
    for trial in data.trials:
        assert f"<td>{trial['trial_id']}</td>" in trials


@pytest.mark.slow
def test_plots_answer_the_question(reported: Path) -> None:
    figures = {f["name"]: f for f in _manifest(reported)["figures"]}
    heatmap = figures["alpha_temperature"]["axes"]
    # one colour scale per condition: a colour bar beside each of the two conditions' maps
    assert sum(a["ylabel"] == "validation accuracy (objective)" for a in heatmap) == 2
    assert [a["ylim"][0] for a in figures["teacher_vs_student"]["axes"]] == [0.0]  # bars start at zero
    curves = figures["learning_curves"]["axes"]
    assert [a["title"] for a in curves] == ["noise_level=0.0", "noise_level=0.2"]
    assert all(a["xlabel"] == "epoch" for a in curves)


@pytest.mark.slow
def test_every_alpha_axis_says_what_alpha_means(reported: Path) -> None:
    manifest = _manifest(reported)
    _check_alpha_axes(manifest)
    heatmap = next(f for f in manifest["figures"] if f["name"] == "alpha_temperature")
    assert {a["ylabel"] for a in heatmap["axes"]} == {"temperature T", "validation accuracy (objective)"}


def render_in_chromium(page: Path, tmp: Path) -> tuple[int, int, Any]:
    """Open an HTML report in headless Chromium (offline: every host unresolvable): the images that decoded
    (naturalWidth > 0), the images on the page, and the pixels of a 1280x1600 screenshot."""
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        require_service("Chromium is not installed (Debian: apt-get install -y chromium)")
    probe = tmp / "probe.html"
    probe.write_text(page.read_text().replace("</body>", IMAGES_PROBE + "</body>"))
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}"]
    dom = subprocess.run([exe, *flags, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=180).stdout
    found = re.search(r'data-kdtune-images="(\d+)/(\d+)"', dom)
    assert found, dom[-2000:]
    shot = tmp / "shot.png"
    subprocess.run([exe, *flags, f"--screenshot={shot}", "--window-size=1280,1600", page.as_uri()],
                   capture_output=True, timeout=180)
    import matplotlib.image

    return int(found.group(1)), int(found.group(2)), matplotlib.image.imread(shot)


@pytest.mark.slow
def test_report_renders_in_headless_chromium(reported: Path, short_tmp: Path) -> None:
    loaded, images, pixels = render_in_chromium(reported / "report.html", short_tmp)
    assert loaded == images == len(_manifest(reported)["figures"])  # every image decoded
    assert pixels.shape[0] == 1600 and pixels.shape[1] == 1280
    assert pixels[..., :3].std() > 0.05  # not a blank page


@pytest.mark.slow
def test_report_on_a_running_study_snapshot(small_study: Path, short_tmp: Path) -> None:
    study = _copy_study(small_study, short_tmp)
    meta = json.loads((study / "study.json").read_text())
    (study / "study.json").write_text(json.dumps({**meta, "finished_at": None}))
    # While a study runs, each trial's end is its own part file (the end of the study compacts them).
    ended = pq.read_table(study / "trials.parquet").sort_by([("ended_at", "ascending")])
    shutil.rmtree(study / "trials.parquet")
    (study / "trials.parquet").mkdir()
    for i in range(ended.num_rows):
        pq.write_table(ended.slice(i, 1), study / "trials.parquet" / f"part-{i:06d}.parquet")
    parts = sorted((study / "trials.parquet").glob("*.parquet"))
    for part in parts[len(parts) // 2:]:  # these trials have reported epochs but not ended yet
        part.unlink()
    result = write_report(study)
    page = result.html.read_text()
    running = load_study(study).running_trials
    assert result.snapshot and running == len(parts) - len(parts) // 2
    assert "Snapshot taken" in page and f"{running} running" in page
    assert {"accuracy_vs_alpha", "search_progress"} <= {f.name for f in result.figures}
    progress = next(f for f in result.figures if f.name == "search_progress")
    assert f"{running} running trial(s) are not shown yet" in progress.caption
    _check_alpha_axes(_manifest(study))

    for part in parts[: len(parts) // 2]:  # nothing has ended: still a report, with notes
        part.unlink()
    result = write_report(study)
    assert result.snapshot and "accuracy_vs_alpha" in {f.name for f in result.figures}
    assert any("no trial has ended yet" in note for note in result.notes)
    assert any(note.startswith("No recommendation yet") for note in result.notes)


def _linear_study(folder: Path, alpha_star: float = 0.3) -> Path:
    """A finished linear-task study folder written the way the driver writes one (no Ray needed)."""
    from kdtune.records.results import results_writer
    from kdtune.records.results import trials_writer
    from kdtune.spec.conditions import expand
    from kdtune.spec.schema import parse_spec

    spec = parse_spec({"name": "lin", "dataset": {"name": "linear"}, "objective": "val_mse",
                       "search": {"alpha": {"type": "float", "low": 0.0, "high": 1.0}},
                       "conditions": {"teacher_error": [0.1, 0.5]}, "budget": {"repeats": 2}})
    conditions = expand(spec)
    study = folder / "lin"
    study.mkdir()
    now = time.time()
    (study / "study.json").write_text(json.dumps({
        "spec": spec.to_dict(), "conditions": [c.as_dict() for c in conditions], "created_at": now - 60,
        "finished_at": now, "storage_url": f"sqlite:///{study / 'optuna.db'}", "storage_redacted": False,
        "cut_short": False}))
    (study / "teachers.json").write_text(json.dumps({c.key: {"cache_key": None, "selected_epoch": None, "linear": {
        "B": c.teacher_error, "V": 0.2, "alpha_star": alpha_star}} for c in conditions}))
    rows, trials = [], []
    for c in conditions:
        for i, alpha in enumerate((0.0, 0.25, 0.5, 0.75, 1.0)):
            trial_id = f"{c.key}-{i}"
            phase = "baseline" if alpha in (0.0, 1.0) else "search"
            for seed in (0, 1):
                excess = (alpha - alpha_star) ** 2 + 0.01 * seed
                rows.append({"study": "lin", "condition": c.key, **c.as_dict(), "trial_id": trial_id, "phase": phase,
                             "alpha": alpha, "lr": 1e-3, "batch_size": 64, "epochs": 1, "seed": seed, "epoch": 1,
                             "val_loss": 1.0 + excess, "test_loss": 1.0 + excess, "test_excess_mse": excess})
            trials.append({"trial_id": trial_id, "condition": c.key, "phase": phase,
                           "params": json.dumps({"alpha": alpha}), "state": "COMPLETE",
                           "objective": 1.0 + (alpha - alpha_star) ** 2 + 0.005, "epochs_done": 1, "ended_at": now})
    results_writer(study).append(rows)
    trials_writer(study).append(trials)
    return study


def test_linear_task_report_plots_mse_and_alpha_star(short_tmp: Path) -> None:
    study = _linear_study(short_tmp)
    result = write_report(study)
    assert {f.name for f in result.figures} == {"mse_vs_alpha", "search_progress"}
    manifest = _manifest(study)
    _check_alpha_axes(manifest)
    mse = next(f for f in manifest["figures"] if f["name"] == "mse_vs_alpha")
    assert [a["ylabel"] for a in mse["axes"]] == ["validation MSE (noisy targets; objective)",
                                                  "test excess MSE (vs noise-free targets)"]
    assert any("α* = 0.3 (closed form)" in text for text in mse["axes"][1]["legend"])
    assert any("only alpha is searched" in note for note in result.notes)
    assert "fig-per_class" not in result.html.read_text()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning:wandb_workspaces.*")
def test_wandb_report_is_built_offline_with_panels_and_filters(small_study: Path) -> None:
    try:
        import wandb_workspaces.reports.v2 as wr
        from wandb_workspaces.expr import expr_to_filters
    except ImportError:
        require_service("wandb-workspaces is not installed (pip install 'kdtune[wandb-reports]')")

    report = build_wandb_report(small_study, entity="kdtune-tests", project="kdtune-ci")
    assert (report.entity, report.project, report.title) == ("kdtune-tests", "kdtune-ci", "kdtune: small")
    grids = [b for b in report.blocks if isinstance(b, wr.PanelGrid)]
    headings = [b.text for b in report.blocks if isinstance(b, wr.H2)]
    assert headings == ["All conditions", "Condition noise_level=0.0", "Condition noise_level=0.2", "Teachers"]
    filters = {rs.name: rs.filters for grid in grids for rs in grid.runsets}
    assert filters == {
        "noise_level=0.0": "Group = 'small' and Config('condition_id') = 'noise_level:0.0'",
        "noise_level=0.2": "Group = 'small' and Config('condition_id') = 'noise_level:0.2'",
        "teachers": "Group = 'small' and JobType = 'teacher'",
    }
    parsed = expr_to_filters(filters["noise_level=0.2"]).model_dump(exclude_none=True)["filters"]
    assert [(f["key"]["name"], f["value"]) for f in parsed] == [("group", "small"), ("condition_id", "noise_level:0.2")]
    assert all(rs.entity == "kdtune-tests" and rs.project == "kdtune-ci" for g in grids for rs in g.runsets)
    panels = [p for grid in grids for p in grid.panels]
    alpha_panels = [p for p in panels if getattr(p, "x", None) == wr.Config("alpha")]
    assert len(alpha_panels) >= 2 * 3 + 2 and all(ALPHA_LABEL in p.title for p in alpha_panels)
    noisy = grids[2].panels
    assert {type(p).__name__ for p in noisy} >= {"ScatterPlot", "LinePlot", "ParallelCoordinatesPlot",
                                                 "ParameterImportancePlot"}
    assert [p.with_respect_to for p in noisy if isinstance(p, wr.ParameterImportancePlot)] == ["val_accuracy"]
    plotted = {p.y.name for p in noisy if isinstance(p, wr.ScatterPlot) and isinstance(p.y, wr.SummaryMetric)}
    assert plotted == {"test_accuracy", "correction_rate", "memorisation_rate"}


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["offline", "online-without-key"])
def test_report_wandb_offline_says_sync_first(small_study: Path, short_tmp: Path, mode: str,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    study = _copy_study(small_study, short_tmp)
    monkeypatch.setenv("WANDB_MODE", "offline" if mode == "offline" else "online")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert main(["report", str(study), "--wandb"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert err[0].startswith("kdtune: error: W&B is offline") and "sync the study's runs first" in err[0]
    assert err[1] == f"wandb sync {study}/wandb/offline-run-*"
    assert (study / "report.html").exists()  # the HTML report is written all the same
