"""The Python API (``import kdtune``) on a real study: light to import, one row per run at its best epoch, one
row per trial with its Optuna trial number, the same recommendation and report as the commands."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import kdtune
from kdtune.records.folder import StudyFolder
from kdtune.records.optuna_storage import make_storage
from kdtune.records.results import read_results
from kdtune.records.results import read_trials


def test_import_is_light_and_recommend_is_the_function() -> None:
    code = ("import sys, kdtune; light = [m for m in ('ray', 'torch', 'pandas') if m in sys.modules]\n"
            "import kdtune.analysis.recommendation\nprint(light, callable(kdtune.recommend), sorted(kdtune.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ("[] True ['load_results', 'load_trials', 'recommend', 'resume_study', 'run_study', "
                           "'write_report']")


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


def test_load_trials_one_row_per_trial_joined_to_optuna(small_study: Path) -> None:
    import optuna

    trials = kdtune.load_trials(small_study)
    ended = {t["trial_id"]: t for t in read_trials(small_study).to_pylist()}
    assert sorted(trials["trial_id"]) == sorted(ended) and trials["trial_id"].is_unique  # finished: no RUNNING row
    assert {"params_alpha", "params_temperature", "params_lr"} <= set(trials.columns)
    assert set(trials["phase"]) == {"search", "baseline"} and set(trials["state"]) <= {"COMPLETE", "PRUNED"}
    runs = kdtune.load_results(small_study)
    for row in trials.itertuples():
        trial = ended[row.trial_id]
        assert (row.condition, row.phase, row.state, row.epochs_done) == (trial["condition"], trial["phase"],
                                                                          trial["state"], trial["epochs_done"])
        assert row.objective == trial["objective"] and row.params_alpha == json.loads(trial["params"])["alpha"]
        mine = runs[runs["trial_id"] == row.trial_id].sort_values("seed")
        assert row.seeds == mine["seed"].tolist() and row.best_epochs == mine["best_epoch"].tolist()
    # the Optuna number joins each row to its Optuna trial (Study.trials_dataframe's number), in each condition
    storage = make_storage(f"sqlite:///{small_study / 'optuna.db'}")
    for condition, mine in trials.groupby("condition"):
        study = optuna.load_study(study_name=f"{StudyFolder(small_study).optuna_prefix()}/{condition}", storage=storage)
        frame = study.trials_dataframe(attrs=("number", "params", "user_attrs", "state"))
        joined = mine.merge(frame, on="number", suffixes=("", "_optuna"))
        assert len(joined) == len(mine) == len(frame)
        assert (joined["user_attrs_tune_trial_id"] == joined["trial_id"]).all()
        assert (joined["params_alpha_optuna"] == joined["params_alpha"]).all()
        assert (joined["state_optuna"] == joined["state"]).all()
    baselines = trials[trials["phase"] == "baseline"]
    assert sorted(baselines["params_alpha"]) == [0.0, 0.0, 1.0, 1.0]  # alpha = 0 and 1 in each condition
