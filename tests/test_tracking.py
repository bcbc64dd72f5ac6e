"""W&B tracking end to end: a tiny real study with tracking on, its offline run files read back with wandb's
own reader (``wandb leet inspect --json``), plus studies in subprocesses for ``tracking: none`` (W&B never
imported) and for an unreachable W&B server (warns once, stays offline, completes).

Run: ``.venv/bin/python -m pytest -q tests/test_tracking.py``
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
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
    """One offline run as wandb's own reader sees it: identity, config, history, final summary, exit code."""
    out = subprocess.run([WANDB_CLI, "leet", "inspect", "--json", str(path)], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    run: dict[str, Any] = {"history": [], "summary": {}, "exit_code": None}
    for line in out.splitlines():
        record = json.loads(line)
        kind = record["type"]
        if kind == "run":
            info = record["run"]
            config = {k: v for k, v in info["config"]["update"].items() if k != "_wandb"}
            run.update(name=info["display_name"], job_type=info["job_type"], group=info["run_group"],
                       project=info["project"], config=config)
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
        assert run["project"] == "kdtune-tests" and run["group"] == "tracked"
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


def test_teachers_are_runs_too_and_are_logged_once(tracked_study: Path,
                                                   tracked_runs: list[dict[str, Any]]) -> None:
    teachers = json.loads((tracked_study / "teachers.json").read_text())
    runs = {r["config"]["condition"]: r for r in tracked_runs if r["job_type"] == "teacher"}
    assert set(runs) == CONDITIONS == set(teachers)
    for key, run in runs.items():
        info = teachers[key]
        assert run["group"] == "tracked" and run["name"] == f"teacher {key}"
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
    students = [r for r in runs if r["job_type"] != "teacher"]
    rows = read_results(study).to_pylist()
    assert len(students) == len({(r["trial_id"], r["seed"]) for r in rows}) > 0
    assert {r["job_type"] for r in runs} == {"teacher", "all"}
    assert {r["project"] for r in runs} == {"kdtune-dead"}  # --wandb-project beats the spec
    assert all(r["exit_code"] == 0 for r in runs)
    for path in offline_runs(study):
        assert FAKE_KEY.encode() not in path.read_bytes()  # the key is never written into a run
