"""Studies end to end on a real local Ray, real Optuna storage, real Parquet files."""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest
from conftest import tiny_study_spec

from kdtune.records.folder import StudyFolder
from kdtune.records.optuna_storage import make_storage
from kdtune.records.results import compact
from kdtune.records.results import read_results
from kdtune.records.results import read_trials
from kdtune.records.results import results_writer
from kdtune.records.status import from_files
from kdtune.spec.rules import trials_per_condition
from kdtune.study.driver import RunOptions
from kdtune.study.driver import run_study


pytestmark = pytest.mark.slow


def test_small_study_writes_everything(small_study: Path) -> None:
    meta = json.loads((small_study / "study.json").read_text())
    assert [c["key"] for c in meta["conditions"]] == ["noise_level=0.0", "noise_level=0.2"]
    assert meta["finished_at"] >= meta["created_at"] and meta["cut_short"] is False
    assert (small_study / "spec.yaml").exists()
    teachers = json.loads((small_study / "teachers.json").read_text())
    assert set(teachers) == {"noise_level=0.0", "noise_level=0.2"}
    assert teachers["noise_level=0.2"]["diagnostics"]["memorisation_rate"] is not None

    trials = read_trials(small_study).to_pylist()
    per_condition = trials_per_condition(tiny_study_spec("small"))
    assert len(trials) == 2 * per_condition
    assert {t["state"] for t in trials} <= {"COMPLETE", "PRUNED"}
    baselines = [json.loads(t["params"])["alpha"] for t in trials if t["phase"] == "baseline"]
    assert sorted(baselines) == [0.0, 0.0, 1.0, 1.0]

    rows = read_results(small_study)
    keys = list(zip(*(rows.column(k).to_pylist() for k in ("trial_id", "seed", "epoch"))))
    assert len(keys) == len(set(keys))  # no duplicate (trial, seed, epoch)
    epochs_by_trial = collections.Counter(rows.column("trial_id").to_pylist())
    compute = collections.Counter()
    for trial_id, seconds in zip(rows.column("trial_id").to_pylist(), rows.column("seconds").to_pylist()):
        compute[trial_id] += seconds
    for t in trials:
        assert epochs_by_trial[t["trial_id"]] == 2 * t["epochs_done"]  # two seeds per epoch
        assert t["seconds"] > compute[t["trial_id"]]  # the trial's time in its actor includes its epochs
        if t["state"] == "COMPLETE":
            assert t["epochs_done"] == 4
    # The dataset folder reads whole with plain pyarrow, as any Parquet reader would.
    assert pq.read_table(small_study / "results.parquet").num_rows == rows.num_rows
    # Compacted when the study ended: one part file per table, not one per flush.
    assert [len(list((small_study / t).glob("*.parquet"))) for t in ("results.parquet", "trials.parquet")] == [1, 1]
    assert set(rows.column("trial_state").to_pylist()) <= {"COMPLETE", "PRUNED"}


def test_optuna_storage_agrees_with_trials_table(small_study: Path) -> None:
    storage = make_storage(f"sqlite:///{small_study / 'optuna.db'}")
    trials = read_trials(small_study).to_pylist()
    for key in ("noise_level=0.0", "noise_level=0.2"):
        study = optuna.load_study(study_name=f"{StudyFolder(small_study).optuna_prefix()}/{key}", storage=storage)
        optuna_states = sorted(t.state.name for t in study.trials)
        ours = sorted(t["state"] for t in trials if t["condition"] == key)
        assert optuna_states == ours
        best = max(t["objective"] for t in trials if t["condition"] == key and t["state"] == "COMPLETE")
        assert study.best_value == pytest.approx(best)


def test_status_from_files(small_study: Path) -> None:
    summary = from_files(small_study)
    trials = read_trials(small_study).to_pylist()
    assert summary["finished"] is True and summary["ended"] == summary["planned"] == len(trials)
    assert summary["notes"] == [] and summary["eta_seconds"] is None  # every planned trial ran: nothing to explain
    assert [r["condition"] for r in summary["conditions"]] == ["noise_level=0.0", "noise_level=0.2"]
    for row in summary["conditions"]:
        search = row["phases"]["search"]
        mine = [t for t in trials if t["condition"] == row["condition"]]
        assert (search["complete"], search["pruned"], search["failed"]) == tuple(
            sum(t["state"] == s for t in mine) for s in ("COMPLETE", "PRUNED", "FAIL"))
        assert search["ended"] == search["planned"] == len(mine) and row["running"] == 0
        assert row["phases"]["confirm"]["planned"] == 0  # the fixture's study has no confirmation
        assert 0.5 < search["best"] <= 1.0


