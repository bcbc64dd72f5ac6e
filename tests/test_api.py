"""The Python API (``import kdtune``) on a real study: light to import, one row per run at its best epoch,
the same recommendation and report as the commands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kdtune
from kdtune.records.results import read_results


def test_import_is_light_and_recommend_is_the_function() -> None:
    code = ("import sys, kdtune; light = [m for m in ('ray', 'torch', 'pandas') if m in sys.modules]\n"
            "import kdtune.analysis.recommendation\nprint(light, callable(kdtune.recommend), sorted(kdtune.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ("[] True ['load_results', 'recommend', 'resume_study', 'run_study', 'write_report']")


def test_load_results_one_row_per_run_at_its_best_validation_epoch(small_study: Path) -> None:
    runs = kdtune.load_results(small_study)
    epochs = read_results(small_study).to_pylist()
    by_run: dict[tuple[str, int], list[dict]] = {}
    for row in epochs:
        by_run.setdefault((row["trial_id"], row["seed"]), []).append(row)
    assert len(runs) == len(by_run) == len(runs[["trial_id", "seed"]].drop_duplicates())
    for row in runs.itertuples():
        mine = by_run[(row.trial_id, row.seed)]
        best = max(r["val_accuracy"] for r in mine)
        assert row.val_accuracy == best
        assert row.best_epoch == min(r["epoch"] for r in mine if r["val_accuracy"] == best)  # earliest on ties
        at_best = next(r for r in mine if r["epoch"] == row.best_epoch)
        assert row.test_accuracy == at_best["test_accuracy"]
    assert set(runs["trial_state"]) <= {"COMPLETE", "PRUNED", "FAIL"}


def test_recommend_and_report_from_python(small_study: Path, tmp_path: Path) -> None:
    report = kdtune.recommend(small_study)
    assert [c["key"] for c in report["conditions"]] == ["noise_level=0.0", "noise_level=0.2"]
    runs = kdtune.load_results(small_study)
    for condition in report["conditions"]:
        rec = condition["best_observed"]
        confirm = runs["phase"] == "confirm"
        mine = runs[runs["trial_id"].isin(rec["trial_ids"]) & (runs["trial_state"] == "COMPLETE")
                    & (confirm if rec["source"] == "confirm" else ~confirm)]
        assert len(mine) > 0
        assert abs(mine["test_accuracy"].mean() - rec["test"]["mean"]) < 1e-12
    html = kdtune.write_report(small_study, out=tmp_path / "r.html")
    assert html == tmp_path / "r.html" and html.stat().st_size > 0
