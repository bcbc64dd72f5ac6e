"""W&B tracking end to end: a tiny real study with tracking on, its offline run files read back with wandb's
own reader (``wandb leet inspect --json``), plus studies in subprocesses for ``tracking: none`` (W&B never
imported) and for an unreachable W&B server (warns once, stays offline, completes); the study's group (its name and
id), pruned runs tagged, failed ones failed, and the recommendation as one run per condition.

Run: ``.venv/bin/python -m pytest -q tests/test_tracking.py``
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import tiny_study_spec

from kdtune.records.folder import StudyFolder
from kdtune.records.results import read_results
from kdtune.records.results import read_trials
from kdtune.study.driver import RunOptions
from kdtune.study.driver import run_study
from kdtune.study.tracking import ALPHA_MEANING
from kdtune.study.tracking import WandbTracker
from kdtune.study.tracking import tracking_callbacks
from kdtune.wandb_settings import resolve_mode
from kdtune.wandb_settings import sync_command


pytestmark = pytest.mark.slow

WANDB_CLI = str(Path(sys.executable).with_name("wandb"))
CONDITIONS = {"noise_level=0.0", "noise_level=0.2"}
FAKE_KEY = "x" * 40
SUBPROCESS_TIMEOUT = 900  # a hang guard, not a speed check

# Small enough for a subprocess: one condition, the teacher of the session's studies (a cache hit).
CLI_SPEC = """
name: {name}
dataset: {{name: digits, val_fraction: 0.2}}
teacher: {{arch: mlp, epochs: 4, kwargs: {{widths: [64]}}, lr: 0.003}}
student: {{arch: mlp, epochs: 2, kwargs: {{widths: [16]}}, lr: 0.003}}
conditions: {{noise_level: [0.0]}}
budget: {{trials_per_condition: 1, repeats: 2}}
scheduler: {{type: fifo}}
tracking: {tracking}
"""


def inspect_run(path: Path) -> dict[str, Any]:
    """One offline run as wandb's own reader sees it: identity, config, tags, history, final summary, exit code.
    A run record comes again when the run changes (its tags): the later one's fields win, configs add up."""
    out = subprocess.run([WANDB_CLI, "leet", "inspect", "--json", str(path)], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    run: dict[str, Any] = {"history": [], "summary": {}, "exit_code": None, "config": {}}
    for line in out.splitlines():
        record = json.loads(line)
        kind = record["type"]
        if kind == "run":
            info = record["run"]
            run["config"].update({k: v for k, v in info["config"]["update"].items() if k != "_wandb"})
            run.update(name=info["display_name"], job_type=info.get("job_type", run.get("job_type")),
                       group=info["run_group"], project=info["project"], tags=info.get("tags", []))
        elif kind == "history":
            run["history"].append(record["history"]["item"])
        elif kind == "summary":
            run["summary"].update(record["summary"].get("update", {}))
        elif kind == "exit":
            run["exit_code"] = record["exit"].get("exit_code", 0)
    return run


def offline_runs(study_dir: Path) -> list[Path]:
    return sorted((study_dir / "wandb").glob("offline-run-*/run-*.wandb"))


@pytest.fixture(scope="session")
def tracked_study(ray_local: None, sandbox: Path) -> Path:
    """A tiny real study (digits, 2 conditions) with offline W&B tracking on."""
    spec = tiny_study_spec("tracked", tracking={"wandb": {"mode": "offline", "project": "kdtune-tests"}})
    return run_study(spec, RunOptions(out=sandbox / "tracked-study", progress=False))


@pytest.fixture(scope="session")
def tracked_runs(tracked_study: Path) -> list[dict[str, Any]]:
    return [inspect_run(path) for path in offline_runs(tracked_study)]


def _best_epoch(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return max(rows, key=lambda r: (r["val_accuracy"], -r["epoch"]))


def test_every_run_is_a_wandb_run_with_its_identity_and_config(tracked_study: Path,
                                                               tracked_runs: list[dict[str, Any]]) -> None:
    students = [r for r in tracked_runs if r["job_type"] != "teacher"]
    rows = read_results(tracked_study).to_pylist()
    expected = {(r["trial_id"], r["seed"]) for r in rows}
    assert {(r["config"]["trial_id"], r["config"]["seed"]) for r in students} == expected
    assert len(students) == len(expected)  # one W&B run per run, no duplicates
    params = {(r["trial_id"], r["seed"]): r for r in rows}
    for run in students:
        config = run["config"]
        row = params[(config["trial_id"], config["seed"])]
        assert run["project"] == "kdtune-tests" and run["group"] == f"tracked-{StudyFolder(tracked_study).meta()['id']}"
        assert run["job_type"] == config["condition"] == row["condition"] and run["job_type"] in CONDITIONS
        assert config["alpha"] == pytest.approx(row["alpha"])
        assert config["alpha_meaning"] == ALPHA_MEANING == "weight on true labels; 1 = no distillation"
        assert config["temperature"] == pytest.approx(row["temperature"])
        assert config["phase"] == row["phase"] and config["noise_level"] == row["noise_level"]
        assert config["condition_id"] == row["condition"].replace("=", ":")
        assert run["name"] == (f"{row['condition']} alpha={row['alpha']:.3g} T={row['temperature']:.3g} "
                               f"seed={row['seed']}")
        # the folder's own SQLite storage is recorded relative to the folder (it moves with a moved or copied folder)
        assert config["storage"] == "sqlite:///optuna.db"
        assert not any(word in key.lower() for key in config for word in ("api_key", "password", "token"))
    baselines = sorted(r["config"]["alpha"] for r in students if r["config"]["phase"] == "baseline")
    assert baselines == [0.0] * 4 + [1.0] * 4  # alpha = 0 and 1, 2 seeds, 2 conditions


def test_runs_hold_per_epoch_metrics_and_best_epoch_summary(tracked_study: Path,
                                                           tracked_runs: list[dict[str, Any]]) -> None:
    rows = read_results(tracked_study).to_pylist()
    states = {t["trial_id"]: t["state"] for t in read_trials(tracked_study).to_pylist()}
    students = [r for r in tracked_runs if r["job_type"] != "teacher"]
    assert {r["summary"]["state"] for r in students} <= {"COMPLETE", "PRUNED"}
    for run in students:
        mine = sorted((r for r in rows if (r["trial_id"], r["seed"]) == (run["config"]["trial_id"],
                                                                         run["config"]["seed"])),
                      key=lambda r: r["epoch"])
        history = sorted(run["history"], key=lambda h: h["_step"])
        assert [h["_step"] for h in history] == [h["epoch"] for h in history] == [r["epoch"] for r in mine]
        for logged, row in zip(history, mine):
            assert logged["val_accuracy"] == pytest.approx(row["val_accuracy"])
            assert logged["test_accuracy"] == pytest.approx(row["test_accuracy"])
            per_class = [logged[f"test_class_accuracy/{k}"] for k in range(10)]
            assert per_class == pytest.approx(row["test_per_class_accuracy"])
        best = _best_epoch(mine)
        summary = run["summary"]
        assert summary["best_epoch"] == best["epoch"] and summary["last_epoch"] == mine[-1]["epoch"]
        assert summary["test_accuracy"] == pytest.approx(best["test_accuracy"])
        assert summary["val_accuracy"] == pytest.approx(best["val_accuracy"])
        assert summary["state"] == states[run["config"]["trial_id"]]
        assert run["exit_code"] == 0
        assert run["tags"] == (["pruned"] if summary["state"] == "PRUNED" else [])


def test_teachers_are_runs_too_and_are_logged_once(tracked_study: Path,
                                                   tracked_runs: list[dict[str, Any]]) -> None:
    teachers = json.loads((tracked_study / "teachers.json").read_text())
    runs = {r["config"]["condition"]: r for r in tracked_runs if r["job_type"] == "teacher"}
    assert set(runs) == CONDITIONS == set(teachers)
    for key, run in runs.items():
        info = teachers[key]
        assert run["group"] == f"tracked-{StudyFolder(tracked_study).meta()['id']}" and run["name"] == f"teacher {key}"
        assert run["config"]["cache_key"] == info["cache_key"]
        assert [h["epoch"] for h in run["history"]] == [c["epoch"] for c in info["curve"]]
        assert run["summary"]["best_epoch"] == info["selected_epoch"]
        assert run["summary"]["test_accuracy"] == pytest.approx(info["diagnostics"]["test_accuracy"])
        memorised = info["diagnostics"]["memorisation_rate"]  # None without label noise: not logged
        assert run["summary"].get("memorisation_rate") == (None if memorised is None else pytest.approx(memorised))
    assert runs["noise_level=0.2"]["summary"]["memorisation_rate"] >= 0.0
    # What `kdtune resume` does: the driver builds the callbacks again; teacher runs are not repeated.
    before = offline_runs(tracked_study)
    spec = tiny_study_spec("tracked", tracking={"wandb": {"mode": "offline", "project": "kdtune-tests"}})
    from kdtune.spec.conditions import expand

    callbacks = tracking_callbacks(spec, tracked_study, expand(spec), teachers)
    assert len(callbacks) == 1 and offline_runs(tracked_study) == before
    assert set(json.loads((tracked_study / "wandb" / "kdtune-teachers.json").read_text())) == CONDITIONS


def test_mode_resolution_and_sync_command(monkeypatch: pytest.MonkeyPatch, short_tmp: Path) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert resolve_mode("offline") == "offline" and resolve_mode("online") == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_mode("online") == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    assert resolve_mode("offline") == "online"
    assert sync_command(StudyFolder("runs/my study").wandb_dir) == "wandb sync 'runs/my study/wandb'/offline-run-*"
    # online without any key: offline from the start, with one warning
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    (short_tmp / "study.json").write_text(json.dumps({"storage_url": "postgresql://kd:s3cret@db/kdtune"}))
    spec = tiny_study_spec("keyless", tracking={"wandb": {"mode": "online"}})
    tracker = WandbTracker(short_tmp, spec, [])
    assert tracker.mode == "offline"
    assert tracker.common["storage"] == "postgresql://kd:***@db/kdtune"  # never a password in a config


def _cli_study(tmp: Path, name: str, tracking: str, *, code: str = "", env: dict[str, str] | None = None,
               extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """``kdtune run`` on a tiny spec in a fresh interpreter (its own Ray and environment), then ``code``."""
    spec = tmp / f"{name}.yaml"
    spec.write_text(CLI_SPEC.format(name=name, tracking=tracking))
    (tmp / "ray").mkdir()
    args = ["run", str(spec), "--out", str(tmp / name), "--no-progress", *extra]
    script = f"import sys\nfrom kdtune.cli import main\nrc = main({args!r})\n{code}\nsys.exit(rc)\n"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=SUBPROCESS_TIMEOUT, env={**os.environ, "RAY_TMPDIR": str(tmp / "ray"), **(env or {})})


def test_tracking_none_never_imports_wandb(short_tmp: Path) -> None:
    done = _cli_study(short_tmp, "untracked", "none", code="print('wandb imported:', 'wandb' in sys.modules)")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "wandb imported: False" in done.stdout
    assert not (short_tmp / "untracked" / "wandb").exists()


def test_unreachable_wandb_warns_once_and_stays_offline(short_tmp: Path) -> None:
    dead = {"WANDB_MODE": "online", "WANDB_BASE_URL": "http://127.0.0.1:9", "WANDB_API_KEY": FAKE_KEY}
    done = _cli_study(short_tmp, "dead", "{wandb: {mode: online, project: from-spec}}", env=dead,
                      extra=("--wandb-project", "kdtune-dead"))
    assert done.returncode == 0, done.stderr[-3000:]
    study = short_tmp / "dead"
    assert json.loads((study / "study.json").read_text())["finished_at"] is not None
    assert done.stderr.count("continuing offline") == 1, done.stderr[-3000:]
    assert not list((study / "wandb").glob("run-*"))  # nothing half-online left behind
    runs = [inspect_run(p) for p in offline_runs(study)]
    students = [r for r in runs if r["job_type"] not in ("teacher", "recommendation")]
    rows = read_results(study).to_pylist()
    assert len(students) == len({(r["trial_id"], r["seed"]) for r in rows}) > 0
    assert {r["job_type"] for r in runs} == {"teacher", "all", "recommendation"}
    assert {r["project"] for r in runs} == {"kdtune-dead"}  # --wandb-project beats the spec
    assert all(r["exit_code"] == 0 for r in runs)
    # the end of `kdtune run`: the answer, one run per condition, in the study's group
    (answer,) = [r for r in runs if r["job_type"] == "recommendation"]
    verdict = json.loads((study / "recommendation.json").read_text())["conditions"][0]["verdict"]
    assert answer["summary"]["verdict"] == verdict["kind"] and answer["summary"]["verdict_text"] == verdict["text"]
    assert {r["group"] for r in runs} == {f"dead-{StudyFolder(study).meta()['id']}"}
    for path in offline_runs(study):
        assert FAKE_KEY.encode() not in path.read_bytes()  # the key is never written into a run


def _trial(trial_id: str, condition: str) -> SimpleNamespace:
    """What the tracker reads of a Tune trial (a collaborator): its id, the searcher's config, its last result."""
    return SimpleNamespace(trial_id=trial_id, last_result={}, config={
        "condition": condition, "phase": "search", "params": {"alpha": 0.5, "temperature": 4.0}, "seeds": [0, 1]})


def test_pruned_runs_are_tagged_and_failed_runs_fail(short_tmp: Path) -> None:
    """W&B's run state has no "pruned": a pruned run exits 0 (Finished) with the tag ``pruned``; a failed trial's
    runs exit 1 (Failed); a complete one has neither. Real offline runs, read back with wandb's reader."""
    from kdtune.spec.conditions import expand

    spec = tiny_study_spec("tags", tracking={"wandb": {"mode": "offline", "project": "kdtune-tests"}})
    (short_tmp / "study.json").write_text(json.dumps({"id": "feedbeef0001", "storage_url": "sqlite:///optuna.db"}))
    conditions = expand(spec)
    tracker = WandbTracker(short_tmp, spec, conditions)
    for trial_id, epochs, error in (("pruned", 2, False), ("complete", spec.student.epochs, False), ("failed", 1, True)):
        trial = _trial(trial_id, conditions[0].key)
        tracker.on_trial_start(0, [], trial)
        rows = [{"seed": seed, "epoch": e, "val_accuracy": 0.5 + e / 10, "test_accuracy": 0.4 + e / 10}
                for e in range(1, epochs + 1) for seed in (0, 1)]
        trial.last_result = {"objective": 0.5 + epochs / 10, "epoch": epochs, "rows": rows, "nan": False}
        tracker.on_trial_result(0, [], trial, trial.last_result)  # type: ignore[arg-type]
        (tracker.on_trial_error if error else tracker.on_trial_complete)(0, [], trial)
    tracker.wait()
    runs = {(r["config"]["trial_id"], r["config"]["seed"]): r for r in map(inspect_run, offline_runs(short_tmp))}
    assert set(runs) == {(t, s) for t in ("pruned", "complete", "failed") for s in (0, 1)}
    for (trial_id, _), run in runs.items():
        state, tags, exit_code = {"pruned": ("PRUNED", ["pruned"], 0), "complete": ("COMPLETE", [], 0),
                                  "failed": ("FAIL", [], 1)}[trial_id]
        assert (run["summary"]["state"], run["tags"], run["exit_code"]) == (state, tags, exit_code), trial_id
        assert run["group"] == "tags-feedbeef0001"  # the study's name and id: a rerun (a new id) is a new group


def test_the_recommendation_is_one_run_per_condition(tracked_study: Path, short_tmp: Path) -> None:
    """``log_recommendation`` (the end of ``kdtune run`` and ``resume``) on a copy of the tracked study: one run per
    condition in the study's group, its summary the condition's verdict, gain and recommended alpha."""
    import shutil

    from kdtune.analysis.recommendation_output import recommend_and_record
    from kdtune.study.tracking import log_recommendation

    study = short_tmp / "copy"
    shutil.copytree(tracked_study, study)
    before = set(offline_runs(study))
    report, _ = recommend_and_record([study])
    log_recommendation(study)
    runs = [inspect_run(p) for p in sorted(set(offline_runs(study)) - before)]
    assert [r["job_type"] for r in runs] == ["recommendation"] * 2
    by_condition = {r["config"]["condition"]: r for r in runs}
    assert set(by_condition) == CONDITIONS
    for condition in report["conditions"]:
        run = by_condition[condition["key"]]
        summary = run["summary"]
        assert run["name"] == f"recommendation {condition['key']}"
        assert run["group"] == f"tracked-{StudyFolder(study).meta()['id']}" and run["exit_code"] == 0
        assert run["config"]["noise_level"] == condition["condition"]["noise_level"]
        assert summary["verdict"] == condition["verdict"]["kind"] and summary["verdict_text"] == condition["verdict"]["text"]
        recommended = condition["recommended"]
        assert summary["recommended_alpha"] == pytest.approx(recommended["params"]["alpha"])
        expected = {"recommended_alpha_low": recommended["alpha"]["low"], "recommended_alpha_high":
                    recommended["alpha"]["high"], "gain": condition["gain"]["mean"],
                    "gain_low": condition["gain"]["low"], "gain_high": condition["gain"]["high"]}
        assert condition["gain"]["mean"] is not None  # the check below compares numbers, not two absences
        for key, value in expected.items():
            assert summary.get(key) == (None if value is None else pytest.approx(value)), key
        assert summary["test_metric"] == report["test_metric"] == "test_accuracy"
        assert not any(word in json.dumps(run).lower() for word in ("api_key", "password"))