def test_failing_trial_retried_from_checkpoint_and_nan_trials_fail(ray_local: None, short_tmp: Path) -> None:
    marker = short_tmp / "failed-once"
    spec = tiny_study_spec(
        "faults",
        student={"arch": "kd_fixtures:fail_once", "epochs": 4, "kwargs": {"marker": str(marker), "fail_at": 60}},
        conditions={"noise_level": [0.1], "student_arch": ["kd_fixtures:fail_once", "kd_fixtures:nan_model"]},
        budget={"trials_per_condition": 1, "repeats": 2},
        scheduler={"type": "fifo"},
    )
    study_dir = run_study(spec, RunOptions(out=short_tmp / "study", progress=False, max_concurrent=1))
    assert marker.exists()
    trials = read_trials(study_dir).to_pylist()
    nan_trials = [t for t in trials if "nan_model" in t["condition"]]
    assert len(nan_trials) == 3 and all(t["state"] == "FAIL" and "NaN" in t["error"] for t in nan_trials)
    good = [t for t in trials if "fail_once" in t["condition"]]
    assert [t["state"] for t in good] == ["COMPLETE"] * 3
    retried = [t for t in good if t["restarts"] == 1]
    assert len(retried) == 1
    rows = read_results(study_dir).to_pandas()
    mine = rows[rows.trial_id == retried[0]["trial_id"]]
    assert sorted(mine.epoch.tolist()) == [1, 1, 2, 2, 3, 3, 4, 4]  # every epoch once, none twice
    # Epochs before the failure came from the first attempt; the retry continued from the checkpoint.
    assert mine[mine.attempt == 0].epoch.max() < 4 and mine[mine.attempt == 1].epoch.min() > 1


def test_a_lone_teacher_trains_on_every_core(ray_local: None, short_tmp: Path) -> None:
    from kdtune.study.preparation import teacher_threads

    # Nothing else runs on the fixture's 2-CPU Ray: a task that reserved one core may use both.
    assert teacher_threads(1) == 2
    spec = tiny_study_spec("threads", teacher={"arch": "mlp", "epochs": 2, "kwargs": {"widths": [32]}, "seed": 1716},
                           conditions={"noise_level": [0.1]}, budget={"trials_per_condition": 1, "repeats": 1},
                           scheduler={"type": "fifo"})
    study_dir = run_study(spec, RunOptions(out=short_tmp / "study", progress=False))
    (info,) = json.loads((study_dir / "teachers.json").read_text()).values()
    assert info["trained"] and info["threads"] == 2  # one condition on 2 cores: 2 threads
    # Validated only at the epochs it did not keep; measured in full at the one it kept.
    assert [("test_accuracy" in row) for row in info["curve"]] == [e == info["selected_epoch"] for e in (1, 2)]


def test_a_preparation_never_reserves_more_cores_than_one_node_has() -> None:
    from kdtune.spec.rules import preparation_cpus

    assert preparation_cpus(2, 2, 1) == 2  # one condition on a 2-core machine: both cores
    assert preparation_cpus(2, 2, 3) == 1  # three conditions: one each, two at a time
    assert preparation_cpus(4, 2, 1) == 2  # two 2-core nodes: 4 cores could never be scheduled on one node
    assert preparation_cpus(1, 1, 5) == 1  # at least one


def test_teacher_quality_as_a_condition(ray_local: None, short_tmp: Path) -> None:
    spec = tiny_study_spec(
        "teachers",
        teacher={"arch": "mlp", "epochs": 8, "kwargs": {"widths": [256]}, "lr": 3e-3, "batch_size": 32},
        conditions={"noise_level": [0.3], "teacher_select": ["final", "best_val"]},
        budget={"trials_per_condition": 1, "repeats": 1},
        scheduler={"type": "fifo"},
    )
    study_dir = run_study(spec, RunOptions(out=short_tmp / "study", progress=False))
    teachers = json.loads((study_dir / "teachers.json").read_text())
    final, best = teachers["teacher_select=final"], teachers["teacher_select=best_val"]
    assert final["cache_key"] != best["cache_key"]
    assert final["selected_epoch"] == 8
    best_curve = [e["val_accuracy"] for e in best["curve"]]
    assert best["selected_epoch"] == best_curve.index(max(best_curve)) + 1
    rows = read_results(study_dir).to_pandas()
    assert set(rows.teacher_select) == {"final", "best_val"}
    summary = from_files(study_dir)
    shown = {r["condition"]: r["teacher"]["selected_epoch"] for r in summary["conditions"]}
    assert shown == {"teacher_select=final": 8, "teacher_select=best_val": best["selected_epoch"]}


def test_compaction_keeps_every_row_and_survives_a_crash_between_its_renames(short_tmp: Path) -> None:
    writer = results_writer(short_tmp)
    for epoch in range(1, 6):  # one part per flush, as a running study writes them
        writer.append([{"trial_id": "t1", "seed": s, "epoch": epoch, "val_accuracy": epoch / 10} for s in (0, 1)])
    before = read_results(short_tmp).sort_by([("epoch", "ascending"), ("seed", "ascending")]).to_pylist()
    compact(short_tmp)
    assert len(list((short_tmp / "results.parquet").glob("*.parquet"))) == 1
    assert read_results(short_tmp).sort_by([("epoch", "ascending"), ("seed", "ascending")]).to_pylist() == before
    # A crash after the first rename: the old folder moved aside, the compacted one not yet in place.
    os.replace(short_tmp / "results.parquet", short_tmp / "results.parquet.compact")
    (short_tmp / "results.parquet.old").mkdir()
    assert read_results(short_tmp).num_rows == len(before) == 10
    assert not (short_tmp / "results.parquet.old").exists()
