"""Optuna on a real PostgreSQL server: two kdtune drivers share one storage at the same time."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import tiny_study_spec
from processes import kill_processes_mentioning
from processes import start_kdtune

from kdtune.records.folder import StudyFolder
from kdtune.records.optuna_storage import make_storage
from kdtune.records.results import read_trials
from kdtune.spec.rules import trials_per_condition


pytestmark = pytest.mark.slow


def test_two_drivers_share_one_postgres_storage(postgres_url: str, short_tmp: Path) -> None:
    drivers = []
    for name in ("pg-a", "pg-b"):
        spec = tiny_study_spec(name, conditions={"noise_level": [0.1]}, budget={"trials_per_condition": 2, "repeats": 2})
        path = short_tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(spec.to_dict()))
        log = short_tmp / f"{name}.log"
        args = ["run", str(path), "--out", str(short_tmp / name), "--storage", postgres_url, "--no-progress",
                "--max-concurrent", "1"]
        drivers.append((start_kdtune(args, short_tmp / f"ray-{name}", log), log, name))
    try:
        for proc, log, _ in drivers:
            assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    finally:
        for _, _, name in drivers:
            kill_processes_mentioning(str(short_tmp / f"ray-{name}"))

    storage = make_storage(postgres_url)
    for name in ("pg-a", "pg-b"):
        study = optuna.load_study(study_name=f"{StudyFolder(short_tmp / name).optuna_prefix()}/all", storage=storage)
        states = collections.Counter(t.state.name for t in study.trials)
        ours = collections.Counter(t["state"] for t in read_trials(short_tmp / name).to_pylist())
        assert sum(states.values()) == trials_per_condition(tiny_study_spec(name)) and states == ours
        meta = json.loads((short_tmp / name / "study.json").read_text())
        assert meta["storage_url"] == postgres_url and not (short_tmp / name / "optuna.db").exists()
