"""Comparison reports (``kdtune report DIR1 DIR2 ...``): several studies side by side, one colour per study,
conditions matched by their values, each study's own recommendation; refused for regression + classification.

Run: ``.venv/bin/python -m pytest -q tests/test_report_compare.py``
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from conftest import tiny_study_spec
from test_report import CLASSIFICATION_FIGURES
from test_report import _check_alpha_axes
from test_report import _copy_study
from test_report import _linear_study
from test_report import render_in_chromium

from kdtune.cli import main
from kdtune.report import COMPARE_HTML
from kdtune.report import MANIFEST
from kdtune.report import write_comparison


#: Both studies are named "small", so the legend falls back to their folders' names.
LABELS = ["small-study", "small-linear-student"]


@pytest.fixture(scope="module")
def other_study(small_study: Path, sandbox: Path) -> Path:
    """A second small real study: the same name and teacher as ``small_study`` (its cached teachers are reused),
    a linear student, and only the noisy condition (noise_level = 0.2, matched to small_study's)."""
    from kdtune.study.driver import RunOptions
    from kdtune.study.driver import run_study

    spec = tiny_study_spec("small", student={"arch": "linear", "epochs": 4, "lr": 3e-3},
                           conditions={"noise_level": [0.2]})
    return run_study(spec, RunOptions(out=sandbox / "small-linear-student", progress=False))


@pytest.fixture(scope="module")
def compared(small_study: Path, other_study: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The comparison report of copies of both studies, written by the CLI into the current directory."""
    work = tmp_path_factory.mktemp("compare")
    studies = [_copy_study(s, work) for s in (small_study, other_study)]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(work)
        assert main(["report", *map(str, studies)]) == 0
    assert not any((s / "report.html").exists() for s in studies)  # nothing written into the studies
    return work / COMPARE_HTML


def _manifest(page: Path) -> dict[str, Any]:
    return json.loads((page.with_suffix("") / MANIFEST).read_text())


def _check_legends(manifest: dict[str, Any], labels: list[str]) -> None:
    """Every figure has one legend entry per study; a study missing from a figure is named in its notes."""
    assert [s["label"] for s in manifest["studies"]] == labels
    for figure in manifest["figures"]:
        legend = figure["legend"]
        assert len(legend) == len(set(legend)) and set(legend) <= set(labels), figure["name"]
        for label in set(labels) - set(legend):
            assert any(note.startswith(label) for note in figure["notes"]), (figure["name"], label)
        assert all(not axis["legend"] or not set(axis["legend"]) & set(labels) for axis in figure["axes"])


@pytest.mark.slow
def test_comparison_has_every_figure_one_colour_per_study(compared: Path) -> None:
    page = compared.read_text()
    manifest = _manifest(compared)
    figures = {f["name"]: f for f in manifest["figures"]}
    assert CLASSIFICATION_FIGURES <= set(figures)
    _check_legends(manifest, LABELS)
    for name in ("accuracy_vs_alpha", "alpha_temperature", "flips", "teacher_vs_student", "search_progress"):
        assert figures[name]["legend"] == LABELS, name
    _check_alpha_axes(manifest)
    # conditions are matched by value: the second study's only condition (key "all") is noise_level=0.2
    accuracy = figures["accuracy_vs_alpha"]["axes"]
    assert [(a["title"], a["series"]) for a in accuracy] == [("noise_level=0.0", LABELS[:1]),
                                                            ("noise_level=0.2", LABELS)]
    heatmap = [a["title"] for a in figures["alpha_temperature"]["axes"] if a["title"]]
    assert heatmap == ["small-study: noise_level=0.0", "small-study: noise_level=0.2",
                       "small-linear-student: noise_level=0.2"]
    # self-contained: every figure embedded, nothing fetched
    images = re.findall(r'<img alt="[^"]*" src="([^"]*)"', page)
    assert len(images) == len(manifest["figures"]) == page.count("<img")
    for src, figure in zip(images, manifest["figures"]):
        assert base64.b64decode(src.split(",", 1)[1]) == (compared.with_suffix("") / figure["file"]).read_bytes()
    assert not re.search(r"(src|href)=\"(https?:)?//", page) and "<link" not in page and "url(" not in page


@pytest.mark.slow
def test_comparison_has_each_studys_own_recommendation(compared: Path) -> None:
    from kdtune.analysis.recommendation import recommend

    page = compared.read_text()
    for i, study in enumerate(json.loads((compared.with_suffix("") / MANIFEST).read_text())["studies"], start=1):
        section = page.split(f'<section id="study-{i}">', 1)[1].split("</section>", 1)[0]
        assert f"Study {study['label']}</h2>" in section
        verdicts = [c["verdict"]["text"] for c in recommend([study["path"]])["conditions"]]
        assert verdicts and all(html.escape(v) in section for v in verdicts)
    assert "student</th>" in page and "mlp {&quot;widths&quot;: [16]}" in page and "<td>linear</td>" in page


@pytest.mark.slow
def test_comparison_renders_in_headless_chromium(compared: Path, short_tmp: Path) -> None:
    loaded, images, pixels = render_in_chromium(compared, short_tmp)
    assert loaded == images == len(_manifest(compared)["figures"])  # every image decoded
    assert pixels[..., :3].std() > 0.05


def _two_linear_studies(folder: Path) -> list[Path]:
    """Two linear studies, both named "lin", in folders lin-a/lin-a and lin-b/lin-b."""
    studies = []
    for name, star in (("lin-a", 0.3), ("lin-b", 0.6)):
        (folder / name).mkdir()
        studies.append(_linear_study(folder / name, alpha_star=star).rename(folder / name / name))
    return studies


@pytest.mark.filterwarnings("ignore:Precision loss occurred:RuntimeWarning")  # identical paired gains
def test_comparison_of_linear_studies_and_out_path(short_tmp: Path) -> None:
    studies = _two_linear_studies(short_tmp)
    out = short_tmp / "out" / "linear.html"
    out.parent.mkdir()
    result = write_comparison(studies, out=out)
    assert result.html == out and result.studies == ["lin-a", "lin-b"]  # both named "lin": their folders
    assert (short_tmp / "out" / "linear" / MANIFEST).exists() and not (short_tmp / "out" / "report").exists()
    manifest = _manifest(out)
    assert {f["name"] for f in manifest["figures"]} == {"gain", "recommended_alpha", "mse_vs_alpha", "search_progress"}
    _check_legends(manifest, ["lin-a", "lin-b"])
    assert all(f["legend"] == ["lin-a", "lin-b"] for f in manifest["figures"])
    _check_alpha_axes(manifest)
    mse = next(f for f in manifest["figures"] if f["name"] == "mse_vs_alpha")
    assert [a["title"] for a in mse["axes"]] == [
        f"{what} MSE vs alpha (teacher_error={b})" for b in (0.1, 0.5) for what in ("Validation", "Test excess")]
    assert "α* = 0.6 (closed form), lin-b" in mse["axes"][1]["legend"]
    assert ("No parameter-importance panel: lin-a: only alpha is searched; lin-b: only alpha is searched."
            in result.notes)


def test_comparison_refuses_regression_with_classification(short_tmp: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    linear, other = _two_linear_studies(short_tmp)
    meta = json.loads((other / "study.json").read_text())
    (other / "study.json").write_text(json.dumps({**meta, "spec": tiny_study_spec("cls").to_dict()}))
    assert main(["report", str(linear), str(other), "--out", str(short_tmp / "mixed.html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kdtune: error: cannot compare the linear regression")
    assert str(linear) in err and str(other) in err
    assert not (short_tmp / "mixed.html").exists() and not (short_tmp / "mixed").exists()


def test_wandb_takes_one_study(short_tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    studies = _two_linear_studies(short_tmp)
    assert main(["report", *map(str, studies), "--wandb"]) == 2
    assert "--wandb publishes the W&B Report of one study" in capsys.readouterr().err
