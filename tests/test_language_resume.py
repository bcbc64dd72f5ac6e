"""A language-model study killed with SIGKILL mid-trials and finished by ``kdtune resume``; then the Python API on the
finished study gives the recommendation the CLI gives, lower (validation and test loss) being better.

One real study for the module (a tiny corpus, the byte tokenizer, tiny transformers, local Ray in the driver's own
process group, SQLite Optuna, Parquet results), run by ``python -m kdtune`` as a user runs it, and killed the way a
crash or an OOM killer kills it: every process of the driver's group at once, nothing flushed.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml
from processes import kill_processes_mentioning
from processes import start_kdtune
from processes import wait_for
from test_language_study import _corpus
from test_language_study import _spec

import kdtune
from kdtune.records.folder import StudyFolder
from kdtune.records.optuna_storage import make_storage
from kdtune.records.results import read_results
from kdtune.records.results import read_trials
from kdtune.spec.rules import confirmation_trials
from kdtune.spec.rules import trials_per_condition
from kdtune.spec.schema import parse_spec


pytestmark = pytest.mark.slow

STUDENT_EPOCHS, REPEATS = 3, 2


@pytest.fixture(scope="module")
def resumed(sandbox: Path) -> dict[str, Any]:
    """The study, SIGKILLed once a trial has ended, then resumed: its folder, spec, what had ended, the logs."""
    tmp = Path(tempfile.mkdtemp(prefix="lmr-", dir=sandbox))
    raw = _spec(_corpus(tmp / "corpus.txt"), "lm-crash",
                student={"arch": "transformer", "kwargs": {"n_layers": 1, "d_model": 16, "n_heads": 2},
                         "epochs": STUDENT_EPOCHS, "lr": 3e-3, "batch_size": 16},
                budget={"trials_per_condition": 4, "repeats": REPEATS, "confirm_top_k": 1, "confirm_repeats": 2,
                        "confirm_max_repeats": 2, "confirm_failure_rate": 0})
    spec_path = tmp / "lm.yaml"
    spec_path.write_text(yaml.safe_dump(raw))
    study, env = tmp / "study", {"KDTUNE_CACHE_DIR": str(tmp / "cache")}
    driver = start_kdtune(["run", str(spec_path), "--out", str(study), "--no-progress"], tmp / "ray1", tmp / "run.log",
                          env)
    try:
        wait_for(lambda: (study / "study.json").exists() and read_trials(study).num_rows >= 1, timeout=600,
                 what="the first ended trial", proc=driver, log=tmp / "run.log")
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        kill_processes_mentioning(str(tmp / "ray1"))
    ended = {t["trial_id"]: t for t in read_trials(study).to_pylist()}
    resume = start_kdtune(["resume", str(study), "--no-progress"], tmp / "ray2", tmp / "resume.log", env)
    try:
        code = resume.wait(timeout=900)
    finally:
        if resume.poll() is None:
            os.killpg(resume.pid, signal.SIGKILL)
            resume.wait()
        kill_processes_mentioning(str(tmp / "ray2"))
    return {"study": study, "spec": parse_spec(raw), "ended_before_kill": ended, "code": code,
            "log": (tmp / "resume.log").read_text(), "tmp": tmp}


def test_a_sigkilled_language_study_resumes_to_a_verdict_with_every_trial_once(resumed: dict[str, Any]) -> None:
    study, spec, log = resumed["study"], resumed["spec"], resumed["log"]
    assert resumed["code"] == 0, log[-3000:]
    assert "Traceback" not in log and "taking over the study lock of process" in log, log[-3000:]
    search, confirm = trials_per_condition(spec), confirmation_trials(spec)
    assert len(resumed["ended_before_kill"]) < search + confirm, "the study ended before the kill: give it more work"

    trials = read_trials(study).to_pylist()
    ids = [t["trial_id"] for t in trials]
    assert len(ids) == len(set(ids)), collections.Counter(ids).most_common(3)  # every trial once
    phases = collections.Counter("confirm" if t["phase"] == "confirm" else "search" for t in trials)
    assert phases == {"search": search, "confirm": confirm}, phases
    assert all(t["state"] in ("COMPLETE", "PRUNED") for t in trials), [(t["state"], t["error"]) for t in trials]
    for trial_id, before in resumed["ended_before_kill"].items():  # what had ended was not run again
        after = next(t for t in trials if t["trial_id"] == trial_id)
        assert (after["ended_at"], after["state"], after["objective"]) == (before["ended_at"], before["state"],
                                                                         before["objective"])

    rows = read_results(study).to_pylist()
    keys = [(r["trial_id"], r["seed"], r["epoch"]) for r in rows]
    assert len(keys) == len(set(keys)), collections.Counter(keys).most_common(3)  # no row written twice
    assert {r["trial_id"] for r in rows} == set(ids)
    for trial in trials:  # each seed has every epoch up to where its trial ended, once
        mine = [r for r in rows if r["trial_id"] == trial["trial_id"]]
        epochs = max(r["epoch"] for r in mine)
        assert epochs == STUDENT_EPOCHS or (trial["state"] == "PRUNED" and epochs >= 1), (trial, epochs)
        assert sorted((r["seed"], r["epoch"]) for r in mine) == sorted(
            (seed, e) for seed in {r["seed"] for r in mine} for e in range(1, epochs + 1)), trial["trial_id"]
        assert len({r["seed"] for r in mine}) == REPEATS

    storage = make_storage(f"sqlite:///{study / 'optuna.db'}")
    (condition,) = StudyFolder(study).meta()["conditions"]
    optuna_study = optuna.load_study(study_name=f"{StudyFolder(study).optuna_prefix()}/{condition['key']}",
                                     storage=storage)
    assert optuna_study.direction == optuna.study.StudyDirection.MINIMIZE
    states = collections.Counter(t.state.name for t in optuna_study.trials)
    assert states["RUNNING"] == 0 and states["COMPLETE"] + states["PRUNED"] == search, states

    assert StudyFolder(study).meta()["finished_at"] is not None
    (verdict,) = json.loads((study / "recommendation.json").read_text())["conditions"]
    assert verdict["verdict"]["kind"] in ("distil", "no_gain", "hurts", "inconclusive")
    assert "nats/token" in verdict["verdict"]["text"]


def test_the_python_api_gives_the_clis_recommendation_lower_being_better(resumed: dict[str, Any]) -> None:
    assert resumed["code"] == 0, resumed["log"][-3000:]
    study = resumed["study"]
    api = kdtune.recommend(study)
    out = resumed["tmp"] / "cli.json"
    cli = subprocess.run([sys.executable, "-m", "kdtune", "recommend", str(study), "--format", "json", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert cli.returncode == 0, cli.stderr[-2000:]

    def same(report: dict[str, Any]) -> str:  # as JSON (NaN included), without the time it was made
        return json.dumps({k: v for k, v in report.items() if k != "created_at"}, sort_keys=True)

    assert same(json.loads(json.dumps(api))) == same(json.loads(cli.stdout)) == same(json.loads(out.read_text()))
    assert same(api) == same(json.loads((study / "recommendation.json").read_text()))  # what resume wrote
    assert (api["mode"], api["objective"], api["test_metric"]) == ("min", "val_loss", "test_loss")

    # load_results: each run at its lowest validation loss (the earliest epoch on ties), its test loss there
    runs = kdtune.load_results(study)
    epochs = collections.defaultdict(list)
    for row in read_results(study).to_pylist():
        epochs[(row["trial_id"], row["seed"])].append(row)
    assert len(runs) == len(epochs)
    for run in runs.itertuples():
        lowest = min(epochs[(run.trial_id, run.seed)], key=lambda r: (r["val_loss"], r["epoch"]))
        assert (run.best_epoch, run.val_loss, run.test_loss) == (lowest["epoch"], lowest["val_loss"], lowest["test_loss"])

    (condition,) = api["conditions"]
    # the best observed configuration has the lowest mean validation loss of the search's finished trials
    searched = runs[(runs["phase"] != "confirm") & (runs["trial_state"] == "COMPLETE")]
    means = searched.groupby(["alpha", "temperature"])["val_loss"].mean()
    assert condition["best_observed"]["validation"]["mean"] == pytest.approx(means.min())
    # the gain is in nats/token of test loss: alpha = 1's loss minus the distilled one's, paired by seed
    confirmed = runs[runs["phase"] == "confirm"]
    chosen = condition["confirmed"]["params"]
    no_kd = confirmed[confirmed["alpha"] == 1.0].set_index("seed")["test_loss"]
    # the recommendation keys a configuration by its floats to 12 significant digits (scoring.clean)
    distilled = confirmed[np.isclose(confirmed["alpha"], chosen["alpha"], rtol=1e-10, atol=0)
                          & np.isclose(confirmed["temperature"], chosen["temperature"], rtol=1e-10, atol=0)
                          ].set_index("seed")["test_loss"]
    assert len(distilled) == REPEATS and set(distilled.index) == set(no_kd.index)
    assert condition["gain"]["mean"] == pytest.approx((no_kd - distilled).mean())
    assert "nats/token" in condition["verdict"]["text"]
