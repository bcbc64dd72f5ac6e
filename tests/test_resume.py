"""kill -9 of the driver mid-study, then `kdtune resume`: nothing re-run, nothing lost, nothing duplicated."""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import tiny_study_spec
from processes import kill_processes_mentioning
from processes import start_kdtune
from processes import wait_for

from kdtune.records.folder import StudyFolder
from kdtune.records.optuna_storage import make_storage
from kdtune.records.results import read_results
from kdtune.records.results import read_trials
from kdtune.spec.rules import trials_per_condition


pytestmark = pytest.mark.slow


def test_resume_after_sigkill_of_the_driver(short_tmp: Path) -> None:
    spec = tiny_study_spec("crash", student={"arch": "mlp", "epochs": 6, "kwargs": {"widths": [16]}, "lr": 3e-3},
                           budget={"trials_per_condition": 4, "repeats": 2}, scheduler={"type": "fifo"})
    spec_path = short_tmp / "crash.yaml"
    spec_path.write_text(yaml.safe_dump(spec.to_dict()))
    study_dir = short_tmp / "study"
    ray_tmp = short_tmp / "ray1"
    log = short_tmp / "run.log"
    driver = start_kdtune(["run", str(spec_path), "--out", str(study_dir), "--no-progress"], ray_tmp, log)
    try:
        wait_for(lambda: read_trials(study_dir).num_rows >= 3 if (study_dir / "study.json").exists() else False,
                 timeout=400, what="three ended trials", proc=driver, log=log)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        kill_processes_mentioning(str(ray_tmp))
    ended_before = {t["trial_id"]: t for t in read_trials(study_dir).to_pylist()}
    total = 2 * trials_per_condition(spec)
    assert len(ended_before) < total, "the study finished before it could be killed: give it more work"
    kept = _lose_the_snapshot_race(study_dir / "tune" / "kdtune")

    resume_log = short_tmp / "resume.log"
    resumed = start_kdtune(["resume", str(study_dir), "--no-progress"], short_tmp / "ray2", resume_log)
    try:
        code = resumed.wait(timeout=600)
    finally:
        kill_processes_mentioning(str(short_tmp / "ray2"))
    assert code == 0, resume_log.read_text()[-3000:]

    trials = read_trials(study_dir).to_pylist()
    assert len(trials) == total and len({t["trial_id"] for t in trials}) == total
    assert all(t["state"] == "COMPLETE" for t in trials), ([(t["state"], t["error"]) for t in trials
                                                            if t["state"] != "COMPLETE"], kept)
    for trial_id, before in ended_before.items():  # finished trials were not run again
        after = next(t for t in trials if t["trial_id"] == trial_id)
        assert after["ended_at"] == before["ended_at"]
    rows = read_results(study_dir)
    keys = list(zip(*(rows.column(k).to_pylist() for k in ("trial_id", "seed", "epoch"))))
    assert len(keys) == len(set(keys))
    per_trial = collections.Counter(rows.column("trial_id").to_pylist())
    assert all(per_trial[t["trial_id"]] == 2 * 6 for t in trials), (per_trial, resume_log.read_text()[-3000:])
    # Optuna agrees: every condition has its completed trials, and nothing is left RUNNING.
    storage = make_storage(f"sqlite:///{study_dir / 'optuna.db'}")
    for key in ("noise_level=0.0", "noise_level=0.2"):
        study = optuna.load_study(study_name=f"{StudyFolder(study_dir).optuna_prefix()}/{key}", storage=storage)
        states = collections.Counter(t.state.name for t in study.trials)
        assert states["COMPLETE"] == trials_per_condition(spec) and states["RUNNING"] == 0
    assert json.loads((study_dir / "study.json").read_text())["finished_at"] is not None


def _lose_the_snapshot_race(experiment: Path) -> list[str]:
    """Leave every trial's checkpoints as a driver killed at the worst moment leaves them.

    ``num_to_keep=1`` deletes a trial's checkpoint as soon as the driver registers the next one, and Tune
    writes the snapshot that names the new one only afterwards: a kill in between leaves a snapshot that names
    a deleted checkpoint with a newer one beside it. Keeping only each trial's newest checkpoint, moved one number up,
    recreates that state whichever checkpoint the snapshot names. Returns the trials' kept checkpoints.
    """
    kept = []
    for trial_dir in sorted(p for p in experiment.iterdir() if p.is_dir()):
        checkpoints = sorted(trial_dir.glob("checkpoint_*"))
        if checkpoints:
            *older, newest = checkpoints
            for folder in older:
                shutil.rmtree(folder)
            moved = trial_dir / f"checkpoint_{int(newest.name.rsplit('_', 1)[1]) + 1:06d}"
            newest.rename(moved)
            kept.append(f"{trial_dir.name}/{moved.name}")
    return kept


def test_resume_refuses_a_folder_without_a_study(short_tmp: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "kdtune", "resume", str(short_tmp)], capture_output=True, text=True)
    assert result.returncode == 2
    assert f"{short_tmp} is not a kdtune study folder (no study.json)" in result.stderr
